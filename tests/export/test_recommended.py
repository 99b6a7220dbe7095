"""The bundle recommends what its runs' recipes say (their ``recommended:`` blocks)."""

from __future__ import annotations

import logging
import shutil

import yaml

from export.build import bundle_fields
from export.recommended import recommended_for
from export.runs import read_run
from submission.predict.bundle import Recommended, read_manifest
from train.recipe_files import load_config


def test_runs_of_one_recipe_share_its_defaults_and_disagreeing_ones_get_the_defaults(caplog):
    resunet, segresnet = load_config("resunet-localization"), load_config("segresnet-redundancy")
    tiny, effunet = load_config("tiny"), load_config("effunet")
    caplog.set_level(logging.WARNING)
    assert recommended_for([resunet] * 2) == Recommended(
        ensemble="mean", et_threshold=600, et_replace="empty"
    )
    assert recommended_for([resunet] * 2).et_threshold == 600
    assert recommended_for([segresnet]) == Recommended(ensemble="confidence", top_k=None)
    assert recommended_for([tiny, effunet]) == Recommended()  # both without a block
    assert not caplog.records
    assert recommended_for([segresnet, tiny]) == Recommended()
    assert "recipes segresnet-redundancy, tiny recommend different ensembles" in caplog.text


def _edit_config(run, **changes):
    config = yaml.safe_load((run / "config.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run


def test_the_bundle_takes_the_block_of_the_runs_config(tiny_run, tmp_path, make_bundle):
    assert "recommended" in yaml.safe_load((tiny_run / "config.yaml").read_text())
    block = {"ensemble": "vote", "et_threshold": 50, "threshold": {"WT": 0.4, "TC": 0.5, "ET": 0.6}}
    run = _edit_config(shutil.copytree(tiny_run, tmp_path / "run"), recommended=block)
    bundle = make_bundle(run, tmp_path / "bundle", "--format", "onnx")
    assert read_manifest(bundle).recommended == Recommended(**block)


def test_runs_trained_before_recipes_had_the_block_keep_their_recipes_defaults(tiny_run, tmp_path):
    # A run of a shipped recipe whose config.yaml predates the recommended: block gets the
    # recipe's, as export gave it before; the block, where present, wins.
    run = _edit_config(
        shutil.copytree(tiny_run, tmp_path / "run"), name="resunet-localization", recommended=None
    )
    assert read_run(run).config.recommended == Recommended(
        ensemble="mean", et_threshold=600, et_replace="empty"
    )
    assert bundle_fields([read_run(run)]).recommended.et_threshold == 600
    _edit_config(run, recommended={"ensemble": "mean"})
    assert read_run(run).config.recommended == Recommended()
    _edit_config(run, name="my-recipe", recommended=None)  # not shipped: the defaults
    assert read_run(run).config.recommended == Recommended()
