"""Input and output folders checked by the challenge rules (CONTRACT.md sections 1 and 3).

Output rules: exactly one ``<case-id>.nii.gz`` per input case and nothing else;
each readable, 3-D, integer-valued, labels within the scheme, and on the input's
exact grid (shape, and every coded transform equal to the input's affine). With a task
(:mod:`submission.tasks`), its label scheme, and its output-name rule: 2024+ tasks are
matched by a name ending in ``NNNNN-NNN.nii.gz``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from submission.brats import (
    MODALITIES,
    get_scheme,
    has_case_number,
    parse_filename,
    prediction_filename,
)
from submission.io.cases import (
    CaseError,
    InputError,
    discover_task_cases,
    load_channels,
    read_case_grid,
)
from submission.io.label_maps import check_label_file, older_than_inputs
from submission.io.nifti import Grid


@dataclass(frozen=True)
class Finding:
    """One checked item (a case or an output file): ``problem`` is None when it is valid."""

    subject: str
    problem: str | None = None


@dataclass
class Report:
    """All findings of a validation, with warnings that do not make it fail."""

    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every finding is valid."""
        return all(f.problem is None for f in self.findings)

    @property
    def failures(self) -> list[Finding]:
        """Findings with a problem."""
        return [f for f in self.findings if f.problem is not None]

    def lines(self) -> list[str]:
        """Human-readable lines: warnings, then one line per finding."""
        out = [f"warning: {w}" for w in self.warnings]
        for f in self.findings:
            out.append(
                f"ok    {f.subject}" if f.problem is None else f"FAIL  {f.subject}: {f.problem}"
            )
        return out

    def text(self, title: str) -> str:
        """What ``bratskit validate`` and ``package`` print: a title line, :meth:`lines`,
        and the count of valid and invalid findings."""
        n_bad = len(self.failures)
        counts = f"{len(self.findings) - n_bad} valid, {n_bad} invalid"
        return "\n".join([f"== {title}", *self.lines(), counts])


def validate_input(input_dir: Path, task: str | None = None) -> Report:
    """Discover and fully load every case (all checks of :func:`load_channels`): the four
    modalities, or with a task (a name or ``auto``) the task's, its optional ones allowed
    to be absent (MET's t2w; MEN-RT's t1c alone).

    Raises:
        InputError: the folder is missing or holds no case.
        TaskError: an unknown task, or ids ``auto`` cannot recognise.
    """
    found, rules = discover_task_cases(input_dir, task)
    channels, optional = (MODALITIES, ()) if rules is None else (rules.channels, rules.optional)
    report = Report(warnings=list(found.warnings))
    report.findings += [Finding(e.case_id, e.problem) for e in found.errors]
    for case in found.cases:
        try:
            load_channels(case, channels, optional)
            report.findings.append(Finding(case.case_id))
        except CaseError as exc:
            report.findings.append(Finding(case.case_id, exc.problem))
    report.findings.sort(key=lambda f: f.subject)
    return report


def _unexpected(name: str, expected: set[str]) -> str:
    parsed = parse_filename(name)
    stem = name.removesuffix(".nii.gz")
    for candidate in (parsed.case_id if parsed else None, stem.rsplit("_", 1)[0]):
        if candidate and prediction_filename(candidate) in expected:
            return f"wrong name: rename to {prediction_filename(candidate)}"
    return "unexpected entry: the output folder may hold only <case-id>.nii.gz files"


def validate_output(
    input_dir: Path, output_dir: Path, labels: str | None = None, task: str | None = None
) -> Report:
    """Check ``output_dir`` against the cases of ``input_dir``.

    Args:
        labels: label scheme the outputs must hold [the task's, else 2021].
        task: a task name or ``auto`` (recognised from the input's case ids): its label
            scheme and output-name rule.

    Raises:
        InputError: the input folder is unusable or the output folder is missing.
        TaskError: an unknown task, or ids ``auto`` cannot recognise.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise InputError(f"output folder {output_dir} does not exist or is not a folder")
    found, rules = discover_task_cases(input_dir, task)
    report = Report(warnings=list(found.warnings))
    scheme = get_scheme(labels or (rules.scheme if rules else "2021"))
    grids: dict[str, Grid | None] = {e.case_id: None for e in found.errors}
    cases = {case.case_id: case for case in found.cases}
    for case in found.cases:
        try:
            grids[case.case_id] = read_case_grid(case)
        except CaseError:
            grids[case.case_id] = None
    expected = {prediction_filename(cid): cid for cid in grids}
    for entry in sorted(output_dir.iterdir()):
        if entry.name not in expected:
            report.findings.append(Finding(entry.name, _unexpected(entry.name, set(expected))))
    for name, case_id in sorted(expected.items()):
        path = output_dir / name
        if not path.is_file():
            report.findings.append(Finding(name, f"missing output for case {case_id}"))
            continue
        if grids[case_id] is None:
            report.warnings.append(f"{name}: input case {case_id} is unusable; grid not checked")
        elif older_than_inputs(path, cases[case_id]):
            report.warnings.append(
                f"{name} is older than case {case_id}'s input files: a prediction of an "
                "earlier version of the case? predict it again"
            )
        problems = check_label_file(path, scheme, grids[case_id])
        if rules is not None and rules.numbered_output and not has_case_number(case_id):
            problems.append(
                f"task {rules.name} matches outputs by a name ending in NNNNN-NNN.nii.gz: "
                "name the case folder (and so its output) by the full case id"
            )
        report.findings.append(Finding(name, "; ".join(problems) or None))
    return report
