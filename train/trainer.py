"""Training of one member on one fold: epochs, validation, checkpoints, resume.

Each epoch trains on the fold's training cases, validates on its held-out block through
the runtime's inference code, logs, writes ``last.pt`` and, when the mean Dice improves,
``best.pt``. Checkpoints hold a state dict and plain data only and are read with
``weights_only=True``. ``--resume`` continues after the epoch of ``last.pt`` with the
optimiser, schedule and best score it saved.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from train.cache import CachedCase
from train.config import MemberConfig, OptimConfig, TrainConfig
from train.data import PatchDataset
from train.distributed import Env, barrier, broadcast, split_batch
from train.logs import EpochLog
from train.losses import barlow_twins, get_loss
from train.models import build_model, from_scratch_warning
from train.validation import Validation, autocast, validate

log = logging.getLogger(__name__)
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class FoldJob:
    """What one call of :func:`train_fold` trains and where it writes."""

    config: TrainConfig
    member: MemberConfig
    fold: int
    train_cases: list[CachedCase]
    val_cases: list[CachedCase]
    out_dir: Path
    resume: bool = False


class TrainStep(torch.nn.Module):
    """The model's training forward, wrapped so DistributedDataParallel sees every branch.

    With the redundancy loss (004 §3.1) it returns logits and the projection branch's
    features; otherwise the logits alone.
    """

    def __init__(self, model: torch.nn.Module, projection: bool) -> None:
        super().__init__()
        self.model = model
        self.projection = projection

    def forward(self, x: torch.Tensor):
        if self.projection:
            return self.model.forward_with_projection(x)
        return self.model(x)


def build_member_model(member: MemberConfig, checkpointing: bool = False) -> torch.nn.Module:
    """The member's network, with activation checkpointing when asked and supported."""
    params = member.model_params()
    if checkpointing:
        params["checkpoint"] = True
    model = build_model(member.arch, **params)
    model.check_input((1, params.get("in_channels", 4), *member.crop))
    return model


def make_optimizer(params, cfg: OptimConfig, epochs: int):
    """Adam or AdamW and the recipe's schedule (see :class:`train.config.OptimConfig`)."""
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    optimizer = cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min" if cfg.monitor == "loss" else "max",
            factor=cfg.factor,
            patience=cfg.patience,
            cooldown=cfg.cooldown,
        )
    elif cfg.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    else:
        scheduler = None
    return optimizer, scheduler


def train_fold(job: FoldJob, env: Env) -> dict:
    """Train ``job.member`` on ``job.fold``; returns ``{"best_epoch", "dice"}`` (rank 0's)."""
    cfg, member = job.config, job.member
    job.out_dir.mkdir(parents=True, exist_ok=True)
    # Initial weights from (run seed, fold), like the patches: rerunning a fold starts it
    # from the same network, so two runs of one recipe differ only where kernels do.
    torch.manual_seed(cfg.seed + job.fold)
    model = build_member_model(member, cfg.checkpointing).to(env.device)
    scratch = from_scratch_warning(member.arch, member.arch_params)
    if scratch is not None:
        log.warning("%s fold %d: %s", member.key, job.fold, scratch)
    optimizer, scheduler = make_optimizer(model.parameters(), member.optimizer, cfg.epochs)
    scaler = torch.amp.GradScaler(enabled=env.amp_dtype == torch.float16)
    state = {"epoch": 0, "best": {"epoch": 0, "mean": -1.0, "dice": {}}}
    last = job.out_dir / "last.pt"
    if job.resume and last.exists():
        state = load_training_state(last, model, optimizer, scheduler, scaler)
        log.info("%s fold %d: resuming after epoch %d", member.key, job.fold, state["epoch"])
    step = TrainStep(model, projection=member.redundancy > 0)
    if env.distributed:
        device_ids = [env.device.index] if env.device.type == "cuda" else None
        step = DistributedDataParallel(step, device_ids=device_ids)
    dataset = PatchDataset(
        job.train_cases,
        member,
        cfg.augment,
        seed=cfg.seed + job.fold,
        views=2 if member.redundancy > 0 else 1,
        optional=tuple(
            i for i, c in enumerate(cfg.member_channels(member)) if c in cfg.optional_channels
        ),
        channels=cfg.channel_index(member),
    )
    logger = EpochLog(job.out_dir) if env.is_main else None
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        stats = run_epoch(step, dataset, optimizer, scaler, job, env, epoch)
        lr = optimizer.param_groups[0]["lr"]
        checked = None  # epochs between validations (val_interval) only train
        if epoch % cfg.val_interval == 0 or epoch == cfg.epochs:
            checked = (
                validate(
                    model,
                    job.val_cases,
                    member,
                    env.device,
                    env.amp_dtype,
                    cfg.val_threshold,
                    channels=cfg.channel_index(member),
                )
                if env.is_main
                else None
            )
            checked = broadcast(checked, env)
        _step_schedule(scheduler, checked, member.optimizer.monitor)
        if checked is not None and checked.mean_dice > state["best"]["mean"]:
            state["best"] = {"epoch": epoch, "mean": checked.mean_dice, "dice": checked.dice}
            if env.is_main:
                save_checkpoint(job.out_dir / "best.pt", model, job, epoch, checked.dice)
        state["epoch"] = epoch
        if env.is_main:
            save_training_state(last, model, optimizer, scheduler, scaler, job, state)
            logger.write(_log_row(epoch, stats, checked, member.regions, lr))
            scores = (
                "not validated"
                if checked is None
                else "dice " + " ".join(f"{r} {d:.3f}" for r, d in checked.dice.items())
            )
            best = state["best"]
            log.info(
                "%s fold %d epoch %d/%d loss %.4f %s (best %s) %.1f s",
                member.key,
                job.fold,
                epoch,
                cfg.epochs,
                stats["loss"],
                scores,
                f"{best['mean']:.4f} @{best['epoch']}" if best["epoch"] else "none yet",
                stats["seconds"],
            )
        barrier(env)
    if logger is not None:
        logger.close()
    return {"best_epoch": state["best"]["epoch"], "dice": state["best"]["dice"]}


def run_epoch(
    step, dataset: PatchDataset, optimizer, scaler, job: FoldJob, env: Env, epoch: int
) -> dict[str, float]:
    """One pass over the training cases; returns mean loss and throughput."""
    cfg, member = job.config, job.member
    dataset.set_epoch(epoch)
    loader = _loader(dataset, cfg, env, epoch)
    loss_fn = get_loss(member.loss, member.loss_params)
    step.train()
    optimizer.zero_grad(set_to_none=True)
    total, cases, voxels, start = 0.0, 0, 0, time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"{member.key} f{job.fold} e{epoch}",
        unit="batch",
        leave=False,
        disable=not env.is_main,
    )
    for i, (image, target) in enumerate(bar):
        if image.ndim == 6:  # two views per case (004 §3.1): (B, 2, C, ...) -> (2B, C, ...)
            image, target = image.flatten(0, 1), target.flatten(0, 1)
        image, target = image.to(env.device), target.to(env.device)
        with autocast(env.device, env.amp_dtype):
            out = step(image)
        loss = _loss(out, target, loss_fn, member.redundancy)
        scaler.scale(loss / cfg.accumulate).backward()
        if (i + 1) % cfg.accumulate == 0 or i + 1 == len(loader):
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        total += float(loss.detach()) * image.shape[0]
        cases += image.shape[0]
        voxels += int(np.prod(image.shape[2:])) * image.shape[0]
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    seconds = time.perf_counter() - start
    return {
        "loss": total / max(cases, 1),
        "seconds": seconds,
        "cases_per_s": cases * env.world_size / seconds,
        "voxels_per_s": voxels * env.world_size / seconds,
    }


def _loss(out, target: torch.Tensor, loss_fn, redundancy: float) -> torch.Tensor:
    if redundancy <= 0:
        return loss_fn(out.float(), target)
    logits, z = out
    loss = loss_fn(logits.float(), target)
    z = z.float()
    pairs = [barlow_twins(z[k], z[k + 1]) for k in range(0, z.shape[0], 2)]
    return loss + redundancy * torch.stack(pairs).mean()


def _loader(dataset: PatchDataset, cfg: TrainConfig, env: Env, epoch: int) -> DataLoader:
    if env.distributed:
        sampler = DistributedSampler(dataset, env.world_size, env.rank, seed=cfg.seed)
        sampler.set_epoch(epoch)
    else:
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(
        dataset,
        batch_size=split_batch(cfg.batch_size, env.world_size, cfg.accumulate),
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=env.device.type == "cuda",
        persistent_workers=False,
    )


def _log_row(epoch: int, stats: dict, checked: Validation | None, regions, lr: float) -> dict:
    """One ``log.csv`` row: the same columns every epoch, NaN scores when not validated."""
    dice = dict.fromkeys(regions, math.nan) if checked is None else checked.dice
    return {
        "epoch": epoch,
        **stats,
        **{f"dice_{r}": d for r, d in dice.items()},
        "dice_mean": math.nan if checked is None else checked.mean_dice,
        "val_loss": math.nan if checked is None else checked.loss,
        "lr": lr,
    }


def _step_schedule(scheduler, checked: Validation | None, monitor: str) -> None:
    """One epoch's schedule step; a plateau schedule watches ``monitor``'s value (a
    non-finite value counts as no improvement; it runs only with a validation every
    epoch, :class:`train.config.TrainConfig`)."""
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        value = checked.loss if monitor == "loss" else checked.mean_dice
        worst = math.inf if monitor == "loss" else 0.0
        scheduler.step(value if math.isfinite(value) else worst)
    else:
        scheduler.step()


def _meta(job: FoldJob) -> dict:
    return {
        "version": CHECKPOINT_VERSION,
        "recipe": job.config.name,
        "member": json.loads(json.dumps(dataclasses.asdict(job.member))),  # plain lists
        "preprocessing": job.config.preprocessing.to_dict(),
        "fold": job.fold,
    }


def save_checkpoint(path: Path, model, job: FoldJob, epoch: int, dice: dict) -> None:
    """Model weights and plain metadata, atomically (what ``bratskit export`` reads)."""
    _atomic(path, {"model": model.state_dict(), "epoch": epoch, "dice": dice, **_meta(job)})


def save_training_state(path, model, optimizer, scheduler, scaler, job, state) -> None:
    """Everything ``--resume`` needs after this epoch."""
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "epoch": state["epoch"],
        "best": state["best"],
        **_meta(job),
    }
    _atomic(path, payload)


def load_training_state(path: Path, model, optimizer, scheduler, scaler) -> dict:
    """Restore ``save_training_state``'s file; returns the epoch and best score."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    return {"epoch": int(payload["epoch"]), "best": payload["best"]}


def _atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(payload, tmp)
    tmp.replace(path)
