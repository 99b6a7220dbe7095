"""Benchmark: a real BraTS case through a 5-fold nnU-Net v2 model, nnU-Net's own
``nnUNetv2_predict_from_modelfolder`` against ``bratskit predict`` of the bundle
``bratskit import nnunet`` makes of the same results folder (issue 15, must show 2).

    python scripts/bench_nnunet.py --out /tmp/bench-nnunet
    python scripts/bench_nnunet.py --out /tmp/bn --features 32,320 --folds 0,1,2,3,4

The model is made by nnU-Net's own code, as the tests make theirs
(:mod:`tests.export.nnunet_fixtures`): synthetic 240 x 240 x 155 BraTS 2021 cases
converted as Dataset137 converts them, planned by nnU-Net's fingerprint extractor and
``ExperimentPlanner`` (its 3d_fullres patch kept), the features per stage narrowed to
``--features`` so that 2 CPU cores finish (the planner's 32..320 takes hours with
mirroring), and fold checkpoints with random weights written by ``nnUNetTrainer``.
Each prediction runs in its own process, one after another, with every core; the table
gives wall seconds, the peak resident memory of the whole process tree (polled every
0.1 s from /proc), and the share of voxels whose BraTS labels equal nnU-Net's, with and
without mirroring (nnU-Net's ``--disable_tta``, bratskit's ``--tta``); then the seconds
of one sliding-window evaluation in torch, ONNX Runtime and OpenVINO (fp32, bf16).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from submission.brats import modality_filename  # noqa: E402
from submission.workbench.synth import write_synthetic_dataset  # noqa: E402
from tests.export import nnunet_fixtures as fx  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "real" / "BraTS-GLI-00001-000"
BIN = Path(sys.executable).parent


def make_results(root: Path, features: tuple[int, int], folds: tuple[int, ...]) -> Path:
    """A region-based (Dataset137) results folder of ``folds`` planned on 240 x 240 x 155."""
    cases = root / "cases"
    ids = write_synthetic_dataset(cases, 4, layout="2021", seed=1, shape=(240, 240, 155))
    with fx.nnunet_environment(root / "nnunet") as env:
        dataset = fx.write_raw_dataset(env / "raw" / "Dataset901_Bench", cases, ids, True)
        plans = fx.plan_dataset(901, patch=None, features=features)
        dataset_json = json.loads((dataset / "dataset.json").read_text())
        return fx.write_results(plans, dataset_json, folds)


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (from /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(rss.get(p, 0) for p in tree)


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak GB of the process tree) of a command that must succeed."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    output = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    return seconds, peak / 1e9


def nnunet_labels(folder: Path, case: str) -> np.ndarray:
    """nnU-Net's output in BraTS 2021 labels (Dataset137's conversion back)."""
    from nnunetv2.dataset_conversion.Dataset137_BraTS21 import convert_labels_back_to_BraTS

    seg = np.asarray(nib.load(folder / f"{case}.nii.gz").dataobj).astype(np.uint8)
    return convert_labels_back_to_BraTS(seg)


def time_windows(results: Path, bundle: Path, repeats: int = 3) -> list[tuple[str, float]]:
    """Seconds per sliding-window evaluation of fold 0 on one plans-sized patch (mean of
    ``repeats`` after a warm-up): torch as nnU-Net runs it, ONNX Runtime, OpenVINO fp32
    and bf16. What both predictors spend nearly all their time in."""
    import onnxruntime as ort
    import openvino as ov
    import torch

    from export.nnunet_folder import read_results
    from export.nnunet_network import build_network

    read = read_results(results, (0,), "final")
    network = build_network(read, read.folds[0])  # what the import exported, in torch
    shape = (1, len(fx.CHANNEL_MODALITIES), *read.configuration_manager.patch_size)
    patch = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    onnx_file = str(bundle / "nnunet" / "fold0.onnx")
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    runs = {"torch (nnU-Net)": lambda: network(torch.from_numpy(patch))}
    runs["onnxruntime fp32"] = lambda: session.run(None, {name: patch})
    for precision in ("f32", "bf16"):
        model = ov.Core().compile_model(onnx_file, "CPU", {"INFERENCE_PRECISION_HINT": precision})
        runs[f"openvino {precision}"] = lambda model=model: model([patch])
    out = []
    with torch.no_grad():
        for label, run in runs.items():
            run()
            start = time.perf_counter()
            for _ in range(repeats):
                run()
            out.append((label, (time.perf_counter() - start) / repeats))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Work folder (emptied).")
    parser.add_argument("--case", type=Path, default=REAL, help="A BraTS 2023 case folder.")
    parser.add_argument("--features", default="8,80", help="First and most features [8,80].")
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--backends", default="openvino,onnx", help="bratskit backends.")
    parser.add_argument("--tta", default="off,on", help="Mirroring: off, on or both.")
    args = parser.parse_args()
    features = tuple(int(v) for v in args.features.split(","))
    folds = tuple(int(v) for v in args.folds.split(","))
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    results = make_results(args.out, features, folds)
    bundle = args.out / "bundle"
    subprocess.run(
        [str(BIN / "bratskit"), "import", "nnunet", str(results), "--out", str(bundle)],
        check=True,
        capture_output=True,
    )
    case = args.case.name
    bk_in, nn_in = args.out / "in-bratskit" / case, args.out / "in-nnunet"
    bk_in.mkdir(parents=True)
    nn_in.mkdir()
    for i, modality in enumerate(fx.CHANNEL_MODALITIES):  # Dataset137's channel order
        source = args.case / modality_filename(case, modality, "2023")
        shutil.copy(source, bk_in / source.name)
        shutil.copy(source, nn_in / f"{case}_{i:04d}.nii.gz")
    rows = []
    for tta in args.tta.split(","):
        nn_out = args.out / f"nnunet-tta-{tta}"
        cmd = [str(BIN / "nnUNetv2_predict_from_modelfolder"), "-i", str(nn_in)]
        cmd += ["-o", str(nn_out), "-m", str(results), "-f", *map(str, folds), "-device", "cpu"]
        cmd += ["-npp", "1", "-nps", "1"] + (["--disable_tta"] if tta == "off" else [])
        seconds, peak = measure(cmd)
        reference = nnunet_labels(nn_out, case)
        rows.append(("nnUNetv2_predict", "torch", tta, seconds, peak, 1.0))
        for backend in args.backends.split(","):
            out = args.out / f"bratskit-{backend}-tta-{tta}"
            cmd = [str(BIN / "bratskit"), "predict", "--input", str(bk_in.parent)]
            cmd += ["--output", str(out), "--bundle", str(bundle), "--backend", backend]
            seconds, peak = measure(cmd + (["--tta"] if tta == "on" else []))
            labels = np.asarray(nib.load(out / f"{case}.nii.gz").dataobj)
            rows.append(
                ("bratskit predict", backend, tta, seconds, peak, np.mean(labels == reference))
            )
    patch = json.loads((results / "plans.json").read_text())["configurations"]["3d_fullres"]
    print(f"\n{case}, {len(folds)} folds, features {features}, patch {patch['patch_size']}")
    print(
        "| predictor | backend | mirroring | seconds | peak RSS | speed-up | labels = nnU-Net's |"
    )
    print("|---|---|---|---|---|---|---|")
    base = {tta: s for name, _, tta, s, _, _ in rows if name == "nnUNetv2_predict"}
    for name, backend, tta, seconds, peak, agree in rows:
        print(
            f"| {name} | {backend} | {tta} | {seconds:.1f} | {peak:.2f} GB | "
            f"{base[tta] / seconds:.2f}x | {agree:.4%} |"
        )
    print(f"\none window {patch['patch_size']} of fold 0, seconds (mean of 3 after a warm-up):")
    for label, seconds in time_windows(results, bundle):
        print(f"  {label:<18} {seconds:.2f}")


if __name__ == "__main__":
    main()
