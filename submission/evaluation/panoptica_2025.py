"""BraTS 2025 scores through the official ``brats-evaluation`` package (CONTRACT.md section 5).

The organisers run ``brats-evaluate`` (a panoptica ``Panoptica_Evaluator`` loaded from
a config bundled with brats-evaluation) and then ``brats-parse-metrics seg``. Here the
same evaluator is built from the same bundled config file and fed the arrays directly,
and each region's numbers are read the way ``metrics_parser.parse_seg_results`` reads
them:

- ``lesion_dice``: panoptica ``sq_dsc``, lesion-wise Dice averaged over matched
  lesions only (misses and false positives lower ``f1`` and ``global_dice`` instead);
- ``f1``: ``rq``, the detection F1 of the one-to-one matching;
- ``global_dice``: ``global_bin_dsc``, the region's plain Dice;
- ``lesion_hd95`` / ``global_hd95``: ``sq_hd95`` / ``global_bin_hd95``.

Conventions: an infinite HD95 becomes 373. brats-parse-metrics caps only the global
one and leaves ``lesionwise_hd95_mean`` infinite, which turns any mean over cases into
infinity; both are capped here. A region empty in both maps is NaN for every metric
and skipped in the means. A missing prediction scores 0 and 373 in every region, as
the parser fills missing subjects.

Arrays and spacing as the organisers' run gives them: ``brats-evaluate`` hands panoptica
file paths, which panoptica reads through SimpleITK (a requirement of brats-evaluation):
``GetArrayFromImage`` orders the axes (z, y, x), the reverse of nibabel's, while
``GetSpacing`` stays (x, y, z), and panoptica pairs them as they come. Here both maps are
transposed the same way and the spacing is passed in header order
(:func:`as_brats_evaluate_reads`). The axis order matters twice: on anisotropic voxels
(MEN-RT's 1 x 1 x 2.5 mm, MET's native grids) the lesion-wise HD95 uses each axis's
spacing reversed (``global_hd95`` ignores spacing altogether), and connected components
are numbered in scan order, which decides ties in the one-to-one lesion matching. The
organisers rank on those numbers, so they are reproduced here, not corrected (checked
against ``brats-evaluate`` on trained predictions of gli-post, ped, met and a 1 x 1 x 2.5
mm MEN-RT case, ``tests/test_tasks_end_to_end.py``).

Regions are the config's groups, upper-cased, WT, TC, ET first (for ``gli``: WT, TC,
ET, SNFH, NETC, RC). Label maps are converted to the scheme the config's groups are
written in (:func:`convert_labels`); MenRT maps (one GTV label) are passed unchanged.
panoptica and brats-evaluation are imported only when this scheme is used.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from functools import cache
from typing import Any

import numpy as np

from submission.brats import LabelScheme, get_scheme, labels_to_regions, regions_to_labels

logger = logging.getLogger(__name__)

METRICS_2025: tuple[str, ...] = ("lesion_dice", "f1", "global_dice", "lesion_hd95", "global_hd95")
#: HD95 standing for infinity and for a missing prediction (brats-parse-metrics).
PENALTY_HD95_2025 = 373.0

#: Cohort -> (bundled brats-evaluation config, label scheme its groups are written in).
COHORT_CONFIGS_2025: dict[str, tuple[str, str | None]] = {
    "gli": ("gli", "2024-gli"),
    "mets": ("mets", "2024-gli"),
    "ped": ("ped", "2024-ped"),
    "menpre": ("MenPre", "2023"),
    "menrt": ("MenRT", None),
    "goat": ("GoAT", "2023"),
}
_ALIASES = {"met": "mets", "men": "menpre"}
_FIRST_REGIONS = ("wt", "tc", "et")

_INSTALL_HINT = "pip install bratskit[eval]"


def cohort_config(cohort: str) -> tuple[str, str | None]:
    """Config name and label scheme of a 2025 cohort, with an error naming the choices."""
    key = _ALIASES.get(cohort.lower(), cohort.lower())
    try:
        return COHORT_CONFIGS_2025[key]
    except KeyError:
        raise ValueError(
            f"unknown 2025 cohort {cohort!r}; choose one of {', '.join(COHORT_CONFIGS_2025)}"
        ) from None


@cache
def load_evaluator(config: str) -> Any:
    """The ``Panoptica_Evaluator`` of a bundled brats-evaluation config (cached per name).

    Raises:
        ImportError: panoptica or brats-evaluation is missing; the message names the fix.
    """
    try:
        import brats_evaluation
        import panoptica
    except ImportError as exc:
        raise ImportError(
            f"the 2025 scheme needs panoptica and brats-evaluation ({exc.name} is missing); "
            f"install them with `{_INSTALL_HINT}`"
        ) from exc
    with contextlib.suppress(AttributeError):  # older panoptica has no switch
        panoptica.disable_citation_reminder()
    path = brats_evaluation.config_path(config)
    noise = io.StringIO()
    # panoptica prints a notice about labels shared by merge groups (WT, TC): intended.
    with contextlib.redirect_stdout(noise):
        evaluator = panoptica.Panoptica_Evaluator.load_from_config(path)
    logger.debug("loaded panoptica config %s%s", path, f": {noise.getvalue().strip()}")
    return evaluator


def region_order(group_names: list[str]) -> list[str]:
    """Config groups, WT, TC, ET first, then the rest in config order."""
    first = [g for g in _FIRST_REGIONS if g in group_names]
    return first + [g for g in group_names if g not in first]


def convert_labels(
    seg_dhw: np.ndarray, source: LabelScheme | str, target: LabelScheme | str
) -> np.ndarray:
    """Re-label a map from one scheme to another through their shared regions.

    Regions the source lacks (e.g. RC from 2021) stay empty; regions the target lacks
    are dropped. Returns ``seg_dhw`` itself when the schemes are the same.
    """
    source = get_scheme(source) if isinstance(source, str) else source
    target = get_scheme(target) if isinstance(target, str) else target
    if source.name == target.name:
        return seg_dhw
    source_rdhw = labels_to_regions(seg_dhw, source)
    target_rdhw = np.zeros((len(target.region_names), *seg_dhw.shape), dtype=bool)
    for i, region in enumerate(target.region_names):
        if region in source.regions:
            target_rdhw[i] = source_rdhw[source.region_names.index(region)]
    return regions_to_labels(target_rdhw, target)


def _capped(value: Any) -> float:
    value = float("nan") if value is None else float(value)
    return PENALTY_HD95_2025 if math.isinf(value) else value


def _parse(result: dict[str, Any]) -> dict[str, float]:
    """One region of panoptica's ``to_dict`` as brats-parse-metrics reads it."""
    nan = float("nan")
    return {
        "lesion_dice": float(result.get("sq_dsc", nan)),
        "f1": float(result.get("rq", nan)),
        "global_dice": float(result.get("global_bin_dsc", nan)),
        "lesion_hd95": _capped(result.get("sq_hd95", nan)),
        "global_hd95": _capped(result.get("global_bin_hd95", nan)),
    }


def score_2025(
    pred_dhw: np.ndarray,
    ref_dhw: np.ndarray,
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0),
    labels: LabelScheme | str = "2023",
    cohort: str = "gli",
) -> dict[str, dict[str, float]]:
    """Score one case with the official 2025 evaluator.

    Args:
        pred_dhw: integer label map (D, H, W) in the ``labels`` scheme.
        ref_dhw: reference label map, same shape and scheme.
        spacing: voxel size in mm along the array axes, from the header; applied as
            brats-evaluate does (:func:`as_brats_evaluate_reads`).
        labels: label scheme of both maps; ignored for ``menrt``.
        cohort: gli, mets (met), ped, menpre (men), menrt or goat.

    Returns:
        ``{region: {metric: value}}``, metrics :data:`METRICS_2025`, NaN where the
        region is empty in both maps.
    """
    config, target = cohort_config(cohort)
    if pred_dhw.shape != ref_dhw.shape:
        raise ValueError(
            f"prediction shape {pred_dhw.shape} differs from reference {ref_dhw.shape}"
        )
    evaluator = load_evaluator(config)
    if target is not None:
        pred_dhw = convert_labels(pred_dhw, labels, target)
        ref_dhw = convert_labels(ref_dhw, labels, target)
    with warnings.catch_warnings():
        # NSD (computed by the official config, not reported) warns about its default.
        warnings.simplefilter("ignore", UserWarning)
        results = evaluator.evaluate(
            as_brats_evaluate_reads(pred_dhw),
            as_brats_evaluate_reads(ref_dhw),
            voxelspacing=tuple(float(v) for v in spacing),
        )
    return {
        group.upper(): _parse(results[group].to_dict(False))
        for group in region_order(list(results))
    }


def as_brats_evaluate_reads(label_map: np.ndarray) -> np.ndarray:
    """A label map (nibabel's axis order) as ``brats-evaluate`` hands it to panoptica:
    SimpleITK's reversed axis order (see the module docstring)."""
    return np.ascontiguousarray(np.transpose(np.asarray(label_map)))


def missing_2025(cohort: str = "gli") -> dict[str, dict[str, float]]:
    """Scores of a missing prediction: 0 for Dice and F1, 373 for HD95, in every region."""
    evaluator = load_evaluator(cohort_config(cohort)[0])
    groups = region_order(list(evaluator.segmentation_class_groups_names))
    return {
        group.upper(): {m: PENALTY_HD95_2025 if "hd95" in m else 0.0 for m in METRICS_2025}
        for group in groups
    }
