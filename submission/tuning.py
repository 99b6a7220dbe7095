"""``bratskit tune``: choose a bundle's ensemble method, top-k and ET threshold on
labelled cases, and store the winner as the bundle's recommended defaults.

This is how paper 002 chose its ET minimum volume (section 2.6, Table 1: thresholds 100,
400 and 600 scored, 600 kept) and compared its regression and classification voting
ensembles (section 2.5); paper 004 (section 3.2) averages the top N/2 most confident
members. Every candidate is scored on the same member probabilities, computed once per
case, so the grid costs one prediction per case.

Two modes:

* **out-of-fold** (``splits`` given, the run's ``splits.json``): each training case is
  predicted only by the members of the fold that held it out, so no network scores a case
  it trained on. The ensemble then combines that fold's members (with one member per fold
  the three methods coincide and only the ET threshold matters); confidence uses its
  default k, because k over one fold's members does not carry over to all folds.
* **held-out** (no splits): the cases are a tuning set no member trained on; every member
  predicts every case, and confidence is also scored for each k from 1 to N.

The score is the mean over cases of the mean 2021 Dice of WT, TC and ET (CONTRACT.md 5:
both empty gives 1, so an ET threshold that empties a false-positive ET on a case without
ET earns its point). HD95 is not computed for every candidate. Ties keep the bundle's
current defaults, then the earlier candidate (mean, vote, confidence; smaller k; smaller
threshold).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from submission.brats import TUMOUR_REGIONS, labels_to_regions
from submission.cases import discover_cases, load_case
from submission.engine import Engine
from submission.ensemble import ENSEMBLE_METHODS
from submission.evaluation.folders import find_references
from submission.evaluation.overlap_2021 import dice
from submission.nifti import read_label_map

log = logging.getLogger(__name__)

#: ET minimum volumes scored by default (voxels): 002's 100, 400 and 600, and neighbours.
ET_THRESHOLDS = (0, 50, 100, 200, 300, 400, 500, 600, 800, 1000)


class TuningError(ValueError):
    """No case to tune on: no references, or no case in the splits."""


@dataclass(frozen=True)
class Candidate:
    """One choice of defaults; ``top_k`` None is the confidence default, ceil(N/2)."""

    ensemble: str
    top_k: int | None
    et_threshold: int

    def __str__(self) -> str:
        k = f" k={self.top_k}" if self.ensemble == "confidence" and self.top_k else ""
        return f"{self.ensemble}{k}, ET {self.et_threshold}"


@dataclass
class TuneResult:
    """Per candidate, the Dice of each region for each case (cases x 3)."""

    mode: str
    cases: list[str]
    current: Candidate
    dice: dict[Candidate, list[list[float]]] = field(default_factory=dict)

    def score(self, candidate: Candidate) -> float:
        """Mean over cases of the mean Dice of WT, TC and ET."""
        return float(np.mean(self.dice[candidate]))

    def region_means(self, candidate: Candidate) -> list[float]:
        return np.mean(self.dice[candidate], axis=0).tolist()

    @property
    def best(self) -> Candidate:
        """The highest score; ties keep the current defaults, then the earlier candidate."""
        order = [self.current, *(c for c in self.dice if c != self.current)]
        return max(order, key=lambda c: (round(self.score(c), 10), -order.index(c)))

    def table(self) -> str:
        """Every candidate's mean Dice per region and overall, best first."""
        rows = sorted(self.dice, key=lambda c: -self.score(c))
        lines = [f"{'candidate':<26} {'WT':>7} {'TC':>7} {'ET':>7} {'mean':>7}"]
        for c in rows:
            wt, tc, et = self.region_means(c)
            marks = " <- best" if c == self.best else ""
            marks += " (current)" if c == self.current else ""
            lines.append(f"{c!s:<26} {wt:7.4f} {tc:7.4f} {et:7.4f} {self.score(c):7.4f}{marks}")
        return "\n".join(lines)

    def to_json(self, path: Path) -> None:
        rows = [
            {
                **vars(c),
                "dice": dict(zip(TUMOUR_REGIONS, self.region_means(c))),
                "score": self.score(c),
            }
            for c in self.dice
        ]
        best = vars(self.best)
        Path(path).write_text(
            json.dumps(
                {
                    "mode": self.mode,
                    "cases": self.cases,
                    "current": vars(self.current),
                    "best": best,
                    "candidates": rows,
                },
                indent=2,
            )
            + "\n"
        )


def candidates(n_members: int, per_k: bool, thresholds: Sequence[int]) -> list[Candidate]:
    """The grid: each ensemble method (confidence for each k when ``per_k``) x threshold."""
    choices: list[tuple[str, int | None]] = [("mean", None), ("vote", None)]
    if per_k:
        choices += [("confidence", k) for k in range(1, n_members + 1)]
    else:
        choices.append(("confidence", None))
    assert {m for m, _ in choices} == set(ENSEMBLE_METHODS)
    return [Candidate(m, k, t) for m, k in choices for t in thresholds]


def read_splits(path: Path) -> dict[str, int]:
    """Case id -> the fold that holds it out, from a run's ``splits.json``."""
    raw = json.loads(Path(path).read_text())
    return {case_id: fold for fold, ids in enumerate(raw["folds"]) for case_id in ids}


def score_candidates(
    engine: Engine,
    data_dir: Path,
    splits: dict[str, int] | None = None,
    thresholds: Sequence[int] = ET_THRESHOLDS,
) -> TuneResult:
    """Score every candidate on the labelled cases of ``data_dir`` (see the module doc).

    Raises:
        TuningError: no case has a reference (or, out of fold, a fold).
    """
    references = find_references(data_dir)
    found = discover_cases(data_dir)
    cases = [c for c in found.cases if c.case_id in references]
    if splits is not None:
        cases = [c for c in cases if c.case_id in splits]
    if not cases:
        where = " that the splits hold out" if splits is not None else ""
        raise TuningError(f"no case with a reference label map{where} in {data_dir}")
    manifest = engine.manifest
    segmenters = manifest.stage("segmentation")
    if splits is None:
        n = min(sum(r in m.regions for m in segmenters) for r in TUMOUR_REGIONS)
    else:
        n = 0  # confidence keeps its default k out of fold
    rec = manifest.recommended
    current_k = None
    if rec.ensemble == "confidence" and splits is None:
        current_k = rec.top_k or math.ceil(n / 2)
    current = Candidate(rec.ensemble, current_k, rec.et_threshold)
    grid = candidates(n, splits is None, sorted({*thresholds, current.et_threshold}))
    if current not in grid:
        grid.insert(0, current)
    result = TuneResult("out-of-fold" if splits is not None else "held-out", [], current)
    result.dice = {c: [] for c in grid}
    base = engine.options
    for i, case in enumerate(cases, 1):
        image, grid_ = load_case(case)
        prepared = engine.prepare(image, grid_)
        fold = None if splits is None else splits[case.case_id]
        keep = (lambda m: True) if fold is None else (lambda m, f=fold: m.fold == f)
        probs = engine.member_probabilities(prepared, [], keep=keep)
        ref = _reference_regions(references[case.case_id], case.year, grid_.shape)
        for (method, k), group in _by_ensemble(grid).items():
            options = replace(base, ensemble=method, top_k=k)
            regions = engine.ensemble(probs, options)
            for candidate in group:
                chosen = replace(options, et_threshold=candidate.et_threshold)
                labels = engine.labels(regions, prepared.crop, chosen)
                pred = labels_to_regions(labels, chosen.labels)
                result.dice[candidate].append([dice(pred[r], ref[r]) for r in range(3)])
        result.cases.append(case.case_id)
        log.info("tune: %d/%d %s", i, len(cases), case.case_id)
    return result


def _reference_regions(path: Path, scheme: str, shape: tuple[int, ...]) -> np.ndarray:
    """WT, TC and ET masks of a reference label map (in its layout's label scheme)."""
    seg, grid = read_label_map(path)
    if grid.shape != shape:
        raise TuningError(f"reference {path} has shape {grid.shape}, its case {shape}")
    return labels_to_regions(seg, scheme)[: len(TUMOUR_REGIONS)]


def _by_ensemble(grid: list[Candidate]) -> dict[tuple[str, int | None], list[Candidate]]:
    groups: dict[tuple[str, int | None], list[Candidate]] = {}
    for c in grid:
        groups.setdefault((c.ensemble, c.top_k), []).append(c)
    return groups
