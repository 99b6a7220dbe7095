"""nnU-Net v2 results folders made by nnU-Net's own code, and nnU-Net's own predictions.

A small synthetic 4-channel BraTS 2021 dataset (:func:`write_synthetic_dataset`, what
``bratskit synth`` writes) is converted to nnU-Net's raw format as nnU-Net's
``Dataset137_BraTS21.py`` converts BraTS 2021 (images ``_0000``..``_0003`` = t1, t1ce,
t2, flair; labels through its ``copy_BraTS_segmentation_and_convert_labels_to_nnUNet``,
2/1/4 -> 1/2/3), in two variants:

- region-based, Dataset137's ``dataset.json`` (whole tumor (1, 2, 3), tumor core (2, 3),
  enhancing tumor (3,), ``regions_class_order`` 1, 2, 3), 1 mm voxels;
- label-based (edema 1, necrotic tumor core 2, enhancing tumor 3), on voxels of
  2 x 1 x 1 mm (x, y, z), so nnU-Net's planner transposes the axes (the coarse axis
  first: ``transpose_forward`` (2, 0, 1) of SimpleITK's (z, y, x)); its test cases add
  one on 1 mm voxels, which nnU-Net resamples to the plans' spacing and back.

nnU-Net's fingerprint extractor and ``ExperimentPlanner`` plan each one; the plans'
3d_fullres patch and features are then shrunk (:func:`shrink_plans`) so that CPU tests
are fast and the sliding window has several windows. Each fold's network is built by
``nnUNetTrainer.build_network_architecture`` with random weights (``torch.manual_seed``
per fold) and saved by ``nnUNetTrainer.save_checkpoint`` after one logged epoch (the
logger's own numpy values), with ``plans.json`` and ``dataset.json`` next to the folds as
``on_train_start`` copies them: nnU-Net's own checkpoint format, without training.

:func:`predict_with_nnunet` runs ``nnUNetPredictor`` (``predict_from_files_sequential``,
no worker processes) on case files and returns the label maps in BraTS 2021 labels
(Dataset137's ``convert_labels_back_to_BraTS``).

The environment variables ``nnUNet_raw``/``_preprocessed``/``_results`` point into the
session's tmp folder while the fixtures plan and write. The session fixtures are named
``nnunet_region_model``, ``nnunet_label_model``, ``nnunet_region_bundle`` and
``nnunet_label_bundle``; a test module imports their ``*_fixture`` functions.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import nibabel as nib
import numpy as np
import pytest

from submission.brats import modality_filename
from submission.workbench.synth import write_synthetic_dataset

CASE_SHAPE = (48, 48, 40)
TRAIN_CASES = 6
TEST_CASES = 1
FOLDS = (0, 1)
#: 3d_fullres patch after shrinking (per axis, rounded up to the network's stride).
PATCH = 32
FIRST_FEATURES, MAX_FEATURES = 4, 32
CONFIGURATION = "3d_fullres"
TRAINER_FOLDER = f"nnUNetTrainer__nnUNetPlans__{CONFIGURATION}"
#: Dataset137's channel names, in its file order (_0000 = t1, ... _0003 = flair).
CHANNEL_NAMES = {0: "T1", 1: "T1ce", 2: "T2", 3: "Flair"}
CHANNEL_MODALITIES = ("t1n", "t1c", "t2w", "t2f")
REGION_LABELS = {
    "background": 0,
    "whole tumor": (1, 2, 3),
    "tumor core": (2, 3),
    "enhancing tumor": (3,),
}
REGIONS_CLASS_ORDER = (1, 2, 3)
LABEL_LABELS = {"background": 0, "edema": 1, "necrotic tumor core": 2, "enhancing tumor": 3}
#: Voxel size (mm, x y z) of the label-based variant's cases.
ANISOTROPIC = (2.0, 1.0, 1.0)


@dataclass(frozen=True)
class NnunetModel:
    """A results folder and what it was made from.

    Attributes:
        results_dir: ``<nnUNet_results>/<dataset>/nnUNetTrainer__nnUNetPlans__3d_fullres``.
        cases_dir: the synthetic BraTS cases (2021 layout) it was planned on.
        test_dir: held-out cases of the same kind (``TEST_CASES``), a BraTS input folder.
        region_based: Dataset137's regions, else labels.
        spacing: the cases' voxel size (mm, x y z).
    """

    results_dir: Path
    cases_dir: Path
    test_dir: Path
    region_based: bool
    spacing: tuple[float, float, float]

    @property
    def folds(self) -> tuple[int, ...]:
        return FOLDS


@contextmanager
def nnunet_environment(root: Path) -> Iterator[Path]:
    """``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` under ``root``."""
    saved = {}
    for name in ("raw", "preprocessed", "results"):
        key = f"nnUNet_{name}"
        (root / name).mkdir(parents=True, exist_ok=True)
        saved[key] = os.environ.get(key)
        os.environ[key] = str(root / name)
    try:
        yield root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def case_files(case_dir: Path) -> list[Path]:
    """A 2021-layout case's four images in Dataset137's channel order."""
    case = case_dir.name
    return [case_dir / modality_filename(case, m, "2021") for m in CHANNEL_MODALITIES]


def write_raw_dataset(
    dataset_dir: Path, cases_dir: Path, case_ids: Sequence[str], region_based: bool
) -> Path:
    """``imagesTr``, ``labelsTr`` and ``dataset.json`` of the cases, as Dataset137 does."""
    from nnunetv2.dataset_conversion.Dataset137_BraTS21 import (
        copy_BraTS_segmentation_and_convert_labels_to_nnUNet,
    )
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    images, labels = dataset_dir / "imagesTr", dataset_dir / "labelsTr"
    images.mkdir(parents=True)
    labels.mkdir()
    for case in case_ids:
        for i, path in enumerate(case_files(cases_dir / case)):
            shutil.copy(path, images / f"{case}_{i:04d}.nii.gz")
        copy_BraTS_segmentation_and_convert_labels_to_nnUNet(
            str(cases_dir / case / modality_filename(case, "seg", "2021")),
            str(labels / f"{case}.nii.gz"),
        )
    generate_dataset_json(
        str(dataset_dir),
        channel_names=CHANNEL_NAMES,
        labels=REGION_LABELS if region_based else LABEL_LABELS,
        num_training_cases=len(case_ids),
        file_ending=".nii.gz",
        regions_class_order=REGIONS_CLASS_ORDER if region_based else None,
    )
    return dataset_dir


def plan_dataset(dataset_id: int, **shrink) -> dict:
    """nnU-Net's fingerprint and ExperimentPlanner plans of a raw dataset, shrunk
    (``shrink``: :func:`shrink_plans`'s keyword arguments).

    The fingerprint samples 1e5 foreground intensities instead of 1e8 (they only
    matter for CT normalisation; 1e8 ships gigabytes between processes).
    """
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import (
        DatasetFingerprintExtractor,
    )
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiments
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    extractor = DatasetFingerprintExtractor(dataset_id, num_processes=1, verbose=False)
    extractor.num_foreground_voxels_for_intensitystats = 1e5
    extractor.show_progress_bar = False
    extractor.run(overwrite_existing=True)
    plans_name = plan_experiments([dataset_id], "ExperimentPlanner")
    path = Path(nnUNet_preprocessed.get()) / convert_id_to_dataset_name(dataset_id)
    plans_file = path / f"{plans_name}.json"
    plans = shrink_plans(json.loads(plans_file.read_text()), **shrink)
    plans_file.write_text(json.dumps(plans, indent=2))
    return plans


def shrink_plans(
    plans: dict,
    configuration: str = CONFIGURATION,
    patch: int | None = PATCH,
    features: tuple[int, int] = (FIRST_FEATURES, MAX_FEATURES),
) -> dict:
    """3d_fullres with a ``patch``-sized patch (a multiple of the total stride per axis;
    None keeps the planner's) and features ``first``, 2 ``first``, ... (at most ``most``,
    ``features = (first, most)``) per stage."""
    config = plans["configurations"][configuration]
    kwargs = config["architecture"]["arch_kwargs"]
    stride = np.prod(np.asarray(kwargs["strides"], dtype=int), axis=0)
    if patch is not None:
        config["patch_size"] = [int(-(-patch // s) * s) for s in stride]
    first, most = features
    kwargs["features_per_stage"] = [min(first * 2**i, most) for i in range(kwargs["n_stages"])]
    return plans


def write_results(plans: dict, dataset_json: dict, folds: Sequence[int] = FOLDS) -> Path:
    """Fold checkpoints in nnU-Net's format (see the module docstring); the results folder."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    out = None
    for fold in folds:
        trainer = nnUNetTrainer(
            {**plans, "continue_training": False},
            CONFIGURATION,
            fold,
            dataset_json,
            device=torch.device("cpu"),
        )
        torch.manual_seed(fold)
        trainer.num_input_channels = len(CHANNEL_NAMES)
        trainer.network = trainer.build_network_architecture(
            trainer.plans_manager,
            trainer.configuration_manager,
            trainer.num_input_channels,
            trainer.label_manager.num_segmentation_heads,
            True,
        )
        trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        # nnU-Net's logger plots with seaborn's sns.set(), which restyles every later
        # matplotlib figure of the session (the picture tests): keep its rcParams here.
        with matplotlib.rc_context():
            _log_one_epoch(trainer, np.random.default_rng(fold))
        trainer.current_epoch -= 1  # as on_train_end does before the final checkpoint
        trainer.save_checkpoint(os.path.join(trainer.output_folder, "checkpoint_final.pth"))
        out = Path(trainer.output_folder_base)
    (out / "plans.json").write_text(json.dumps(plans, indent=2))
    (out / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return out


def _log_one_epoch(trainer, rng: np.random.Generator) -> None:
    """One epoch's logging through the trainer's own hooks (numpy losses and Dice), which
    also writes ``checkpoint_best.pth``."""
    heads = trainer.label_manager.num_segmentation_heads
    heads -= 0 if trainer.label_manager.has_regions else 1  # the hooks drop background
    trainer.on_epoch_start()
    trainer.on_train_epoch_start()
    trainer.on_train_epoch_end([{"loss": np.array(rng.random(), dtype=np.float32)}])
    trainer.on_validation_epoch_start()
    counts = {k: rng.integers(1, 100, heads) for k in ("tp_hard", "fp_hard", "fn_hard")}
    trainer.on_validation_epoch_end([{"loss": np.array(rng.random(), dtype=np.float32), **counts}])
    trainer.on_epoch_end()


def make_model(root: Path, dataset_id: int, region_based: bool) -> NnunetModel:
    """Synthesise, convert, plan and write one results folder under ``root``."""
    spacing = (1.0, 1.0, 1.0) if region_based else ANISOTROPIC
    size = None if region_based else spacing
    cases, tests = root / "cases", root / "test-cases"
    synth = {"layout": "2021", "seed": dataset_id, "shape": CASE_SHAPE}
    ids = write_synthetic_dataset(cases, TRAIN_CASES, spacing=size, **synth)
    write_synthetic_dataset(tests, TEST_CASES, first=TRAIN_CASES, spacing=size, **synth)
    if not region_based:  # one case on 1 mm voxels: nnU-Net resamples it to the plans'
        write_synthetic_dataset(tests, 1, first=TRAIN_CASES + TEST_CASES, **synth)
    name = f"Dataset{dataset_id:03d}_Synth{'Regions' if region_based else 'Labels'}"
    with nnunet_environment(root / "nnunet") as env:
        dataset_dir = write_raw_dataset(env / "raw" / name, cases, ids, region_based)
        plans = plan_dataset(dataset_id)
        dataset_json = json.loads((dataset_dir / "dataset.json").read_text())
        results = write_results(plans, dataset_json)
    return NnunetModel(results, cases, tests, region_based, spacing)


def predict_with_nnunet(
    model: NnunetModel,
    input_dir: Path,
    out_dir: Path,
    mirroring: bool,
    folds: Sequence[int] = FOLDS,
    postprocessing: Sequence[dict] = (),
) -> dict[str, np.ndarray]:
    """``nnUNetPredictor`` on every case folder of ``input_dir``, then nnU-Net's
    ``apply_postprocessing`` of ``remove_all_but_largest_component_from_segmentation``
    with each of ``postprocessing`` (its keyword arguments, as ``postprocessing.pkl``
    holds them): case id -> uint8 label map (x, y, z) in BraTS 2021 labels."""
    import torch
    from nnunetv2.dataset_conversion.Dataset137_BraTS21 import convert_labels_back_to_BraTS
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.postprocessing.remove_connected_components import (
        apply_postprocessing,
        remove_all_but_largest_component_from_segmentation,
    )

    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=mirroring,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(
        str(model.results_dir), use_folds=tuple(folds), checkpoint_name="checkpoint_final.pth"
    )
    cases = sorted(p for p in Path(input_dir).iterdir() if p.is_dir())
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor.predict_from_files_sequential(
        [[str(p) for p in case_files(case)] for case in cases],
        [str(out_dir / case.name) for case in cases],
        save_probabilities=False,
        overwrite=True,
    )
    functions = [remove_all_but_largest_component_from_segmentation] * len(postprocessing)
    labels = {}
    for case in cases:
        seg = np.asarray(nib.load(out_dir / f"{case.name}.nii.gz").dataobj)
        seg = apply_postprocessing(seg, functions, list(postprocessing))
        labels[case.name] = convert_labels_back_to_BraTS(seg).astype(np.uint8)
    return labels


def write_postprocessing(results_dir: Path, functions: Sequence[str], kwargs: Sequence[dict]):
    """A ``postprocessing.json`` where ``find_best_configuration`` writes it (the
    cross-validation folder of ``FOLDS``), in nnU-Net's JSON form."""
    folder = results_dir / f"crossval_results_folds_{'_'.join(map(str, FOLDS))}"
    folder.mkdir(exist_ok=True)
    data = {
        "input_folder": {"foreground_mean": {}, "mean": {}},
        "postprocessed": {"foreground_mean": {}, "mean": {}},
        "postprocessing_fns": list(functions),
        "postprocessing_kwargs": list(kwargs),
    }
    path = folder / "postprocessing.json"
    path.write_text(json.dumps(data, indent=4))
    return path


def copy_results(model: NnunetModel, root: Path) -> Path:
    """A copy of the results folder to alter (the session's folder is shared)."""
    target = root / model.results_dir.name
    shutil.copytree(model.results_dir, target)
    return target


def invoke_import(*args):
    """``bratskit import nnunet ARGS`` in-process; click's Result."""
    from click.testing import CliRunner

    from export.import_cli import import_group

    return CliRunner().invoke(import_group, ["nnunet", *(str(a) for a in args)])


def import_bundle(results_dir: Path, out: Path, *options) -> Path:
    """``bratskit import nnunet RESULTS_DIR --out OUT OPTIONS``; asserts success."""
    result = invoke_import(results_dir, "--out", out, *options)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def bratskit_labels(output_dir: Path) -> dict[str, np.ndarray]:
    """``bratskit predict``'s label maps: case id -> uint8 (x, y, z)."""
    return {
        p.name.removesuffix(".nii.gz"): np.asarray(nib.load(p).dataobj).astype(np.uint8)
        for p in sorted(Path(output_dir).glob("*.nii.gz"))
    }


@pytest.fixture(scope="session", name="nnunet_region_model")
def nnunet_region_model_fixture(tmp_path_factory) -> NnunetModel:
    """Dataset137-style region-based results folder, folds 0-2 (see the module docstring)."""
    return make_model(tmp_path_factory.mktemp("nnunet-regions"), 501, region_based=True)


@pytest.fixture(scope="session", name="nnunet_label_model")
def nnunet_label_model_fixture(tmp_path_factory) -> NnunetModel:
    """Label-based results folder on anisotropic voxels, folds 0-2."""
    return make_model(tmp_path_factory.mktemp("nnunet-labels"), 502, region_based=False)


@pytest.fixture(scope="session", name="nnunet_region_bundle")
def nnunet_region_bundle_fixture(nnunet_region_model, tmp_path_factory) -> Path:
    """``bratskit import nnunet`` of the region-based results folder."""
    out = tmp_path_factory.mktemp("nnunet-region-bundle") / "bundle"
    return import_bundle(nnunet_region_model.results_dir, out)


@pytest.fixture(scope="session", name="nnunet_label_bundle")
def nnunet_label_bundle_fixture(nnunet_label_model, tmp_path_factory) -> Path:
    """``bratskit import nnunet`` of the label-based results folder."""
    out = tmp_path_factory.mktemp("nnunet-label-bundle") / "bundle"
    return import_bundle(nnunet_label_model.results_dir, out)
