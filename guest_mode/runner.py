"""Run Trio as a guest on the Qt event loop: one thread, Qt owns the loop, Trio runs in short ticks.

``GuestRunner.run(async_fn)`` starts ``trio.lowlevel.start_guest_run`` and then runs the Qt application loop. Trio asks
to be re-entered through ``run_sync_soon_threadsafe``; the runner posts a custom ``QEvent`` to a private
``QObject`` whose ``event()`` runs the callback (``postEvent`` is thread-safe, and Trio's I/O thread calls it).

Promises:

- One cancel scope surrounds ``async_fn``; :meth:`GuestRunner.cancel` (safe from Qt slots, other threads and
  signal handlers) cancels it. A cancelled main returns ``None`` from ``run``.
- Qt quits only from the done callback, after Trio has finished (every ``finally`` has run). If something else
  makes ``exec()`` return early, the runner cancels Trio and re-enters the loop until Trio is done.
- Exceptions never escape a Qt callback: PyQt6 aborts the process (SIGABRT) when one does and ``sys.excepthook``
  is the default, so :func:`install_excepthook` installs a hook that logs instead (done by ``run``).
- With ``handle_sigint=True`` (the default, main thread only) the first Ctrl-C cancels the main scope and sets
  :attr:`GuestRunner.interrupted`; a second Ctrl-C while cleanup is still running exits at once with 130.
  Trio owns the signal wakeup fd (``host_uses_signal_set_wakeup_fd=False``), so a Ctrl-C wakes the loop promptly;
  and a 200 ms ``QTimer`` runs the interpreter now and then, since Python runs a signal handler only between
  bytecodes of the main thread, which otherwise may sit in Qt's C++ loop (CI once saw a Ctrl-C wait ~15 s).
- Every re-entry is timed (wall clock and this thread's CPU time) by a :class:`~guest_mode.tick_monitor.TickMonitor`.
- With ``freeze_gc=True`` (the default) ``run`` calls :func:`collect_and_freeze` once: every object alive at start-up
  (imported modules, Qt wrappers, the window) is moved out of the cyclic GC's reach, so a full collection no longer
  stalls one guest tick for tens of milliseconds. A host calls :func:`collect_and_freeze` again where many long-lived
  objects were just made (``python -m guest_mode`` does it as each batch starts). While ``run`` runs, every object
  that survives a generation-1 collection is frozen too (:func:`freeze_survivors`): CPython's full collections
  scan every unfrozen object at once (100-350 ms in one tick with a 10,000-plate batch alive), so they must only
  ever find a few objects. The cost: a reference cycle among frozen objects is freed only by
  :func:`collect_frozen` (the benchmark measures how much that is).

Never run a modal dialog loop or pump Qt events by hand from a Trio task: either blocks every other Trio task.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import outcome
import trio
from PyQt6.QtCore import QCoreApplication, QEvent, QObject, QTimer
from PyQt6.QtWidgets import QApplication

from .tick_monitor import TickMonitor

__all__ = ["GuestRunner", "collect_and_freeze", "collect_frozen", "freeze_survivors", "install_excepthook", "run"]

T = TypeVar("T")

logger = logging.getLogger("guest_mode")

_REENTER_TYPE = QEvent.Type(QEvent.registerEventType())


class _ReenterEvent(QEvent):
    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__(_REENTER_TYPE)
        self.fn = fn


class _Reenter(QObject):
    """Runs the Trio callbacks posted to it, in the Qt main thread, timing each one."""

    def __init__(self, monitor: TickMonitor) -> None:
        super().__init__()
        self._monitor = monitor

    def event(self, event: QEvent | None) -> bool:
        if event is None or event.type() != _REENTER_TYPE:
            return super().event(event)
        assert isinstance(event, _ReenterEvent)
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            event.fn()
        except BaseException:  # a Trio bug; never let it reach Qt, which would abort the process
            logger.exception("a Trio guest callback raised")
        finally:
            self._monitor.record(time.perf_counter() - start, cpu=time.thread_time() - cpu)
        return True


def collect_and_freeze() -> None:
    """Collect the garbage made so far, then ``gc.freeze()`` every object still alive: CPython's cyclic GC never
    scans them again. Frozen objects are still freed when their reference count drops to zero; only a reference
    cycle among them is never reclaimed, hence the collection first."""
    gc.collect()
    gc.freeze()


def freeze_survivors(phase: str, info: dict[str, int]) -> None:
    """A ``gc.callbacks`` hook: after each generation-1 collection, freeze what it promoted to the oldest
    generation, so that no later full collection has many objects to scan (each one runs in a single guest tick).
    ``gc.freeze()`` only moves list heads: microseconds. Objects stay freed by reference counting as before."""
    if phase == "stop" and info.get("generation") == 1:
        gc.freeze()


def collect_frozen() -> int:
    """Unfreeze, collect everything, freeze what is left; returns the number of unreachable objects found.

    Frees the reference cycles that :func:`freeze_survivors` kept; one full collection of every object, so a
    pause of the order of 100 ms with a large batch's rows alive: call it where a pause does not show (idle).
    """
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    return found


def _log_unhandled(exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None) -> None:
    logger.error("unhandled exception in a Qt callback (the process continues)", exc_info=(exc_type, exc, tb))


def install_excepthook() -> None:
    """Make sure an exception escaping a Qt callback is logged instead of aborting the process.

    Installs a logging hook only when ``sys.excepthook`` is Python's default (PyQt6 aborts only then); a hook
    someone else installed (pytest-qt's, an IDE's) is kept.
    """
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _log_unhandled


class GuestRunner:
    """Hosts one Trio run at a time on a ``QApplication``.

    Args:
        app: the application (default: the existing instance, or a new ``QApplication``).
        monitor: the tick monitor (default: a new one with the 16 ms threshold).
        handle_sigint: turn Ctrl-C into cancellation (only from the main thread with Python's default handler).
        freeze_gc: collect and ``gc.freeze()`` once when :meth:`run` starts, and freeze the survivors of every
            generation-1 collection while it runs (see the module docstring).
    """

    def __init__(
        self,
        app: QCoreApplication | None = None,
        *,
        monitor: TickMonitor | None = None,
        handle_sigint: bool = True,
        freeze_gc: bool = True,
    ) -> None:
        existing = QCoreApplication.instance()
        self.app: QCoreApplication = app or existing or QApplication(sys.argv[:1])
        self.monitor = monitor or TickMonitor()
        self.handle_sigint = handle_sigint
        self.freeze_gc = freeze_gc
        self.interrupted = False
        """True once a Ctrl-C cancelled the run."""
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._cancel_requested = False
        self._outcome: outcome.Outcome[Any] | None = None

    # ------------------------------------------------------------------ public

    def run(
        self,
        async_fn: Callable[..., Awaitable[T]],
        *args: object,
        clock: trio.abc.Clock | None = None,
        instruments: Sequence[trio.abc.Instrument] = (),
    ) -> T | None:
        """Run ``async_fn(*args)`` as a Trio guest of the Qt loop until it finishes; return its result.

        Returns ``None`` when the run was cancelled through :meth:`cancel` (or Ctrl-C). Re-raises whatever
        ``async_fn`` raised. Signature-compatible with ``trio.run`` for ``@pytest.mark.trio(run=...)``.
        """
        if self._token is not None or self._outcome is not None:
            raise RuntimeError("a GuestRunner runs one Trio run; make a new one")
        install_excepthook()
        if isinstance(self.app, QApplication):
            self.app.setQuitOnLastWindowClosed(False)
        reenter = _Reenter(self.monitor)

        def post(fn: Callable[[], object]) -> None:
            QCoreApplication.postEvent(reenter, _ReenterEvent(fn))

        if self.freeze_gc:
            # Once, before the loop runs (a full collection of everything imported takes ~25 ms here): afterwards
            # a gen-2 collection only scans what the run itself creates, not the ~55,000 start-up objects.
            collect_and_freeze()
            gc.callbacks.append(freeze_survivors)
        previous_sigint = self._install_sigint()
        signal_check = QTimer()
        if previous_sigint is not None:  # a no-op slot: the main thread runs Python, so the handler gets its turn
            signal_check.timeout.connect(lambda: None)
            signal_check.start(200)
        try:
            trio.lowlevel.start_guest_run(
                self._main,
                async_fn,
                args,
                run_sync_soon_threadsafe=post,
                done_callback=self._done,
                host_uses_signal_set_wakeup_fd=False,
                clock=clock,
                instruments=instruments,
            )
            while self._outcome is None:
                self.app.exec()
                if self._outcome is None:
                    # Someone quit Qt while Trio was still running: finish Trio's cleanup before returning.
                    logger.warning("the Qt loop quit before Trio finished; cancelling Trio and waiting for it")
                    self.cancel()
        finally:
            signal_check.stop()
            if freeze_survivors in gc.callbacks:
                gc.callbacks.remove(freeze_survivors)
            if previous_sigint is not None:
                signal.signal(signal.SIGINT, previous_sigint)
        result: T | None = self._outcome.unwrap()
        return result

    def cancel(self) -> None:
        """Cancel the scope around the main function. Safe from any thread and from a signal handler."""
        self._cancel_requested = True
        token = self._token
        if token is None:
            return  # _main checks _cancel_requested when it starts
        try:
            token.run_sync_soon(self._cancel_now)
        except trio.RunFinishedError:
            pass

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    # ------------------------------------------------------------------ internals

    async def _main(self, async_fn: Callable[..., Awaitable[T]], args: tuple[object, ...]) -> T | None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            if self._cancel_requested:
                scope.cancel()
            return await async_fn(*args)
        return None

    def _cancel_now(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    def _done(self, result: outcome.Outcome[Any]) -> None:
        # Called by Trio in a Qt callback: it must never raise.
        try:
            self._outcome = result
            self.app.quit()
        except BaseException:
            logger.exception("the guest run's done callback failed")

    def _install_sigint(self) -> Callable[[int, types.FrameType | None], object] | None:
        """Install the Ctrl-C handler when Python's default one is in place; return that one to restore, or None."""
        if not self.handle_sigint or threading.current_thread() is not threading.main_thread():
            return None
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return None
        signal.signal(signal.SIGINT, self._on_sigint)
        return signal.default_int_handler

    def _on_sigint(self, signum: int, frame: types.FrameType | None) -> None:
        if self.interrupted:
            # Second Ctrl-C: the user does not want to wait for cleanup.
            os.write(2, b"\ninterrupted again: exiting without cleanup\n")
            os._exit(130)
        self.interrupted = True
        os.write(2, b"\ninterrupted: cancelling (Ctrl-C again to exit at once)\n")
        self.cancel()


def run(
    async_fn: Callable[..., Awaitable[T]],
    *args: object,
    clock: trio.abc.Clock | None = None,
    instruments: Sequence[trio.abc.Instrument] = (),
) -> T | None:
    """``trio.run`` look-alike that runs ``async_fn`` as a guest of the Qt loop (for ``pytest.mark.trio(run=run)``).

    Uses the existing ``QApplication`` (or makes one) and leaves SIGINT alone.
    """
    return GuestRunner(handle_sigint=False).run(async_fn, *args, clock=clock, instruments=instruments)
