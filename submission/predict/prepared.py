"""A case made ready for the members (:meth:`submission.predict.engine.Engine.prepare`):
the network input, how it was cropped and resampled, and what undoes both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from submission.predict.pipelines import RawCase
from submission.predict.preprocess import CropInfo, uncrop
from submission.predict.resample import resample_probabilities


@dataclass(frozen=True)
class Resampling:
    """How :meth:`Engine.prepare` resampled a case for the networks, to undo it.

    Attributes:
        shape: the resampled grid's spatial shape (at the members' spacing).
        crop: the network input's crop of the resampled grid.
        spacing_in, spacing_out: the case's voxel sizes and the members', in mm.
    """

    shape: tuple[int, ...]
    crop: CropInfo
    spacing_in: tuple[float, ...]
    spacing_out: tuple[float, ...]

    @property
    def note(self) -> str:
        """What the case's line says."""
        mm = ["x".join(f"{v:.3g}" for v in s) for s in (self.spacing_in, self.spacing_out)]
        return f"resampled {mm[0]} mm -> {mm[1]} mm for the networks"


@dataclass
class Prepared:
    """A case after :meth:`Engine.prepare`: the network input and how to undo the crop.

    Attributes:
        image_cdhw: float32 network input (C, d, h, w), the bundle's channel order.
        crop: the frame :meth:`Engine.member_probabilities` returns, a crop of the INPUT
            grid; without resampling also the network input's crop.
        resampling: how the case was resampled for the networks, or None (not resampled).
        raw: the case as read, for imported members' own pipelines (None when the bundle
            has none).
    """

    image_cdhw: np.ndarray
    crop: CropInfo
    seconds: float
    notes: list[str] = field(default_factory=list)
    resampling: Resampling | None = None
    raw: RawCase | None = None


def to_input_frame(probs_rdhw: np.ndarray, prepared: Prepared) -> np.ndarray:
    """Probabilities on the network input's crop -> on ``prepared.crop`` (input grid):
    uncropped onto the resampled grid (0 outside, as labels are outside a crop), then
    resampled linearly to the input grid, only inside ``prepared.crop``'s window."""
    resampling = prepared.resampling
    if resampling is None:
        return probs_rdhw
    full = uncrop(probs_rdhw, resampling.crop, fill=0)
    crop = prepared.crop
    return resample_probabilities(full, crop.in_shape, (crop.start, crop.stop))
