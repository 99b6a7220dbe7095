"""Training recipes: frozen dataclasses, checked as they are built (loaded from YAML with
CLI overrides and saved with the run by :mod:`train.recipe_files`).

A recipe names the method it follows (``resunet-localization`` is paper 002,
``segresnet-redundancy`` paper 004, ``effunet`` paper 003 and ``effunet-joint`` its
4-channel variant, ``tiny`` the small CPU recipe)
and lists one or more *members*: a network trained on its own, with its regions, loss,
optimiser, schedule and crop. Paper 002 trains three single-region models per stage, so
its recipe has four members (stage-1 WT, stage-2 WT/TC/ET); paper 003 trains one network
per modality (section 3), so ``effunet`` has four single-modality members (``channels``);
paper 004 has one.
Its ``recommended:`` block holds the ensemble and post-processing defaults its paper
gives; they travel in the run's ``config.yaml`` into the bundle's manifest.

The papers' recipes are written for the 2021 task (WT, TC and ET from four modalities).
``bratskit train --task T`` retargets one to another BraTS task (:meth:`TrainConfig.for_task`,
:mod:`train.retarget`): the members predict the task's regions from the task's modalities,
so every recipe serves every task without a copy per task.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from submission.brats import MODALITIES, TUMOUR_REGIONS, get_scheme
from submission.exit_codes import BadValueError
from submission.predict.bundle import Recommended
from submission.predict.members import STAGES
from submission.predict.options import RECOMMENDABLE, check_option
from submission.predict.preprocess import Preprocessing
from submission.tasks import get_task
from train.augment import AugmentConfig

SAMPLINGS = ("random", "tumour", "centre")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("none", "plateau", "cosine")
MONITORS = ("loss", "dice")
AMP_MODES = ("auto", "off", "bf16", "fp16")


class ConfigError(ValueError, BadValueError):
    """A recipe file or override that cannot be used; the message names the bad key."""


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule.

    ``plateau`` is ReduceLROnPlateau on what ``monitor`` names: ``loss``, the member's
    validation loss (lowest is best), or ``dice``, its validation mean Dice (highest is
    best). Paper 003 §2.5: the learning rate is "reduced by a factor of 10 whenever the
    loss has not improved for 50 epochs" (factor 0.1, patience 50, the loss); paper 002
    §3.1: "ReduceLROnPlateau by a factor of 0.4, with a patience and a cooldown of 2
    epochs", without saying what it watches (the validation loss here, the callback's
    usual quantity). ``cosine`` anneals to 0 over the run's epochs (004 §3.3: "progressively
    decrease it according to Cosine schedule").
    """

    name: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: str = "none"
    factor: float = 0.4
    patience: int = 2
    cooldown: int = 2
    monitor: str = "loss"

    def __post_init__(self) -> None:
        _choice("optimizer.name", self.name, OPTIMIZERS)
        _choice("optimizer.schedule", self.schedule, SCHEDULES)
        _choice("optimizer.monitor", self.monitor, MONITORS)
        if self.lr <= 0:
            raise ConfigError(f"optimizer.lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class MemberConfig:
    """One network of a recipe and how it is trained.

    Attributes:
        key: folder name of this member in the run (``seg``, ``stage2-et``...).
        stage: ``segmentation``, or ``localization`` for 002's stage-1 WT model whose
            prediction places the stage-2 crop.
        regions: what it predicts, in output-channel order: regions of the recipe's
            label scheme (WT, TC, ET in the papers' 2021 recipes; RC, CC or GTV once
            retargeted to a task that has them, :meth:`TrainConfig.for_task`).
        arch: model name in :data:`train.models.MODELS`.
        arch_params: keyword arguments of the model builder.
        loss: name in :data:`train.losses.LOSSES`.
        loss_params: its keyword arguments (``bce_dice``: ``dice_weight``); {} the
            paper's form.
        redundancy: weight of the Barlow-Twins loss (004 §3.1); 0 disables the second view.
        crop: training patch (D, H, W).
        sampling: ``random`` windows, ``tumour``-centred ones with ``jitter`` (002 §2.3), or
            the window ``centre``d on the cropped brain (003 §2.5: "centered cropped data").
        channels: the modalities this member sees, in its input-channel order (003 §3:
            "We process the four modalities separately"); None: all the run's channels
            (:attr:`TrainConfig.channels`). Each must be one of the run's channels.
    """

    key: str
    regions: tuple[str, ...]
    arch: str
    arch_params: dict[str, Any] = field(default_factory=dict)
    stage: str = "segmentation"
    loss: str = "bce_dice"
    loss_params: dict[str, Any] = field(default_factory=dict)
    redundancy: float = 0.0
    optimizer: OptimConfig = field(default_factory=OptimConfig)
    crop: tuple[int, int, int] = (128, 128, 128)
    sampling: str = "random"
    jitter: int = 0
    channels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _choice(f"{self.key}.stage", self.stage, STAGES)
        _choice(f"{self.key}.sampling", self.sampling, SAMPLINGS)
        if self.channels is not None:
            bad = [c for c in self.channels if c not in MODALITIES]
            if bad or not self.channels or len(set(self.channels)) != len(self.channels):
                raise ConfigError(
                    f"{self.key}.channels must be distinct modalities of {', '.join(MODALITIES)} "
                    f"(or null for all the run's channels), got {list(self.channels)}"
                )
        if not self.regions or len(set(self.regions)) != len(self.regions):
            raise ConfigError(f"{self.key}.regions must be distinct regions, got {self.regions}")
        if len(self.crop) != 3 or min(self.crop) < 1:
            raise ConfigError(f"{self.key}.crop must be three positive sizes, got {self.crop}")
        from train.losses import get_loss  # torch: imported when a member is built

        try:
            get_loss(self.loss, self.loss_params)
        except ValueError as exc:
            raise ConfigError(f"{self.key}.loss: {exc}") from None

    @property
    def window(self) -> str:
        """How the member predicts a volume, in validation and in its bundle
        (:data:`submission.predict.members.WINDOWS`): ``patch``, sliding windows of its
        ``crop``, when it was trained on random patches; ``volume``, one call, when it
        was trained on the centred crop or the tumour window that it then predicts."""
        return "patch" if self.sampling == "random" else "volume"

    def model_params(self) -> dict[str, Any]:
        """Keyword arguments of the member's network: ``arch_params`` with ``out_channels``
        (the member's region count) and, for a member with its own ``channels``,
        ``in_channels`` filled in where the recipe leaves them out. What training builds,
        export rebuilds and records, and ``--describe`` counts."""
        params = dict(self.arch_params)
        params.setdefault("out_channels", len(self.regions))
        if self.channels is not None:
            params.setdefault("in_channels", len(self.channels))
        return params


@dataclass(frozen=True)
class TrainConfig:
    """A whole recipe, resolved.

    Attributes:
        amp: ``auto`` (bf16 on GPUs that have it, else fp16; off on CPU), ``bf16``,
            ``fp16`` or ``off``.
        batch_size: the global batch, samples per optimiser step, whatever the number of
            torchrun processes (the papers' batch, which their learning rates go with):
            each process takes ``batch_size / (processes x accumulate)`` samples at a time
            (:func:`train.distributed.split_batch`).
        accumulate: gradient-accumulation steps per optimiser step, in each process: fits
            a batch that does not fit in memory at once.
        seed: the folds' split and every fold's random streams: its initial weights and
            its patches (seed + fold).
        checkpointing: activation checkpointing where the model supports it.
        val_threshold: probability above which a voxel counts in validation Dice.
        val_interval: validate every this many epochs, and after the last (MONAI's
            ``val_interval``); the epochs between only train, and ``best.pt`` is the best
            validated epoch. A ``plateau`` schedule watches every epoch, so it needs 1.
        cache_dtype: ``float16`` halves the cache (53 GB for BraTS 2021) at about 1e-3
            relative error on z-scored intensities; ``float32`` is exact.
        recommended: ensemble and post-processing defaults written into the bundle;
            without a ``recommended:`` block, :class:`Recommended`'s (the mean, no ET
            threshold).
        task: the BraTS task (:mod:`submission.tasks`) the members were retargeted to
            by :meth:`for_task`; None is the papers' 2021 task (``label_scheme`` then
            says how the label maps are read).
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
    val_interval: int = 1
    cache_dtype: str = "float16"
    recommended: Recommended = field(default_factory=Recommended)
    task: str | None = None

    def __post_init__(self) -> None:
        _choice("amp", self.amp, AMP_MODES)
        _choice("cache_dtype", self.cache_dtype, ("float16", "float32"))
        if min(self.epochs, self.batch_size, self.accumulate, self.val_interval) < 1:
            raise ConfigError("epochs, batch_size, accumulate and val_interval must be >= 1")
        plateau = [m.key for m in self.members if m.optimizer.schedule == "plateau"]
        if self.val_interval > 1 and plateau:
            raise ConfigError(
                f"val_interval {self.val_interval}: the plateau schedule of "
                f"{', '.join(plateau)} watches a validation every epoch; use val_interval 1"
            )
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2 for cross-validation, got {self.folds}")
        keys = [m.key for m in self.members]
        if not keys or len(set(keys)) != len(keys):
            raise ConfigError(f"members need unique keys, got {keys}")
        if self.task is not None:
            task = get_task(self.task)
            if self.label_scheme != task.scheme:
                raise ConfigError(
                    f"task {task.name} reads {task.scheme} label maps, not {self.label_scheme}"
                )
        regions = self.scheme_regions
        for m in self.members:
            bad = [r for r in m.regions if r not in regions]
            if bad:
                raise ConfigError(
                    f"{m.key}.regions must be from {', '.join(regions)}, got {', '.join(bad)}"
                )
            _check_member_channels(m, self.channels, self.task)
        _check_recommended(self)

    @property
    def scheme_regions(self) -> tuple[str, ...]:
        """The regions the label maps give: the task's, else WT, TC and ET (2021, 2023)."""
        if self.task is not None:
            return get_task(self.task).regions
        if self.label_scheme != "auto":
            return get_scheme(self.label_scheme).region_names
        return TUMOUR_REGIONS

    @property
    def channels(self) -> tuple[str, ...]:
        """The members' input channels, in :data:`MODALITIES` order: the task's
        modalities, required and optional (t1c alone for MEN-RT), else all four."""
        return MODALITIES if self.task is None else get_task(self.task).channels

    def member_channels(self, member: MemberConfig) -> tuple[str, ...]:
        """The modalities ``member`` sees, in its input order: its ``channels``, else all
        of :attr:`channels`."""
        return self.channels if member.channels is None else member.channels

    def channel_index(self, member: MemberConfig) -> list[int]:
        """Where :meth:`member_channels` lie on the channel axis of the run's cached
        images (:attr:`channels` order): what the trainer feeds the member."""
        return [self.channels.index(c) for c in self.member_channels(member)]

    @property
    def optional_channels(self) -> tuple[str, ...]:
        """The channels a case may lack (the task's optional modalities)."""
        return () if self.task is None else get_task(self.task).optional

    @property
    def missing_modalities(self) -> dict[str, str]:
        """What the bundle declares for an absent optional channel: ``zero`` when the
        members were trained with modality dropout, else nothing (a missing modality
        is then a per-case error at prediction time)."""
        if self.augment.modality_dropout <= 0:
            return {}
        return dict.fromkeys(self.optional_channels, "zero")

    def for_task(self, name: str) -> TrainConfig:
        """This recipe retargeted to a BraTS task (``bratskit train --task``): the members
        predict the task's regions from its modalities, by the rules of
        :func:`train.retarget.retarget`.

        Raises:
            TaskError: an unknown task.
            ConfigError: a recipe already retargeted to another task, or none of whose
                members can read the task's modalities.
        """
        from train.retarget import retarget

        return retarget(self, name)

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


def _check_member_channels(
    member: MemberConfig, channels: tuple[str, ...], task: str | None
) -> None:
    """A member's own channels are some of the run's, and its stated ``in_channels`` is
    their count."""
    if member.channels is None:
        return
    bad = [c for c in member.channels if c not in channels]
    if bad:
        raise ConfigError(
            f"{member.key}.channels: {', '.join(bad)} is not a channel of the run "
            f"({', '.join(channels)}, task {task or 'gli-2021'}): choose from those"
        )
    stated = member.arch_params.get("in_channels")
    if stated is not None and stated != len(member.channels):
        raise ConfigError(
            f"{member.key}.arch_params.in_channels is {stated} but the member sees "
            f"{len(member.channels)} channel(s) ({', '.join(member.channels)}): set "
            f"in_channels: {len(member.channels)} or leave it out"
        )


def _check_recommended(config: TrainConfig) -> None:
    """The values ``bratskit predict`` would refuse, found when the recipe loads, by the
    runtime's own checks; top-k against the members one region gets from all folds."""
    seg = [m for m in config.members if m.stage == "segmentation"]
    # The regions the members predict (a 2024-gli scheme read by a WT/TC/ET recipe
    # without --task has no RC member: its labels never hold RC, as before).
    regions = [r for r in config.scheme_regions if any(r in m.regions for m in seg)]
    fewest = config.folds * min((sum(r in m.regions for m in seg) for r in regions), default=0)
    for name in RECOMMENDABLE:
        try:
            check_option(name, getattr(config.recommended, name), fewest, regions)
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
