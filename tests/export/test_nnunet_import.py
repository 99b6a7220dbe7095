"""``bratskit import nnunet``: results folders made by nnU-Net's own planner, network builder
and checkpoint writer (:mod:`tests.export.nnunet_fixtures`) become bundles that load, whose
record says what the plans and checkpoints say, whose ONNX files compute nnU-Net's
networks; the refusals; channel, label and post-processing mapping."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from export.errors import RunError
from export.nnunet_labels import (
    map_channels,
    map_labels,
    parse_label_map,
    read_postprocessing,
)
from export.parity import onnx_forward
from submission.brats import get_scheme
from submission.cli import main
from submission.predict.bundle_files import load_bundle
from submission.tasks import get_task
from tests.export.nnunet_fixtures import (  # noqa: F401 (the *_fixture are fixtures)
    CHANNEL_NAMES,
    FOLDS,
    LABEL_LABELS,
    REGION_LABELS,
    REGIONS_CLASS_ORDER,
    copy_results,
    import_bundle,
    invoke_import,
    nnunet_label_bundle_fixture,
    nnunet_label_model_fixture,
    nnunet_region_bundle_fixture,
    nnunet_region_model_fixture,
    write_postprocessing,
)

PP_FUNCTION = "remove_all_but_largest_component_from_segmentation"


def _manifest(bundle) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _plans(model) -> tuple[dict, dict]:
    plans = json.loads((model.results_dir / "plans.json").read_text())
    return plans, plans["configurations"]["3d_fullres"]


def _label_manager(labels: dict, order=None):
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    return LabelManager(labels, order)


# --- the bundles ---------------------------------------------------------------------------


def test_region_bundle_loads_and_records_plans_and_checkpoints(
    nnunet_region_model, nnunet_region_bundle
):
    result = CliRunner().invoke(main, ["bundle", str(nnunet_region_bundle)])
    assert result.exit_code == 0, result.output
    plans, config = _plans(nnunet_region_model)
    raw = _manifest(nnunet_region_bundle)
    record = raw["pipelines"]["nnunet"]
    assert record["kind"] == "nnunet"
    assert record["source"].endswith("nnUNetTrainer__nnUNetPlans__3d_fullres")
    assert record["channels"] == ["t1n", "t1c", "t2w", "t2f"]  # T1, T1ce, T2, Flair
    assert record["transpose_forward"] == plans["transpose_forward"]
    assert record["transpose_backward"] == plans["transpose_backward"]
    assert record["spacing"] == config["spacing"]
    assert record["patch"] == config["patch_size"]
    assert record["normalization"] == [
        {"scheme": "ZScoreNormalization", "use_mask": m} for m in config["use_mask_for_norm"]
    ]
    assert record["mirror_axes"] == [0, 1, 2]  # the checkpoint's inference axes
    assert (record["step"], record["sigma_scale"], record["gaussian"]) == (0.5, 0.125, True)
    assert record["resampling"]["data"]["order"] == config["resampling_fn_data_kwargs"]["order"]
    assert record["resampling"]["probabilities"]["order"] == 1
    assert record["resampling"]["separate_z_anisotropy_threshold"] == 3.0
    assert (record["nonlinearity"], record["fold_average"]) == ("sigmoid", "logits")
    assert record["postprocessing"] == []
    assert [m["fold"] for m in raw["members"]] == list(FOLDS)
    for member in raw["members"]:
        assert (member["pipeline"], member["outputs"]) == ("nnunet", "logits")
        assert member["regions"] == ["WT", "TC", "ET"]  # Dataset137's output order
        assert "labels" not in member
        assert member["patch"] == config["patch_size"]
        assert set(member["files"]) == {"onnx"}
    assert (raw["task"], raw["label_scheme"]) == ("gli-2021", "2021")
    assert raw["recommended"]["ensemble"] == "mean"


def test_label_bundle_records_labels_and_transposes(nnunet_label_model, nnunet_label_bundle):
    manifest = load_bundle(nnunet_label_bundle)
    plans, config = _plans(nnunet_label_model)
    raw = _manifest(nnunet_label_bundle)
    record = raw["pipelines"]["nnunet"]
    assert plans["transpose_forward"] != [0, 1, 2]  # anisotropic voxels: nnU-Net transposes
    assert record["transpose_forward"] == plans["transpose_forward"]
    assert record["spacing"] == config["spacing"] == [2.0, 1.0, 1.0]
    assert record["nonlinearity"] == "softmax"
    # nnU-Net's softmax channels 0..3 = background, edema, necrosis, ET -> 2021 labels
    assert [m.labels for m in manifest.members] == [(0, 2, 1, 4)] * len(FOLDS)
    assert [m.regions for m in manifest.members] == [("WT", "TC", "ET")] * len(FOLDS)
    assert raw["recommended"]["ensemble"] == "argmax"


@pytest.mark.parametrize("kind", ["region", "label"])
def test_each_fold_file_computes_nnunets_network(kind, request):
    """Per fold: the manifest's parity within tolerance, and the ONNX logits equal to
    those of the network nnU-Net's trainer builds and its predictor loads, on an input of
    another size than the check's (dynamic spatial axes)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    model = request.getfixturevalue(f"nnunet_{kind}_model")
    bundle = request.getfixturevalue(f"nnunet_{kind}_bundle")
    plans, _ = _plans(model)
    dataset = json.loads((model.results_dir / "dataset.json").read_text())
    manager = PlansManager(plans)
    config = manager.get_configuration("3d_fullres")
    heads = manager.get_label_manager(dataset).num_segmentation_heads
    manifest = load_bundle(bundle)
    rng = np.random.default_rng(0)
    for member in manifest.members:
        parity = member.files["onnx"].parity
        assert parity["max_abs_diff"] <= parity["tolerance"] == 1e-4
        shape = member.size_rule.fit([40, 24, 48])
        assert list(shape) != list(parity["input_shape"][2:])
        image = rng.normal(size=(1, 4, *shape)).astype(np.float32)
        network = nnUNetTrainer.build_network_architecture(manager, config, 4, heads, False)
        checkpoint = torch.load(
            model.results_dir / f"fold_{member.fold}" / "checkpoint_final.pth",
            map_location="cpu",
            weights_only=False,  # our own file, read as nnU-Net's predictor reads it
        )
        network.load_state_dict(checkpoint["network_weights"])
        with torch.no_grad():
            expected = network.eval()(torch.from_numpy(image)).numpy()
        got = onnx_forward(bundle / member.files["onnx"].path)(image)
        np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_options_best_checkpoint_one_fold_label_map_channels(nnunet_region_model, tmp_path):
    out = import_bundle(
        nnunet_region_model.results_dir,
        tmp_path / "bundle",
        "--folds",
        "1",
        "--checkpoint",
        "best",
        "--label-map",
        "1=2,2=1,3=4",
        "--channels",
        "t1n,t1c,t2w,t2f",
    )
    manifest = load_bundle(out)
    assert [(m.fold, m.regions) for m in manifest.members] == [(1, ("WT", "TC", "ET"))]


def test_postprocessing_json_becomes_challenge_labels(nnunet_region_model, tmp_path):
    results = copy_results(nnunet_region_model, tmp_path)
    # determine_postprocessing's kwargs: all foreground labels, then one region (a tuple)
    write_postprocessing(
        results,
        [PP_FUNCTION, PP_FUNCTION],
        [{"labels_or_regions": [1, 2, 3]}, {"labels_or_regions": [3]}],
    )
    out = import_bundle(results, tmp_path / "bundle", "--folds", "0")
    steps = _manifest(out)["pipelines"]["nnunet"]["postprocessing"]
    assert steps == [
        {"function": "remove_all_but_largest_component", "labels_or_regions": [[1, 2, 4]]},
        {"function": "remove_all_but_largest_component", "labels_or_regions": [[4]]},
    ]


def test_postprocessing_labels_and_unknown_functions(tmp_path):
    path = tmp_path / "postprocessing.json"
    path.write_text(
        json.dumps(
            {
                "postprocessing_fns": [PP_FUNCTION],
                "postprocessing_kwargs": [{"labels_or_regions": 3}],
            }
        )
    )
    assert read_postprocessing(path, {0: 0, 1: 2, 2: 1, 3: 4}) == [
        {"function": "remove_all_but_largest_component", "labels_or_regions": [4]}
    ]
    path.write_text(
        json.dumps({"postprocessing_fns": ["my_filter"], "postprocessing_kwargs": [{}]})
    )
    with pytest.raises(RunError, match="my_filter"):
        read_postprocessing(path, {0: 0, 1: 2, 2: 1, 3: 4})


# --- refusals ------------------------------------------------------------------------------


def _cascade(plans, config):
    config["previous_stage"] = "3d_lowres"


def _ct_norm(plans, config):
    config["normalization_schemes"][1] = "CTNormalization"


def _reader(plans, config):
    plans["image_reader_writer"] = "NibabelIOWithReorient"


def _preprocessor(plans, config):
    config["preprocessor_name"] = "MyPreprocessor"


def _architecture(plans, config):
    config["architecture"]["network_class_name"] = "mypackage.MyUNet"


def _layer(plans, config):
    config["architecture"]["arch_kwargs"]["nonlin"] = "os.system"


@pytest.mark.parametrize(
    "alter, message",
    [
        (_cascade, "cascade"),
        (_ct_norm, "CTNormalization"),
        (_reader, "reorients"),
        (_preprocessor, "MyPreprocessor"),
        (_architecture, "mypackage.MyUNet"),
        (_layer, "os.system"),
    ],
)
def test_refuses_plans_it_cannot_run(nnunet_region_model, tmp_path, alter, message):
    results = copy_results(nnunet_region_model, tmp_path)
    plans = json.loads((results / "plans.json").read_text())
    alter(plans, plans["configurations"]["3d_fullres"])
    (results / "plans.json").write_text(json.dumps(plans))
    result = invoke_import(results, "--out", tmp_path / "bundle")
    assert result.exit_code == 3, result.output
    assert message in result.output
    assert not (tmp_path / "bundle").exists()


def _resave(path, **changes):
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)  # our own file
    torch.save({**checkpoint, **changes}, path)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"extra": datetime.datetime(2026, 1, 1)}, "datetime.datetime"),
        ({"trainer_name": "MyTrainer"}, "MyTrainer is not one of nnunetv2's own trainers"),
        ({"trainer_name": "nnUNetTrainerBN"}, "overrides build_network_architecture"),
    ],
)
def test_refuses_checkpoints(nnunet_region_model, tmp_path, changes, message):
    results = copy_results(nnunet_region_model, tmp_path)
    for fold in FOLDS:
        _resave(results / f"fold_{fold}" / "checkpoint_final.pth", **changes)
    result = invoke_import(results, "--out", tmp_path / "bundle")
    assert result.exit_code == 3, result.output
    assert message in result.output


def test_refuses_missing_folds_and_bad_options(nnunet_region_model, tmp_path):
    results = nnunet_region_model.results_dir
    missing = invoke_import(results, "--out", tmp_path / "a", "--folds", "0,7")
    assert missing.exit_code == 3 and "fold(s) 7" in missing.output
    wrong_map = invoke_import(results, "--out", tmp_path / "b", "--label-map", "1=2,2=1,3=3")
    assert wrong_map.exit_code == 2 and "no label of scheme 2021" in wrong_map.output
    wrong_channels = invoke_import(results, "--out", tmp_path / "c", "--channels", "t1n,t1c")
    assert wrong_channels.exit_code == 2 and "--channels names 2 channels" in wrong_channels.output
    assert not any(tmp_path.iterdir())


# --- channel and label mapping --------------------------------------------------------------


def test_channels_by_name_and_override():
    task = get_task("gli-2021")
    assert map_channels(list(CHANNEL_NAMES.values()), task) == ("t1n", "t1c", "t2w", "t2f")
    assert map_channels(["FLAIR", "T1Gd", "native", "T2w"], task) == ("t2f", "t1c", "t1n", "t2w")
    assert map_channels(["T1-CE"], get_task("men-rt")) == ("t1c",)
    with pytest.raises(RunError, match="--channels"):
        map_channels(["T1", "ADC", "T2", "FLAIR"], task)
    override = ("t2f", "t1c", "t1n", "t2w")
    assert map_channels(["a", "b", "c", "d"], task, override) == override
    with pytest.raises(ValueError, match="distinct"):
        map_channels(["a", "b", "c", "d"], task, ("t1n", "t1n", "t2w", "t2f"))


def test_region_based_labels_by_region_membership():
    """Dataset137: nnU-Net 1 lies in WT only (oedema), 2 in WT and TC (necrosis), 3 in all
    (ET): 2021's 2/1/4, 2023's 2/1/3 (what convert_labels_back_to_BraTS does for 2021)."""
    manager = _label_manager(REGION_LABELS, REGIONS_CLASS_ORDER)
    mapping = map_labels(manager, REGION_LABELS, get_scheme("2021"))
    assert mapping.label_map == {0: 0, 1: 2, 2: 1, 3: 4}
    assert (mapping.regions, mapping.labels) == (("WT", "TC", "ET"), None)
    assert map_labels(manager, REGION_LABELS, get_scheme("2023")).label_map == {
        0: 0,
        1: 2,
        2: 1,
        3: 3,
    }
    from nnunetv2.dataset_conversion.Dataset137_BraTS21 import convert_labels_back_to_BraTS

    nnunet = np.arange(4)
    assert convert_labels_back_to_BraTS(nnunet).tolist() == [
        mapping.label_map[v] for v in nnunet.tolist()
    ]


def test_region_based_unnamed_regions_need_a_label_map():
    labels = {"background": 0, "r1": [1, 2, 3], "r2": [2, 3], "r3": [3]}
    manager = _label_manager(labels, REGIONS_CLASS_ORDER)
    with pytest.raises(RunError, match="--label-map"):
        map_labels(manager, labels, get_scheme("2021"))
    mapping = map_labels(manager, labels, get_scheme("2021"), parse_label_map("1=2,2=1,3=4"))
    assert mapping.regions == ("WT", "TC", "ET")
    with pytest.raises(ValueError, match="no region of scheme 2021"):
        map_labels(manager, labels, get_scheme("2021"), parse_label_map("1=1,2=2,3=4"))


def test_label_based_labels_by_name():
    manager = _label_manager(LABEL_LABELS)
    mapping = map_labels(manager, LABEL_LABELS, get_scheme("2021"))
    assert (mapping.labels, mapping.regions) == ((0, 2, 1, 4), ("WT", "TC", "ET"))
    # nnU-Net's Dataset226 (BraTS 2024 GLI) names its labels as the challenge does
    gli = {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3, "RC": 4}
    mapping = map_labels(_label_manager(gli), gli, get_task("gli-post").label_scheme)
    assert (mapping.labels, mapping.regions) == ((0, 1, 2, 3, 4), ("WT", "TC", "ET", "RC"))
    unknown = {"background": 0, "blob": 1}
    with pytest.raises(RunError, match="'blob' names no label"):
        map_labels(_label_manager(unknown), unknown, get_scheme("2021"))
    with pytest.raises(ValueError, match="no challenge label for nnU-Net label"):
        map_labels(manager, LABEL_LABELS, get_scheme("2021"), {1: 2, 2: 1})


def test_parse_label_map():
    assert parse_label_map(" 1=2, 2=1,3=4 ") == {1: 2, 2: 1, 3: 4}
    for bad in ("1:2", "1=2,1=4", "", "a=b"):
        with pytest.raises(ValueError):
            parse_label_map(bad)
