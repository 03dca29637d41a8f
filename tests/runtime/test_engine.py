"""BatchSubmitWaitEngine: phase ordering, bounds, fail-fast, per-job errors, callbacks, caller cancel."""

from __future__ import annotations

import math

import pytest
import trio

from hcs_batch.runtime import BatchSubmitWaitEngine, JobPhase, JobStatus


class Recorder:
    """A scripted submit/wait pair that records timing and how many calls were in flight."""

    def __init__(
        self,
        *,
        submit_delay: dict[int, float] | None = None,
        wait_delay: dict[int, float] | None = None,
        submit_fail: set[int] = frozenset(),  # type: ignore[assignment]
        wait_fail: set[int] = frozenset(),  # type: ignore[assignment]
    ) -> None:
        self.submit_delay = submit_delay or {}
        self.wait_delay = wait_delay or {}
        self.submit_fail = submit_fail
        self.wait_fail = wait_fail
        self.submit_order: list[int] = []
        self.wait_order: list[int] = []
        self.submit_ends: list[float] = []
        self.wait_starts: list[float] = []
        self.submits_in_flight = 0
        self.waits_in_flight = 0
        self.max_submits = 0
        self.max_waits = 0

    async def submit(self, job: int) -> str:
        self.submit_order.append(job)
        self.submits_in_flight += 1
        self.max_submits = max(self.max_submits, self.submits_in_flight)
        try:
            await trio.sleep(self.submit_delay.get(job, 1.0))
            if job in self.submit_fail:
                raise ValueError(f"submit {job} failed")
            return f"h{job}"
        finally:
            self.submits_in_flight -= 1
            self.submit_ends.append(trio.current_time())

    async def wait(self, job: int, handle: str) -> str:
        self.wait_order.append(job)
        self.wait_starts.append(trio.current_time())
        self.waits_in_flight += 1
        self.max_waits = max(self.max_waits, self.waits_in_flight)
        try:
            await trio.sleep(self.wait_delay.get(job, 1.0))
            if job in self.wait_fail:
                raise RuntimeError(f"wait {job} failed")
            return f"r{job}:{handle}"
        finally:
            self.waits_in_flight -= 1


async def test_every_submit_ends_before_the_first_wait_starts(autojump_clock: trio.abc.Clock) -> None:
    # Job 0 submits fast and job 9 slowly: a per-job pipeline would start waiting on 0 long before 9 is submitted.
    rec = Recorder(submit_delay={i: 1.0 + i for i in range(10)})
    engine = BatchSubmitWaitEngine(submit=rec.submit, wait=rec.wait)
    outcome = await engine.run(range(10))
    assert outcome.ok
    assert [o.result for o in outcome.jobs] == [f"r{i}:h{i}" for i in range(10)]
    assert len(rec.wait_starts) == 10
    assert max(rec.submit_ends) <= min(rec.wait_starts)


async def test_concurrency_is_bounded_in_both_phases(autojump_clock: trio.abc.Clock) -> None:
    rec = Recorder()
    engine = BatchSubmitWaitEngine(submit=rec.submit, wait=rec.wait, max_concurrent_submits=3, max_concurrent_waits=5)
    start = trio.current_time()
    outcome = await engine.run(range(20))
    assert outcome.ok
    assert rec.max_submits == 3
    assert rec.max_waits == 5
    # 20 submits of 1 s, 3 at a time = 7 s; 20 waits of 1 s, 5 at a time = 4 s.
    assert trio.current_time() - start == pytest.approx(11.0)


async def test_jobs_start_in_input_order(autojump_clock: trio.abc.Clock) -> None:
    rec = Recorder()
    engine = BatchSubmitWaitEngine(submit=rec.submit, wait=rec.wait, max_concurrent_submits=4)
    await engine.run(range(30))
    assert rec.submit_order == list(range(30))
    assert rec.wait_order == list(range(30))


async def test_a_shared_limiter_bounds_two_batches_together(autojump_clock: trio.abc.Clock) -> None:
    rec = Recorder()
    limiter = trio.CapacityLimiter(2)
    engine = BatchSubmitWaitEngine(submit=rec.submit, wait=rec.wait, max_concurrent_submits=limiter)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.run, range(5))
        nursery.start_soon(engine.run, range(5, 10))
    assert rec.max_submits == 2


async def test_unbounded_waits_all_run_at_once(autojump_clock: trio.abc.Clock) -> None:
    rec = Recorder()
    engine = BatchSubmitWaitEngine(submit=rec.submit, wait=rec.wait, max_concurrent_waits=math.inf)
    await engine.run(range(50))
    assert rec.max_waits == 50


async def test_errors_are_collected_per_job_in_input_order(autojump_clock: trio.abc.Clock) -> None:
    rec = Recorder(submit_fail={1, 4}, wait_fail={2})
    errors: list[tuple[int, str]] = []
    results: list[int] = []
    submitted: list[int] = []
    engine = BatchSubmitWaitEngine(
        submit=rec.submit,
        wait=rec.wait,
        on_submitted=lambda job, handle: submitted.append(job),
        on_result=lambda job, result: results.append(job),
        on_error=lambda job, exc: errors.append((job, str(exc))),
    )
    outcome = await engine.run(range(6))  # never raises a job's error
    statuses = [o.status for o in outcome.jobs]
    assert statuses == [
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.FAILED,
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.SUCCEEDED,
    ]
    assert [o.index for o in outcome.jobs] == list(range(6))
    assert [str(e) for e in outcome.errors] == ["submit 1 failed", "wait 2 failed", "submit 4 failed"]
    assert [o.phase for o in outcome.failed] == [JobPhase.SUBMIT, JobPhase.WAIT, JobPhase.SUBMIT]
    assert outcome.jobs[2].handle == "h2"  # a failed wait still tells the caller what was submitted
    assert outcome.jobs[1].handle is None
    assert sorted(errors) == [(1, "submit 1 failed"), (2, "wait 2 failed"), (4, "submit 4 failed")]
    assert sorted(results) == [0, 3, 5]
    assert sorted(submitted) == [0, 2, 3, 5]
    assert not outcome.ok and not outcome.cancelled


async def test_fail_fast_in_the_wait_phase_cancels_the_other_waits(autojump_clock: trio.abc.Clock) -> None:
    rec = Recorder(wait_delay={0: 1.0, 1: 2.0, 2: 50.0, 3: 50.0}, wait_fail={1})
    engine = BatchSubmitWaitEngine(submit=rec.submit, wait=rec.wait, fail_fast=True)
    start = trio.current_time()
    outcome = await engine.run(range(4))
    assert [o.status for o in outcome.jobs] == [
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.CANCELLED,
    ]
    assert outcome.jobs[2].handle == "h2" and outcome.jobs[2].phase is JobPhase.WAIT
    assert outcome.jobs[2].error is None  # cancelled, not failed
    assert trio.current_time() - start == pytest.approx(3.0)  # 1 s submit + 2 s until job 1 fails


async def test_fail_fast_in_the_submit_phase_starts_no_wait(autojump_clock: trio.abc.Clock) -> None:
    rec = Recorder(submit_delay={0: 1.0, 1: 2.0, 2: 10.0, 3: 10.0}, submit_fail={1})
    engine = BatchSubmitWaitEngine(submit=rec.submit, wait=rec.wait, fail_fast=True, max_concurrent_submits=3)
    start = trio.current_time()
    outcome = await engine.run(range(4))
    assert rec.wait_starts == []
    assert [o.status for o in outcome.jobs] == [
        JobStatus.CANCELLED,  # submitted, but its wait never ran
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.CANCELLED,
    ]
    assert outcome.jobs[0].handle == "h0" and outcome.jobs[0].phase is JobPhase.WAIT
    assert outcome.jobs[3].handle is None and outcome.jobs[3].phase is JobPhase.SUBMIT
    assert trio.current_time() - start == pytest.approx(2.0)


async def test_a_raising_callback_is_logged_and_the_batch_goes_on(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder()

    def boom(job: int, value: object) -> None:
        raise KeyError("callback bug")

    engine = BatchSubmitWaitEngine(submit=rec.submit, wait=rec.wait, on_submitted=boom, on_result=boom)
    outcome = await engine.run(range(3))
    assert outcome.ok
    assert sum("callback" in r.getMessage() for r in caplog.records) == 6


async def test_caller_cancel_propagates_as_cancelled(autojump_clock: trio.abc.Clock) -> None:
    rec = Recorder(wait_delay={0: 100.0})
    engine = BatchSubmitWaitEngine(submit=rec.submit, wait=rec.wait)
    returned = False
    with trio.move_on_after(5) as scope:
        await engine.run(range(3))
        returned = True
    assert scope.cancelled_caught and not returned
    assert rec.waits_in_flight == 0


async def test_caller_cancel_during_fail_fast_still_propagates(autojump_clock: trio.abc.Clock) -> None:
    # The caller's cancel arrives while the engine's own fail-fast scope is also cancelled: it must not be eaten.
    rec = Recorder(wait_delay={0: 1.0, 1: 100.0}, wait_fail={0})
    outer = trio.CancelScope()

    def cancel_caller(job: int, exc: Exception) -> None:
        outer.cancel()

    engine = BatchSubmitWaitEngine(submit=rec.submit, wait=rec.wait, fail_fast=True, on_error=cancel_caller)
    returned = False
    with outer:
        await engine.run(range(2))
        returned = True
    assert outer.cancelled_caught and not returned


async def test_empty_batch() -> None:
    rec = Recorder()
    outcome = await BatchSubmitWaitEngine(submit=rec.submit, wait=rec.wait).run([])
    assert outcome.ok and len(outcome) == 0


def test_bad_limit_is_refused() -> None:
    rec = Recorder()
    with pytest.raises(ValueError, match="max_concurrent_waits"):
        BatchSubmitWaitEngine(submit=rec.submit, wait=rec.wait, max_concurrent_waits=0)
