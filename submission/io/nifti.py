"""NIfTI reading and writing on the input's exact voxel grid (CONTRACT.md section 3).

Arrays keep the file's voxel axis order (nibabel's i, j, k). ``D, H, W`` in
array names are positions, not anatomy: a BraTS volume is (240, 240, 155) and
its axial slices run along the last axis. Nothing is ever reoriented, so a
label map written back lands on the same grid the image came from.
"""

from __future__ import annotations

import gzip
import os
import secrets
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from submission.brats import NIFTI_EXTENSIONS
from submission.exit_codes import UnusableError

#: Temporary files of :func:`write_label_map` start so (never ``.nii.gz`` names).
TEMPORARY_PREFIX = ".bratskit-"
#: The most voxels an image may claim: 512 cubed, far above BraTS (240 x 240 x 155) and
#: native-space MRI, far below what a damaged header claims (2000 cubed read 15 GB).
MAX_VOXELS = 512**3
GZIP_MAGIC = b"\x1f\x8b"
#: The most bytes a file name may hold on the file systems the organisers use (NAME_MAX).
NAME_MAX = 255


class NiftiError(ValueError, UnusableError):
    """A file that cannot be used as a BraTS image or label map; the message names file and fix."""


@dataclass(frozen=True)
class Grid:
    """The voxel grid of a volume: shape, affine and the header to copy onto outputs."""

    shape: tuple[int, ...]
    affine: np.ndarray
    header: nib.Nifti1Header

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis."""
        return tuple(float(z) for z in self.header.get_zooms()[: len(self.shape)])


def read_nifti(path: Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Read a NIfTI file fully, turning every low-level failure into a :class:`NiftiError`.

    Returns:
        The image (for its header and affine) and its voxel array, in the file's own dtype
        (scaling applied when the header sets one).
    """
    path = Path(path)
    _check_container(path)
    try:
        img = nib.load(path)  # lazy: the header alone
        _check_size(path, img.shape)
        data = np.asanyarray(img.dataobj)
    except FileNotFoundError:
        raise NiftiError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise NiftiError(
            f"{path}: cannot read ({type(exc).__name__}: {exc}); the file is corrupt or "
            "truncated, copy it again"
        ) from None
    except NiftiError:
        raise
    except Exception as exc:  # nibabel raises several unrelated types for bad headers
        raise NiftiError(f"{path}: not a readable NIfTI file ({exc})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise NiftiError(f"{path}: expected a NIfTI image, got {type(img).__name__}")
    return img, data


def _check_container(path: Path) -> None:
    """A ``.nii.gz`` must be gzip: say what it is instead (nibabel says only "not a gzip
    file"). An uncompressed NIfTI-1 has its magic ``n+1`` at byte 344."""
    if not path.name.endswith(".nii.gz") or not path.is_file():
        return
    with open(path, "rb") as fh:
        head = fh.read(348)
    if head[:2] == GZIP_MAGIC:
        return
    if head[344:348] == b"n+1\0":
        raise NiftiError(
            f"{path}: an uncompressed NIfTI file named .nii.gz; gzip it or rename it .nii"
        )
    raise NiftiError(
        f"{path}: not gzip-compressed and not NIfTI (it starts with {head[:8]!r}); copy the "
        "real image again"
    )


def _check_size(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse a header claiming more voxels than any BraTS image has, before reading."""
    voxels = int(np.prod(shape, dtype=np.int64))
    if voxels > MAX_VOXELS:
        raise NiftiError(
            f"{path}: the header claims {' x '.join(map(str, shape))} voxels ({voxels:.3g}), "
            f"more than the {MAX_VOXELS:.3g} (512 cubed) of any MRI this reads; the header "
            "is damaged, copy the file again"
        )


def grid_of(img: nib.Nifti1Image) -> Grid:
    """The grid of a loaded image."""
    return Grid(tuple(int(s) for s in img.shape), img.affine.copy(), img.header.copy())


def nifti_stem(name: str) -> str | None:
    """A file name without its ``.nii.gz`` or ``.nii`` extension; None for any other name."""
    for ext in NIFTI_EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def read_label_map(path: Path) -> tuple[np.ndarray, Grid]:
    """Read a label map as an integer array.

    Raises:
        NiftiError: unreadable, not 3-D, or holding non-integer values.
    """
    img, data = read_nifti(path)
    if data.ndim != 3:
        raise NiftiError(f"{path}: label map must be 3-D, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
            raise NiftiError(
                f"{path}: label map holds non-integer values (dtype {data.dtype}); "
                "write labels as uint8, never interpolated floats"
            )
        data = data.astype(np.int32)
    return data, grid_of(img)


def write_label_map(seg_dhw: np.ndarray, grid: Grid, path: Path) -> Path:
    """Write a uint8 label map on ``grid`` atomically.

    The header (qform, sform and their codes, voxel size) is copied from the
    reference image; only the data type changes. The file is written under a
    temporary name that does not end in ``.nii.gz`` and renamed, so a reader of
    the output folder never sees a partial ``.nii.gz``.

    Args:
        seg_dhw: integer labels, shape ``grid.shape``; values must fit uint8.
        grid: the input's grid (from :func:`grid_of` on an input modality).
        path: final file name, ``<case-id>.nii.gz``.
    """
    path = Path(path)
    if tuple(seg_dhw.shape) != tuple(grid.shape):
        raise ValueError(f"label map shape {seg_dhw.shape} does not match grid {grid.shape}")
    if seg_dhw.size and (seg_dhw.min() < 0 or seg_dhw.max() > 255):
        raise ValueError("labels must lie in 0..255 to be written as uint8")
    header = grid.header.copy()
    header.set_data_dtype(np.uint8)
    img = nib.Nifti1Image(np.asarray(seg_dhw, dtype=np.uint8), grid.affine, header)
    # Copy both transforms and their codes exactly: the 2021 evaluator compares them.
    qform, qcode = grid.header.get_qform(coded=True)
    sform, scode = grid.header.get_sform(coded=True)
    img.set_qform(qform if qform is not None else grid.affine, int(qcode))
    img.set_sform(sform if sform is not None else grid.affine, int(scode))
    img.header["scl_slope"], img.header["scl_inter"] = np.nan, np.nan

    # A short temporary name, whatever the case id: a file name may hold 255 bytes, and
    # ".<id>.nii.gz.<pid>.partial" ran over that for ids of 234 characters and more.
    tmp = path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        # Pass the file object so nibabel does not infer gzip from the temporary name; no
        # time stamp in the gzip header, so the same labels always give the same bytes.
        with (
            open(tmp, "wb") as fh,
            gzip.GzipFile(filename="", fileobj=fh, mode="wb", compresslevel=1, mtime=0) as gz,
        ):
            gz.write(img.to_bytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    # Outputs must be world-readable whatever the container's umask.
    path.chmod(0o644)
    return path
