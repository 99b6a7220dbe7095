"""One ``bratskit tune`` run from the command line's values: the candidate grids read from
their comma-separated lists, the bundle's members scored on labelled cases
(:func:`submission.workbench.tuning.score_candidates`), and the winner stored in the
bundle's manifest unless it is already there or the run is a dry one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from submission.predict.bundle import Manifest
from submission.predict.engine import Engine, PredictOptions, RuntimeOptions
from submission.predict.options import CONFIDENCE_EMPTY
from submission.workbench.tuning import (
    ET_THRESHOLDS,
    PROBABILITY_THRESHOLDS,
    TuneResult,
    read_splits,
    score_candidates,
    write_recommended,
)


class GridError(ValueError):
    """A candidate list that cannot be read; ``flag`` names the option that gave it."""

    def __init__(self, message: str, flag: str) -> None:
        super().__init__(message)
        self.flag = flag


@dataclass(frozen=True)
class Grids:
    """The candidates scored: ET minimum volumes, region probability thresholds and
    confidence rules for members that segment nothing."""

    et_thresholds: tuple[int, ...]
    probabilities: tuple[float, ...]
    rules: tuple[str, ...]


def read_grids(
    et_thresholds: str | None, probability_thresholds: str | None, confidence_rules: str | None
) -> Grids:
    """The grids from comma-separated lists; a list not given takes the default grid
    (:data:`~submission.workbench.tuning.ET_THRESHOLDS`,
    :data:`~submission.workbench.tuning.PROBABILITY_THRESHOLDS`, every rule of
    :data:`~submission.predict.options.CONFIDENCE_EMPTY`).

    Raises:
        GridError: a list that is not numbers, or names unknown rules.
    """
    et_values = _numbers(et_thresholds, int, ET_THRESHOLDS, "--et-thresholds")
    probabilities = _numbers(
        probability_thresholds, float, PROBABILITY_THRESHOLDS, "--probability-thresholds"
    )
    rules = _numbers(confidence_rules, str.strip, CONFIDENCE_EMPTY, "--confidence-empty")
    unknown = [r for r in rules if r not in CONFIDENCE_EMPTY]
    if unknown or not rules:
        raise GridError(
            f"comma-separated rules of {', '.join(CONFIDENCE_EMPTY)}, got {confidence_rules!r}",
            "--confidence-empty",
        )
    return Grids(et_values, probabilities, rules)


def tune_bundle(
    bundle_dir: Path,
    data_dir: Path,
    splits_path: Path | None,
    grids: Grids,
    et_replace: str | None,
    runtime: tuple[str, str, int | None],
) -> tuple[TuneResult, Manifest]:
    """Score every candidate of ``grids`` on the cases of ``data_dir``: out of fold with
    the run's ``splits_path``, else held out. ``runtime`` is the backend, device and
    threads the members run with (fp32). Returns the scores and the bundle's manifest."""
    splits = None if splits_path is None else read_splits(splits_path)
    options = PredictOptions(et_replace=et_replace)
    backend, device, threads = runtime
    engine = Engine(bundle_dir, options, RuntimeOptions(backend, device, "fp32", threads))
    result = score_candidates(
        engine, data_dir, splits, grids.et_thresholds, grids.probabilities, grids.rules
    )
    return result, engine.manifest


def store_result(
    result: TuneResult,
    manifest: Manifest,
    bundle_dir: Path,
    json_path: Path | None,
    dry_run: bool,
) -> str:
    """Write the scores to ``json_path`` when given and the winner into the bundle unless
    it and its ET replacement are the bundle's already or ``dry_run``; what was done."""
    if json_path is not None:
        result.to_json(json_path)
    same_rule = result.et_replace == manifest.recommended.et_replace
    if result.best == result.current and same_rule:
        return "the bundle's defaults are already the best: unchanged"
    if dry_run:
        return "--dry-run: bundle unchanged"
    path = write_recommended(result, manifest, bundle_dir)
    return f"wrote the new defaults into {path}"


def _numbers(text: str | None, kind: Callable, default: tuple, flag: str) -> tuple:
    """A comma-separated list of numbers, or ``default`` when not given."""
    if text is None:
        return default
    try:
        return tuple(kind(t) for t in text.split(","))
    except ValueError:
        raise GridError(f"comma-separated numbers, got {text!r}", flag) from None
