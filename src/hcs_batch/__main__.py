"""``python -m hcs_batch`` is the ``hcs-batch`` command."""

from .cli import console_main

console_main()
