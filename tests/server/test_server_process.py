"""``hcs-batch serve`` as a real process: answers clients, survives random frames, stops cleanly on SIGINT."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hcs_batch import protocol as p
from hcs_batch._zmq import new_socket
from hcs_batch.cli import main
from hcs_batch.client import open_connection
from hcs_batch.pipeline import default_pipeline_text
from hcs_batch.testing.plates import make_plates

from ..support.procs import descendants, reap_process, survivors
from ..support.serverproc import env
from .helpers import wait_terminal

LINE = re.compile(r"^hcs-batch server listening on (tcp://127\.0\.0\.1:(\d+)) \(events on (\d+)\)$")


def _start_server(workers: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hcs_batch", "serve", "--bind", "tcp://127.0.0.1:0", "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # the server prints exactly one line once it listens
    match = LINE.match(line)
    if match is None:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        pytest.fail(f"unexpected first line from hcs-batch serve: {line!r}")
    return proc, match.group(1)


def _stop(proc: subprocess.Popen[str]) -> int:
    """SIGINT, then wait for the exit code (kill after 30 s); closes the stdout pipe."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc, url = _start_server(workers=1)
    yield proc, url
    assert _stop(proc) == 0


async def test_serve_answers_a_client_and_exits_cleanly_on_sigint(tmp_path: Path) -> None:
    folders = make_plates(tmp_path / "plates", plates=1, wells=2, sites=1, channels=1, size=32, seed=2)
    proc, url = await trio.to_thread.run_sync(_start_server, 2)
    try:
        with trio.fail_after(60):
            async with open_connection(url) as conn:
                compiled = await conn.compile(
                    plate_path=str(folders[0]), plate_name="plate", pipeline=default_pipeline_text()
                )
                run = await conn.execute(compiled.artifact_id, output_dir=str(tmp_path / "out"))
                records = await wait_terminal(conn, [run])
                assert records[run].state == "completed"
                info = await conn.server_info()
                assert info.workers == 2
        workers = descendants(proc.pid)
        assert workers, "the server runs its wells in child processes"
        code = await trio.to_thread.run_sync(_stop, proc)
    finally:
        reap_process(proc)
    assert code == 0
    assert survivors(workers) == {}, "no worker process may outlive the server"
    assert (tmp_path / "out" / "plate" / "wells.csv").exists()


def test_serve_refuses_a_non_loopback_bind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--bind", "tcp://0.0.0.0:7700"]) == 2
    err = capsys.readouterr().err.strip()
    assert "refusing to bind tcp://0.0.0.0:7700" in err and len(err.splitlines()) == 1


_maps = st.dictionaries(
    st.sampled_from(["kind", "rid", "v", "execution_ids", "artifact_id", "output_dir", "records", "client"])
    | st.text(max_size=6),
    st.one_of(
        st.sampled_from(["hello", "status", "cancel", "server_info", "execute", "compile", "bogus"]),
        st.integers(-(2**63), 2**64 - 1),
        st.text(max_size=10),
        st.binary(max_size=10),
        st.lists(st.text(max_size=5), max_size=3),
        st.booleans(),
        st.none(),
    ),
    max_size=5,
)
_valid = st.builds(
    lambda rid, text: p.encode(p.Status(rid=rid, execution_ids=[text or "x", "y"])),
    st.integers(0, 2**32),
    st.text(min_size=1, max_size=12),
)


def _mutate(frame: bytes, where: int, byte: int) -> bytes:
    if not frame:
        return bytes([byte])
    i = where % len(frame)
    return frame[:i] + bytes([byte]) + frame[i + 1 :]


# Random bytes, random maps, and valid requests or maps with one byte changed (bad UTF-8, bad lengths, bad tags).
_frame = (
    st.binary(max_size=256)
    | _maps.map(msgspec.msgpack.encode)
    | st.builds(_mutate, _valid | _maps.map(msgspec.msgpack.encode), st.integers(0, 10_000), st.integers(0, 255))
)


class _RawClient:
    def __init__(self, url: str) -> None:
        self.sock: Any = new_socket("DEALER")
        self.sock.connect(url)
        self.rid = 10**9

    def still_answers(self) -> bool:
        """Send a valid Hello and read replies (to the garbage, then to it) until its reply comes."""
        self.rid += 1
        self.sock.send(p.encode(p.Hello(rid=self.rid)))
        while self.sock.poll(10_000):
            reply = p.decode_reply(self.sock.recv_multipart()[-1])
            if reply.rid == self.rid:
                return isinstance(reply, p.HelloReply)
            assert isinstance(reply, p.ErrorReply | p.StatusReply | p.CancelReply | p.ServerInfoReply | p.HelloReply)
        return False


def test_random_frames_never_stop_the_server(fuzz_server: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = fuzz_server
    raw = _RawClient(url)
    try:

        @settings(
            max_examples=300,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(st.lists(_frame, min_size=1, max_size=3))
        def one_message(frames: list[bytes]) -> None:
            raw.sock.send_multipart(frames)
            assert raw.still_answers()

        one_message()
        # An oversize frame and a frame with a wrong version get error replies with their request ids.
        raw.sock.send(b"\x81" + b"\x00" * (p.MAX_FRAME_BYTES + 10))
        raw.sock.send(p.encode(p.Status(rid=77, v=99, execution_ids=["x"])))
        replies = [p.decode_reply(raw.sock.recv()) for _ in range(2) if raw.sock.poll(10_000)]
        assert [(type(r), r.rid) for r in replies] == [(p.ErrorReply, 0), (p.ErrorReply, 77)]
        assert all(r.code == "protocol" for r in replies if isinstance(r, p.ErrorReply))
    finally:
        raw.sock.close(linger=0)
    assert proc.poll() is None, "the server process must still be running"

    async def real_client() -> p.ServerInfoReply:
        with trio.fail_after(10):
            async with open_connection(url) as conn:
                return await conn.server_info()

    info = trio.run(real_client)
    assert info.workers == 1
