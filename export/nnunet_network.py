"""An nnU-Net v2 fold's network: checked, rebuilt from the plans, exported and checked.

Only nnunetv2's own trainers that build the network as ``nnUNetTrainer`` does
(:func:`check_trainer`) and the planners' architectures (:data:`ARCHITECTURES`, whose
layers are ``torch.nn`` modules: :func:`check_architecture`) are rebuilt, by nnunetv2's
``get_network_from_plans`` with deep supervision off (:func:`build_network`), so that no
other code is imported by name. :func:`export_fold` writes one ONNX file with dynamic
batch and spatial axes by :func:`export.convert.export_onnx` (the exporter of our own
members, norms made exact) and checks it with :func:`export.parity.check_parity` on a
realistic input of the plans' patch size. The file outputs logits (nnU-Net averages
folds as logits); parity is measured after the model's nonlinearity (sigmoid for
region-based models, softmax for label-based ones), on the probabilities the tolerance
is defined for.
"""

from __future__ import annotations

import importlib
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from export.convert import DEFAULT_OPSET, log_parity, write_onnx
from export.errors import RunError
from export.parity import ParityInputs, check_parity, eager_forward
from submission.predict.bundle_files import sha256_file
from submission.predict.members import ModelFile
from submission.predict.sliding_window import SizeRule

if TYPE_CHECKING:
    from export.nnunet_folder import FoldCheckpoint, NnunetResults

log = logging.getLogger(__name__)

#: The architectures nnU-Net's planners write (default and residual-encoder presets).
ARCHITECTURES = (
    "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
)
#: Member key of the imported folds; their files are ``nnunet/fold<k>.onnx``.
KEY = "nnunet"
#: The usual fix of a refusal.
FIX_IMPORT = "import the results folder of a default 3d_fullres (or 3d_lowres) nnU-Net training"
_FIX_ONNX = "or export the network to ONNX yourself (bratskit export --onnx)"


def check_architecture(where: str, architecture: dict[str, Any]) -> None:
    """Refuse an architecture outside :data:`ARCHITECTURES`, or one whose imported layers
    are not ``torch.nn`` modules: nothing else is imported by name."""
    name = architecture.get("network_class_name")
    if name not in ARCHITECTURES:
        raise RunError(
            f"{where}: architecture {name} is not one bratskit rebuilds "
            f"({', '.join(a.rsplit('.', 1)[1] for a in ARCHITECTURES)}); {FIX_IMPORT}, "
            f"{_FIX_ONNX}"
        )
    kwargs = architecture.get("arch_kwargs") or {}
    for key in architecture.get("_kw_requires_import") or ():
        value = kwargs.get(key)
        if value is None:
            continue
        if not (isinstance(value, str) and re.fullmatch(r"torch\.nn\.[\w.]+", value)):
            raise RunError(f"{where}: {key} {value!r} is not a torch.nn layer")
        module, _, attr = value.rpartition(".")
        layer = getattr(importlib.import_module(module), attr, None)
        if not (isinstance(layer, type) and issubclass(layer, torch.nn.Module)):
            raise RunError(f"{where}: {key} {value!r} is not a torch.nn layer")
    if kwargs.get("conv_op") not in (None, "torch.nn.modules.conv.Conv3d", "torch.nn.Conv3d"):
        raise RunError(f"{where}: conv_op {kwargs.get('conv_op')} is not 3D; {FIX_IMPORT}")


def check_trainer(name: str) -> type:
    """nnunetv2's trainer class ``name``, when it builds the network as nnUNetTrainer does.

    The class is looked up in nnunetv2's own trainer modules (the one module that defines
    it is imported), never in ``nnUNet_extTrainer`` folders.

    Raises:
        RunError: not an nnunetv2 trainer, one that cannot be imported here, or one that
            overrides ``build_network_architecture``.
    """
    import nnunetv2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if name == "nnUNetTrainer":
        return nnUNetTrainer
    root = Path(nnunetv2.__path__[0])
    pattern = re.compile(rf"^class {re.escape(name)}\(", re.MULTILINE)
    module = None
    if re.fullmatch(r"[A-Za-z_]\w*", name):
        for file in sorted((root / "training" / "nnUNetTrainer").rglob("*.py")):
            if pattern.search(file.read_text(errors="replace")):
                module = ".".join(("nnunetv2", *file.relative_to(root).with_suffix("").parts))
                break
    if module is None:
        raise RunError(
            f"trainer {name} is not one of nnunetv2's own trainers: bratskit cannot know "
            "how a custom trainer builds or runs its network; train with nnUNetTrainer (or "
            "one of its nnunetv2 variants), or export the network to ONNX yourself "
            "(bratskit export --onnx)"
        )
    try:
        trainer = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise RunError(
            f"trainer {name} ({module}) cannot be imported here ({exc}); bratskit cannot "
            "rebuild its network"
        ) from None
    if trainer.build_network_architecture is not nnUNetTrainer.build_network_architecture:
        raise RunError(
            f"trainer {name} builds its own network (it overrides build_network_architecture), "
            "which bratskit cannot rebuild from the plans; train with a trainer that keeps "
            "nnUNetTrainer's network, or export the network to ONNX yourself"
        )
    return trainer


def build_network(results: NnunetResults, fold: FoldCheckpoint) -> torch.nn.Module:
    """The fold's network, rebuilt from the plans with nnunetv2's ``get_network_from_plans``
    (deep supervision off) and its weights loaded strictly, in eval mode.

    Raises:
        RunError: the weights do not fit the planned network.
    """
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    manager = results.configuration_manager
    network = get_network_from_plans(
        manager.network_arch_class_name,
        manager.network_arch_init_kwargs,
        manager.network_arch_init_kwargs_req_import,
        determine_num_input_channels(results.plans_manager, manager, results.dataset),
        results.label_manager.num_segmentation_heads,
        allow_init=False,
        deep_supervision=False,
    )
    try:
        network.load_state_dict(fold.weights, strict=True)
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RunError(
            f"{fold.path}: its weights do not fit the network the plans describe ({first}); "
            "import the checkpoints with the plans.json of their training"
        ) from None
    network.eval()
    for param in network.parameters():
        param.requires_grad_(False)
    return network


def size_rule(results: NnunetResults) -> SizeRule:
    """Every spatial size the network takes is a multiple of its total stride per axis."""
    kwargs = results.configuration_manager.network_arch_init_kwargs
    strides = np.asarray(kwargs["strides"], dtype=int)
    if strides.ndim == 1:  # one int per stage: the same stride on every axis
        strides = np.repeat(strides[:, None], 3, axis=1)
    return SizeRule(tuple(int(s) for s in np.prod(strides, axis=0)))


def export_fold(
    results: NnunetResults,
    fold: FoldCheckpoint,
    rule: SizeRule,
    inputs: ParityInputs,
    bundle_dir: Path,
    nonlinearity: str,
    opset: int = DEFAULT_OPSET,
) -> ModelFile:
    """Write fold ``fold``'s network to ``<bundle_dir>/nnunet/fold<k>.onnx`` and check it.

    Raises:
        RunError: the weights do not fit the planned network.
        ExportError: the export fails or the file's probabilities differ from eager
            torch's by more than the tolerance.
    """
    start = time.perf_counter()
    name, rel = f"{KEY}/fold{fold.fold}", f"{KEY}/fold{fold.fold}.onnx"
    network = build_network(results, fold)
    onnx_logits = write_onnx(name, network, inputs, bundle_dir / rel, rule, opset)
    reference = _probabilities(eager_forward(network)(inputs.check_ncdhw), nonlinearity)

    def forward(image_ncdhw: np.ndarray) -> np.ndarray:
        return _probabilities(onnx_logits(image_ncdhw), nonlinearity)

    parity = check_parity(name, "onnx", forward, inputs, reference)
    log_parity(name, "onnx", rel, parity, start)
    return ModelFile(rel, sha256_file(bundle_dir / rel), "fp32", parity)


def _probabilities(logits_nkdhw: np.ndarray, nonlinearity: str) -> np.ndarray:
    """float32 probabilities of logits (N, K, ...): sigmoid, or softmax over K."""
    logits = torch.from_numpy(np.ascontiguousarray(logits_nkdhw, dtype=np.float32))
    out = torch.sigmoid(logits) if nonlinearity == "sigmoid" else torch.softmax(logits, dim=1)
    return out.numpy()
