"""An nnU-Net v2 results folder, read and checked for what bratskit can run faithfully.

The folder is ``<trainer>__<plans>__<configuration>/`` as nnU-Net v2's trainer writes it
(``nnUNetTrainer.on_train_start`` copies ``plans.json`` and ``dataset.json`` there,
``save_checkpoint`` writes ``fold_k/checkpoint_final.pth`` and ``checkpoint_best.pth``).
As nnU-Net's own predictor does (``nnUNetPredictor.initialize_from_trained_model_folder``),
the trainer and configuration come from the checkpoints, the rest from the plans.

Checkpoints are read with ``torch.load(weights_only=True)`` inside
``torch.serialization.safe_globals`` of :data:`CHECKPOINT_GLOBAL_NAMES`, the numpy types
nnU-Net's checkpoints hold besides tensors and plain data (measured on checkpoints
written by ``nnUNetTrainer.save_checkpoint`` of nnunetv2 2.8 after logged epochs: the
logger's ``mean_fg_dice``, ``ema_fg_dice`` and ``dice_per_class_or_region`` are numpy
float64 scalars, its losses float32 scalars, ``_best_ema`` a float64 scalar); numpy 1.x
writes the scalar reconstructor as ``numpy.core.multiarray.scalar``. Any other pickled
type is refused before loading (``torch.serialization.get_unsafe_globals_in_checkpoint``).

Refused, naming the thing and the fix (:class:`export.errors.RunError`): cascades
(``previous_stage``), 2D configurations, trainers and architectures
:mod:`export.nnunet_network` cannot rebuild, normalisations other than ``ZScoreNormalization``,
preprocessors other than ``DefaultPreprocessor``, image readers other than SimpleITKIO
and NibabelIO (``NibabelIOWithReorient`` reorients), resampling functions other than
``resample_data_or_seg_to_shape``, label managers other than ``LabelManager``, missing
folds and checkpoints with other pickled types.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.errors import RunError
from export.foreign_json import read_json_object
from export.nnunet_network import FIX_IMPORT, check_architecture, check_trainer

log = logging.getLogger(__name__)

CHECKPOINTS = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}
READERS = ("SimpleITKIO", "NibabelIO")
NORMALIZATION = "ZScoreNormalization"
PREPROCESSOR = "DefaultPreprocessor"
RESAMPLING = "resample_data_or_seg_to_shape"
RESAMPLING_KWARGS = ("is_seg", "order", "order_z", "force_separate_z")
LABEL_MANAGER = "LabelManager"
#: The pickled globals of an nnU-Net checkpoint (see the module docstring), by name.
CHECKPOINT_GLOBAL_NAMES = (
    "numpy.dtype",
    "numpy.dtypes.Float64DType",
    "numpy.dtypes.Float32DType",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray.scalar",
)


def checkpoint_globals() -> list:
    """:data:`CHECKPOINT_GLOBAL_NAMES` as ``safe_globals`` entries (objects, or
    ``(object, name)`` where the name is the other numpy major version's)."""
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    return [
        np.dtype,
        np.dtypes.Float64DType,
        np.dtypes.Float32DType,
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
    ]


@dataclass(frozen=True)
class FoldCheckpoint:
    """One fold's checkpoint: its network weights and what the predictor reads from it."""

    fold: int
    path: Path
    weights: dict[str, torch.Tensor]
    trainer: str
    configuration: str
    mirror_axes: tuple[int, ...] | None


@dataclass(frozen=True)
class NnunetResults:
    """A checked results folder (see the module docstring).

    ``plans_manager``, ``configuration_manager`` and ``label_manager`` are nnunetv2's own
    objects for the plans, the checkpoints' configuration and ``dataset.json``.
    """

    path: Path
    plans: dict[str, Any]
    dataset: dict[str, Any]
    trainer: str
    configuration: str
    folds: tuple[FoldCheckpoint, ...]
    plans_manager: Any
    configuration_manager: Any
    label_manager: Any

    @property
    def source(self) -> str:
        """Provenance text: ``<dataset name>/<folder name>``."""
        return f"{self.plans.get('dataset_name', '?')}/{self.path.name}"

    @property
    def channel_names(self) -> list[str]:
        """``dataset.json``'s channel names in input order (v1's ``modality`` too)."""
        names = self.dataset.get("channel_names", self.dataset.get("modality", {}))
        return [str(names[k]) for k in sorted(names, key=int)]

    @property
    def mirror_axes(self) -> tuple[int, ...]:
        """The first fold's ``inference_allowed_mirroring_axes`` (none: no mirroring), as
        the predictor takes them."""
        axes = self.folds[0].mirror_axes
        return () if axes is None else tuple(axes)


def read_results(path: Path, folds: tuple[int, ...] | None, checkpoint: str) -> NnunetResults:
    """Read and check a results folder and the checkpoints of ``folds`` (None: every
    ``fold_k`` holding the checkpoint, as nnU-Net's ``auto_detect_available_folds``).

    Raises:
        ValueError: an unknown ``checkpoint`` kind.
        RunError: anything the module docstring lists.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"nnU-Net results folder {path} does not exist or is not a folder")
    plans, dataset = _json(path / "plans.json"), _json(path / "dataset.json")
    checkpoints = [
        load_checkpoint(p, fold) for fold, p in _fold_paths(path, folds, CHECKPOINTS[checkpoint])
    ]
    first = checkpoints[0]
    for other in checkpoints[1:]:
        if (other.trainer, other.configuration) != (first.trainer, first.configuration):
            raise RunError(
                f"{other.path} was trained by {other.trainer} / {other.configuration}, "
                f"{first.path} by {first.trainer} / {first.configuration}: import one "
                "training's folds together (--folds)"
            )
        if other.mirror_axes != first.mirror_axes:
            log.warning(
                "fold %d allows mirroring axes %s, fold %d %s: nnU-Net's predictor (and "
                "bratskit) use the first fold's",
                other.fold,
                other.mirror_axes,
                first.fold,
                first.mirror_axes,
            )
    _check_folder_name(path, first)
    _check_plans(path, plans, first.configuration)
    manager = PlansManager(plans)
    configuration = manager.get_configuration(first.configuration)
    check_configuration(path, first.configuration, configuration.configuration)
    check_trainer(first.trainer)
    try:
        labels = manager.get_label_manager(dataset)
    except (AssertionError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{path / 'dataset.json'}: nnU-Net refuses its labels: {exc}") from None
    return NnunetResults(
        path=path,
        plans=plans,
        dataset=dataset,
        trainer=first.trainer,
        configuration=first.configuration,
        folds=tuple(checkpoints),
        plans_manager=manager,
        configuration_manager=configuration,
        label_manager=labels,
    )


def _json(path: Path) -> dict[str, Any]:
    return read_json_object(
        path,
        "an nnU-Net results folder holds plans.json and dataset.json (nnU-Net's trainer "
        "copies them there); pass the <trainer>__<plans>__<configuration> folder",
    )


def _fold_paths(path: Path, folds: tuple[int, ...] | None, name: str) -> list[tuple[int, Path]]:
    """(fold, checkpoint path) of ``folds``, or of every fold folder with ``name``."""
    if folds is None:
        found = sorted(
            int(p.name.removeprefix("fold_"))
            for p in path.glob("fold_*")
            if re.fullmatch(r"fold_\d+", p.name) and (p / name).is_file()
        )
        if not found:
            raise RunError(
                f"{path} has no fold_<k>/{name}: train a fold first, or choose the other "
                "checkpoint with --checkpoint"
            )
        folds = tuple(found)
    if len(set(folds)) != len(folds):
        raise ValueError(f"folds must be distinct, got {list(folds)}")
    missing = [k for k in folds if not (path / f"fold_{k}" / name).is_file()]
    if missing:
        have = sorted(
            p.name for p in path.glob("fold_*") if (p / name).is_file() and p.name != "fold_all"
        )
        raise RunError(
            f"fold(s) {', '.join(map(str, missing))} have no {name} in {path} (found "
            f"{', '.join(have) or 'none'}): finish their training, or import the others with "
            "--folds"
        )
    return [(k, path / f"fold_{k}" / name) for k in folds]


def load_checkpoint(path: Path, fold: int) -> FoldCheckpoint:
    """Load one nnU-Net checkpoint with ``weights_only=True`` and the numpy allow-list.

    Raises:
        RunError: other pickled types, an unreadable file, or missing keys.
    """
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # a legacy (non-zip) file: the weights-only unpickler still decides
        found = []
    unexpected = sorted(set(found) - set(CHECKPOINT_GLOBAL_NAMES))
    if unexpected:
        raise RunError(_unexpected_types(path, unexpected))
    try:
        with torch.serialization.safe_globals(checkpoint_globals()):
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError for damaged files
        first = (str(exc).strip().splitlines() or [""])[0]
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise RunError(_unexpected_types(path, [first])) from None
        raise RunError(f"cannot read checkpoint {path}: {type(exc).__name__}: {first}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("network_weights"), dict):
        raise RunError(
            f"{path} is not an nnU-Net v2 checkpoint (no network_weights): pass the folder "
            "nnUNetv2_train wrote"
        )
    init_args = raw.get("init_args")
    trainer = raw.get("trainer_name")
    if not isinstance(trainer, str) or not isinstance(init_args, dict):
        raise RunError(f"{path} lacks trainer_name or init_args, which nnU-Net v2 checkpoints hold")
    configuration = init_args.get("configuration")
    if not isinstance(configuration, str):
        raise RunError(f"{path}: init_args has no configuration name")
    axes = raw.get("inference_allowed_mirroring_axes")
    return FoldCheckpoint(
        fold=fold,
        path=path,
        weights=raw["network_weights"],
        trainer=trainer,
        configuration=configuration,
        mirror_axes=None if axes is None else tuple(int(a) for a in axes),
    )


def _unexpected_types(path: Path, types: list[str]) -> str:
    return (
        f"checkpoint {path} holds pickled types {', '.join(types)}, which nnU-Net's trainer "
        f"does not write (allowed besides tensors and plain data: "
        f"{', '.join(CHECKPOINT_GLOBAL_NAMES)}); bratskit never unpickles other objects: "
        "re-save the checkpoint with tensors and plain data only"
    )


def _check_folder_name(path: Path, first: FoldCheckpoint) -> None:
    parts = path.name.split("__")
    if len(parts) == 3 and (parts[0], parts[2]) != (first.trainer, first.configuration):
        log.warning(
            "folder %s is named for %s / %s but its checkpoints are %s / %s; the "
            "checkpoints decide, as in nnU-Net's predictor",
            path.name,
            parts[0],
            parts[2],
            first.trainer,
            first.configuration,
        )


def _check_plans(path: Path, plans: dict[str, Any], configuration: str) -> None:
    configurations = plans.get("configurations")
    if not isinstance(configurations, dict) or configuration not in configurations:
        raise RunError(
            f"{path / 'plans.json'} has no configuration {configuration!r}, which the "
            "checkpoints were trained with: copy the plans of that training into the folder"
        )
    reader = plans.get("image_reader_writer")
    if reader not in READERS:
        why = ", which reorients images to RAS" if reader == "NibabelIOWithReorient" else ""
        raise RunError(
            f"{path / 'plans.json'}: image_reader_writer {reader}{why}: bratskit reproduces "
            f"{' and '.join(READERS)} only; plan with one of them "
            "(dataset.json overwrite_image_reader_writer) and retrain"
        )
    manager = plans.get("label_manager", LABEL_MANAGER)
    if manager != LABEL_MANAGER:
        raise RunError(
            f"{path / 'plans.json'}: label_manager {manager}: bratskit knows nnU-Net's "
            f"{LABEL_MANAGER} only; plan with the default label manager and retrain"
        )
    for key in ("transpose_forward", "transpose_backward"):
        if sorted(plans.get(key, [])) != [0, 1, 2]:
            raise RunError(f"{path / 'plans.json'}: {key} {plans.get(key)} is not 3D")


def check_configuration(path: Path, name: str, config: dict[str, Any]) -> None:
    """Refuse a (resolved) configuration bratskit cannot run faithfully."""
    where = f"{path / 'plans.json'} configuration {name}"
    if config.get("previous_stage") is not None or "cascade" in name:
        raise RunError(
            f"{where} is a cascade stage: it takes the segmentation of "
            f"{config.get('previous_stage', 'a previous stage')} as input, which bratskit does "
            f"not run; {FIX_IMPORT}"
        )
    if len(config.get("patch_size", ())) != 3:
        raise RunError(f"{where} is not 3D (patch {config.get('patch_size')}); {FIX_IMPORT}")
    preprocessor = config.get("preprocessor_name")
    if preprocessor != PREPROCESSOR:
        raise RunError(
            f"{where} uses the preprocessor {preprocessor}; bratskit reproduces "
            f"{PREPROCESSOR} only: plan with it (nnUNetv2_plan_experiment -preprocessor_name "
            f"{PREPROCESSOR}) and retrain"
        )
    schemes = list(config.get("normalization_schemes", []))
    others = sorted({s for s in schemes if s != NORMALIZATION})
    if others or not schemes:
        raise RunError(
            f"{where} normalises channels with {', '.join(others) or 'nothing'}; bratskit "
            f"reproduces {NORMALIZATION} only: name the MRI channels so that nnU-Net plans "
            "z-score normalisation (not CT, noNorm, rescale_to_0_1 or rgb_to_0_1) and retrain"
        )
    for what in ("data", "probabilities"):
        fn = config.get(f"resampling_fn_{what}")
        kwargs = config.get(f"resampling_fn_{what}_kwargs") or {}
        extra = sorted(set(kwargs) - {*RESAMPLING_KWARGS, "separate_z_anisotropy_threshold"})
        if fn != RESAMPLING or extra:
            raise RunError(
                f"{where} resamples {what} with {fn} {kwargs}; bratskit reproduces {RESAMPLING} "
                "(order, order_z, force_separate_z) only: plan with nnU-Net's default planner"
            )
    check_architecture(where, config.get("architecture") or {})
