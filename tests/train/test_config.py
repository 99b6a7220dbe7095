"""Recipes load, validate and round-trip; bad keys name themselves."""

from __future__ import annotations

import pytest
import yaml

from submission.predict.bundle import Recommended
from train.config import ConfigError
from train.recipe_files import (
    RECIPE_DIR,
    config_from_dict,
    load_config,
    recipe_names,
    save_config,
)


def test_the_four_paper_and_cpu_recipes_ship():
    assert {"resunet-localization", "segresnet-redundancy", "effunet", "tiny"} <= set(
        recipe_names()
    )


def test_resunet_localization_follows_paper_002():
    cfg = load_config("resunet-localization")
    members = {m.key: m for m in cfg.members}
    assert [m.stage for m in cfg.members].count("localization") == 1
    assert members["stage1-wt"].arch_params["base_filters"] == 24
    lrs = {m.regions[0]: m.optimizer.lr for m in cfg.members if m.stage == "segmentation"}
    assert lrs == {"WT": 1e-4, "TC": 3e-5, "ET": 3e-3}
    assert members["stage2-et"].loss == "bce" and members["stage2-tc"].loss == "bce_dice"
    assert all(m.arch_params["base_filters"] == 64 for k, m in members.items() if "stage2" in k)
    assert members["stage2-wt"].crop == (128, 128, 128)
    opt = members["stage2-wt"].optimizer
    assert (opt.schedule, opt.factor, opt.patience, opt.cooldown) == ("plateau", 0.4, 2, 2)
    assert cfg.batch_size == 4 and 40 <= cfg.epochs <= 60


def test_segresnet_redundancy_follows_paper_004():
    cfg = load_config("segresnet-redundancy")
    (member,) = cfg.members
    # the Barlow-Twins weight is the measured default, 0 (scripts/study_redundancy.py)
    assert member.redundancy == 0 and member.loss == "dice_squared"
    opt = member.optimizer
    assert (opt.name, opt.lr, opt.weight_decay, opt.schedule) == ("adamw", 1e-4, 1e-5, "cosine")
    assert member.crop == (192, 192, 144) and cfg.epochs == 300


def test_overrides_and_region_selection():
    cfg = load_config("resunet-localization", {"epochs": 3, "batch_size": None})
    assert cfg.epochs == 3 and cfg.batch_size == 4
    et_only = cfg.select(("ET",))
    assert [m.key for m in et_only.members] == ["stage1-wt", "stage2-et"]


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("segresnet-redundancy")
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg


def test_recommended_defaults_follow_the_papers():
    assert load_config("segresnet-redundancy").recommended == Recommended(
        ensemble="confidence",
        top_k=None,  # 004 section 3.2: top N/2
    )
    # 002 sections 2.5 and 2.6: the mean of the folds, ET under 600 voxels emptied (an
    # "empty prediction": TC and WT stay what their models predicted)
    assert load_config("resunet-localization").recommended == Recommended(
        ensemble="mean", et_threshold=600, et_replace="empty"
    )
    assert load_config("effunet").recommended == Recommended()  # 003 says nothing
    assert load_config("tiny").recommended == Recommended()


def test_the_run_config_carries_the_recommended_block(tmp_path):
    cfg = load_config("resunet-localization").select(("ET",))
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["recommended"] == {
        "ensemble": "mean",
        "top_k": None,
        "et_threshold": 600,
        "et_replace": "empty",
        "threshold": 0.5,
        "overlap": 0.5,
        "confidence_empty": "exclude",
    }
    assert load_config(tmp_path / "config.yaml").recommended.et_threshold == 600
    per_region = {"ensemble": "vote", "threshold": {"WT": 0.3, "TC": 0.5, "ET": 0.45}}
    raw = {**load_config("tiny").to_dict(), "recommended": per_region}
    assert config_from_dict(raw).recommended == Recommended(**per_region)


PLATEAU_MEMBER = {
    "key": "a",
    "regions": ["WT"],
    "arch": "resunet",
    "optimizer": {"schedule": "plateau"},
}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"val_interval": 0}, "val_interval must be >= 1"),
        (
            {
                "val_interval": 2,
                "members": [PLATEAU_MEMBER],
            },
            "val_interval 2: the plateau schedule of a watches a validation every epoch",
        ),
        ({"amp": "fp8"}, "amp"),
        ({"colour": "red"}, "colour"),
        ({"members": [{"key": "a", "regions": ["XX"], "arch": "resunet"}]}, "regions"),
        (
            {"recommended": {"ensemble": "median"}},
            "recommended.ensemble: unknown ensemble method 'median'; choose one of mean",
        ),
        ({"recommended": {"top_k": 0}}, "recommended.top_k: top-k must lie in 1..5 for 5 member"),
        (
            {"recommended": {"et_threshold": -1}},
            "recommended.et_threshold: ET threshold must be >= 0 voxels, got -1",
        ),
        (
            {"recommended": {"et_replace": "edema"}},
            "recommended.et_replace: ET replacement must be one of necrosis, background",
        ),
        ({"recommended": {"threshold": 1.5}}, r"recommended.threshold: thresholds must lie"),
        ({"recommended": {"threshold": {"WT": 0.5}}}, "recommended.threshold: per-region"),
        (
            {"recommended": {"overlap": 1.0}},
            r"recommended.overlap: overlap must lie in \[0, 1\), got 1.0",
        ),
        ({"recommended": {"top_k": 6}}, "recommended.top_k: top-k must lie in 1..5"),
        ({"recommended": {"et_threshold": "600"}}, "recommended.et_threshold"),
        ({"recommended": {"tta": True}}, "unknown key.*tta.*Recommended"),
    ],
)
def test_bad_recipes_name_the_bad_key(tmp_path, patch, message):
    raw = load_config("tiny").to_dict()
    raw.update(patch)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ConfigError, match="tiny"):
        load_config("no-such-recipe")


@pytest.mark.parametrize(
    ("key", "value"), [("et_threshold", 600.0), ("top_k", 2.0), ("top_k", True)]
)
def test_a_recipe_recommending_a_non_integer_count_is_refused(key, value):
    """A recipe's ``600.0`` would export a bundle whose manifest fails its schema (exit 3)."""
    raw = yaml.safe_load((RECIPE_DIR / "tiny.yaml").read_text())
    raw["recommended"] = {**(raw.get("recommended") or {}), key: value}
    with pytest.raises(ConfigError, match=f"must be an integer, got {value!r}"):
        config_from_dict(raw)


@pytest.mark.parametrize(
    ("task", "regions", "channels"),
    [
        ("gli-post", ("WT", "TC", "ET", "RC"), 4),
        ("ped", ("WT", "TC", "ET", "CC"), 4),
        ("met", ("WT", "TC", "ET", "RC"), 4),
        ("men-rt", ("GTV",), 1),
        ("gli-2023", ("WT", "TC", "ET"), 4),
    ],
)
def test_a_recipe_retargeted_to_a_task_predicts_its_regions_from_its_modalities(
    task, regions, channels
):
    cfg = load_config("tiny").for_task(task)
    (seg,) = cfg.members
    assert seg.regions == regions and seg.arch_params["out_channels"] == len(regions)
    assert seg.arch_params["in_channels"] == channels == len(cfg.channels)
    assert cfg.task == task
    assert cfg.scheme_regions == regions
    # the retargeted config is what the run saves and export reads back
    assert config_from_dict(cfg.to_dict()) == cfg


def test_single_region_members_follow_the_task():
    """Paper 002's one-network-per-region recipe: MEN-RT keeps one GTV network per stage,
    gli-post gains an RC network copied from the WT one."""
    post = {
        m.key: m.regions for m in load_config("resunet-localization").for_task("gli-post").members
    }
    assert post["stage2-rc"] == ("RC",) and post["stage1-wt"] == ("WT",)
    rt = load_config("resunet-localization").for_task("men-rt")
    assert [(m.stage, m.regions) for m in rt.members] == [
        ("localization", ("GTV",)),
        ("segmentation", ("GTV",)),
    ]
    assert rt.recommended.et_threshold == 0  # no ET in MEN-RT


def test_only_an_optional_modality_trained_with_dropout_is_declared_missing():
    met = load_config("tiny").for_task("met")
    assert met.optional_channels == ("t2w",) and met.missing_modalities == {"t2w": "zero"}
    no_dropout = load_config("tiny", {"augment": {"modality_dropout": 0.0}}).for_task("met")
    assert no_dropout.missing_modalities == {}
    assert load_config("tiny").missing_modalities == {}  # 2021: nothing optional
    with pytest.raises(ConfigError, match="already for task met"):
        met.for_task("ped")
    with pytest.raises(ConfigError, match="task met reads 2024-gli label maps, not 2023"):
        config_from_dict({**met.to_dict(), "label_scheme": "2023"})


# -- per-member channels (paper 003: one network per modality) ----------------------------


def test_effunet_has_four_single_modality_members_and_effunet_joint_one():
    cfg = load_config("effunet")
    assert [(m.key, m.channels) for m in cfg.members] == [
        ("t1n", ("t1n",)),
        ("t1c", ("t1c",)),
        ("t2w", ("t2w",)),
        ("t2f", ("t2f",)),
    ]
    assert all(m.regions == ("WT", "TC", "ET") and m.sampling == "centre" for m in cfg.members)
    assert [cfg.channel_index(m) for m in cfg.members] == [[0], [1], [2], [3]]
    joint = load_config("effunet-joint")
    assert [m.channels for m in joint.members] == [None]
    assert joint.member_channels(joint.members[0]) == ("t1n", "t1c", "t2w", "t2f")
    assert joint.channel_index(joint.members[0]) == [0, 1, 2, 3]


def test_member_channels_round_trip_through_the_run_config(tmp_path):
    cfg = load_config("effunet")
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["members"][3]["channels"] == ["t2f"]
    assert load_config(tmp_path / "config.yaml") == cfg
    tiny = yaml.safe_load(yaml.safe_dump(load_config("tiny").to_dict()))
    assert tiny["members"][0]["channels"] is None  # all the run's channels, as before


def _effunet_member(**changes) -> dict:
    raw = load_config("effunet").to_dict()
    raw["members"] = [{**raw["members"][0], **changes}]
    return raw


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels": ["flair"]}, r"t1n.channels must be distinct modalities"),
        ({"channels": ["t1n", "t1n"]}, r"t1n.channels must be distinct modalities"),
        ({"channels": []}, r"t1n.channels must be distinct modalities"),
        (
            {"arch_params": {"in_channels": 4, "input_depth": 108}},
            r"t1n.arch_params.in_channels is 4 but the member sees 1 channel\(s\) \(t1n\)",
        ),
    ],
)
def test_bad_member_channels_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(_effunet_member(**changes))


def test_member_channels_must_be_the_runs():
    men_rt = load_config("effunet").for_task("men-rt").to_dict()
    men_rt["members"] = [{**men_rt["members"][0], "channels": ["t2f"]}]
    with pytest.raises(ConfigError, match="t2f is not a channel of the run \\(t1c, task men-rt\\)"):
        config_from_dict(men_rt)


def test_for_task_drops_the_members_whose_channels_the_task_lacks():
    rt = load_config("effunet").for_task("men-rt")  # t1c only
    assert [(m.key, m.channels, m.regions) for m in rt.members] == [("t1c", ("t1c",), ("GTV",))]
    assert rt.members[0].arch_params["in_channels"] == 1
    assert rt.channel_index(rt.members[0]) == [0]
    # MET: t2w is optional, so its single-modality member could not predict a case without it
    met = load_config("effunet").for_task("met")
    assert [m.key for m in met.members] == ["t1n", "t1c", "t2f"]
    assert [met.channel_index(m) for m in met.members] == [[0], [1], [3]]
    assert all(m.arch_params["in_channels"] == 1 for m in met.members)
    # the joint network keeps its one member on the task's channels
    joint = load_config("effunet-joint").for_task("men-rt")
    assert joint.members[0].arch_params["in_channels"] == 1 and joint.members[0].channels is None
    only_t2w = config_from_dict(_effunet_member(key="t2w", channels=["t2w"]))
    with pytest.raises(ConfigError, match="no member of recipe 'effunet' reads task men-rt"):
        only_t2w.for_task("men-rt")
