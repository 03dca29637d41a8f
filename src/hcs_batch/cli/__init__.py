"""The ``hcs-batch`` command: the parser (:mod:`.parser`), exit codes (:mod:`.exits`) and one module per group of
commands (:mod:`.batch` compile/run/demo, :mod:`.run` the start of run with the embedded server, :mod:`.observe`
status/attach, :mod:`.control` pause/resume/cancel/servers/shutdown, :mod:`.serve`, :mod:`.plates` make-plates,
:mod:`.inspect`, :mod:`.keys`), each imported only when its command runs.

Exit codes: 0 all plates succeeded; 1 some failed; 2 bad usage or input found before any work; 3 server
unreachable; 130 cancelled by Ctrl-C. A reader of stdout that goes away (``hcs-batch inspect PLATE | head``) ends
the command quietly with exit 1, as Unix tools do, instead of a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import NoReturn

from .exits import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, guarded
from .parser import build_parser

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "build_parser",
    "console_main",
    "main",
]

_COMMANDS = {
    "serve": ("serve", "main_serve", False),
    "make-plates": ("plates", "main_make_plates", False),
    "keys": ("keys", "main_keys", False),
    "inspect": ("inspect", "main_inspect", False),
    "compile": ("batch", "main_batch", True),
    "run": ("run", "main_run", True),
    "demo": ("batch", "main_demo", True),
    "status": ("observe", "main_status", True),
    "attach": ("observe", "main_attach", True),
    "pause": ("control", "main_control", True),
    "resume": ("control", "main_control", True),
    "cancel": ("control", "main_control", True),
    "servers": ("control", "main_control", True),
    "shutdown": ("control", "main_control", True),
}
"""command -> (module of this package, its function, whether :func:`guarded` reports its errors)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    module, function, wrap = _COMMANDS[args.command]
    body: Callable[[argparse.Namespace], int] = getattr(import_module(f".{module}", __name__), function)
    try:
        code = guarded(lambda: body(args)) if wrap else body(args)
        sys.stdout.flush()  # here, where a closed pipe can still be handled, not at interpreter exit
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's own flush stays quiet
        return EXIT_FAILED
    return code


def console_main() -> NoReturn:
    """The ``hcs-batch`` command as a process (the console script, ``python -m hcs_batch``): :func:`main`, then the
    process ends without the interpreter's teardown of its modules, which took 0.06-0.15 s after the command's last
    output on every run (freeing numpy, pyarrow, zmq and trio object by object; measured with
    ``benchmarks.run_phases``). What a normal exit does that matters still happens first: threads that are not
    daemons are joined, the ``atexit`` handlers run (logging's, multiprocessing's) and the standard streams are
    flushed. An exception, and ``SystemExit`` (``--help``, a usage error), leave the usual way."""
    code = main()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing left to save
            pass
    os._exit(code)
