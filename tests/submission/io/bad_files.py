"""Bad inputs as users and archives make them, each written into a good 2021 case folder
(``case`` holds ``<id>_<suffix>.nii.gz`` files; ``t1`` is the modality spoilt)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.conftest import LPS_SMALL, write_case, write_nifti


def _t1(case: Path) -> Path:
    return case / f"{case.name}_t1.nii.gz"


def _rewrite(case: Path, change) -> None:
    img = nib.load(_t1(case))
    data = change(np.asarray(img.dataobj).astype(np.float64))
    write_nifti(_t1(case), data.astype(np.float64 if data.ndim == 3 else np.int16))


def not_gzip(case: Path) -> None:
    _t1(case).write_bytes(b"this is not an image\n")


def uncompressed(case: Path) -> None:
    _t1(case).write_bytes(gzip.decompress(_t1(case).read_bytes()))


def broken_symlink(case: Path) -> None:
    _t1(case).unlink()
    _t1(case).symlink_to(case / "gone.nii.gz")


def folder_named_like_an_image(case: Path) -> None:
    _t1(case).unlink()
    _t1(case).mkdir()


def truncated(case: Path) -> None:
    raw = _t1(case).read_bytes()
    _t1(case).write_bytes(raw[: len(raw) // 2])


def empty_file(case: Path) -> None:
    _t1(case).write_bytes(b"")


def huge_header(case: Path) -> None:
    header = nib.load(_t1(case)).header.copy()
    header.set_data_shape((2000, 2000, 2000))
    _t1(case).write_bytes(gzip.compress(header.binaryblock + b"\0" * 1024))


def values_1e300(case: Path) -> None:
    _rewrite(case, lambda d: np.where(d > 0, 1e300, d))


def nan_voxels(case: Path) -> None:
    _rewrite(case, lambda d: np.where(d > 500, np.nan, d))


def inf_voxels(case: Path) -> None:
    _rewrite(case, lambda d: np.where(d > 500, np.inf, d))


def four_d(case: Path) -> None:
    _rewrite(case, lambda d: np.stack([d, d], axis=-1))


def two_d(case: Path) -> None:
    _rewrite(case, lambda d: d[:, :, 0])


def all_zero(case: Path) -> None:
    _rewrite(case, np.zeros_like)


def missing_modality(case: Path) -> None:
    _t1(case).unlink()


def two_files_for_a_modality(case: Path) -> None:
    shutil.copy(_t1(case), case / f"{case.name}_t1.nii")


def shape_mismatch(case: Path) -> None:
    _rewrite(case, lambda d: d[:-2])


def affine_mismatch(case: Path) -> None:
    img = nib.load(_t1(case))
    shifted = LPS_SMALL.copy()
    shifted[:3, 3] += 5.0
    write_nifti(_t1(case), np.asarray(img.dataobj), shifted)


def case_id_with_a_space(case: Path) -> None:
    renamed = case.with_name(case.name + " copy")
    case.rename(renamed)


def case_id_too_long(case: Path) -> None:
    """A folder name of 250 bytes (a file name may hold 255, ``<id>.nii.gz`` would be 257);
    the files inside keep their short prefix."""
    case.rename(case.with_name("BraTS2021_" + "9" * 240))


def apple_double(case: Path) -> None:
    (case / f"._{case.name}_t1.nii.gz").write_bytes(b"\0\x05\x16\x07 Mac OS X")


def macosx_folder(case: Path) -> None:
    (case.parent / "__MACOSX" / case.name).mkdir(parents=True)
    (case.parent / "__MACOSX" / case.name / f"._{case.name}_t1.nii.gz").write_bytes(b"\0")


def same_id_twice(case: Path) -> None:
    write_case(case.parent, case.name, "2021")  # flat files of the same id


def prefix_differs_from_folder(case: Path) -> None:
    _t1(case).rename(case / "Other_00001_t1.nii.gz")


def unrelated_file(case: Path) -> None:
    (case / "notes.txt").write_text("scanner protocol")


def label_map_beside(case: Path) -> None:
    img = nib.load(_t1(case))
    write_nifti(case / f"{case.name}_seg.nii.gz", np.zeros(img.shape, np.uint8))
