"""The one exception tree of hcs_batch.

::

    HcsBatchError
    ├── InputError                 bad input found before any work (CLI exit code 2)
    │   ├── PlateError             missing plate folder, no matching images, unsafe plate name
    │   │   └── PlateBusyError     another live execution writes the plate's output folder
    │   └── PipelineError          unreadable TOML, unknown step, bad parameter
    ├── ProtocolError              a frame that is not a valid message (undecodable, oversize, wrong version)
    ├── RemoteError                the server answered a request with an error reply
    │   ├── ArtifactNotFoundError  unknown or expired compile artifact
    │   └── ExecutionNotFoundError unknown execution id
    ├── TransportError             talking to the server failed
    │   ├── ServerUnreachableError the handshake was never answered (CLI exit code 3)
    │   ├── ServerLostError        the server stopped answering mid-session (killed, frozen, network gone)
    │   ├── ServerRestartedError   the server came back with a new instance id: its executions are gone
    │   └── ConnectionClosedError  *you* closed the connection; not the peer's fault
    ├── SecurityError              a non-loopback bind without CurveZMQ keys, a bad key file
    └── BatchError
        └── BatchAlreadyRunningError  a second batch while one is active

``trio.Cancelled`` is never caught nor wrapped. Errors raised on the server travel as an error reply with a
``code``; :func:`error_from_code` turns that back into the matching class on the client.
"""

from __future__ import annotations


class HcsBatchError(Exception):
    """Root of every error hcs_batch raises on purpose."""

    code = "error"


class InputError(HcsBatchError):
    """Bad input found before any work started; the message names the thing and what to do."""

    code = "input"


class PlateError(InputError):
    """A plate folder is missing, has no matching images, or its name would escape the output folder."""

    code = "plate"


class PlateBusyError(PlateError):
    """Another live execution writes this plate's output folder (its lock file names the owner)."""

    code = "plate_busy"


class PipelineError(InputError):
    """A pipeline file is unreadable, names an unknown step, or passes a parameter the step does not take."""

    code = "pipeline"


class ProtocolError(HcsBatchError):
    """A frame is not a valid message: undecodable, oversize, unknown kind or wrong protocol version."""

    code = "protocol"


class RemoteError(HcsBatchError):
    """The server answered a request with an error reply."""

    code = "remote"


class ArtifactNotFoundError(RemoteError):
    """The compile artifact is unknown to the server or has expired; compile the plate again."""

    code = "artifact_not_found"


class ExecutionNotFoundError(RemoteError):
    """The execution id is unknown to the server."""

    code = "execution_not_found"


class TransportError(HcsBatchError):
    """Talking to the server failed."""

    code = "transport"


class ServerUnreachableError(TransportError):
    """Nothing answered the handshake at the server's address in time."""

    code = "unreachable"


class ServerLostError(TransportError):
    """The server stopped sending heartbeats and answering: killed, frozen or cut off."""

    code = "server_lost"


class ServerRestartedError(TransportError):
    """The server answers with a new instance id: everything the old instance ran is gone."""

    code = "server_restarted"


class ConnectionClosedError(TransportError):
    """The connection was closed by this side; requests after that fail with this."""

    code = "closed"


class SecurityError(HcsBatchError):
    """A refused security configuration: a non-loopback bind without keys, a missing or bad key file."""

    code = "security"


class BatchError(HcsBatchError):
    """A batch could not be started or carried out as asked."""

    code = "batch"


class BatchAlreadyRunningError(BatchError):
    """A batch is already active on this service; wait for it or stop it first."""

    code = "batch_running"


def _all_subclasses(cls: type[HcsBatchError]) -> list[type[HcsBatchError]]:
    found: list[type[HcsBatchError]] = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


def error_from_code(code: str, message: str) -> HcsBatchError:
    """Rebuild the exception a server reported as (``code``, ``message``); unknown codes become RemoteError."""
    for cls in _all_subclasses(HcsBatchError):
        if cls.code == code:
            return cls(message)
    return RemoteError(message)
