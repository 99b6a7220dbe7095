"""``bratskit import monai``: a MONAI bundle of BraTS segmentation (the model zoo's
``brats_mri_segmentation`` layout: ``configs/inference.json``, ``configs/metadata.json``,
``models/model.pt``) to a bundle that predicts what MONAI's own inference predicts.

The configs are read as JSON, never run, and checked against a whitelist by
:mod:`export.monai_config` (:func:`~export.monai_config.read_monai_bundle`, which lists what
imports). ``models/model.pt`` is read with ``torch.load(weights_only=True)`` (a state dict, or
``{"model": state dict}`` as ``CheckpointLoader`` saves it) and loaded strictly. The network
is exported to ONNX (dynamic axes, exact norms) and parity-checked as nnU-Net folds are
(:func:`export.nnunet_import.export_fold`'s way: logits out, parity on the sigmoid).
The manifest gets one member ``monai/fold0`` with ``pipeline: monai`` and the record of
:class:`submission.predict.monai_pipeline.MonaiPipeline`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit

from export.build import bratskit_version
from export.convert import DEFAULT_OPSET, inference_model, log_parity, write_onnx
from export.errors import RunError
from export.monai_config import NETWORKS as NETWORKS
from export.monai_config import MonaiSpec, read_monai_bundle
from export.parity import check_parity, eager_reference, parity_inputs
from export.staging import check_output, staged_folder
from submission.predict.bundle import BundleError, Manifest, Recommended, write_manifest
from submission.predict.bundle_files import load_bundle, sha256_file
from submission.predict.members import Member, ModelFile
from submission.predict.preprocess import Preprocessing
from submission.predict.sliding_window import SizeRule
from submission.tasks import get_task

log = logging.getLogger(__name__)

DEFAULT_TASK = "gli-2021"
KEY = "monai"  # member key and pipeline name
#: The largest parity-check window per axis (the zoo's roi is 240 x 240 x 160).
MAX_CHECK = 128


def build_network(spec: MonaiSpec) -> tuple[torch.nn.Module, SizeRule]:
    """The eval-mode network of ``spec`` with its weights, and its size rule (the total
    stride per axis: SegResNet ``2 ** (len(blocks_down) - 1)``, (Dyn)UNet the product of
    its strides).

    Raises:
        RunError: arguments the class refuses, the wrong channel counts, a roi the
            network cannot take, or weights that do not fit.
    """
    from monai.networks import nets

    where = f"network {spec.network}({spec.kwargs})"
    if spec.kwargs.get("spatial_dims", 3) != 3 or spec.kwargs.get("deep_supervision"):
        raise RunError(f"{where}: bratskit imports 3-D networks without deep supervision")
    try:
        net = getattr(nets, spec.network)(**spec.kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise RunError(f"{where} cannot be built: {exc}") from None
    k = spec.kwargs
    if spec.network == "SegResNet":
        divisors = (2 ** (len(k.get("blocks_down", (1, 2, 2, 4))) - 1),) * 3
    else:
        strides = [s if isinstance(s, list) else [s] * 3 for s in k["strides"]]
        divisors = tuple(int(np.prod([s[a] for s in strides])) for a in range(3))
    if any(r % d for r, d in zip(spec.pipeline.roi, divisors)):
        raise RunError(f"roi {spec.pipeline.roi} is not a multiple of {divisors} for {where}")
    _load_weights(net, spec)
    for param in net.parameters():
        param.requires_grad_(False)
    return net.eval(), SizeRule(divisors, (None, None, None))


def _load_weights(net: torch.nn.Module, spec: MonaiSpec) -> None:
    try:
        state = torch.load(spec.weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle refusals and corrupt files raise many types
        raise RunError(f"{spec.weights} is not a state dict torch loads safely: {exc}") from None
    for key in ("model", "state_dict"):  # CheckpointLoader's load_dict name
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if isinstance(state, dict) and state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}  # saved from DDP
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[:3]
        raise RunError(f"{spec.weights} does not fit {spec.network}: {' '.join(first)}") from None


def import_monai(
    bundle_dir: Path,
    out: Path,
    channels: Sequence[str] | None = None,
    task: str = DEFAULT_TASK,
    force: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Manifest:
    """Import a MONAI bundle folder into the bratskit bundle folder ``out``.

    Raises:
        ValueError: a bad option (TaskError for an unknown task).
        RunError: a bundle bratskit cannot run faithfully.
        OutputExistsError: ``out`` is not empty and ``force`` is False.
        ExportError: the export fails or the file's parity check.
    """
    the_task = get_task(task)
    if channels is not None and (
        set(channels) - set(the_task.channels) or len(set(channels)) != len(channels)
    ):
        raise ValueError(
            f"--channels must be distinct modalities of task {the_task.name} "
            f"({','.join(the_task.channels)}), got {','.join(channels)}"
        )
    check_output(out, force, inputs=[bundle_dir])
    spec = read_monai_bundle(Path(bundle_dir), channels)
    sizes = (spec.kwargs.get("in_channels", 1), spec.kwargs.get("out_channels"))
    if sizes != (len(spec.pipeline.channels), len(spec.regions)):
        raise RunError(
            f"{spec.network} maps {sizes[0]} to {sizes[1]} channels, the metadata names "
            f"{','.join(spec.pipeline.channels)} to {','.join(spec.regions)}: fix "
            "network_data_format (or pass --channels)"
        )
    net, rule = build_network(spec)
    placeholder = ModelFile(path="not-exported-yet", sha256="")
    _manifest(the_task, spec, rule, placeholder)  # fail before the slow part
    log.info("importing %s (%s) for task %s", spec.pipeline.source, spec.network, the_task.name)
    with staged_folder(out, force) as tmp:
        manifest = _manifest(the_task, spec, rule, export_network(net, spec, rule, tmp, opset))
        write_manifest(tmp, manifest)
        load_bundle(tmp)
    return manifest


def _manifest(task, spec: MonaiSpec, rule: SizeRule, model_file: ModelFile) -> Manifest:
    member = Member(
        key=KEY,
        fold=0,
        regions=spec.regions,
        files={"onnx": model_file},
        architecture={"name": spec.network, "params": spec.kwargs},
        size_rule=rule,
        patch=tuple(spec.pipeline.roi),
        outputs="logits",
        pipeline=KEY,
    )
    try:
        return Manifest(
            members=(member,),
            task=task.name,
            label_scheme=task.scheme,
            channels=tuple(c for c in task.channels if c in spec.pipeline.channels),
            preprocessing=Preprocessing(),
            recommended=Recommended(threshold=spec.threshold),
            bratskit_version=bratskit_version(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            pipelines={KEY: spec.pipeline},
        )
    except BundleError as exc:
        raise RunError(f"this MONAI model does not make a bundle for {task.name}: {exc}") from None


def export_network(
    net: torch.nn.Module, spec: MonaiSpec, rule: SizeRule, bundle_dir: Path, opset: int
) -> ModelFile:
    """Write ``net`` to ``<bundle_dir>/monai/fold0.onnx`` (logits) and check its sigmoid
    against eager torch's on a realistic input of (at most :data:`MAX_CHECK` of) the roi.

    Raises:
        ExportError: the export fails or the probabilities differ beyond the tolerance.
    """
    start, name, rel = time.perf_counter(), f"{KEY}/fold0", f"{KEY}/fold0.onnx"
    patch = [max(d, min(r, MAX_CHECK) // d * d) for r, d in zip(spec.pipeline.roi, rule.divisors)]
    inputs = parity_inputs(rule, Preprocessing(), patch, channels=spec.pipeline.channels)
    logits = write_onnx(name, net, inputs, bundle_dir / rel, rule, opset)
    reference, _ = eager_reference(inference_model(net), inputs.check_ncdhw)
    parity = check_parity(name, "onnx", lambda x: expit(logits(x)), inputs, reference)
    log_parity(name, "onnx", rel, parity, start)
    return ModelFile(rel, sha256_file(bundle_dir / rel), "fp32", parity)
