"""The per-case loop of a container run: discover, load, segment, write, isolate failures.

One failing case never stops the others, nothing but ``<case-id>.nii.gz`` files are
ever written to the output folder, and each is written atomically, so a failure
leaves nothing partial behind. The segmenter (the model bundle's ensemble, from the
inference engine) is passed in, either as a plain function or as a :class:`Pipeline`
whose ``prepare`` step (preprocessing) runs with the loading.

I/O overlaps compute: while case *i* is segmented, one thread reads and prepares case
*i + 1* (at most one case ahead, to bound memory) and another writes case *i - 1*.
nibabel's gzip decoding, numpy and the backends release the GIL for their heavy parts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from submission.brats import MODALITIES, prediction_filename
from submission.io.cases import Case, CaseError, discover_cases, load_case
from submission.io.nifti import Grid, write_label_map
from submission.predict.interruption import Interrupted, uninterrupted
from submission.predict.output_folder import (
    OutputLock,
    check_folders,
    check_writable,
    prepare,
    remove_stale_temporaries,
)

log = logging.getLogger(__name__)

#: image_cdhw (float32, 4 x D x H x W, canonical modality order) -> uint8 labels (D, H, W)
#: on the image's grid.
Segmenter = Callable[[np.ndarray], np.ndarray]


@dataclass
class CaseOutput:
    """What segmenting one case produced.

    Attributes:
        labels_dhw: uint8 label map on the input grid.
        timings: seconds per stage (preprocess, localise, members, ensemble, ...).
        warnings: things the log line should say (fallbacks, an empty stage 1).
        et_voxels: enhancing-tumour voxels written, when known.
        grid: the input's grid, set by the runner for the writer.
    """

    labels_dhw: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    et_voxels: int | None = None
    grid: Grid | None = None


class Pipeline(Protocol):
    """A segmenter in two steps; ``prepare`` runs in the loading thread, ahead of time.

    A pipeline may also read cases itself: ``prepare_case(case) -> (prepared, grid)``
    instead of :func:`~submission.io.cases.load_case` then ``prepare``, and
    ``required_modalities``, what discovery requires of a case (all four otherwise).
    """

    def prepare(self, image_cdhw: np.ndarray) -> Any:
        """Per-case work that needs no model (cropping, normalising)."""

    def segment(self, prepared: Any) -> CaseOutput:
        """The models, ensemble and post-processing of one prepared case."""


class _FunctionPipeline:
    """A plain :data:`Segmenter` as a :class:`Pipeline`."""

    def __init__(self, segment: Segmenter) -> None:
        self._segment = segment

    def prepare(self, image_cdhw: np.ndarray) -> np.ndarray:
        return image_cdhw

    def segment(self, prepared: np.ndarray) -> CaseOutput:
        return CaseOutput(np.asarray(self._segment(prepared)))


@dataclass
class RunReport:
    """What a run did: case ids written, kept (``--resume``), and failed with their reason."""

    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every case found got its output."""
        return not self.failed

    def summary(self, output_dir: Path) -> str:
        """The run's closing line: cases written of found, seconds, and the process's peak
        resident memory (what the organisers' 16 GB limit is measured against)."""
        n = len(self.written) + len(self.failed)
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        mean = sum(self.seconds.values()) / max(len(self.seconds), 1)
        kept = f"; {len(self.kept)} more kept from an earlier run (--resume)" if self.kept else ""
        return (
            f"{len(self.written)} of {n} cases written to {output_dir} in "
            f"{self.wall_seconds:.1f} s ({mean:.1f} s per case), peak RSS {peak_gb:.2f} GB{kept}"
        )


def run_cases(
    input_dir: Path,
    output_dir: Path,
    segment: Segmenter | Pipeline,
    overlap_io: bool = True,
    resume: bool = False,
) -> RunReport:
    """Segment every case of ``input_dir`` into ``output_dir``.

    The output folder is locked for the run (:class:`OutputLock`) and cleaned of stale
    temporary files first; its existing contents are warned about
    (:func:`submission.predict.output_folder.prepare`).

    Args:
        segment: a :data:`Segmenter` function or a :class:`Pipeline`; a pipeline's
            ``scheme`` attribute, when it has one, is the label scheme ``resume`` checks.
        overlap_io: read the next case and write the previous one in background
            threads while a case is segmented.
        resume: keep the outputs that exist, are valid and are newer than their case's
            inputs, and predict only the other cases.

    Raises:
        InputError: no case found, or the input folder is missing.
        OutputError: the output folder is a file, the input, not writable, in use by
            another run, or without room for the outputs.
        Interrupted: SIGTERM or SIGINT under
            :func:`submission.predict.interruption.interruptible`; the write in progress
            was finished, nothing temporary is left, and the exception lists the cases
            written and left.
    """
    check_folders(input_dir, output_dir)
    check_writable(output_dir)
    pipeline = segment if hasattr(segment, "prepare") else _FunctionPipeline(segment)
    found = discover_cases(input_dir, getattr(pipeline, "required_modalities", MODALITIES))
    for warning in found.warnings:
        log.warning(warning)
    report = RunReport()
    for error in found.errors:
        log.error("FAILED %s", error)
        report.failed[error.case_id] = error.problem
    with OutputLock(output_dir):
        folder = prepare(
            input_dir, output_dir, found.cases, getattr(pipeline, "scheme", None), resume
        )
        for warning in folder.warnings(Path(output_dir)):
            log.warning(warning)
        report.kept = folder.kept
        kept = set(folder.kept)
        cases = [c for c in found.cases if c.case_id not in kept]
        try:
            _run(cases, Path(output_dir), pipeline, overlap_io, report)
        finally:
            remove_stale_temporaries(output_dir, pid=os.getpid())
    _remove_stale_outputs(Path(output_dir), report)
    log.info(
        "%d of %d cases written in %.1f s%s",
        len(report.written),
        len(report.written) + len(report.failed),
        report.wall_seconds,
        f"; failed: {', '.join(sorted(report.failed))}" if report.failed else "",
    )
    return report


def _run(
    cases: list[Case], output_dir: Path, pipeline: Pipeline, overlap_io: bool, report: RunReport
) -> None:
    """The loop over ``cases``, reading ahead and writing behind; on :class:`Interrupted`
    it drops the reads to come and the writes not begun, finishes the write in progress
    and re-raises with the cases written and left."""
    start = time.perf_counter()
    workers = 1 if overlap_io else 0
    with (
        _Executor(workers, "bratskit-read") as reader,
        _Executor(workers, "bratskit-write") as writer,
    ):
        pending: list[tuple[Case, CaseOutput, float, Future]] = []
        try:
            ahead = reader.submit(_prepare, pipeline, cases[0]) if cases else None
            for i, case in enumerate(cases):
                loaded = ahead
                ahead = None
                if i + 1 < len(cases):
                    ahead = reader.submit(_prepare, pipeline, cases[i + 1])
                segmented = _segment(case, pipeline, loaded, report)
                if segmented is not None:
                    out, seconds = segmented
                    path = output_dir / prediction_filename(case.case_id)
                    # Overlapped, a write handed over is always a write recorded (a
                    # sequential write runs inline: a signal abandons it, as documented).
                    with uninterrupted() if overlap_io else contextlib.nullcontext():
                        pending.append((case, out, seconds, writer.submit(_write, out, path)))
                pending = _finish(pending, report, wait=False)
            _finish(pending, report, wait=True)
        except Interrupted as stop:
            reader.shutdown(wait=False, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=True)
            _finish([p for p in pending if not p[3].cancelled()], report, wait=True)
            stop.written = list(report.written)
            stop.left = [c.case_id for c in cases if c.case_id not in set(report.written)]
            raise
        finally:
            report.wall_seconds = time.perf_counter() - start


def _remove_stale_outputs(output_dir: Path, report: RunReport) -> None:
    """A case that failed must not leave the output of an earlier run, which ``validate``
    would accept and ``package`` zip: remove it, and say so in the case's failure."""
    for case_id in sorted(report.failed):
        stale = output_dir / prediction_filename(case_id)
        try:
            if stale.parent != output_dir or stale.is_symlink() or not stale.is_file():
                continue
            stale.unlink()
        except OSError:  # e.g. a name too long to exist: nothing of an earlier run
            continue
        report.failed[case_id] += f"; removed {stale.name}, the output of an earlier run"
        log.warning("%s: removed %s, the output of an earlier run", case_id, stale)


class _Executor(ThreadPoolExecutor):
    """A one-thread executor, or (``workers`` 0) one that runs each call at once."""

    def __init__(self, workers: int, name: str) -> None:
        super().__init__(max(workers, 1), thread_name_prefix=name)
        self.inline = workers == 0

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if not self.inline:
            return super().submit(fn, *args, **kwargs)
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to the caller through the future, as a thread's
            future.set_exception(exc)  # (an Interrupted, a BaseException, goes up at once)
        return future


def _prepare(pipeline: Pipeline, case: Case) -> tuple[Any, float, Grid]:
    """Read and prepare one case (in the reading thread); returns the seconds it took."""
    start = time.perf_counter()
    if hasattr(pipeline, "prepare_case"):
        prepared, grid = pipeline.prepare_case(case)
    else:
        image_cdhw, grid = load_case(case)
        prepared = pipeline.prepare(image_cdhw)
    return prepared, time.perf_counter() - start, grid


def _segment(case: Case, pipeline: Pipeline, loaded: Future, report: RunReport):
    """The case's output and seconds so far, or None after recording its failure."""
    try:
        prepared, read_seconds, grid = loaded.result()
        start = time.perf_counter()
        out = pipeline.segment(prepared)
        out.timings = {"read": read_seconds, **out.timings}
        out.grid = grid
        return out, read_seconds + time.perf_counter() - start
    except CaseError as exc:
        log.error("FAILED %s", exc)
        report.failed[case.case_id] = exc.problem
    except Exception as exc:  # one case's failure must never stop the others
        log.exception("FAILED case %s: %s", case.case_id, exc)
        report.failed[case.case_id] = f"{type(exc).__name__}: {exc}"
    return None


def _write(out: CaseOutput, path: Path) -> float:
    start = time.perf_counter()
    write_label_map(out.labels_dhw, out.grid, path)
    return time.perf_counter() - start


def _finish(pending, report: RunReport, wait: bool):
    """Record the writes that are done (all of them with ``wait``); returns the others."""
    left = []
    for case, out, seconds, future in pending:
        if not (wait or future.done()):
            left.append((case, out, seconds, future))
            continue
        try:
            out.timings["write"] = future.result()
        except Exception as exc:
            log.error("FAILED case %s: cannot write its output: %s", case.case_id, exc)
            report.failed[case.case_id] = f"write failed: {exc}"
            continue
        report.seconds[case.case_id] = seconds + out.timings["write"]
        report.timings[case.case_id] = dict(out.timings)
        report.written.append(case.case_id)
        log.info("ok %s", case_line(case.case_id, report.seconds[case.case_id], out))
    return left


def case_line(case_id: str, seconds: float, out: CaseOutput) -> str:
    """``<id> 12.3 s (read 1.2, preprocess 0.4, ...) ET 1234 voxels; <warnings>``."""
    stages = ", ".join(f"{k} {v:.2f}" for k, v in out.timings.items())
    et = "" if out.et_voxels is None else f" ET {out.et_voxels} voxels"
    notes = f"; {'; '.join(out.warnings)}" if out.warnings else ""
    return f"{case_id} {seconds:.1f} s ({stages}){et}{notes}"
