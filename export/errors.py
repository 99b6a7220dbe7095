"""Exceptions of ``bratskit export``, one per exit code the command gives them.

:class:`ExportError`        exit 1: a file could not be written or fails its parity check.
:class:`OutputExistsError`  exit 2: ``--out`` is not empty and ``--force`` was not given.
:class:`RunError`           exit 3: a training run or an ONNX file to import is unusable.
"""

from __future__ import annotations


class ExportError(RuntimeError):
    """Export or parity failure; the message names the member, the format and the numbers."""


class OutputExistsError(ValueError):
    """The output folder exists and is not empty; the message says to pass ``--force``."""


class RunError(ValueError):
    """An unusable input: a run, checkpoint or ONNX file; the message names the path and fix."""
