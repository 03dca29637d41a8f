"""Small mechanisms shared across layers, each written once (no I/O, no third-party imports)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

__all__ = [
    "call_logged",
    "check_server_url",
    "clip_text",
    "collapse_single_exception_group",
    "is_loopback",
    "log_throttled",
    "single_leaf",
]


def call_logged(log: logging.Logger, what: str, callback: Callable[..., object], *args: object) -> None:
    """Call ``callback(*args)``; an ``Exception`` it raises is logged on ``log`` (``what`` goes on) and swallowed.

    For callbacks into code we do not own (a host, a widget): a broken one must not wedge the caller.
    """
    try:
        callback(*args)
    except Exception:
        name = getattr(callback, "__qualname__", None) or getattr(callback, "__name__", repr(callback))
        log.exception("callback %s raised; %s goes on", name, what)


def log_throttled(count: int) -> bool:
    """Whether the ``count``-th occurrence of a repeated warning is logged: the first ten, then every thousandth,
    so a stream of bad input cannot fill the log."""
    return count <= 10 or count % 1000 == 0


def clip_text(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes (so also at most that many characters), never in the
    middle of a character."""
    if len(text) <= max_bytes // 4:
        return text  # cannot be over the limit: the common case costs no encoding
    return text.encode()[:max_bytes].decode(errors="ignore")


def is_loopback(url: str) -> bool:
    """True for ``tcp://127.x.x.x``, ``tcp://localhost`` and ``tcp://[::1]`` endpoints (and ``ipc``/``inproc``)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    if parts.scheme in ("ipc", "inproc"):
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server_url(url: str) -> str:
    """``url`` when it is a server address ``tcp://HOST:PORT`` (port 1-65535); returns it unchanged.

    Raises:
        InputError: anything else (``127.0.0.1:7700``, ``tcp://127.0.0.1``, ``http://...``): one line naming the
            expected form.
    """
    from .errors import InputError  # the model layer; imported here to keep this module free of cycles

    try:
        parts = urlsplit(url)
        port, host = parts.port, parts.hostname
    except ValueError:
        port = host = None
        parts = None
    if parts is None or parts.scheme != "tcp" or not host or not port or parts.path not in ("", "/"):
        raise InputError(f"server address {url!r} is not of the form tcp://HOST:PORT (e.g. tcp://127.0.0.1:7700)")
    return url


def single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception inside ``group`` (however deeply nested), or None when it holds several."""
    if len(group.exceptions) != 1:
        return None
    only = group.exceptions[0]
    if isinstance(only, BaseExceptionGroup):
        return single_leaf(only)
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
        leaf = single_leaf(group)
        if leaf is None:
            raise
        raise leaf from leaf.__cause__
