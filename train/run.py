"""A training run: data, cache, split, every (member, fold) job, and ``summary.json``.

Run folder::

    RUN/config.yaml                 resolved recipe (flags applied)
    RUN/splits.json                 the k-fold split, written once, reused
    RUN/cache/<key>/                preprocessed cases (unless --cache points elsewhere)
    RUN/<member>/fold<k>/           best.pt, last.pt, log.csv, tb/
    RUN/summary.json                best epoch and Dice per fold

``summary.json`` is ``{"recipe", "folds": {"0": {"best_epoch": E, "dice": {"WT", "TC",
"ET"}}}, "members": {key: {"0": {...}}}}``. For a recipe with several members (002), a
fold's Dice per region comes from the member that predicts that region in the final
stage, and ``best_epoch`` maps member keys to their best epochs. Folds run as separate
jobs (``--folds 3``) merge their entries into the same summary.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from train.cache import build_cache, training_cases
from train.config import TrainConfig
from train.distributed import Env, barrier, setup, split_batch, teardown
from train.recipe_files import save_config
from train.splits import fold_cases, load_or_create_splits
from train.trainer import FoldJob, train_fold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequest:
    """What ``bratskit train`` was asked (CLI flags, already parsed)."""

    data: Path
    out: Path
    config: TrainConfig
    folds: tuple[int, ...] | None = None
    regions: tuple[str, ...] | None = None
    device: str = "auto"
    resume: bool = False
    cache: Path | None = None
    progress: bool = True


def train_run(request: RunRequest) -> dict:
    """Train every requested (member, fold); returns the run's summary."""
    env = setup(request.device, request.config.amp)
    try:
        config = _run_config(request, env)
        micro = split_batch(config.batch_size, env.world_size, config.accumulate)
        if env.is_main:
            log.info(
                "batch %d per optimiser step: %d process(es) x %d accumulation step(s) x %d",
                config.batch_size, env.world_size, config.accumulate, micro,
            )  # fmt: skip
        optional = config.optional_channels
        required = tuple(c for c in config.channels if c not in optional)
        cases = training_cases(request.data, required)
        cache_args = (
            cases,
            request.cache or request.out / "cache",
            config.preprocessing,
            config.cache_dtype,
            config.label_scheme,
        )
        channels = {"channels": config.channels, "optional": optional}
        if env.is_main:  # one process builds; the others read it after the barrier
            cached = build_cache(*cache_args, progress=request.progress, **channels)
        barrier(env)
        if not env.is_main:
            cached = build_cache(*cache_args, progress=False, **channels)
        splits = load_or_create_splits(
            request.out, list(cached), config.folds, config.seed, config.test_fraction
        )
        folds = request.folds if request.folds is not None else tuple(range(config.folds))
        for fold in folds:
            train_ids, val_ids = fold_cases(splits, fold)
            for member in config.members:
                job = FoldJob(
                    config,
                    member,
                    fold,
                    [cached[i] for i in train_ids],
                    [cached[i] for i in val_ids],
                    request.out / member.key / f"fold{fold}",
                    request.resume,
                )
                result = train_fold(job, env)
                if env.is_main:
                    _record(request.out, config, member.key, fold, result)
        return read_summary(request.out)
    finally:
        teardown(env)


def _run_config(request: RunRequest, env: Env) -> TrainConfig:
    """The run's config (members filtered by ``--regions``), saved as ``config.yaml``."""
    request.out.mkdir(parents=True, exist_ok=True)
    config = request.config.select(request.regions)
    if env.is_main:
        save_config(config, request.out / "config.yaml")
    return config


def read_summary(out: Path) -> dict:
    """The run's ``summary.json``, or an empty one."""
    path = Path(out) / "summary.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"folds": {}, "members": {}}


def _record(out: Path, config: TrainConfig, key: str, fold: int, result: dict) -> None:
    summary = read_summary(out)
    summary["recipe"] = config.name
    summary.setdefault("members", {}).setdefault(key, {})[str(fold)] = result
    summary["folds"] = _fold_view(config, summary["members"])
    tmp = out / f".summary.json.{os.getpid()}"
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(out / "summary.json")


def _fold_view(config: TrainConfig, members: dict) -> dict:
    """Per fold: each region's Dice from its final-stage member, and the best epoch(s)."""
    final = [m for m in config.members if m.stage == "segmentation"] or list(config.members)
    folds: dict[str, dict] = {}
    for fold in sorted({f for results in members.values() for f in results}, key=int):
        dice, epochs = {}, {}
        for member in final:
            result = members.get(member.key, {}).get(fold)
            if result is None:
                continue
            epochs[member.key] = result["best_epoch"]
            for region in member.regions:
                dice.setdefault(region, result["dice"][region])
        if not dice:
            continue
        best = next(iter(epochs.values())) if len(epochs) == 1 else epochs
        folds[fold] = {"best_epoch": best, "dice": dice}
    return folds
