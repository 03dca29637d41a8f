"""Bad input: plate names that would escape the output folder, and a live server fuzzed by several raw clients.

Real processes and sockets: ``hcs-batch serve`` in a subprocess, raw DEALER sockets (pyzmq, in threads) sending
garbage, and a real client that must keep getting correct answers meanwhile.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import zmq
import zmq.utils.monitor

from hcs_batch import protocol as p
from hcs_batch.client import open_connection
from hcs_batch.errors import ArtifactNotFoundError, InputError, PlateError
from hcs_batch.model import PlateRef, safe_plate_name
from hcs_batch.pipeline import noop_pipeline_text
from hcs_batch.testing.plates import make_plates

from ..support.serverproc import env, reap, start_server, stop

ESCAPES = ["../x", "..", "../../etc/passwd", "/abs", "/", "a/b", "a\\b", "", ".", ".hidden", "x/../../y", "a\x00b"]


def _tree(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in root.rglob("*")}


# ---------------------------------------------------------------------------------------------- the client


@pytest.mark.parametrize("name", ESCAPES)
def test_unsafe_plate_names_are_refused_by_the_client(name: str, tmp_path: Path) -> None:
    with pytest.raises(PlateError, match="cannot be used as an output folder name"):
        safe_plate_name(name)
    with pytest.raises(PlateError):  # however a host builds the reference
        PlateRef(name=name, path=tmp_path)


def test_from_path_names_the_plate_after_its_last_folder_only(tmp_path: Path) -> None:
    assert PlateRef.from_path(tmp_path / "a" / ".." / "plate 1").name == "plate 1"
    assert PlateRef.from_path("../x").name == "x"  # the folder's own name, never the path
    for bad in ("/", tmp_path / "plate" / ".."):
        with pytest.raises(PlateError):
            PlateRef.from_path(bad)


@pytest.mark.parametrize("path", ["/", "PLATES/.."])
def test_the_cli_refuses_an_escaping_plate_name_with_exit_2_and_one_line(path: str, tmp_path: Path) -> None:
    (tmp_path / "PLATES").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "hcs_batch", "compile", path],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot be used as an output folder name" in lines[0], result.stderr


# ---------------------------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def server_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``hcs-batch serve`` on a free loopback port, one worker; must still be serving at the end."""
    server = start_server(workers=1)
    try:
        yield server.proc, server.url
        assert server.proc.poll() is None, "the server must survive every test"
        assert stop(server) == 0
    finally:
        reap(server)


@pytest.fixture
def server_url(server_process: tuple[subprocess.Popen[str], str]) -> str:
    return server_process[1]


class _Raw:
    """A raw DEALER (blocking pyzmq): what anyone who reaches the port can send."""

    def __init__(self, url: str) -> None:
        self.sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(url)

    def reply(self, timeout_ms: int = 10_000) -> p.Reply:
        assert self.sock.poll(timeout_ms), "the server must answer every message"
        return p.decode_reply(self.sock.recv_multipart()[-1])

    def close(self) -> None:
        self.sock.close(linger=0)


async def test_hand_built_requests_with_escaping_names_get_error_replies_and_write_nothing(
    server_url: str, tmp_path: Path
) -> None:
    plate = make_plates(tmp_path / "plates", plates=1, wells=1, sites=1, channels=1, size=32, seed=1)[0]
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    before = _tree(tmp_path)
    raw = _Raw(server_url)
    try:
        for rid, name in enumerate(ESCAPES, start=1):
            compile_request = p.Compile(
                rid=rid, plate_path=str(plate), plate_name=name, pipeline=noop_pipeline_text(), config={}
            )
            raw.sock.send(p.encode(compile_request))
            reply = await trio.to_thread.run_sync(raw.reply)
            assert isinstance(reply, p.ErrorReply) and reply.rid == rid, reply
            assert reply.code == "plate" and "cannot be used as an output folder name" in reply.message
        # Execute names an artifact, never a path: a path-like id is just an unknown artifact.
        for rid, artifact in enumerate(["../../x", "/etc/passwd", "a/../b"], start=100):
            raw.sock.send(p.encode(p.Execute(rid=rid, artifact_id=artifact, output_dir=str(out))))
            reply = await trio.to_thread.run_sync(raw.reply)
            assert isinstance(reply, p.ErrorReply) and reply.code == "artifact_not_found", reply
    finally:
        raw.close()
    assert _tree(tmp_path) == before, "a refused request must write nothing anywhere"

    # A good plate next to them writes below out/<plate> only.
    with trio.fail_after(30):
        async with open_connection(server_url) as conn:
            compiled = await conn.compile(plate_path=str(plate), plate_name="good", pipeline=noop_pipeline_text())
            execution = await conn.execute(compiled.artifact_id, output_dir=str(out))
            async with conn.open_event_stream() as events:
                while (await conn.status([execution]))[0][0].state != "completed":
                    await events.receive()
    new = _tree(tmp_path) - before
    assert new and all(path.parts[:3] == ("work", "out", "good") for path in new), new


def _fuzz_messages(seed: int) -> list[tuple[list[bytes], int | None]]:
    """(multipart message, expected reply rid or None for 'any'): each one must get exactly one protocol error."""
    rng = random.Random(seed)
    valid = p.encode(
        p.Compile(rid=7, plate_path="/nowhere", plate_name="p", pipeline=noop_pipeline_text(), config={"a": "b"})
    )
    # Flipped bytes go into a request answered inline, so even one that stays valid is answered in order.
    inline = p.encode(p.Status(rid=8, execution_ids=["e1", "e2"]))
    messages: list[tuple[list[bytes], int | None]] = []
    for i in range(120):
        kind = i % 8
        rid = seed * 1000 + i
        if kind == 0:  # random bytes
            messages.append(([rng.randbytes(rng.randrange(0, 300))], None))
        elif kind == 1:  # a valid request cut short
            messages.append(([valid[: rng.randrange(1, len(valid))]], None))
        elif kind == 2:  # another protocol version
            messages.append(([p.encode(p.Status(rid=rid, v=p.PROTOCOL_VERSION + 1, execution_ids=["x"]))], rid))
        elif kind == 3:  # a reply sent as a request
            messages.append(([p.encode(p.OkReply(rid=rid))], rid))
        elif kind == 4:  # an event sent as a request
            messages.append(([p.encode(p.HeartbeatEvent(seq=1, instance="x", time=0.0))], None))
        elif kind == 5:  # an unknown kind, and a known kind with a field of the wrong type
            bogus = {"kind": "bogus", "rid": rid, "v": p.PROTOCOL_VERSION}
            wrong = {"kind": "status", "rid": rid, "v": p.PROTOCOL_VERSION, "execution_ids": 5}
            messages.append(([msgspec.msgpack.encode(rng.choice([bogus, wrong]))], rid))
        elif kind == 6:  # several frames, or an empty one
            messages.append((rng.choice([[valid, valid], [b""], [b"", valid]]), None))
        else:  # one byte flipped in a valid request
            j = rng.randrange(len(inline))
            messages.append(([inline[:j] + bytes([rng.randrange(256)]) + inline[j + 1 :]], None))
    # Two oversize frames (> 1 MiB) per client, one that even starts like a map.
    messages.append(([b"\x81" + b"\x00" * (p.MAX_FRAME_BYTES + 10)], 0))
    messages.append(([rng.randbytes(p.MAX_FRAME_BYTES + 1)], 0))
    rng.shuffle(messages)
    return messages


def _fuzz(url: str, seed: int) -> tuple[int, int]:
    """Send every fuzz message (up to 16 in flight) and check each gets one protocol error reply.

    Returns (messages sent, error replies). A flipped byte can leave a valid request (answered normally, or an
    error of another kind); those are counted but not required to be protocol errors.
    """
    raw = _Raw(url)
    messages = _fuzz_messages(seed)
    errors = 0
    try:
        in_flight: list[int | None] = []
        queue = list(messages)
        while queue or in_flight:
            while queue and len(in_flight) < 16:
                frames, rid = queue.pop()
                raw.sock.send_multipart(frames)
                in_flight.append(rid)
            reply = raw.reply()
            expected = in_flight.pop(0)  # one peer, one ROUTER: replies to frames answered inline come in order
            if expected is not None:
                assert isinstance(reply, p.ErrorReply) and reply.code == "protocol", reply
                assert reply.rid == expected, (reply, expected)
            if isinstance(reply, p.ErrorReply):
                errors += 1
        # Still answering this very client after all that.
        raw.sock.send(p.encode(p.Hello(rid=123)))
        hello = raw.reply()
        assert isinstance(hello, p.HelloReply) and hello.rid == 123
    finally:
        raw.close()
    return len(messages), errors


async def test_fuzzing_clients_never_stop_the_server_for_a_real_client(server_url: str, tmp_path: Path) -> None:
    plate = make_plates(tmp_path / "plates", plates=1, wells=2, sites=1, channels=1, size=32, seed=2)[0]
    fuzzers = 4
    results: list[tuple[int, int]] = []
    rounds = 0
    executions: list[str] = []

    async def fuzzer(seed: int) -> None:
        results.append(await trio.to_thread.run_sync(_fuzz, server_url, seed))

    with trio.fail_after(90):
        async with open_connection(server_url) as conn:
            async with trio.open_nursery() as nursery:
                for seed in range(1, fuzzers + 1):
                    nursery.start_soon(fuzzer, seed)
                # Meanwhile a real client compiles, runs and asks, and every answer is right.
                while len(results) < fuzzers or rounds < 3:
                    rounds += 1
                    name = f"plate-{rounds}"
                    compiled = await conn.compile(plate_path=str(plate), plate_name=name, pipeline=noop_pipeline_text())
                    assert compiled.plate_name == name and len(compiled.wells) == 2
                    execution = await conn.execute(compiled.artifact_id, output_dir=str(tmp_path / "out"))
                    executions.append(execution)
                    records, unknown = await conn.status([execution, "no-such-execution"])
                    assert [r.execution_id for r in records] == [execution] and unknown == ["no-such-execution"]
                    with pytest.raises(ArtifactNotFoundError, match="compile the plate again"):
                        await conn.execute("no-such-artifact", output_dir=str(tmp_path / "out"))
            # The executions finish on their own time: wait (on events) until the server reports them all done.
            async with conn.open_event_stream() as events:
                while True:
                    records, _ = await conn.status(executions)
                    if all(r.state == "completed" for r in records):
                        break
                    await events.receive()
            assert conn.lost is None
    assert len(results) == fuzzers
    for sent, errors in results:
        assert errors >= sent - 20, "nearly every fuzz message is a protocol error"  # a flipped byte may be valid
    assert rounds >= 3
    for i in range(1, rounds + 1):
        assert (tmp_path / "out" / f"plate-{i}" / "wells.csv").is_file()


async def test_the_client_reports_a_clear_error_for_an_oversize_request_and_an_error_reply(server_url: str) -> None:
    with trio.fail_after(30):
        async with open_connection(server_url) as conn:
            # Over the frame limit: refused before sending (the server could not address its error reply).
            with pytest.raises(InputError, match=r"compile request is \d+ bytes, over the protocol's 1048576-byte"):
                await conn.compile(plate_path="/x", plate_name="p", pipeline="#" * (p.MAX_FRAME_BYTES + 1))
            # An error reply becomes the exception it names, with the server's message.
            with pytest.raises(PlateError, match=r"plate name '\.\./x' cannot be used as an output folder name"):
                await conn.compile(plate_path="/x", plate_name="../x", pipeline=noop_pipeline_text())
            assert (await conn.server_info()).workers == 1


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_a_huge_frame_is_cut_off_before_the_server_buffers_it(
    server_process: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = server_process
    before = _peak_rss_kib(proc.pid)
    raw = _Raw(url)
    monitor = raw.sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
    try:

        def send_and_wait_for_the_cut() -> list[int]:
            raw.sock.send(b"\x81" + b"\x00" * (64 << 20))
            events = []
            while zmq.EVENT_DISCONNECTED not in events and monitor.poll(20_000):
                events.append(zmq.utils.monitor.recv_monitor_message(monitor)["event"])
            return events

        events = await trio.to_thread.run_sync(send_and_wait_for_the_cut)
        assert zmq.EVENT_DISCONNECTED in events, "the server must drop a peer that sends a 64 MiB frame"
    finally:
        raw.sock.disable_monitor()
        monitor.close(linger=0)
        raw.close()
    grown_mib = (_peak_rss_kib(proc.pid) - before) / 1024
    assert grown_mib < 32, f"the server's peak memory grew by {grown_mib:.0f} MiB for one rejected frame"
    with trio.fail_after(10):
        async with open_connection(url) as conn:
            assert (await conn.server_info()).workers == 1
