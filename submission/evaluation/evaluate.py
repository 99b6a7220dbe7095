"""Score a prediction folder against a reference folder (CONTRACT.md section 5).

How each evaluation scheme treats a case it cannot score normally, as the organisers do:

- no prediction file: 2021 gives Dice 0, HD95 374, sensitivity 0, specificity 0;
  2023 scores an empty prediction (every lesion missed); 2025 gives 0 and 373 in every
  region. The case is listed in ``missing``.
- a prediction that cannot be read, or lies on another grid: scored as missing and
  listed in ``failed`` with the reason. 2021 compares shape and affine (its evaluator
  rejects a different origin, spacing or direction); 2023 and 2025 compare voxel arrays
  only, so they check the shape alone. (brats-parse-metrics drops a subject whose
  evaluation raised, which would reward a broken file: it is penalised here instead.)
- a reference that cannot be read: the case is listed in ``failed`` and not scored.

Spacing for HD95 and lesion volumes comes from the reference header.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from submission.brats import SCHEMES, get_scheme
from submission.evaluation.folders import CasePair, match_cases
from submission.evaluation.lesionwise_2023 import lesion_params, score_2023
from submission.evaluation.overlap_2021 import failed_2021, score_2021
from submission.evaluation.panoptica_2025 import (
    cohort_config,
    load_evaluator,
    missing_2025,
    score_2025,
)
from submission.evaluation.report import EvaluationResult
from submission.exit_codes import BadValueError
from submission.io.nifti import Grid, NiftiError, read_label_map
from submission.tasks import AUTO, TASKS, TaskError, detect_task, resolve_task

logger = logging.getLogger(__name__)

#: Evaluation schemes and the label scheme each reads by default.
DEFAULT_LABELS: dict[str, str] = {"2021": "2021", "2023": "2023", "2025": "2023"}
EVALUATION_SCHEMES: tuple[str, ...] = tuple(DEFAULT_LABELS)

Scores = dict[str, dict[str, float]]
# (prediction or None, reference, spacing) -> scores
_Scorer = Callable[[np.ndarray | None, np.ndarray, tuple[float, ...]], Scores]


def _scorer(scheme: str, labels: str, cohort: str) -> _Scorer:
    """The per-case scoring function of a scheme; checks cohort and dependencies up front."""
    if scheme == "2021":
        return lambda pred, ref, spacing: (
            failed_2021() if pred is None else score_2021(pred, ref, spacing, labels)
        )
    if scheme == "2023":
        lesion_params(cohort)
        return lambda pred, ref, spacing: score_2023(pred, ref, spacing, labels, cohort)
    if scheme == "2025":
        load_evaluator(cohort_config(cohort)[0])  # fail before any work if panoptica is absent
        return lambda pred, ref, spacing: (
            missing_2025(cohort) if pred is None else score_2025(pred, ref, spacing, labels, cohort)
        )
    raise ValueError(f"unknown evaluation scheme {scheme!r}; choose one of 2021, 2023, 2025")


class LabelSchemeError(ValueError, BadValueError):
    """Label values outside the label scheme chosen: the files are in another scheme (a
    2021 ET of 4 read as 2023 would be scored as no ET at all, a perfect ET Dice of 1)."""


def check_labels(seg: np.ndarray, labels: str, path: Path) -> None:
    """Refuse a label map holding values outside the scheme ``labels``, naming the schemes
    that hold them all (the fix is ``--labels`` one of those).

    Raises:
        LabelSchemeError: naming the file, the values and the fix.
    """
    values = np.unique(seg) if seg.dtype.kind == "i" else np.flatnonzero(np.bincount(seg.ravel()))
    present = {int(v) for v in values}
    scheme = get_scheme(labels)
    if present <= scheme.valid_labels:
        return
    fits = [name for name, s in SCHEMES.items() if present <= s.valid_labels]
    tasks = [t.name for t in TASKS.values() if t.scheme in fits]
    fix = (
        f"pass --task {' or '.join(tasks)} (or --labels {' or '.join(fits)})"
        if fits
        else "no label scheme holds them all"
    )
    raise LabelSchemeError(
        f"{path} holds labels {sorted(present - scheme.valid_labels)} outside the {labels} "
        f"scheme (valid: {sorted(scheme.valid_labels)}): scored as {labels} they would give "
        f"wrong numbers; {fix}"
    )


def _grid_problem(scheme: str, pred: Grid, ref: Grid) -> str | None:
    if pred.shape != ref.shape:
        return f"prediction shape {pred.shape} differs from reference {ref.shape}"
    if scheme == "2021" and not np.allclose(pred.affine, ref.affine, rtol=0, atol=1e-4):
        return "prediction affine (origin, spacing or direction) differs from the reference"
    return None


def _score_case(pair: CasePair, scheme: str, score: _Scorer, result: EvaluationResult) -> None:
    try:
        ref, ref_grid = read_label_map(pair.ref)
    except NiftiError as exc:
        logger.error("%s: reference not scored: %s", pair.case, exc)
        result.failed[pair.case] = str(exc)
        return
    check_labels(ref, result.labels, pair.ref)
    pred = None
    if pair.pred is None:
        logger.warning("%s: no prediction, scored as missing", pair.case)
        result.missing.append(pair.case)
    else:
        try:
            pred, pred_grid = read_label_map(pair.pred)
            check_labels(pred, result.labels, pair.pred)
            problem = _grid_problem(scheme, pred_grid, ref_grid)
        except NiftiError as exc:
            problem = str(exc)
        if problem is not None:
            logger.error("%s: scored as missing: %s", pair.case, problem)
            result.failed[pair.case] = problem
            pred = None
    result.add_case(pair.case, score(pred, ref, ref_grid.spacing))


def _warn_if_another_task(pairs: list[CasePair], labels: str) -> None:
    """Warn when the case ids name a task whose labels are not the default ``labels``: its
    maps read in the wrong scheme may hold only valid values and still score wrongly."""
    try:
        found = detect_task(pair.case for pair in pairs)
    except TaskError:
        return
    if found.scheme != labels:
        logger.warning(
            "the case ids are those of task %s (labels %s) but the maps are read as %s: "
            "pass --task %s (or --task auto)",
            found.name,
            found.scheme,
            labels,
            found.name,
        )


def evaluate_folders(
    pred_dir: Path,
    ref_dir: Path,
    scheme: str,
    labels: str | None = None,
    cohort: str | None = None,
    task: str | None = None,
) -> EvaluationResult:
    """Score every reference case against its prediction, as the organisers would.

    Args:
        pred_dir: folder of predictions ``<id>.nii.gz``.
        ref_dir: folder of references (``<id>_seg``, ``<id>-seg`` or ``<id>``
            ``.nii.gz``, flat or in case folders); see :mod:`.folders`.
        scheme: ``2021`` (CaPTk overlap), ``2023`` (lesion-wise) or ``2025``
            (brats-evaluation / panoptica).
        labels: label scheme of both folders; default ``2021`` for scheme 2021 and
            ``2023`` otherwise.
        cohort: selects the 2023 dilation and volume threshold (gli, ssa, ped, men, met)
            or the 2025 config (gli, mets, ped, menpre, menrt, goat); ignored for 2021.
            Default: the task's, else ``gli``.
        task: a task of :data:`submission.tasks.TASKS`, or ``auto`` (recognised from the
            reference case ids): sets ``labels`` and ``cohort`` together, so that neither
            can be forgotten; explicit ``labels`` or ``cohort`` still override it.

    Returns:
        The per-case rows and the missing, unmatched and failed cases.

    Raises:
        ValueError: unknown scheme, labels, cohort or task; bad or empty folders.
        ImportError: scheme 2025 without panoptica (``pip install bratskit[eval]``).
        LabelSchemeError: a file holds labels outside ``labels`` (the wrong scheme).
    """
    scheme = str(scheme)
    if scheme not in DEFAULT_LABELS:
        raise ValueError(f"unknown evaluation scheme {scheme!r}; choose one of 2021, 2023, 2025")
    if scheme == "2025":
        load_evaluator("gli")  # a missing panoptica fails first, before the folders are read
    pairs, unmatched = match_cases(Path(pred_dir), Path(ref_dir))
    if task is not None:
        found = resolve_task(task, (pair.case for pair in pairs))
        labels = labels or found.scheme
        cohort = cohort or (found.cohort_2023 if scheme == "2023" else found.config_2025)
        logger.info(
            "task %s%s: labels %s, cohort %s",
            found.name,
            " (recognised from the case ids)" if task.lower() == AUTO else "",
            labels,
            cohort,
        )
    elif labels is None:
        _warn_if_another_task(pairs, DEFAULT_LABELS[scheme])
    labels = get_scheme(labels or DEFAULT_LABELS[scheme]).name
    cohort = cohort or "gli"
    score = _scorer(scheme, labels, cohort)
    result = EvaluationResult(
        scheme=scheme,
        labels=labels,
        cohort=cohort.lower(),
        unmatched=unmatched,
        task=None if task is None else found.name,
    )
    for name in unmatched:
        logger.warning("prediction %s matches no reference case", name)
    start = time.perf_counter()
    for index, pair in enumerate(pairs, start=1):
        case_start = time.perf_counter()
        _score_case(pair, scheme, score, result)
        logger.info(
            "[%d/%d] %s scored in %.2f s",
            index,
            len(pairs),
            pair.case,
            time.perf_counter() - case_start,
        )
    logger.info("%d cases scored in %.1f s", len(pairs), time.perf_counter() - start)
    return result
