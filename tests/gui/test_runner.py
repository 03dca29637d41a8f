"""The guest-mode runner and the tick monitor: results, cancellation, exceptions in Qt callbacks, Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
import trio
import trio.lowlevel

from guest_mode.runner import GuestRunner
from guest_mode.tick_monitor import TickMonitor

from .conftest import free_port


def test_run_returns_the_result_and_quits_qt_only_after_trio_cleanup(qtbot):
    order: list[str] = []

    async def main() -> int:
        try:
            await trio.sleep(0.01)
            return 42
        finally:
            order.append("trio finally")

    runner = GuestRunner()
    runner.app.aboutToQuit.connect(lambda: order.append("qt quit"))
    assert runner.run(main) == 42
    assert order == ["trio finally", "qt quit"]
    assert runner.monitor.statistics().ticks > 0


def test_run_freezes_the_start_up_objects_out_of_the_cyclic_gc_unless_told_not_to(qtbot):
    import gc

    async def freeze_count() -> int:
        await trio.lowlevel.checkpoint()
        return gc.get_freeze_count()

    gc.unfreeze()
    try:
        assert GuestRunner(freeze_gc=False).run(freeze_count) == 0
        assert GuestRunner().run(freeze_count) > 1000  # the imported modules, at least
    finally:
        gc.unfreeze()


def test_while_running_the_survivors_of_young_collections_are_frozen_so_full_collections_stay_short(qtbot):
    import gc

    from guest_mode.runner import freeze_survivors

    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the cyclic GC could free it

    async def main() -> tuple[int, int, bool]:
        kept = [Node() for _ in range(20_000)]  # long-lived objects made during the run, as a batch makes them
        gc.collect(1)  # what the interpreter does by itself every few thousand allocations
        frozen = gc.get_freeze_count()
        await trio.lowlevel.checkpoint()
        return frozen, len(gc.get_objects(2)), len(kept) > 0 and freeze_survivors in gc.callbacks

    gc.unfreeze()
    try:
        frozen, in_oldest, hooked = GuestRunner().run(main)
        assert hooked
        assert frozen > 20_000  # the batch's objects were frozen with the start-up ones
        assert in_oldest < 1_000  # so a full collection has almost nothing to scan
        assert freeze_survivors not in gc.callbacks  # the hook lives only as long as the run
    finally:
        gc.unfreeze()


def test_cancel_from_a_qt_callback_ends_the_run_with_none(qtbot):
    from PyQt6.QtCore import QTimer

    cleaned = []

    async def main() -> None:
        QTimer.singleShot(20, runner.cancel)  # like the window's close button: a Qt callback cancels Trio
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.01)  # async cleanup still runs before Qt quits
            cleaned.append(True)

    runner = GuestRunner()
    assert runner.run(main) is None
    assert cleaned == [True]
    assert runner.cancel_requested


def test_an_exception_in_main_propagates_out_of_run(qtbot):
    async def main() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        GuestRunner().run(main)


def test_a_blocking_tick_is_logged_and_counted(qtbot, caplog):
    async def main() -> None:
        await trio.lowlevel.checkpoint()
        # The thing measured: a task that hogs the Qt loop with 30 ms of work before yielding.
        busy_until = time.perf_counter() + 0.03
        while time.perf_counter() < busy_until:
            pass
        await trio.lowlevel.checkpoint()

    runner = GuestRunner(monitor=TickMonitor(threshold=0.016))
    with caplog.at_level(logging.WARNING, logger="guest_mode.ticks"):
        runner.run(main)
    stats = runner.monitor.statistics()
    assert stats.longest >= 0.03
    assert stats.slow_ticks == 1
    assert any("blocked the Qt event loop" in r.getMessage() for r in caplog.records)


def test_tick_monitor_rate_limits_warnings(caplog):
    monitor = TickMonitor(threshold=0.01, warn_interval=60)
    with caplog.at_level(logging.WARNING, logger="guest_mode.ticks"):
        for _ in range(5):
            monitor.record(0.02)
        monitor.record(0.001)
    assert len(caplog.records) == 1
    stats = monitor.statistics()
    assert (stats.ticks, stats.slow_ticks) == (6, 5)
    assert stats.longest == pytest.approx(0.02)
    assert stats.mean == pytest.approx(0.101 / 6)


_RAISING_SLOT = textwrap.dedent(
    """
    import sys, trio
    from PyQt6.QtWidgets import QPushButton
    from guest_mode.runner import GuestRunner

    async def main():
        if sys.argv[1] == "default-hook":
            sys.excepthook = sys.__excepthook__  # what PyQt6 does without our hook: abort
        button = QPushButton("boom")
        def slot():
            raise RuntimeError("a slot that raises")
        button.clicked.connect(slot)
        button.click()
        await trio.sleep(0.01)
        print("still alive", flush=True)
        return 0

    sys.exit(GuestRunner().run(main))
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen"}


def test_a_slot_that_raises_does_not_abort_the_process():
    proc = subprocess.run(
        [sys.executable, "-c", _RAISING_SLOT, "our-hook"], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert "still alive" in proc.stdout
    assert "a slot that raises" in proc.stderr  # logged, with its traceback
    # The control: without the hook PyQt6 aborts, so the test above proves something.
    control = subprocess.run(
        [sys.executable, "-c", _RAISING_SLOT, "default-hook"], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert control.returncode == -signal.SIGABRT
    assert "still alive" not in control.stdout


def _sigint_as_from_a_terminal() -> None:
    """In the child before exec: SIGINT at its default and unblocked, as a shell starts a program. A child inherits
    an ignored or blocked SIGINT from this process, and the full suite left it so: the stack dump of a failed run
    showed the window idle in Qt's loop with no "interrupted" line, i.e. the signal never reached Python (a program
    started with SIGINT ignored rightly keeps ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_cancels_cleanly_with_exit_130():
    # An unreachable server keeps the window up (connecting) while we interrupt it. Its stderr is read by a thread
    # all along, and a window that does not exit in time dumps every thread's stack (faulthandler, SIGABRT), so a
    # failure says where it hung.
    lines: list[str] = []
    ready = threading.Event()

    def read(stream: Any) -> None:
        for line in stream:
            lines.append(line)
            if "plate manager ready" in line:
                ready.set()

    command = [sys.executable, "-m", "guest_mode", "-v", "--server", f"tcp://127.0.0.1:{free_port()}"]
    env = {**_env(), "PYTHONFAULTHANDLER": "1"}
    with subprocess.Popen(
        [*command, "--connect-timeout=30"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_sigint_as_from_a_terminal,
    ) as proc:
        reader = threading.Thread(target=read, args=(proc.stderr,), daemon=True)
        reader.start()
        try:
            assert ready.wait(60), "".join(lines)
            start = time.monotonic()
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)  # faulthandler writes the stacks, then the process dies
                proc.wait(timeout=10)
                reader.join(timeout=10)
                pytest.fail("no exit within 20 s of Ctrl-C; its stderr:\n" + "".join(lines)[-6000:])
            elapsed = time.monotonic() - start
            reader.join(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    rest = "".join(lines)
    assert code == 130, rest
    assert elapsed < 5
    assert "Traceback" not in rest
