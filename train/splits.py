"""K-fold cross-validation splits (paper 002 §2.5), saved once per run and reused.

``splits.json`` holds the seed, the optional held-out test list and, per fold, the
validation case ids; a fold trains on every other non-test case. The file is written the
first time a run starts and read on every later start (resume, other folds on other
machines). It is never regenerated silently: if the data folder no longer holds the same
cases, training stops and says which ids differ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from submission.exit_codes import BadValueError

SPLITS_FILE = "splits.json"


class SplitError(ValueError, BadValueError):
    """The saved split does not match the data or the request."""


def make_splits(case_ids: list[str], folds: int, seed: int, test_fraction: float = 0.0) -> dict:
    """Seeded shuffle of the ids, an optional test slice, then ``folds`` near-equal parts.

    Returns:
        ``{"seed", "folds": [[val ids of fold 0], ...], "test": [ids]}``, ids sorted in
        each list.
    """
    ids = sorted(case_ids)
    if len(set(ids)) != len(ids):
        raise SplitError("case ids are not unique")
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    n_test = int(round(test_fraction * len(ids)))
    test, rest = shuffled[:n_test], shuffled[n_test:]
    if len(rest) < folds:
        raise SplitError(f"{len(rest)} training case(s) cannot make {folds} folds")
    parts = np.array_split(np.arange(len(rest)), folds)
    return {
        "seed": seed,
        "folds": [sorted(rest[i] for i in part) for part in parts],
        "test": sorted(test),
    }


def fold_cases(splits: dict, fold: int) -> tuple[list[str], list[str]]:
    """(training ids, validation ids) of one fold."""
    if not 0 <= fold < len(splits["folds"]):
        raise SplitError(f"fold {fold} does not exist; the split has {len(splits['folds'])}")
    val = splits["folds"][fold]
    train = sorted(i for k, part in enumerate(splits["folds"]) if k != fold for i in part)
    return train, list(val)


def load_or_create_splits(
    run_dir: Path, case_ids: list[str], folds: int, seed: int, test_fraction: float = 0.0
) -> dict:
    """The run's split: read ``splits.json`` if present and check it, else create it.

    Raises:
        SplitError: the saved split names cases that are not in the data, or misses some
            that are, or has another number of folds.
    """
    path = Path(run_dir) / SPLITS_FILE
    if not path.exists():
        splits = make_splits(case_ids, folds, seed, test_fraction)
        tmp = path.with_name(f".{SPLITS_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(splits, indent=1))
        try:
            os.link(tmp, path)  # first writer wins when fold jobs start together
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    splits = json.loads(path.read_text())
    saved = {i for part in splits["folds"] for i in part} | set(splits["test"])
    if saved != set(case_ids):
        gone, new = sorted(saved - set(case_ids)), sorted(set(case_ids) - saved)
        raise SplitError(
            f"{path} does not match the data: missing {gone[:5]}, new {new[:5]}; "
            "train with the same data folder, or start a new run folder"
        )
    if len(splits["folds"]) != folds:
        raise SplitError(f"{path} has {len(splits['folds'])} folds, the recipe asks {folds}")
    return splits
