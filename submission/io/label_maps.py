"""A written label map checked against its case: readable, labels in the scheme, the
input's exact grid (CONTRACT.md section 3), and not older than the case's input files.

``bratskit validate`` and ``package`` report these checks; ``predict --resume`` keeps an
output only when it passes them, so the three agree on what a valid output is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from submission.brats import LabelScheme
from submission.io.cases import AFFINE_TOLERANCE, Case
from submission.io.nifti import Grid, NiftiError, read_label_map


def check_label_file(path: Path, scheme: LabelScheme | None, grid: Grid | None = None) -> list[str]:
    """Problems of one output label map; an empty list when it is valid.

    Args:
        path: the ``.nii.gz`` file.
        scheme: label scheme its values must belong to; None skips the label check.
        grid: the input case's grid; None skips the shape and affine checks.
    """
    try:
        seg, out_grid = read_label_map(path)
    except NiftiError as exc:
        return [str(exc).removeprefix(f"{path}: ")]
    problems = []
    bad = [] if scheme is None else sorted(set(np.unique(seg).tolist()) - scheme.valid_labels)
    if bad:
        problems.append(
            f"labels {bad} are not in the {scheme.name} scheme "
            f"(valid: {sorted(scheme.valid_labels)}); is --labels right?"
        )
    if grid is not None:
        if out_grid.shape != grid.shape:
            problems.append(f"shape {out_grid.shape} differs from the input's {grid.shape}")
        # Like with like: the input's qform and sform may differ (nibabel's affine is then
        # the sform), and an output carrying the input's header has both.
        for name in ("qform", "sform"):
            matrix, code = getattr(out_grid.header, f"get_{name}")(coded=True)
            expected, expected_code = getattr(grid.header, f"get_{name}")(coded=True)
            if not code:
                continue
            if not expected_code:
                expected = grid.affine
            if not np.allclose(matrix, expected, atol=AFFINE_TOLERANCE):
                problems.append(f"{name} differs from the input's; copy the input header")
        if not np.allclose(out_grid.affine, grid.affine, atol=AFFINE_TOLERANCE):
            problems.append("affine differs from the input's (lost or identity affine?)")
    return list(dict.fromkeys(problems))


def older_than_inputs(path: Path, case: Case) -> bool:
    """True when ``path`` was written before the newest of ``case``'s input files changed:
    the prediction of an earlier version of the case."""
    return path.stat().st_mtime < max(f.stat().st_mtime for f in case.files.values())
