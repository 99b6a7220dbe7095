"""Synthetic BraTS-like cases: files and headers, determinism, label validity, ET variety, contrast,
and that no single threshold on one modality finds the whole tumour."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from submission.brats import (
    MODALITIES,
    SEG_SUFFIX,
    get_scheme,
    labels_to_regions,
    modality_filename,
    regions_to_labels,
)
from submission.workbench.synth import (
    BRATS_SHAPE,
    case_id,
    et_kind_for_index,
    lps_affine,
    synthesize_case,
    write_synthetic_dataset,
)
from submission.workbench.synth_anatomy import TINY_ET_VOXELS

SHAPE = (96, 96, 64)
VOLUME_RATIO = np.prod(SHAPE) / np.prod(BRATS_SHAPE)  # ET sizes scale with the volume
FILES = {
    "2021": ["_flair", "_seg", "_t1", "_t1ce", "_t2"],
    "2023": ["-seg", "-t1c", "-t1n", "-t2f", "-t2w"],
}
IDS = {
    "2021": ["BraTS2021_00000", "BraTS2021_00001"],
    "2023": ["BraTS-GLI-00000-000", "BraTS-GLI-00001-000"],
}
T1N, T1C, T2W, T2F = (MODALITIES.index(m) for m in ("t1n", "t1c", "t2w", "t2f"))


def load(path: Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    img = nib.load(path)
    return img, np.asanyarray(img.dataobj)


def load_case(folder: Path, case: str, year: str) -> tuple[np.ndarray, np.ndarray]:
    """image_cdhw in MODALITIES order and the label map, as stored."""
    image = np.stack([load(folder / modality_filename(case, m, year))[1] for m in MODALITIES])
    return image, load(folder / modality_filename(case, SEG_SUFFIX, year))[1]


@pytest.fixture(scope="module")
def cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """Eight small in-memory cases of seed 0, generated as the dataset writer does."""
    return [
        synthesize_case(np.random.default_rng([0, i]), SHAPE, et_kind_for_index(i))
        for i in range(8)
    ]


def best_threshold_dice(values: np.ndarray, truth: np.ndarray) -> float:
    """Best Dice of ``values >= t`` or ``values <= t`` over every threshold between integers."""
    shifted = values.astype(np.int64) - int(values.min())
    pos = np.bincount(shifted[truth], minlength=shifted.max() + 1)
    neg = np.bincount(shifted[~truth], minlength=shifted.max() + 1)
    best = 0.0
    for p, n in ((pos[::-1], neg[::-1]), (pos, neg)):  # >= t, then <= t
        tp, fp = np.cumsum(p), np.cumsum(n)
        best = max(best, float((2 * tp / (tp + fp + truth.sum())).max()))
    return best


@pytest.mark.parametrize("layout", ["2021", "2023"])
def test_files_names_dtypes_and_geometry(tmp_path, layout):
    lines: list[str] = []
    ids = write_synthetic_dataset(tmp_path, 2, layout, seed=1, shape=SHAPE, progress=lines.append)
    assert ids == IDS[layout] == [case_id(i, layout) for i in range(2)]
    assert len(lines) == 2 and ids[1] in lines[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ids
    affine = np.array([[-1.0, 0, 0, 0], [0, -1, 0, 95], [0, 0, 1, 0], [0, 0, 0, 1]])
    for case in ids:
        names = sorted(p.name for p in (tmp_path / case).iterdir())
        assert names == sorted(f"{case}{s}.nii.gz" for s in FILES[layout])
        for name in names:
            img, data = load(tmp_path / case / name)
            expected = np.uint8 if name.endswith(f"{SEG_SUFFIX}.nii.gz") else np.int16
            assert data.dtype == expected and img.get_data_dtype() == expected
            assert data.shape == SHAPE
            np.testing.assert_array_equal(img.affine, affine)
            assert int(img.header["qform_code"]) == 2 and int(img.header["sform_code"]) == 1
            assert img.header.get_zooms() == (1.0, 1.0, 1.0)
        _, seg = load_case(tmp_path / case, case, layout)
        assert set(np.unique(seg)) <= get_scheme(layout).valid_labels


def test_layouts_share_regions_and_use_their_scheme(tmp_path):
    write_synthetic_dataset(tmp_path / "a", 1, "2021", seed=2, shape=SHAPE)
    write_synthetic_dataset(tmp_path / "b", 1, "2023", seed=2, shape=SHAPE)
    image_a, seg_a = load_case(tmp_path / "a" / "BraTS2021_00000", "BraTS2021_00000", "2021")
    image_b, seg_b = load_case(
        tmp_path / "b" / "BraTS-GLI-00000-000", "BraTS-GLI-00000-000", "2023"
    )
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(
        labels_to_regions(seg_a, "2021"), labels_to_regions(seg_b, "2023")
    )
    et_2021, et_2023 = get_scheme("2021").labels["ET"], get_scheme("2023").labels["ET"]
    assert (seg_a == et_2021).any() and np.array_equal(seg_a == et_2021, seg_b == et_2023)


def test_full_size_case_has_brats_geometry(tmp_path):
    (case,) = write_synthetic_dataset(tmp_path, 1, "2021", seed=0)
    img, data = load(tmp_path / case / modality_filename(case, "t2f", "2021"))
    assert data.shape == BRATS_SHAPE == (240, 240, 155)
    contract = np.array([[-1.0, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(img.affine, contract)
    np.testing.assert_array_equal(lps_affine(BRATS_SHAPE), contract)
    assert lps_affine((100, 80, 60))[1, 3] == 79  # the flipped second axis sets the offset
    np.testing.assert_array_equal(img.header.get_qform(), contract)
    np.testing.assert_array_equal(img.header.get_sform(), contract)
    # Real skull-stripped BraTS brains hold about 1.6 million voxels, intensities in the 100s-1000s.
    brain = data > 0
    assert 1_200_000 < brain.sum() < 2_200_000
    assert 200 < np.median(data[brain]) < 3000 and data.max() < 10_000
    seg = load(tmp_path / case / modality_filename(case, SEG_SUFFIX, "2021"))[1]
    assert 5_000 < (seg > 0).sum() < 400_000


def test_header_codes_match_a_real_brats_image(tmp_path, real_data):
    real = nib.load(real_data / "TCGA-FG-6692" / "images" / "t1.nii.gz").header
    (case,) = write_synthetic_dataset(tmp_path, 1, "2023", seed=0, shape=SHAPE)
    ours = nib.load(tmp_path / case / modality_filename(case, "t1n", "2023")).header
    for key in ("qform_code", "sform_code", "xyzt_units", "quatern_b", "quatern_c", "quatern_d"):
        assert ours[key] == real[key], key
    np.testing.assert_array_equal(ours["pixdim"][:4], real["pixdim"][:4])


def test_same_seed_same_bytes_and_earlier_cases_do_not_change(tmp_path):
    first = synthesize_case(np.random.default_rng([5, 0]), SHAPE)
    again = synthesize_case(np.random.default_rng([5, 0]), SHAPE)
    other = synthesize_case(np.random.default_rng([6, 0]), SHAPE)
    for a, b, c in zip(first, again, other, strict=True):
        assert a.tobytes() == b.tobytes()
        assert a.tobytes() != c.tobytes()

    write_synthetic_dataset(tmp_path / "one", 1, "2021", seed=5, shape=SHAPE)
    write_synthetic_dataset(tmp_path / "three", 3, "2021", seed=5, shape=SHAPE)
    write_synthetic_dataset(tmp_path / "seed6", 1, "2021", seed=5 + 1, shape=SHAPE)
    loaded = {
        name: load_case(tmp_path / name / "BraTS2021_00000", "BraTS2021_00000", "2021")
        for name in ("one", "three", "seed6")
    }
    for one, three, seed6 in zip(*loaded.values(), strict=True):
        assert one.tobytes() == three.tobytes()
        assert one.tobytes() != seed6.tobytes()
    assert (
        loaded["one"][0].tobytes() == first[0].tobytes()
    )  # the writer seeds case i with [seed, i]


def test_labels_valid_nested_and_inside_a_zero_background_brain(cases):
    for image, regions in cases:
        assert image.dtype == np.int16 and regions.dtype == bool
        assert image.shape == (4, *SHAPE) and regions.shape == (3, *SHAPE)
        inside = image > 0
        brain = inside.all(axis=0)
        np.testing.assert_array_equal(inside.any(axis=0), brain)  # every modality 0 outside
        for axis in range(3):  # skull-stripped brain, clear of the volume border
            assert not np.take(brain, [0, -1], axis=axis).any()
        assert 0.1 < brain.mean() < 0.3
        wt, tc, et = regions
        assert wt.any() and tc.any()
        assert not (et & ~tc).any() and not (tc & ~wt).any() and not (wt & ~brain).any()
        for scheme in ("2021", "2023"):
            seg = regions_to_labels(regions, scheme)
            assert set(np.unique(seg)) <= get_scheme(scheme).valid_labels
            np.testing.assert_array_equal(labels_to_regions(seg, scheme), regions)


def test_cases_without_with_tiny_and_with_normal_enhancing_tumour(cases):
    tiny_max = TINY_ET_VOXELS[1] * VOLUME_RATIO + 1  # 300 voxels at full size
    et_sizes = [int(regions[2].sum()) for _, regions in cases]
    kinds = [et_kind_for_index(i) for i in range(len(cases))]
    assert kinds.count("none") >= 1 and kinds.count("tiny") >= 1 and kinds.count("normal") >= 4
    for kind, size in zip(kinds, et_sizes, strict=True):
        if kind == "none":
            assert size == 0
        elif kind == "tiny":
            assert 0 < size <= tiny_max
        else:
            assert size > 500 * VOLUME_RATIO, et_sizes  # above any tiny ET, even at full size


def test_modality_contrast(cases):
    for image, (wt, tc, et) in cases:
        normal = (image > 0).all(axis=0) & ~wt
        edema, necrosis = wt & ~tc, tc & ~et
        assert image[T2F][edema].mean() > 1.2 * image[T2F][normal].mean()
        assert image[T2W][edema].mean() > image[T2W][normal].mean()
        assert image[T1N][necrosis].mean() < 0.9 * image[T1N][normal].mean()
        if et.any():
            assert image[T1C][et].mean() > 1.2 * image[T1C][normal].mean()


def test_no_single_threshold_finds_the_whole_tumour(cases):
    # Thresholds are searched inside the brain only, which helps them: still below 0.9.
    for image, regions in cases[:4]:
        brain = (image > 0).all(axis=0)
        dice = [best_threshold_dice(image[c][brain], regions[0][brain]) for c in range(4)]
        assert max(dice) < 0.9, dice
        assert dice[T2F] > 0.5, dice  # yet the whole tumour is plainly visible on FLAIR


def test_bad_arguments_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="2022"):
        write_synthetic_dataset(tmp_path, 1, "2022")
    with pytest.raises(ValueError, match="at least"):
        write_synthetic_dataset(tmp_path, 1, "2021", shape=(16, 96, 64))
    with pytest.raises(ValueError, match="cases"):
        write_synthetic_dataset(tmp_path, -1, "2021")
    with pytest.raises(ValueError, match="at least"):
        synthesize_case(np.random.default_rng(0), (96, 96))
    with pytest.raises(ValueError, match="huge"):
        synthesize_case(np.random.default_rng(0), SHAPE, et_kind="huge")
    assert not any(tmp_path.iterdir())
