"""``make demo`` end to end on a tiny budget (scripts/demo.sh, the README's first command).

The demo reports on whatever ``bratskit tune`` chose: here a recipe whose recommended ET
minimum volume (250 voxels) lies outside the demo table's 0/100/400/600, and a tune grid
that can only keep it, so the run must predict, tabulate and picture that choice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TUNED_ET = 250

pytestmark = pytest.mark.slow


def test_demo_reports_a_tuned_et_threshold_outside_its_table(tmp_path):
    pytest.importorskip("torch")
    recipe = tmp_path / "tiny-et250.yaml"
    raw = yaml.safe_load((REPO / "train" / "recipes" / "tiny.yaml").read_text())
    raw["recommended"] = {"ensemble": "mean", "et_threshold": TUNED_ET}
    recipe.write_text(yaml.safe_dump(raw))
    demo = tmp_path / "demo"
    env = {
        **os.environ,
        "BIN": str(Path(sys.executable).parent),
        "DEMO": str(demo),
        "TRAIN_CASES": "5",
        "HELD_OUT": "2",
        "EPOCHS": "1",
        "CONFIG": str(recipe),
        "TUNE_ARGS": f"--et-thresholds {TUNED_ET} --probability-thresholds 0.5",
    }
    result = subprocess.run(
        ["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    best = json.loads((demo / "tune.json").read_text())["best"]
    assert (best["ensemble"], best["et_threshold"]) == ("mean", TUNED_ET)
    held_out = sorted(p.name for p in (demo / "held-out").iterdir())
    assert len(held_out) == 2
    for folder in ("tuned", "mean", "vote", "confidence", f"mean-et{TUNED_ET}"):
        written = sorted(p.name for p in (demo / "pred" / folder).iterdir())
        assert written == [f"{case}.nii.gz" for case in held_out], folder
    table = (demo / "report" / "ensembles.txt").read_text()
    starred = [line for line in table.splitlines() if "*" in line and "|" in line]
    assert starred and all(line.split("|")[0].split()[1] == str(TUNED_ET) for line in starred)
    assert f"mean/et{TUNED_ET}" in json.loads((demo / "report" / "ensembles.json").read_text())
    for name in ("evaluation.md", "boxplot.png", "cases.csv", "summary.json"):
        assert (demo / "report" / "tuned" / name).stat().st_size > 0
    pictures = sorted(p.name for p in (demo / "pictures").iterdir())
    assert pictures == [f"{case}.png" for case in held_out]
