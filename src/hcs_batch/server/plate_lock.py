"""One execution at a time writes a plate's output folder: ``<output>/<plate>/.hcs-batch.lock``.

The lock file holds its owner as JSON: ``pid``, ``host``, ``server`` (the server instance id), ``execution_id``
and ``started_at``. It is created whole (written to a temporary file, then hard-linked into place, which fails
when a lock exists), so nobody ever reads half a lock. A second execution of the same plate into the same folder
(from this server or another process) is refused with :class:`PlateBusyError` naming the owner; it never computes
the plate twice. A stale lock is taken over: its pid is dead on this host, or it is this process's own pid but no
execution of this process holds it (a crashed run's leftover), or it is unreadable.

Blocking I/O: call these on the server's thread lane.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

from ..errors import PlateBusyError

__all__ = ["LOCK_NAME", "PlateBusyError", "acquire_plate_lock", "release_plate_lock"]

LOCK_NAME = ".hcs-batch.lock"

_held: set[tuple[str, str]] = set()
"""(lock path, execution id) of the locks this process holds."""
_held_guard = threading.Lock()  # the lane may run these from more than one thread over time


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _stale(path: Path, owner: dict[str, Any] | None) -> bool:
    if owner is None:
        return True  # unreadable: a lock is always written whole, so this is not a live owner's
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False  # another machine's process: we cannot tell, so it is live
    if pid == os.getpid():
        with _held_guard:
            return (str(path), str(owner.get("execution_id"))) not in _held
    return not _alive(pid)


def acquire_plate_lock(plate_dir: Path, *, execution_id: str, server: str) -> Path:
    """Take the lock of ``plate_dir`` (created when missing) for ``execution_id``; returns the lock file's path.

    Raises:
        PlateBusyError: a live execution holds it; the message names its pid, host, server and execution.
        OSError: the folder cannot be created or written.
    """
    plate_dir.mkdir(parents=True, exist_ok=True)
    path = plate_dir / LOCK_NAME
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "server": server,
        "execution_id": execution_id,
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    tmp = plate_dir / f".{LOCK_NAME}.{uuid.uuid4().hex[:12]}.tmp"
    tmp.write_text(json.dumps(owner), encoding="utf-8")
    try:
        for _ in range(3):
            try:
                os.link(tmp, path)
            except FileExistsError:
                found = _read(path)
                if found == {}:
                    continue  # released meanwhile: try again
                if not _stale(path, found):
                    assert found is not None
                    raise PlateBusyError(
                        f"the output folder {plate_dir} is in use by execution {found.get('execution_id')} "
                        f"(pid {found.get('pid')} on {found.get('host')}, server {found.get('server')}, since "
                        f"{found.get('started_at')}); wait for it to finish, or run into another --output"
                    ) from None
                path.unlink(missing_ok=True)  # a stale lock: take it over
                continue
            with _held_guard:
                _held.add((str(path), execution_id))
            return path
        raise PlateBusyError(f"the output folder {plate_dir} keeps changing owner; try again")
    finally:
        tmp.unlink(missing_ok=True)


def release_plate_lock(path: Path, *, execution_id: str) -> None:
    """Remove the lock at ``path`` if ``execution_id`` still holds it (never another owner's). Never raises."""
    with _held_guard:
        _held.discard((str(path), execution_id))
    owner = _read(path)
    if owner and owner.get("execution_id") == execution_id and owner.get("pid") == os.getpid():
        try:
            path.unlink()
        except OSError:
            pass
