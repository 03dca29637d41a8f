"""The server browser's registry: one JSON file per running ``hcs-batch serve`` of this user.

The folder is ``platformdirs.user_runtime_dir("hcs_batch")`` (``$XDG_RUNTIME_DIR/hcs_batch`` on Linux), or
``$HCS_BATCH_RUNTIME_DIR`` when set (tests use it so they never touch the real one). It is created private (0700).
A server writes its entry atomically (a temporary file renamed into place) once it listens, and removes it when
it exits; entries of processes that are gone (killed with no chance to clean up) are dropped, and their files
deleted, whenever the registry is read. Embedded servers (``open_backend(None)``, the window's default) do not
register: they live and die with the one process that uses them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import msgspec

__all__ = ["ENV_VAR", "ServerEntry", "find_entry", "read_entries", "registered", "runtime_dir"]

ENV_VAR = "HCS_BATCH_RUNTIME_DIR"
_MAX_ENTRY_BYTES = 16 * 1024


class ServerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One registered server: where it listens, its process, when it started (ISO 8601), how it executes."""

    url: str
    pid: Annotated[int, msgspec.Meta(gt=0)]
    """A file naming pid 0 or below (every process of a group) is malformed, and skipped."""
    started_at: str
    executor: str = "local"
    workers: Annotated[int, msgspec.Meta(ge=0)] = 0
    events_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    curve: bool = False
    """True when the server requires CurveZMQ keys (querying it needs ``--keys``)."""


def runtime_dir() -> Path:
    """This user's registry folder (not created here)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    import platformdirs

    with warnings.catch_warnings():
        # Without $XDG_RUNTIME_DIR (ssh sessions, containers) platformdirs warns and falls back to
        # /tmp/runtime-UID: a fine folder for the registry, and no reason for two lines of warning on every command.
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir("hcs_batch"))


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process that looks like hcs-batch (a reused pid of another program is not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not an entry of ours, whatever the file says
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_bytes()
        cmdline = (proc / "cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs (macOS): trust the signal test
    except OSError:
        return True
    if stat.rsplit(b")", 1)[-1].split()[:1] == [b"Z"]:
        return False  # exited, not yet reaped
    # An empty command line is a process the kernel is busy setting up (exec): it cannot be judged yet.
    return cmdline == b"" or b"hcs_batch" in cmdline or b"hcs-batch" in cmdline


@contextlib.contextmanager
def registered(entry: ServerEntry) -> Iterator[Path]:
    """Register ``entry`` for the duration of the block; its file is removed on the way out (however it ends).

    Raises OSError when the folder cannot be created or written (the caller decides whether that is fatal).
    """
    folder = runtime_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    port = entry.url.rpartition(":")[2]
    path = folder / f"server-{entry.pid}-{port if port.isdigit() else 0}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".server-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(msgspec.json.encode(entry))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def read_entries() -> list[ServerEntry]:
    """The live servers of this user, oldest first. Unreadable or malformed files are skipped; files of dead
    processes are deleted. Never raises for a missing folder (no servers)."""
    folder = runtime_dir()
    try:
        paths = sorted(folder.glob("server-*.json"))
    except OSError:
        return []
    entries: list[ServerEntry] = []
    for path in paths:
        try:
            data = path.read_bytes()[:_MAX_ENTRY_BYTES]
            entry = msgspec.json.decode(data, type=ServerEntry)
        except (OSError, msgspec.DecodeError):
            continue
        if _pid_alive(entry.pid):
            entries.append(entry)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    entries.sort(key=lambda e: e.started_at)
    return entries


def find_entry(url: str) -> ServerEntry | None:
    """The live registered server listening at ``url`` (``localhost`` and ``127.0.0.1`` are the same), or None."""
    wanted = url.replace("//localhost:", "//127.0.0.1:").rstrip("/")
    for entry in read_entries():
        if entry.url.replace("//localhost:", "//127.0.0.1:").rstrip("/") == wanted:
            return entry
    return None
