"""The demo's results table: held-out Dice and HD95 per region (2021 metrics, the
organisers' CaPTk definitions) for the three ensemble methods side by side, each at the ET
minimum volumes 0, 100, 400 and 600 voxels (paper 002, Table 1).

Each ensemble's predictions come from one ``entrypoint.sh`` run with ``--et-threshold 0``;
the thresholded variants run the runtime's own :func:`submission.predict.postprocess.postprocess`
with ``et_threshold=T`` on the regions read back from the written labels (the same result
as predicting with ``--et-threshold T``: the written labels hold the nested regions) and
are written next to them, then every folder is scored with the organisers' 2021 metrics.

``--tuned METHOD,T`` stars the bundle's defaults after ``bratskit tune``; a T outside the
table gets its own rows. When ``PRED/tuned`` holds the prediction with the bundle's own
defaults, its label maps must equal the starred variant's (the equivalence above); the
script fails otherwise.

    python scripts/demo_report.py --pred demo/pred --ref demo/held-out --out demo/report
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from submission.brats import labels_to_regions
from submission.evaluation import evaluate_folders
from submission.io.nifti import read_label_map, write_label_map
from submission.predict.options import PAPER_ENSEMBLES
from submission.predict.postprocess import postprocess

ET_THRESHOLDS = (0, 100, 400, 600)
STATS = ("mean", "std", "median", "q25", "q75")


def thresholded(src: Path, dst: Path, min_voxels: int, scheme: str = "2021") -> Path:
    """Copy of the label maps of ``src`` with the ET minimum volume applied."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.nii.gz")):
        seg, grid = read_label_map(path)
        labels = postprocess(labels_to_regions(seg, scheme), scheme, et_threshold=min_voxels)
        write_label_map(labels, grid, dst / path.name)
    return dst


def same_labels(a: Path, b: Path) -> list[str]:
    """Names of the label maps of ``a`` that differ from (or are missing in) ``b``."""
    differ = []
    for path in sorted(a.glob("*.nii.gz")):
        other = b / path.name
        if not other.is_file() or not np.array_equal(
            read_label_map(path)[0], read_label_map(other)[0]
        ):
            differ.append(path.name)
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pred", type=Path, required=True, help="pred/<ensemble>/ folders")
    parser.add_argument("--ref", type=Path, required=True, help="held-out cases with _seg")
    parser.add_argument("--out", type=Path, required=True, help="tables written here")
    parser.add_argument("--tuned", help="the bundle's defaults, e.g. 'confidence,600'")
    opts = parser.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    tuned = tuple(opts.tuned.split(",")) if opts.tuned else None
    thresholds = sorted({*ET_THRESHOLDS, *([int(tuned[1])] if tuned else [])})
    results = {}
    for method in PAPER_ENSEMBLES:
        for t in thresholds:
            folder = opts.pred / method
            if t:
                folder = thresholded(folder, opts.pred / f"{method}-et{t}", t)
            results[(method, t)] = evaluate_folders(folder, opts.ref, "2021").summary()
    if tuned and (opts.pred / "tuned").is_dir():
        method, t = tuned[0], int(tuned[1])
        variant = opts.pred / (f"{method}-et{t}" if t else method)
        differ = same_labels(opts.pred / "tuned", variant)
        if differ:
            raise SystemExit(f"{opts.pred / 'tuned'} differs from {variant}: {differ}")
    lines = [
        "Held-out cases, 2021 metrics (CaPTk), per region: mean +- std, median [q25, q75]",
        "",
        f"{'region':<6} {'ET thr':>6} | " + " | ".join(f"{m:^35}" for m in PAPER_ENSEMBLES),
    ]
    for metric, fmt in (("dice", "{:.3f}"), ("hd95", "{:.1f}")):
        lines.append(f"-- {metric.upper()}")
        for region in ("WT", "TC", "ET"):
            for t in thresholds:
                cells = []
                for m in PAPER_ENSEMBLES:
                    s = results[(m, t)][region][metric]
                    mean, std, median, q25, q75 = (fmt.format(s[k]) for k in STATS)
                    cell = f"{mean}+-{std} {median} [{q25}, {q75}]"
                    star = "*" if tuned == (m, str(t)) else " "
                    cells.append(f"{cell:>34}{star}")
                lines.append(f"{region:<6} {t:>6} | " + " | ".join(cells))
    if tuned:
        lines.append("* the bundle's defaults after bratskit tune")
    table = "\n".join(lines)
    print(table)
    (opts.out / "ensembles.txt").write_text(table + "\n")
    flat = {
        f"{m}/et{t}": {r: {k: v for k, v in s.items()} for r, s in summary.items()}
        for (m, t), summary in results.items()
    }
    (opts.out / "ensembles.json").write_text(json.dumps(flat, indent=2) + "\n")


if __name__ == "__main__":
    main()
