"""Cancellation everywhere, as properties: whatever the batch size, whichever plates fail (at compile or at
execute, or are rejected), and whenever the batch is stopped (Stop, Stop twice, the caller cancelled as Ctrl-C
does, or the server lost), every plate ends in exactly one terminal state, "all plates completed" fires once,
and nothing is left running on the server.

Many examples on the in-memory backend in virtual time; a few on a real embedded server with worker processes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hcs_batch import PipelineError, PlateRef, PlateState, ServerLostError
from hcs_batch.client import open_connection
from hcs_batch.errors import RemoteError
from hcs_batch.server import open_embedded_server
from hcs_batch.testing import open_in_memory_backend
from hcs_batch.testing.plates import make_plates
from hcs_batch.workflow.service import BatchState, BatchSummary, BatchWorkflowService

from ..support.procs import survivors
from ..support.serverproc import pids_in
from .test_service import RecordingHost

PIPELINE = 'name = "p"\n[[steps]]\nfunc = "hcs_batch.steps:noop"\n'


@dataclass(frozen=True)
class Scenario:
    plates: int
    compile_failing: frozenset[int]
    execute_failing: frozenset[int]
    rejected: frozenset[int]
    compile_delay: float
    execute_delay: float
    workers: int | None
    fail_fast: bool
    how: str  # "none", "stop", "stop_twice", "caller_cancel", "lose", "freeze_then_stop"
    at: float


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 12))
    indexes = st.frozensets(st.integers(0, n - 1), max_size=n)
    return Scenario(
        plates=n,
        compile_failing=draw(indexes),
        execute_failing=draw(indexes),
        rejected=draw(indexes),
        compile_delay=draw(st.sampled_from([0.0, 0.5, 2.0])),
        execute_delay=draw(st.sampled_from([0.0, 1.0, 10.0])),
        workers=draw(st.sampled_from([None, 1, 3])),
        fail_fast=draw(st.booleans()),
        how=draw(st.sampled_from(["none", "stop", "stop_twice", "caller_cancel", "lose", "freeze_then_stop"])),
        at=draw(st.floats(0.0, 30.0) | st.sampled_from([0.0, 0.5, 2.0, 2.5])),
    )


def assert_converged(host: RecordingHost, summary: BatchSummary, names: list[str]) -> None:
    assert [o.plate.name for o in summary.plates] == names
    assert all(o.state.is_terminal for o in summary.plates), summary.plates
    assert host.terminal_counts() == dict.fromkeys(names, 1), host.transitions
    # The last state each plate was shown is the one it ended in.
    assert {n: host.transitions[n][-1] for n in names} == {o.plate.name: o.state for o in summary.plates}
    assert len(host.all_done) == 1 and host.all_done[0] == summary
    assert sorted(c[0] for c in host.completed) == sorted(names)


async def _in_memory(s: Scenario) -> None:
    names = [f"P{i}" for i in range(s.plates)]
    refs = [PlateRef(name=n, path=Path(f"/plates/{n}")) for n in names]
    async with open_in_memory_backend(
        compile_delay=s.compile_delay,
        execute_delay=s.execute_delay,
        workers=s.workers,
        compile_failures={names[i]: PipelineError(f"bad step in {names[i]}") for i in s.compile_failing},
        execute_failures={names[i]: f"step failed in {names[i]}" for i in s.execute_failing},
        reject_execute={names[i]: RemoteError(f"rejected {names[i]}") for i in s.rejected},
    ) as backend:
        host = RecordingHost()
        service = BatchWorkflowService(host, backend, pipeline_text=PIPELINE, output_dir="/out", fail_fast=s.fail_fast)
        result: list[BatchSummary] = []
        caller = trio.CancelScope()
        stopped_at: list[float] = []

        async def run() -> None:
            with caller:
                result.append(await service.run_plates(refs))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)

            async def fault() -> None:
                await trio.sleep(s.at)
                if s.how in ("stop", "stop_twice"):
                    service.stop()
                    if s.how == "stop_twice":
                        service.stop()
                elif s.how == "caller_cancel":
                    caller.cancel()
                elif s.how == "lose":
                    backend.lose(ServerLostError("server lost: no heartbeat for 5 s"))
                elif s.how == "freeze_then_stop":
                    backend.freeze()  # a hung server: requests in flight never answer
                    service.stop()
                stopped_at.append(trio.current_time())

            if s.how != "none":
                nursery.start_soon(fault)
            while service.active or not (result or caller.cancelled_caught):  # noqa: ASYNC110
                await trio.sleep(0.5)  # virtual time: the batch's end, not a delay, ends this loop
            ended_at = trio.current_time()
            nursery.cancel_scope.cancel()

        assert len(host.all_done) == 1
        summary = result[0] if result else host.all_done[0]
        assert_converged(host, summary, names)
        assert service.batch_state.value is BatchState.IDLE and not service.active
        states = {o.plate.name: o for o in summary.plates}
        failing = {names[i] for i in s.compile_failing | s.execute_failing | s.rejected}
        for name in failing:
            assert states[name].state is not PlateState.COMPLETED
        if s.how == "freeze_then_stop" and stopped_at:
            # Bounded even against a hung server: a submit in flight waits at most request_timeout (10 s), the
            # targeted cancel at most cancel_timeout (5 s); the 0.5 s is this loop's own granularity.
            assert ended_at - stopped_at[0] <= 10 + 5 + 0.5
        elif s.how == "lose":
            # A lost server is never reported as a cancel, unless fail-fast stopped the batch after a failure.
            if not s.fail_fast:
                assert all(o.state is not PlateState.CANCELLED for o in summary.plates), summary.plates
        else:
            assert backend.live_executions() == [], "a stopped batch leaves nothing running on the server"
            assert all("server lost" not in o.error for o in summary.plates)
            if s.how == "none" and not s.fail_fast:
                expected = {n: PlateState.FAILED if n in failing else PlateState.COMPLETED for n in names}
                assert {n: o.state for n, o in states.items()} == expected
            if s.how in ("stop", "stop_twice") and summary.stopped:
                assert len(backend.cancel_log) <= 1, "one targeted cancel, however many clicks"
                assert summary.exit_code() == 130 or summary.succeeded


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_every_plate_ends_once_whatever_fails_and_whenever_it_stops(s: Scenario) -> None:
    trio.run(_in_memory, s, clock=trio.testing.MockClock(autojump_threshold=0))


# --------------------------------------------------------------------------------------------- real server

BY_SIZE = """
name = "by_size"
[[steps]]
func = "tests.support.slow_steps:by_size"
gate_dir = "{gate_dir}"
hold_size = 24
fail_size = 32
"""
SIZES = {"fast": 16, "hold": 24, "fail": 32}


def _real_plates(root: Path, kinds: list[str]) -> list[PlateRef]:
    """One folder per plate: "fast" completes at once, "hold" blocks its worker until killed, "fail" fails its
    well, "broken" has no images (its compile fails)."""
    refs = []
    for i, kind in enumerate(kinds):
        target = root / f"{kind}_{i}"
        if kind == "broken":
            target.mkdir(parents=True)
        else:
            made = make_plates(root / f"made_{i}", plates=1, wells=1, sites=1, channels=1, size=SIZES[kind], seed=i)
            shutil.move(made[0], target)
        refs.append(PlateRef.from_path(target))
    return refs


async def _real(kinds: list[str], moment: tuple[str, int]) -> None:
    with tempfile.TemporaryDirectory(prefix="hcs-cancel-") as tmp:
        root = Path(tmp)
        gate_dir = root / "gate"
        gate_dir.mkdir()
        refs = _real_plates(root / "plates", kinds)
        names = [r.name for r in refs]
        host = RecordingHost()
        with trio.fail_after(60):
            roots = {"data_roots": [root], "output_roots": [root]}
            async with open_embedded_server(workers=2, warm_workers=False, **roots) as address:
                async with open_connection(address.control_url) as conn:
                    service = BatchWorkflowService(
                        host, conn, pipeline_text=BY_SIZE.format(gate_dir=gate_dir), output_dir=root / "out"
                    )
                    what, k = moment
                    seen = [0]
                    original: Callable[[str, PlateState], None] = host.emit_orchestrator_state

                    def spy(plate: str, state: PlateState) -> None:
                        # Stop at the k-th plate transition, or once no plate can move without a stop.
                        original(plate, state)
                        seen[0] += 1
                        settled = all(
                            v[-1] is PlateState.RUNNING or v[-1].is_terminal for v in host.transitions.values()
                        )
                        if what == "transition" and (seen[0] >= k or settled):
                            service.stop()

                    host.emit_orchestrator_state = spy  # type: ignore[method-assign]
                    async with trio.open_nursery() as nursery:
                        result: list[BatchSummary] = []

                        async def run() -> None:
                            result.append(await service.run_plates(refs))

                        nursery.start_soon(run)
                        if what == "held":
                            # Workers write their pid once they hold a well: a bounded poll on another
                            # process's files (fail_after above), then Stop.
                            while len(pids_in(gate_dir)) < k:  # noqa: ASYNC110
                                await trio.sleep(0.02)
                            service.stop()
                    info = await conn.server_info(records=True)
                held = pids_in(gate_dir)
                assert survivors(held, grace=5.0) == {}, "the worker of a stopped plate is killed"
        summary = result[0]
        assert_converged(host, summary, names)
        assert (info.queued, info.running) == (0, 0), (summary, info.executions)
        assert all(r.state in ("completed", "failed", "cancelled") for r in info.executions)
        for outcome in summary.plates:
            kind = outcome.plate.name.split("_")[0]
            assert outcome.state is not PlateState.COMPLETED or kind == "fast", outcome
            if outcome.state is PlateState.FAILED:
                assert kind in ("fail", "broken"), outcome


_kinds = st.lists(st.sampled_from(["fast", "hold", "hold", "fail", "broken"]), min_size=1, max_size=5).filter(
    lambda kinds: "hold" in kinds  # a batch that can only end by a stop
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _kinds,
    st.one_of(
        st.tuples(st.just("transition"), st.integers(1, 25)),
        st.tuples(st.just("held"), st.integers(1, 2)),
    ),
)
@example(["fast", "fast", "fast", "fast", "hold"], ("transition", 16))  # stopped while execute requests were in flight
def test_stop_at_any_moment_leaves_nothing_running_on_a_real_server(kinds: list[str], moment: tuple[str, int]) -> None:
    if moment[0] == "held":
        moment = ("held", min(moment[1], kinds.count("hold")))
    trio.run(_real, kinds, moment)
