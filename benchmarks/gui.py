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

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import trio
from PyQt6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer
from PyQt6.QtWidgets import QApplication

from ._common import emit, now, params_from_argv, summary_ms
from ._hcs import SilentHost, make_plate_refs, make_service, noop_pipeline, open_backend, temp_dir

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
        self.recording = False

    def event(self, event: QEvent | None) -> bool:
        if isinstance(event, _ReenterEvent):
            t0 = now()
            event.fn()
            if self.recording:
                self.ticks.append(now() - t0)
            return True
        return super().event(event)


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


def run(plates: int, idle_s: float) -> dict[str, Any]:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)
    reenter = _Reenter()
    probe = _TimerProbe()
    outcome: dict[str, Any] = {}

    def excepthook(*exc: Any) -> None:  # PyQt6 aborts on an escaping exception; record it instead
        outcome.setdefault("error", "".join(traceback.format_exception(*exc))[-2000:])
        app.quit()

    sys.excepthook = excepthook

    async def main() -> dict[str, Any]:
        with temp_dir("gui") as tmp:
            refs = make_plate_refs(Path(tmp) / "plates", plates=plates)
            warm = make_plate_refs(Path(tmp) / "warm", plates=10, seed=1)
            async with open_backend(None) as backend:
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
                reenter.ticks.clear()
                host = _make_host()
                service = make_service(host, backend, pipeline_text=noop_pipeline(), output_dir=Path(tmp) / "out")
                probe.start()
                t0 = now()
                await service.run_plates(refs)
                wall = now() - t0
                busy = probe.stop()
                reenter.recording = False
                run_ticks = list(reenter.ticks)
        return {
            "plates": plates,
            "run_wall_s": round(wall, 3),
            "idle": summary_ms(idle),
            "run": summary_ms(busy),
            "tick": summary_ms(run_ticks),
            "idle_tick": summary_ms(idle_ticks),
            "longest_tick_ms": round(max(run_ticks, default=0.0) * 1e3, 3),
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
    )
    app.exec()
    if "error" in outcome:
        return {"error": outcome["error"].strip().splitlines()[-1], "traceback": outcome["error"]}
    result: dict[str, Any] = outcome["result"]
    return result


def _make_host() -> Any:
    return SilentHost()


def run_window(plates: int, idle_s: float) -> dict[str, Any]:
    """The real GUI: ``guest_mode``'s ``GuestRunner`` and ``PlateManagerWindow`` (embedded server, no-op pipeline).

    The window shows every plate as a row and refreshes them as states change, so its widget work is in the
    measurement. Ticks are timed by the runner's own ``TickMonitor`` (subclassed here to keep every duration).
    """
    from guest_mode.runner import GuestRunner
    from guest_mode.tick_monitor import TickMonitor
    from guest_mode.window import ConnectionState, PlateManagerWindow

    class RecordingMonitor(TickMonitor):
        def __init__(self) -> None:
            super().__init__()
            self.durations: list[float] = []
            self.recording = False

        def record(self, duration: float) -> None:
            super().record(duration)
            if self.recording:
                self.durations.append(duration)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    monitor = RecordingMonitor()
    runner = GuestRunner(app, monitor=monitor, handle_sigint=False)
    probe = _TimerProbe()

    async def main() -> dict[str, Any]:
        with temp_dir("gui") as tmp:
            root = Path(tmp)
            refs = make_plate_refs(root / "plates", plates=plates)
            pipeline = root / "noop.toml"
            pipeline.write_text(noop_pipeline())
            window = PlateManagerWindow(server=None, pipeline_file=pipeline, output_dir=root / "out")
            t_add = now()
            window.add_plates([r.path for r in refs])
            add_s = now() - t_add  # one synchronous call in one guest tick: the GUI is frozen meanwhile
            window.show()
            async with trio.open_nursery() as nursery:
                await nursery.start(window.serve)
                state = await window.wait_connection()
                if state != ConnectionState.CONNECTED:
                    raise RuntimeError(f"the window did not connect: {window.server_status_text}")
                rows = window.plates
                await window.run_batch("run", rows[: min(10, len(rows))])  # warm-up
                monitor.recording = True
                probe.start()
                await trio.sleep(idle_s)
                idle = probe.stop()
                idle_ticks = list(monitor.durations)
                monitor.durations.clear()
                probe.start()
                t0 = now()
                summary = await window.run_batch("run", rows)
                wall = now() - t0
                busy = probe.stop()
                monitor.recording = False
                run_ticks = list(monitor.durations)
                window.request_close()
        return {
            "plates": plates,
            "run_wall_s": round(wall, 3),
            "idle": summary_ms(idle),
            "run": summary_ms(busy),
            "tick": summary_ms(run_ticks),
            "idle_tick": summary_ms(idle_ticks),
            "longest_tick_ms": round(max(run_ticks, default=0.0) * 1e3, 3),
            "slow_ticks": sum(1 for t in run_ticks if t > 0.016),
            "host": "guest_mode.PlateManagerWindow",
            "add_plates_ms": round(add_s * 1e3, 1),
            "summary": repr(summary)[:300],
        }

    result = runner.run(main)
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


def measure(plates: int, idle_s: float, window: bool | None = None) -> dict[str, Any]:
    """The real window when ``guest_mode`` provides one (or ``window=True``); else a bare runner and silent host."""
    use_window = _guest_mode_available() if window is None else window
    return run_window(plates, idle_s) if use_window else run(plates, idle_s)


if __name__ == "__main__":
    p = params_from_argv()
    emit(measure(int(p.get("plates", 1000)), float(p.get("idle_s", 2.0)), p.get("window")))
