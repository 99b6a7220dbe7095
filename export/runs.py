"""Training runs as export sees them: members, folds, best checkpoints, inference models.

A run folder (:mod:`train.run`) holds ``config.yaml`` and ``<member>/fold<k>/best.pt``.
Every fold folder of a member that has ``best.pt`` is exported; a fold that
``summary.json`` lists but whose ``best.pt`` is missing is an error, and so is a member
without any. Checkpoints are read with ``torch.load(weights_only=True)``: tensors and
plain data, never arbitrary pickles.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from export.convert import ProbabilityModel, inference_model
from export.errors import RunError
from submission.predict.preprocess import Preprocessing
from submission.predict.sliding_window import SizeRule
from train.config import ConfigError, MemberConfig, TrainConfig
from train.recipe_files import load_config, member_from_dict, recipe_names
from train.trainer import CHECKPOINT_VERSION, build_member_model

log = logging.getLogger(__name__)

RUN_CONFIG, SUMMARY, BEST = "config.yaml", "summary.json", "best.pt"
_FOLD_DIR = re.compile(r"^fold(\d+)$")
#: Builder arguments that do not describe the exported network: a local path of
#: pretrained encoder weights (the checkpoint has them) and activation checkpointing.
_TRAINING_ONLY_PARAMS = ("weights", "checkpoint")
#: Member fields a checkpoint must share with the run's config.yaml.
_IDENTITY = ("key", "stage", "regions", "arch", "arch_params", "crop", "sampling", "channels")


@dataclass(frozen=True)
class FoldCheckpoint:
    """The ``best.pt`` of one fold of one member of a run."""

    run: Path
    member: MemberConfig
    fold: int
    path: Path
    preprocessing: Preprocessing

    @property
    def name(self) -> str:
        """``<member key>/fold<k>``, as log lines name it."""
        return f"{self.member.key}/fold{self.fold}"


@dataclass(frozen=True)
class TrainingRun:
    """A parsed run folder: its resolved recipe and the checkpoints to export."""

    path: Path
    config: TrainConfig
    checkpoints: tuple[FoldCheckpoint, ...]

    @property
    def name(self) -> str:
        """The run folder's name (prefixes member keys that collide across runs)."""
        return self.path.resolve().name

    @property
    def label_scheme(self) -> str:
        """The run's label scheme; ``auto`` resolves to 2021."""
        return "2021" if self.config.label_scheme == "auto" else self.config.label_scheme

    @property
    def localization_window(self) -> tuple[int, int, int] | None:
        """Stage-2 window (paper 002, section 2.3) when the run has a localisation stage."""
        return localization_window(self.config, self.path)


@dataclass(frozen=True)
class LoadedMember:
    """One checkpoint rebuilt as an eval-mode probability model.

    Attributes:
        architecture: ``{"name", "params"}`` that rebuild the exported network.
        epoch: the epoch ``best.pt`` was saved at.
    """

    checkpoint: FoldCheckpoint
    model: ProbabilityModel
    size_rule: SizeRule
    architecture: dict[str, Any]
    epoch: int


def localization_window(config: TrainConfig, run: Path | str = "") -> tuple[int, int, int] | None:
    """The crop of the ``sampling: tumour`` members when ``config`` has a localisation stage.

    Raises:
        RunError: a localisation stage without tumour-sampled members, or with several
            stage-2 crops.
    """
    if not any(m.stage == "localization" for m in config.members):
        return None
    crops = {
        tuple(m.crop)
        for m in config.members
        if m.stage == "segmentation" and m.sampling == "tumour"
    }
    if len(crops) != 1:
        raise RunError(
            f"run {run}: a localization stage needs stage-2 members (sampling: tumour) that "
            f"share one crop, the window they are applied to; found crops {sorted(crops)}"
        )
    return crops.pop()


def read_run(run_dir: Path) -> TrainingRun:
    """Parse a run folder and find every fold checkpoint to export.

    Raises:
        RunError: no folder or config, an unreadable config, a listed fold without
            ``best.pt``, or a member without any ``best.pt``.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / RUN_CONFIG
    if not config_path.is_file():
        raise RunError(
            f"{run_dir} is not a training run: it has no {RUN_CONFIG} "
            "(pass the --out folder of bratskit train)"
        )
    try:
        config = _with_recipe_defaults(load_config(config_path), config_path)
    except ConfigError as exc:
        raise RunError(f"run {run_dir}: cannot use {config_path}: {exc}") from None
    listed = _listed_folds(run_dir)
    checkpoints = []
    for member in config.members:
        found = _member_checkpoints(run_dir, config, member, listed.get(member.key, set()))
        if not found:
            raise RunError(
                f"run {run_dir}: member {member.key!r} has no checkpoint "
                f"({run_dir / member.key}/fold<k>/{BEST} missing): train it first, or "
                "train without it"
            )
        checkpoints.extend(found)
    localization_window(config, run_dir)
    return TrainingRun(run_dir, config, tuple(checkpoints))


def _with_recipe_defaults(config: TrainConfig, config_path: Path) -> TrainConfig:
    """A run trained before recipes had a ``recommended:`` block gets its shipped recipe's,
    which are the defaults export gave such runs then."""
    if config.name not in recipe_names():
        return config
    if "recommended" in yaml.safe_load(config_path.read_text()):
        return config
    log.info(
        "run config %s predates recommended: blocks; using recipe %s's", config_path, config.name
    )
    return replace(config, recommended=load_config(config.name).recommended)


def _listed_folds(run_dir: Path) -> dict[str, set[int]]:
    """Folds per member key that ``summary.json`` records as trained."""
    path = run_dir / SUMMARY
    if not path.is_file():
        return {}
    try:
        members = json.loads(path.read_text()).get("members", {})
        return {key: {int(f) for f in folds} for key, folds in members.items()}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise RunError(f"run {run_dir}: cannot read {path}: {exc}") from None


def _member_checkpoints(
    run_dir: Path, config: TrainConfig, member: MemberConfig, listed: set[int]
) -> list[FoldCheckpoint]:
    member_dir = run_dir / member.key
    folds = set(listed)
    if member_dir.is_dir():
        for child in member_dir.iterdir():
            match = _FOLD_DIR.match(child.name)
            if match and (child / BEST).is_file():
                folds.add(int(match.group(1)))
    checkpoints = []
    for fold in sorted(folds):
        path = member_dir / f"fold{fold}" / BEST
        if not path.is_file():
            raise RunError(
                f"run {run_dir}: {SUMMARY} lists fold {fold} of member {member.key!r} but "
                f"{path} is missing: restore it or re-train that fold"
            )
        checkpoints.append(FoldCheckpoint(run_dir, member, fold, path, config.preprocessing))
    return checkpoints


def read_checkpoint(checkpoint: FoldCheckpoint) -> dict[str, Any]:
    """The checkpoint's payload, checked against the run (weights_only, on the CPU).

    Raises:
        RunError: unreadable, not a bratskit checkpoint, another version, or a member,
            fold or preprocessing that differs from the run's config.
    """
    path = checkpoint.path
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RunError(f"cannot read checkpoint {path}: {type(exc).__name__}: {first}") from None
    keys = payload if isinstance(payload, dict) else {}
    missing = [k for k in ("model", "member", "preprocessing", "fold", "version") if k not in keys]
    if missing:
        raise RunError(f"{path} is not a bratskit checkpoint (no {', '.join(missing)})")
    if payload["version"] != CHECKPOINT_VERSION:
        raise RunError(
            f"{path} has checkpoint version {payload['version']}, this bratskit reads "
            f"{CHECKPOINT_VERSION}: export it with the bratskit that trained it"
        )
    _check_identity(checkpoint, payload)
    return payload


def _check_identity(checkpoint: FoldCheckpoint, payload: dict[str, Any]) -> None:
    path = checkpoint.path
    try:
        saved = member_from_dict(payload["member"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{path}: unreadable member config: {exc}") from None
    expected = checkpoint.member
    differs = [f for f in _IDENTITY if getattr(saved, f) != getattr(expected, f)]
    if differs:
        raise RunError(
            f"{path} was trained as a different member than {RUN_CONFIG} describes "
            f"({', '.join(differs)} differ): keep each run's config with its checkpoints"
        )
    if int(payload["fold"]) != checkpoint.fold:
        raise RunError(f"{path} holds fold {payload['fold']}, not fold {checkpoint.fold}")
    if payload["preprocessing"] != checkpoint.preprocessing.to_dict():
        raise RunError(
            f"{path} was trained with preprocessing {payload['preprocessing']}, the run's "
            f"{RUN_CONFIG} says {checkpoint.preprocessing.to_dict()}"
        )


def load_member(checkpoint: FoldCheckpoint) -> LoadedMember:
    """Rebuild a checkpoint's network and wrap it for export (:func:`inference_model`).

    Raises:
        RunError: see :func:`read_checkpoint`, or weights that do not fit the architecture.
    """
    payload = read_checkpoint(checkpoint)
    member = checkpoint.member
    params = {k: v for k, v in member.model_params().items() if k not in _TRAINING_ONLY_PARAMS}
    try:
        net = build_member_model(replace(member, arch_params=params))
        net.load_state_dict(payload["model"])
    except (RuntimeError, TypeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RunError(
            f"{checkpoint.path}: the weights do not fit {member.arch} {params}: {first}"
        ) from None
    if hasattr(net, "without_projection"):
        params["projection"] = False  # the exported network has no training-only branch
    return LoadedMember(
        checkpoint,
        inference_model(net),
        net.size_rule,
        {"name": member.arch, "params": params},
        int(payload.get("epoch", 0)),
    )
