"""`bratskit train` end to end on small synthetic cases: real processes, files and checkpoints."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from train.recipe_files import load_config

BRATSKIT = [sys.executable, "-m", "submission"]


def recipe(tmp_path: Path, name: str = "mini", **member) -> Path:
    """A 2-fold recipe small enough for a few seconds per epoch on 2 cores."""
    raw = load_config("tiny").to_dict()
    raw.update(name=name, epochs=2, folds=3, batch_size=2, num_workers=0)
    raw["preprocessing"]["divisor"] = 8
    raw["members"][0].update(
        arch_params={"base_filters": 4, "levels": 3, "out_channels": 3}, crop=[32, 32, 32]
    )
    raw["members"][0].update(member)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def train(*args, check=True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*BRATSKIT, "train", *map(str, args)], capture_output=True, text=True, **kwargs
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def epochs_logged(fold_dir: Path) -> list[int]:
    with (fold_dir / "log.csv").open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_k_fold_run_writes_split_summary_logs_and_checkpoints(synth_train, tmp_path):
    run = tmp_path / "run"
    result = train("--data", synth_train, "--config", recipe(tmp_path), "--out", run)
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["folds"]) == {"0", "1", "2"}
    for entry in summary["folds"].values():
        assert entry["best_epoch"] in (1, 2)
        assert set(entry["dice"]) == {"WT", "TC", "ET"}
        assert all(0 <= d <= 1 for d in entry["dice"].values())
    assert "fold 2: best epoch" in result.stdout
    splits = json.loads((run / "splits.json").read_text())
    assert sorted(i for part in splits["folds"] for i in part) == sorted(
        p.name for p in synth_train.iterdir()
    )
    for fold in range(3):
        fold_dir = run / "seg" / f"fold{fold}"
        assert epochs_logged(fold_dir) == [1, 2]
        assert any((fold_dir / "tb").iterdir())
        best = torch.load(fold_dir / "best.pt", weights_only=True)
        assert best["fold"] == fold and best["member"]["regions"] == ["WT", "TC", "ET"]
        assert best["epoch"] == summary["folds"][str(fold)]["best_epoch"]
    assert load_config(run / "config.yaml").name == "mini"


@pytest.mark.slow
def test_val_interval_validates_every_nth_epoch_and_the_last(synth_train, tmp_path):
    raw = yaml.safe_load(recipe(tmp_path).read_text())
    config = tmp_path / "every-other.yaml"
    config.write_text(yaml.safe_dump({**raw, "val_interval": 2}))
    run = tmp_path / "run"
    result = train("--data", synth_train, "--config", config, "--out", run, "--folds", "0",
                   "--epochs", 3)  # fmt: skip
    with (run / "seg" / "fold0" / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    validated = [not math.isnan(float(row["dice_WT"])) for row in rows]
    assert validated == [False, True, True]  # epoch 2, and the last
    assert all(float(row["loss"]) > 0 for row in rows)  # every epoch trained
    best = torch.load(run / "seg" / "fold0" / "best.pt", weights_only=True)
    assert best["epoch"] in (2, 3)
    assert "epoch 1/3 loss" in result.stderr and "not validated (best none yet)" in result.stderr


@pytest.mark.slow
def test_rerunning_a_fold_reproduces_its_weights(synth_train, tmp_path):
    """Initial weights come from (seed, fold) like the patches, so a rerun is the same run."""
    config = recipe(tmp_path)

    def weights(run: Path) -> dict[str, torch.Tensor]:
        args = ["--data", synth_train, "--config", config, "--out", run, "--folds", "0"]
        train(*args, "--epochs", 1, "--amp", "off")
        return torch.load(run / "seg" / "fold0" / "last.pt", weights_only=True)["model"]

    first, again = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)


@pytest.mark.slow
def test_killed_run_resumes_after_its_last_epoch_with_the_same_split(synth_train, tmp_path):
    run, config = tmp_path / "run", recipe(tmp_path)
    args = ["--data", synth_train, "--config", config, "--out", run, "--folds", "0"]
    proc = subprocess.Popen(
        [*BRATSKIT, "train", *map(str, args), "--epochs", "30"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = run / "seg" / "fold0" / "last.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (last.exists() and _epoch(last) >= 2):
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _epoch(last)
    assert 2 <= killed_at < 30
    split = (run / "splits.json").read_text()
    train(*args, "--epochs", killed_at + 2, "--resume")
    assert (run / "splits.json").read_text() == split
    assert epochs_logged(run / "seg" / "fold0")[-2:] == [killed_at + 1, killed_at + 2]
    assert _epoch(last) == killed_at + 2


def _epoch(path: Path) -> int:
    for _ in range(20):  # the trainer replaces the file atomically; retry a racing read
        try:
            return int(torch.load(path, weights_only=True)["epoch"])
        except (RuntimeError, EOFError, FileNotFoundError):
            time.sleep(0.2)
    raise AssertionError(f"cannot read {path}")


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_one_fold(synth_train, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "--no-python",
        Path(sys.executable).with_name("bratskit"),
        "train",
        "--data",
        synth_train,
        "--config",
        recipe(tmp_path),
        "--out",
        run,
        "--folds",
        "0",
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]
    result = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "distributed training: 2 processes, backend gloo" in result.stderr
    # the recipe's batch of 2 is the global batch: one sample per process (issue 16)
    assert "batch 2 per optimiser step: 2 process(es) x 1 accumulation step(s) x 1" in (
        result.stderr
    )
    fold_dir = run / "seg" / "fold0"
    assert sorted(p.name for p in fold_dir.glob("*.pt")) == ["best.pt", "last.pt"]
    assert epochs_logged(fold_dir) == [1]
    assert json.loads((run / "summary.json").read_text())["folds"]["0"]["best_epoch"] == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "member",
    [
        {
            "arch": "segresnet",
            "arch_params": {"init_filters": 4, "out_channels": 3},
            "loss": "dice_squared",
            "redundancy": 1.0,
        },
        {
            "arch": "effunet",
            "loss": "ce_minus_dice",
            "crop": [64, 64, 12],
            "channels": ["t2f"],  # one of 003's modality-specific networks
            "sampling": "centre",
            "arch_params": {
                "in_channels": 1,
                "input_depth": 12,
                "out_channels": 3,
                "decoder_widths": [16, 16, 8, 8, 8],
                "volume_channels": 4,
            },
        },
        {
            "arch": "resunet",
            "regions": ["ET"],
            "loss": "bce",
            "sampling": "tumour",
            "jitter": 4,
            "arch_params": {"base_filters": 4, "levels": 3, "out_channels": 1},
        },
    ],
    ids=["segresnet-redundancy", "effunet-single-modality", "resunet-tumour-crop"],
)
def test_each_paper_recipe_shape_trains_one_epoch(synth_train, tmp_path, member):
    run = tmp_path / "run"
    train(
        "--data",
        synth_train,
        "--config",
        recipe(tmp_path, **member),
        "--out",
        run,
        "--folds",
        "1",
        "--epochs",
        "1",
    )
    entry = json.loads((run / "summary.json").read_text())["folds"]["1"]
    assert set(entry["dice"]) == set(member.get("regions", ["WT", "TC", "ET"]))


def test_describe_reports_the_paper_parameter_count():
    result = train("--describe", "segresnet-redundancy")
    assert (
        "exported parameters: 18,798,627" in result.stdout
    )  # SegResNet at 32 filters (004 ref. 13)
    assert "output shape:        (1, 3, 192, 192, 144)" in result.stdout
    tiny = train("--describe", "tiny").stdout
    assert "validated every 2 epochs and after the last" in tiny
    assert "crop (64, 64, 64) (random; predicted in windows of the crop" in tiny


def test_describe_effunet_lists_four_single_modality_members_and_warns_from_scratch():
    out = train("--describe", "effunet").stdout
    for modality in ("t1n", "t1c", "t2w", "t2f"):
        assert f"member {modality} (segmentation): effunet -> WT, TC, ET" in out
        assert f"  channels {modality} (this member's own)" in out
    assert out.count("input shape:         (1, 1, 192, 160, 108)") == 4
    assert out.count("WARNING: effunet's EfficientNet-B0 encoder starts from random") == 4
    assert "all 4 member(s) of a fold:" in out
    joint = train("--describe", "effunet-joint").stdout
    assert "input shape:         (1, 4, 192, 160, 108)" in joint
    assert "all 1 member(s) of a fold:" in joint


def test_usage_and_input_errors_exit_codes(synth_train, tmp_path):
    missing = train(
        "--data", tmp_path / "nope", "--config", "tiny", "--out", tmp_path / "r", check=False
    )
    assert missing.returncode == 3 and "does not exist" in missing.stderr
    bad = train("--data", synth_train, "--config", "nope", "--out", tmp_path / "r", check=False)
    assert bad.returncode == 2 and "unknown recipe" in bad.stderr
    empty = tmp_path / "unlabelled"
    shutil.copytree(next(synth_train.iterdir()), empty / "BraTS2021_00000")
    next(empty.glob("*/*_seg.nii.gz")).unlink()
    none = train("--data", empty, "--config", "tiny", "--out", tmp_path / "r", check=False)
    assert none.returncode == 3 and "no labelled case" in none.stderr
