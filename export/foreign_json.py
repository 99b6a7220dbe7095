"""The JSON files of models trained elsewhere (nnU-Net's plans.json and dataset.json, a
MONAI bundle's configs), read as data only: every failure is a :class:`RunError` (exit 3)
naming the file and, when it is missing, the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from export.errors import RunError


def read_json_object(path: Path, missing_fix: str) -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        RunError: the file is missing (``missing_fix`` says what to do), unreadable, not
            JSON, or not an object.
    """
    if not path.is_file():
        raise RunError(f"{path} is missing: {missing_fix}")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise RunError(f"{path} does not hold a JSON object")
    return raw
