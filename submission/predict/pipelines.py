"""Imported members' own inference pipelines: the manifest's ``pipelines`` (issue 15).

A member with a ``pipeline`` (an nnU-Net v2 fold, a MONAI bundle's network) is not run
the bratskit way (brain crop, z-score, our sliding window, sigmoid). Its pipeline takes
the raw case and does what the member's own framework does before and after the network,
so that the member predicts what that framework's predictor predicts:

    ``nnunet``  :mod:`submission.predict.nnunet_pipeline` (nnU-Net v2's
                ``nnUNetPredictor``: crop to the non-zero box, z-score, resampling to the
                plans' spacing, Gaussian sliding window with step 0.5, mirroring, folds
                averaged as logits, softmax or sigmoid, resampling back).
    ``monai``   :mod:`submission.predict.monai_pipeline` (a MONAI bundle's inference
                config: orientation, spacing, NormalizeIntensity, SlidingWindowInferer,
                sigmoid).

Each pipeline module exposes its record's dataclass (``from_dict`` / ``to_dict``) and
``predict_group(pipeline, image_cxyz, spacing_xyz, affine, forwards, tta)``, which
returns probabilities on the input grid: one array for a group whose folds are averaged
as logits (nnU-Net), else one per member. This module picks the module by ``kind`` and
turns a label-based member's label probabilities into the scheme's region
probabilities (a region's probability is the sum over its labels), so every ensemble
method, threshold and ``bratskit tune`` works on any mix of members.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Pipeline kind -> (module, record class).
PIPELINE_KINDS: dict[str, tuple[str, str]] = {
    "nnunet": ("submission.predict.nnunet_pipeline", "NnunetPipeline"),
    "monai": ("submission.predict.monai_pipeline", "MonaiPipeline"),
}


def _module(kind: str):
    if kind not in PIPELINE_KINDS:
        raise ValueError(
            f"unknown pipeline kind {kind!r}; this bratskit runs {', '.join(PIPELINE_KINDS)}"
        )
    return importlib.import_module(PIPELINE_KINDS[kind][0])


def pipeline_from_dict(raw: Mapping[str, Any]):
    """Parse one entry of the manifest's ``pipelines`` by its ``kind``.

    Raises:
        ValueError: an unknown kind or a field its record refuses.
    """
    kind = str(raw.get("kind"))
    return getattr(_module(kind), PIPELINE_KINDS[kind][1]).from_dict(dict(raw))


def ensemble_inputs(manifest, region: str) -> int:
    """How many probability maps of ``region`` the ensemble combines: one per bratskit-run
    segmentation member, one per pipeline group whose folds are averaged as logits
    (nnU-Net), one per member of the other pipelines."""
    members = [m for m in manifest.stage("segmentation") if region in m.regions]
    groups = {
        m.pipeline
        for m in members
        if m.pipeline is not None and manifest.pipelines[m.pipeline].fold_average == "logits"
    }
    return len(groups) + sum(
        m.pipeline is None or manifest.pipelines[m.pipeline].fold_average != "logits"
        for m in members
    )


def label_regions(labels: Sequence[int], scheme_regions: Mapping[str, frozenset[int]]):
    """The regions (scheme order) a label-based member's outputs make up: those whose
    labels are all among ``labels``."""
    have = set(labels) - {0}
    return tuple(r for r, held in scheme_regions.items() if held <= have)


def region_probabilities(
    probs_kxyz: np.ndarray,
    labels: Sequence[int],
    regions: Sequence[str],
    scheme_regions: Mapping[str, frozenset[int]],
) -> np.ndarray:
    """float32 (R, ...) region probabilities from label probabilities (K, ...): each
    region's is the sum of its labels' (softmax outputs sum to 1, so WT = 1 - P(0))."""
    index = {label: k for k, label in enumerate(labels)}
    out = np.zeros((len(regions), *probs_kxyz.shape[1:]), dtype=np.float32)
    for i, region in enumerate(regions):
        for label in sorted(scheme_regions[region]):
            out[i] += probs_kxyz[index[label]]
    return out


@dataclass(frozen=True)
class RawCase:
    """What an imported member's pipeline starts from.

    Attributes:
        image_cxyz: float32 raw intensities, channels in ``modalities`` order.
        modalities: the channel names of ``image_cxyz``.
        spacing: voxel sizes in mm (from the affine), or None when unknown.
        affine: the NIfTI affine, or None when unknown.
    """

    image_cxyz: np.ndarray
    modalities: tuple[str, ...]
    spacing: tuple[float, ...] | None
    affine: np.ndarray | None

    def channels(self, names: Sequence[str]) -> np.ndarray:
        """The image's channels ``names``, in that order (a pipeline's input order)."""
        return self.image_cxyz[[self.modalities.index(c) for c in names]]


def run_pipeline(
    pipeline,
    members: Sequence[Any],
    forwards: Sequence[Callable[[np.ndarray], np.ndarray]],
    raw: RawCase,
    tta: bool,
    scheme_regions: Mapping[str, frozenset[int]],
) -> list[tuple[tuple[str, ...], np.ndarray]]:
    """Run one pipeline's members (:class:`~submission.predict.members.Member`, all of the
    same outputs) on a raw case: ``(regions, float32 (R, X, Y, Z) probabilities on the
    input grid)`` per output of the pipeline (one for nnU-Net's logit-averaged folds)."""
    if raw.spacing is None:
        raise ValueError(f"the {pipeline.kind} pipeline needs the case's voxel spacing")
    outputs = _module(pipeline.kind).predict_group(
        pipeline,
        raw.channels(pipeline.channels).astype(np.float32, copy=False),
        tuple(raw.spacing),
        raw.affine,
        forwards,
        tta,
    )
    member = members[0]
    if member.labels is None:
        return [(member.regions, p) for p in outputs]
    return [
        (member.regions, region_probabilities(p, member.labels, member.regions, scheme_regions))
        for p in outputs
    ]


def final_postprocessing(manifest, out_scheme) -> Callable[[np.ndarray], np.ndarray] | None:
    """nnU-Net's own post-processing (``postprocessing.json``: keep the largest component
    of a label or region) as a function of a label map in ``out_scheme``, when one
    pipeline's members are every segmentation member of ``manifest`` (the ensemble is
    that framework's prediction); None otherwise, or when it has none. Its labels, the
    manifest scheme's, are translated by name (ET is 4 in 2021, 3 in 2023)."""
    names = {m.pipeline for m in manifest.stage("segmentation")}
    if len(names) != 1 or None in names:
        return None
    pipeline = manifest.pipelines[next(iter(names))]
    steps = getattr(pipeline, "postprocessing", ())
    if not steps:
        return None
    to_out = {
        value: out_scheme.labels[name]
        for name, value in manifest.scheme.labels.items()
        if name in out_scheme.labels
    }

    def translate(value):
        return [translate(v) for v in value] if isinstance(value, (list, tuple)) else to_out[value]

    translated = [
        {**step, "labels_or_regions": translate(step["labels_or_regions"])} for step in steps
    ]
    apply = _module(pipeline.kind).apply_postprocessing
    return lambda labels: apply(labels, translated)
