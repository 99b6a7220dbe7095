"""Exceptions of ``bratskit export``, each in the exit-code category of what went wrong
(:mod:`submission.exit_codes`).

:class:`ExportError`        failed (1): a file could not be written or fails its parity check.
:class:`OutputExistsError`  bad value (2): ``--out`` is not empty and ``--force`` not given.
:class:`RunError`           unusable (3): a training run or an ONNX file to import.
:func:`require_modules`     unavailable (4): a dependency of the command is not installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from submission.exit_codes import BadValueError, FailedError, UnavailableError, UnusableError


class ExportError(RuntimeError, FailedError):
    """Export or parity failure; the message names the member, the format and the numbers."""


class OutputExistsError(ValueError, BadValueError):
    """The output folder exists and is not empty; the message says to pass ``--force``."""


class RunError(ValueError, UnusableError):
    """An unusable input: a run, checkpoint or ONNX file; the message names the path and fix."""


#: What installs the ``bratskit import`` dependencies (the ``import`` extra).
IMPORT_INSTALL = (
    "make install (or pip install -e '.[import]' and requirements/import-nodeps.txt --no-deps)"
)


def require_modules(needs: str, modules: Sequence[str], install: str) -> None:
    """Import ``modules`` (what a command loads when it runs, not when it is listed);
    the first missing one is an :class:`~submission.exit_codes.UnavailableError` (exit
    4): ``<needs> (<module> is missing): <install>``."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise UnavailableError(f"{needs} ({exc.name} is missing): {install}") from None
