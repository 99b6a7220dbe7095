"""Intensities of the synthetic cases of :mod:`submission.workbench.synth`: tissue contrast per
modality, texture, bias fields, noise and int16 quantisation.

Intensities are relative to white matter until :func:`quantise` scales each modality by a
white-matter level drawn per case. Channels are in :data:`submission.brats.MODALITIES` order
(t1n, t1c, t2w, t2f).
"""

from __future__ import annotations

import numpy as np

from submission.workbench.synth_anatomy import Anatomy, Tumour, smooth_fields

#: Columns of :data:`GLIOMA_CONTRAST`: the healthy tissues, then the glioma's.
GLIOMA_TISSUES: tuple[str, ...] = ("wm", "gm", "csf", "edema", "necrosis", "enhancing", "solid")

# Mean intensity of each tissue relative to white matter, per modality in MODALITIES order
# (t1n, t1c, t2w, t2f). Columns: WM, GM, CSF, oedema, necrosis, enhancing tumour, and solid
# non-enhancing tumour (the core of cases without an enhancing rim).
GLIOMA_CONTRAST = np.array(
    [
        [1.00, 0.74, 0.28, 0.80, 0.42, 0.82, 0.62],  # t1n: dark necrosis and CSF
        [1.00, 0.78, 0.30, 0.84, 0.45, 1.65, 0.66],  # t1c: bright enhancing rim
        [0.55, 0.78, 1.55, 1.20, 1.45, 1.05, 1.40],  # t2w: bright CSF, oedema and core
        [0.78, 0.98, 0.40, 1.42, 0.90, 1.20, 1.12],  # t2f: bright oedema, suppressed CSF
    ],
    dtype=np.float32,
)

#: Tissues of the task pathologies (:mod:`submission.workbench.synth_lesions`), in the units
#: of :data:`GLIOMA_CONTRAST` (t1n, t1c, t2w, t2f).
TASK_CONTRAST: dict[str, tuple[float, float, float, float]] = {
    # Resection cavity: fluid, dark on T1 (a little above CSF) and bright on T2, yet not
    # fully suppressed on FLAIR (proteinaceous, blood-tinged): between CSF and white matter.
    "fluid": (0.36, 0.38, 1.80, 0.66),
    # Tumour cyst: darker than solid tumour on T1, brighter on T2, never enhancing, grey on
    # FLAIR (above CSF and cavity fluid, below oedema).
    "cyst": (0.40, 0.42, 1.78, 0.82),
    # Meningioma: near grey matter on T1 and T2, strong homogeneous enhancement.
    "meningioma": (0.84, 1.95, 0.96, 1.06),
    # Skull (cortical bone and marrow) dark everywhere; scalp (fat, muscle) bright on T1.
    "bone": (0.16, 0.17, 0.13, 0.14),
    "scalp": (1.30, 1.34, 0.95, 1.02),
}

_WM_INTENSITY = (350.0, 1800.0)  # white-matter level per modality, drawn per case
_NOISE = (0.03, 0.05)  # noise standard deviation relative to the white-matter level
_BIAS = (0.05, 0.025)  # log-amplitude of the shared and the per-modality bias field
_TEXTURE = 0.04  # amplitude of the fine tissue texture


def glioma_intensity(rng: np.random.Generator, anatomy: Anatomy, tumour: Tumour) -> np.ndarray:
    """float32 (4, *anatomy box) noise-free intensity relative to white matter.

    Tissue fractions mix the tissue contrasts; oedema blends towards its contrast by its
    weight; the tumour core then replaces what lies under it (partial volume at its border).
    """
    contrast = GLIOMA_CONTRAST * rng.uniform(0.95, 1.05, GLIOMA_CONTRAST.shape).astype(np.float32)
    intensity = np.einsum("ck,k...->c...", contrast[:, :3], anatomy.tissue)
    lesion = intensity[(slice(None), *tumour.box)]  # a view: edits land in ``intensity``
    column = contrast[:, :, None, None, None]
    lesion += tumour.edema * (column[:, 3] - lesion)
    lesion *= 1 - tumour.core
    core = column[:, 4] if tumour.necrotic else column[:, 6]
    lesion += (tumour.core - tumour.enhancing) * core + tumour.enhancing * column[:, 5]
    texture = smooth_fields(rng, anatomy.brain.shape, 2.5 * anatomy.scale)[0]
    intensity *= 1 + _TEXTURE * texture
    return intensity


def layered_intensity(
    rng: np.random.Generator,
    tissue: np.ndarray,
    layers: tuple[tuple[str, np.ndarray], ...],
    scale: float,
) -> np.ndarray:
    """float32 (4, *tissue.shape[1:]) noise-free intensity of healthy tissue with layers on top.

    Args:
        rng: the case's random source (contrast jitter, then texture).
        tissue: float32 (3, ...) white matter, grey matter and CSF fractions.
        layers: (tissue name, weight 0..1 of the same spatial shape) pairs; each moves the
            intensity towards its tissue's contrast by its weight, in order, so later layers
            cover earlier ones. Names are :data:`GLIOMA_TISSUES` or :data:`TASK_CONTRAST` keys.
        scale: voxels per template millimetre (texture grain).
    """
    names = (*GLIOMA_TISSUES, *TASK_CONTRAST)
    table = np.concatenate(
        [GLIOMA_CONTRAST, np.array(list(TASK_CONTRAST.values()), dtype=np.float32).T], axis=1
    )
    table = table * rng.uniform(0.95, 1.05, table.shape).astype(np.float32)
    intensity = np.einsum("ck,k...->c...", table[:, :3], tissue)
    for name, weight in layers:
        column = table[:, names.index(name), None, None, None]
        intensity += weight * (column - intensity)
    texture = smooth_fields(rng, tissue.shape[1:], 2.5 * scale)[0]
    intensity *= 1 + _TEXTURE * texture
    return intensity


def apply_bias(rng: np.random.Generator, intensity: np.ndarray, scale: float) -> None:
    """Multiply ``intensity`` (C, ...) in place by smooth bias fields: shared and per channel."""
    fields = smooth_fields(rng, intensity.shape[1:], 60 * scale, 1 + len(intensity))
    shared, own = _BIAS
    for c in range(len(intensity)):
        intensity[c] *= np.exp(shared * fields[0] + own * fields[1 + c])


def quantise(rng: np.random.Generator, intensity: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """int16 (C, ...) image: ``intensity`` plus Gaussian noise, scaled by a white-matter level
    per channel, rounded and clipped to >= 1 inside ``mask`` (bool, spatial shape); 0 outside.
    """
    level = rng.uniform(*_WM_INTENSITY, size=len(intensity)).astype(np.float32)
    noise = rng.uniform(*_NOISE, size=len(intensity)).astype(np.float32)
    image = np.zeros(intensity.shape, dtype=np.int16)
    for c in range(len(intensity)):
        values = intensity[c][mask] + noise[c] * rng.standard_normal(
            int(mask.sum()), dtype=np.float32
        )
        values = np.clip(np.rint(values * level[c]), 1, np.iinfo(np.int16).max)
        image[c][mask] = values.astype(np.int16)
    return image
