"""Paper 004's Barlow-Twins weight, measured: the ``segresnet-redundancy`` recipe trained with
redundancy weights 0, 0.01, 0.1 and 1 (same data, seed, folds and epochs), each fold ensemble
scored on held-out synthetic cases from a seed the training never saw (2021 metrics).

Paper 004 (section 3.1) uses the loss "in addition to the main soft Dice loss" and gives no
weight. At a CPU budget the recipe is scaled down the same way for every weight: fewer
initial filters, smaller patches, fewer cases and epochs (the flags); everything else (the
loss, the two augmented copies, AdamW with a cosine schedule, the confidence ensemble) is
the recipe's, except the learning rate: the paper's 1e-4 learns nothing in a few CPU epochs,
so every weight trains at ``--lr`` (3e-3; 1e-3 reached WT Dice 0.10 in 7 epochs). Fold
``--train-folds`` of the 5-fold split is trained for each weight and its checkpoint
predicts the held-out cases. Each weight runs as a user would run the recipe with it:
weight 0 trains on one copy of each case, the others on two augmented copies (the
second view exists only for the Barlow-Twins loss), so weight 0 costs about half.

    python scripts/study_redundancy.py --out study/redundancy            # ~20 min, 2 cores
    python scripts/study_redundancy.py --out /tmp/s --weights 0,1 --epochs 1 --cases 6
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from submission.evaluation import evaluate_folders
from train.recipe_files import load_config

BRATSKIT = [sys.executable, "-m", "submission"]
REGIONS = ("WT", "TC", "ET")


def bratskit(*args: object) -> None:
    """Run one bratskit command; its output goes to the log, a failure stops the study."""
    subprocess.run([*BRATSKIT, *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def recipe(out: Path, weight: float, opts: argparse.Namespace) -> Path:
    """The recipe at the study's budget with Barlow-Twins weight ``weight``."""
    raw = load_config("segresnet-redundancy").to_dict()
    raw.update(
        name=f"segresnet-redundancy-w{weight:g}",
        epochs=opts.epochs,
        folds=opts.folds,
        num_workers=0,
        seed=opts.seed,
    )
    member = raw["members"][0]
    member["redundancy"] = weight
    member["arch_params"]["init_filters"] = opts.filters
    member["crop"] = list(opts.crop)
    member["optimizer"]["lr"] = opts.lr
    path = out / f"w{weight:g}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", default="0,0.01,0.1,1")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--held-out", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--train-folds", default="0", help="folds trained (of --folds)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--crop", type=int, nargs=3, default=(64, 64, 64))
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    shape = ("--shape", 96, 96, 64)
    train, held = out / "train", out / "held-out"
    if not train.is_dir():
        bratskit("synth", train, "--cases", opts.cases, "--seed", 7, *shape)
    if not held.is_dir():
        bratskit("synth", held, "--cases", opts.held_out, "--seed", 7000, "--first", 500, *shape)
    rows = []
    for weight in (float(w) for w in opts.weights.split(",")):
        name = f"w{weight:g}"
        start = time.perf_counter()
        config = recipe(out, weight, opts)
        bratskit("train", "--data", train, "--config", config, "--out", out / name / "run",
                 "--folds", opts.train_folds, "--device", "cpu",
                 "--cache", out / "cache")  # fmt: skip
        seconds = time.perf_counter() - start
        bratskit("export", out / name / "run", "--out", out / name / "bundle",
                 "--format", "onnx", "--force")  # fmt: skip
        pred = out / name / "pred"
        bratskit("predict", "--input", held, "--output", pred, "--bundle",
                 out / name / "bundle", "--et-threshold", 0)  # fmt: skip
        summary = evaluate_folders(pred, held, "2021").summary()
        val = json.loads((out / name / "run" / "summary.json").read_text())["folds"]
        rows.append(
            {
                "weight": weight,
                "train_s": round(seconds),
                "val": {f: round(sum(v["dice"].values()) / 3, 4) for f, v in val.items()},
                **{r: round(summary[r]["dice"]["mean"], 4) for r in REGIONS},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    (out / "study.json").write_text(json.dumps(rows, indent=1))
    print("\n| weight | held-out WT | TC | ET | mean | fold's validation mean | train s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mean = sum(r[k] for k in REGIONS) / 3
        val = ", ".join(f"{v:.3f}" for v in r["val"].values())
        print(
            f"| {r['weight']:g} | {r['WT']:.3f} | {r['TC']:.3f} | {r['ET']:.3f} | {mean:.3f} | "
            f"{val} | {r['train_s']} |"
        )


if __name__ == "__main__":
    main()
