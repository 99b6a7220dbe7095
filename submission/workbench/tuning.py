"""``bratskit tune``: choose a bundle's ensemble method, top-k, confidence rule for empty
members, ET threshold and per-region probability thresholds on labelled cases, and store
the winner as the bundle's recommended defaults.

This is how paper 002 chose its ET minimum volume (section 2.6, Table 1: thresholds 100,
400 and 600 scored, 600 kept) and compared its regression and classification voting
ensembles (section 2.5); paper 004 (section 3.2) averages the top N/2 most confident
members; the confidence of a member that segments nothing, which the paper leaves open,
is scored under each rule of :data:`~submission.predict.options.CONFIDENCE_EMPTY` for
every confidence candidate. The probability threshold of each region (0.5 by default) is
tuned too (small networks trained briefly are often under-confident on the oedema border:
a lower WT threshold recovers it). A bundle with label-based imported members (nnU-Net)
also scores ``argmax``, which has no threshold. Every candidate is scored on the same
member probabilities, computed once per case.

Two modes:

* **out-of-fold** (``splits`` given, the run's ``splits.json``): each training case is
  predicted only by the members of the fold that held it out, so no network scores a case
  it trained on. The ensemble then combines that fold's members (with one member per fold
  the three methods coincide and only the ET threshold matters); confidence uses its
  default k, because k over one fold's members does not carry over to all folds.
* **held-out** (no splits): the cases are a tuning set no member trained on; every member
  predicts every case, and confidence is also scored for each k from 1 to N.

The score is the mean over cases of the mean 2021 Dice of the bundle's regions (WT, TC
and ET; RC or CC too, or GTV alone, for the tasks that have them; CONTRACT.md 5: both empty
gives 1, so an ET threshold that empties a false-positive ET earns its point). HD95 is not
computed for every candidate. Ties keep the bundle's current defaults, then the earlier
candidate (mean, vote, confidence, argmax; smaller k; the rules in
:data:`~submission.predict.options.CONFIDENCE_EMPTY` order; smaller ET threshold; larger
probability thresholds).

What ET removed by the ET threshold becomes is not tuned: every candidate is
post-processed with the engine's ``et_replace`` (the bundle's unless ``tune --et-replace``
says otherwise, :mod:`submission.predict.postprocess`), as ``predict`` would, and it is
stored with the winner.

Scores are exact, not approximations: each candidate's regions go through the runtime's
own :func:`submission.predict.postprocess.postprocess` on the cropped case, and voxels of the
reference outside the crop count as missed, as on the full grid (a test checks equality
with ``predict`` followed by ``evaluate``). The ET threshold either keeps or removes a
case's ET, so each probability-threshold choice needs two post-processings per case,
whatever the number of ET thresholds; candidates whose ensembles give the same region
masks (the confidence rules agree wherever no member is empty) share them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from submission.brats import ENHANCING, LabelScheme, get_scheme, labels_to_regions
from submission.evaluation.overlap_2021 import dice
from submission.exit_codes import UnusableError
from submission.io.cases import discover_cases
from submission.io.nifti import read_label_map
from submission.io.references import find_label_maps
from submission.predict.bundle import Manifest, with_recommended, write_manifest
from submission.predict.engine import Engine
from submission.predict.ensemble import region_masks
from submission.predict.options import CONFIDENCE_EMPTY, PAPER_ENSEMBLES, region_thresholds
from submission.predict.postprocess import postprocess
from submission.predict.preprocess import crop

log = logging.getLogger(__name__)

#: ET minimum volumes scored by default (voxels): 002's 100, 400 and 600, and neighbours.
ET_THRESHOLDS = (0, 50, 100, 200, 300, 400, 500, 600, 800, 1000)
#: Probability thresholds scored for each region.
PROBABILITY_THRESHOLDS = (0.3, 0.4, 0.5)


class TuningError(ValueError, UnusableError):
    """No case to tune on: no references, or no case in the splits."""


@dataclass(frozen=True)
class Candidate:
    """One choice of defaults; ``top_k`` None is the confidence default, ceil(N/2);
    ``threshold`` is the probability threshold of each of the bundle's regions, in order;
    ``confidence_empty`` the confidence rule for empty members (None: the bundle's, and
    for mean and vote, which have none)."""

    ensemble: str
    top_k: int | None
    et_threshold: int
    threshold: tuple[float, ...]
    confidence_empty: str | None = None

    def __str__(self) -> str:
        k = f" k={self.top_k}" if self.ensemble == "confidence" and self.top_k else ""
        confidence = self.ensemble == "confidence" and self.confidence_empty
        rule = f" {self.confidence_empty}" if confidence else ""
        p = "/".join(f"{t:g}" for t in self.threshold)
        return f"{self.ensemble}{k}{rule}, ET {self.et_threshold}, p {p}"

    def recommended_threshold(self, regions: Sequence[str]) -> float | dict[str, float]:
        """As the manifest stores it: one number when the regions' thresholds agree."""
        if len(set(self.threshold)) == 1:
            return self.threshold[0]
        return dict(zip(regions, self.threshold))


@dataclass
class TuneResult:
    """Per candidate, the Dice of each region for each case (cases x regions), every one
    post-processed with ``et_replace`` (None: the bundle's)."""

    mode: str
    cases: list[str]
    current: Candidate
    regions: tuple[str, ...]
    dice: dict[Candidate, list[list[float]]] = field(default_factory=dict)
    et_replace: str | None = None

    def score(self, candidate: Candidate) -> float:
        """Mean over cases of the mean Dice of the regions."""
        return float(np.mean(self.dice[candidate]))

    def region_means(self, candidate: Candidate) -> list[float]:
        return np.mean(self.dice[candidate], axis=0).tolist()

    @property
    def best(self) -> Candidate:
        """The highest score; ties keep the current defaults, then the earlier candidate."""
        order = [self.current, *(c for c in self.dice if c != self.current)]
        ranked = max(enumerate(order), key=lambda ic: (round(self.score(ic[1]), 10), -ic[0]))
        return ranked[1]

    def table(self, top: int = 15) -> str:
        """The ``top`` candidates' mean Dice per region and overall, best first, and the
        current defaults' row wherever it ranks."""
        ranked = sorted(self.dice, key=lambda c: -self.score(c))
        rows = ranked[:top] + ([self.current] if self.current not in ranked[:top] else [])
        best = self.best
        width = 52 + 4 * max(0, len(self.regions) - 3)
        heads = "".join(f" {r:>7}" for r in (*self.regions, "mean"))
        lines = [f"{'rank':>4}  {'candidate':<{width}}{heads}"]
        for c in rows:
            means = "".join(f" {d:7.4f}" for d in (*self.region_means(c), self.score(c)))
            marks = " <- best" if c == best else ""
            marks += " (current)" if c == self.current else ""
            lines.append(f"{ranked.index(c) + 1:>4}  {c!s:<{width}}{means}{marks}")
        lines.append(f"({len(ranked)} candidates)")
        return "\n".join(lines)

    def report(self) -> str:
        """What ``bratskit tune`` prints: the mode, :meth:`table`, and the best candidate
        against the current defaults."""
        best, current = self.best, self.current
        gain = self.score(best) - self.score(current)
        return "\n".join(
            [
                f"== {self.mode}: {len(self.cases)} cases, mean Dice of "
                f"{', '.join(self.regions[:-1])}{' and ' if len(self.regions) > 1 else ''}"
                f"{self.regions[-1]}; ET below the ET threshold: "
                f"{self.et_replace or 'the bundle rule'}",
                self.table(),
                f"best: {best} (mean Dice {self.score(best):.4f}); current defaults: {current} "
                f"({self.score(current):.4f}); improvement {gain:+.4f}",
            ]
        )

    def to_json(self, path: Path) -> None:
        rows = [
            {
                **vars(c),
                "dice": dict(zip(self.regions, self.region_means(c))),
                "score": self.score(c),
            }
            for c in self.dice
        ]
        best = vars(self.best)
        Path(path).write_text(
            json.dumps(
                {
                    "mode": self.mode,
                    "regions": list(self.regions),
                    "cases": self.cases,
                    "et_replace": self.et_replace,
                    "current": vars(self.current),
                    "best": best,
                    "candidates": rows,
                },
                indent=2,
            )
            + "\n"
        )


def candidates(
    n_members: int,
    per_k: bool,
    et_thresholds: Sequence[int],
    probability_thresholds: Sequence[float] = PROBABILITY_THRESHOLDS,
    regions: int = 3,
    rules: Sequence[str] = CONFIDENCE_EMPTY,
    argmax: bool = False,
) -> list[Candidate]:
    """The grid: each ensemble method (confidence for each k when ``per_k``, and for each
    of ``rules`` for empty members) x ET threshold x a probability threshold for each of
    ``regions`` regions."""
    choices: list[tuple[str, int | None, str | None]] = [("mean", None, None), ("vote", None, None)]
    ks = range(1, n_members + 1) if per_k else [None]
    choices += [("confidence", k, rule) for k in ks for rule in rules]
    assert {m for m, _, _ in choices} == set(PAPER_ENSEMBLES)
    per_region = sorted(set(probability_thresholds), reverse=True)
    grid = [
        Candidate(m, k, t, p, rule)
        for m, k, rule in choices
        for t in sorted(set(et_thresholds))
        for p in itertools.product(per_region, repeat=regions)
    ]
    return grid + [
        Candidate("argmax", None, t, (0.5,) * regions, None)
        for t in (sorted(set(et_thresholds)) if argmax else ())
    ]


def read_splits(path: Path) -> dict[str, int]:
    """Case id -> the fold that holds it out, from a run's ``splits.json``."""
    raw = json.loads(Path(path).read_text())
    return {case_id: fold for fold, ids in enumerate(raw["folds"]) for case_id in ids}


def score_candidates(
    engine: Engine,
    data_dir: Path,
    splits: dict[str, int] | None = None,
    et_thresholds: Sequence[int] = ET_THRESHOLDS,
    probability_thresholds: Sequence[float] = PROBABILITY_THRESHOLDS,
    confidence_rules: Sequence[str] = CONFIDENCE_EMPTY,
) -> TuneResult:
    """Score every candidate on the labelled cases of ``data_dir`` (see the module doc),
    the confidence ensemble under each of ``confidence_rules`` for empty members.

    Raises:
        TuningError: no case has a reference (or, out of fold, a fold).
    """
    try:
        references = find_label_maps(data_dir)
    except ValueError as exc:  # no reference label map at all
        raise TuningError(str(exc)) from None
    required = engine.required_modalities
    cases = [c for c in discover_cases(data_dir, required).cases if c.case_id in references]
    if splits is not None:
        cases = [c for c in cases if c.case_id in splits]
    if not cases:
        where = " that the splits hold out" if splits is not None else ""
        raise TuningError(f"no case with a reference label map{where} in {data_dir}")
    current = _current(engine, splits is None)
    regions = engine.manifest.region_names
    if not get_scheme(engine.options.labels).has_enhancing:
        et_thresholds = ()  # no ET to threshold (MEN-RT): the candidates differ in nothing
    grid = candidates(
        engine.manifest.fewest_members if splits is None else 0,
        splits is None,
        [*et_thresholds, current.et_threshold],
        [*probability_thresholds, *current.threshold],
        len(regions),
        list(dict.fromkeys([*confidence_rules, *filter(None, [current.confidence_empty])])),
        argmax=any(m.labels is not None for m in engine.manifest.members),
    )
    if current not in grid:
        grid.insert(0, current)
    mode = "out-of-fold" if splits is not None else "held-out"
    result = TuneResult(mode, [], current, regions, et_replace=engine.options.et_replace)
    result.dice = {c: [] for c in grid}
    for i, case in enumerate(cases, 1):
        fold = None if splits is None else splits[case.case_id]
        _score_case(engine, case, references[case.case_id], fold, result)
        result.cases.append(case.case_id)
        log.info("tune: %d/%d %s", i, len(cases), case.case_id)
    return result


def _current(engine: Engine, per_k: bool) -> Candidate:
    rec = engine.manifest.recommended
    k = None
    if rec.ensemble == "confidence" and per_k:
        k = rec.top_k or math.ceil(engine.manifest.fewest_members / 2)
    thresholds = region_thresholds(rec.threshold, engine.manifest.region_names)
    rule = rec.confidence_empty if rec.ensemble == "confidence" else None
    return Candidate(rec.ensemble, k, rec.et_threshold, tuple(thresholds.values()), rule)


def _score_case(
    engine: Engine, case, reference: Path, fold: int | None, result: TuneResult
) -> None:
    """Append every candidate's Dice of each of ``result.regions`` for one case."""
    prepared, grid = engine.prepare_case(case)
    keep = (lambda m: True) if fold is None else (lambda m: m.fold == fold)
    probs = engine.member_probabilities(prepared, [], keep=keep)
    info = prepared.crop
    manifest = engine.manifest
    ref_scheme = manifest.scheme if manifest.task else get_scheme(case.year)
    ref_full = _reference_regions(reference, ref_scheme, grid.shape, result.regions)
    ref = crop(ref_full, info)
    outside = ref_full.sum(axis=(1, 2, 3)) - ref.sum(axis=(1, 2, 3))
    inside = crop(np.ones(grid.shape, dtype=bool), info)  # not the crop's zero padding
    scheme = get_scheme(engine.options.labels)
    replace_with = engine.options.et_replace
    scored = [scheme.region_names.index(r) for r in result.regions]

    def region_dice(regions_rdhw: np.ndarray, et_threshold: int) -> list[float]:
        labels = postprocess(regions_rdhw, scheme, et_threshold, replace_with)
        pred = labels_to_regions(labels, scheme)[scored] & inside
        return [_dice(pred[r], ref[r], int(outside[r])) for r in range(len(scored))]

    groups: dict[tuple, list[Candidate]] = {}
    for c in result.dice:
        groups.setdefault((c.ensemble, c.top_k, c.confidence_empty, c.threshold), []).append(c)
    masks: dict[tuple, np.ndarray] = {}
    # Region masks -> (Dice with the ET kept, Dice with it removed): candidates that
    # ensemble to the same masks are post-processed and scored once.
    scored_masks: dict[bytes, tuple[list[float], list[float]]] = {}
    for (method, k, rule, thresholds), group in groups.items():
        per_region = dict(zip(result.regions, thresholds))
        regions = region_masks(
            probs,
            scheme.region_names,
            method,
            per_region,
            k,
            cache=masks,
            confidence_empty=rule or engine.options.confidence_empty,
            scheme_regions=scheme.regions,
        )
        et_voxels = (
            int(np.count_nonzero(regions[scheme.region_names.index(ENHANCING)]))
            if scheme.has_enhancing
            else 0
        )
        digest = hashlib.blake2b(np.packbits(regions).tobytes(), digest_size=16).digest()
        if digest not in scored_masks:
            kept = region_dice(regions, 0)
            removed = region_dice(regions, et_voxels + 1) if et_voxels else kept
            scored_masks[digest] = (kept, removed)
        kept, removed = scored_masks[digest]
        for c in group:
            result.dice[c].append(removed if 0 < et_voxels < c.et_threshold else kept)


def write_recommended(result: TuneResult, manifest: Manifest, bundle_dir: Path) -> Path:
    """Store ``result``'s best candidate, and the ``et_replace`` it was scored with, as the
    recommended defaults of ``manifest`` (the bundle's, as read before tuning) in
    ``bundle_dir``'s ``manifest.json``; returns its path.

    Raises:
        BundleError: the candidate is not a valid recommendation for the bundle.
    """
    best = result.best
    rule = best.confidence_empty or manifest.recommended.confidence_empty
    tuned = with_recommended(
        manifest,
        ensemble=best.ensemble,
        top_k=best.top_k,
        confidence_empty=rule,
        et_threshold=best.et_threshold,
        et_replace=result.et_replace or manifest.recommended.et_replace,
        threshold=best.recommended_threshold(result.regions),
    )
    return write_manifest(bundle_dir, tuned)


def _dice(pred: np.ndarray, ref: np.ndarray, ref_outside: int) -> float:
    """:func:`dice` on the full grid, from the crop and the reference voxels outside it."""
    if ref_outside == 0:
        return dice(pred, ref)
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(ref)) + ref_outside
    return 2.0 * int(np.count_nonzero(pred & ref)) / total


def _reference_regions(
    path: Path, scheme: LabelScheme, shape: tuple[int, ...], regions: Sequence[str]
) -> np.ndarray:
    """The masks of ``regions`` in a reference label map of ``scheme``.

    Raises:
        TuningError: a shape other than the case's, or a region the scheme lacks.
    """
    seg, grid = read_label_map(path)
    if grid.shape != shape:
        raise TuningError(f"reference {path} has shape {grid.shape}, its case {shape}")
    missing = [r for r in regions if r not in scheme.regions]
    if missing:
        raise TuningError(
            f"reference {path} is read as {scheme.name} labels, which have no {missing}"
        )
    all_regions = labels_to_regions(seg, scheme)
    return all_regions[[scheme.region_names.index(r) for r in regions]]
