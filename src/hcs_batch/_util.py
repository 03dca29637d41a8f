"""Small helpers shared across layers (no I/O)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["call_logged", "collapse_single_exception_group"]


def call_logged(log: logging.Logger, what: str, callback: Callable[..., object], *args: object) -> None:
    """Call ``callback(*args)``; an ``Exception`` it raises is logged on ``log`` (with ``what`` goes on) and swallowed.

    For callbacks into code we do not own (a host, a widget): a broken one must not wedge the caller.
    """
    try:
        callback(*args)
    except Exception:
        name = getattr(callback, "__qualname__", None) or getattr(callback, "__name__", repr(callback))
        log.exception("callback %s raised; %s goes on", name, what)


def _single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    if len(group.exceptions) != 1:
        return None
    only = group.exceptions[0]
    if isinstance(only, BaseExceptionGroup):
        return _single_leaf(only)
    return only


@contextmanager
def collapse_single_exception_group() -> Iterator[None]:
    """Re-raise an exception group that holds exactly one exception as that exception.

    Trio nurseries wrap every error in an ``ExceptionGroup``; callers of our context managers expect the plain
    ``HcsBatchError`` (or ``Cancelled``). Groups with several exceptions propagate unchanged.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = _single_leaf(group)
        if leaf is None:
            raise
        raise leaf from leaf.__cause__
