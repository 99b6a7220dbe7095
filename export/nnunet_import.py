"""``bratskit import nnunet``: an nnU-Net v2 results folder to a bundle that predicts what
nnU-Net v2's own predictor predicts.

The results folder is read and checked by :mod:`export.nnunet_folder` (refusing what
bratskit cannot run faithfully). Each fold becomes one member (key ``nnunet``, ``fold``
its fold number, ``outputs: logits``): its network rebuilt from the plans with nnunetv2's
``get_network_from_plans``, its weights loaded strictly, exported to ONNX and
parity-checked as our own members are (:mod:`export.nnunet_network`).

Everything nnU-Net's predictor does around the network is written into the manifest's
``pipelines.nnunet`` record (``submission.predict.nnunet_pipeline.NnunetPipeline``),
which the runtime reproduces: channels (:mod:`export.nnunet_labels`), transposes,
spacing, per-channel z-score, patch, the predictor's defaults (step 0.5 of the patch,
Gaussian importance with sigma 1/8 of the patch: ``nnUNetPredictor(tile_step_size=0.5,
use_gaussian=True)`` and ``compute_gaussian(sigma_scale=1/8)``), the checkpoint's
mirroring axes, resampling orders, nonlinearity and ``postprocessing.json`` in challenge
labels. Region-based members list their ``regions``; label-based ones their challenge
``labels`` too. The recommended ensemble is nnU-Net's own combination: ``mean`` of the
probabilities (thresholded at 0.5) for region-based models, ``argmax`` for label-based.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from export.build import bratskit_version
from export.convert import DEFAULT_OPSET
from export.errors import RunError
from export.nnunet_folder import FoldCheckpoint, NnunetResults, read_results
from export.nnunet_labels import (
    LabelMapping,
    find_postprocessing,
    map_channels,
    map_labels,
    read_postprocessing,
)
from export.nnunet_network import KEY, export_fold, size_rule
from export.parity import parity_inputs
from export.staging import check_output, staged_folder
from submission.predict.bundle import BundleError, Manifest, Recommended, write_manifest
from submission.predict.bundle_files import load_bundle
from submission.predict.members import Member, ModelFile
from submission.predict.nnunet_pipeline import NnunetPipeline
from submission.predict.preprocess import Preprocessing
from submission.predict.sliding_window import SizeRule
from submission.tasks import Task, get_task

log = logging.getLogger(__name__)

DEFAULT_TASK = "gli-2021"
#: ``nnUNetPredictor``'s ``tile_step_size`` and ``compute_gaussian``'s ``sigma_scale``.
STEP, SIGMA_SCALE = 0.5, 1.0 / 8


def import_nnunet(
    results_dir: Path,
    out: Path,
    folds: Sequence[int] | None = None,
    checkpoint: str = "final",
    task: str = DEFAULT_TASK,
    channels: Sequence[str] | None = None,
    label_map: Mapping[int, int] | None = None,
    force: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Manifest:
    """Import the folds of an nnU-Net v2 results folder into the bundle folder ``out``.

    Args:
        results_dir: ``<trainer>__<plans>__<configuration>/``.
        out: the bundle folder; must be absent or empty unless ``force``.
        folds: fold numbers [every ``fold_k`` with the checkpoint].
        checkpoint: ``final`` or ``best``.
        task: the BraTS task (:mod:`submission.tasks`) whose labels the model predicts.
        channels: the bratskit modality of each input channel [from ``dataset.json``].
        label_map: nnU-Net label -> challenge label [from ``dataset.json``].
        force: replace a non-empty ``out``.

    Raises:
        ValueError: a bad option (TaskError for an unknown task).
        RunError: a folder, checkpoint or model bratskit cannot run faithfully.
        OutputExistsError: ``out`` is not empty and ``force`` is False.
        ExportError: a fold fails to export or its parity check.
    """
    the_task = get_task(task)
    check_output(out, force, inputs=[results_dir])
    results = read_results(Path(results_dir), None if folds is None else tuple(folds), checkpoint)
    network_channels = map_channels(results.channel_names, the_task, channels)
    mapping = map_labels(
        results.label_manager, results.dataset["labels"], the_task.label_scheme, label_map
    )
    pp_path = find_postprocessing(results.path, [f.fold for f in results.folds])
    steps = [] if pp_path is None else read_postprocessing(pp_path, mapping.label_map)
    pipeline = _pipeline(results, network_channels, steps)
    rule, patch = size_rule(results), tuple(pipeline.patch)
    placeholder = ModelFile(path="not-exported-yet", sha256="")
    planned = [_member(results, f, mapping, rule, patch, placeholder) for f in results.folds]
    _manifest(the_task, planned, pipeline, mapping)  # fail before the slow part
    log.info(
        "importing %d fold(s) of %s (%s, %s) for task %s",
        len(results.folds),
        results.source,
        pipeline.nonlinearity,
        ",".join(mapping.regions),
        the_task.name,
    )
    with staged_folder(out, force) as tmp:
        inputs = parity_inputs(rule, Preprocessing(), patch, channels=network_channels)
        members = []
        for fold in results.folds:
            model_file = export_fold(results, fold, rule, inputs, tmp, pipeline.nonlinearity, opset)
            members.append(_member(results, fold, mapping, rule, patch, model_file))
        manifest = _manifest(the_task, members, pipeline, mapping)
        write_manifest(tmp, manifest)
        load_bundle(tmp)
    return manifest


def pipeline_record(
    results: NnunetResults, channels: Sequence[str], postprocessing: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The manifest's ``nnunet`` record of a results folder (the design's fields)."""
    from nnunetv2.configuration import ANISO_THRESHOLD

    config = results.configuration_manager.configuration
    kwargs = {w: config.get(f"resampling_fn_{w}_kwargs") or {} for w in ("data", "probabilities")}
    thresholds = {
        float(k.get("separate_z_anisotropy_threshold", ANISO_THRESHOLD)) for k in kwargs.values()
    }
    if len(thresholds) != 1:
        raise RunError(
            f"{results.path / 'plans.json'}: data and probabilities are resampled with "
            f"different anisotropy thresholds {sorted(thresholds)}; plan with nnU-Net's default"
        )
    manager = results.configuration_manager
    return {
        "kind": "nnunet",
        "source": results.source,
        "channels": list(channels),
        "transpose_forward": [int(a) for a in results.plans_manager.transpose_forward],
        "transpose_backward": [int(a) for a in results.plans_manager.transpose_backward],
        "spacing": [float(s) for s in manager.spacing],
        "normalization": [
            {"scheme": str(s), "use_mask": bool(m)}
            for s, m in zip(manager.normalization_schemes, manager.use_mask_for_norm)
        ],
        "patch": [int(p) for p in manager.patch_size],
        "step": STEP,
        "sigma_scale": SIGMA_SCALE,
        "gaussian": True,
        "mirror_axes": list(results.mirror_axes),
        "resampling": {
            **{
                what: {
                    "order": int(k.get("order", 3 if what == "data" else 1)),
                    "order_z": int(k.get("order_z", 0)),
                    "force_separate_z": k.get("force_separate_z"),
                }
                for what, k in kwargs.items()
            },
            "separate_z_anisotropy_threshold": thresholds.pop(),
        },
        "nonlinearity": "sigmoid" if results.label_manager.has_regions else "softmax",
        "fold_average": "logits",
        "postprocessing": [dict(step) for step in postprocessing],
    }


def _pipeline(results, channels, steps) -> NnunetPipeline:
    try:
        return NnunetPipeline.from_dict(pipeline_record(results, channels, steps))
    except BundleError as exc:
        raise RunError(f"{results.path}: {exc}") from None


def _member(
    results: NnunetResults,
    fold: FoldCheckpoint,
    mapping: LabelMapping,
    rule: SizeRule,
    patch: tuple[int, ...],
    model_file: ModelFile,
) -> Member:
    name = results.configuration_manager.network_arch_class_name.rsplit(".", 1)[-1]
    return Member(
        key=KEY,
        fold=fold.fold,
        regions=mapping.regions,
        files={"onnx": model_file},
        architecture={
            "name": name,
            "params": dict(results.configuration_manager.network_arch_init_kwargs),
        },
        size_rule=rule,
        patch=patch,
        outputs="logits",
        pipeline=KEY,
        labels=mapping.labels,
    )


def _manifest(task: Task, members, pipeline: NnunetPipeline, mapping: LabelMapping) -> Manifest:
    """The checked manifest; the bundle's channels are the network's, in task order."""
    try:
        return Manifest(
            members=tuple(members),
            task=task.name,
            label_scheme=task.scheme,
            channels=tuple(c for c in task.channels if c in pipeline.channels),
            preprocessing=Preprocessing(),
            recommended=Recommended(ensemble="mean" if mapping.labels is None else "argmax"),
            bratskit_version=bratskit_version(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            pipelines={KEY: pipeline},
        )
    except BundleError as exc:
        raise RunError(
            f"this nnU-Net model does not make a bundle for task {task.name}: {exc}"
        ) from None
