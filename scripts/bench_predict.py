"""Benchmark of ``bratskit predict``: seconds per stage per case and peak memory.

Builds a 5-fold SegResNet bundle the way a team with models trained elsewhere would:
five MONAI-style SegResNet networks (paper 004's architecture, ``--filters`` initial
filters, seeded random weights: speed does not depend on the values) exported to ONNX
with logits outputs and imported with ``bratskit export --onnx``; TorchScript files of
the same networks are added for the TorchScript backend. Then every variant (backend x
device x TTA) predicts the real case ``../shared/data/real/BraTS-GLI-00001-000``
(240 x 240 x 155) in its own process, so each peak RSS is its own, and a table is
printed. GPU memory is the peak the NVIDIA driver reports for the process.

    python scripts/bench_predict.py --out /tmp/bench-predict
    python scripts/bench_predict.py --out /tmp/bp --filters 32 --devices cuda --tta off,on

Needs torch (to build the networks) and export/; the predictions themselves run on the
runtime alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_CASE = ROOT.parent / "shared" / "data" / "real" / "BraTS-GLI-00001-000"
REGIONS = "TC,WT,ET"  # MONAI's BraTS tutorial order, which the import maps


def build_bundles(out: Path, filters: int, folds: int) -> tuple[Path, Path]:
    """An imported ONNX bundle, and a copy with TorchScript files added."""
    import torch

    from export.convert import export_onnx, export_torchscript
    from submission.predict.bundle import read_manifest, write_manifest
    from submission.predict.bundle_files import sha256_file
    from submission.predict.members import ModelFile
    from train.models import build_model

    onnx_bundle, both = out / f"bundle-segresnet{filters}", out / f"bundle-segresnet{filters}-ts"
    if both.is_dir():
        return onnx_bundle, both
    models_dir = out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 4, 64, 64, 64)
    files, nets = [], []
    for fold in range(folds):
        torch.manual_seed(fold)
        net = build_model("segresnet", init_filters=filters, out_channels=3)
        net = net.without_projection().eval()
        path = models_dir / f"fold{fold}.onnx"
        export_onnx(net, example, path)
        files.append(str(path))
        nets.append(net)
    shutil.rmtree(onnx_bundle, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "submission",
            "export",
            "--onnx",
            *files,
            "--regions",
            REGIONS,
            "--outputs",
            "logits",
            "--divisor",
            "8",
            "--out",
            str(onnx_bundle),
        ],
        check=True,
    )
    shutil.copytree(onnx_bundle, both)
    manifest = read_manifest(both)
    members = []
    for member, net in zip(manifest.members, nets):
        ts = both / f"{member.key}-fold{member.fold}.pt"
        export_torchscript(net, example, ts)
        files = {**member.files, "torchscript": ModelFile(ts.name, sha256_file(ts))}
        members.append(replace(member, files=files))
    write_manifest(both, replace(manifest, members=tuple(members)))
    return onnx_bundle, both


class GpuPeak(threading.Thread):
    """Polls nvidia-smi for this process's GPU memory; ``peak_mb`` is the maximum seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb, self.stop = 0, threading.Event()

    def run(self) -> None:
        import os

        while not self.stop.is_set():
            out = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-compute-apps=pid,used_memory",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
            ).stdout
            for line in out.splitlines():
                pid, mb = (s.strip() for s in line.split(","))
                if pid == str(os.getpid()):
                    self.peak_mb = max(self.peak_mb, int(mb))
            time.sleep(0.2)


def child(args: argparse.Namespace) -> None:
    """One variant, in this process: prints one JSON line."""
    from submission.predict.engine import Engine
    from submission.predict.options import PredictOptions, RuntimeOptions
    from submission.predict.runner import run_cases

    gpu = GpuPeak() if args.device == "cuda" else None
    if gpu:
        gpu.start()
    start = time.perf_counter()
    engine = Engine(
        args.bundle,
        PredictOptions(tta=args.tta),
        RuntimeOptions(args.backend, args.device, args.precision),
    )
    load = time.perf_counter() - start
    out = Path(args.output)
    shutil.rmtree(out, ignore_errors=True)
    report = run_cases(args.input, out, engine)
    if gpu:
        gpu.stop.set()
        gpu.join()
    print(
        json.dumps(
            {
                "ok": report.ok,
                "load_s": load,
                "seconds": report.seconds,
                "timings": report.timings,
                "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                "gpu_peak_gb": gpu.peak_mb / 1024 if gpu else None,
                "precision": engine.precision,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--backends", default="openvino,onnx,torchscript")
    parser.add_argument("--devices", default="cpu")
    parser.add_argument("--tta", default="off", help="off, on or off,on")
    parser.add_argument("--precisions", default="fp32", help="fp32, bf16, fp16 (comma list)")
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--case", type=Path, default=REAL_CASE)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.tta = args.tta == "on"
        child(args)
        return
    if not args.case.is_dir():
        sys.exit(f"benchmark case {args.case} not found: pass --case DIR")
    onnx_bundle, ts_bundle = build_bundles(args.out, args.filters, args.folds)
    inputs = args.out / "input"
    shutil.rmtree(inputs, ignore_errors=True)
    shutil.copytree(args.case, inputs / args.case.name)
    rows = []
    for device in args.devices.split(","):
        for backend in args.backends.split(","):
            if backend == "openvino" and device == "cuda":
                continue
            for tta in args.tta.split(","):
                for precision in args.precisions.split(","):
                    if not _supported(backend, device, precision):
                        continue
                    result = run_variant(
                        args, inputs, onnx_bundle, ts_bundle, backend, device, tta, precision
                    )
                    if result is not None:
                        rows.append((backend, device, tta, result))
    print_table(rows, args)


def _supported(backend: str, device: str, precision: str) -> bool:
    if device == "cpu":
        return precision == "fp32" or (precision == "bf16" and backend != "onnx")
    return precision != "bf16" or backend == "torchscript"


def run_variant(args, inputs, onnx_bundle, ts_bundle, backend, device, tta, precision):
    """One variant in a child process; its result dict, with label agreement added."""
    import nibabel as nib
    import numpy as np

    bundle = ts_bundle if backend == "torchscript" else onnx_bundle
    output = args.out / f"pred-{backend}-{device}-{precision}-tta{tta}"
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--out",
        str(args.out),
        "--bundle",
        str(bundle),
        "--input",
        str(inputs),
        "--output",
        str(output),
        "--backend",
        backend,
        "--device",
        device,
        "--tta",
        tta,
        "--precision",
        precision,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{backend}/{device}/{precision}/tta {tta}: failed\n{done.stderr[-2000:]}")
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Agreement with the first variant run (the reference), voxel by voxel.
    labels = [np.asarray(nib.load(p).dataobj) for p in sorted(output.glob("*.nii.gz"))]
    reference = getattr(run_variant, "reference", None)
    if reference is None:
        run_variant.reference = labels
        result["agreement"] = 1.0
    else:
        result["agreement"] = float(np.mean([np.mean(a == b) for a, b in zip(labels, reference)]))
    return result


def print_table(rows, args) -> None:
    print(
        f"\n{args.folds}-fold SegResNet-{args.filters}, case {args.case.name}, "
        "seconds per case end to end (read to written) and per stage; agree: voxels with "
        "the first row's label"
    )
    stages = ["read", "preprocess", "localise", "members", "ensemble", "postprocess", "write"]
    head = (
        f"{'backend':<12}{'device':<7}{'tta':<5}{'prec':<6}{'total':>7}"
        + "".join(f"{s[:8]:>10}" for s in stages)
        + f"{'RSS GB':>9}{'GPU GB':>9}{'load s':>8}{'agree':>8}"
    )
    print(head)
    for backend, device, tta, r in rows:
        for case, seconds in r["seconds"].items():
            t = r["timings"][case]
            gpu = "-" if r["gpu_peak_gb"] is None else f"{r['gpu_peak_gb']:.2f}"
            print(
                f"{backend:<12}{device:<7}{tta:<5}{r['precision']:<6}{seconds:>7.1f}"
                + "".join(f"{t.get(s, 0):>10.2f}" for s in stages)
                + f"{r['peak_rss_gb']:>9.2f}{gpu:>9}{r['load_s']:>8.1f}"
                + f"{100 * r['agreement']:>7.2f}%"
            )


if __name__ == "__main__":
    main()
