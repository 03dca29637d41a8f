"""The control loop: one ROUTER socket, every frame decoded and validated, quick requests answered inline.

``Hello``, ``Status``, ``Cancel``, ``ServerInfo`` and ``Shutdown`` are answered inside the socket's receive
callback (no task switch, no allocation beyond the reply); ``Compile`` (lists the plate folder, imports allowed
steps) and ``Execute`` (resolves the output folder against the output roots) touch the file system, so they run
as tasks (the file-system calls on the server's :class:`~hcs_batch.runtime.thread_lane.ThreadLane`, a pipeline's
first check in a thread of its own).

Trust: steps outside the server's :class:`~.allowlist.StepAllowlist` are refused unimported; plate and output
folders outside its :class:`~.roots.Roots` are refused with one message whether or not they exist; ``Shutdown``
is refused unless the server allows remote shutdown or the request carries the server's own shutdown token (an
embedded server's own client). Every reply fits the frame limit: a ``Status`` or ``Cancel`` names each id once
however often it was asked, and a reply that would still be too big is replaced by an error saying what to ask.

A frame that does not decode (garbage, oversize, unknown kind, wrong version) gets an ``ErrorReply`` with code
``protocol`` and the best-effort request id, and is logged; the server keeps serving. A message without a usable
envelope (no identity frame) is dropped.

``Compile.config["pipeline_file"]``, when a client sets it, names the pipeline in compile error messages (unlike
the other config entries, it is not part of the artifact id: the pipeline's text is). ``Compile.config["layout"]``
names the plate layout (see :mod:`.layouts`; detected from the folder's content when absent),
``Compile.config["projection"]`` how z-planes are projected (see :mod:`.compiler`). The layout's warnings come
back in ``CompileReply.warnings``.

A plate folder holding ``hcs_batch.toml`` (:mod:`hcs_batch.plate_settings`) compiles with the pipeline and config
overrides it names instead of the request's; they are part of its artifact id, and the reply names the pipeline.
``Pause``/``Resume`` are answered inline like ``Cancel``.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import time

import trio

from .. import protocol as p
from .._util import clip_text, log_throttled
from .._zmq import AsyncSocket, Frames
from ..errors import ConnectionClosedError, HcsBatchError
from ..model import safe_plate_name
from ..plate_settings import SETTINGS_FILE, merged_config
from ..runtime.thread_lane import ThreadLane
from .allowlist import StepAllowlist
from .compiler import CompiledPipeline, compile_pipeline, compile_plate
from .events import EventPublisher
from .executor import Executor
from .identity import content_identity
from .layouts import choose_layout, flat
from .plate_files import read_plate_files
from .roots import Roots, check_output_dir, list_plate_folder

__all__ = ["CAPABILITIES", "ControlApp", "ServerAddress"]

log = logging.getLogger("hcs_batch.server")

CAPABILITIES = [
    "compile",
    "execute",
    "status",
    "cancel",
    "pause",
    "server_info",
    "shutdown",
    "inline_noop",
    "skip_done_wells",
    "plate_settings",
]
_MAX_MESSAGE = 60 * 1024
_RECORDS_BUDGET = p.MAX_FRAME_BYTES * 3 // 4
"""Bytes of execution records in one ``ServerInfoReply``: the rest of the frame limit is room for the envelope."""
_PIPELINE_CACHE = 256


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServerAddress:
    """Where a running server listens: its control URL (``tcp://host:port``) and its PUB port on the same host."""

    control_url: str
    events_port: int
    shutdown_token: str = ""
    """A secret that lets the holder shut the server down (given to an embedded server's own client only)."""


@dataclasses.dataclass(slots=True, kw_only=True, eq=False)
class ControlApp:
    """Answers control requests arriving on ``router``; spawns compile tasks into ``nursery``.

    ``address``: where the server listens (``HelloReply.events_port``) and its shutdown token; ``lane``: the
    server's file-system lane for plate folders; ``check_lane``: the one for an execute request's output-folder
    check (not the executor's lane: behind a screen's queued result writes and plate maps the reply waited ~1 s
    at 1,000 plates, and a stopping client waits for every execute reply it started).
    """

    router: AsyncSocket
    nursery: trio.Nursery
    executor: Executor
    publisher: EventPublisher
    address: ServerAddress
    shutdown: trio.Event
    lane: ThreadLane
    allowlist: StepAllowlist
    roots: Roots
    check_lane: ThreadLane
    allow_remote_shutdown: bool = False
    stopping: bool = dataclasses.field(default=False, init=False)
    _started: float = dataclasses.field(default_factory=time.monotonic, init=False)
    _bad_frames: int = dataclasses.field(default=0, init=False)
    _pipelines: dict[tuple[str, str], CompiledPipeline] = dataclasses.field(default_factory=dict, init=False)

    # ------------------------------------------------------------------ frames

    def _send(self, identity: bytes, reply: p.Reply) -> None:
        frame = p.encode(reply)
        if len(frame) > p.MAX_FRAME_BYTES:
            # A client following the protocol drops an oversize frame and would wait for ever: say so instead.
            kind = reply.__struct_config__.tag
            log.warning("a %s reply of %d bytes is over the frame limit; replying with an error", kind, len(frame))
            hint = " (ask for fewer execution ids at once)" if isinstance(reply, p.StatusReply | p.CancelReply) else ""
            frame = p.encode(
                p.ErrorReply(
                    rid=reply.rid,
                    code="input",
                    message=f"the {kind} would be {len(frame)} bytes, over the {p.MAX_FRAME_BYTES}-byte frame "
                    f"limit{hint}",
                )
            )
        try:
            self.router.send_nowait([identity, frame])
        except ConnectionClosedError:
            pass  # the server is stopping; the client's own deadline handles the lost reply

    def _error(self, identity: bytes, rid: int, code: str, message: str) -> None:
        self._send(identity, p.ErrorReply(rid=rid, code=code, message=clip_text(message, _MAX_MESSAGE)))

    def _bad_frame(self, what: str) -> None:
        self._bad_frames += 1
        if log_throttled(self._bad_frames):
            log.warning("bad control frame (%d so far): %s", self._bad_frames, clip_text(what, 300))

    def on_frames(self, frames: Frames) -> None:
        """Handle one ROUTER message ``[identity, frame]``. Never raises: one bad request cannot stop the loop."""
        if len(frames) < 2 or not frames[0]:
            self._bad_frame(f"message of {len(frames)} part(s) without an envelope, dropped")
            return
        identity = frames[0]
        if len(frames) != 2:
            self._bad_frame(f"message of {len(frames)} parts, expected [identity, frame]")
            self._error(identity, p.peek_rid(frames[-1]), "protocol", "a request is exactly one frame")
            return
        frame = frames[1]
        try:
            request = p.decode_request(frame)
        except HcsBatchError as exc:
            self._bad_frame(str(exc))
            self._error(identity, p.peek_rid(frame), exc.code, str(exc))
            return
        except Exception as exc:  # a decoder bug must not stop the server: treat it as a bad frame
            self._bad_frame(f"undecodable frame ({type(exc).__name__}: {exc})")
            self._error(identity, 0, "protocol", f"malformed request frame: {type(exc).__name__}")
            return
        try:
            self._dispatch(identity, request)
        except HcsBatchError as exc:
            self._error(identity, request.rid, exc.code, str(exc))
        except Exception as exc:
            log.exception("request %s failed", type(request).__name__)
            self._error(identity, request.rid, "error", f"internal server error: {type(exc).__name__}: {exc}")

    def _dispatch(self, identity: bytes, request: p.Request) -> None:
        executor = self.executor
        if isinstance(request, p.Status):
            executions: list[p.ExecutionRecord] = []
            unknown: list[str] = []
            get = executor.records.get
            for execution_id in dict.fromkeys(request.execution_ids):  # each id once: the reply stays small
                found = get(execution_id)
                if found is None:
                    unknown.append(execution_id)
                else:
                    executions.append(found.record())
            self._send(identity, p.StatusReply(rid=request.rid, executions=executions, unknown=unknown))
        elif isinstance(request, p.Hello):
            self._send(
                identity,
                p.HelloReply(
                    rid=request.rid,
                    version=p.PROTOCOL_VERSION,
                    instance=self.publisher.instance,
                    events_port=self.address.events_port,
                    seq=self.publisher.seq,
                    capabilities=CAPABILITIES,
                    heartbeat_interval=p.HEARTBEAT_INTERVAL,
                    workers=executor.workers,
                ),
            )
        elif isinstance(request, p.ServerInfo):
            records, omitted = self._records_within_budget() if request.records else ([], 0)
            self._send(
                identity,
                p.ServerInfoReply(
                    rid=request.rid,
                    instance=self.publisher.instance,
                    version=p.PROTOCOL_VERSION,
                    uptime=time.monotonic() - self._started,
                    executions=records,
                    executions_omitted=omitted,
                    **dataclasses.asdict(executor.statistics()),
                ),
            )
        elif isinstance(request, p.Ping):
            stats = executor.statistics()
            self.publisher.heartbeat(queued=stats.queued, running=stats.running)
            self._send(identity, p.OkReply(rid=request.rid))
        elif isinstance(request, p.Cancel):
            cancelled, terminal, unknown = executor.cancel(list(dict.fromkeys(request.execution_ids)))
            self._send(
                identity,
                p.CancelReply(rid=request.rid, cancelled=cancelled, already_terminal=terminal, unknown=unknown),
            )
        elif isinstance(request, p.Pause | p.Resume):
            changed, unchanged, terminal, unknown = executor.pause(
                request.execution_ids, paused=isinstance(request, p.Pause)
            )
            self._send(
                identity,
                p.PauseReply(
                    rid=request.rid, changed=changed, unchanged=unchanged, already_terminal=terminal, unknown=unknown
                ),
            )
        elif self.stopping:
            self._error(identity, request.rid, "error", "the server is shutting down")
        elif isinstance(request, p.Execute):
            executor.artifacts.get(request.artifact_id)  # an unknown artifact is refused without a thread hop
            self.nursery.start_soon(self._execute, identity, request)
        elif isinstance(request, p.Compile):
            self.nursery.start_soon(self._compile, identity, request)
        elif isinstance(request, p.Shutdown):
            if not self._may_shut_down(request.token):
                self._error(
                    identity,
                    request.rid,
                    "security",
                    "shutdown refused: only the server's operator may stop it (Ctrl-C or SIGTERM on 'hcs-batch "
                    "serve'), unless it was started with --allow-remote-shutdown",
                )
                return
            self._send(identity, p.OkReply(rid=request.rid))
            self.stopping = True
            self.shutdown.set()

    def _may_shut_down(self, token: str) -> bool:
        if self.allow_remote_shutdown:
            return True
        own = self.address.shutdown_token
        return bool(own) and hmac.compare_digest(token.encode(), own.encode())

    async def _execute(self, identity: bytes, request: p.Execute) -> None:
        try:
            plan = self.executor.artifacts.get(request.artifact_id)
            plate_dir = await self.check_lane.run(check_output_dir, request.output_dir, plan.plate_name, self.roots)
            if self.stopping:
                raise HcsBatchError("the server is shutting down")
            execution = self.executor.submit(plan, output_dir=str(plate_dir.parent), force=request.force)
        except HcsBatchError as exc:
            self._error(identity, request.rid, exc.code, str(exc))
            return
        self._send(identity, p.ExecuteReply(rid=request.rid, execution_id=execution.execution_id))

    def _records_within_budget(self) -> tuple[list[p.ExecutionRecord], int]:
        """Execution records for ``ServerInfo``: live ones first, then finished ones newest first, as many as fit in
        :data:`_RECORDS_BUDGET` bytes; returned oldest first, with how many were left out. A reply over the frame
        limit would be dropped by the client, leaving it waiting."""
        everything = self.executor.records.all()  # finished (oldest first), then live
        kept: list[p.ExecutionRecord] = []
        size = 0
        for execution in reversed(everything):
            record = execution.record()
            size += len(p.encode(record))
            if size > _RECORDS_BUDGET:
                break
            kept.append(record)
        kept.reverse()
        return kept, len(everything) - len(kept)

    async def _compile(self, identity: bytes, request: p.Compile) -> None:
        try:
            safe_plate_name(request.plate_name)
            # Only the listdir runs in a thread (the server's lane: the listings of many compiles share one hop).
            # It checks the folder against the data roots and returns its real path, which the index is built on.
            # A flat plate's index is pure computation, kept on the Trio thread: Python work in threads makes the
            # event loop wait for the GIL (measured: noop plates/s halved). Other layouts read metadata files.
            plate_path, names = await self.lane.run(list_plate_folder, request.plate_path, self.roots)
            text, config, pipeline_file = request.pipeline, dict(request.config), ""
            if SETTINGS_FILE in names:  # the plate's own settings win over the batch's
                files = await self.lane.run(read_plate_files, plate_path, names)
                if files is not None:
                    config = merged_config(request.config, files.settings)
                    if files.pipeline_text is not None and files.settings.pipeline is not None:
                        text, pipeline_file = files.pipeline_text, files.settings.pipeline
                        config["pipeline_file"] = f"{request.plate_path}/{pipeline_file}"
            source = config.get("pipeline_file", "<pipeline>")
            key = (text, source)
            pipeline = self._pipelines.get(key)
            if pipeline is None:
                # Imports user modules (maybe slow): off the Trio thread. Later compiles hit the cache.
                pipeline = await trio.to_thread.run_sync(compile_pipeline, text, source, self.allowlist)
                if len(self._pipelines) >= _PIPELINE_CACHE:
                    self._pipelines.clear()
                self._pipelines[key] = pipeline
            layout = choose_layout(names, config.get("layout"))
            if layout is flat:
                index = flat.index_from_names(plate_path, names)
            else:
                # A thread of its own: one large Index XML or zarr store must not hold up other plates' listings.
                index = await trio.to_thread.run_sync(layout.read, plate_path, names)
            # What resume keys on (sizes and mtimes of the images); an inline pipeline reads no image, needs none.
            content = None if pipeline[2] else await trio.to_thread.run_sync(content_identity, index.path, index.wells)
            plan = compile_plate(index, request.plate_name, text, config, pipeline, content)
        except HcsBatchError as exc:
            self._error(identity, request.rid, exc.code, str(exc))
            return
        except Exception as exc:
            log.exception("compiling plate %s failed", request.plate_name)
            self._error(identity, request.rid, "error", f"internal server error: {type(exc).__name__}: {exc}")
            return
        self.executor.artifacts.put(plan)
        self._send(
            identity,
            p.CompileReply(
                rid=request.rid,
                artifact_id=plan.artifact_id,
                plate_name=plan.plate_name,
                wells=list(plan.wells),
                sites=plan.sites,
                channels=plan.channels,
                steps=[step.name for step in plan.steps],
                warnings=list(plan.warnings),
                layout=plan.layout,
                timepoints=plan.timepoints,
                z_planes=plan.z_planes,
                pipeline=plan.pipeline_name[:256],
                pipeline_file=pipeline_file[:256],
            ),
        )
