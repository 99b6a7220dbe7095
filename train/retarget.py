"""A recipe retargeted to another BraTS task (``bratskit train --task``,
:meth:`train.config.TrainConfig.for_task`).

The papers' recipes are written for the 2021 task (WT, TC and ET from four modalities);
:func:`retarget` makes the members predict a task's regions from its modalities, so every
recipe serves every task without a copy per task.
"""

from __future__ import annotations

import dataclasses

from submission.brats import TUMOUR_REGIONS
from submission.predict.bundle import Recommended
from submission.tasks import Task, get_task
from train.config import ConfigError, MemberConfig, TrainConfig

#: The voxel size (mm) members of a native-space task train at: the 1 mm of BraTS space,
#: which the papers' networks and crops are sized for (a recipe may set another).
NATIVE_TRAINING_SPACING = (1.0, 1.0, 1.0)


def retarget(config: TrainConfig, name: str) -> TrainConfig:
    """``config`` retargeted to the BraTS task ``name``.

    Each member keeps its network, loss and schedule and changes only what it
    predicts from what:

    * a member of every 2021 region (WT, TC, ET) predicts every region of the task
      (WT, TC, ET and RC for gli-post; GTV alone for MEN-RT);
    * a single-region member keeps its region where the task has it; WT becomes the
      task's outermost region (GTV), and the regions the task lacks lose their
      members (MEN-RT has no TC or ET model);
    * a region of the task that no member predicts (RC, CC) gets a member of its
      own, a copy of the outermost region's member (paper 002 trains one network per
      region, section 2.2);
    * a task in native space (MET, MEN-RT: any spacing) trains at
      :data:`NATIVE_TRAINING_SPACING` unless the recipe sets ``preprocessing.spacing``:
      the cache resamples every case to it, and the bundle's manifest tells the
      runtime to resample inputs the same way;
    * a member with its own ``channels`` (003's single-modality networks) is dropped
      when the task lacks one of them (MEN-RT keeps only the t1c member) or has them
      only as optional modalities (MET's t2w member could not predict the cases
      without t2w);
    * ``in_channels`` is the member's channel count (the task's modality count for a
      member of all channels) and ``out_channels`` the member's region count;
      per-region thresholds follow the regions (a new region takes 0.5) and a task
      without ET has no ET minimum volume.

    Raises:
        TaskError: an unknown task.
        ConfigError: a recipe already retargeted to another task, or none of whose
            members can read the task's modalities.
    """
    task = get_task(name)
    if config.task is not None and config.task != task.name:
        raise ConfigError(f"recipe {config.name!r} is already for task {config.task}")
    if config.task == task.name:
        return config
    members = _retarget_members(_members_for_channels(config, task), task)
    members = tuple(
        dataclasses.replace(
            m,
            arch_params={
                **m.arch_params,
                "in_channels": len(m.channels or task.channels),
                **({"out_channels": len(m.regions)} if "out_channels" in m.arch_params else {}),
            },
        )
        for m in members
    )
    recommended = _retarget_recommended(config.recommended, task)
    preprocessing = config.preprocessing
    if task.geometry == "native" and preprocessing.spacing is None:
        preprocessing = dataclasses.replace(preprocessing, spacing=NATIVE_TRAINING_SPACING)
    return dataclasses.replace(
        config, task=task.name, label_scheme=task.scheme, members=members,
        recommended=recommended, preprocessing=preprocessing,
    )  # fmt: skip


def _members_for_channels(config: TrainConfig, task: Task) -> tuple[MemberConfig, ...]:
    """The members that can read the task's cases (see :func:`retarget`)."""

    def readable(member: MemberConfig) -> bool:
        if member.channels is None:
            return True
        present = all(c in task.channels for c in member.channels)
        return present and not all(c in task.optional for c in member.channels)

    kept = tuple(m for m in config.members if readable(m))
    if not any(m.stage == "segmentation" for m in kept):
        raise ConfigError(
            f"no member of recipe {config.name!r} reads task {task.name}'s modalities "
            f"({', '.join(task.channels)}): give a member channels the task has"
        )
    return kept


def _retarget_members(members: tuple[MemberConfig, ...], task: Task) -> tuple[MemberConfig, ...]:
    """:func:`retarget`'s region rules, member by member."""
    outer = task.label_scheme.outermost

    def regions_of(member: MemberConfig) -> tuple[str, ...]:
        if set(member.regions) == set(TUMOUR_REGIONS):
            return task.regions
        mapped = (outer if r == "WT" else r for r in member.regions)
        return tuple(dict.fromkeys(r for r in mapped if r in task.regions))

    kept = [dataclasses.replace(m, regions=regions_of(m)) for m in members if regions_of(m)]
    covered = {r for m in kept if m.stage == "segmentation" for r in m.regions}
    template = next((m for m in kept if m.stage == "segmentation" and m.regions == (outer,)), None)
    for region in (r for r in task.regions if r not in covered):
        if template is None:
            raise ConfigError(f"no member of the recipe can be copied to predict {region}")
        suffix = region.lower()
        key = template.key.replace(outer.lower(), suffix)
        kept.append(
            dataclasses.replace(
                template, key=key if key != template.key else f"{key}-{suffix}", regions=(region,)
            )
        )
    return tuple(kept)


def _retarget_recommended(recommended: Recommended, task: Task) -> Recommended:
    """The recipe's defaults on the task's regions (see :func:`retarget`)."""
    threshold = recommended.threshold
    if isinstance(threshold, dict):
        outer = task.label_scheme.outermost
        renamed = {outer if r == "WT" else r: v for r, v in threshold.items()}
        threshold = {r: renamed.get(r, 0.5) for r in task.regions}
    et_threshold = recommended.et_threshold if task.label_scheme.has_enhancing else 0
    return dataclasses.replace(recommended, threshold=threshold, et_threshold=et_threshold)
