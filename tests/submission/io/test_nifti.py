"""NIfTI reading and atomic label-map writes on real files (submission/io/nifti.py)."""

from __future__ import annotations

import gzip
import stat

import nibabel as nib
import numpy as np
import pytest

from submission.io.nifti import (
    NiftiError,
    grid_of,
    nifti_stem,
    read_label_map,
    read_nifti,
    write_label_map,
)

#: An oblique, anisotropic grid: 1.2 x 0.9 x 2.5 mm voxels, rotated about the z axis.
_C, _S = np.cos(0.3), np.sin(0.3)
OBLIQUE = np.array(
    [
        [-1.2 * _C, 0.9 * _S, 0.0, 90.0],
        [-1.2 * _S, -0.9 * _C, 0.0, 120.0],
        [0.0, 0.0, 2.5, -70.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
SHAPE = (20, 18, 12)


def _image(path, affine=OBLIQUE, qcode=2, scode=1, data=None):
    """An int16 image as scanners write them: qform and sform with their codes."""
    data = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE) if data is None else data
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, qcode)
    img.set_sform(affine, scode)
    nib.save(img, path)
    return path


def _labels(seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([0, 1, 2, 4], np.uint8), size=SHAPE)


@pytest.mark.parametrize(("qcode", "scode"), [(2, 1), (1, 0), (0, 2)])
def test_label_map_lands_on_the_image_grid_with_both_transforms_and_codes(tmp_path, qcode, scode):
    source = _image(tmp_path / "t1.nii.gz", qcode=qcode, scode=scode)
    img, data = read_nifti(source)
    grid = grid_of(img)
    assert grid.shape == SHAPE and data.dtype == np.int16
    assert grid.spacing == pytest.approx((1.2, 0.9, 2.5))
    seg = _labels()
    out = write_label_map(seg, grid, tmp_path / "case.nii.gz")
    written = nib.load(out)
    assert written.get_data_dtype() == np.uint8 and written.shape == SHAPE
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), seg)
    for get in ("get_qform", "get_sform"):
        form, code = getattr(written.header, get)(coded=True)
        want, want_code = getattr(nib.load(source).header, get)(coded=True)
        assert int(code) == int(want_code)
        if want is not None:
            np.testing.assert_allclose(form, want, atol=1e-5)
    np.testing.assert_allclose(written.affine, nib.load(source).affine, atol=1e-5)
    assert written.header.get_zooms() == pytest.approx((1.2, 0.9, 2.5))
    # Read back through bratskit: the same labels on the same grid.
    again, again_grid = read_label_map(out)
    np.testing.assert_array_equal(again, seg)
    np.testing.assert_allclose(again_grid.affine, grid.affine, atol=1e-5)


def test_write_is_uint8_even_from_wider_integers_and_world_readable(tmp_path):
    grid = grid_of(nib.load(_image(tmp_path / "t1.nii.gz")))
    out = write_label_map(_labels().astype(np.int64), grid, tmp_path / "case.nii.gz")
    img = nib.load(out)
    assert img.get_data_dtype() == np.uint8
    assert np.isnan(img.header["scl_slope"]) and np.isnan(img.header["scl_inter"])
    assert oct(stat.S_IMODE(out.stat().st_mode)) == "0o644"
    with gzip.open(out) as fh:  # really gzip, whatever the temporary name was
        assert len(fh.read()) > 348


def test_a_failed_write_leaves_no_file_behind(tmp_path):
    grid = grid_of(nib.load(_image(tmp_path / "t1.nii.gz")))
    out = tmp_path / "out"
    out.mkdir()
    (out / "case.nii.gz").mkdir()  # the rename onto it fails after the data is written
    with pytest.raises(OSError):
        write_label_map(_labels(), grid, out / "case.nii.gz")
    assert [p.name for p in out.iterdir()] == ["case.nii.gz"]  # no partial file
    assert (out / "case.nii.gz").is_dir()


@pytest.mark.parametrize(
    ("seg", "message"),
    [
        (np.zeros((20, 18, 11), np.uint8), r"shape \(20, 18, 11\) does not match grid"),
        (np.full(SHAPE, 256, np.int32), "0..255"),
        (np.full(SHAPE, -1, np.int32), "0..255"),
    ],
)
def test_labels_that_cannot_be_written_are_refused_before_any_file(tmp_path, seg, message):
    grid = grid_of(nib.load(_image(tmp_path / "t1.nii.gz")))
    with pytest.raises(ValueError, match=message):
        write_label_map(seg, grid, tmp_path / "case.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["t1.nii.gz"]


def test_label_maps_stored_as_whole_floats_read_as_integers(tmp_path):
    seg = _labels().astype(np.float32)
    path = _image(tmp_path / "seg.nii.gz", data=seg)
    labels, grid = read_label_map(path)
    assert np.issubdtype(labels.dtype, np.integer) and grid.shape == SHAPE
    np.testing.assert_array_equal(labels, seg.astype(np.int32))


def test_unusable_label_maps_are_named(tmp_path):
    blurred = _image(tmp_path / "blurred.nii.gz", data=_labels().astype(np.float32) * 0.5)
    with pytest.raises(NiftiError, match=r"blurred.nii.gz: label map holds non-integer values"):
        read_label_map(blurred)
    four_d = _image(tmp_path / "4d.nii.gz", data=np.zeros((*SHAPE, 2), np.uint8))
    with pytest.raises(NiftiError, match=r"4d.nii.gz: label map must be 3-D, got shape"):
        read_label_map(four_d)


def test_unreadable_files_are_named_with_the_fix(tmp_path):
    with pytest.raises(NiftiError, match=r"missing.nii.gz: file not found"):
        read_nifti(tmp_path / "missing.nii.gz")
    good = _image(tmp_path / "good.nii.gz").read_bytes()
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(NiftiError, match=r"truncated.nii.gz: cannot read .*copy it again"):
        read_nifti(truncated)
    garbage = tmp_path / "garbage.nii.gz"
    with gzip.open(garbage, "wb") as fh:
        fh.write(b"this is not a NIfTI header" * 20)
    with pytest.raises(NiftiError, match=r"garbage.nii.gz: not a readable NIfTI file"):
        read_nifti(garbage)
    mgh = tmp_path / "t1.mgz"
    nib.save(nib.MGHImage(np.zeros(SHAPE, np.float32), OBLIQUE), mgh)
    with pytest.raises(NiftiError, match=r"t1.mgz: expected a NIfTI image, got MGHImage"):
        read_nifti(mgh)


def test_nifti_stem():
    assert nifti_stem("case.nii.gz") == "case"
    assert nifti_stem("case.nii") == "case"
    assert nifti_stem("BraTS-GLI-00001-000-seg.nii.gz") == "BraTS-GLI-00001-000-seg"
    assert nifti_stem(".nii.gz") is None
    assert nifti_stem("case.nii.gz.partial") is None
    assert nifti_stem("notes.txt") is None
