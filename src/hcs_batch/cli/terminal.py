"""The terminal host: live progress of a batch on stderr.

On a terminal, a rich progress display: one bar per plate and one for the batch, redrawn by the service's
coalesced updates (at most 30 a second, from the Trio thread: rich's own refresh thread is off). Elsewhere
(a pipe, a CI log) one plain line per plate state change. Standard output is left alone for ``--json``.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn

from ..model import PlateState
from ..workflow.host import BatchHost

__all__ = ["TerminalHost"]

_STYLE = {
    PlateState.COMPLETED: "green",
    PlateState.COMPILED: "cyan",
    PlateState.FAILED: "red",
    PlateState.CANCELLED: "yellow",
}


class TerminalHost(BatchHost):
    """Shows a batch on ``stream`` (stderr by default); rich bars on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream, highlight=False, soft_wrap=True)
        self.live = self.console.is_terminal if live is None else live
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._batch_task: TaskID | None = None
        self.errors: list[str] = []

    # --- plain output
    def _line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def emit_status(self, text: str) -> None:
        if not text.startswith("server connected"):  # routine snapshots would drown the log
            self._line(text)

    def emit_error(self, text: str) -> None:
        self.errors.append(text)
        self._line(f"error: {text}")

    def emit_progress_started(self, total: int) -> None:
        if not self.live:
            self._line(f"batch of {total} plate{'s' if total != 1 else ''} started")
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=self.console,
            auto_refresh=False,
            transient=False,
        )
        self._progress.start()
        self._batch_task = self._progress.add_task("batch", total=total)
        for name in self.plate_execution_states:
            self._tasks[name] = self._progress.add_task(self._label(name, PlateState.QUEUED), total=100)

    def emit_orchestrator_state(self, plate: str, state: PlateState) -> None:
        if not self.live and state is not PlateState.QUEUED:
            self._line(f"{plate}: {state.value}")

    def update_item_list(self) -> None:
        progress, tracker = self._progress, self.progress_tracker
        if progress is None or tracker is None:
            return
        for name, task in self._tasks.items():
            plate = tracker.plates.get(name)
            if plate is None:
                continue
            progress.update(task, completed=tracker.plate_percent(name), description=self._label(name, plate.state))
        if self._batch_task is not None:
            done, _total = tracker.counts()
            progress.update(self._batch_task, completed=done)
        progress.refresh()

    def _label(self, name: str, state: PlateState) -> str:
        width = max(map(len, self._tasks), default=len(name))
        style = _STYLE.get(state, "default")
        return f"  {escape(name):<{width}}  [{style}]{state.value:<9}[/]"

    def emit_progress_finished(self) -> None:
        if self._progress is not None:
            self.update_item_list()
            self._progress.stop()
            self._progress = None
