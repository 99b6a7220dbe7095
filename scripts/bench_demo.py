"""The demo's margin on several training seeds (issue 12): prints figures, asserts nothing.

Runs ``scripts/demo.sh`` once per training seed (the held-out cases always come from
``--held-out-seed``, which no training run sees) and prints, per seed, each fold's
best-checkpoint WT Dice (``RUN/summary.json``), the held-out Dice of the tuned 5-fold
ensemble (``report/tuned/summary.json``) and the demo's wall time, against the targets:
every fold WT >= 0.80, held-out WT >= 0.85, the demo within 15 minutes.

    python scripts/bench_demo.py --out /tmp/bench-demo                 # seeds 1, 2, 3 (~40 min)
    python scripts/bench_demo.py --out /tmp/bench-demo --seeds 4 --reuse  # table of finished runs

Each demo takes both CPU cores for about 13 minutes; run nothing else beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLD_WT, HELD_OUT_WT, DEMO_MINUTES = 0.80, 0.85, 15.0


def run_demo(folder: Path, seed: int, held_out_seed: int, config: str | None) -> float:
    """Run the demo into ``folder``; returns its wall time in seconds."""
    env = {
        **os.environ,
        "BIN": str(Path(sys.executable).parent),
        "DEMO": str(folder),
        "TRAIN_SEED": str(seed),
        "HELD_OUT_SEED": str(held_out_seed),
    }
    if config:
        env["CONFIG"] = config
    log = folder.with_suffix(".log")
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(
            ["bash", "scripts/demo.sh"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"demo with training seed {seed} failed (exit {code}): see {log}")
    (folder / "bench_seconds.txt").write_text(f"{seconds:.1f}\n")
    return seconds


def figures(folder: Path) -> dict:
    """Folds' best WT, held-out mean Dice per region and wall time of a finished demo."""
    folds = json.loads((folder / "run" / "summary.json").read_text())["folds"]
    held = json.loads((folder / "report" / "tuned" / "summary.json").read_text())["summary"]
    seconds = folder / "bench_seconds.txt"
    return {
        "folds_wt": [folds[k]["dice"]["WT"] for k in sorted(folds, key=int)],
        "held_out": {region: held[region]["dice"]["mean"] for region in ("WT", "TC", "ET")},
        "minutes": float(seconds.read_text()) / 60 if seconds.exists() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="one demo folder per seed here")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--held-out-seed", type=int, default=1000)
    parser.add_argument("--config", help="recipe name or YAML file (default: the demo's tiny)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="tabulate demos already in --out instead of running them",
    )
    args = parser.parse_args()
    if args.held_out_seed in args.seeds:
        parser.error("the held-out seed must be one no training run sees")
    args.out.mkdir(parents=True, exist_ok=True)

    print(
        f"targets: every fold WT >= {FOLD_WT:.2f}, held-out WT >= {HELD_OUT_WT:.2f}, "
        f"demo <= {DEMO_MINUTES:.0f} min; held-out seed {args.held_out_seed}"
    )
    print(
        f"{'seed':>4}  {'folds: best WT':<36} {'held-out WT':>11} {'TC':>6} {'ET':>6} "
        f"{'minutes':>7}  verdict"
    )
    for seed in args.seeds:
        folder = args.out / f"seed-{seed}"
        if not args.reuse:
            run_demo(folder, seed, args.held_out_seed, args.config)
        got = figures(folder)
        held, minutes = got["held_out"], got["minutes"]
        met = (
            min(got["folds_wt"]) >= FOLD_WT
            and held["WT"] >= HELD_OUT_WT
            and (minutes is None or minutes <= DEMO_MINUTES)
        )
        folds = ", ".join(f"{wt:.3f}" for wt in got["folds_wt"])
        shown = "-" if minutes is None else f"{minutes:.1f}"
        print(
            f"{seed:>4}  {folds:<36} {held['WT']:>11.3f} {held['TC']:>6.3f} {held['ET']:>6.3f} "
            f"{shown:>7}  {'met' if met else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
