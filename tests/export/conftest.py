"""Really trained tiny runs and bundles built from them (each once per session).

Reusable by runtime tests: ``tiny_run`` (one 3-region residual U-Net, 2 folds),
``two_stage_run`` (paper 002's localisation chain, 2 folds), ``make_bundle``
(``bratskit export`` in-process, asserting success), ``run_export`` (the same, any
outcome) and ``tiny_bundle`` (``tiny_run`` exported with ``--fp16``). The runs
train 1 epoch of 4-filter networks on 4 synthetic 48 x 48 x 32 cases: seconds on 2 cores.
Session-scoped folders are shared: copy one (``shutil.copytree``) before altering it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from submission.workbench.synth import write_synthetic_dataset

CASE_SHAPE = (48, 48, 32)
PATCH = [32, 32, 32]


def resunet_member(key: str, regions: list[str], **changes) -> dict:
    """A 4-filter, 3-level residual U-Net member on 32^3 patches."""
    member = {
        "key": key,
        "regions": regions,
        "arch": "resunet",
        "arch_params": {"base_filters": 4, "levels": 3, "out_channels": len(regions)},
        "loss": "bce_dice",
        "optimizer": {"name": "adam", "lr": 1.0e-3},
        "crop": PATCH,
    }
    return member | changes


def write_recipe(path: Path, name: str, members: list[dict], folds: int = 2) -> Path:
    """A recipe YAML: ``folds`` folds of 1 epoch, brain crop padded to multiples of 8."""
    recipe = {
        "name": name,
        "epochs": 1,
        "batch_size": 2,
        "folds": folds,
        "num_workers": 0,
        "amp": "off",
        "cache_dtype": "float32",
        "preprocessing": {"crop": "brain", "margin": 4, "divisor": 8},
        "augment": {"flip_p": 0.0, "intensity_p": 0.0, "affine_p": 0.0},
        "members": members,
    }
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def train_run(data: Path, recipe: Path, out: Path) -> Path:
    """``bratskit train --data DATA --config RECIPE --out OUT --epochs 1`` in-process."""
    from train.cli import train

    args = ["--data", data, "--config", recipe, "--out", out, "--epochs", "1", "--device", "cpu"]
    result = CliRunner().invoke(train, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def invoke_export(*args) -> object:
    """``bratskit export ARGS`` in-process; returns click's Result (exit_code, stdout, stderr)."""
    from export.cli import export

    return CliRunner().invoke(export, [str(a) for a in args])


def build_bundle(runs, out: Path, *options) -> Path:
    """Export ``runs`` to the bundle ``out`` with the CLI; asserts it succeeded."""
    runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
    result = invoke_export(*runs, "--out", out, *options)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


@pytest.fixture(scope="session")
def run_export():
    """``run_export(*args)``: ``bratskit export ARGS`` in-process, click's Result back."""
    return invoke_export


@pytest.fixture(scope="session")
def make_bundle():
    """``make_bundle(runs, out, *options)``: export with the CLI, assert success, ``out``."""
    return build_bundle


@pytest.fixture(scope="session")
def synth_cases(tmp_path_factory) -> Path:
    """Four labelled synthetic 2021-layout cases, 48 x 48 x 32."""
    root = tmp_path_factory.mktemp("export-cases")
    write_synthetic_dataset(root, 4, layout="2021", seed=3, shape=CASE_SHAPE)
    return root


@pytest.fixture(scope="session")
def tiny_run(synth_cases, tmp_path_factory) -> Path:
    """A trained run: one WT/TC/ET residual U-Net member ``seg``, folds 0 and 1."""
    root = tmp_path_factory.mktemp("tiny-run")
    recipe = write_recipe(
        root / "tiny.yaml", "tiny-test", [resunet_member("seg", ["WT", "TC", "ET"])]
    )
    return train_run(synth_cases, recipe, root / "run")


@pytest.fixture(scope="session")
def two_stage_run(synth_cases, tmp_path_factory) -> Path:
    """A trained paper-002 chain: stage-1 WT localiser, stage-2 WT+TC and ET on the
    32^3 window around the tumour (``sampling: tumour``), folds 0 and 1."""
    root = tmp_path_factory.mktemp("two-stage-run")
    members = [
        resunet_member("stage1-wt", ["WT"], stage="localization"),
        resunet_member("stage2-wttc", ["WT", "TC"], sampling="tumour", jitter=2),
        resunet_member("stage2-et", ["ET"], sampling="tumour", jitter=2, loss="bce"),
    ]
    recipe = write_recipe(root / "two-stage.yaml", "two-stage-test", members)
    return train_run(synth_cases, recipe, root / "run")


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    """``bratskit export tiny_run --fp16``: ONNX, TorchScript and float16 ONNX per fold."""
    return build_bundle(tiny_run, tmp_path_factory.mktemp("tiny-bundle") / "bundle", "--fp16")
