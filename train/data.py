"""Training samples from the cache: crop, augment, one or two views, as torch tensors.

Every random choice comes from a generator seeded by (run seed, epoch, case index), so a
sample depends on neither the worker that draws it nor the number of workers, and a
resumed run sees the epochs it would have seen.

Loader workers receive memory-mapped cases and return one crop each: with the papers'
largest patch (4 x 192 x 192 x 160 float32, 94 MB, two views for 004) and the default
prefetch of 2 batches per worker, 4 workers and batch 1 stay under 1.6 GB of ``/dev/shm``,
well inside the 4 GB the organisers' ``--shm-size`` and most clusters give.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from submission.predict.tumour_window import centred_start, extract_window
from train.augment import (
    AugmentConfig,
    augment,
    drop_modality,
    random_crop_start,
    tumour_crop_start,
    two_views,
)
from train.cache import CachedCase, unpack_regions
from train.config import MemberConfig


class PatchDataset(Dataset):
    """Random training patches of one member.

    Items are ``(image, target)``: float32 (C, d, h, w) and (R, d, h, w), R the member's
    regions in its order; with ``views=2`` (004 §3.1) both gain a leading axis of 2, the
    two independently augmented copies. ``channels`` selects, in order, the cached
    channels the member sees (:meth:`train.config.TrainConfig.channel_index`; None: all);
    ``optional`` are positions in that selection that modality dropout may zero (the
    task's optional modalities, :func:`train.augment.drop_modality`).
    """

    def __init__(
        self,
        cases: list[CachedCase],
        member: MemberConfig,
        augment_cfg: AugmentConfig,
        seed: int,
        views: int = 1,
        optional: tuple[int, ...] = (),
        channels: list[int] | None = None,
    ) -> None:
        self.cases = cases
        self.member = member
        self.augment_cfg = augment_cfg
        self.seed = seed
        self.views = views
        self.optional = optional
        self.channels = channels
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random stream (call before iterating, also in workers' parent)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        case = self.cases[index]
        image, packed = case.image(), case.packed_regions()
        crop = self.member.crop
        index_of = region_index(case, self.member.regions)
        if self.member.sampling == "tumour":
            outer = 1 << case.scheme.region_names.index(case.scheme.outermost)
            start = tumour_crop_start(packed & outer, crop, self.member.jitter, rng)
        elif self.member.sampling == "centre":
            start = centred_start(np.asarray(image.shape[1:]), np.asarray(crop))
        else:
            start = random_crop_start(image.shape[1:], crop, rng)
        if self.channels is not None:
            image = image[self.channels]
        image = extract_window(image, tuple(int(s) for s in start), crop).astype(np.float32)
        # Unpack the patch only.
        regions = unpack_regions(extract_window(packed, start, crop), len(case.scheme.regions))
        if self.views == 2:
            image, regions = two_views(image, regions, self.augment_cfg, rng)
            target = regions[:, index_of]
        else:
            image, regions = augment(image, regions, self.augment_cfg, rng)
            target = regions[index_of]
        rate = self.augment_cfg.modality_dropout
        if self.optional and rate > 0:  # after the intensity shift, which touches the brain
            if self.views == 2:
                image = np.stack([drop_modality(v, self.optional, rate, rng) for v in image])
            else:
                image = drop_modality(image, self.optional, rate, rng)
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(
            np.ascontiguousarray(target, dtype=np.float32)
        )


def region_index(case: CachedCase, regions: tuple[str, ...]) -> list[int]:
    """Where each of a member's ``regions`` lies in the case's region masks.

    Raises:
        ValueError: a region the case's label scheme does not have (a member trained for
            RC on 2023 label maps), naming the scheme and ``--task``.
    """
    names = case.scheme.region_names
    missing = [r for r in regions if r not in names]
    if missing:
        raise ValueError(
            f"case {case.case_id}: its labels ({case.scheme.name}) have no {', '.join(missing)}; "
            "train with the --task the label maps belong to"
        )
    return [names.index(r) for r in regions]


def localisation_window(case: CachedCase, crop: tuple[int, int, int]) -> tuple[int, ...]:
    """Start of the stage-2 window of a validation case: centred on its true whole tumour.

    Validating a stage-2 model alone (002 §2.3) uses the ground-truth WT box, without
    jitter; the full two-stage chain is what the exported bundle evaluates.
    """
    outer = case.regions()[case.scheme.region_names.index(case.scheme.outermost)]
    return tumour_crop_start(outer, crop, 0, np.random.default_rng(0))
