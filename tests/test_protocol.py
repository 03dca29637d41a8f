"""Every message survives a round trip; the decoder never raises anything but ProtocolError."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hcs_batch import protocol as p
from hcs_batch.errors import ProtocolError
from hcs_batch.model import ExecutionState

RECORD = p.ExecutionRecord(
    execution_id="e1", artifact_id="a1", plate_name="plate", state="running", wells_done=1, wells_total=4
)

REQUESTS: list[Any] = [
    p.Hello(rid=1, client="t"),
    p.Compile(rid=2, plate_path="/x", plate_name="x", pipeline="[[steps]]", config={"k": "v"}),
    p.Execute(rid=3, artifact_id="a1", output_dir="/o", force=True),
    p.Status(rid=4, execution_ids=["e1", "e2"]),
    p.Cancel(rid=5, execution_ids=["e1"]),
    p.ServerInfo(rid=6, records=True),
    p.Shutdown(rid=7),
    p.Pause(rid=8, execution_ids=["e1"]),
    p.Pause(rid=9),
    p.Resume(rid=10, execution_ids=["e1", "e2"]),
]
REPLIES: list[Any] = [
    p.HelloReply(rid=1, version=1, instance="i", events_port=5001, seq=9, capabilities=["a"], workers=2),
    p.CompileReply(rid=2, artifact_id="a", plate_name="x", wells=["A01"], sites=1, channels=2, steps=["noop"]),
    p.ExecuteReply(rid=3, execution_id="e1"),
    p.StatusReply(rid=4, executions=[RECORD], unknown=["e9"]),
    p.CancelReply(rid=5, cancelled=["e1"], already_terminal=["e2"], unknown=["e3"]),
    p.ServerInfoReply(rid=6, instance="i", version=1, uptime=1.5, workers=2, queued=1, running=1, executions=[RECORD]),
    p.OkReply(rid=7),
    p.ErrorReply(rid=8, code="pipeline", message="bad"),
    p.PauseReply(rid=9, changed=["e1"], unchanged=["e2"], already_terminal=["e3"], unknown=["e4"]),
    p.CompileReply(
        rid=10,
        artifact_id="a",
        plate_name="x",
        wells=[],
        sites=1,
        channels=1,
        steps=[],
        pipeline="own",
        pipeline_file="p",
    ),
]
EVENTS: list[Any] = [
    p.ProgressEvent(seq=1, instance="i", execution_id="e", plate_name="x", well="A01", step="s", done=1, total=2),
    p.StateEvent(seq=2, instance="i", execution_id="e", plate_name="x", state="failed", error="why"),
    p.HeartbeatEvent(seq=3, instance="i", time=1.0, queued=1, running=2),
]


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: type(m).__name__)
def test_request_round_trip(message: Any) -> None:
    assert p.decode_request(p.encode(message)) == message


@pytest.mark.parametrize("message", REPLIES, ids=lambda m: type(m).__name__)
def test_reply_round_trip(message: Any) -> None:
    assert p.decode_reply(p.encode(message)) == message


@pytest.mark.parametrize("message", EVENTS, ids=lambda m: type(m).__name__)
def test_event_round_trip(message: Any) -> None:
    assert p.decode_event(p.encode(message)) == message


def test_wrong_version_oversize_unknown_kind_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="version 99"):
        p.decode_request(p.encode(p.Hello(rid=1, v=99)))
    with pytest.raises(ProtocolError, match="limit"):
        p.decode_request(b"\x00" * (p.MAX_FRAME_BYTES + 1))
    frame = msgspec.msgpack.encode({"kind": "launch_missiles", "rid": 5})
    with pytest.raises(ProtocolError):
        p.decode_request(frame)
    assert p.peek_rid(frame) == 5


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
_kinds = st.sampled_from(["hello", "compile", "execute", "status", "cancel", "server_info", "shutdown", "nope", ""])
_fields = st.sampled_from(
    [
        "rid",
        "v",
        "client",
        "plate_path",
        "plate_name",
        "pipeline",
        "config",
        "artifact_id",
        "output_dir",
        "force",
        "execution_ids",
        "records",
    ]
)
wrong_maps = st.builds(
    lambda kind, fields: {"kind": kind, **fields},
    _kinds,
    st.dictionaries(_fields | st.text(max_size=8), _values, max_size=6),
)


def _decode_or_protocol_error(frame: bytes) -> None:
    try:
        request = p.decode_request(frame)
    except ProtocolError:
        return
    assert request.v == p.PROTOCOL_VERSION and request.rid >= 0


def test_invalid_utf8_is_a_protocol_error() -> None:
    # msgspec raises UnicodeDecodeError for a str that is not UTF-8; the codec must turn it into ProtocolError.
    frame = msgspec.msgpack.encode({"kind": "hello", "rid": 3, "client": "abc"}).replace(b"abc", b"a\x80c")
    with pytest.raises(ProtocolError):
        p.decode_request(frame)
    assert p.peek_rid(frame) == 0


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_decoder_fuzz_random_bytes(frame: bytes) -> None:
    _decode_or_protocol_error(frame)
    assert p.peek_rid(frame) >= 0


@settings(max_examples=400, deadline=None)
@given(wrong_maps)
def test_decoder_fuzz_wrong_maps(obj: dict[str, Any]) -> None:
    frame = msgspec.msgpack.encode(obj)
    _decode_or_protocol_error(frame)
    assert p.peek_rid(frame) >= 0


def test_a_state_event_carries_what_its_record_says() -> None:
    # state_event copies every field a StateEvent has beyond the envelope from the record, by name.
    record = msgspec.structs.replace(RECORD, state=ExecutionState.FAILED, error="why", wells_skipped=2)
    event = p.state_event(record, seq=7, instance="i")
    assert event == p.StateEvent(
        seq=7,
        instance="i",
        execution_id="e1",
        plate_name="plate",
        state=ExecutionState.FAILED,
        error="why",
        wells_total=4,
        wells_skipped=2,
    )
    assert p.decode_event(p.encode(event)) == event


def test_an_execution_record_copies_every_fact() -> None:
    class Facts:
        execution_id = "e1"
        artifact_id = "a1"
        plate_name = "plate"
        wells_done = 3
        output = "/out/plate"
        submitted_at = 1.5
        finished_at = 2.5

    record = p.execution_record(Facts(), state=ExecutionState.COMPLETED, error="", wells_total=4, wells_skipped=1)
    assert msgspec.structs.asdict(record) == {
        "execution_id": "e1",
        "artifact_id": "a1",
        "plate_name": "plate",
        "state": ExecutionState.COMPLETED,
        "error": "",
        "wells_done": 3,
        "wells_total": 4,
        "wells_skipped": 1,
        "output": "/out/plate",
        "submitted_at": 1.5,
        "finished_at": 2.5,
    }
