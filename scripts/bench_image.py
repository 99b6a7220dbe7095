"""Benchmark of the submission image: its size, and its cold start as the organisers run it.

Cold start is the time from ``docker run`` to the first ``<case-id>.nii.gz`` in the output
folder, less the case's inference (stage-1 localisation, the members and the ensemble,
read from the case's log line): container creation, Python and library imports, bundle
verification, session creation, reading, preprocessing, post-processing and writing.
Each run starts a new container on one case with the organisers' flags (no network,
read-only input, 16 GB, 4 GB shared memory, uid 4242).

    python scripts/bench_image.py --image bratskit:latest     # the real 2023 case
    python scripts/bench_image.py --image IMAGE --case DIR --runs 5 -- --labels 2023
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_CASE = ROOT.parent / "shared" / "data" / "real" / "BraTS-GLI-00001-000"
CASE_LINE = re.compile(
    r"ok (?P<id>\S+) (?P<total>[\d.]+) s \(read (?P<read>[\d.]+), preprocess [\d.]+, "
    r"localise (?P<localise>[\d.]+), members (?P<members>[\d.]+), "
    r"ensemble (?P<ensemble>[\d.]+),"
)
UID = 4242


def image_size_gb(image: str) -> float:
    raw = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(raw)[0]["Size"] / 1e9


def one_run(image: str, case_dir: Path, args: list[str]) -> dict[str, float]:
    """Start a container on the one case; seconds to the first output and inference."""
    with tempfile.TemporaryDirectory(prefix="bratskit-bench-") as tmp:
        inp, out = Path(tmp) / "input", Path(tmp) / "output"
        shutil.copytree(case_dir, inp / case_dir.name)
        out.mkdir()
        os.chown(out, UID, UID)
        cmd = ["docker", "run", "--rm", "--network", "none", "--user", f"{UID}:{UID}"]
        cmd += ["--memory", "16g", "--shm-size", "4g", "-v", f"{inp}:/input:ro"]
        cmd += ["-v", f"{out}:/output", image, *args]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = None
        while proc.poll() is None and first is None:
            if any(out.glob("*.nii.gz")):
                first = time.perf_counter() - start
            time.sleep(0.02)
        stdout, stderr = proc.communicate()
        first = first if first is not None else time.perf_counter() - start
        match = CASE_LINE.search(stderr)
        if proc.returncode != 0 or match is None:
            raise SystemExit(f"the container failed (exit {proc.returncode}):\n{stderr[-3000:]}")
        inference = sum(float(match[k]) for k in ("localise", "members", "ensemble"))
        return {
            "to_first_output": first,
            "inference": inference,
            "cold_start": first - inference,
            "case_total": float(match["total"]),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="bratskit:latest")
    parser.add_argument("--case", type=Path, default=REAL_CASE, help="One case folder.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("args", nargs="*", help="More arguments for the image.")
    opts = parser.parse_args()
    size = image_size_gb(opts.image)
    print(f"image {opts.image}: {size:.2f} GB (docker image inspect .Size, uncompressed)")
    runs = [one_run(opts.image, opts.case, opts.args) for _ in range(opts.runs)]
    print(f"{'run':>4} {'to first output s':>18} {'inference s':>12} {'cold start s':>13}")
    for i, r in enumerate(runs, 1):
        print(
            f"{i:>4} {r['to_first_output']:>18.2f} {r['inference']:>12.2f} {r['cold_start']:>13.2f}"
        )
    median = statistics.median(r["cold_start"] for r in runs)
    print(f"cold start, median of {len(runs)}: {median:.2f} s (target <= 10 s)")


if __name__ == "__main__":
    main()
