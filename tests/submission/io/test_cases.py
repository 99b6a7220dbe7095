"""Case discovery in the three layouts, loading checks, and the bad-input matrix."""

import gzip
import shutil

import numpy as np
import pytest

from submission.brats import MODALITIES, modality_filename
from submission.io.cases import CaseError, InputError, discover_cases, load_case
from submission.io.references import find_label_maps, label_file, label_map_case_id
from submission.predict.runner import run_cases
from tests.conftest import (
    LPS_SMALL,
    SMALL_SHAPE,
    small_image,
    threshold_segmenter,
    write_case,
    write_nifti,
)


def test_2021_flat_single_case(case_factory):
    root = case_factory("2021-flat", ["BraTS2021_00042"])
    found = discover_cases(root)
    assert [c.case_id for c in found.cases] == ["BraTS2021_00042"] and not found.errors
    case = found.cases[0]
    # The id is the file prefix, the case lives in the input folder itself, and every
    # canonical modality maps to its 2021 file (t1ce is t1c, flair is t2f).
    assert case.year == "2021" and case.folder == root
    assert case.files == {
        m: root / modality_filename("BraTS2021_00042", m, "2021") for m in MODALITIES
    }
    assert case.files["t1c"].name == "BraTS2021_00042_t1ce.nii.gz"


def test_2021_folders_ignore_seg_and_warn_on_unrelated(case_factory):
    root = case_factory("2021-folders", ["BraTS2021_00001", "BraTS2021_00002"])
    write_nifti(
        root / "BraTS2021_00001" / "BraTS2021_00001_seg.nii.gz", np.zeros((32, 32, 24), np.uint8)
    )
    (root / "BraTS2021_00002" / "notes.txt").write_text("x")
    found = discover_cases(root)
    assert [c.case_id for c in found.cases] == ["BraTS2021_00001", "BraTS2021_00002"]
    assert all("_seg" not in p.name for c in found.cases for p in c.files.values())
    assert len(found.warnings) == 1 and "notes.txt" in found.warnings[0]


def test_2023_folders_case_id_is_folder_name(case_factory, tmp_path):
    root = case_factory("2023-folders", ["BraTS-GLI-00001-000"])
    # The orchestrator renames folders: the folder name wins over the file prefix.
    (root / "BraTS-GLI-00001-000").rename(root / "BraTS-GLI-99999-100")
    found = discover_cases(root)
    assert [c.case_id for c in found.cases] == ["BraTS-GLI-99999-100"]
    assert found.cases[0].year == "2023"
    assert any("differs from its folder" in w for w in found.warnings)


def test_load_case_channel_order_dtype_and_grid(case_factory):
    root = case_factory("2023-folders", ["BraTS-GLI-00001-000"])
    case = discover_cases(root).cases[0]
    image, grid = load_case(case)
    expected = small_image(0).astype(np.float32)
    assert image.dtype == np.float32 and image.shape == (4, 32, 32, 24)
    np.testing.assert_array_equal(image, expected)  # MODALITIES order: t1n, t1c, t2w, t2f
    np.testing.assert_allclose(grid.affine, LPS_SMALL)


def test_real_2023_case_loads(real_data):
    found = discover_cases(real_data)  # TCGA-FG-6692 is not in a BraTS layout: ignored
    ids = [c.case_id for c in found.cases]
    assert "BraTS-GLI-00001-000" in ids
    image, grid = load_case(found.cases[ids.index("BraTS-GLI-00001-000")])
    assert image.shape == (4, 240, 240, 155) and grid.spacing == (1.0, 1.0, 1.0)


# --- bad input: each problem gives a clear message, the other cases still get outputs ------


def _break_missing(folder, cid):
    (folder / modality_filename(cid, "t1c", "2021")).unlink()


def _break_duplicate(folder, cid):
    shutil.copy(folder / modality_filename(cid, "t1c", "2021"), folder / f"{cid}_t1ce.nii")


def _break_shape(folder, cid):
    write_nifti(folder / modality_filename(cid, "t2w", "2021"), small_image(shape=(32, 32, 20))[0])


def _break_affine(folder, cid):
    write_nifti(folder / modality_filename(cid, "t2w", "2021"), small_image()[0], np.eye(4))


def _break_4d(folder, cid):
    write_nifti(
        folder / modality_filename(cid, "t1n", "2021"), small_image()[:2].transpose(1, 2, 3, 0)
    )


def _break_corrupt_gzip(folder, cid):
    path = folder / modality_filename(cid, "t2f", "2021")
    data = bytearray(path.read_bytes())
    data[40:60] = b"\x00" * 20
    path.write_bytes(bytes(data))


def _break_truncated(folder, cid):
    path = folder / modality_filename(cid, "t2f", "2021")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _break_nan(folder, cid):
    image = small_image()[0].astype(np.float32)
    image[10, 10, 10] = np.nan
    write_nifti(folder / modality_filename(cid, "t1n", "2021"), image)


def _break_inf(folder, cid):
    image = small_image()[0].astype(np.float32)
    image[10, 10, 10] = np.inf
    write_nifti(folder / modality_filename(cid, "t1n", "2021"), image)


def _break_all_zero(folder, cid):
    write_nifti(folder / modality_filename(cid, "t1c", "2021"), np.zeros((32, 32, 24), np.int16))


def _break_not_nifti(folder, cid):
    with gzip.open(folder / modality_filename(cid, "t2w", "2021"), "wb") as fh:
        fh.write(b"this is not a NIfTI header" * 20)


BREAKERS = {
    "missing modality": (_break_missing, "missing t1c"),
    "two files for one modality": (_break_duplicate, "2 files for t1c"),
    "shape mismatch": (_break_shape, "has shape"),
    "affine mismatch": (_break_affine, "affine differs"),
    "4-D file": (_break_4d, "must be 3-D"),
    "corrupt gzip": (_break_corrupt_gzip, "t2f"),
    "truncated file": (_break_truncated, "t2f"),
    "NaN voxels": (_break_nan, "NaN or infinite"),
    "inf voxels": (_break_inf, "NaN or infinite"),
    "all-zero image": (_break_all_zero, "all zeros"),
    "not a NIfTI": (_break_not_nifti, "t2w"),
}


@pytest.mark.parametrize("problem", list(BREAKERS))
def test_bad_case_is_reported_and_others_still_written(problem, case_factory, tmp_path):
    good, bad = "BraTS2021_00001", "BraTS2021_00002"
    root = case_factory("2021-folders", [good, bad, "BraTS2021_00003"])
    breaker, message = BREAKERS[problem]
    breaker(root / bad, bad)
    out = tmp_path / "out"
    report = run_cases(root, out, threshold_segmenter)
    assert sorted(report.written) == [good, "BraTS2021_00003"]
    assert list(report.failed) == [bad] and message in report.failed[bad]
    # only the good cases' outputs, nothing partial or temporary
    assert sorted(p.name for p in out.iterdir()) == [f"{good}.nii.gz", "BraTS2021_00003.nii.gz"]


@pytest.mark.parametrize("bad_id", ["Bra Ts 01", "a\\b"])
def test_case_ids_with_spaces_or_separators_are_rejected(bad_id, case_factory, tmp_path):
    root = case_factory("2021-folders", ["BraTS2021_00001"])
    write_case(root if "\\" in bad_id else root / bad_id, bad_id)
    report = run_cases(root, tmp_path / "out", threshold_segmenter)
    assert report.written == ["BraTS2021_00001"]
    assert "no spaces or path separators" in report.failed[bad_id]


def test_empty_input_folder_is_an_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no BraTS case"):
        run_cases(tmp_path / "empty", tmp_path / "out", threshold_segmenter)


def test_missing_input_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        discover_cases(tmp_path / "nope")


def test_real_tcga_case_as_2021_flat_layout(real_data, tmp_path):
    root = tmp_path / "input"
    root.mkdir()
    for name in ("flair", "t1", "t1ce", "t2"):
        (root / f"TCGA-FG-6692_{name}.nii.gz").symlink_to(
            real_data / "TCGA-FG-6692" / "images" / f"{name}.nii.gz"
        )
    found = discover_cases(root)
    assert [c.case_id for c in found.cases] == ["TCGA-FG-6692"] and not found.errors
    assert found.cases[0].year == "2021" and found.cases[0].folder == root
    assert {m: p.name for m, p in found.cases[0].files.items()} == {
        "t1n": "TCGA-FG-6692_t1.nii.gz",
        "t1c": "TCGA-FG-6692_t1ce.nii.gz",
        "t2w": "TCGA-FG-6692_t2.nii.gz",
        "t2f": "TCGA-FG-6692_flair.nii.gz",
    }
    image, grid = load_case(found.cases[0])
    assert image.shape == (4, 240, 240, 155)
    np.testing.assert_allclose(grid.affine[1, 3], 239)


# --- reference label maps: one rule for training, tune and evaluate ---------------------


def _label(path):
    return write_nifti(path, np.zeros(SMALL_SHAPE, np.uint8))


def test_label_map_names():
    assert label_map_case_id("BraTS2021_00001_seg.nii.gz") == "BraTS2021_00001"
    assert label_map_case_id("BraTS-GLI-00002-000-seg.nii.gz") == "BraTS-GLI-00002-000"
    assert label_map_case_id("case3.nii.gz") == "case3"
    assert label_map_case_id("case3.nii") == "case3"
    assert label_map_case_id("BraTS2021_00001_flair.nii.gz") is None
    assert label_map_case_id("BraTS-GLI-00002-000-t2f.nii.gz") is None
    assert label_map_case_id("notes.txt") is None
    assert label_map_case_id(".nii.gz") is None
    # macOS resource forks copied along with the data are no label maps
    assert label_map_case_id("._BraTS2021_00001_seg.nii.gz") is None


@pytest.fixture
def training_folder(tmp_path):
    """Case folders and flat cases, labelled in every accepted way, and some not at all."""
    root = tmp_path / "data"
    write_case(root / "BraTS2021_00001", "BraTS2021_00001")
    _label(root / "BraTS2021_00001" / "BraTS2021_00001_seg.nii.gz")
    write_case(root / "BraTS-GLI-00002-000", "BraTS-GLI-00002-000", "2023")
    _label(root / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-seg.nii.gz")
    write_case(root / "case3", "case3")
    _label(root / "case3" / "case3.nii.gz")  # the bare name, as predictions carry
    write_case(root / "case4", "case4")
    _label(root / "case4-seg.nii")  # flat, beside its case folder
    write_case(root / "case5", "case5")  # no label map
    write_case(root / "case6", "other")  # renamed folder: the id is case6 ...
    _label(root / "case6" / "other_seg.nii.gz")  # ... so other's label map is not its
    _label(root / "case6" / "._case6_seg.nii.gz")  # nor is a macOS resource fork
    write_case(root, "flat7")
    _label(root / "flat7_seg.nii.gz")
    write_case(root, "flat8")  # no label map
    return root


EXPECTED_LABELS = {
    "BraTS-GLI-00002-000": "BraTS-GLI-00002-000/BraTS-GLI-00002-000-seg.nii.gz",
    "BraTS2021_00001": "BraTS2021_00001/BraTS2021_00001_seg.nii.gz",
    "case3": "case3/case3.nii.gz",
    "case4": "case4-seg.nii",
    "flat7": "flat7_seg.nii.gz",
}


def test_find_label_maps_flat_and_in_case_folders(training_folder):
    found = find_label_maps(training_folder)
    assert {c: p.relative_to(training_folder).as_posix() for c, p in found.items()} == (
        EXPECTED_LABELS
    )
    assert list(found) == sorted(found)


def test_label_file_of_each_case_is_what_find_label_maps_says(training_folder):
    # training asks per case, tune and evaluate per folder: they must never disagree
    cases = discover_cases(training_folder).cases
    assert [c.case_id for c in cases] == sorted([*EXPECTED_LABELS, "case5", "case6", "flat8"])
    references = find_label_maps(training_folder)
    assert {c.case_id: label_file(c) for c in cases} == {
        c.case_id: references.get(c.case_id) for c in cases
    }


def test_label_maps_of_other_cases_in_a_case_folder_are_ignored(tmp_path):
    # Before one rule, training took any *_seg file in a case folder as its label map,
    # whatever its prefix (also "._<id>_seg" files); evaluate and tune ignored them.
    write_case(tmp_path / "a", "a")
    _label(tmp_path / "a" / "b_seg.nii.gz")
    _label(tmp_path / "a" / "._a_seg.nii.gz")
    _label(tmp_path / "c" / "c-seg.nii.gz")
    assert label_file(discover_cases(tmp_path).cases[0]) is None
    assert list(find_label_maps(tmp_path)) == ["c"]


def test_two_label_maps_for_one_case_is_an_error(tmp_path):
    _label(tmp_path / "x_seg.nii.gz")
    _label(tmp_path / "x.nii.gz")
    with pytest.raises(ValueError, match="case x: two reference label maps") as exc:
        find_label_maps(tmp_path)
    assert "x.nii.gz and " in str(exc.value) and "x_seg.nii.gz; keep one" in str(exc.value)
    assert type(exc.value) is ValueError  # a folder problem, as evaluate and tune had it
    write_case(tmp_path / "y", "y")
    _label(tmp_path / "y-seg.nii.gz")
    _label(tmp_path / "y" / "y_seg.nii.gz")
    case = next(c for c in discover_cases(tmp_path).cases if c.case_id == "y")
    with pytest.raises(CaseError, match="case y: two reference label maps") as exc:
        label_file(case)
    assert str(tmp_path / "y-seg.nii.gz") in str(exc.value)
    assert str(tmp_path / "y" / "y_seg.nii.gz") in str(exc.value)


def test_folder_without_label_maps_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no reference label maps"):
        find_label_maps(tmp_path / "empty")
    write_case(tmp_path / "a", "a")
    with pytest.raises(ValueError, match="no reference label maps in .*<id>_seg.nii.gz"):
        find_label_maps(tmp_path)
    with pytest.raises(ValueError, match="reference folder .*nope does not exist"):
        find_label_maps(tmp_path / "nope")


@pytest.mark.parametrize("layout", ["2021-flat", "2021-folders", "2023-folders"])
def test_macos_appledouble_files_and_folders_are_ignored_with_one_warning(case_factory, layout):
    # Issue 13, failure 2: a '._<name>' file beside each image (what a copy from a macOS
    # volume leaves) made a valid case fail ("2 files for t1c"), or a phantom flat case.
    ids = ["BraTS2021_00001", "BraTS2021_00002"]
    root = case_factory(layout, ids)
    images = sorted(p for p in root.rglob("*.nii.gz"))
    for path in images:
        (path.parent / f"._{path.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    macosx = root / "__MACOSX" / ids[0]
    macosx.mkdir(parents=True)
    (macosx / f"._{images[0].name}").write_bytes(b"\x00\x05\x16\x07")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")

    found = discover_cases(root)

    assert [c.case_id for c in found.cases] == ids
    assert found.errors == []
    hidden = [w for w in found.warnings if "hidden" in w]
    assert len(hidden) == 1 and "__MACOSX" in hidden[0], found.warnings
    for case in found.cases:
        assert all(not p.name.startswith("._") for p in case.files.values())
        load_case(case)  # the real images, not the resource forks


def test_one_case_id_as_a_folder_and_as_flat_files_is_a_conflict_neither_predicted(
    case_factory, tmp_path
):
    # Issue 13, failure 5: both wrote <id>.nii.gz, the second silently over the first.
    root = case_factory("2021-folders", ["BraTS2021_00001", "BraTS2021_00002"])
    write_case(root, "BraTS2021_00001", "2021", seed=7)  # the same id, flat beside its folder
    found = discover_cases(root)
    assert [c.case_id for c in found.cases] == ["BraTS2021_00002"]
    (error,) = found.errors
    assert error.case_id == "BraTS2021_00001"
    assert "two cases have this id" in str(error) and str(root / "BraTS2021_00001") in str(error)

    report = run_cases(root, tmp_path / "out", lambda image: np.zeros(image.shape[1:], np.uint8))
    assert report.written == ["BraTS2021_00002"]
    assert "two cases have this id" in report.failed["BraTS2021_00001"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["BraTS2021_00002.nii.gz"]
