"""Hostile frames against a real ``hcs-batch serve`` process: no frame kills or wedges the server, every reply fits
the frame limit, and a pipeline that cannot be parsed is a pipeline error, never an internal one.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import zmq

from hcs_batch import protocol as p
from hcs_batch.client import open_connection
from hcs_batch.errors import ProtocolError
from hcs_batch.pipeline import noop_pipeline_text
from hcs_batch.server.control import ControlApp
from hcs_batch.testing.plates import make_plates

from ..support.serverproc import Server, reap, start_server, stop


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = start_server(workers=1)
    try:
        yield srv
        assert srv.proc.poll() is None, "the server must survive every hostile frame"
        assert stop(srv) == 0
    finally:
        reap(srv)


def _exchange(url: str, frame: bytes, timeout_ms: int = 20_000) -> tuple[bytes, p.Reply]:
    """Send one raw frame on a fresh DEALER; return the raw reply frame and its decoded form."""
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, p.MAX_FRAME_BYTES)  # a client following the protocol
    try:
        sock.connect(url)
        sock.send(frame)
        assert sock.poll(timeout_ms), "the server must answer (an oversize reply is dropped by this client)"
        raw = sock.recv_multipart()[-1]
        return raw, p.decode_reply(raw)
    finally:
        sock.close(linger=0)


async def _still_serving(url: str) -> None:
    with trio.fail_after(30):
        async with open_connection(url) as conn:
            assert (await conn.status(["x"])) == ([], ["x"])


async def test_2kb_of_nested_arrays_gets_an_error_reply_and_the_server_lives(server: Server) -> None:
    nested = b"\x91" * 2000 + b"\x90"  # the frame: 2 KB of one-element arrays
    _, reply = await trio.to_thread.run_sync(_exchange, server.url, nested)
    assert isinstance(reply, p.ErrorReply) and reply.code == "protocol", reply
    # Nested below a valid request id: the reply still names the request, and says why.
    head = msgspec.msgpack.encode({"kind": "status", "rid": 41, "v": 1, "execution_ids": ["a"], "x": None})
    assert head.endswith(b"\xa1x\xc0")
    frame = head[:-1] + b"\x91" * 3000 + b"\xc0"  # "x": 3,000 nested arrays (the encoder itself would recurse)
    _, reply = await trio.to_thread.run_sync(_exchange, server.url, frame)
    assert isinstance(reply, p.ErrorReply) and "deep" in reply.message, reply
    deep_map = b"\x81\xa1k" * 5000 + b"\xc0"  # maps nested in maps
    _, reply = await trio.to_thread.run_sync(_exchange, server.url, deep_map)
    assert isinstance(reply, p.ErrorReply) and reply.code == "protocol"
    assert server.proc.poll() is None
    await _still_serving(server.url)


async def test_a_status_of_7500_copies_of_one_id_gets_a_reply_within_the_frame_limit(
    server: Server, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        async with open_connection(server.url) as conn:
            plate = _plate(tmp_path)
            compiled = await conn.compile(plate_path=plate, plate_name="p", pipeline=noop_pipeline_text())
            execution_id = await conn.execute(compiled.artifact_id, output_dir=str(tmp_path / "out"))
    frame = p.encode(p.Status(rid=9, execution_ids=[execution_id] * 7500))
    raw, reply = await trio.to_thread.run_sync(_exchange, server.url, frame)
    assert len(raw) <= p.MAX_FRAME_BYTES
    assert isinstance(reply, p.StatusReply) and [r.execution_id for r in reply.executions] == [execution_id]
    frame = p.encode(p.Cancel(rid=10, execution_ids=["nope"] * 7500))
    _, cancel = await trio.to_thread.run_sync(_exchange, server.url, frame)
    assert isinstance(cancel, p.CancelReply) and cancel.unknown == ["nope"]


def _plate(folder: Path) -> str:
    return str(make_plates(folder / "plates", plates=1, wells=1, sites=1, channels=1, size=16, seed=2)[0])


async def test_a_deeply_nested_pipeline_is_a_pipeline_error_not_internal(server: Server, tmp_path: Path) -> None:
    plate = _plate(tmp_path)
    for pipeline in ["x = " + "[" * 5000 + "]" * 5000, "x = " + "{a = " * 3000 + "1" + "}" * 3000]:
        request = p.Compile(rid=5, plate_path=plate, plate_name="p", pipeline=pipeline + "\n[[steps]]\nfunc='a:b'\n")
        _, reply = await trio.to_thread.run_sync(_exchange, server.url, p.encode(request))
        assert isinstance(reply, p.ErrorReply), reply
        assert reply.code == "pipeline" and "internal" not in reply.message, reply
        assert "too deeply" in reply.message
    await _still_serving(server.url)


class _Router:
    """Records what the app sends (a policy test of the reply guard, no socket)."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []

    def send_nowait(self, frames: list[bytes]) -> None:
        self.sent.append(frames)


def test_a_reply_that_would_exceed_the_frame_limit_is_replaced_by_a_clear_error() -> None:
    app = ControlApp.__new__(ControlApp)
    app.router = _Router()  # type: ignore[assignment]
    record = p.ExecutionRecord(execution_id="e" * 128, artifact_id="a" * 128, plate_name="p", state="running")
    big = p.StatusReply(rid=3, executions=[record] * 5000)
    assert len(p.encode(big)) > p.MAX_FRAME_BYTES
    app._send(b"id", big)
    (identity, frame), *_ = app.router.sent  # type: ignore[attr-defined]
    reply = p.decode_reply(frame)
    assert identity == b"id" and len(frame) < p.MAX_FRAME_BYTES
    assert isinstance(reply, p.ErrorReply) and reply.rid == 3 and "ask for fewer execution ids" in reply.message


def test_depth_check_accepts_every_real_message_and_is_iterative() -> None:
    record = p.ExecutionRecord(execution_id="e", artifact_id="a", plate_name="Platte_Müller", state="queued")
    for message in [
        p.ServerInfoReply(rid=1, instance="i", version=1, uptime=1.0, workers=1, queued=0, running=0,
                          executions=[record] * 100),
        p.Compile(rid=1, plate_path="/x", plate_name="é" * 200, pipeline="ü" * 100_000, config={"a": "b"}),
    ]:  # fmt: skip
        assert not p.nesting_depth_exceeds(p.encode(message))
    import sys

    assert p.nesting_depth_exceeds(b"\x91" * (sys.getrecursionlimit() * 10) + b"\xc0")  # no RecursionError
    assert not p.nesting_depth_exceeds(b"\x91" * 32 + b"\xc0") and p.nesting_depth_exceeds(b"\x91" * 33 + b"\xc0")


def test_a_client_refuses_deeply_nested_replies_and_events_without_a_recursion_error() -> None:
    """Replies and events are decoded without the Python-speed depth walk (a 1 MiB status reply took ~40 ms of
    the GUI's thread); deep nesting from a hostile server is still a ProtocolError, never a RecursionError."""
    import sys

    deep = b"\x91" * (sys.getrecursionlimit() * 50) + b"\xc0"
    head = msgspec.msgpack.encode({"kind": "status_reply", "rid": 1, "executions": [], "junk": None})
    for frame in (head[:-1] + deep, deep):  # nested in an unknown field (skipped by msgspec), or bare
        with pytest.raises(ProtocolError):
            p.decode_reply(frame)
        with pytest.raises(ProtocolError):
            p.decode_event(frame)


def test_the_server_process_exits_cleanly_after_the_hostile_frames(server: Server) -> None:
    assert isinstance(server.proc, subprocess.Popen) and server.proc.poll() is None
