"""GUI responsiveness: a 10 ms QTimer while Trio runs a batch in guest mode on PyQt6 (offscreen).

Two phases in one process, same timer: Trio idle in guest mode for ``idle_s`` seconds, then a ``plates``-plate no-op
run (compile then execute, embedded server). Lateness of a timeout = its interval since the previous timeout minus
10 ms (``Qt.TimerType.PreciseTimer``). A *guest tick* is one call of the function Trio hands to
``run_sync_soon_threadsafe``: while it runs, Qt can do nothing else; every tick is timed.

When ``guest_mode`` is importable, its ``GuestRunner`` and ``PlateManagerWindow`` are measured (the widget work
included); otherwise a bare runner in the NOTES.md pattern (posted custom QEvent, done callback stores the outcome
then quits) with a silent host.

Run as ``python -m benchmarks.gui '{"plates": 1000}'``; prints one result line.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import trio
from PyQt6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer
from PyQt6.QtWidgets import QApplication

from ._common import child_process, emit, now, params_from_argv, python_module_cmd, summary_ms
from ._hcs import (
    SERVE_ROOTS,
    SilentHost,
    embedded_backend,
    make_plate_refs,
    make_service,
    noop_pipeline,
    open_backend,
    temp_dir,
)

TIMER_MS = 10
_EVENT_TYPE = QEvent.Type(QEvent.registerEventType())


class _ReenterEvent(QEvent):
    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(_EVENT_TYPE)
        self.fn = fn


class _Reenter(QObject):
    """Runs Trio's guest ticks in the Qt main thread, timing each one."""

    def __init__(self) -> None:
        super().__init__()
        self.ticks: list[float] = []
        self.cpu: list[float] = []
        self.recording = False

    def event(self, event: QEvent | None) -> bool:
        if isinstance(event, _ReenterEvent):
            t0, c0 = now(), time.thread_time()
            event.fn()
            if self.recording:
                self.ticks.append(now() - t0)
                self.cpu.append(time.thread_time() - c0)
            return True
        return super().event(event)


class _SlowSteps(trio.abc.Instrument):
    """Times every task step while ``recording``; keeps the slowest ones with where the task resumed and stopped.

    A guest tick is a run of task steps, so the slowest steps name the code that makes a tick long.
    """

    def __init__(self, keep: int = 8) -> None:
        self.recording = False
        self.keep = keep
        self.slowest: list[tuple[float, float, str, str, str]] = []
        self.tick_steps: list[tuple[float, str, str]] = []
        """The steps of the guest tick running now: (CPU seconds, task, where it resumed); see :meth:`take_tick`."""
        self.gc_seconds = 0.0
        """Time the cyclic GC ran since :meth:`take_tick` (``gc.callbacks``, while recording)."""
        self.gc_generations: set[int] = set()
        self._gc_t0 = 0.0
        self._t0 = 0.0
        self._cpu0 = 0.0
        self._where = ""

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if not self.recording:
            return
        if phase == "start":
            self._gc_t0 = now()
        elif self._gc_t0:
            self.gc_seconds += now() - self._gc_t0
            self.gc_generations.add(info.get("generation", -1))
            self._gc_t0 = 0.0

    def take_tick(self) -> tuple[list[tuple[float, str, str]], float, list[int]]:
        """The steps, GC time and GC generations of the tick that just ended; starts the next tick's."""
        steps, gc_s, gens = self.tick_steps, self.gc_seconds, sorted(self.gc_generations)
        self.tick_steps, self.gc_seconds, self.gc_generations = [], 0.0, set()
        return steps, gc_s, gens

    @staticmethod
    def _frame(task: trio.lowlevel.Task) -> str:
        # Follow the await chain to the innermost coroutine outside Trio itself: where this task's code waits.
        coro: Any = task.coro
        where = "?"
        while coro is not None and getattr(coro, "cr_frame", None) is not None:
            frame = coro.cr_frame
            name = frame.f_code.co_filename
            if "/trio/" not in name:
                short = name.rsplit("/site-packages/", 1)[-1].rsplit("/src/", 1)[-1]
                where = f"{short}:{frame.f_lineno}"
            coro = getattr(coro, "cr_await", None)
        return where

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.recording:
            self._where = self._frame(task)
            self._t0 = now()
            self._cpu0 = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if not self.recording or not self._t0:
            return
        duration = now() - self._t0
        cpu = time.thread_time() - self._cpu0
        self._t0 = 0.0
        self.tick_steps.append((cpu, task.name.rsplit(".", 1)[-1][:60], f"{self._where} -> {self._frame(task)}"))
        if len(self.slowest) < self.keep or duration > self.slowest[-1][0]:
            self.slowest.append((duration, cpu, task.name, self._where, self._frame(task)))
            self.slowest.sort(reverse=True)
            del self.slowest[self.keep :]

    def report(self) -> list[dict[str, Any]]:
        return [
            {
                "ms": round(d * 1e3, 2),
                "cpu_ms": round(c * 1e3, 2),
                "task": name.rsplit(".", 1)[-1][:80],
                "resumed_at": a,
                "suspended_at": b,
            }
            for d, c, name, a, b in self.slowest
        ]


class _TimerProbe:
    def __init__(self) -> None:
        self.intervals: list[float] = []
        self.last: float | None = None
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TIMER_MS)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        t = now()
        if self.last is not None:
            self.intervals.append(t - self.last)
        self.last = t

    def start(self) -> None:
        self.intervals, self.last = [], None
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return [max(i - TIMER_MS / 1000, 0.0) for i in self.intervals]


def run(plates: int, idle_s: float, server_url: str | None = None, gc_mode: str = "on") -> dict[str, Any]:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)
    reenter = _Reenter()
    probe = _TimerProbe()
    steps = _SlowSteps()
    outcome: dict[str, Any] = {}

    def excepthook(*exc: Any) -> None:  # PyQt6 aborts on an escaping exception; record it instead
        outcome.setdefault("error", "".join(traceback.format_exception(*exc))[-2000:])
        app.quit()

    sys.excepthook = excepthook

    async def main() -> dict[str, Any]:
        with temp_dir("gui") as tmp:
            refs = make_plate_refs(Path(tmp) / "plates", plates=plates)
            warm = make_plate_refs(Path(tmp) / "warm", plates=10, seed=1)
            async with open_backend(server_url) as backend:
                await make_service(
                    SilentHost(), backend, pipeline_text=noop_pipeline(), output_dir=Path(tmp) / "w"
                ).run_plates(warm)
                # Phase 1: Trio idle (only its own housekeeping and the connection's heartbeat).
                reenter.ticks.clear()
                reenter.recording = True
                probe.start()
                await trio.sleep(idle_s)
                idle = probe.stop()
                idle_ticks = list(reenter.ticks)
                # Phase 2: the batch.
                if gc_mode == "freeze":  # diagnostic: objects alive now are never scanned again by the GC
                    gc.freeze()
                reenter.ticks.clear()
                reenter.cpu.clear()
                host = _make_host()
                service = make_service(host, backend, pipeline_text=noop_pipeline(), output_dir=Path(tmp) / "out")
                steps.recording = True
                probe.start()
                t0 = now()
                await service.run_plates(refs)
                wall = now() - t0
                busy = probe.stop()
                steps.recording = False
                reenter.recording = False
                run_ticks = list(reenter.ticks)
                run_cpu = list(reenter.cpu)
        return {
            "plates": plates,
            "run_wall_s": round(wall, 3),
            "idle": summary_ms(idle),
            "run": summary_ms(busy),
            "tick": summary_ms(run_ticks),
            "idle_tick": summary_ms(idle_ticks),
            "longest_tick_ms": round(max(run_ticks, default=0.0) * 1e3, 3),
            "longest_tick_cpu_ms": round(run_cpu[run_ticks.index(max(run_ticks))] * 1e3, 3) if run_ticks else 0.0,
            "slowest_task_steps": steps.report(),
            "host": type(host).__name__,
            "outcomes": dict(getattr(host, "outcomes", {})),
        }

    def done(result: Any) -> None:
        try:
            outcome["result"] = result.unwrap()
        except BaseException as exc:  # reported as the case's error, never raised into Qt
            outcome["error"] = "".join(traceback.format_exception(exc))[-3000:]
        app.quit()

    trio.lowlevel.start_guest_run(
        main,
        run_sync_soon_threadsafe=lambda fn: QCoreApplication.postEvent(reenter, _ReenterEvent(fn)),
        done_callback=done,
        host_uses_signal_set_wakeup_fd=False,
        instruments=[steps],
    )
    app.exec()
    if "error" in outcome:
        return {"error": outcome["error"].strip().splitlines()[-1], "traceback": outcome["error"]}
    result: dict[str, Any] = outcome["result"]
    return result


def _make_host() -> Any:
    return SilentHost()


def run_window(
    plates: int, idle_s: float, server_url: str | None = None, gc_mode: str = "on", embedded: str = "process"
) -> dict[str, Any]:
    """The real GUI: ``guest_mode``'s ``GuestRunner`` and ``PlateManagerWindow`` (embedded server, no-op pipeline;
    ``embedded`` says where that server runs, as ``hcs_batch.connect.open_backend``: ``"process"`` as shipped).

    The window shows every plate as a row and refreshes them as states change, so its widget work is in the
    measurement. Ticks are timed by the runner's own ``TickMonitor`` (subclassed here to keep every duration).
    """
    from guest_mode.runner import GuestRunner, collect_and_freeze, collect_frozen
    from guest_mode.session import ConnectionState
    from guest_mode.tick_monitor import TickMonitor
    from guest_mode.window import PlateManagerWindow
    from hcs_batch.workflow.service import BatchKind

    class RecordingMonitor(TickMonitor):
        def __init__(self) -> None:
            super().__init__()
            self.durations: list[float] = []
            self.cpu: list[float] = []
            self.recording = False

            self.top: list[tuple[float, float, float, list[int], list[tuple[float, str, str]]]] = []
            """The ticks that took the most CPU: (CPU s, wall s, GC s, GC generations, their costliest steps)."""

        def record(self, duration: float, *, cpu: float | None = None) -> None:
            super().record(duration, cpu=cpu)
            tick_steps, gc_s, gens = steps.take_tick()
            if self.recording:
                self.durations.append(duration)
                self.cpu.append(cpu or 0.0)
                if len(self.top) < 5 or (cpu or 0.0) > self.top[-1][0]:
                    costly = sorted(tick_steps, reverse=True)[:4]
                    self.top.append((cpu or 0.0, duration, gc_s, gens, costly))
                    self.top.sort(key=lambda t: t[0], reverse=True)
                    del self.top[5:]

    app = QApplication.instance() or QApplication(sys.argv[:1])
    steps = _SlowSteps()
    monitor = RecordingMonitor()
    runner = GuestRunner(app, monitor=monitor, handle_sigint=False)
    probe = _TimerProbe()

    async def main() -> dict[str, Any]:
        with temp_dir("gui") as tmp:
            root = Path(tmp)
            refs = make_plate_refs(root / "plates", plates=plates)
            pipeline = root / "noop.toml"
            pipeline.write_text(noop_pipeline())
            window = PlateManagerWindow(
                server=server_url,
                pipeline_file=pipeline,
                output_dir=root / "out",
                on_batch_start=collect_and_freeze,
                open_backend=partial(embedded_backend, embedded=embedded),
            )
            t_add = now()
            window.add_plates([r.path for r in refs])
            add_s = now() - t_add  # one synchronous call in one guest tick: the GUI is frozen meanwhile
            window.show()
            async with trio.open_nursery() as nursery:
                await nursery.start(window.serve)
                state = await window.session.wait_connection()
                if state != ConnectionState.CONNECTED:
                    raise RuntimeError(f"the window did not connect: {window.server_status_text}")
                rows = window.plates
                await window.run_batch(BatchKind.RUN, rows[: min(10, len(rows))])  # warm-up
                monitor.recording = True
                probe.start()
                await trio.sleep(idle_s)
                idle = probe.stop()
                idle_ticks = list(monitor.durations)
                monitor.durations.clear()
                monitor.cpu.clear()
                if gc_mode == "freeze":  # diagnostic: objects alive now are never scanned again by the GC
                    gc.freeze()
                steps.recording = True
                gc.callbacks.append(steps.on_gc)
                probe.start()
                t0 = now()
                summary = await window.run_batch(BatchKind.RUN, rows)
                gc.callbacks.remove(steps.on_gc)
                wall = now() - t0
                busy = probe.stop()
                steps.recording = False
                monitor.recording = False
                run_ticks = list(monitor.durations)
                run_cpu = list(monitor.cpu)
                # What freezing the GC's survivors kept alive: the reference cycles only a full collection frees,
                # and how long that collection (done when idle, if ever) blocks the GUI.
                t_gc = now()
                frozen_garbage = collect_frozen()
                frozen_gc_s = now() - t_gc
                window.request_close()
        return {
            "plates": plates,
            "run_wall_s": round(wall, 3),
            "idle": summary_ms(idle),
            "run": summary_ms(busy),
            "tick": summary_ms(run_ticks),
            "idle_tick": summary_ms(idle_ticks),
            "longest_tick_ms": round(max(run_ticks, default=0.0) * 1e3, 3),
            # The GUI thread's own CPU time: in the longest tick, and the most in any one tick. A long tick with
            # little CPU waited for a core (a busy machine), not for our code.
            "longest_tick_cpu_ms": round(run_cpu[run_ticks.index(max(run_ticks))] * 1e3, 3) if run_ticks else 0.0,
            "most_cpu_in_a_tick_ms": round(max(run_cpu, default=0.0) * 1e3, 3),
            "slowest_task_steps": steps.report(),
            # The ticks with the most GUI-thread CPU, and what ran in them: their costliest task steps (CPU ms,
            # task, where it resumed -> where it stopped) and the cyclic GC's share.
            "top_ticks": [
                {
                    "cpu_ms": round(c * 1e3, 2),
                    "ms": round(d * 1e3, 2),
                    "gc_ms": round(g * 1e3, 2),
                    "gc_generations": gens,
                    "steps": [f"{sc * 1e3:.2f} {name} @{where}" for sc, name, where in costly],
                }
                for c, d, g, gens, costly in monitor.top
            ],
            "slow_ticks": sum(1 for t in run_ticks if t > 0.016),
            "slow_ticks_by_cpu": sum(1 for t in run_cpu if t > 0.016),
            "host": "guest_mode.PlateManagerWindow",
            "add_plates_ms": round(add_s * 1e3, 1),
            "frozen_garbage": {"objects": frozen_garbage, "collect_ms": round(frozen_gc_s * 1e3, 1)},
            "summary": repr(summary)[:300],
        }

    result = runner.run(main, instruments=[steps])
    if result is None:
        return {"error": "the guest run was cancelled"}
    return result


def _guest_mode_available() -> bool:
    try:
        import guest_mode.runner
        import guest_mode.window  # noqa: F401
    except ImportError:
        return False
    return True


def measure(
    plates: int, idle_s: float, window: bool | None = None, server: str = "embedded", gc_mode: str = "on"
) -> dict[str, Any]:
    """The real window when ``guest_mode`` provides one (or ``window=True``); else a bare runner and silent host.

    ``server``: ``"embedded"`` (the window's own embedded server, in a child process as ``python -m guest_mode``
    starts it), ``"inline"`` (an embedded server inside the GUI's Trio run: its work shares the GUI thread, as
    before issue 15) or ``"process"`` (a ``hcs-batch serve`` child the window connects to by URL). The bare runner
    has no window: its "embedded" server is inline. ``gc_mode``: ``"on"`` (as shipped), ``"freeze"``
    (``gc.freeze()`` after the warm-up) or ``"off"`` (diagnostic).
    """
    use_window = _guest_mode_available() if window is None else window
    with contextlib.ExitStack() as stack:
        url = None
        if server == "process":
            cmd = python_module_cmd("hcs_batch", "serve", "--bind", "tcp://127.0.0.1:0", "--workers", "1", *SERVE_ROOTS)
            _, line = stack.enter_context(child_process(cmd, ready_prefix="hcs-batch server listening on"))
            url = line.split()[4]
        if use_window:
            embedded = "inline" if server == "inline" else "process"
            result = run_window(plates, idle_s, url, gc_mode, embedded)
        else:
            result = run(plates, idle_s, url, gc_mode)
    result["server"] = server
    result["gc"] = gc_mode
    return result


if __name__ == "__main__":
    p = params_from_argv()
    if p.get("gc") == "off":  # diagnostic: are the CPU-heavy long ticks the cyclic GC?
        gc.disable()
    emit(
        measure(
            int(p.get("plates", 1000)),
            float(p.get("idle_s", 2.0)),
            p.get("window"),
            p.get("server", "embedded"),
            p.get("gc", "on"),
        )
    )
