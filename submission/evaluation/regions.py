"""Pairing prediction and reference regions, shared by the per-case scorers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from submission.brats import TUMOUR_REGIONS, LabelScheme, get_scheme, labels_to_regions


def tumour_region_pairs(
    pred_dhw: np.ndarray, ref_dhw: np.ndarray, labels: str | LabelScheme
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(region, pred_mask, ref_mask)`` for WT, TC and ET.

    Args:
        pred_dhw: integer label map (D, H, W) in the ``labels`` scheme.
        ref_dhw: reference label map, same shape and scheme.
        labels: label scheme of both maps (labels outside it count as background).

    Raises:
        ValueError: the shapes differ.
    """
    if pred_dhw.shape != ref_dhw.shape:
        raise ValueError(
            f"prediction shape {pred_dhw.shape} differs from reference {ref_dhw.shape}"
        )
    scheme = get_scheme(labels) if isinstance(labels, str) else labels
    pred_rdhw = labels_to_regions(pred_dhw, scheme)
    ref_rdhw = labels_to_regions(ref_dhw, scheme)
    for region in TUMOUR_REGIONS:
        i = scheme.region_names.index(region)
        yield region, pred_rdhw[i], ref_rdhw[i]
