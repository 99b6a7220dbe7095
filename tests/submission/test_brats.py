import numpy as np
import pytest

from submission.brats import (
    SCHEMES,
    get_scheme,
    has_case_number,
    labels_to_regions,
    modality_filename,
    parse_filename,
    prediction_filename,
    regions_to_labels,
)


@pytest.mark.parametrize(
    ("name", "case_id", "year", "modality"),
    [
        ("BraTS2021_00042_flair.nii.gz", "BraTS2021_00042", "2021", "t2f"),
        ("BraTS2021_00042_t1.nii.gz", "BraTS2021_00042", "2021", "t1n"),
        ("BraTS2021_00042_t1ce.nii.gz", "BraTS2021_00042", "2021", "t1c"),
        ("BraTS2021_00042_t2.nii", "BraTS2021_00042", "2021", "t2w"),
        ("BraTS2021_00042_seg.nii.gz", "BraTS2021_00042", "2021", "seg"),
        ("BraTS-GLI-00001-000-t1c.nii.gz", "BraTS-GLI-00001-000", "2023", "t1c"),
        ("BraTS-GLI-00001-000-t2f.nii.gz", "BraTS-GLI-00001-000", "2023", "t2f"),
        ("BraTS-GLI-00001-000-seg.nii.gz", "BraTS-GLI-00001-000", "2023", "seg"),
    ],
)
def test_parse_filename(name, case_id, year, modality):
    parsed = parse_filename(name)
    assert (parsed.case_id, parsed.year, parsed.modality) == (case_id, year, modality)
    if modality != "seg" and not name.endswith(".nii"):
        assert modality_filename(case_id, modality, year) == name


@pytest.mark.parametrize(
    "name", ["notes.txt", "BraTS2021_00042.nii.gz", "x-t1.nii.gz", "x-t1ce.nii.gz", "x_t1.nii.bz2"]
)
def test_unrelated_names_are_not_parsed(name):
    assert parse_filename(name) is None


def test_prediction_filename_has_no_suffix():
    assert prediction_filename("BraTS2021_00042") == "BraTS2021_00042.nii.gz"


# (label map, scheme) -> expected WT, TC, ET per CONTRACT.md section 2
@pytest.mark.parametrize(
    ("scheme", "labels", "wt", "tc", "et"),
    [
        ("2021", [0, 1, 2, 4], [0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]),
        ("2023", [0, 1, 2, 3], [0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]),
        ("2024-gli", [0, 1, 2, 3, 4], [0, 1, 1, 1, 0], [0, 1, 0, 1, 0], [0, 0, 0, 1, 0]),
        ("2024-ped", [0, 1, 2, 3, 4], [0, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 1, 0, 0, 0]),
    ],
)
def test_labels_to_regions(scheme, labels, wt, tc, et):
    regions = labels_to_regions(np.array(labels), scheme)
    np.testing.assert_array_equal(regions[:3], np.array([wt, tc, et], dtype=bool))


def test_2024_gli_has_resection_cavity_region():
    regions = labels_to_regions(np.array([0, 1, 2, 3, 4]), "2024-gli")
    assert get_scheme("2024-gli").region_names == ("WT", "TC", "ET", "RC")
    np.testing.assert_array_equal(regions[3], [0, 0, 0, 0, 1])


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_round_trip_labels_regions_labels(scheme):
    valid = sorted(get_scheme(scheme).valid_labels)
    # 2024-ped cannot tell CC (3) from NETC (2) through regions: both are TC minus ET.
    seg = np.array([v for v in valid if not (scheme == "2024-ped" and v == 3)], dtype=np.uint8)
    np.testing.assert_array_equal(regions_to_labels(labels_to_regions(seg, scheme), scheme), seg)


def test_regions_to_labels_2021_nesting_inner_wins():
    # voxels: background, WT only, WT+TC, WT+TC+ET, ET alone (inconsistent model output)
    regions = np.array([[0, 1, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(regions_to_labels(regions, "2021"), [0, 2, 1, 4, 4])
    np.testing.assert_array_equal(regions_to_labels(regions, "2023"), [0, 2, 1, 3, 3])


def test_unknown_scheme_names_the_choices():
    with pytest.raises(ValueError, match="2021, 2023, 2024-gli, 2024-ped"):
        get_scheme("2022")


def test_wrong_region_count_is_an_error():
    with pytest.raises(ValueError, match="needs 4 regions"):
        regions_to_labels(np.zeros((3, 2, 2, 2), bool), "2024-gli")


@pytest.mark.parametrize(
    ("case_id", "numbered"),
    [
        ("BraTS-GLI-00001-100", True),
        ("BraTS-MET-12345-000", True),
        ("BraTS2021_00042", False),
        ("BraTS-GLI-0001-000", False),
        ("BraTS-GLI-00001-000x", False),
    ],
)
def test_a_case_number_ends_the_2024_ids(case_id, numbered):
    assert has_case_number(case_id) is numbered
