"""Exit codes of ``hcs-batch`` and the one way a command reports an error (one line on stderr).

0 all plates succeeded; 1 some failed; 2 bad usage or input found before any work; 3 server unreachable;
130 cancelled by Ctrl-C.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ..errors import InputError, RemoteError, SecurityError, ServerUnreachableError, TransportError

__all__ = ["EXIT_CANCELLED", "EXIT_FAILED", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "error", "guarded"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CANCELLED = 130


def error(message: str) -> None:
    """Print ``hcs-batch: message`` on stderr."""
    print(f"hcs-batch: {message}", file=sys.stderr, flush=True)


def guarded(command: Callable[[], int]) -> int:
    """Run ``command``; our errors become one line on stderr and their exit code, Ctrl-C exit 130."""
    try:
        return command()
    except ServerUnreachableError as exc:
        error(str(exc))
        return EXIT_UNREACHABLE
    except (TransportError, RemoteError) as exc:  # lost or restarted mid-command, or the server refused: exit 1
        error(str(exc))
        return EXIT_FAILED
    except (InputError, SecurityError) as exc:
        error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_CANCELLED
