"""The preprocessed cache equals the runtime's preprocessing and rebuilds only what changed."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from submission.brats import labels_to_regions
from submission.io.cases import InputError, discover_cases, load_case
from submission.io.nifti import read_label_map
from submission.io.references import find_label_maps, label_file
from submission.predict.preprocess import Preprocessing, crop, preprocess_case
from train.cache import build_cache, pack_regions, training_cases, unpack_regions


def test_pack_unpack_round_trip():
    rng = np.random.default_rng(0)
    regions = rng.integers(0, 2, size=(3, 5, 6, 7)).astype(np.uint8)
    assert np.array_equal(unpack_regions(pack_regions(regions), len(regions)), regions)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cached_case_is_the_runtime_preprocessing(synth_train, tmp_path, dtype):
    cases = training_cases(synth_train)
    spec = Preprocessing(margin=2, divisor=8)
    cached = build_cache(cases, tmp_path, spec, dtype=dtype, progress=False)
    case = cases[1]
    expected, info = preprocess_case(load_case(case)[0], spec)
    image = cached[case.case_id].image()
    assert isinstance(image, np.memmap) and image.dtype == np.dtype(dtype)
    tol = 0 if dtype == "float32" else 2e-3 * np.abs(expected).max()
    np.testing.assert_allclose(image, expected, atol=tol)
    seg, _ = read_label_map(label_file(case))
    truth = crop(labels_to_regions(seg, "2021"), info)
    assert np.array_equal(cached[case.case_id].regions(), truth)


def test_fresh_cases_are_reused_and_changed_ones_rebuilt(synth_train, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_train, data)
    cases = training_cases(data)
    spec = Preprocessing()
    cached = build_cache(cases, tmp_path / "cache", spec, progress=False)
    stamps = {k: os.stat(c.folder / "image.npy").st_mtime_ns for k, c in cached.items()}
    build_cache(cases, tmp_path / "cache", spec, progress=False)
    assert stamps == {k: os.stat(c.folder / "image.npy").st_mtime_ns for k, c in cached.items()}
    changed = cases[0]
    os.utime(changed.files["t1n"], ns=(1, 1))
    build_cache(cases, tmp_path / "cache", spec, progress=False)
    after = {k: os.stat(c.folder / "image.npy").st_mtime_ns for k, c in cached.items()}
    assert [k for k in after if after[k] != stamps[k]] == [changed.case_id]
    other = build_cache(cases, tmp_path / "cache", Preprocessing(margin=0), progress=False)
    assert other[changed.case_id].folder.parent != cached[changed.case_id].folder.parent


def test_unlabelled_cases_are_skipped_and_none_is_an_error(synth_train, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_train, data)
    first = sorted(p for p in data.iterdir())[0]
    label_file(discover_cases(data).cases[0]).unlink()
    assert first.name not in {c.case_id for c in training_cases(data)}
    for case in discover_cases(data).cases:
        seg = label_file(case)
        if seg:
            seg.unlink()
    with pytest.raises(InputError, match="no labelled case"):
        training_cases(data)


def test_training_takes_the_cases_tune_and_evaluate_call_labelled(synth_train, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(synth_train, data)
    first, second, third = sorted(p.name for p in data.iterdir())[:3]
    (data / first / f"{first}_seg.nii.gz").rename(data / first / f"{first}.nii.gz")
    (data / second / f"{second}_seg.nii.gz").rename(data / f"{second}_seg.nii.gz")
    shutil.copy(data / third / f"{third}_seg.nii.gz", data / third / f"{third}-seg.nii.gz")
    ids = [c.case_id for c in training_cases(data)]
    # the third case has two label maps: tune and evaluate refuse the folder, training
    # skips the case and says why
    assert "two reference label maps" in caplog.text and third in caplog.text
    (data / third / f"{third}-seg.nii.gz").unlink()
    assert set(ids) == set(find_label_maps(data)) - {third}
    assert {first, second} <= set(ids) and len(ids) == 5
    assert [c.case_id for c in training_cases(data)] == list(find_label_maps(data))
