"""Exceptions of ``bratskit export``, each in the exit-code category of what went wrong
(:mod:`submission.exit_codes`).

:class:`ExportError`        failed (1): a file could not be written or fails its parity check.
:class:`OutputExistsError`  bad value (2): ``--out`` is not empty and ``--force`` not given.
:class:`RunError`           unusable (3): a training run or an ONNX file to import.
"""

from __future__ import annotations

from submission.exit_codes import BadValueError, FailedError, UnusableError


class ExportError(RuntimeError, FailedError):
    """Export or parity failure; the message names the member, the format and the numbers."""


class OutputExistsError(ValueError, BadValueError):
    """The output folder exists and is not empty; the message says to pass ``--force``."""


class RunError(ValueError, UnusableError):
    """An unusable input: a run, checkpoint or ONNX file; the message names the path and fix."""
