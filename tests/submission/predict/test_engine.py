"""The inference engine on real ONNX files in real ONNX Runtime / OpenVINO sessions."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.special import expit

from submission.brats import (
    MODALITIES,
    SEG_SUFFIX,
    labels_to_regions,
    modality_filename,
    prediction_filename,
    regions_to_labels,
)
from submission.evaluation.overlap_2021 import dice
from submission.io.cases import discover_cases, load_case
from submission.io.nifti import read_label_map
from submission.predict import backends
from submission.predict.bundle import BundleError, read_manifest, write_manifest
from submission.predict.bundle_files import load_bundle
from submission.predict.engine import Engine, PredictOptions, RuntimeOptions
from submission.predict.postprocess import postprocess
from submission.predict.preprocess import CropInfo, Preprocessing, preprocess_case, uncrop
from submission.predict.resample import (
    resample_image,
    resample_labels,
    resample_probabilities,
    target_shape,
)
from submission.predict.runner import run_cases
from submission.predict.tumour_window import extract_window, paste_window, tumour_window_start
from submission.workbench.synth import lps_affine, synthesize_case
from submission.workbench.tuning import score_candidates
from tests.conftest import real_inputs
from tests.submission.predict.onnx_bundles import (
    channel_bundle,
    pointwise_member,
    write_bundle,
)

CPU_ONNX = RuntimeOptions(backend="onnx", device="cpu")
SCALE = 4.0


@pytest.fixture
def case(case_factory):
    root = case_factory("2021-folders", ("BraTS2021_00001",))
    return load_case(discover_cases(root).cases[0])


def member_probabilities(image_cdhw, folds=3, channels=(0, 1, 2)):
    """:func:`channel_bundle`'s members' probabilities (folds, 3, d, h, w) in numpy, and
    the crop they lie in."""
    norm, crop = preprocess_case(image_cdhw, Preprocessing())
    return np.stack([expit(SCALE * (norm[list(channels)] - 0.2 * k)) for k in range(folds)]), crop


def expected_labels(image_cdhw, folds=3, channels=(0, 1, 2), et_threshold=0, thr=(0.5,) * 3):
    """What :func:`channel_bundle` should give with the mean ensemble, computed in numpy
    (``thr``: the probability thresholds of WT, TC and ET)."""
    members, crop = member_probabilities(image_cdhw, folds, channels)
    probs = members.mean(axis=0)
    labels = postprocess(probs > np.reshape(thr, (3, 1, 1, 1)), "2021", et_threshold)
    return uncrop(labels, crop)


def expected_vote_and_confidence_labels(image_cdhw, folds=4):
    """:func:`channel_bundle`'s labels with the vote (more than half of the members) and
    the confidence ensemble (per region the ceil(folds / 2) members with the highest mean
    probability over the voxels they segment, averaged), computed in numpy."""
    members, crop = member_probabilities(image_cdhw, folds)
    vote = (members > 0.5).sum(axis=0) > folds / 2
    confidence = np.zeros(members.shape[1:], dtype=bool)
    for r in range(3):
        scores = [m[r][m[r] > 0.5].mean() for m in members]
        top = sorted(range(folds), key=lambda k: -scores[k])[: -(-folds // 2)]
        confidence[r] = members[top, r].mean(axis=0) > 0.5
    return {
        "vote": uncrop(postprocess(vote, "2021"), crop),
        "confidence": uncrop(postprocess(confidence, "2021"), crop),
    }


def segment(engine, case):
    image, _ = case
    return engine.segment(engine.prepare(image))


def test_mean_ensemble_matches_numpy(case, tmp_path):
    engine = Engine(channel_bundle(tmp_path / "b"), PredictOptions(), CPU_ONNX)
    out = segment(engine, case)
    assert out.labels_dhw.dtype == np.uint8 and out.labels_dhw.shape == case[0].shape[1:]
    np.testing.assert_array_equal(out.labels_dhw, expected_labels(case[0]))
    assert set(np.unique(out.labels_dhw)) == {0, 1, 2, 4}
    assert out.et_voxels == int((out.labels_dhw == 4).sum()) > 0
    assert {"preprocess", "members", "ensemble", "postprocess"} <= set(out.timings)


def test_sliding_window_tta_and_openvino_agree_with_full_volume(case, tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    full = segment(Engine(bundle, PredictOptions(), CPU_ONNX), case).labels_dhw
    # 1e-6 GB is below any full volume: the 16^3 sliding window from the start.
    sliding = Engine(bundle, PredictOptions(tta=True, max_memory_gb=1e-6), CPU_ONNX)
    np.testing.assert_array_equal(segment(sliding, case).labels_dhw, full)
    openvino = Engine(bundle, PredictOptions(), RuntimeOptions("openvino", "cpu"))
    assert np.mean(segment(openvino, case).labels_dhw == full) >= 0.999


@pytest.mark.parametrize("method", ["vote", "confidence"])
def test_vote_and_confidence_ensembles_match_numpy(case, tmp_path, method):
    # Four members, so that the mean (symmetric around the members' middle offset) and
    # the vote (3 of 4) disagree.
    bundle = channel_bundle(tmp_path / "b", folds=4)
    labels = segment(Engine(bundle, PredictOptions(ensemble=method), CPU_ONNX), case).labels_dhw
    expected = expected_vote_and_confidence_labels(case[0])[method]
    np.testing.assert_array_equal(labels, expected)
    # Members differ only by an offset, so each method lands between the extremes, and
    # not where the mean does: the method asked for is the one that ran.
    assert 0 < (labels > 0).sum() < labels.size
    assert not np.array_equal(expected, expected_labels(case[0], folds=4))


def test_logit_members_get_their_sigmoid_and_channels_follow_the_manifest(case, tmp_path):
    bundle = tmp_path / "b"
    members = []
    for fold in range(3):
        weights = np.zeros((3, 4))
        # The file's input order is reversed (t2f, t2w, t1c, t1n): channel 3 is t1n.
        weights[[0, 1, 2], [3, 2, 1]] = SCALE
        members.append(
            pointwise_member(
                bundle,
                "seg",
                fold,
                ("WT", "TC", "ET"),
                weights,
                np.full(3, -0.2 * fold * SCALE),
                logits=True,
            )
        )
    write_bundle(bundle, members, channels=tuple(reversed(MODALITIES)))
    out = segment(Engine(bundle, PredictOptions(), CPU_ONNX), case)
    np.testing.assert_array_equal(out.labels_dhw, expected_labels(case[0]))


def test_et_threshold_and_label_scheme_come_from_options(case, tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    big = int((expected_labels(case[0]) == 4).sum()) + 1
    out = segment(Engine(bundle, PredictOptions(et_threshold=big, labels="2023"), CPU_ONNX), case)
    assert 3 not in np.unique(out.labels_dhw) and out.et_voxels == 0
    assert set(np.unique(out.labels_dhw)) == {0, 1, 2}


def bundle_with_threshold(bundle, threshold):
    """channel_bundle with ``recommended.threshold`` set as written, unchecked."""
    raw = json.loads((channel_bundle(bundle) / "manifest.json").read_text())
    raw["recommended"]["threshold"] = threshold
    (bundle / "manifest.json").write_text(json.dumps(raw))
    return bundle


def test_per_region_thresholds_from_the_manifest(case, tmp_path):
    """A tuned bundle stores one threshold per region; each region uses its own."""
    # Above 0.33, the members' mean outside the brain: the engine's crop (no divisor padding)
    # and expected_labels' padded crop then agree.
    bundle = bundle_with_threshold(tmp_path / "b", {"WT": 0.4, "TC": 0.5, "ET": 0.6})
    out = segment(Engine(bundle, PredictOptions(), CPU_ONNX), case)
    expected = expected_labels(case[0], thr=(0.4, 0.5, 0.6))
    np.testing.assert_array_equal(out.labels_dhw, expected)
    assert not np.array_equal(expected, expected_labels(case[0]))
    # a flag's single threshold overrides them all
    out = segment(Engine(bundle, PredictOptions(threshold=0.5), CPU_ONNX), case)
    np.testing.assert_array_equal(out.labels_dhw, expected_labels(case[0]))


@pytest.mark.parametrize(
    "threshold", [{"WT": 0.3, "TC": 0.5}, {"WT": 0.3, "TC": 0.5, "ET": 1.5}, "high"]
)
def test_bad_thresholds_in_the_manifest_are_bundle_errors(tmp_path, threshold):
    bundle = bundle_with_threshold(tmp_path / "b", threshold)
    with pytest.raises(BundleError, match="recommended.threshold"):
        load_bundle(bundle)


def localisation_bundle(bundle, stage1_bias=0.0, window=(16, 16, 16)):
    """Stage 1 finds WT where t2f is above its mean; stage 2 is :func:`channel_bundle`'s."""
    members = []
    for fold in range(2):
        weights = np.zeros((1, 4))
        weights[0, 3] = SCALE
        members.append(
            pointwise_member(
                bundle, "stage1-wt", fold, ("WT",), weights, [stage1_bias], stage="localization"
            )
        )
        weights = np.zeros((3, 4))
        weights[[0, 1, 2], [0, 1, 2]] = SCALE
        members.append(
            pointwise_member(
                bundle,
                "stage2",
                fold,
                ("WT", "TC", "ET"),
                weights,
                np.full(3, -0.2 * fold * SCALE),
            )
        )
    return write_bundle(bundle, members, localization=window)


def test_localisation_predicts_inside_the_tumour_window_only(case, tmp_path):
    image, _ = case
    tumour = image.copy()
    tumour[3, 8:14, 9:15, 6:12] = 5000  # a bright t2f blob off the centre: the "tumour"
    engine = Engine(localisation_bundle(tmp_path / "b"), PredictOptions(), CPU_ONNX)
    out = segment(engine, (tumour, case[1]))
    assert not out.warnings
    norm, crop = preprocess_case(tumour, Preprocessing())
    wt = np.mean([expit(SCALE * norm[3]) for _ in range(2)], axis=0) > 0.5
    start = tumour_window_start(wt, 16)
    window = extract_window(norm, start, 16)
    probs = np.mean([expit(SCALE * (window[:3] - 0.2 * k)) for k in range(2)], axis=0)
    regions = paste_window(probs > 0.5, start, norm.shape[1:])
    np.testing.assert_array_equal(out.labels_dhw, uncrop(postprocess(regions, "2021"), crop))
    assert (out.labels_dhw > 0).sum() > 0


def test_empty_stage_one_falls_back_to_the_brain_centre_and_says_so(case, tmp_path, caplog):
    engine = Engine(
        localisation_bundle(tmp_path / "b", stage1_bias=-1e4), PredictOptions(), CPU_ONNX
    )
    with caplog.at_level(logging.WARNING):
        out = segment(engine, case)
    assert any("stage 1 found no tumour" in w for w in out.warnings)
    assert "stage 1 found no tumour" in caplog.text
    assert (out.labels_dhw > 0).sum() > 0  # stage 2 still ran on the centred window


class RunsOutOfMemoryAbove:
    """A real model that raises the device out-of-memory error for inputs over a size."""

    def __init__(self, model, voxels):
        self.model, self.voxels = model, voxels
        self.backend, self.device, self.precision = model.backend, model.device, "fp32"
        self.calls = []

    def __call__(self, batch):
        self.calls.append(batch.shape[2:])
        if np.prod(batch.shape[2:]) > self.voxels:
            raise backends.DeviceOutOfMemory("simulated: CUDA out of memory")
        return self.model(batch)

    def release(self):
        self.model.release()


def test_out_of_memory_falls_back_to_the_sliding_window(case, tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    engine = Engine(bundle, PredictOptions(), CPU_ONNX)
    for slot in engine.slots:
        slot.model = RunsOutOfMemoryAbove(slot.model, 16**3)
    out = segment(engine, case)
    np.testing.assert_array_equal(out.labels_dhw, expected_labels(case[0]))
    assert len(out.warnings) == 3 and "out of memory (full volume)" in out.warnings[0]
    assert all(s == (16, 16, 16) for s in engine.slots[0].model.calls[1:])


def test_a_patch_window_member_predicts_in_windows_of_its_training_patch(case, tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    manifest = json.loads((bundle / "manifest.json").read_text())
    for member in manifest["members"]:
        member["window"] = "patch"  # what export writes for members trained on random patches
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    engine = Engine(bundle, PredictOptions(), CPU_ONNX)
    for slot in engine.slots:
        slot.model = RunsOutOfMemoryAbove(slot.model, 10**9)  # only records the calls
    out = segment(engine, case)
    np.testing.assert_array_equal(out.labels_dhw, expected_labels(case[0]))
    assert not out.warnings
    calls = engine.slots[0].model.calls
    assert len(calls) > 1 and all(max(shape) <= 16 for shape in calls)  # the 16^3 patch


def test_sha256_and_format_version_are_checked(tmp_path):
    bundle = channel_bundle(tmp_path / "b")
    load_bundle(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "seg-fold1.onnx").write_bytes(b"not the exported model")
    with pytest.raises(BundleError, match="seg/fold1.*altered"):
        load_bundle(bundle)
    manifest["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="version 99 is not understood"):
        load_bundle(bundle)


def test_top_k_beyond_the_members_is_a_usage_error(tmp_path):
    with pytest.raises(ValueError, match="top-k must lie in 1..3"):
        Engine(channel_bundle(tmp_path / "b"), PredictOptions(top_k=4), CPU_ONNX)


def bratskit(*args):
    return subprocess.run(
        [sys.executable, "-m", "submission", *map(str, args)], capture_output=True, text=True
    )


def test_predict_cli_writes_good_cases_and_exits_1_for_a_bad_one(case_factory, tmp_path):
    root = case_factory("2021-folders", ("BraTS2021_00001", "BraTS2021_00002", "BraTS2021_00003"))
    next((root / "BraTS2021_00002").glob("*_t2.nii.gz")).unlink()
    bundle = channel_bundle(tmp_path / "b")
    out = tmp_path / "out"
    out.mkdir()
    result = bratskit(
        "predict",
        "--input",
        root,
        "--output",
        out,
        "--bundle",
        bundle,
        "--backend",
        "onnx",
        "--ensemble",
        "vote",
    )
    assert result.returncode == 1, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "BraTS2021_00001.nii.gz",
        "BraTS2021_00003.nii.gz",
    ]
    assert "FAILED BraTS2021_00002" in result.stderr and "t2" in result.stderr
    assert "ok BraTS2021_00001" in result.stderr and "ET " in result.stderr
    assert "2 of 3 cases written" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--backend", "nope"], 2, "Invalid value for '--backend'"),
        (["--top-k", "9"], 2, "top-k must lie in 1..3"),
        (["--precision", "fp16", "--device", "cpu"], 4, "fp16 runs on a GPU only"),
    ],
)
def test_predict_cli_usage_errors(case_factory, tmp_path, args, code, message):
    out = tmp_path / "out"
    out.mkdir()
    result = bratskit(
        "predict",
        "--input",
        case_factory(),
        "--output",
        out,
        "--bundle",
        channel_bundle(tmp_path / "b"),
        *args,
    )
    assert result.returncode == code and message in result.stderr
    assert not any(out.iterdir())


def test_real_cases_give_outputs_that_validate(real_data, tmp_path):
    gli, flat = real_inputs(real_data, tmp_path)
    bundle = channel_bundle(tmp_path / "b")
    for inputs, labels in ((gli, "2023"), (flat, "2021")):
        out = tmp_path / f"out-{labels}"
        out.mkdir()
        result = bratskit(
            "predict", "--input", inputs, "--output", out, "--bundle", bundle, "--labels", labels
        )
        assert result.returncode == 0, result.stderr
        check = bratskit("validate", inputs, "--output", out, "--labels", labels)
        assert check.returncode == 0, check.stdout


# -- native spacing (MET and MEN-RT come at any spacing, CONTRACT.md section 7) -----------

NATIVE_CASE = "BraTS2021_00007"
NATIVE_SPACING = (0.9, 0.9, 3.0)
#: 1 mm grid whose field of view is exactly 160 x 160 x 32 voxels of 0.9 x 0.9 x 3 mm.
ISO_SHAPE = (144, 144, 96)


def smoothed(image_cdhw: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """float32 image blurred inside the brain (Gaussian, ``sigma`` voxels), zero outside.

    The pointwise members have no spatial context, where a network's output is smooth over
    its receptive field; on the raw synthetic case their labels follow the voxel noise,
    which no resampling can reproduce (the labels of two noisy grids disagree whatever the
    method). Blurring the case stands in for the receptive field.
    """
    brain = image_cdhw[0] != 0
    weight = ndimage.gaussian_filter(brain.astype(np.float32), sigma)
    out = np.zeros(image_cdhw.shape, np.float32)
    for c, channel in enumerate(image_cdhw.astype(np.float32)):
        blurred = ndimage.gaussian_filter(channel, sigma)
        out[c][brain] = blurred[brain] / weight[brain]
    return out


def resampled_affine(affine: np.ndarray, shape_in, shape_out) -> np.ndarray:
    """The affine of ``shape_out`` voxels over the field of view of ``affine``'s
    ``shape_in`` ones, in :mod:`submission.predict.resample`'s edge-aligned convention."""
    scale = np.array(shape_in, float) / np.array(shape_out, float)
    voxels = np.eye(4)
    voxels[:3, :3] = np.diag(scale)
    voxels[:3, 3] = 0.5 * scale - 0.5
    return affine @ voxels


def write_native_case(folder, image_cdhw, seg_dhw, affine) -> None:
    """A 2021-named case folder: float32 modalities and a uint8 label map on ``affine``."""
    folder.mkdir(parents=True)
    volumes = [(m, image_cdhw[c]) for c, m in enumerate(MODALITIES)] + [(SEG_SUFFIX, seg_dhw)]
    for name, data in volumes:
        img = nib.Nifti1Image(data, affine)
        img.set_qform(affine, 2)
        img.set_sform(affine, 1)
        nib.save(img, folder / modality_filename(NATIVE_CASE, name, "2021"))


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """One synthetic 1 mm case (``iso``) and the same case resampled to an anisotropic
    native grid of 0.9 x 0.9 x 3 mm (``aniso``: images third order, labels nearest)."""
    image, regions = synthesize_case(np.random.default_rng([7, 0]), ISO_SHAPE)
    image = smoothed(image)
    seg = regions_to_labels(regions, "2021")
    shape = target_shape(ISO_SHAPE, (1.0, 1.0, 1.0), NATIVE_SPACING)
    assert shape == (160, 160, 32)
    root = tmp_path_factory.mktemp("native")
    iso_affine = lps_affine(ISO_SHAPE)
    affine = resampled_affine(iso_affine, ISO_SHAPE, shape)
    write_native_case(root / "iso" / NATIVE_CASE, image, seg, iso_affine)
    aniso = resample_image(image, shape)
    write_native_case(root / "aniso" / NATIVE_CASE, aniso, resample_labels(seg, shape), affine)
    return SimpleNamespace(root=root, image=image, aniso=aniso, shape=shape, affine=affine)


def spacing_bundle(bundle, spacing):
    """:func:`channel_bundle` whose manifest states the spacing its members trained at."""
    manifest = read_manifest(channel_bundle(bundle))
    preprocessing = replace(manifest.preprocessing, spacing=spacing)
    write_manifest(bundle, replace(manifest, preprocessing=preprocessing))
    return bundle


def agreement(labels_dhw: np.ndarray, reference_dhw: np.ndarray) -> float:
    """Fraction of the tumour voxels (labelled in either map) with the same label."""
    tumour = (labels_dhw > 0) | (reference_dhw > 0)
    return float(np.mean(labels_dhw[tumour] == reference_dhw[tumour]))


def native_case(native, name):
    return discover_cases(native.root / name).cases[0]


@pytest.mark.slow
def test_anisotropic_native_case_agrees_with_the_1mm_prediction(native, tmp_path, caplog):
    """Issue 14, must-show 3: the 0.9 x 0.9 x 3 mm case, resampled to the bundle's 1 mm for
    the networks, predicts the labels of the 1 mm case's prediction resampled (nearest) to
    its grid on at least 95 % of the tumour voxels, on the input's exact grid."""
    engine = Engine(spacing_bundle(tmp_path / "b", (1, 1, 1)), PredictOptions(), CPU_ONNX)
    labels = {}
    for name in ("iso", "aniso"):
        out = tmp_path / f"out-{name}"
        out.mkdir()
        caplog.clear()
        with caplog.at_level(logging.INFO):
            report = run_cases(native.root / name, out, engine)
        assert report.written == [NATIVE_CASE]
        resampled = "resampled 0.9x0.9x3 mm -> 1x1x1 mm for the networks" in caplog.text
        assert resampled == (name == "aniso")  # on the case's line, and only where it ran
        written = nib.load(out / prediction_filename(NATIVE_CASE))
        given = nib.load(native_case(native, name).files[MODALITIES[0]])
        assert written.shape == given.shape
        np.testing.assert_array_equal(written.affine, given.affine)
        labels[name] = np.asarray(written.dataobj)
    assert labels["aniso"].shape == native.shape
    figure = agreement(labels["aniso"], resample_labels(labels["iso"], native.shape))
    assert figure >= 0.95, f"{figure:.4f} of the tumour voxels agree"


@pytest.mark.slow
def test_resampled_prediction_equals_the_1mm_probabilities_resampled(native, tmp_path):
    """The engine against the ideal, without the nearest-neighbour reference's own error at
    tumour borders: the 1 mm members' probabilities resampled linearly to the native grid
    and ensembled there. Only the information the 3 mm slices lack may differ."""
    engine = Engine(spacing_bundle(tmp_path / "b", (1, 1, 1)), PredictOptions(), CPU_ONNX)
    iso = engine.prepare(native.image, (1.0, 1.0, 1.0))
    assert iso.resampling is None
    probs = {
        region: [resample_probabilities(uncrop(p, iso.crop)[None], native.shape)[0] for p in ps]
        for region, ps in engine.member_probabilities(iso, []).items()
    }
    whole = CropInfo(native.shape, (0, 0, 0), native.shape, ((0, 0),) * 3)
    ideal = engine.labels(engine.regions(probs), whole)
    prepared, grid = engine.prepare_case(native_case(native, "aniso"))
    assert prepared.resampling is not None and prepared.resampling.shape == ISO_SHAPE
    assert prepared.crop.in_shape == grid.shape == native.shape
    out = engine.segment(prepared)
    assert agreement(out.labels_dhw, ideal) >= 0.99
    assert out.warnings == ["resampled 0.9x0.9x3 mm -> 1x1x1 mm for the networks"]


def test_without_a_spacing_or_at_the_case_spacing_nothing_is_resampled(native, tmp_path):
    """A bundle without ``preprocessing.spacing`` takes the path it always took, and so does
    one trained at the case's own spacing (0.9 mm read back from float32 headers)."""
    case = native_case(native, "aniso")
    image, _ = load_case(case)
    plain = Engine(channel_bundle(tmp_path / "plain"), PredictOptions(), CPU_ONNX)
    today = plain.segment(plain.prepare(image)).labels_dhw
    assert (today > 0).any()
    for engine in (
        plain,
        Engine(spacing_bundle(tmp_path / "same", NATIVE_SPACING), PredictOptions(), CPU_ONNX),
    ):
        prepared, _ = engine.prepare_case(case)
        assert prepared.resampling is None and not prepared.notes
        out = engine.segment(prepared)
        np.testing.assert_array_equal(out.labels_dhw, today)
        assert not out.warnings


def test_tune_scores_a_resampling_bundle_on_the_input_grid(native, tmp_path):
    """``bratskit tune`` on a native-spacing case scores what predict then the 2021 Dice
    on the input grid give (its members' probabilities come back on that grid)."""
    engine = Engine(spacing_bundle(tmp_path / "b", (1, 1, 1)), PredictOptions(), CPU_ONNX)
    result = score_candidates(engine, native.root / "aniso", None, (0,), (0.5,))
    case = native_case(native, "aniso")
    labels = engine.segment(engine.prepare_case(case)[0]).labels_dhw
    reference, _ = read_label_map(case.folder / modality_filename(NATIVE_CASE, SEG_SUFFIX, "2021"))
    pred, ref = labels_to_regions(labels, "2021"), labels_to_regions(reference, "2021")
    expected = [dice(pred[r], ref[r]) for r in range(3)]
    assert result.dice[result.current] == [pytest.approx(expected, abs=1e-9)]
    assert min(expected) > 0
