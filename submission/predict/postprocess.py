"""Post-processing of region masks before labels are assembled.

Order in :func:`postprocess`: small connected components removed (optional), nesting
enforced (ET in TC in WT, the cyst in TC, the inner region winning), the ET minimum-volume
threshold, then labels in the chosen scheme.

The ET minimum volume follows paper 002, section 2.6: "Each prediction containing a number
of pixels below this threshold is considered an empty prediction because we know that a
tumor does not necessarily contain an enhanced tumor (ET)." What the emptied ET voxels
become is ``et_replace``:

    ``necrosis``    (default) applied after nesting: the voxels stay in TC and WT and get
                    the scheme's TC-minus-ET label (necrosis), also where the TC model did
                    not predict TC.
    ``background``  applied after nesting: the voxels leave every region that contains ET
                    (TC and WT), also where the TC or WT model did predict them.
    ``empty``       the paper's rule: applied to the ET mask before nesting, so only the
                    ET prediction is emptied and TC and WT are exactly what their own
                    models predicted (each voxel gets the label of the regions that still
                    hold it: necrosis inside the predicted TC, oedema inside the predicted
                    WT only, background outside both).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from submission.brats import ENHANCING, LabelScheme, get_scheme, regions_to_labels
from submission.predict.options import check_et_replace, check_et_threshold

#: 26-connectivity, as the organisers' lesion-wise metrics count components.
_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)


def _index(scheme: LabelScheme, region: str) -> int:
    return scheme.region_names.index(region)


def enforce_nesting(regions_rdhw: np.ndarray, scheme: LabelScheme) -> np.ndarray:
    """Make every region a subset of the regions that contain it (ET in TC in WT; the
    cyst in TC; :meth:`~submission.brats.LabelScheme.containing`) by growing the outer
    regions; separate regions (RC) are left alone.

    The inner region wins, as in :func:`submission.brats.regions_to_labels`: a voxel one
    model calls ET is tumour core and whole tumour too, so no predicted voxel is lost.

    Returns:
        bool copy of ``regions_rdhw`` (R, D, H, W).
    """
    out = regions_rdhw.astype(bool, copy=True)
    for inner in scheme.innermost_first:
        for outer in scheme.containing(inner):
            out[_index(scheme, outer)] |= out[_index(scheme, inner)]
    return out


def remove_small_components(mask_dhw: np.ndarray, min_voxels: int) -> np.ndarray:
    """Drop 26-connected components smaller than ``min_voxels`` from a bool mask."""
    mask_dhw = mask_dhw.astype(bool)
    if min_voxels <= 1 or not mask_dhw.any():
        return mask_dhw.copy()
    labelled, count = ndimage.label(mask_dhw, structure=_CONNECTIVITY)
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labelled]


def apply_et_threshold(
    regions_rdhw: np.ndarray, scheme: LabelScheme, min_voxels: int, replace: str = "necrosis"
) -> np.ndarray:
    """Paper 002, section 2.6: a case with fewer than ``min_voxels`` ET voxels has no ET.

    ``necrosis`` and ``empty`` clear the ET mask alone (on nested regions the voxels stay
    in the regions that contain ET, so the label becomes the scheme's TC-minus-ET label;
    :func:`postprocess` applies ``empty`` before nesting, so the regions are the models'
    own); ``background`` also takes them out of every region that contains ET.
    ``min_voxels`` = 0 disables the threshold, and so does a scheme without ET (MEN-RT).

    Returns:
        bool copy of ``regions_rdhw`` (R, D, H, W).
    """
    check_et_replace(replace)
    check_et_threshold(min_voxels)
    out = regions_rdhw.astype(bool, copy=True)
    if not scheme.has_enhancing:
        return out
    et = out[_index(scheme, ENHANCING)]
    if 0 < int(et.sum()) < min_voxels:
        if replace == "background":
            for region in scheme.containing(ENHANCING):
                out[_index(scheme, region)][et] = False
        et[...] = False
    return out


def postprocess(
    regions_rdhw: np.ndarray,
    scheme: LabelScheme | str = "2021",
    et_threshold: int = 0,
    et_replace: str = "necrosis",
    min_component: int | Mapping[str, int] = 0,
) -> np.ndarray:
    """Region masks -> uint8 label map in ``scheme``.

    Args:
        regions_rdhw: bool-like (R, D, H, W) in ``scheme.region_names`` order.
        scheme: label scheme (name or object); 2021 writes ET 4, TC-ET 1, WT-TC 2.
        et_threshold: ET minimum volume in voxels (0 disables); see :func:`apply_et_threshold`.
        et_replace: ``necrosis`` (default), ``background`` or ``empty`` (paper 002, 2.6:
            the ET threshold is applied before nesting; see the module docstring).
        min_component: components smaller than this many voxels are removed, one value
            for every region or a mapping region -> voxels; 0 disables.

    Returns:
        uint8 (D, H, W) label map.
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    regions = regions_rdhw.astype(bool, copy=True)
    sizes = (
        dict(min_component)
        if isinstance(min_component, Mapping)
        else dict.fromkeys(scheme.region_names, int(min_component))
    )
    unknown = set(sizes) - set(scheme.region_names)
    if unknown:
        raise ValueError(f"unknown regions {sorted(unknown)} for scheme {scheme.name}")
    for region, size in sizes.items():
        i = _index(scheme, region)
        regions[i] = remove_small_components(regions[i], size)
    check_et_replace(et_replace)
    if et_replace == "empty":  # before nesting: TC and WT stay their models' own
        regions = apply_et_threshold(regions, scheme, et_threshold, et_replace)
    regions = enforce_nesting(regions, scheme)
    if et_replace != "empty":
        regions = apply_et_threshold(regions, scheme, et_threshold, et_replace)
    return regions_to_labels(regions, scheme)
