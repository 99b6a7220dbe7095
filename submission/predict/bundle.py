"""Model bundles: a folder with ``manifest.json`` and the model files it lists (DESIGN.md).

The manifest says everything the runtime needs and nothing it must guess::

    {
      "format": "bratskit-bundle", "format_version": 1,
      "bratskit_version": "0.1.0", "created": "2026-11-21T10:00:00+00:00",
      "label_scheme": "2021",                     # labels written by default
      "channels": ["t1n", "t1c", "t2w", "t2f"],   # input channel order of every model
      "preprocessing": {"crop": "brain", "margin": 4, "divisor": 16,
                        "normalise": "zscore_nonzero"},
      "localization": null | {"window": [128, 128, 128]},   # paper 002, section 2.3
      "members": [
        {"key": "seg", "fold": 0, "stage": "segmentation", "regions": ["WT", "TC", "ET"],
         "architecture": {"name": "resunet", "params": {...}} | null,
         "size_rule": {"divisors": [16, 16, 16], "fixed": [null, null, null]},
         "patch": [80, 96, 64] | null,           # sliding-window patch (the training crop)
         "outputs": "probabilities" | "logits",
         "files": {"onnx": {"path": "seg/fold0.onnx", "sha256": "...", "precision": "fp32",
                            "parity": {"max_abs_diff": 3e-7, "tolerance": 1e-4,
                                       "input_shape": [1, 4, 80, 96, 64],
                                       "export_shape": [1, 4, 64, 80, 48],
                                       "reference": "eager torch, fp32"} | null},
                   "onnx-fp16": {...}, "torchscript": {...}}}
      ],
      "recommended": {"ensemble": "mean", "top_k": null, "et_threshold": 0,
                      "et_replace": "necrosis", "threshold": 0.5, "overlap": 0.5}
    }

A *member* is one trained network (one fold of one recipe member); its ``files`` are
the same network in different formats. Stage ``localization`` members predict WT on
the whole cropped brain to place the stage-2 window; ``segmentation`` members predict
their regions on the window (or the whole crop without localisation). Every region of
WT, TC and ET must be predicted by at least one segmentation member.

This module reads and writes manifests; the runtime verifies every sha256 before use
and refuses a manifest whose format or version it does not understand.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from submission.brats import MODALITIES, SCHEMES, TUMOUR_REGIONS
from submission.exit_codes import UnusableError
from submission.predict.ensemble import ENSEMBLE_METHODS
from submission.predict.postprocess import ET_REPLACEMENTS
from submission.predict.preprocess import Preprocessing
from submission.predict.sliding_window import SizeRule

FORMAT = "bratskit-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILE_FORMATS = ("onnx", "onnx-fp16", "torchscript")
STAGES = ("localization", "segmentation")
OUTPUT_KINDS = ("probabilities", "logits")


class BundleError(ValueError, UnusableError):
    """A bundle that cannot be used: the message names the file or key and the fix."""


@dataclass(frozen=True)
class ModelFile:
    """One exported file of a member.

    Attributes:
        path: relative to the bundle folder, with forward slashes.
        sha256: hex digest of the file.
        precision: ``fp32`` or ``fp16`` (the weights and arithmetic; inputs and outputs
            are float32 either way).
        parity: the export check (max_abs_diff, tolerance, input_shape, reference), or
            None for files imported without a reference model.
    """

    path: str
    sha256: str
    precision: str = "fp32"
    parity: dict[str, Any] | None = None


@dataclass(frozen=True)
class Member:
    """One trained network of the ensemble (see the module docstring)."""

    key: str
    fold: int
    regions: tuple[str, ...]
    files: dict[str, ModelFile]
    stage: str = "segmentation"
    architecture: dict[str, Any] | None = None
    size_rule: SizeRule = field(default_factory=SizeRule)
    patch: tuple[int, int, int] | None = None
    outputs: str = "probabilities"

    @property
    def name(self) -> str:
        """``key/fold<k>``, as log lines name it."""
        return f"{self.key}/fold{self.fold}"


@dataclass(frozen=True)
class Recommended:
    """Ensemble and post-processing defaults; ``bratskit predict`` flags override them.

    ``threshold`` is one probability for every region or one per region
    (``{"WT": 0.35, "TC": 0.5, "ET": 0.5}``, what ``bratskit tune`` may choose).
    """

    ensemble: str = "mean"
    top_k: int | None = None
    et_threshold: int = 0
    et_replace: str = "necrosis"
    threshold: float | dict[str, float] = 0.5
    overlap: float = 0.5


def region_thresholds(threshold: float | Mapping[str, float]) -> dict[str, float]:
    """The probability threshold of each of WT, TC and ET: a number applies to all three.

    Raises:
        ValueError: a mapping without exactly WT, TC and ET, or a value outside [0, 1).
    """
    if isinstance(threshold, Mapping):
        if set(threshold) != set(TUMOUR_REGIONS):
            raise ValueError(
                f"per-region thresholds need exactly {', '.join(TUMOUR_REGIONS)}, "
                f"got {', '.join(map(str, threshold))}"
            )
        values = {r: float(threshold[r]) for r in TUMOUR_REGIONS}
    else:
        values = dict.fromkeys(TUMOUR_REGIONS, float(threshold))
    bad = {r: v for r, v in values.items() if not 0 <= v < 1}
    if bad:
        raise ValueError(f"thresholds must lie in [0, 1), got {bad}")
    return values


@dataclass(frozen=True)
class Manifest:
    """A parsed ``manifest.json`` (see the module docstring)."""

    members: tuple[Member, ...]
    label_scheme: str = "2021"
    channels: tuple[str, ...] = MODALITIES
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    localization: tuple[int, int, int] | None = None
    recommended: Recommended = field(default_factory=Recommended)
    bratskit_version: str = ""
    created: str = ""

    def __post_init__(self) -> None:
        _check_manifest(self)

    @property
    def formats(self) -> set[str]:
        """The file formats every member has (what a backend can run the whole bundle in)."""
        return set.intersection(*(set(m.files) for m in self.members))

    @property
    def fewest_members(self) -> int:
        """Segmentation members of the least covered region: confidence's largest top-k."""
        stage = self.stage("segmentation")
        return min(sum(r in m.regions for m in stage) for r in TUMOUR_REGIONS)

    def stage(self, name: str) -> tuple[Member, ...]:
        """Members of stage ``name`` in manifest order."""
        return tuple(m for m in self.members if m.stage == name)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written to ``manifest.json``."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "bratskit_version": self.bratskit_version,
            "created": self.created,
            "label_scheme": self.label_scheme,
            "channels": list(self.channels),
            "preprocessing": self.preprocessing.to_dict(),
            "localization": (
                None if self.localization is None else {"window": list(self.localization)}
            ),
            "members": [_member_dict(m) for m in self.members],
            "recommended": asdict(self.recommended),
        }


def _member_dict(member: Member) -> dict[str, Any]:
    return {
        "key": member.key,
        "fold": member.fold,
        "stage": member.stage,
        "regions": list(member.regions),
        "architecture": member.architecture,
        "size_rule": {
            "divisors": list(member.size_rule.divisors),
            "fixed": list(member.size_rule.fixed),
        },
        "patch": None if member.patch is None else list(member.patch),
        "outputs": member.outputs,
        "files": {fmt: asdict(f) for fmt, f in member.files.items()},
    }


def _check_manifest(manifest: Manifest) -> None:
    if manifest.label_scheme not in SCHEMES:
        raise BundleError(f"label_scheme {manifest.label_scheme!r} is not one of {list(SCHEMES)}")
    if sorted(manifest.channels) != sorted(MODALITIES):
        raise BundleError(
            f"channels must be an order of {list(MODALITIES)}, got {list(manifest.channels)}"
        )
    if manifest.recommended.ensemble not in ENSEMBLE_METHODS:
        raise BundleError(
            f"recommended.ensemble {manifest.recommended.ensemble!r} is not one of "
            f"{list(ENSEMBLE_METHODS)}"
        )
    if manifest.recommended.et_replace not in ET_REPLACEMENTS:
        raise BundleError(f"recommended.et_replace must be one of {list(ET_REPLACEMENTS)}")
    try:
        region_thresholds(manifest.recommended.threshold)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"recommended.threshold: {exc}") from None
    if not manifest.members:
        raise BundleError("the manifest lists no member")
    for m in manifest.members:
        if m.stage not in STAGES:
            raise BundleError(f"member {m.name}: stage {m.stage!r} is not one of {list(STAGES)}")
        if not m.regions or any(r not in TUMOUR_REGIONS for r in m.regions):
            raise BundleError(f"member {m.name}: regions must be from {TUMOUR_REGIONS}")
        if m.outputs not in OUTPUT_KINDS:
            raise BundleError(f"member {m.name}: outputs must be one of {list(OUTPUT_KINDS)}")
        if not m.files or any(fmt not in FILE_FORMATS for fmt in m.files):
            raise BundleError(
                f"member {m.name}: files must be keyed by {list(FILE_FORMATS)}, got {list(m.files)}"
            )
        if m.stage == "localization" and tuple(m.regions) != ("WT",):
            raise BundleError(f"localization member {m.name} must predict WT only")
    names = [m.name for m in manifest.members]
    if len(set(names)) != len(names):
        raise BundleError(f"member key/fold pairs must be unique, got {names}")
    covered = {r for m in manifest.stage("segmentation") for r in m.regions}
    missing = [r for r in TUMOUR_REGIONS if r not in covered]
    if missing:
        raise BundleError(f"no segmentation member predicts {', '.join(missing)}")
    has_stage1 = bool(manifest.stage("localization"))
    if has_stage1 != (manifest.localization is not None):
        raise BundleError(
            "localization members and a localization window go together: "
            f"{len(manifest.stage('localization'))} member(s), window {manifest.localization}"
        )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_from_dict(raw: dict[str, Any]) -> Manifest:
    """Parse plain manifest data.

    Raises:
        BundleError: not a bratskit manifest, an unknown format version, or a bad key.
    """
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BundleError(f"not a bratskit bundle manifest (format must be {FORMAT!r})")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"bundle format version {version!r} is not understood by this bratskit "
            f"(it reads version {FORMAT_VERSION}); re-export the bundle with this version"
        )
    try:
        localization = raw.get("localization")
        return Manifest(
            members=tuple(_member_from_dict(m) for m in raw["members"]),
            label_scheme=str(raw["label_scheme"]),
            channels=tuple(raw["channels"]),
            preprocessing=Preprocessing(**raw["preprocessing"]),
            localization=None if localization is None else tuple(localization["window"]),
            recommended=Recommended(**raw.get("recommended", {})),
            bratskit_version=str(raw.get("bratskit_version", "")),
            created=str(raw.get("created", "")),
        )
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"invalid manifest: {type(exc).__name__}: {exc}") from None


def _member_from_dict(raw: dict[str, Any]) -> Member:
    rule = raw.get("size_rule") or {}
    return Member(
        key=str(raw["key"]),
        fold=int(raw["fold"]),
        stage=str(raw.get("stage", "segmentation")),
        regions=tuple(raw["regions"]),
        architecture=raw.get("architecture"),
        size_rule=SizeRule(
            tuple(rule.get("divisors", (1, 1, 1))), tuple(rule.get("fixed", (None,) * 3))
        ),
        patch=None if raw.get("patch") is None else tuple(int(p) for p in raw["patch"]),
        outputs=str(raw.get("outputs", "probabilities")),
        files={fmt: ModelFile(**f) for fmt, f in raw["files"].items()},
    )


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically; returns its path."""
    path = Path(bundle_dir) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.partial")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(bundle_dir: Path) -> Manifest:
    """Parse a bundle's manifest without touching the model files.

    Raises:
        BundleError: no folder, no manifest, unreadable JSON or a bad manifest.
    """
    path = Path(bundle_dir) / MANIFEST
    if not Path(bundle_dir).is_dir():
        raise BundleError(f"bundle folder {bundle_dir} does not exist")
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{bundle_dir} is not a bundle: it has no {MANIFEST}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    return manifest_from_dict(raw)


def verify_files(bundle_dir: Path, manifest: Manifest, formats: tuple[str, ...] = FILE_FORMATS):
    """Check that every listed file of ``formats`` exists and matches its sha256.

    Raises:
        BundleError: the first missing or altered file, by path.
    """
    for member in manifest.members:
        for fmt, model_file in member.files.items():
            if fmt not in formats:
                continue
            path = Path(bundle_dir) / model_file.path
            if not path.is_file():
                raise BundleError(f"member {member.name}: {fmt} file {path} is missing")
            actual = sha256_file(path)
            if actual != model_file.sha256:
                raise BundleError(
                    f"member {member.name}: {path} has sha256 {actual[:12]}..., the manifest "
                    f"says {model_file.sha256[:12]}...: the file was altered or replaced; "
                    "re-export the bundle"
                )


def load_bundle(bundle_dir: Path, formats: tuple[str, ...] = FILE_FORMATS) -> Manifest:
    """Read the manifest and verify the sha256 of every file of ``formats``."""
    manifest = read_manifest(bundle_dir)
    verify_files(bundle_dir, manifest, formats)
    return manifest


def copy_bundle(
    bundle_dir: Path, out_dir: Path, formats: tuple[str, ...] = FILE_FORMATS
) -> Manifest:
    """Copy the files of ``formats`` (those a member has) and a manifest listing only them
    into the new folder ``out_dir``, verifying every sha256 on both sides: what a runtime
    image bakes in when it carries one backend.

    Raises:
        BundleError: an unknown format, a missing or altered file, a member left with none
            of ``formats``, or ``out_dir`` already holding files.
    """
    unknown = sorted(set(formats) - set(FILE_FORMATS))
    if unknown:
        raise BundleError(f"unknown file format(s) {unknown}; choose from {FILE_FORMATS}")
    manifest = load_bundle(bundle_dir, formats)
    kept = []
    for member in manifest.members:
        files = {fmt: f for fmt, f in member.files.items() if fmt in formats}
        if not files:
            raise BundleError(
                f"member {member.name} has no file of {', '.join(formats)} (it has "
                f"{', '.join(member.files)}); export the bundle with that format"
            )
        kept.append(replace(member, files=files))
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BundleError(f"{out_dir} is not empty; choose a new folder")
    for member in kept:
        for model_file in member.files.values():
            target = out_dir / model_file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(bundle_dir) / model_file.path, target)
    subset = replace(manifest, members=tuple(kept))
    write_manifest(out_dir, subset)
    return load_bundle(out_dir, formats)


def with_recommended(manifest: Manifest, **changes: Any) -> Manifest:
    """A copy of ``manifest`` whose recommended defaults have ``changes`` applied."""
    return replace(manifest, recommended=replace(manifest.recommended, **changes))


def describe(manifest: Manifest, bundle_dir: Path | None = None) -> str:
    """A readable summary of a manifest, for ``bratskit export --info``."""
    rec = manifest.recommended
    loc = "none" if manifest.localization is None else "x".join(map(str, manifest.localization))
    lines = [
        f"bundle {bundle_dir}" if bundle_dir is not None else "bundle",
        f"  format            {FORMAT} v{FORMAT_VERSION} "
        f"(bratskit {manifest.bratskit_version or '?'}, created {manifest.created or '?'})",
        f"  label scheme      {manifest.label_scheme}",
        f"  channels          {', '.join(manifest.channels)}",
        f"  preprocessing     {manifest.preprocessing.to_dict()}",
        f"  localisation      {loc}",
        f"  recommended       ensemble {rec.ensemble}, top-k {rec.top_k or 'N/2'}, "
        f"ET threshold {rec.et_threshold} ({rec.et_replace}), threshold {rec.threshold}, "
        f"overlap {rec.overlap}",
        f"  members           {len(manifest.members)}",
    ]
    for m in manifest.members:
        arch = (m.architecture or {}).get("name", "imported")
        lines.append(
            f"    {m.name:<20} {m.stage:<12} {','.join(m.regions):<9} {arch:<10} "
            f"{m.outputs:<13} divisors {'x'.join(map(str, m.size_rule.divisors))}"
        )
        for fmt, f in m.files.items():
            parity = (
                "not checked"
                if f.parity is None
                else (f"parity {f.parity['max_abs_diff']:.2e} <= {f.parity['tolerance']:.0e}")
            )
            lines.append(f"      {fmt:<12} {f.path:<28} {f.sha256[:12]}  {f.precision}  {parity}")
    return "\n".join(lines)
