"""The per-case loop of a container run: discover, load, segment, write, isolate failures.

One failing case never stops the others, nothing but ``<case-id>.nii.gz`` files are
ever written to the output folder, and each is written atomically, so a failure
leaves nothing partial behind. The segmenter (the model bundle's ensemble, from the
inference engine) is passed in.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from submission.brats import prediction_filename
from submission.cases import Case, CaseError, discover_cases, load_case
from submission.nifti import Grid, write_label_map

log = logging.getLogger(__name__)

#: image_cdhw (float32, 4 x D x H x W, canonical modality order) and its grid -> uint8 labels.
Segmenter = Callable[[np.ndarray, Grid], np.ndarray]


class OutputError(OSError):
    """The output folder cannot be used; nothing was written."""


@dataclass
class RunReport:
    """What a run did: case ids written, and failed case ids with their reason."""

    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every case found got its output."""
        return not self.failed


def check_output_folder(output_dir: Path) -> None:
    """Create ``output_dir`` if needed and prove it is writable with a probe file that
    does not end in ``.nii.gz`` (removed at once).

    Raises:
        OutputError: it cannot be created or written.
    """
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".bratskit-write-test-", dir=output_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"output folder {output_dir} is not writable ({exc.strerror or exc}); "
            "mount it read-write and writable by the container's user"
        ) from None


def run_cases(input_dir: Path, output_dir: Path, segment: Segmenter) -> RunReport:
    """Segment every case of ``input_dir`` into ``output_dir``.

    Raises:
        InputError: no case found, or the input folder is missing.
        OutputError: the output folder is not writable.
    """
    check_output_folder(output_dir)
    found = discover_cases(input_dir)
    for warning in found.warnings:
        log.warning(warning)
    report = RunReport()
    for error in found.errors:
        log.error("FAILED %s", error)
        report.failed[error.case_id] = error.problem
    for case in found.cases:
        _run_one(case, Path(output_dir), segment, report)
    log.info(
        "%d of %d cases written%s",
        len(report.written),
        len(report.written) + len(report.failed),
        f"; failed: {', '.join(sorted(report.failed))}" if report.failed else "",
    )
    return report


def _run_one(case: Case, output_dir: Path, segment: Segmenter, report: RunReport) -> None:
    start = time.perf_counter()
    try:
        image_cdhw, grid = load_case(case)
        seg_dhw = segment(image_cdhw, grid)
        write_label_map(seg_dhw, grid, output_dir / prediction_filename(case.case_id))
    except CaseError as exc:
        log.error("FAILED %s", exc)
        report.failed[case.case_id] = exc.problem
        return
    except Exception as exc:  # one case's failure must never stop the others
        log.exception("FAILED case %s: %s", case.case_id, exc)
        report.failed[case.case_id] = f"{type(exc).__name__}: {exc}"
        return
    report.seconds[case.case_id] = time.perf_counter() - start
    report.written.append(case.case_id)
    log.info("ok %s %.1fs", case.case_id, report.seconds[case.case_id])
