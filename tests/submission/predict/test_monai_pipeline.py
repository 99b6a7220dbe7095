"""The ``monai`` pipeline against MONAI itself: the same torch SegResNet (random weights)
run by MONAI's own transforms and ``SlidingWindowInferer`` on the same NIfTI files, and by
:func:`submission.predict.monai_pipeline.predict_group` (numpy only) through a numpy
forward. Needs torch and MONAI (the ``import`` extra); skipped without them.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from submission.predict.monai_pipeline import (
    MonaiPipeline,
    normalize_intensity,
    predict_group,
    resample_linear,
    spacing_plan,
)
from submission.predict.monai_window import importance_map, scan_interval, window_starts
from submission.predict.resample import voxel_spacing
from submission.workbench.synth import synthesize_case

torch = pytest.importorskip("torch")
pytest.importorskip("monai")
pytestmark = pytest.mark.filterwarnings(
    "ignore:inverse has been called but no invertible:UserWarning",
    "ignore:__array__ implementation:DeprecationWarning",
    "ignore::FutureWarning",
)

from monai.data import MetaTensor  # noqa: E402
from monai.data.utils import compute_importance_map, dense_patch_slices  # noqa: E402
from monai.inferers import SlidingWindowInferer  # noqa: E402
from monai.inferers.utils import _get_scan_interval  # noqa: E402
from monai.networks.nets import SegResNet  # noqa: E402
from monai.transforms import (  # noqa: E402
    Activationsd,
    Compose,
    Invertd,
    LoadImaged,
    NormalizeIntensity,
    NormalizeIntensityd,
    Orientationd,
    Spacingd,
)

CHANNELS = ("t1c", "t1n", "t2w", "t2f")  # the zoo bundle's T1c, T1, T2, FLAIR
MODALITY_ORDER = [1, 0, 2, 3]  # synthesize_case's t1n, t1c, t2w, t2f -> CHANNELS
#: An axis-swapping, flipping affine: array axes are (A->P, S->I, L->R) at 1.1, 1, 1.2 mm.
PERMUTED = np.array([[0, 0, 1.2, -20.0], [-1.1, 0, 0, 30.0], [0, -1.0, 0, 15.0], [0, 0, 0, 1.0]])
LPS = np.array([[-1.0, 0, 0, 47], [0, -1.0, 0, 39], [0, 0, 1.0, 0], [0, 0, 0, 1]])


@pytest.fixture(autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def segresnet(seed: int = 0) -> torch.nn.Module:
    """A 4-filter SegResNet (the zoo's blocks, 2 groups per GroupNorm), random weights."""
    torch.manual_seed(seed)
    net = SegResNet(
        init_filters=4, in_channels=4, out_channels=3, norm=("GROUP", {"num_groups": 2})
    )
    return net.eval()


def write_case(folder: Path, shape, affine: np.ndarray, seed: int = 0):
    """Four float32 NIfTI files of a synthetic case cropped to ``shape``; returns the paths
    (CHANNELS order) and the (4, *shape) array."""
    image, _ = synthesize_case(np.random.default_rng(seed), tuple(max(s, 32) for s in shape))
    image = image[MODALITY_ORDER][(slice(None), *(slice(0, s) for s in shape))].astype(np.float32)
    paths = []
    for name, channel in zip(CHANNELS, image):
        path = folder / f"case_{name}.nii.gz"
        nib.save(nib.Nifti1Image(channel, affine), path)
        paths.append(path)
    return paths, image


def monai_reference(paths, net, record: MonaiPipeline) -> np.ndarray:
    """The zoo's inference steps with MONAI's own classes: probabilities (K, X, Y, Z)."""
    steps = [LoadImaged(keys="image", image_only=False)]
    if record.orientation is not None:
        steps.append(Orientationd(keys="image", axcodes=record.orientation))
    if record.spacing is not None:
        steps.append(Spacingd(keys="image", pixdim=record.spacing, mode="bilinear"))
    steps.append(NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True))
    preprocessing = Compose(steps)
    data = preprocessing({"image": [str(p) for p in paths]})
    inferer = SlidingWindowInferer(
        roi_size=record.roi,
        sw_batch_size=record.sw_batch_size,
        overlap=record.overlap,
        mode=record.mode,
        sigma_scale=record.sigma_scale,
        padding_mode=record.padding_mode,
        cval=record.cval,
    )
    with torch.no_grad():
        pred = inferer(data["image"][None], net)[0]
    post = Compose(
        [
            Activationsd(keys="pred", sigmoid=True),
            Invertd(
                keys="pred",
                transform=preprocessing,
                orig_keys="image",
                nearest_interp=False,
                to_tensor=True,
            ),
        ]
    )
    return np.asarray(post({"image": data["image"], "pred": pred})["pred"], dtype=np.float32)


def numpy_forward(net):
    def forward(image_ncxyz: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(image_ncxyz)).numpy()

    return forward


def bratskit_prediction(paths, net, record: MonaiPipeline) -> np.ndarray:
    images = [nib.load(p) for p in paths]
    image = np.stack([np.asarray(i.dataobj, dtype=np.float32) for i in images])
    affine = images[0].affine
    (probs,) = predict_group(
        record, image, voxel_spacing(affine), affine, [numpy_forward(net)], tta=True
    )
    return probs


def record(**changes) -> MonaiPipeline:
    fields = dict(source="test", channels=CHANNELS, roi=(32, 32, 24), overlap=0.5)
    return MonaiPipeline(**(fields | changes))


CASES = {
    "constant-0.25": (
        (48, 40, 32),
        np.diag([1.0, 1, 1, 1]),
        record(mode="constant", overlap=0.25),
    ),
    "gaussian-0.5": ((48, 40, 32), np.diag([1.0, 1, 1, 1]), record(mode="gaussian")),
    "smaller-than-roi": ((48, 40, 20), np.diag([1.0, 1, 1, 1]), record(mode="gaussian")),
    "lps-to-ras": ((48, 40, 32), LPS, record(mode="gaussian", orientation="RAS")),
    "permuted-to-ras-reflect": (
        (40, 32, 48),
        PERMUTED,
        record(orientation="RAS", roi=(32, 32, 24), padding_mode="reflect", sw_batch_size=2),
    ),
    "spacing": (
        (40, 36, 32),
        np.diag([1.2, 1.0, 1.5, 1]),
        record(mode="gaussian", orientation="RAS", spacing=(1.0, 1.0, 1.0)),
    ),
    "permuted-spacing": (
        (40, 32, 48),
        PERMUTED,
        record(orientation="RAS", spacing=(1.0, 1.0005, 1.25)),  # y within AFFINE_TOL: kept
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_predict_group_matches_monai(tmp_path, name):
    shape, affine, rec = CASES[name]
    paths, _ = write_case(tmp_path, shape, affine)
    net = segresnet()
    expected = monai_reference(paths, net, rec)
    got = bratskit_prediction(paths, net, rec)
    assert got.shape == expected.shape == (3, *shape)
    assert got.dtype == np.float32
    diff = float(np.abs(got - expected).max())
    agree = float(((got > 0.5) == (expected > 0.5)).mean())
    positive = float((expected > 0.5).mean())
    print(f"{name}: max |p diff| {diff:.2e}, agreement {agree:.6f}, {positive:.2f} > 0.5")
    assert 0.02 < positive < 0.98  # the thresholded comparison is not trivial
    assert agree >= 0.999
    assert diff < 1e-4


def test_spacing_and_inverse_match_monais(tmp_path):
    """The resampled image has ``Spacingd``'s zeros exactly (its coordinate rounding
    decides which background voxels NormalizeIntensity(nonzero) counts as brain) and its
    values to float32 rounding (one axis at a time against trilinear), and so has
    ``Invertd``'s way back."""
    paths, image = write_case(tmp_path, (40, 36, 32), np.diag([1.2, 1.0, 1.5, 1]))
    pre = Compose([LoadImaged(keys="image"), Spacingd(keys="image", pixdim=(1.0, 1.0, 1.0))])
    data = pre({"image": [str(p) for p in paths]})
    affine = nib.load(paths[0]).affine
    shape, forward, inverse = spacing_plan(affine, image.shape[1:], (1.0, 1.0, 1.0))
    expected = np.asarray(data["image"])
    resampled = resample_linear(image, shape, forward)
    leaks = (expected != 0) & (np.abs(expected) < 1e-9)  # 1e-13 shares of brain voxels
    assert leaks.sum() > 0 and np.array_equal(expected != 0, resampled != 0)
    np.testing.assert_allclose(resampled, expected, rtol=2e-7, atol=0)
    probs = np.random.default_rng(0).random((3, *shape), dtype=np.float32)
    pred = MetaTensor(torch.from_numpy(probs))
    back = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False)(
        {"image": data["image"], "pred": pred}
    )["pred"]
    np.testing.assert_allclose(
        resample_linear(probs, image.shape[1:], inverse), np.asarray(back), rtol=2e-7, atol=0
    )


def test_no_resampling_at_the_records_spacing(tmp_path):
    """A case at the record's spacing goes through unresampled, as MONAI's Spacing skips
    an identity resampling: the result equals the run without Spacingd."""
    paths, _ = write_case(tmp_path, (48, 40, 32), np.diag([1.0, 1, 1, 1]))
    net = segresnet()
    with_spacing = bratskit_prediction(paths, net, record(spacing=(1.0, 1.0, 1.0)))
    without = bratskit_prediction(paths, net, record())
    np.testing.assert_array_equal(with_spacing, without)


def test_one_output_per_forward(tmp_path):
    paths, image = write_case(tmp_path, (48, 40, 32), np.diag([1.0, 1, 1, 1]))
    nets = [segresnet(0), segresnet(1)]
    outs = predict_group(
        record(), image, (1.0, 1.0, 1.0), np.eye(4), [numpy_forward(n) for n in nets], False
    )
    assert len(outs) == 2
    for out, net in zip(outs, nets):
        np.testing.assert_allclose(out, monai_reference(paths, net, record()), atol=1e-4)


@pytest.mark.parametrize(
    ("size", "roi", "overlap"),
    [
        ((48, 40, 32), (32, 32, 24), 0.5),
        ((48, 40, 24), (32, 32, 24), 0.25),
        ((97, 33, 8), (20, 33, 3), 0.6),
    ],
)
def test_windows_match_monai(size, roi, overlap):
    interval = scan_interval(size, roi, overlap)
    assert interval == _get_scan_interval(size, roi, 3, (overlap,) * 3)
    slices = dense_patch_slices(size, roi, interval)
    assert window_starts(size, roi, interval) == [tuple(s.start for s in w) for w in slices]


@pytest.mark.parametrize(
    ("mode", "sigma"), [("constant", 0.125), ("gaussian", 0.125), ("gaussian", 0.5)]
)
def test_importance_map_matches_monai(mode, sigma):
    roi = (32, 31, 24)
    expected = compute_importance_map(roi, mode=mode, sigma_scale=sigma).numpy()
    np.testing.assert_allclose(importance_map(roi, mode, sigma), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("nonzero", [True, False])
@pytest.mark.parametrize("channel_wise", [True, False])
def test_normalize_intensity_matches_monai(nonzero, channel_wise):
    rng = np.random.default_rng(3)
    image = rng.normal(100, 30, (4, 20, 18, 16)).astype(np.float32)
    image[:, :4] = 0  # background
    image[2] = 0  # an empty channel stays empty
    image[3, 4:] = 250.0  # a constant channel: standard deviation 0, divided by 1
    transform = NormalizeIntensity(nonzero=nonzero, channel_wise=channel_wise)
    expected = np.asarray(transform(torch.from_numpy(image.copy())))
    got = normalize_intensity(image, nonzero, channel_wise)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_record_round_trip_and_refusals():
    rec = record(orientation="RAS", spacing=(1.0, 1.0, 1.0), mode="gaussian")
    raw = rec.to_dict()
    assert raw["kind"] == "monai"
    assert raw["normalization"] == {"nonzero": True, "channel_wise": True}
    assert MonaiPipeline.from_dict(raw) == rec
    bad = {
        "overlap": 1.0,
        "mode": "cosine",
        "roi": [32, 32],
        "orientation": "RAR",
        "spacing": [1.0, 0.0, 1.0],
        "channels": ["t1", "t2"],
        "nonlinearity": "softmax",
        "padding_mode": "zeros",
    }
    for field, value in bad.items():
        with pytest.raises(ValueError, match=field):
            MonaiPipeline.from_dict(raw | {field: value})
    with pytest.raises(ValueError, match="missing keys"):
        MonaiPipeline.from_dict({k: v for k, v in raw.items() if k != "cval"})
    with pytest.raises(ValueError, match="unknown keys"):
        MonaiPipeline.from_dict(raw | {"extra": 1})
