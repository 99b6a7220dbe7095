"""The runtime's nnU-Net v2 predictor against nnU-Net v2's own functions and predictor.

Every step is compared with the real nnunetv2 code (no mocks): crop, z-score, resampling,
window steps, Gaussian, padding, the logits of ``predict_logits_from_preprocessed_data``
(exactly: same float16 bits) and the probabilities of the whole path
``run_case_npy`` -> ``predict_logits_from_preprocessed_data`` ->
``convert_predicted_logits_to_segmentation_with_correct_shape``, driven by small random
PlainConvUNets. Only the final float32 sigmoid / softmax may differ (numpy's exp is not
torch's): by at most a few float32 ulps, 1.8e-7 measured, 1e-6 asserted, labels exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

from acvl_utils.cropping_and_padding.padding import pad_nd_image  # noqa: E402
from dynamic_network_architectures.architectures.unet import PlainConvUNet  # noqa: E402
from nnunetv2.inference.export_prediction import (  # noqa: E402
    convert_predicted_logits_to_segmentation_with_correct_shape,
)
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor  # noqa: E402
from nnunetv2.inference.sliding_window_prediction import (  # noqa: E402
    compute_gaussian as nn_compute_gaussian,
)
from nnunetv2.inference.sliding_window_prediction import (  # noqa: E402
    compute_steps_for_sliding_window,
)
from nnunetv2.postprocessing.remove_connected_components import (  # noqa: E402
    remove_all_but_largest_component_from_segmentation,
)
from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero as nn_crop  # noqa: E402
from nnunetv2.preprocessing.normalization.default_normalization_schemes import (  # noqa: E402
    ZScoreNormalization,
)
from nnunetv2.preprocessing.preprocessors.default_preprocessor import (  # noqa: E402
    DefaultPreprocessor,
)
from nnunetv2.preprocessing.resampling.default_resampling import (  # noqa: E402
    resample_data_or_seg_to_shape,
)
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager  # noqa: E402

from submission.predict.bundle import BundleError  # noqa: E402
from submission.predict.nnunet_ops import (  # noqa: E402
    compute_gaussian,
    compute_steps,
    crop_to_nonzero,
    pad_to_patch,
    predict_logits,
    zscore_,
)
from submission.predict.nnunet_pipeline import (  # noqa: E402
    NnunetPipeline,
    PostprocessingStep,
    apply_postprocessing,
    predict_group,
)
from submission.predict.nnunet_resampling import resample_to_shape  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
PROB_ATOL = 1e-6
SHAPE_XYZ = (40, 48, 36)
REGIONS = {"background": 0, "wt": [1, 2, 3], "tc": [2, 3], "et": 3}
LABELS = {"background": 0, "a": 1, "b": 2, "c": 3}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Both predictors run the same torch convolutions; one thread is fastest on shared
    cores (nnU-Net's predictor keeps the count it finds when it is at most 8)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def raw_case(seed: int = 0, shape=SHAPE_XYZ) -> np.ndarray:
    """float32 (2, X, Y, Z): an off-centre 'head' of positive intensities with a hole
    (zero in every channel) and a few voxels zero in one channel only."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    centre = np.array([n * f for n, f in zip(shape, (0.45, 0.55, 0.5))])[:, None, None, None]
    radii = np.array([n * 0.4 for n in shape])[:, None, None, None]
    head = (((grid - centre) / radii) ** 2).sum(0) < 1
    hole = (((grid - centre) / (radii / 5)) ** 2).sum(0) < 1
    image = rng.normal(100, 25, (2, *shape)).clip(1, None) * (head & ~hole)
    image[1, rng.random(shape) < 0.05] = 0
    return image.astype(np.float32)


def sitk_array(image_cxyz: np.ndarray) -> np.ndarray:
    """What SimpleITKIO reads: C-contiguous float32 (C, z, y, x)."""
    return np.ascontiguousarray(image_cxyz.transpose(0, 3, 2, 1), dtype=np.float32)


def test_crop_matches_nnunet():
    for seed in range(3):
        data = sitk_array(raw_case(seed))
        theirs, seg, bbox = nn_crop(data.copy())
        ours, mask, our_bbox = crop_to_nonzero(data)
        assert our_bbox == bbox
        assert np.array_equal(ours, theirs)
        assert np.array_equal(mask, seg[0] >= 0)
    rng = np.random.default_rng(5)  # random masks with many holes, some touching the faces
    for _ in range(3):
        data = (rng.random((1, 17, 19, 13)) < 0.7).astype(np.float32)
        assert np.array_equal(crop_to_nonzero(data)[1], nn_crop(data)[1][0] >= 0)


@pytest.mark.parametrize("use_mask", [True, False])
def test_zscore_matches_nnunet(use_mask):
    # The crop of a transposed C-contiguous array, as run_case_npy hands it over.
    data = sitk_array(raw_case(1)).transpose(0, 2, 3, 1)
    _, seg, bbox = nn_crop(data)
    crop = (slice(None), *[slice(a, b) for a, b in bbox])
    theirs, ours = data.copy()[crop], data.copy()[crop]
    mask = seg[0] >= 0
    for c in range(2):
        expected = ZScoreNormalization(use_mask, {}).run(theirs[c], seg[0])
        zscore_(ours[c], mask if use_mask else None)
        assert np.array_equal(ours[c], expected)
    assert not use_mask or np.all(ours[:, ~mask] == 0)


RESAMPLINGS = [
    # (shape, new_shape, current spacing, new spacing, order, order_z, force): no separate z
    ((2, 20, 24, 18), (25, 24, 30), (1.0, 1.0, 0.6), (0.8, 1.0, 1.0), 3, 0, None),
    ((2, 20, 24, 18), (14, 17, 13), (1.0, 1.0, 1.0), (1.4, 1.4, 1.4), 1, 0, None),
    # anisotropic current spacing: in-plane order, nearest across axis 0
    ((2, 9, 24, 18), (30, 24, 18), (3.5, 1.0, 1.0), (1.0, 1.0, 1.0), 3, 0, None),
    # anisotropic target spacing (logits going back): axis 2 separate
    ((3, 20, 24, 30), (20, 24, 9), (1.0, 1.0, 1.0), (1.0, 1.0, 3.4), 1, 0, None),
    # forced separate z with a linear z order; forbidden separate z
    ((2, 9, 16, 18), (20, 18, 18), (2.0, 1.0, 1.0), (1.0, 1.0, 1.0), 3, 1, True),
    ((2, 9, 16, 18), (20, 18, 18), (3.5, 1.0, 1.0), (1.0, 1.0, 1.0), 3, 0, False),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("case", RESAMPLINGS)
def test_resampling_matches_nnunet(case, dtype):
    shape, new_shape, current, new, order, order_z, force = case
    data = np.random.default_rng(2).normal(0, 3, shape).astype(dtype)
    expected = resample_data_or_seg_to_shape(
        data.copy(), new_shape, current, new, False, order, order_z, force
    )
    ours = resample_to_shape(data, new_shape, current, new, order, order_z, force)
    assert ours.dtype == expected.dtype == dtype
    assert np.array_equal(ours, expected)
    same = resample_to_shape(data, shape[1:], current, new, order, order_z, force)
    assert same is data


def test_steps_gaussian_and_padding_match_nnunet():
    for size, patch, step in [
        ((110, 64, 64), (64, 64, 64), 0.5),
        ((129, 97, 64), (48, 32, 64), 0.5),
        ((37, 33, 80), (32, 32, 32), 0.33),
    ]:
        assert compute_steps(size, patch, step) == compute_steps_for_sliding_window(
            size, patch, step
        )
    for patch, sigma in [((32, 32, 32), 0.125), ((48, 40, 33), 0.125), ((64, 64, 48), 0.25)]:
        expected = nn_compute_gaussian(patch, sigma, 10, device=torch.device("cpu")).numpy()
        assert compute_gaussian(patch, sigma).dtype == np.float16
        assert np.array_equal(compute_gaussian(patch, sigma), expected)
    data = np.random.default_rng(3).normal(size=(2, 30, 35, 64)).astype(np.float32)
    padded, revert = pad_to_patch(data, (32, 48, 32))
    expected, expected_revert = pad_nd_image(
        torch.from_numpy(data), (32, 48, 32), "constant", {"value": 0}, True
    )  # as predict_sliding_window_return_logits calls it, on a tensor
    assert np.array_equal(padded, expected.numpy())
    assert revert == expected_revert[1:]
    assert np.array_equal(padded[(slice(None), *revert)], data)


def networks(classes: int, folds: int = 2) -> list:
    torch.manual_seed(classes)
    out = []
    for _ in range(folds):
        net = PlainConvUNet(
            2, 3, (4, 8, 16), torch.nn.Conv3d, 3, (1, 2, 2), 1, classes, 1, True,
            torch.nn.InstanceNorm3d, {"eps": 1e-5, "affine": True}, None, None,
            torch.nn.LeakyReLU, {"inplace": True},
        )  # fmt: skip
        with torch.no_grad():  # random, not-trained scales: spread the logits a little
            for p in net.parameters():
                p.mul_(3.0)
        out.append(net.eval())
    return out


def numpy_forward(net):
    @torch.inference_mode()
    def forward(x: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(x)).numpy()

    return forward


def nnunet_setup(transpose, spacing, patch, use_mask, regions, nets, tta, mirror=(0, 1, 2)):
    inverse = [transpose.index(i) for i in range(3)]
    zscore = ["ZScoreNormalization"] * 2
    kwargs = {"is_seg": False, "order_z": 0, "force_separate_z": None}
    plans = {
        "dataset_name": "Dataset500_Synth",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(spacing),
        "original_median_shape_after_transp": [40, 40, 40],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": list(transpose),
        "transpose_backward": inverse,
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": list(patch),
                "median_image_size_in_voxels": [40, 40, 40],
                "spacing": list(spacing),
                "normalization_schemes": zscore,
                "use_mask_for_norm": list(use_mask),
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {**kwargs, "order": 3},
                "resampling_fn_seg_kwargs": {**kwargs, "is_seg": True, "order": 1},
                "resampling_fn_probabilities_kwargs": {**kwargs, "order": 1},
                "architecture": {"network_class_name": "x", "arch_kwargs": {}},
                "batch_dice": False,
            }
        },
        "foreground_intensity_properties_per_channel": {"0": {}, "1": {}},
    }
    dataset = {
        "labels": REGIONS if regions else LABELS,
        "channel_names": {"0": "t1c", "1": "t2f"},
        "file_ending": ".nii.gz",
        **({"regions_class_order": [1, 2, 3]} if regions else {}),
    }
    plans_manager = PlansManager(plans)
    config = plans_manager.get_configuration("3d_fullres")
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=tta,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        networks(3 if regions else 4, 1)[0],
        plans_manager,
        config,
        [net.state_dict() for net in nets],
        dataset,
        "nnUNetTrainer",
        mirror,
    )
    record = {
        "kind": "nnunet",
        "source": "Dataset500_Synth/nnUNetTrainer__nnUNetPlans__3d_fullres",
        "channels": ["t1c", "t2f"],
        "transpose_forward": list(transpose),
        "transpose_backward": inverse,
        "spacing": list(spacing),
        "normalization": [{"scheme": s, "use_mask": m} for s, m in zip(zscore, use_mask)],
        "patch": list(patch),
        "step": 0.5,
        "sigma_scale": 0.125,
        "gaussian": True,
        "mirror_axes": list(mirror),
        "resampling": {
            "data": {"order": 3, "order_z": 0, "force_separate_z": None},
            "probabilities": {"order": 1, "order_z": 0, "force_separate_z": None},
            "separate_z_anisotropy_threshold": 3.0,
        },
        "nonlinearity": "sigmoid" if regions else "softmax",
        "fold_average": "logits",
        "postprocessing": [],
    }
    return predictor, plans_manager, config, dataset, NnunetPipeline.from_dict(record)


@pytest.mark.parametrize(
    ("mirror", "gaussian", "folds"),
    [((), True, 2), ((0, 1, 2), True, 2), ((), False, 1), ((2, 0), True, 3)],
)
def test_logits_equal_nnunet_predictor(mirror, gaussian, folds):
    """Same float16 bits as predict_logits_from_preprocessed_data (the second preprocessed
    case is smaller than the patch on one axis, so it is padded)."""
    nets = networks(4, folds)
    predictor, plans, config, dataset, _ = nnunet_setup(
        (0, 1, 2), (1.0, 1.0, 1.0), (32, 32, 32), (True, True), False, nets, bool(mirror), mirror
    )
    predictor.use_gaussian = gaussian
    forwards = [numpy_forward(n) for n in nets]
    for shape in [(2, 36, 34, 30), (2, 20, 40, 33)]:
        data = np.random.default_rng(4).normal(size=shape).astype(np.float32)
        expected = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data))
        ours = predict_logits(data, forwards, (32, 32, 32), 0.5, gaussian, 0.125, mirror)
        assert ours.dtype == np.float16
        assert np.array_equal(ours, expected.numpy())


CASES = {
    # name: (regions, tta, spacing_xyz, plans spacing, transpose_forward, patch, use_mask)
    "sigmoid-tta-same-spacing": (True, True, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (0, 1, 2),
                                 (32, 32, 32), (True, True)),
    "softmax-resampled": (False, False, (1.0, 1.2, 0.9), (1.0, 1.0, 1.0), (0, 1, 2),
                          (32, 32, 32), (True, False)),
    "softmax-tta-anisotropic-transposed": (False, True, (1.0, 1.0, 1.2), (1.0, 3.5, 1.0),
                                           (2, 0, 1), (32, 32, 32), (False, True)),
    "sigmoid-patch-larger-than-image": (True, False, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0),
                                        (0, 1, 2), (48, 64, 48), (False, False)),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_predict_group_matches_nnunet(name):
    regions, tta, spacing_xyz, spacing, transpose, patch, use_mask = CASES[name]
    nets = networks(3 if regions else 4)
    predictor, plans, config, dataset, pipeline = nnunet_setup(
        transpose, spacing, patch, use_mask, regions, nets, tta
    )
    image = raw_case(7)
    properties = {"spacing": list(spacing_xyz[::-1])}
    data, _, properties = DefaultPreprocessor(verbose=False).run_case_npy(
        sitk_array(image), None, properties, plans, config, dataset
    )
    logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data)).numpy()
    seg, probs = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, plans, config, predictor.label_manager, properties, True, 1
    )
    expected = np.asarray(probs).transpose(0, 3, 2, 1)  # SimpleITK axes -> bratskit's
    (ours,) = predict_group(
        pipeline, image, spacing_xyz, np.eye(4), [numpy_forward(n) for n in nets], tta
    )
    assert ours.shape == expected.shape and ours.dtype == np.float32
    assert np.abs(ours - expected).max() <= PROB_ATOL
    if regions:
        labels = np.zeros(SHAPE_XYZ, dtype=np.uint8)
        for i, label in enumerate((1, 2, 3)):
            labels[ours[i] > 0.5] = label
    else:
        labels = ours.argmax(0)
    assert np.array_equal(labels, np.asarray(seg).transpose(2, 1, 0))


def test_postprocessing_matches_nnunet():
    rng = np.random.default_rng(6)
    labels = (rng.random((30, 28, 26)) < 0.2) * rng.integers(1, 5, (30, 28, 26))
    labels[5:15, 5:15, 5:15] = 2
    labels[20:24, 20:24, 20:24] = 4
    for items in ([4], [2], [[1, 2, 4]], [1, [2, 4]], 2):
        expected = remove_all_but_largest_component_from_segmentation(
            labels,
            items
            if isinstance(items, int)
            else [tuple(i) if isinstance(i, list) else i for i in items],  # noqa: E501
        )
        step = {"function": "remove_all_but_largest_component", "labels_or_regions": items}
        assert np.array_equal(apply_postprocessing(labels, [step]), expected)
    steps = [{"function": "remove_all_but_largest_component", "labels_or_regions": v}
             for v in ([[1, 2, 4]], [4])]  # fmt: skip
    steps[1] = PostprocessingStep.from_dict(steps[1])  # the record's form works too
    assert np.array_equal(
        apply_postprocessing(labels, steps),
        remove_all_but_largest_component_from_segmentation(
            remove_all_but_largest_component_from_segmentation(labels, [(1, 2, 4)]), [4]
        ),
    )


def test_record_round_trip_and_refusals():
    *_, pipeline = nnunet_setup(
        (0, 1, 2), (1.0, 1.0, 1.0), (32, 32, 32), (True, True), True, networks(3, 1), True
    )
    raw = pipeline.to_dict()
    raw["postprocessing"] = [
        {"function": "remove_all_but_largest_component", "labels_or_regions": [[1, 2, 4]]}
    ]
    assert NnunetPipeline.from_dict(raw).to_dict() == raw
    bad = [
        ("normalization", [{"scheme": "CTNormalization", "use_mask": False}] * 2, "CTNorm"),
        ("transpose_backward", [2, 0, 1], "inverse"),
        ("channels", ["t1c", "flair"], "channels"),
        ("nonlinearity", "relu", "nonlinearity"),
        ("fold_average", "probabilities", "fold_average"),
        ("step", 1.5, "step"),
        ("patch", [32, 32], "patch"),
        ("mirror_axes", [0, 3], "mirror_axes"),
        ("postprocessing", [{"function": "fill_holes", "labels_or_regions": [1]}], "fill"),
        ("extra", 1, "unknown"),
    ]
    for key, value, words in bad:
        with pytest.raises(BundleError, match=words):
            NnunetPipeline.from_dict({**raw, key: value})
    with pytest.raises(BundleError, match="missing"):
        NnunetPipeline.from_dict({k: v for k, v in raw.items() if k != "patch"})
