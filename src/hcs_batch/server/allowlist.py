"""The step allowlist: which ``module:function`` references a server may import and run.

A server runs code only from modules it trusts:

- ``hcs_batch.steps`` (the built-in steps);
- modules registered by installed packages under the entry-point group ``hcs_batch.steps`` (the entry point's
  value names the module, e.g. ``mylab = "mylab.steps"`` in ``[project.entry-points."hcs_batch.steps"]``);
- module prefixes the operator names with ``hcs-batch serve --allow-steps PREFIX``.

A module is allowed when it equals an allowed name or lies below it (``mylab`` allows ``mylab.steps``, never
``mylabx``). The check is pure string work on the step's text: a refused module is never imported, so its
import-time code never runs. After import, :func:`check_function` also requires the function itself to be
defined in an allowed module, so an allowed module cannot be used to reach something it merely imported
(``mylab.steps:run`` where ``run`` is ``subprocess.run``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata

from ..errors import InputError, PipelineError

__all__ = ["BUILTIN_STEPS", "ENTRY_POINT_GROUP", "StepAllowlist", "registered_step_modules"]

BUILTIN_STEPS = "hcs_batch.steps"
ENTRY_POINT_GROUP = "hcs_batch.steps"
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def registered_step_modules() -> tuple[str, ...]:
    """The modules installed packages register under the ``hcs_batch.steps`` entry-point group (metadata only:
    nothing is imported). An entry point whose value is not a module name is ignored."""
    found: list[str] = []
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        module = entry.value.partition(":")[0].strip()
        if _MODULE.match(module):
            found.append(module)
    return tuple(sorted(set(found)))


@dataclass(frozen=True, slots=True)
class StepAllowlist:
    """The module prefixes a server allows steps from (see the module docstring)."""

    prefixes: tuple[str, ...]

    @classmethod
    def build(cls, extra: Iterable[str] = (), *, entry_points: bool = True) -> StepAllowlist:
        """The built-in steps, the registered step packages (``entry_points``) and the ``extra`` prefixes.

        Raises:
            InputError: an ``extra`` prefix that is not a dotted module name.
        """
        prefixes = [BUILTIN_STEPS]
        for prefix in extra:
            if not _MODULE.match(prefix):
                raise InputError(f"--allow-steps {prefix!r} is not a module name (e.g. mylab or mylab.steps)")
            prefixes.append(prefix)
        if entry_points:
            prefixes.extend(registered_step_modules())
        return cls(tuple(dict.fromkeys(prefixes)))

    def allows(self, module: str) -> bool:
        """True when ``module`` is an allowed prefix or lies below one."""
        return any(module == prefix or module.startswith(prefix + ".") for prefix in self.prefixes)

    def check(self, func: str) -> None:
        """Refuse a ``module:function`` whose module is not allowed (before anything is imported).

        Raises:
            PipelineError: naming the module and how to allow it.
        """
        module, _, attr = func.partition(":")
        if not self.allows(module):
            raise PipelineError(
                f"module {module!r} is not an allowed step module on this server (allowed: "
                f"{', '.join(self.prefixes)}); to allow it, the server's operator starts it with "
                f"'--allow-steps {module}' or installs it as a step package (entry-point group "
                f"{ENTRY_POINT_GROUP!r})"
            )
        if attr.startswith("_"):
            raise PipelineError(f"{func}: private names (starting with '_') are not steps")

    def check_function(self, func_ref: str, func: object) -> None:
        """After import: the function must be defined in an allowed module, not merely imported into one.

        Raises:
            PipelineError: the function comes from a module outside the allowlist.
        """
        defined_in = getattr(func, "__module__", None)
        if not isinstance(defined_in, str) or not self.allows(defined_in):
            raise PipelineError(
                f"{func_ref} is defined in module {defined_in!r}, which is not an allowed step module; "
                "a step must be a function defined in an allowed step package"
            )
