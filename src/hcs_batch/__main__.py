"""``python -m hcs_batch`` is the ``hcs-batch`` command."""

from .cli import main

raise SystemExit(main())
