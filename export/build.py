"""Training runs to a model bundle: plan the members, export and check them, write the manifest.

One bundle member per (run, member, fold) with a ``best.pt``; its files go to
``<key>/fold<k>.<format suffix>``. Member keys that occur in several runs are prefixed
with the run folder's name (``runA-seg``). Runs are combined only when they share the
preprocessing and the label scheme; a localisation stage's window is the stage-2 crop
and must agree between runs. The manifest is checked (every region covered, ...) before
anything is exported, and the finished bundle is read back with
:func:`submission.predict.bundle_files.load_bundle` (sha256 verified) before it replaces ``--out``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from export.convert import ExportSettings, export_files
from export.errors import RunError
from export.parity import ParityInputs, parity_inputs
from export.recommended import recommended_for
from export.runs import FoldCheckpoint, TrainingRun, load_member, read_run
from export.staging import check_output, staged_folder
from submission.brats import MODALITIES, SCHEMES
from submission.predict.bundle import BundleError, Manifest, Recommended, write_manifest
from submission.predict.bundle_files import load_bundle
from submission.predict.members import Member, ModelFile
from submission.predict.preprocess import Preprocessing
from submission.predict.sliding_window import SizeRule

log = logging.getLogger(__name__)


def bratskit_version() -> str:
    """``submission.__version__``, or the installed distribution's version where a folder
    named ``submission`` without ``__init__`` shadows the package (``tests/`` under pytest)."""
    try:
        from submission import __version__
    except ImportError:
        from importlib.metadata import version

        return version("bratskit")
    return __version__


@dataclass(frozen=True)
class BundleFields:
    """The manifest's bundle-wide fields, shared by every member."""

    label_scheme: str
    preprocessing: Preprocessing
    channels: tuple[str, ...] = MODALITIES
    localization: tuple[int, int, int] | None = None
    recommended: Recommended = field(default_factory=Recommended)
    task: str | None = None
    missing_modalities: dict[str, str] = field(default_factory=dict)

    def manifest(self, members: Sequence[Member]) -> Manifest:
        """A checked manifest of ``members`` with these fields.

        Raises:
            RunError: the members do not make a valid bundle (the manifest's message).
        """
        try:
            return Manifest(
                members=tuple(members),
                task=self.task,
                label_scheme=self.label_scheme,
                channels=self.channels,
                missing_modalities=dict(self.missing_modalities),
                preprocessing=self.preprocessing,
                localization=self.localization,
                recommended=self.recommended,
                bratskit_version=bratskit_version(),
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
        except BundleError as exc:
            raise RunError(f"these models do not make a bundle: {exc}") from None


@dataclass(frozen=True)
class PlannedMember:
    """A checkpoint and the manifest entry it becomes (``files`` are placeholders)."""

    checkpoint: FoldCheckpoint
    member: Member


def export_runs(
    run_dirs: Sequence[Path],
    out: Path,
    settings: ExportSettings | None = None,
    labels: str | None = None,
    force: bool = False,
) -> Manifest:
    """Export every fold of every member of ``run_dirs`` into the bundle folder ``out``.

    Args:
        run_dirs: training run folders (``bratskit train --out``).
        out: the bundle folder; must be absent or empty unless ``force``.
        settings: formats, opset, fp16 (default :class:`ExportSettings`).
        labels: label scheme the bundle writes by default; None takes the runs'.
        force: replace a non-empty ``out``.

    Returns:
        The written manifest.

    Raises:
        ValueError: no run, or an unknown label scheme.
        RunError: an unusable run, runs that cannot be combined, or members that do
            not make a valid bundle.
        OutputExistsError: ``out`` is not empty and ``force`` is False.
        ExportError: a file fails to export or its parity check.
    """
    settings = settings or ExportSettings()
    if not run_dirs:
        raise ValueError("no training run given: pass one or more run folders")
    if labels is not None and labels not in SCHEMES:
        raise ValueError(f"label scheme {labels!r} is not one of {', '.join(SCHEMES)}")
    check_output(out, force, inputs=run_dirs)
    runs = [read_run(Path(p)) for p in run_dirs]
    fields = bundle_fields(runs, labels)
    plan = plan_members(runs, settings)
    fields.manifest([p.member for p in plan])  # fail before the slow part
    log.info("exporting %d checkpoint(s) of %d run(s) to %s", len(plan), len(runs), out)
    start = time.perf_counter()
    with staged_folder(out, force) as tmp:
        members = _export_members(plan, fields.preprocessing, tmp, settings, fields.channels)
        manifest = fields.manifest(members)
        write_manifest(tmp, manifest)
        load_bundle(tmp)
    log.info("bundle %s: %d members in %.1f s", out, len(members), time.perf_counter() - start)
    return manifest


def bundle_fields(runs: Sequence[TrainingRun], labels: str | None = None) -> BundleFields:
    """The bundle-wide fields of ``runs``, which must agree on them.

    Raises:
        RunError: different preprocessing, label schemes or localisation windows.
    """
    first = runs[0]
    for run in runs[1:]:
        if run.config.preprocessing != first.config.preprocessing:
            raise RunError(
                f"runs {first.path} and {run.path} use different preprocessing "
                f"({first.config.preprocessing.to_dict()} vs "
                f"{run.config.preprocessing.to_dict()}): export them to separate bundles"
            )
        if run.label_scheme != first.label_scheme:
            raise RunError(
                f"runs {first.path} and {run.path} use different label schemes "
                f"({first.label_scheme} vs {run.label_scheme}): export them separately"
            )
        for what in ("task", "channels", "missing_modalities"):
            mine, theirs = getattr(first.config, what), getattr(run.config, what)
            if mine != theirs:
                raise RunError(
                    f"runs {first.path} and {run.path} differ in {what} ({mine} vs "
                    f"{theirs}): a bundle's members share them, export them separately"
                )
    windows = {run.localization_window for run in runs} - {None}
    if len(windows) > 1:
        raise RunError(f"the runs' localisation windows {sorted(windows)} differ; a bundle has one")
    if windows and any(run.localization_window is None for run in runs):
        log.warning(
            "runs without a localisation stage are combined with one that has it: their "
            "members will predict on the localisation window too"
        )
    return BundleFields(
        label_scheme=labels or first.label_scheme,
        preprocessing=first.config.preprocessing,
        localization=windows.pop() if windows else None,
        recommended=recommended_for([run.config for run in runs]),
        task=first.config.task,
        channels=first.config.channels,
        missing_modalities=first.config.missing_modalities,
    )


def member_keys(runs: Sequence[TrainingRun]) -> list[dict[str, str]]:
    """Per run, its member keys in the bundle: prefixed with the run name on a collision.

    Raises:
        RunError: keys that still collide (two runs in folders of the same name).
    """
    counts = Counter(m.key for run in runs for m in run.config.members)
    keys = [
        {m.key: f"{run.name}-{m.key}" if counts[m.key] > 1 else m.key for m in run.config.members}
        for run in runs
    ]
    final = [k for mapping in keys for k in mapping.values()]
    clashes = sorted(k for k, n in Counter(final).items() if n > 1)
    if clashes:
        raise RunError(
            f"member keys {clashes} occur in several runs whose folders share a name "
            "(or one run was given twice): rename a run folder"
        )
    return keys


def plan_members(runs: Sequence[TrainingRun], settings: ExportSettings) -> list[PlannedMember]:
    """One :class:`PlannedMember` per checkpoint, with placeholder files."""
    placeholder = ModelFile(path="not-exported-yet", sha256="")  # replaced as each file is written
    plan = []
    for run, keys in zip(runs, member_keys(runs)):
        for checkpoint in run.checkpoints:
            m = checkpoint.member
            member = Member(
                key=keys[m.key],
                fold=checkpoint.fold,
                regions=tuple(m.regions),
                files=dict.fromkeys(settings.file_keys, placeholder),
                stage=m.stage,
                patch=tuple(m.crop),
                channels=None if m.channels is None else tuple(m.channels),
                window=m.window,
            )
            plan.append(PlannedMember(checkpoint, member))
    return plan


def _export_members(
    plan: Sequence[PlannedMember],
    preprocessing: Preprocessing,
    bundle_dir: Path,
    settings: ExportSettings,
    channels: tuple[str, ...] = MODALITIES,
) -> list[Member]:
    """Load, export and check every planned member; parity inputs shared per shape and
    input channels (a member with its own ``channels`` is traced and checked on those)."""
    inputs: dict[tuple[SizeRule, tuple[int, ...] | None, tuple[str, ...]], ParityInputs] = {}
    members = []
    for planned in plan:
        loaded = load_member(planned.checkpoint)
        member = planned.member
        member_channels = channels if member.channels is None else member.channels
        cache_key = (loaded.size_rule, member.patch, member_channels)
        if cache_key not in inputs:
            inputs[cache_key] = parity_inputs(
                loaded.size_rule, preprocessing, member.patch, channels=member_channels
            )
        files = export_files(
            loaded.model,
            loaded.size_rule,
            inputs[cache_key],
            bundle_dir,
            f"{member.key}/fold{member.fold}",
            member.name,
            settings,
        )
        assert set(files) == set(member.files), "export wrote the planned formats"
        members.append(
            replace(
                member,
                files=files,
                architecture=loaded.architecture,
                size_rule=loaded.size_rule,
            )
        )
    return members
