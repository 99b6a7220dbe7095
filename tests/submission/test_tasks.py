"""The task registry: its facts against the organisers' configs, names and recognition."""

from __future__ import annotations

import pytest

from submission.brats import MODALITIES, SCHEMES
from submission.tasks import GEOMETRIES, TASKS, TaskError, detect_task, get_task, resolve_task


@pytest.mark.parametrize(
    ("name", "task", "scheme"),
    [
        ("GLI", "gli-post", "2024-gli"),
        ("gli-2021", "gli-2021", "2021"),
        ("MET", "met", "2024-gli"),
        ("PED", "ped", "2024-ped"),
        ("GoAT", "goat", "2023"),
        ("SSA", "ssa", "2023"),
        ("MEN", "men", "2023"),
        ("MEN-RT", "men-rt", "men-rt"),
        ("MenRT", "men-rt", "men-rt"),
    ],
)
def test_a_task_name_or_the_organisers_short_name_gives_its_task_and_scheme(name, task, scheme):
    assert get_task(name).name == task
    assert get_task(name).label_scheme is SCHEMES[scheme]


def test_an_unknown_task_lists_the_registry():
    with pytest.raises(TaskError, match=r"'MEN-XX'.*gli-2021, gli-2023, gli-post, met, ped"):
        get_task("MEN-XX")


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_is_consistent_with_its_scheme(task):
    t = TASKS[task]
    scheme = t.label_scheme
    assert set(t.modalities) | set(t.optional) <= set(MODALITIES)
    assert not set(t.modalities) & set(t.optional)
    # Every scored group is one of the scheme's labels or regions: nothing else to score.
    assert set(t.scored) <= set(scheme.labels) | set(scheme.regions), t.scored
    assert t.geometry in GEOMETRIES


# gli-2023 and SSA are scored by the gli config, of which their labels fill WT, TC, ET.
_OWN_CONFIG = [t for t in TASKS if TASKS[t].config_2025 and t not in ("gli-2023", "ssa")]


@pytest.mark.parametrize("task", _OWN_CONFIG)
def test_scored_groups_are_those_of_the_official_config(task):
    pytest.importorskip("brats_evaluation", reason="needs bratskit[eval]")
    from submission.evaluation.panoptica_2025 import load_evaluator

    groups = load_evaluator(TASKS[task].config_2025).segmentation_class_groups_names
    assert sorted(g.upper() for g in groups) == sorted(TASKS[task].scored)


@pytest.mark.parametrize(
    ("ids", "task"),
    [
        (["BraTS2021_00000", "BraTS2021_01666"], "gli-2021"),
        (["BraTS-GLI-00001-000"], "gli-2023"),
        (["BraTS-GLI-00001-000", "BraTS-GLI-02001-100"], "gli-post"),
        (["BraTS-MET-00001-000"], "met"),
        (["BraTS-PED-00001-000"], "ped"),
        (["BraTS-MEN-00001-000"], "men"),
        (["BraTS-MEN-RT-0001-1", "BraTS-MEN-RT-0417-1"], "men-rt"),
        (["BraTS-SSA-00001-000"], "ssa"),
    ],
)
def test_auto_recognises_the_task_from_the_case_ids(ids, task):
    assert detect_task(ids).name == task
    assert resolve_task("auto", ids).name == task


def test_auto_refuses_unknown_mixed_or_no_ids():
    with pytest.raises(TaskError, match="'TCGA-FG-6692' follows no task's naming; pass --task"):
        detect_task(["TCGA-FG-6692"])
    with pytest.raises(TaskError, match="several tasks.*BraTS-MET-00001-000 \\(met\\)"):
        detect_task(["BraTS-MET-00001-000", "BraTS-PED-00001-000"])
    with pytest.raises(TaskError, match="no case ids"):
        detect_task([])
