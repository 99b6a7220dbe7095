"""Training recipes: frozen dataclasses loaded from YAML, CLI overrides, saved with the run.

A recipe names the method it follows (``resunet-localization`` is paper 002,
``segresnet-redundancy`` paper 004, ``effunet`` paper 003, ``tiny`` the small CPU recipe)
and lists one or more *members*: a network trained on its own, with its regions, loss,
optimiser, schedule and crop. Paper 002 trains three single-region models per stage, so
its recipe has four members (stage-1 WT, stage-2 WT/TC/ET); the other papers have one.
Its ``recommended:`` block holds the ensemble and post-processing defaults its paper
gives; they travel in the run's ``config.yaml`` into the bundle's manifest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from submission.brats import TUMOUR_REGIONS
from submission.exit_codes import BadValueError
from submission.predict.bundle import Recommended
from submission.predict.members import STAGES
from submission.predict.options import RECOMMENDABLE, check_option
from submission.predict.preprocess import Preprocessing
from train.augment import AugmentConfig

RECIPE_DIR = Path(__file__).parent / "recipes"
SAMPLINGS = ("random", "tumour")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("none", "plateau", "cosine")
AMP_MODES = ("auto", "off", "bf16", "fp16")


class ConfigError(ValueError, BadValueError):
    """A recipe file or override that cannot be used; the message names the bad key."""


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule.

    ``plateau`` is ReduceLROnPlateau on the validation mean Dice (002 §3.1: factor 0.4,
    patience 2, cooldown 2; 003 §2.5: factor 0.1, patience 50); ``cosine`` anneals to 0 over
    the run's epochs (004 §3.3).
    """

    name: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: str = "none"
    factor: float = 0.4
    patience: int = 2
    cooldown: int = 2

    def __post_init__(self) -> None:
        _choice("optimizer.name", self.name, OPTIMIZERS)
        _choice("optimizer.schedule", self.schedule, SCHEDULES)
        if self.lr <= 0:
            raise ConfigError(f"optimizer.lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class MemberConfig:
    """One network of a recipe and how it is trained.

    Attributes:
        key: folder name of this member in the run (``seg``, ``stage2-et``...).
        stage: ``segmentation``, or ``localization`` for 002's stage-1 WT model whose
            prediction places the stage-2 crop.
        regions: what it predicts, from WT, TC, ET, in output-channel order.
        arch: model name in :data:`train.models.MODELS`.
        arch_params: keyword arguments of the model builder.
        loss: name in :data:`train.losses.LOSSES`.
        redundancy: weight of the Barlow-Twins loss (004 §3.1); 0 disables the second view.
        crop: training patch (D, H, W).
        sampling: ``random`` windows, or ``tumour``-centred ones with ``jitter`` (002 §2.3).
    """

    key: str
    regions: tuple[str, ...]
    arch: str
    arch_params: dict[str, Any] = field(default_factory=dict)
    stage: str = "segmentation"
    loss: str = "bce_dice"
    redundancy: float = 0.0
    optimizer: OptimConfig = field(default_factory=OptimConfig)
    crop: tuple[int, int, int] = (128, 128, 128)
    sampling: str = "random"
    jitter: int = 0

    def __post_init__(self) -> None:
        _choice(f"{self.key}.stage", self.stage, STAGES)
        _choice(f"{self.key}.sampling", self.sampling, SAMPLINGS)
        bad = [r for r in self.regions if r not in TUMOUR_REGIONS]
        if bad or not self.regions:
            raise ConfigError(f"{self.key}.regions must be from {TUMOUR_REGIONS}, got {bad}")
        if len(self.crop) != 3 or min(self.crop) < 1:
            raise ConfigError(f"{self.key}.crop must be three positive sizes, got {self.crop}")


@dataclass(frozen=True)
class TrainConfig:
    """A whole recipe, resolved.

    Attributes:
        amp: ``auto`` (bf16 on GPUs that have it, else fp16; off on CPU), ``bf16``,
            ``fp16`` or ``off``.
        accumulate: gradient-accumulation steps per optimiser step.
        checkpointing: activation checkpointing where the model supports it.
        val_threshold: probability above which a voxel counts in validation Dice.
        cache_dtype: ``float16`` halves the cache (53 GB for BraTS 2021) at about 1e-3
            relative error on z-scored intensities; ``float32`` is exact.
        recommended: ensemble and post-processing defaults written into the bundle;
            without a ``recommended:`` block, :class:`Recommended`'s (the mean, no ET
            threshold).
    """

    name: str
    members: tuple[MemberConfig, ...]
    description: str = ""
    epochs: int = 50
    batch_size: int = 1
    folds: int = 5
    seed: int = 0
    test_fraction: float = 0.0
    label_scheme: str = "auto"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    amp: str = "auto"
    accumulate: int = 1
    checkpointing: bool = False
    num_workers: int = 2
    val_threshold: float = 0.5
    cache_dtype: str = "float16"
    recommended: Recommended = field(default_factory=Recommended)

    def __post_init__(self) -> None:
        _choice("amp", self.amp, AMP_MODES)
        _choice("cache_dtype", self.cache_dtype, ("float16", "float32"))
        if self.epochs < 1 or self.batch_size < 1 or self.accumulate < 1:
            raise ConfigError("epochs, batch_size and accumulate must be >= 1")
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2 for cross-validation, got {self.folds}")
        keys = [m.key for m in self.members]
        if not keys or len(set(keys)) != len(keys):
            raise ConfigError(f"members need unique keys, got {keys}")
        _check_recommended(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written to ``config.yaml`` in the run."""
        return _plain(dataclasses.asdict(self))

    def select(self, regions: tuple[str, ...] | None) -> TrainConfig:
        """Only the members predicting any of ``regions`` (plus the localisation stage)."""
        if regions is None:
            return self
        kept = tuple(
            m for m in self.members if m.stage == "localization" or set(m.regions) & set(regions)
        )
        if not kept:
            raise ConfigError(f"no member of recipe {self.name!r} predicts {regions}")
        return dataclasses.replace(self, members=kept)


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``train/recipes``."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_config(name_or_file: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a shipped recipe by name, or a YAML file, then apply top-level overrides.

    Raises:
        ConfigError: unknown recipe, unreadable YAML, unknown or invalid keys.
    """
    path = Path(name_or_file)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_file}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown recipe {name_or_file!r}; choose one of {', '.join(recipe_names())} "
                "or give a YAML file"
            )
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {path} must be a YAML mapping")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from plain data (a parsed YAML file or a checkpoint)."""
    raw = dict(raw)
    if raw.get("amp") is False:  # YAML 1.1 reads a bare `off` as false
        raw["amp"] = "off"
    try:
        members = tuple(member_from_dict(m) for m in raw.pop("members"))
        raw["preprocessing"] = Preprocessing(**raw.get("preprocessing", {}))
        raw["augment"] = AugmentConfig(**raw.get("augment", {}))
        raw["recommended"] = _build(Recommended, raw.get("recommended") or {})
        return _build(TrainConfig, raw, members=members)
    except KeyError as exc:
        raise ConfigError(f"recipe lacks required key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid recipe: {exc}") from None


def save_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved config as YAML."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def member_from_dict(raw: dict[str, Any]) -> MemberConfig:
    """Build a :class:`MemberConfig` from a recipe entry or a checkpoint's ``member`` dict.

    Raises:
        ConfigError: unknown or invalid keys. A missing required key raises KeyError.
    """
    raw = dict(raw)
    raw["regions"] = tuple(r.upper() for r in raw["regions"])
    raw["crop"] = tuple(raw.get("crop", (128, 128, 128)))
    raw["optimizer"] = _build(OptimConfig, raw.get("optimizer", {}))
    return _build(MemberConfig, raw)


def _build(cls, raw: dict[str, Any], **extra):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in {cls.__name__}")
    return cls(**{**raw, **extra})


def _check_recommended(config: TrainConfig) -> None:
    """The values ``bratskit predict`` would refuse, found when the recipe loads, by the
    runtime's own checks; top-k against the members one region gets from all folds."""
    seg = [m for m in config.members if m.stage == "segmentation"]
    fewest = config.folds * min(
        (sum(r in m.regions for m in seg) for r in TUMOUR_REGIONS), default=0
    )
    for name in RECOMMENDABLE:
        try:
            check_option(name, getattr(config.recommended, name), fewest)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"recommended.{name}: {exc}") from None


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
