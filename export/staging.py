"""All-or-nothing bundle folders: build in a temporary folder next to ``--out``, then rename.

An export that fails (or is interrupted) leaves no half-written bundle: the temporary
folder is removed and ``--out`` is untouched. A non-empty ``--out`` is replaced only with
``force``; the old folder is moved aside first and deleted after the rename, so at every
moment ``--out`` is either the old bundle or the complete new one. The finished bundle is
readable by anyone (folders 0755, files 0644): a submission image's non-root user reads it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from export.errors import OutputExistsError

log = logging.getLogger(__name__)


def check_output(out: Path, force: bool = False, inputs: Sequence[Path] = ()) -> None:
    """Refuse an ``out`` that is a file, or a non-empty folder without ``force``, or that
    is or holds one of ``inputs`` (``--force`` would delete it).

    Raises:
        OutputExistsError: naming the folder and the fix.
    """
    out = Path(out)
    for path in inputs:
        if out.resolve() == Path(path).resolve() or out.resolve() in Path(path).resolve().parents:
            raise OutputExistsError(f"--out {out} holds the input {path}: choose another folder")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} is a file: choose a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(
            f"--out {out} exists and is not empty: choose another folder or pass --force "
            "to replace it"
        )


@contextmanager
def staged_folder(out: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes ``out`` when the block succeeds.

    Raises:
        OutputExistsError: see :func:`check_output` (checked before and after the block).
    """
    out = Path(out)
    check_output(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield tmp
        check_output(out, force)
        _make_readable(tmp)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _make_readable(folder: Path) -> None:
    """Folders 0755 and files 0644, whatever the umask: the temporary folder is created
    0700, and a bundle baked into an image is read by an arbitrary non-root user."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


def _replace(tmp: Path, out: Path) -> None:
    if not out.exists():
        tmp.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    old.rmdir()
    out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    log.info("replaced the previous contents of %s", out)
