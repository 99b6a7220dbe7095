"""The output folder of a run, before any case is segmented: usable, not the input, locked
for this run alone, rid of this runtime's stale temporary files, with room for the
outputs, and what it already holds (warned about, or kept with ``--resume``).

The lock is ``flock`` on the folder itself, not a lock file: the organisers' evaluation
fails on any file but the label maps (CONTRACT.md section 3), and a lock file left by a
killed run would be one. The kernel drops the lock when the process ends, however it ends,
and it holds across containers that mount the same folder (one kernel, one inode).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from submission.brats import LabelScheme, prediction_filename
from submission.exit_codes import UnusableError
from submission.io.cases import Case, CaseError, read_case_grid
from submission.io.label_maps import check_label_file, older_than_inputs
from submission.io.nifti import TEMPORARY_PREFIX

log = logging.getLogger(__name__)

#: Temporary names of earlier bratskit versions, ``.<id>.nii.gz.<pid>.partial``, which a
#: SIGTERM could leave behind; removed like today's ``.bratskit-*.partial``.
_OLD_TEMPORARY_SUFFIX = ".partial"
#: Bytes kept free beyond the outputs' expected size (logs, the file system's own needs).
FREE_SPACE_MARGIN = 16 * 2**20


class OutputError(OSError, UnusableError):
    """The output folder cannot be used; nothing was written."""


@dataclass
class OutputFolder:
    """What :func:`prepare` found and did, for the run's log and for ``--resume``.

    Attributes:
        kept: case ids whose valid, up-to-date output ``--resume`` keeps (not predicted).
        removed: this runtime's stale temporary files, removed.
        existing: case ids whose output exists and will be overwritten.
        foreign: entries that are no case's output (the organisers' evaluation fails on
            them); warned about, never touched.
    """

    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def warnings(self, output_dir: Path) -> list[str]:
        """The lines the run logs about the folder's former contents."""
        lines = []
        if self.removed:
            lines.append(
                f"removed {len(self.removed)} temporary file(s) of an interrupted run from "
                f"{output_dir}: {', '.join(self.removed)}"
            )
        if self.kept:
            lines.append(
                f"--resume: kept the valid outputs of {len(self.kept)} case(s), not predicted "
                f"again: {_some(self.kept)}"
            )
        if self.existing:
            lines.append(
                f"{output_dir} already holds the outputs of {len(self.existing)} case(s), "
                f"which will be overwritten ({_some(self.existing)}); --resume keeps the valid "
                "ones"
            )
        if self.foreign:
            lines.append(
                f"{output_dir} holds {len(self.foreign)} entr(y/ies) that are no case's output "
                f"({_some(self.foreign)}): the organisers' evaluation fails on unexpected "
                "files; remove them before you submit"
            )
        return lines


def _some(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def check_folders(input_dir: Path, output_dir: Path) -> None:
    """Refuse an output folder that is a file, the input folder, or inside it (a rerun
    would find the outputs as flat cases, and a read-write mount would change the input).

    Raises:
        OutputError: as above; the message says which and what to do.
    """
    output_dir, input_dir = Path(output_dir), Path(input_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"output {output_dir} is a file, not a folder; give a folder")
    if not input_dir.is_dir():
        return  # discovery names the missing input
    inside = output_dir.resolve()
    if inside == input_dir.resolve() or input_dir.resolve() in inside.parents:
        raise OutputError(
            f"output folder {output_dir} is the input folder {input_dir} or inside it: "
            "outputs would mix with the cases; give a separate output folder"
        )


def check_writable(output_dir: Path) -> None:
    """Create ``output_dir`` if needed and prove it is writable with a probe file that
    does not end in ``.nii.gz`` (removed at once).

    Raises:
        OutputError: it cannot be created or written.
    """
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}write-test-", dir=output_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"output folder {output_dir} is not writable ({exc.strerror or exc}); "
            "mount it read-write and writable by the container's user"
        ) from None


class OutputLock:
    """An exclusive ``flock`` on the output folder for one run; a second run into the same
    folder fails at once (exit 3) naming the process that holds it, instead of both
    reporting success while overwriting each other's outputs."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        fd = os.open(self.output_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise OutputError(f"cannot lock {self.output_dir}: {exc.strerror}") from None
            raise OutputError(
                f"output folder {self.output_dir} is in use by another bratskit run "
                f"({_holder(self.output_dir)}); wait for it to end or give another folder"
            ) from None
        self._fd = fd
        return self

    def __exit__(self, *_exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the lock
            self._fd = None


def _holder(folder: Path) -> str:
    """The process holding the lock, as far as this process can see it: ``/proc/locks``
    names the pid (0 or an unmapped pid when it runs in another container)."""
    inode = os.stat(folder).st_ino
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "holder unknown"
    for line in lines:
        parts = line.split()
        if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(inode):
            pid = parts[4]
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                return f"process {pid}: {' '.join(cmd.replace(chr(0), ' ').split())[:200]}"
            except OSError:
                return f"process {pid}, in another container or namespace"
    return "holder in another container or namespace"


def remove_stale_temporaries(output_dir: Path, pid: int | None = None) -> list[str]:
    """Remove this runtime's temporary files from ``output_dir`` (only those of process
    ``pid`` when given); returns their names. Safe only under :class:`OutputLock`: no other
    run can be writing them then."""
    removed = []
    for entry in Path(output_dir).iterdir():
        name = entry.name
        ours = name.startswith(TEMPORARY_PREFIX) and name.endswith(".partial")
        if pid is not None:
            ours = ours and name.startswith(f"{TEMPORARY_PREFIX}{pid}-")
        else:
            ours = ours or (
                name.startswith(".") and ".nii.gz." in name and name.endswith(_OLD_TEMPORARY_SUFFIX)
            )
        if ours and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(name)
    return sorted(removed)


def check_free_space(output_dir: Path, cases: Iterable[Case]) -> None:
    """Refuse to start when the folder has no room for the outputs, instead of finding a
    full disk after the inference. A compressed uint8 label map is far smaller than any
    one compressed input modality, so the largest modality of each case bounds it.

    Raises:
        OutputError: free bytes below the bound plus :data:`FREE_SPACE_MARGIN`.
    """
    expected = sum(max(_size(f) for f in case.files.values()) for case in cases)
    free = shutil.disk_usage(output_dir).free
    if free < expected + FREE_SPACE_MARGIN:
        raise OutputError(
            f"output folder {output_dir} has {free / 2**20:.1f} MiB free; the outputs may "
            f"need up to {expected / 2**20:.1f} MiB (+{FREE_SPACE_MARGIN // 2**20} MiB "
            "margin): free some space or give another folder"
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def prepare(
    input_dir: Path,
    output_dir: Path,
    cases: list[Case],
    scheme: LabelScheme | None = None,
    resume: bool = False,
) -> OutputFolder:
    """Everything a run does to its output folder before the first case, under its lock:
    remove stale temporary files, survey what is there, and (``resume``) decide which
    cases keep their output. ``scheme`` is the label scheme the run writes, which a kept
    output's labels must belong to (None checks no labels, only grid and age).

    Raises:
        OutputError: no room for the outputs still to be written.
    """
    output_dir = Path(output_dir)
    folder = OutputFolder(removed=remove_stale_temporaries(output_dir))
    by_name = {prediction_filename(c.case_id): c for c in cases}
    for entry in sorted(output_dir.iterdir(), key=lambda p: p.name):
        case = by_name.get(entry.name)
        if case is None:
            folder.foreign.append(entry.name)
        elif resume and _resumable(entry, case, scheme):
            folder.kept.append(case.case_id)
        else:
            folder.existing.append(case.case_id)
    kept = set(folder.kept)
    check_free_space(output_dir, [c for c in cases if c.case_id not in kept])
    return folder


def _resumable(path: Path, case: Case, scheme: LabelScheme | None) -> bool:
    """An output ``--resume`` keeps: a regular file, newer than the case's inputs, a valid
    label map on the case's grid (and in ``scheme``)."""
    if path.is_symlink() or not path.is_file() or older_than_inputs(path, case):
        return False
    try:
        grid = read_case_grid(case)
    except CaseError:
        return False
    return not check_label_file(path, scheme, grid)
