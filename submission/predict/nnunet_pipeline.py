"""Imported nnU-Net v2 models at runtime: the manifest's ``nnunet`` pipeline record
(:class:`NnunetPipeline`) and nnU-Net v2's predictor for one case (:func:`predict_group`),
with numpy and scipy only (the runtime image has neither torch nor nnunetv2).

:func:`predict_group` does what ``nnUNetv2_predict`` (nnunetv2 2.8.1; paths relative to
the ``nnunetv2`` package) does for one case, with :mod:`~submission.predict.nnunet_ops`
and :mod:`~submission.predict.nnunet_resampling`:

1. ``imageio/simpleitk_reader_writer.py``: SimpleITK's (z, y, x) array, i.e. bratskit's
   (x, y, z) reversed, and its spacing reversed; then the plans' ``transpose_forward``.
2. ``preprocessing/preprocessors/default_preprocessor.py``: ``run_case_npy``: crop to the
   filled non-zero box, z-score per channel (over the box's mask with
   ``use_mask_for_norm``), resample to the plans' spacing.
3. ``inference/predict_from_raw_data.py``: ``predict_logits_from_preprocessed_data``:
   per fold a Gaussian-weighted sliding window (mirroring TTA when on), the folds'
   logits averaged.
4. ``inference/export_prediction.py``: ``convert_predicted_logits_to_segmentation_with_
   correct_shape``: logits resampled back to the crop at the case's spacing, sigmoid
   (region-based) or softmax (label-based) in float32, the crop put back (outside it:
   background 1 for softmax, 0 for sigmoid), ``transpose_backward``.

nnU-Net accumulates windows and folds in float16 (``predicted_logits`` and
``n_predictions`` are ``torch.half`` even on the CPU); so does this module, with the same
roundings, so its logits equal nnU-Net's bit for bit (the tests check it).
:func:`apply_postprocessing` runs the steps of nnU-Net's ``postprocessing.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, astuple, dataclass
from typing import Any

import numpy as np

from submission.brats import MODALITIES
from submission.predict.nnunet_ops import (
    Forward,
    apply_nonlinearity_,
    bbox_slices,
    crop_to_nonzero,
    predict_logits,
    remove_all_but_largest_component,
    zscore_,
)
from submission.predict.nnunet_resampling import (
    ANISO_THRESHOLD,
    compute_new_shape,
    resample_to_shape,
)

KIND = "nnunet"
#: Normalisations the runtime reproduces (the plans' ``normalization_schemes``).
NORMALIZATIONS = ("ZScoreNormalization",)
#: ``LabelManager.inference_nonlin``: sigmoid for region-based models, else softmax.
NONLINEARITIES = ("sigmoid", "softmax")
#: How the folds combine: nnU-Net averages their logits.
FOLD_AVERAGES = ("logits",)
#: ``postprocessing.json`` functions the runtime applies.
POSTPROCESSING_FUNCTIONS = ("remove_all_but_largest_component",)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _keys(raw: Any, what: str, required: Sequence[str], optional: Sequence[str] = ()) -> None:
    _require(isinstance(raw, Mapping), f"{what} must be an object, got {raw!r}")
    missing = [k for k in required if k not in raw]
    unknown = sorted(set(raw) - set(required) - set(optional))
    _require(not missing and not unknown, f"{what}: missing {missing}, unknown {unknown}")


def _int(value: Any, what: str, low: int = 0, high: int = 2**31) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    _require(ok, f"{what} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _positive(value: Any, what: str) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    _require(ok and math.isfinite(value) and value > 0, f"{what} must be > 0, got {value!r}")
    return float(value)


def _bool(value: Any, what: str) -> bool:
    _require(isinstance(value, bool), f"{what} must be true or false, got {value!r}")
    return value


def _list(value: Any, what: str, length: int | None = None) -> list:
    ok = isinstance(value, list) and (length is None or len(value) == length)
    _require(ok, f"{what} must be a list{f' of {length}' if length else ''}, got {value!r}")
    return value


@dataclass(frozen=True)
class ResamplingRule:
    """``resample_data_or_seg_to_shape`` keywords (the plans' ``resampling_fn_*_kwargs``):
    spline order, the order across a separate z axis, and whether that axis is forced
    (True), forbidden (False) or detected from the spacings (None)."""

    order: int
    order_z: int = 0
    force_separate_z: bool | None = None

    @classmethod
    def from_dict(cls, raw: Any, what: str) -> ResamplingRule:
        _keys(raw, what, ("order", "order_z", "force_separate_z"))
        force = raw["force_separate_z"]
        force = None if force is None else _bool(force, f"{what}.force_separate_z")
        order_z = _int(raw["order_z"], f"{what}.order_z", 0, 5)
        return cls(_int(raw["order"], f"{what}.order", 0, 5), order_z, force)


@dataclass(frozen=True)
class Resampling:
    """Images go to the plans' spacing by ``data``, logits come back by ``probabilities``;
    an axis more than ``separate_z_anisotropy_threshold`` times coarser is separate."""

    data: ResamplingRule
    probabilities: ResamplingRule
    separate_z_anisotropy_threshold: float = ANISO_THRESHOLD

    @classmethod
    def from_dict(cls, raw: Any) -> Resampling:
        threshold = "separate_z_anisotropy_threshold"
        _keys(raw, "resampling", ("data", "probabilities", threshold))
        return cls(
            ResamplingRule.from_dict(raw["data"], "resampling.data"),
            ResamplingRule.from_dict(raw["probabilities"], "resampling.probabilities"),
            _positive(raw[threshold], f"resampling.{threshold}"),
        )


@dataclass(frozen=True)
class Normalization:
    """One input channel's ``normalization_schemes`` entry and ``use_mask_for_norm``."""

    scheme: str
    use_mask: bool

    @classmethod
    def from_dict(cls, raw: Any, what: str) -> Normalization:
        _keys(raw, what, ("scheme", "use_mask"))
        _require(
            raw["scheme"] in NORMALIZATIONS,
            f"{what}: normalisation {raw['scheme']!r} is not reproduced at runtime (only "
            f"{', '.join(NORMALIZATIONS)}); retrain with nnU-Net's default for MRI",
        )
        return cls(raw["scheme"], _bool(raw["use_mask"], f"{what}.use_mask"))


@dataclass(frozen=True)
class PostprocessingStep(Mapping):
    """One step of nnU-Net's ``postprocessing.json``: ``function`` applied to the union of
    ``labels_or_regions`` (challenge labels; a region is a tuple of labels). Also a
    read-only mapping of its two fields, like the step's JSON object."""

    function: str
    labels_or_regions: tuple[int | tuple[int, ...], ...]

    def __getitem__(self, key: str) -> Any:
        if key not in ("function", "labels_or_regions"):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(("function", "labels_or_regions"))

    def __len__(self) -> int:
        return 2

    @property
    def labels(self) -> tuple[int, ...]:
        """Every label the step covers: the union that nnU-Net's mask is."""
        flat = [i if isinstance(i, tuple) else (i,) for i in self.labels_or_regions]
        return tuple(sorted({label for item in flat for label in item}))

    @classmethod
    def from_dict(cls, raw: Any, what: str = "postprocessing step") -> PostprocessingStep:
        _keys(raw, what, ("function", "labels_or_regions"))
        _require(
            raw["function"] in POSTPROCESSING_FUNCTIONS,
            f"{what}: function {raw['function']!r} is not one the runtime applies "
            f"({', '.join(POSTPROCESSING_FUNCTIONS)}); re-import without it",
        )
        items = raw["labels_or_regions"]
        items = items if isinstance(items, (list, tuple)) else [items]
        _require(bool(items), f"{what}: labels_or_regions is empty")
        parsed = [
            tuple(_int(v, f"{what} label", 1, 255) for v in i)
            if isinstance(i, (list, tuple))
            else _int(i, f"{what} label", 1, 255)
            for i in items
        ]
        return cls(raw["function"], tuple(parsed))


_REQUIRED = (
    "kind", "source", "channels", "transpose_forward", "transpose_backward", "spacing",
    "normalization", "patch", "step", "sigma_scale", "gaussian", "mirror_axes",
    "resampling", "nonlinearity", "fold_average",
)  # fmt: skip


@dataclass(frozen=True)
class NnunetPipeline:
    """The manifest's ``nnunet`` pipeline record: what nnU-Net v2's predictor takes from
    ``plans.json``, ``dataset.json``, the checkpoint and ``postprocessing.json``.

    ``transpose_*``, ``spacing`` (mm), ``patch`` and ``mirror_axes`` are in nnU-Net's axes
    (SimpleITK's (z, y, x), then ``transpose_forward`` for the last three). ``channels``
    are bratskit modality names in the network's input order, ``normalization`` one per
    channel; ``source`` is provenance text. ``mirror_axes`` empty: no mirroring TTA.
    """

    source: str
    channels: tuple[str, ...]
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    spacing: tuple[float, ...]
    normalization: tuple[Normalization, ...]
    patch: tuple[int, ...]
    step: float
    sigma_scale: float
    gaussian: bool
    mirror_axes: tuple[int, ...]
    resampling: Resampling
    nonlinearity: str
    fold_average: str = "logits"
    postprocessing: tuple[PostprocessingStep, ...] = ()
    kind: str = KIND

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NnunetPipeline:
        """Parse and check a manifest record (``postprocessing`` may be absent).

        Raises:
            BundleError: a missing, unknown or malformed key, or something the runtime
                does not reproduce; the message names it and the fix.
        """
        from submission.predict.bundle import BundleError  # bundle.py imports this module

        try:
            return cls._parse(raw)
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(f"manifest pipeline of kind {KIND!r}: {err}") from err

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> NnunetPipeline:
        _keys(raw, "the record", _REQUIRED, ("postprocessing",))
        _require(raw["kind"] == KIND, f"kind must be {KIND!r}, got {raw['kind']!r}")
        _require(isinstance(raw["source"], str), f"source must be text: {raw['source']!r}")
        channels = _list(raw["channels"], "channels")
        distinct = len(set(channels)) == len(channels)
        _require(
            bool(channels) and distinct and set(channels) <= set(MODALITIES),
            f"channels must be distinct names among {list(MODALITIES)}, got {channels!r}",
        )
        forward, backward = (
            tuple(_int(a, key, 0, 2) for a in _list(raw[key], key, 3))
            for key in ("transpose_forward", "transpose_backward")
        )
        _require(
            sorted(forward) == [0, 1, 2] and tuple(forward[b] for b in backward) == (0, 1, 2),
            f"transpose_forward {list(forward)} must be a permutation of [0, 1, 2] and "
            f"transpose_backward {list(backward)} its inverse, as nnU-Net's planner writes",
        )
        norms = _list(raw["normalization"], "normalization", len(channels))
        mirror = _list([] if raw["mirror_axes"] is None else raw["mirror_axes"], "mirror_axes")
        _require(len(set(mirror)) == len(mirror), f"mirror_axes repeat an axis: {mirror}")
        step = _positive(raw["step"], "step")
        _require(step <= 1, f"step must be in (0, 1] (a fraction of the patch), got {step}")
        for key, allowed in (("nonlinearity", NONLINEARITIES), ("fold_average", FOLD_AVERAGES)):
            _require(raw[key] in allowed, f"{key} must be one of {allowed}, got {raw[key]!r}")
        steps = _list(raw.get("postprocessing") or [], "postprocessing")
        return cls(
            source=raw["source"],
            channels=tuple(channels),
            transpose_forward=forward,
            transpose_backward=backward,
            spacing=tuple(_positive(s, "spacing") for s in _list(raw["spacing"], "spacing", 3)),
            normalization=tuple(
                Normalization.from_dict(n, f"normalization[{i}]") for i, n in enumerate(norms)
            ),
            patch=tuple(_int(p, "patch", 1) for p in _list(raw["patch"], "patch", 3)),
            step=step,
            sigma_scale=_positive(raw["sigma_scale"], "sigma_scale"),
            gaussian=_bool(raw["gaussian"], "gaussian"),
            mirror_axes=tuple(_int(a, "mirror_axes", 0, 2) for a in mirror),
            resampling=Resampling.from_dict(raw["resampling"]),
            nonlinearity=raw["nonlinearity"],
            fold_average=raw["fold_average"],
            postprocessing=tuple(
                PostprocessingStep.from_dict(s, f"postprocessing[{i}]") for i, s in enumerate(steps)
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest record, JSON types; :meth:`from_dict` reads it back equal."""
        return json.loads(json.dumps(asdict(self)))  # tuples as lists


def predict_group(
    pipeline: NnunetPipeline,
    image_cxyz: np.ndarray,
    spacing_xyz: Sequence[float],
    affine: np.ndarray | None,
    forwards: Sequence[Forward],
    tta: bool,
) -> list[np.ndarray]:
    """nnU-Net v2's prediction of one case by the pipeline's folds (module docstring).

    Args:
        pipeline: the manifest's ``nnunet`` record.
        image_cxyz: float32 raw intensities (C, X, Y, Z), channels in
            ``pipeline.channels`` order, bratskit (nibabel voxel) axes.
        spacing_xyz: voxel sizes in mm along X, Y, Z (SimpleITK's spacing, reversed).
        affine: unused (nnU-Net works in voxel space); part of the pipeline interface.
        forwards: one per fold: float32 (1, C, *window) in the network's axes -> float32
            logits (1, K, *window).
        tta: mirroring over ``pipeline.mirror_axes``.

    Returns:
        one float32 (K, X, Y, Z) array of probabilities on the input grid: the folds'
        logits averaged, then sigmoid or softmax.
    """
    del affine
    image_cxyz = np.asarray(image_cxyz)
    if image_cxyz.ndim != 4 or image_cxyz.shape[0] != len(pipeline.channels):
        raise ValueError(
            f"the nnU-Net pipeline takes (C={len(pipeline.channels)}, X, Y, Z) "
            f"({', '.join(pipeline.channels)}), got {image_cxyz.shape}"
        )
    # (C, X, Y, Z) -> nnU-Net's axes: SimpleITK's (z, y, x) reversed, then transpose_forward
    to_nnunet = [0, *[3 - t for t in pipeline.transpose_forward]]
    image = image_cxyz.transpose(to_nnunet)
    spacing_zyx = [float(s) for s in reversed(tuple(spacing_xyz))]
    spacing = [spacing_zyx[t] for t in pipeline.transpose_forward]

    # nnU-Net z-scores a crop of its own float32 copy of SimpleITK's C-contiguous
    # (c, z, y, x) array; this buffer has that layout (a float32 mean's rounding depends
    # on it), and only the crop's pages are ever written.
    _, mask, bbox = crop_to_nonzero(image)
    crop = (slice(None), *bbox_slices(bbox))
    buffer = np.empty((image_cxyz.shape[0], *image_cxyz.shape[:0:-1]), dtype=np.float32)
    data = buffer.transpose([0, *[1 + int(t) for t in pipeline.transpose_forward]])[crop]
    data[...] = image[crop]
    cropped_shape = data.shape[1:]
    for c, norm in enumerate(pipeline.normalization):
        zscore_(data[c], mask if norm.use_mask else None)
    del mask

    rules = pipeline.resampling
    new_shape = compute_new_shape(cropped_shape, spacing, pipeline.spacing)
    threshold = rules.separate_z_anisotropy_threshold
    data = resample_to_shape(
        data, new_shape, spacing, pipeline.spacing, *astuple(rules.data), threshold
    )
    logits = predict_logits(
        data,
        forwards,
        pipeline.patch,
        pipeline.step,
        pipeline.gaussian,
        pipeline.sigma_scale,
        pipeline.mirror_axes if tta else (),
    )
    del data, buffer
    logits = resample_to_shape(
        logits, cropped_shape, pipeline.spacing, spacing, *astuple(rules.probabilities), threshold
    )
    probs = apply_nonlinearity_(logits.astype(np.float32), pipeline.nonlinearity)
    del logits

    out = np.zeros((probs.shape[0], *image_cxyz.shape[1:]), dtype=np.float32)
    if pipeline.nonlinearity == "softmax":
        out[0] = 1
    out.transpose(to_nnunet)[crop] = probs
    return [out]


def apply_postprocessing(
    labels_xyz: np.ndarray, steps: Sequence[PostprocessingStep | Mapping[str, Any]]
) -> np.ndarray:
    """nnU-Net's post-processing (the record's ``postprocessing``, or its JSON form) on an
    integer label map in challenge labels, any axis order; returns a new map. Each step is
    :func:`~submission.predict.nnunet_ops.remove_all_but_largest_component`."""
    out = np.array(labels_xyz, copy=True)
    for step in steps:
        if not isinstance(step, PostprocessingStep):
            step = PostprocessingStep.from_dict(step)
        out = remove_all_but_largest_component(out, step.labels)
    return out
