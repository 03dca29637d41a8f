"""The wire: versioned, validated, plain-data messages and their MessagePack codec.

Every frame is one MessagePack map with a ``kind`` tag (a msgspec tagged union); nothing is ever pickled.
Decoding validates the shape and types before any code sees the message, and refuses frames over
:data:`MAX_FRAME_BYTES`. Requests carry ``rid`` (request id, chosen by the client, echoed in the reply) and ``v``
(protocol version). Events carry ``seq``, numbered from 1 per server instance, and the server's ``instance``.

Control: client DEALER ``[frame]`` → server ROUTER ``[identity, frame]``; replies come back the same way.
Events: server PUB ``[frame]`` → client SUB (subscribed to everything).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Protocol

import msgspec

from .errors import ProtocolError
from .model import ExecutionState

PROTOCOL_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 1 << 20
MAX_ERROR_BYTES: Final = 8192
"""UTF-8 bytes of an execution's error kept in its record and state events: bounds a record's size."""
MAX_DEPTH: Final = 32
"""Deepest nesting of arrays and maps a frame may hold (ours need 3). Checked without recursion, before any
decoder recurses: 2 KB of nested arrays must not exhaust the decoder's stack."""
HEARTBEAT_INTERVAL: Final = 1.0

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Name = Annotated[str, msgspec.Meta(max_length=256)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class _Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", forbid_unknown_fields=False):
    """Base of every message; the tag is the class's ``kind``."""


# --------------------------------------------------------------------------------------------- requests


class _Request(_Message, frozen=True, kw_only=True):
    rid: NonNegative
    v: int = PROTOCOL_VERSION


class Hello(_Request, frozen=True, kw_only=True, tag="hello"):
    """Handshake: the server answers with its instance id, version and capabilities."""

    client: Name = ""


class Compile(_Request, frozen=True, kw_only=True, tag="compile"):
    """Validate a pipeline against a plate folder (a path on the server) and store the plan as an artifact."""

    plate_path: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    plate_name: Name
    pipeline: Annotated[str, msgspec.Meta(max_length=256 * 1024)]
    config: dict[str, str] = {}


class Execute(_Request, frozen=True, kw_only=True, tag="execute"):
    """Run a compiled artifact; results go below ``output_dir/<plate>/`` on the server."""

    artifact_id: Id
    output_dir: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    force: bool = False


class Status(_Request, frozen=True, kw_only=True, tag="status"):
    """The records of many executions in one request; unknown ids come back in ``unknown``."""

    execution_ids: Annotated[list[Id], msgspec.Meta(max_length=100_000)]


class Cancel(_Request, frozen=True, kw_only=True, tag="cancel"):
    """Cancel exactly the named executions; every other execution goes on."""

    execution_ids: Annotated[list[Id], msgspec.Meta(max_length=100_000)]


class Pause(_Request, frozen=True, kw_only=True, tag="pause"):
    """Pause the named executions (none named: every live one): their running wells finish, no new well starts,
    and they report state ``paused`` until resumed. Executions submitted later are not affected."""

    execution_ids: Annotated[list[Id], msgspec.Meta(max_length=100_000)] = []


class Resume(_Request, frozen=True, kw_only=True, tag="resume"):
    """Resume the named paused executions (none named: every paused one); they go on where they stopped."""

    execution_ids: Annotated[list[Id], msgspec.Meta(max_length=100_000)] = []


class ServerInfo(_Request, frozen=True, kw_only=True, tag="server_info"):
    """Queued and running executions, workers, uptime; with ``records`` the retained execution records."""

    records: bool = False


class Shutdown(_Request, frozen=True, kw_only=True, tag="shutdown"):
    """Cancel everything and stop the server after replying. Refused (code ``security``) unless the server runs
    with ``--allow-remote-shutdown`` or ``token`` is the server's own shutdown token (an embedded server's host)."""

    token: Annotated[str, msgspec.Meta(max_length=256)] = ""


class Ping(_Request, frozen=True, kw_only=True, tag="ping"):
    """Publish a heartbeat now, then reply ok: how a client learns that its event subscription is live
    (a SUB socket misses everything published before its subscription reaches the publisher)."""


Request = Hello | Compile | Execute | Status | Cancel | Pause | Resume | ServerInfo | Shutdown | Ping

# --------------------------------------------------------------------------------------------- replies


class _Reply(_Message, frozen=True, kw_only=True):
    rid: NonNegative


class HelloReply(_Reply, frozen=True, kw_only=True, tag="hello_reply"):
    """``events_port``: where the PUB socket listens (same host); ``seq``: the last event number published."""

    version: int
    instance: Id
    events_port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    seq: NonNegative = 0
    capabilities: list[str] = []
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    workers: int = 0


class CompileReply(_Reply, frozen=True, kw_only=True, tag="compile_reply"):
    """A compiled plate; ``warnings``: what its layout reported (ignored files, files missing against the
    layout's promise, unreadable parts), one line each; ``layout``: the plate layout that read it.
    ``pipeline``: the name of the pipeline the plate compiled with; ``pipeline_file``: the plate's own pipeline
    file (relative to the plate folder) when its ``hcs_batch.toml`` named one, else empty (the batch's)."""

    artifact_id: Id
    plate_name: Name
    wells: list[str]
    sites: int
    channels: int
    steps: list[str]
    warnings: list[str] = []
    layout: Name = ""
    timepoints: int = 1
    z_planes: int = 1
    pipeline: Name = ""
    pipeline_file: Name = ""


class ExecuteReply(_Reply, frozen=True, kw_only=True, tag="execute_reply"):
    execution_id: Id


class ExecutionStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Where one execution stands: what a :class:`StateEvent` reports and an :class:`ExecutionRecord` starts with."""

    execution_id: Id
    plate_name: Name
    state: ExecutionState
    error: str = ""
    """Why it failed (empty otherwise)."""
    wells_total: NonNegative = 0
    wells_skipped: NonNegative = 0
    """Wells reused from an earlier run of the same images and pipeline (counted in ``wells_done``)."""


class ExecutionRecord(ExecutionStatus, frozen=True, kw_only=True):
    """What the server knows of one execution (a status reply's entry)."""

    artifact_id: Id
    """The compiled plan it runs (what ``execute`` named)."""
    wells_done: NonNegative = 0
    output: str = ""
    """The plate's results folder on the server."""
    submitted_at: float = 0.0
    """Server time (seconds since the epoch) when it was submitted; ``finished_at`` when it ended (0 until then)."""
    finished_at: float = 0.0


class ExecutionFacts(Protocol):
    """What an execution's keeper (the server's store, the in-memory test backend) holds of it besides its state."""

    execution_id: str
    artifact_id: str
    plate_name: str
    wells_done: int
    output: str
    submitted_at: float
    finished_at: float


_FACTS: Final = tuple(ExecutionFacts.__annotations__)


def execution_record(
    facts: ExecutionFacts, *, state: ExecutionState, error: str, wells_total: int, wells_skipped: int = 0
) -> ExecutionRecord:
    """The status record of an execution: its ``facts`` (every attribute :class:`ExecutionFacts` names) with the
    state, error and well totals as reported."""
    known = {name: getattr(facts, name) for name in _FACTS}
    return ExecutionRecord(state=state, error=error, wells_total=wells_total, wells_skipped=wells_skipped, **known)


class StatusReply(_Reply, frozen=True, kw_only=True, tag="status_reply"):
    executions: list[ExecutionRecord]
    unknown: list[str] = []


class CancelReply(_Reply, frozen=True, kw_only=True, tag="cancel_reply"):
    cancelled: list[str]
    already_terminal: list[str] = []
    unknown: list[str] = []


class PauseReply(_Reply, frozen=True, kw_only=True, tag="pause_reply"):
    """The answer to ``Pause`` and ``Resume``: ``changed`` were paused (resumed) now; ``unchanged`` already were
    (or, for resume, were not paused); ``already_terminal`` had ended; ``unknown`` the server does not know."""

    changed: list[str]
    unchanged: list[str] = []
    already_terminal: list[str] = []
    unknown: list[str] = []


class ServerInfoReply(_Reply, frozen=True, kw_only=True, tag="server_info_reply"):
    instance: Id
    version: int
    uptime: float
    workers: int
    queued: int
    running: int
    busy_workers: int = 0
    executions: list[ExecutionRecord] = []
    executions_omitted: int = 0
    """Records left out of ``executions`` to keep the reply under the frame limit (the oldest finished ones)."""


class OkReply(_Reply, frozen=True, kw_only=True, tag="ok"):
    pass


class ErrorReply(_Reply, frozen=True, kw_only=True, tag="error"):
    """A request failed; ``code`` is an ``HcsBatchError.code`` (see ``errors.error_from_code``)."""

    code: Name
    message: Annotated[str, msgspec.Meta(max_length=64 * 1024)]


Reply = (
    HelloReply
    | CompileReply
    | ExecuteReply
    | StatusReply
    | CancelReply
    | PauseReply
    | ServerInfoReply
    | OkReply
    | ErrorReply
)

# --------------------------------------------------------------------------------------------- events


Seq = Annotated[int, msgspec.Meta(ge=1)]


class _Event(_Message, frozen=True, kw_only=True):
    seq: Seq
    instance: Id


class ProgressEvent(_Event, frozen=True, kw_only=True, tag="progress"):
    """One step of one well of one execution finished: ``done`` of ``total`` (well, step) units. An empty
    ``step`` says the well started running (``done`` unchanged)."""

    execution_id: Id
    plate_name: Name
    well: Name
    step: Name
    done: NonNegative
    total: NonNegative


def progress_event(
    execution: ExecutionFacts, *, seq: int, instance: str, well: str, step: str, done: int, total: int
) -> ProgressEvent:
    """The progress event of ``execution`` (see :class:`ProgressEvent`), numbered ``seq`` by server ``instance``."""
    return ProgressEvent(
        seq=seq,
        instance=instance,
        execution_id=execution.execution_id,
        plate_name=execution.plate_name,
        well=well,
        step=step,
        done=done,
        total=total,
    )


class StateEvent(
    ExecutionStatus, frozen=True, kw_only=True, tag_field="kind", tag="state", forbid_unknown_fields=False
):
    """An execution changed state (its :class:`ExecutionStatus`): terminal states carry ``error`` when failed, and
    ``wells_total`` and ``wells_skipped`` once known. An event as the others are (``seq``, ``instance``), declared
    here because a struct takes its fields from one base."""

    seq: Seq
    instance: Id


def state_event(record: ExecutionRecord, *, seq: int, instance: str) -> StateEvent:
    """The state event that reports an execution's status ``record``, numbered ``seq`` by server ``instance``."""
    status = {name: getattr(record, name) for name in ExecutionStatus.__struct_fields__}
    return StateEvent(seq=seq, instance=instance, **status)


class HeartbeatEvent(_Event, frozen=True, kw_only=True, tag="heartbeat"):
    """Sent every ``HEARTBEAT_INTERVAL`` seconds: the server is alive and is this instance."""

    time: float
    queued: NonNegative = 0
    running: NonNegative = 0


class ShutdownEvent(_Event, frozen=True, kw_only=True, tag="shutdown"):
    """The server is shutting down (SIGTERM, Ctrl-C or a shutdown request): published before it cancels
    anything, so clients fail their live plates at once instead of waiting for the missing heartbeat."""

    reason: Name = ""


Event = ProgressEvent | StateEvent | HeartbeatEvent | ShutdownEvent

# --------------------------------------------------------------------------------------------- codec

_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(Request)
_reply_decoder = msgspec.msgpack.Decoder(Reply)
_event_decoder = msgspec.msgpack.Decoder(Event)


def encode(message: msgspec.Struct) -> bytes:
    """Encode one message to a frame."""
    return _encoder.encode(message)


_CONTAINER_HEADERS = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])
_NOT_CONTAINER = bytes(b for b in range(256) if b not in _CONTAINER_HEADERS)
# Bytes that follow a MessagePack header byte before the next item: (length-field size, fixed payload size).
_SKIP: dict[int, tuple[int, int]] = {
    0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0),  # bin 8/16/32
    0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1),  # ext 8/16/32 (+ type byte)
    0xCA: (0, 4), 0xCB: (0, 8),  # float 32/64
    0xCC: (0, 1), 0xCD: (0, 2), 0xCE: (0, 4), 0xCF: (0, 8),  # uint
    0xD0: (0, 1), 0xD1: (0, 2), 0xD2: (0, 4), 0xD3: (0, 8),  # int
    0xD4: (0, 2), 0xD5: (0, 3), 0xD6: (0, 5), 0xD7: (0, 9), 0xD8: (0, 17),  # fixext (+ type byte)
    0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),  # str 8/16/32
}  # fmt: skip


def nesting_depth_exceeds(frame: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when the MessagePack ``frame`` nests arrays/maps more than ``limit`` deep. Iterative (no recursion);
    a frame with at most ``limit`` container header bytes is cleared by one C-speed pass, so ordinary frames
    cost almost nothing. A truncated or invalid frame is left for the decoder to refuse."""
    if len(frame) <= limit or len(frame.translate(None, _NOT_CONTAINER)) <= limit:
        return False
    remaining = [1]  # items still to read at each open level
    pos, end = 0, len(frame)
    while remaining and pos < end:
        if remaining[-1] == 0:
            remaining.pop()
            continue
        remaining[-1] -= 1
        byte = frame[pos]
        pos += 1
        count = -1
        if 0x80 <= byte <= 0x8F:
            count = 2 * (byte & 0x0F)
        elif 0x90 <= byte <= 0x9F:
            count = byte & 0x0F
        elif byte in (0xDC, 0xDD, 0xDE, 0xDF):
            size = 2 if byte in (0xDC, 0xDE) else 4
            count = int.from_bytes(frame[pos : pos + size], "big") * (2 if byte >= 0xDE else 1)
            pos += size
        elif 0xA0 <= byte <= 0xBF:
            pos += byte & 0x1F
        elif byte in _SKIP:
            length_size, fixed = _SKIP[byte]
            pos += length_size + fixed + int.from_bytes(frame[pos : pos + length_size], "big")
        if count >= 0:
            remaining.append(count)
            if len(remaining) > limit + 1:
                return True
    return False


def _decode(decoder: msgspec.msgpack.Decoder[Any], frame: bytes, what: str, *, scan_depth: bool = True) -> Any:
    """Decode ``frame``; ``scan_depth``: refuse deep nesting before decoding (:func:`nesting_depth_exceeds`, a
    Python-speed walk of frames holding many arrays or maps). Without it, deep nesting still ends as a
    ``ProtocolError``: msgspec raises ``RecursionError`` cleanly (it counts its own recursion), caught here."""
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(f"{what} frame of {len(frame)} bytes is over the {MAX_FRAME_BYTES}-byte limit")
    if scan_depth and nesting_depth_exceeds(frame):
        raise ProtocolError(f"{what} frame nests arrays or maps more than {MAX_DEPTH} deep; refused")
    try:
        return decoder.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # ValidationError is a subclass of DecodeError
        # msgspec raises UnicodeDecodeError (not DecodeError) for a str that is not valid UTF-8.
        raise ProtocolError(f"malformed {what} frame: {exc}") from None
    except RecursionError:
        raise ProtocolError(f"{what} frame nests arrays or maps too deep to decode; refused") from None


def decode_request(frame: bytes) -> Request:
    """Decode and validate a request frame.

    Raises:
        ProtocolError: undecodable, oversize, unknown kind, bad field; or a protocol version other than ours.
    """
    request: Request = _decode(_request_decoder, frame, "request")
    if request.v != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {request.v} is not supported (this server speaks {PROTOCOL_VERSION}); "
            "upgrade the older side"
        )
    return request


def peek_rid(frame: bytes) -> int:
    """Best-effort request id of a frame that failed to decode, so the error reply can be matched; else 0."""
    if len(frame) > MAX_FRAME_BYTES or nesting_depth_exceeds(frame):
        return 0
    try:
        obj = msgspec.msgpack.decode(frame)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return 0
    rid = obj.get("rid") if isinstance(obj, dict) else None
    return rid if isinstance(rid, int) and not isinstance(rid, bool) and rid >= 0 else 0


def decode_reply(frame: bytes) -> Reply:
    """Decode and validate a reply frame. Raises ProtocolError.

    No depth scan first: a status reply of a screen holds thousands of records, and walking its ~1 MiB in Python
    took ~40 ms of the client's (the GUI's) thread; the typed decode refuses deep nesting by itself."""
    reply: Reply = _decode(_reply_decoder, frame, "reply", scan_depth=False)
    return reply


def decode_event(frame: bytes) -> Event:
    """Decode and validate an event frame. Raises ProtocolError (deep nesting too: see :func:`decode_reply`)."""
    event: Event = _decode(_event_decoder, frame, "event", scan_depth=False)
    return event
