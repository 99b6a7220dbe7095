"""Training benchmarks: prints figures, asserts nothing (DESIGN.md, "Benchmarks").

Parts (all by default):
  kfold    synthesise cases, train a recipe on every fold, print wall time, each fold's best
           Dice, and training throughput (cases/s, voxels/s) from the fold logs.
  loading  samples per second from the memory-mapped cache versus decoding the gzip NIfTI
           files and preprocessing each time.
  paper    each paper recipe's member networks at the paper's crop and batch size: seconds per
           optimiser step and peak GPU memory with mixed precision (GPU only; on a CPU it
           runs at --paper-scale of the crop to check the code path, not the figures).

    python scripts/bench_train.py --out /tmp/bench              # issue 3: tiny, 20 cases
    python scripts/bench_train.py --parts paper --device cuda
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from submission.brats import labels_to_regions
from submission.io.cases import discover_cases, load_case
from submission.io.nifti import read_label_map
from submission.io.references import label_file
from submission.predict.preprocess import crop, preprocess_case
from submission.predict.tumour_window import extract_window
from submission.workbench.synth import write_synthetic_dataset
from train.augment import augment, random_crop_start
from train.cache import build_cache, training_cases
from train.distributed import resolve_amp, resolve_device
from train.losses import barlow_twins, get_loss
from train.recipe_files import load_config
from train.run import RunRequest, train_run
from train.trainer import TrainStep, build_member_model, make_optimizer
from train.validation import autocast

PAPER_RECIPES = ("resunet-localization", "segresnet-redundancy", "effunet", "effunet-joint")


def bench_kfold(args) -> None:
    data = args.out / "data"
    if not data.is_dir():
        write_synthetic_dataset(data, args.cases, "2021", seed=args.seed, shape=tuple(args.shape))
    run = args.out / f"run-{args.config}"
    config = load_config(args.config, {"epochs": args.epochs})
    start = time.perf_counter()
    summary = train_run(RunRequest(data, run, config, device=args.device, progress=False))
    wall = time.perf_counter() - start
    print(
        f"\n== k-fold: {args.config}, {args.cases} cases {tuple(args.shape)}, "
        f"{config.folds} folds x {config.epochs} epochs, device {args.device}"
    )
    print(f"wall time: {wall:.0f} s ({wall / 60:.1f} min)")
    for fold, entry in sorted(summary["folds"].items(), key=lambda kv: int(kv[0])):
        dice = " ".join(f"{r} {d:.3f}" for r, d in entry["dice"].items())
        print(f"fold {fold}: best epoch {entry['best_epoch']:>3}  {dice}")
    wt = [e["dice"]["WT"] for e in summary["folds"].values() if "WT" in e["dice"]]
    print(f"best WT Dice: min {min(wt):.3f}, mean {statistics.mean(wt):.3f}")
    rows = [r for log in run.glob("*/fold*/log.csv") for r in csv.DictReader(log.open())]
    for key in ("cases_per_s", "voxels_per_s"):
        values = [float(r[key]) for r in rows]
        print(
            f"training throughput {key}: {statistics.median(values):.3g} (median of "
            f"{len(values)} epochs)"
        )


def bench_loading(args) -> None:
    data = args.out / "data"
    cases = training_cases(data)[: args.loading_cases]
    config = load_config(args.config)
    member, rng = config.members[0], np.random.default_rng(0)
    cached = build_cache(cases, args.out / "cache", config.preprocessing, progress=False)

    def sample(image, regions) -> None:
        start = random_crop_start(image.shape[1:], member.crop, rng)
        augment(
            extract_window(image, start, member.crop).astype(np.float32),
            extract_window(regions, start, member.crop),
            config.augment,
            rng,
        )

    t0 = time.perf_counter()
    for case in cached.values():
        sample(case.image(), case.regions())
    from_cache = len(cached) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for case in discover_cases(data).cases[: args.loading_cases]:
        image, info = preprocess_case(load_case(case)[0], config.preprocessing)
        seg, _ = read_label_map(label_file(case))
        sample(image, crop(labels_to_regions(seg, "2021"), info))
    from_gzip = len(cached) / (time.perf_counter() - t0)
    print(f"\n== data loading, {len(cached)} cases, crop {member.crop} + augmentation")
    print(f"from the memory-mapped cache: {from_cache:.1f} samples/s")
    print(
        f"from gzip NIfTI + preprocessing: {from_gzip:.1f} samples/s "
        f"({from_cache / from_gzip:.0f}x slower)"
    )


def bench_paper(args) -> None:
    device = resolve_device(args.device)
    scale = 1.0 if device.type == "cuda" else args.paper_scale
    print(f"\n== paper recipes, one optimiser step, device {device}, crop scale {scale}")
    for name in PAPER_RECIPES:
        config = load_config(name)
        amp = resolve_amp("auto" if device.type == "cuda" else "off", device)
        for member in config.members:
            crop = tuple(_scaled(c, scale, member) for c in member.crop)
            seconds, peak = _step_time(member, config.batch_size, crop, device, amp, args.steps)
            print(
                f"{name:22s} {member.key:10s} batch {config.batch_size} crop {crop} amp "
                f"{amp}: {seconds:.3f} s/step, peak {peak}"
            )


def _scaled(size: int, scale: float, member) -> int:
    if size == member.arch_params.get("input_depth"):  # effunet's fixed slice count
        return size
    return max(32, int(round(size * scale / 32)) * 32)


def _step_time(member, batch, crop, device, amp, steps) -> tuple[float, str]:
    model = build_member_model(member).to(device)
    step = TrainStep(model, projection=member.redundancy > 0)
    optimizer, _ = make_optimizer(model.parameters(), member.optimizer, 1)
    loss_fn = get_loss(member.loss, member.loss_params)
    views = 2 if member.redundancy > 0 else 1
    channels = 4 if member.channels is None else len(member.channels)  # effunet: one each
    x = torch.randn(batch * views, channels, *crop, device=device)
    y = (torch.rand(batch * views, len(member.regions), *crop, device=device) > 0.9).float()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        with autocast(device, amp):
            out = step(x)
        logits, z = out if isinstance(out, tuple) else (out, None)
        loss = loss_fn(logits.float(), y)
        if z is not None:
            loss = loss + member.redundancy * barlow_twins(z[0].float(), z[1].float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    peak = (
        f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB GPU"
        if device.type == "cuda"
        else "n/a on CPU"
    )
    return statistics.median(times[1:]), peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/bratskit-bench"))
    parser.add_argument("--parts", default="kfold,loading,paper")
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--loading-cases", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--paper-scale", type=float, default=0.25)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.out.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    if "kfold" in parts:
        bench_kfold(args)
    if "loading" in parts:
        if not (args.out / "data").is_dir():
            write_synthetic_dataset(
                args.out / "data", args.cases, "2021", args.seed, tuple(args.shape)
            )
        bench_loading(args)
    if "paper" in parts:
        bench_paper(args)
    print(json.dumps({"out": str(args.out)}))


if __name__ == "__main__":
    main()
