"""Model bundles: a folder with ``manifest.json`` and the model files it lists (DESIGN.md).

The manifest says everything the runtime needs and nothing it must guess::

    {
      "format": "bratskit-bundle", "format_version": 1,
      "bratskit_version": "0.1.0", "created": "2026-11-21T10:00:00+00:00",
      "task": "gli-2021" | null,                  # submission.tasks registry name
      "label_scheme": "2021",                     # labels written by default
      "channels": ["t1n", "t1c", "t2w", "t2f"],   # input channel order of every model
      "missing_modalities": {"t2w": "zero"},      # optional channels and their fill
      "pipelines": {"nnunet": {"kind": "nnunet", ...}},  # imported members' own inference
      "preprocessing": {"crop": "brain", "margin": 4, "divisor": 16,
                        "normalise": "zscore_nonzero",
                        "spacing": [1.0, 1.0, 1.0] | absent},  # trained spacing, mm
      "localization": null | {"window": [128, 128, 128]},   # paper 002, section 2.3
      "members": [
        {"key": "seg", "fold": 0, "stage": "segmentation", "regions": ["WT", "TC", "ET"],
         "channels": ["t2f"] | absent,           # the member's own inputs; absent: all
         "pipeline": "nnunet" | absent,          # runs through pipelines["nnunet"]
         "labels": [0, 2, 1, 4] | absent,        # label-based outputs: label per channel
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
                      "et_replace": "necrosis" | "background" | "empty",
                      "threshold": 0.5, "overlap": 0.5,
                      "confidence_empty": "zero" | "exclude" | "background"}
    }

A *member* (:mod:`submission.predict.members`) is one trained network; its ``files`` are
the same network in different formats. The members predict the regions of the task's
label scheme (:attr:`Manifest.scheme`: the task's, else ``label_scheme``'s): each member
some of them, every one by at least one segmentation member. ``channels`` are the task's
modalities (all four, or t1c alone for MEN-RT); a channel in ``missing_modalities`` may
be absent from a case, and is then filled as the members saw it in training when they
were trained with modality dropout (``zero``: zeros after normalisation).

This module parses, checks, reads and writes manifests, refusing an unknown format or
version and values of the wrong type or size (:mod:`~submission.predict.manifest_schema`);
:mod:`~submission.predict.bundle_files` verifies (sha256), copies and merges the files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from submission.brats import MODALITIES, SCHEMES, LabelScheme, get_scheme
from submission.exit_codes import UnusableError
from submission.predict.manifest_schema import SchemaError, check_manifest_data
from submission.predict.members import (
    FILE_FORMATS,
    OUTPUT_KINDS,
    STAGES,
    Member,
    member_from_dict,
)
from submission.predict.options import DEFAULT_CONFIDENCE_EMPTY, RECOMMENDABLE, check_option
from submission.predict.pipelines import ensemble_inputs, label_regions, pipeline_from_dict
from submission.predict.preprocess import Preprocessing
from submission.tasks import TASKS, get_task

#: How a missing optional channel is filled: ``zero``, the value modality dropout gives a
#: dropped channel after normalisation (:mod:`train.augment`).
MISSING_FILLS = ("zero",)

FORMAT = "bratskit-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class BundleError(ValueError, UnusableError):
    """A bundle that cannot be used: the message names the file or key and the fix."""


@dataclass(frozen=True)
class Recommended:
    """Ensemble and post-processing defaults; ``bratskit predict`` flags override them.

    ``threshold`` is one probability for every region or one per region
    (``{"WT": 0.35, "TC": 0.5, "ET": 0.5}``, what ``bratskit tune`` may choose).
    ``confidence_empty`` is the confidence ensemble's score of a member that segments
    nothing (:mod:`submission.predict.ensemble`); ``et_replace`` what ET emptied by the ET
    minimum volume becomes (:mod:`submission.predict.postprocess`).
    """

    ensemble: str = "mean"
    top_k: int | None = None
    et_threshold: int = 0
    et_replace: str = "necrosis"
    threshold: float | dict[str, float] = 0.5
    overlap: float = 0.5
    confidence_empty: str = DEFAULT_CONFIDENCE_EMPTY


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
    task: str | None = None
    missing_modalities: dict[str, str] = field(default_factory=dict)
    #: name -> an imported member group's own inference (:mod:`submission.predict.pipelines`).
    pipelines: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_manifest(self)

    @property
    def scheme(self) -> LabelScheme:
        """The label scheme the members were trained on: the task's, else ``label_scheme``."""
        return get_task(self.task).label_scheme if self.task else get_scheme(self.label_scheme)

    @property
    def region_names(self) -> tuple[str, ...]:
        """The regions the segmentation members predict, in :attr:`scheme`'s order."""
        return tuple(r for r in self.scheme.region_names if r in self.regions)

    @property
    def required_channels(self) -> tuple[str, ...]:
        """The channels every case must have (those without a missing-modality fill)."""
        return tuple(c for c in self.channels if c not in self.missing_modalities)

    @property
    def formats(self) -> set[str]:
        """The file formats every member has (what a backend can run the whole bundle in)."""
        return set.intersection(*(set(m.files) for m in self.members))

    @property
    def regions(self) -> set[str]:
        """The regions at least one segmentation member predicts."""
        return {r for m in self.stage("segmentation") for r in m.regions}

    @property
    def fewest_members(self) -> int:
        """Ensemble inputs of the least covered region (an nnU-Net group, its folds averaged
        as logits, is one): confidence's largest top-k."""
        return min(ensemble_inputs(self, r) for r in self.region_names)

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
            "task": self.task,
            "label_scheme": self.label_scheme,
            "channels": list(self.channels),
            "missing_modalities": dict(self.missing_modalities),
            "preprocessing": self.preprocessing.to_dict(),
            "localization": (
                None if self.localization is None else {"window": list(self.localization)}
            ),
            "members": [m.to_dict() for m in self.members],
            "recommended": asdict(self.recommended),
            **(
                {"pipelines": {n: p.to_dict() for n, p in self.pipelines.items()}}
                if self.pipelines
                else {}
            ),
        }


def _check_manifest(manifest: Manifest) -> None:
    if manifest.label_scheme not in SCHEMES:
        raise BundleError(f"label_scheme {manifest.label_scheme!r} is not one of {list(SCHEMES)}")
    if manifest.task is not None and manifest.task not in TASKS:
        raise BundleError(f"task {manifest.task!r} is not one of {list(TASKS)}")
    _check_channels(manifest)
    if not manifest.members:
        raise BundleError("the manifest lists no member")
    scheme = manifest.scheme
    for m in manifest.members:
        if m.stage not in STAGES:
            raise BundleError(f"member {m.name}: stage {m.stage!r} is not one of {list(STAGES)}")
        if not m.regions or any(r not in scheme.regions for r in m.regions):
            raise BundleError(
                f"member {m.name}: regions must be from {list(scheme.region_names)} (labels "
                f"{scheme.name}), got {list(m.regions)}"
            )
        if m.outputs not in OUTPUT_KINDS:
            raise BundleError(f"member {m.name}: outputs must be one of {list(OUTPUT_KINDS)}")
        if m.window == "patch" and m.patch is None:
            raise BundleError(f"member {m.name}: window 'patch' needs the member's patch")
        if not m.files or any(fmt not in FILE_FORMATS for fmt in m.files):
            raise BundleError(
                f"member {m.name}: files must be keyed by {list(FILE_FORMATS)}, got {list(m.files)}"
            )
        if m.stage == "localization" and tuple(m.regions) != (scheme.outermost,):
            raise BundleError(f"localization member {m.name} must predict {scheme.outermost} only")
        own = m.channels
        if own is not None and (
            not own or len(set(own)) != len(own) or set(own) - set(manifest.channels)
        ):
            raise BundleError(
                f"member {m.name}: channels must be distinct channels of the bundle "
                f"{list(manifest.channels)}, got {list(own)}"
            )
    _check_pipelines(manifest)
    names = [m.name for m in manifest.members]
    if len(set(names)) != len(names):
        raise BundleError(f"member key/fold pairs must be unique, got {names}")
    missing = [r for r in scheme.region_names if r not in manifest.regions]
    if missing:
        raise BundleError(f"no segmentation member predicts {', '.join(missing)}")
    has_stage1 = bool(manifest.stage("localization"))
    if has_stage1 != (manifest.localization is not None):
        raise BundleError(
            "localization members and a localization window go together: "
            f"{len(manifest.stage('localization'))} member(s), window {manifest.localization}"
        )
    for name in RECOMMENDABLE:
        try:
            check_option(
                name,
                getattr(manifest.recommended, name),
                manifest.fewest_members,
                manifest.region_names,
            )
        except (TypeError, ValueError) as exc:
            raise BundleError(f"recommended.{name}: {exc}") from None


def _check_channels(manifest: Manifest) -> None:
    """Channels: distinct modalities (the task's when it has one); fills only for them."""
    channels = list(manifest.channels)
    allowed = MODALITIES
    if manifest.task is not None:
        task = get_task(manifest.task)
        allowed = task.channels
    if not channels or len(set(channels)) != len(channels) or set(channels) - set(allowed):
        raise BundleError(
            f"channels must be distinct modalities of {list(allowed)}, got {channels}"
        )
    for modality, fill in manifest.missing_modalities.items():
        if modality not in channels:
            raise BundleError(f"missing_modalities: {modality!r} is not one of the channels")
        if fill not in MISSING_FILLS:
            raise BundleError(
                f"missing_modalities.{modality}: fill {fill!r} is not one of {list(MISSING_FILLS)}"
            )
    if set(manifest.missing_modalities) == set(channels):
        raise BundleError("missing_modalities: at least one channel must be required")


def _check_pipelines(manifest: Manifest) -> None:
    """Imported members: a pipeline each one names, of the bundle's required channels;
    one group's members alike (its folds are combined before the ensemble); a
    label-based member's regions those its labels make up."""
    scheme = manifest.scheme
    for m in manifest.members:
        if m.pipeline is None:
            if m.labels is not None:
                raise BundleError(f"member {m.name}: labels are for imported (pipeline) members")
            continue
        pipeline = manifest.pipelines.get(m.pipeline)
        if pipeline is None:
            raise BundleError(
                f"member {m.name}: pipeline {m.pipeline!r} is not one of the manifest's "
                f"pipelines {sorted(manifest.pipelines)}"
            )
        if m.stage != "segmentation" or m.channels is not None or m.outputs != "logits":
            raise BundleError(
                f"member {m.name}: an imported member is a segmentation member with logits "
                "outputs and its pipeline's channels"
            )
        if m.labels is not None:
            labels = list(m.labels)
            if 0 not in labels or len(set(labels)) != len(labels):
                raise BundleError(f"member {m.name}: labels must be distinct and hold 0")
            if set(labels) - scheme.valid_labels:
                raise BundleError(
                    f"member {m.name}: labels {labels} are not all labels of scheme "
                    f"{scheme.name} {sorted(scheme.valid_labels)}"
                )
            if tuple(m.regions) != label_regions(labels, scheme.regions):
                raise BundleError(
                    f"member {m.name}: the regions of labels {labels} are "
                    f"{list(label_regions(labels, scheme.regions))}, not {list(m.regions)}"
                )
    for name, pipeline in manifest.pipelines.items():
        group = [m for m in manifest.members if m.pipeline == name]
        if not group:
            raise BundleError(f"pipelines.{name}: no member runs through it")
        wrong = set(pipeline.channels) - set(manifest.required_channels)
        if wrong:
            raise BundleError(
                f"pipelines.{name}: channels {sorted(wrong)} are not required channels of "
                f"the bundle {list(manifest.required_channels)}"
            )
        if len({(m.regions, m.labels) for m in group}) != 1:
            raise BundleError(f"pipelines.{name}: its members must have the same outputs")


def manifest_from_dict(raw: dict[str, Any]) -> Manifest:
    """Parse plain manifest data, after checking its shape
    (:mod:`~submission.predict.manifest_schema`).

    Raises:
        BundleError: not a bratskit manifest, an unknown format version, or a bad key
            (named: ``manifest.json: members[2].patch: ...``).
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
        check_manifest_data(raw)
    except SchemaError as exc:
        raise BundleError(str(exc)) from None
    with _field("preprocessing"):
        preprocessing = Preprocessing(**raw["preprocessing"])
    members = []
    for i, member in enumerate(raw["members"]):
        with _field(f"members[{i}]"):
            members.append(member_from_dict(member))
    localization = raw.get("localization")
    pipelines = {}
    for name, pipeline in raw.get("pipelines", {}).items():
        with _field(f"pipelines.{name}"):
            pipelines[name] = pipeline_from_dict(pipeline)
    return Manifest(
        pipelines=pipelines,
        members=tuple(members),
        task=raw.get("task"),
        label_scheme=raw["label_scheme"],
        channels=tuple(raw["channels"]),
        missing_modalities=dict(raw.get("missing_modalities", {})),
        preprocessing=preprocessing,
        localization=None if localization is None else tuple(localization["window"]),
        recommended=Recommended(**raw.get("recommended", {})),
        bratskit_version=raw.get("bratskit_version", ""),
        created=raw.get("created", ""),
    )


@contextmanager
def _field(where: str) -> Iterator[None]:
    """Report a value its class refuses (a crop policy, a file path) as a bundle error
    naming the field."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        raise BundleError(f"manifest.json: {where}: {exc}") from None


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
        problem = "is not a folder" if Path(bundle_dir).exists() else "does not exist"
        raise BundleError(f"bundle folder {bundle_dir} {problem}")
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{bundle_dir} is not a bundle: it has no {MANIFEST}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    return manifest_from_dict(raw)


def with_recommended(manifest: Manifest, **changes: Any) -> Manifest:
    """A copy of ``manifest`` whose recommended defaults have ``changes`` applied."""
    return replace(manifest, recommended=replace(manifest.recommended, **changes))
