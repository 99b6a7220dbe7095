"""The shape of ``manifest.json``: every key, the JSON type of its value and the range of
its sizes, checked before the manifest is parsed.

A manifest is hand-editable JSON, so a value of the wrong type (``"et_threshold": "600"``,
``members`` as a mapping), a patch of 0 or 4096 cubed, a divisor of a billion or a key
this version does not know must be refused when the bundle is loaded, naming the field
(``manifest.json: members[2].patch: expected three integers 1..1024, got [0, 0, 0]``),
not found by a traceback in the middle of a run.

What is checked where:

- here: required and unknown keys, JSON types, and the sizes no other code bounds
  (patches, windows, divisors, margins);
- :mod:`submission.predict.options`: the ranges and choices of the recommended options
  (the same checks as the ``predict`` flags);
- :class:`~submission.predict.bundle.Manifest` and the classes it is built of: the
  vocabulary (label scheme, channels, stages, regions, outputs, file formats, crop
  policy) and how members fit together.

Hand-written rather than a JSON Schema: the runtime image would need ``jsonschema``, and
the ranges of the options would live in two places.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from submission.predict.members import WINDOWS

#: Voxels along one axis of a patch, window or fixed size: four times a BraTS volume's
#: 240. Anything larger is a corrupt manifest, not a network.
MAX_SIZE = 1024
#: A network's total stride on one axis (32 for the papers' networks).
MAX_DIVISOR = 256
#: The largest voxel size a manifest may state, in mm (native MRI slices are a few mm).
MAX_SPACING_MM = 20.0
#: The weight precisions of an exported file.
FILE_PRECISIONS = ("fp32", "fp16")

_TOP_REQUIRED = ("format", "format_version", "label_scheme", "channels", "preprocessing", "members")
_TOP_OPTIONAL = (
    "bratskit_version",
    "created",
    "localization",
    "recommended",
    "task",
    "missing_modalities",
    "pipelines",
)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class SchemaError(ValueError):
    """A manifest value of the wrong type or size: the message names the field."""


def check_manifest_data(raw: Any) -> None:
    """Check the parsed JSON of a ``manifest.json`` (see the module docstring).

    Raises:
        SchemaError: ``manifest.json: <field>: expected <what>, got <value>``.
    """
    _keys(raw, "", _TOP_REQUIRED, _TOP_OPTIONAL)
    for name in ("label_scheme", "bratskit_version", "created"):
        if name in raw:
            _string(raw[name], name)
    if raw.get("task") is not None:
        _string(raw["task"], "task", empty=False)
    missing = raw.get("missing_modalities", {})
    if not isinstance(missing, Mapping):
        _fail("missing_modalities", "a mapping of modality to fill policy", missing)
    for modality, policy in missing.items():
        _string(policy, f"missing_modalities.{modality}")
    _list(raw["channels"], "channels", _string)
    _preprocessing(raw["preprocessing"])
    pipelines = raw.get("pipelines", {})
    if not isinstance(pipelines, Mapping):
        _fail("pipelines", "a mapping of name to pipeline", pipelines)
    for name, pipeline in pipelines.items():  # each kind's fields: its own from_dict
        _keys(pipeline, f"pipelines.{name}", ("kind",), tuple(pipeline))
        _string(pipeline["kind"], f"pipelines.{name}.kind", empty=False)
    if raw.get("localization") is not None:
        _keys(raw["localization"], "localization", ("window",))
        _sizes(raw["localization"]["window"], "localization.window", 1, MAX_SIZE)
    if not isinstance(raw["members"], list) or not raw["members"]:
        _fail("members", "a non-empty list of members", raw["members"])
    for i, member in enumerate(raw["members"]):
        _member(member, f"members[{i}]")
    if "recommended" in raw:
        _recommended(raw["recommended"])


def _preprocessing(raw: Any) -> None:
    _keys(raw, "preprocessing", (), ("crop", "margin", "divisor", "normalise", "spacing"))
    for name in ("crop", "normalise"):
        if name in raw:
            _string(raw[name], f"preprocessing.{name}")
    if "margin" in raw:
        _integer(raw["margin"], "preprocessing.margin", 0, MAX_SIZE)
    if "divisor" in raw:
        _integer(raw["divisor"], "preprocessing.divisor", 1, MAX_DIVISOR)
    spacing = raw.get("spacing")
    if spacing is not None and (
        not isinstance(spacing, list)
        or len(spacing) != 3
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= MAX_SPACING_MM
            for v in spacing
        )
    ):
        _fail("preprocessing.spacing", f"three voxel sizes in (0, {MAX_SPACING_MM}] mm", spacing)


def _member(raw: Any, where: str) -> None:
    optional = (
        "stage",
        "architecture",
        "size_rule",
        "patch",
        "outputs",
        "channels",
        "pipeline",
        "labels",
        "window",
    )
    _keys(raw, where, ("key", "fold", "regions", "files"), optional)
    _string(raw["key"], f"{where}.key", empty=False)
    _integer(raw["fold"], f"{where}.fold", 0, None)
    _list(raw["regions"], f"{where}.regions", _string)
    if raw.get("channels") is not None:  # the member's own input channels
        _list(raw["channels"], f"{where}.channels", _string)
    for name in ("stage", "outputs"):
        if name in raw:
            _string(raw[name], f"{where}.{name}")
    if raw.get("window", "volume") not in WINDOWS:
        _fail(f"{where}.window", f"one of {_shown(list(WINDOWS))}", raw["window"])
    if raw.get("pipeline") is not None:
        _string(raw["pipeline"], f"{where}.pipeline", empty=False)
    if raw.get("labels") is not None:  # a label-based member's label per output channel
        _list(raw["labels"], f"{where}.labels", lambda v, w: _integer(v, w, 0, 255))
    architecture = raw.get("architecture")
    if architecture is not None:
        _keys(architecture, f"{where}.architecture", ("name",), ("params",))
        _string(architecture["name"], f"{where}.architecture.name", empty=False)
        if not isinstance(architecture.get("params", {}), Mapping):
            _fail(f"{where}.architecture.params", "a mapping", architecture["params"])
    if "size_rule" in raw:
        rule = raw["size_rule"]
        _keys(rule, f"{where}.size_rule", (), ("divisors", "fixed"))
        if "divisors" in rule:
            _sizes(rule["divisors"], f"{where}.size_rule.divisors", 1, MAX_DIVISOR)
        if "fixed" in rule:
            _sizes(rule["fixed"], f"{where}.size_rule.fixed", 1, MAX_SIZE, nullable=True)
    if raw.get("patch") is not None:
        _sizes(raw["patch"], f"{where}.patch", 1, MAX_SIZE)
    files = raw["files"]
    if not isinstance(files, Mapping) or not files:
        _fail(f"{where}.files", "a non-empty mapping of file format to file", files)
    for fmt, entry in files.items():
        _file(entry, f"{where}.files.{fmt}")


def _file(raw: Any, where: str) -> None:
    _keys(raw, where, ("path", "sha256"), ("precision", "parity"))
    _string(raw["path"], f"{where}.path")  # its form is ModelFile's check
    if not isinstance(raw["sha256"], str) or not _SHA256.fullmatch(raw["sha256"]):
        _fail(f"{where}.sha256", "64 lowercase hexadecimal digits", raw["sha256"])
    if raw.get("precision", "fp32") not in FILE_PRECISIONS:
        _fail(f"{where}.precision", f"one of {_shown(list(FILE_PRECISIONS))}", raw["precision"])
    parity = raw.get("parity")
    if parity is not None:
        if not isinstance(parity, Mapping):
            _fail(f"{where}.parity", "a mapping or null", parity)
        for name in ("max_abs_diff", "tolerance"):
            _number(parity.get(name), f"{where}.parity.{name}", finite=False)


def _recommended(raw: Any) -> None:
    """Types only: the ranges and choices are the ``predict`` options' own checks (the
    manifest's parser applies them, naming the key): ``et_replace`` is ``necrosis``,
    ``background`` or ``empty`` (:data:`~submission.predict.options.ET_REPLACEMENTS`),
    ``confidence_empty`` is ``zero``, ``exclude`` or ``background``
    (:data:`~submission.predict.options.CONFIDENCE_EMPTY`)."""
    names = (
        "ensemble",
        "top_k",
        "et_threshold",
        "et_replace",
        "threshold",
        "overlap",
        "confidence_empty",
    )
    _keys(raw, "recommended", (), names)
    for name in ("ensemble", "et_replace", "confidence_empty"):
        if name in raw:
            _string(raw[name], f"recommended.{name}")
    if raw.get("top_k") is not None:
        _integer(raw["top_k"], "recommended.top_k", None, None)
    if "et_threshold" in raw:
        _integer(raw["et_threshold"], "recommended.et_threshold", None, None)
    if "overlap" in raw:
        _number(raw["overlap"], "recommended.overlap")
    threshold = raw.get("threshold", 0.5)
    if isinstance(threshold, Mapping):
        for region, value in threshold.items():
            _number(value, f"recommended.threshold.{region}")
    else:
        _number(threshold, "recommended.threshold", also="or a mapping of region to number")


# -- the checks of one value ------------------------------------------------------------


def _keys(raw: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()):
    if not isinstance(raw, Mapping):
        _fail(where or "the whole file", "a mapping (a JSON object)", raw)
    missing = [k for k in required if k not in raw]
    if missing:
        raise SchemaError(f"manifest.json: {where or 'top level'}: missing key {missing[0]!r}")
    unknown = [k for k in raw if k not in required + optional]
    if unknown:
        known = ", ".join(required + optional)
        raise SchemaError(
            f"manifest.json: {where or 'top level'}: unknown key {unknown[0]!r} (this "
            f"bratskit knows {known}): remove it, or read the bundle with the bratskit "
            "version that wrote it"
        )


def _string(value: Any, where: str, empty: bool = True) -> None:
    if not isinstance(value, str) or (not empty and not value):
        _fail(where, "a string" if empty else "a non-empty string", value)


def _integer(value: Any, where: str, low: int | None, high: int | None) -> None:
    # JSON true is a Python bool, an int: refuse it like any other non-integer.
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        _fail(where, f"an integer{_range(low, high)}", value)


def _number(value: Any, where: str, finite: bool = True, also: str = "") -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or (finite and not math.isfinite(value)):
        _fail(where, " ".join(filter(None, ["a number", also])), value)


def _sizes(value: Any, where: str, low: int, high: int, nullable: bool = False) -> None:
    def size(v: Any) -> bool:
        integer = isinstance(v, int) and not isinstance(v, bool)
        return (nullable and v is None) or (integer and low <= v <= high)

    if not isinstance(value, list) or len(value) != 3 or not all(map(size, value)):
        what = f"three integers {low}..{high}" + (" or null" if nullable else "")
        _fail(where, what, value)


def _list(value: Any, where: str, check) -> None:
    if not isinstance(value, list):
        _fail(where, "a list", value)
    for i, item in enumerate(value):
        check(item, f"{where}[{i}]")


def _range(low: int | None, high: int | None) -> str:
    if low is None:
        return "" if high is None else f" <= {high}"
    return f" >= {low}" if high is None else f" {low}..{high}"


def _shown(value: Any) -> str:
    """A value as the manifest spells it (JSON), cut to a readable length."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(where: str, expected: str, value: Any):
    raise SchemaError(f"manifest.json: {where}: expected {expected}, got {_shown(value)}")
