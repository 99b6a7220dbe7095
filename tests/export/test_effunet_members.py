"""Paper 003's four single-modality effunet members: trained, exported and predicted, each
seeing only its own modality (sections 2.1, 3 and 4: "We process the four modalities
separately and average the sigmoid outputs")."""

from __future__ import annotations

import logging
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from submission.brats import MODALITIES
from submission.io.cases import discover_cases
from submission.predict.bundle_files import load_bundle
from submission.predict.engine import Engine, RuntimeOptions
from train.recipe_files import load_config

#: effunet at test size: 12 slices (one reduction by 4), in-plane 64 (two cells at stride 32
#: for EfficientNet's BatchNorm with batch 1), small decoders.
TINY_EFFUNET = {
    "in_channels": 1,
    "input_depth": 12,
    "out_channels": 3,
    "decoder_widths": [16, 16, 8, 8, 8],
    "volume_channels": 4,
    "weights": None,
}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def effunet_run(synth_cases, tmp_path_factory):
    """The shipped effunet recipe (four members, t1n, t1c, t2w, t2f) shrunk, fold 0 trained
    for 1 epoch; returns the run folder and the warnings training logged."""
    from train.cli import train

    root = tmp_path_factory.mktemp("effunet-run")
    raw = load_config("effunet").to_dict()
    raw.update(epochs=1, folds=2, num_workers=0, amp="off", cache_dtype="float32")
    raw["preprocessing"]["divisor"] = 8
    for member in raw["members"]:
        member.update(arch_params=dict(TINY_EFFUNET), crop=[64, 64, 12])
    recipe = root / "effunet-test.yaml"
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    records = _Records()
    logging.getLogger("train.trainer").addHandler(records)
    try:
        args = ["--data", synth_cases, "--config", recipe, "--out", root / "run"]
        args += ["--folds", "0", "--device", "cpu"]
        result = CliRunner().invoke(train, [str(a) for a in args])
    finally:
        logging.getLogger("train.trainer").removeHandler(records)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return root / "run", records.messages


@pytest.fixture(scope="module")
def effunet_bundle(effunet_run, make_bundle, tmp_path_factory):
    run, _ = effunet_run
    return make_bundle(run, tmp_path_factory.mktemp("effunet-bundle") / "b", "--format", "onnx")


@pytest.mark.slow
def test_each_member_trains_on_its_modality_and_warns_it_has_no_imagenet_weights(effunet_run):
    run, warnings = effunet_run
    assert sorted(p.name for p in run.iterdir() if (p / "fold0" / "best.pt").exists()) == sorted(
        MODALITIES
    )
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert [(m["key"], m["channels"]) for m in saved["members"]] == [(m, [m]) for m in MODALITIES]
    assert all(m["arch_params"]["weights"] is None for m in saved["members"])
    scratch = [w for w in warnings if "starts from random weights" in w]
    assert sorted(w.split(" fold")[0] for w in scratch) == sorted(MODALITIES)


@pytest.mark.slow
def test_the_manifest_gives_each_member_its_channel(effunet_bundle):
    manifest = load_bundle(effunet_bundle)
    assert manifest.channels == MODALITIES
    assert [(m.key, m.channels) for m in manifest.members] == [(c, (c,)) for c in MODALITIES]
    for member in manifest.members:
        assert member.architecture["params"]["in_channels"] == 1
        assert "weights" not in member.architecture["params"]
        assert member.files["onnx"].parity["input_shape"][1] == 1  # checked on one channel


@pytest.mark.slow
def test_the_engine_feeds_each_member_only_its_channel(effunet_bundle, synth_cases):
    engine = Engine(effunet_bundle, runtime=RuntimeOptions(backend="onnx", device="cpu"))
    case = discover_cases(synth_cases).cases[0]
    prepared, _ = engine.prepare_case(case)
    rng = np.random.default_rng(0)
    for k, modality in enumerate(MODALITIES):

        def mine(member, modality=modality):
            return member.key == modality

        before = engine.member_probabilities(prepared, [], keep=mine)
        others = replace(prepared, image_cdhw=prepared.image_cdhw.copy())
        rest = [i for i in range(len(MODALITIES)) if i != k]
        others.image_cdhw[rest] = rng.normal(size=others.image_cdhw[rest].shape)
        after = engine.member_probabilities(others, [], keep=mine)
        for region in ("WT", "TC", "ET"):
            assert len(before[region]) == 1
            np.testing.assert_array_equal(before[region][0], after[region][0])
        own = replace(prepared, image_cdhw=prepared.image_cdhw.copy())
        own.image_cdhw[k] = rng.normal(size=own.image_cdhw[k].shape)
        changed = engine.member_probabilities(own, [], keep=mine)
        assert not np.array_equal(before["WT"][0], changed["WT"][0])
    output = engine.segment(prepared)  # the mean of the four members' sigmoid outputs
    assert output.labels_dhw.shape == nib.load(case.files["t1n"]).shape
