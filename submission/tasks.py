"""The BraTS task registry: one entry per segmentation task of 2021 to 2026.

Part of the BraTS vocabulary (with :mod:`submission.brats`, which owns the label
integers: a task names its label scheme, never a label value). Facts follow CONTRACT.md
section 7 and the organisers' public materials: ``brats-evaluation``'s bundled
``config_<task>.yaml`` (the groups each config scores) and the case-id conventions of
the ``brats`` orchestrator's metadata.

Each :class:`Task` says which modalities a case has (required and optional), how its
files are named, its label scheme, the regions a model predicts (sigmoid outputs, the
scheme's regions) and the groups the organisers score, the official evaluation
configuration of 2023 and 2025, how a case id is recognised, the output-name rule and
the geometry. :func:`detect_task` recognises a task from case ids (``--task auto``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from submission.brats import MODALITIES, LabelScheme, get_scheme
from submission.exit_codes import BadValueError

#: Geometries of CONTRACT.md section 7: the 1 mm BraTS (SRI24) space, MNI152 and the
#: scanner's native space (any spacing).
GEOMETRIES: tuple[str, ...] = ("brats", "mni", "native")


@dataclass(frozen=True)
class Task:
    """One BraTS segmentation task.

    Attributes:
        name: registry key (``gli-post``), what ``--task`` takes.
        title: what the task is, for tables and messages.
        scheme: label scheme name (:data:`submission.brats.SCHEMES`).
        scored: groups the organisers score, upper case, in the config's order.
        config_2025: the ``brats-evaluation`` config (``brats-evaluate --config``), or
            None where the 2025 evaluator has none (2021).
        cohort_2023: the 2023 lesion-wise script's cohort (dilation, volume threshold).
        case_id: regular expression a case id of the task matches.
        modalities: modalities every case has, in :data:`~submission.brats.MODALITIES`
            order [all four].
        optional: modalities a case may lack (MET 2026: t2w) [none].
        naming: file-name convention: ``2021`` (``<id>_t1ce.nii.gz``), ``2023``
            (``<id>-t1c.nii.gz``, the default) or ``men-rt`` (``<id>_t1c.nii.gz``).
        numbered_output: outputs are matched by a name ending in ``NNNNN-NNN.nii.gz``
            (2024+ rules) [True].
        geometry: one of :data:`GEOMETRIES` [brats].
    """

    name: str
    title: str
    scheme: str
    scored: tuple[str, ...]
    config_2025: str | None
    cohort_2023: str
    case_id: str
    modalities: tuple[str, ...] = MODALITIES
    optional: tuple[str, ...] = ()
    naming: str = "2023"
    numbered_output: bool = True
    geometry: str = "brats"

    @property
    def label_scheme(self) -> LabelScheme:
        """The task's :class:`~submission.brats.LabelScheme`."""
        return get_scheme(self.scheme)

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions a model of the task predicts, in the scheme's order."""
        return self.label_scheme.region_names

    @property
    def channels(self) -> tuple[str, ...]:
        """Every modality a case may have, required and optional, in
        :data:`~submission.brats.MODALITIES` order: what the task's networks read."""
        return tuple(m for m in MODALITIES if m in (*self.modalities, *self.optional))

    @property
    def output_rule(self) -> str:
        """How the one output file of a case is named, in words."""
        if self.numbered_output:
            return "<case folder name>.nii.gz (ends in NNNNN-NNN.nii.gz)"
        return "<id>.nii.gz"

    def matches(self, case_id: str) -> bool:
        """True when ``case_id`` follows the task's case-id convention."""
        return bool(re.fullmatch(self.case_id, case_id))


#: 2024+ ids: ``BraTS-<TASK>-NNNNN-NNN`` (post-treatment timepoints end in ``-1xx``).
_ID_2024 = r"BraTS-{}-\d{{5}}-\d{{3}}"

TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        # The default wherever no task is given: the 2021 labels and names.
        Task(
            name="gli-2021",
            title="adult glioma, BraTS 2021 (RSNA-ASNR-MICCAI)",
            naming="2021",
            scheme="2021",
            scored=("WT", "TC", "ET"),
            config_2025=None,
            cohort_2023="gli",
            case_id=r"BraTS(2021|20)_[A-Za-z_]*\d+",
            numbered_output=False,
        ),
        Task(
            name="gli-2023",
            title="adult glioma, pre-treatment (2023)",
            scheme="2023",
            scored=("WT", "TC", "ET"),
            config_2025="gli",
            cohort_2023="gli",
            case_id=r"BraTS-GLI-\d{5}-0\d{2}",
        ),
        Task(
            name="gli-post",
            title="adult glioma, pre- and post-treatment with resection cavity (2024+)",
            scheme="2024-gli",
            scored=("NETC", "SNFH", "ET", "RC", "TC", "WT"),
            config_2025="gli",
            cohort_2023="gli",
            case_id=_ID_2024.format("GLI"),
            geometry="mni",
        ),
        Task(
            name="met",
            title="brain metastases (2026: t2w may be absent)",
            modalities=("t1n", "t1c", "t2f"),
            optional=("t2w",),
            scheme="2024-gli",
            scored=("ET", "RC", "TC", "WT"),
            config_2025="mets",
            cohort_2023="met",
            case_id=_ID_2024.format("MET"),
            geometry="native",
        ),
        Task(
            name="ped",
            title="paediatric tumours (2026: not skull-stripped)",
            scheme="2024-ped",
            scored=("ET", "NETC", "CC", "ED", "TC", "WT"),
            config_2025="ped",
            cohort_2023="ped",
            case_id=_ID_2024.format("PED"),
        ),
        Task(
            name="men",
            title="meningioma, pre-operative",
            scheme="2023",
            scored=("ET", "TC", "WT"),
            config_2025="MenPre",
            cohort_2023="men",
            case_id=_ID_2024.format("MEN"),
        ),
        Task(
            name="men-rt",
            title="meningioma radiotherapy (t1c only, gross tumour volume)",
            modalities=("t1c",),
            naming="men-rt",
            scheme="men-rt",
            scored=("GTV",),
            config_2025="MenRT",
            cohort_2023="men",
            case_id=r"BraTS-MEN-RT-\d{4}-\d+",
            numbered_output=False,
            geometry="native",
        ),
        # SSA has no config of its own in brats-evaluation; the glioma one scores its
        # three regions (CONTRACT.md section 7: "most likely gli", its labels have no RC).
        Task(
            name="ssa",
            title="glioma in sub-Saharan Africa",
            scheme="2023",
            scored=("ET", "TC", "WT"),
            config_2025="gli",
            cohort_2023="ssa",
            case_id=_ID_2024.format("SSA"),
        ),
        Task(
            name="goat",
            title="generalisability across tumours (GoAT)",
            scheme="2023",
            scored=("ET", "TC", "WT"),
            config_2025="GoAT",
            cohort_2023="gli",
            case_id=r"BraTS-GoAT-\d{5}(-\d{3})?",
        ),
    )
}

AUTO = "auto"
#: Short names the organisers use (``GLI``, ``MEN-RT``) -> registry key.
_ALIASES = {
    "gli": "gli-post",
    "mets": "met",
    "menpre": "men",
    "menrt": "men-rt",
    "gli-pre": "gli-2023",
    "2021": "gli-2021",
}


class TaskError(ValueError, BadValueError):
    """An unknown task name, or case ids no task (or more than one) recognises."""


def get_task(name: str) -> Task:
    """A task by registry key or organisers' short name (any case: ``GLI``, ``MEN-RT``).

    Raises:
        TaskError: unknown, listing the registry.
    """
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    try:
        return TASKS[key]
    except KeyError:
        raise TaskError(
            f"unknown task {name!r}; choose one of {', '.join(TASKS)} (or {AUTO})"
        ) from None


def detect_task(case_ids: Iterable[str]) -> Task:
    """The task whose case-id convention every id follows (``--task auto``); where two
    do (``BraTS-GLI-00001-000`` is both 2023 and 2024+ glioma), the first in registry
    order, the older one: a 2024+ set holds post-treatment timepoints (``-1xx``) too.

    Raises:
        TaskError: no ids, an id of no known task, or ids no single task covers; the
            message names the ids and the fix (``--task``).
    """
    ids = sorted(set(case_ids))
    if not ids:
        raise TaskError("no case ids to recognise the task from; pass --task")
    for case_id in ids:
        if not any(t.matches(case_id) for t in TASKS.values()):
            raise TaskError(
                f"case id {case_id!r} follows no task's naming; pass --task ({', '.join(TASKS)})"
            )
    for task in TASKS.values():
        if all(task.matches(case_id) for case_id in ids):
            return task
    first = {next(t.name for t in TASKS.values() if t.matches(i)): i for i in ids}
    mixed = "; ".join(f"{case_id} ({task})" for task, case_id in sorted(first.items()))
    raise TaskError(f"the cases belong to several tasks: {mixed}; pass --task")


def resolve_task(name: str, case_ids: Iterable[str] = ()) -> Task:
    """``--task``: a registry name, or ``auto`` recognised from ``case_ids``."""
    return detect_task(case_ids) if str(name).lower() == AUTO else get_task(name)
