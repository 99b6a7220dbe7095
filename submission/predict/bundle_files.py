"""The files a bundle's manifest lists: verified against their sha256 before use, and
copied (a subset of the formats, for an image that carries one backend) or merged
(several bundles into one ensemble). The manifest itself is :mod:`submission.predict.bundle`'s.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

from submission.predict.bundle import (
    BundleError,
    Manifest,
    Recommended,
    read_manifest,
    write_manifest,
)
from submission.predict.members import FILE_FORMATS, Member


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(bundle_dir: Path, manifest: Manifest, formats: tuple[str, ...] = FILE_FORMATS):
    """Check that every listed file of ``formats`` exists and matches its sha256.

    Raises:
        BundleError: the first missing or altered file, by path.
    """
    for member in manifest.members:
        for fmt in member.files:
            if fmt in formats:
                verify_file(bundle_dir, member, fmt)


def verify_file(bundle_dir: Path, member: Member, fmt: str) -> Path:
    """The path of ``member``'s file of format ``fmt``, after checking its sha256.

    Raises:
        BundleError: the file is missing or altered.
    """
    model_file = member.files[fmt]
    path = Path(bundle_dir) / model_file.path
    if not path.exists():
        raise BundleError(f"member {member.name}: {fmt} file {path} is missing")
    if not path.is_file():
        raise BundleError(
            f"member {member.name}: {fmt} file {path} is not a file (a folder?); put the "
            "exported file there, or re-export the bundle"
        )
    if not path.resolve().is_relative_to(Path(bundle_dir).resolve()):
        raise BundleError(
            f"member {member.name}: {path} leads outside the bundle (a symlink to "
            f"{path.resolve()}); copy the file into the bundle"
        )
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise BundleError(
            f"member {member.name}: cannot read {fmt} file {path}: {exc.strerror}; make it "
            "readable by the user running bratskit, or re-export the bundle"
        ) from None
    if actual != model_file.sha256:
        raise BundleError(
            f"member {member.name}: {path} has sha256 {actual[:12]}..., the manifest "
            f"says {model_file.sha256[:12]}...: the file was altered or replaced; "
            "re-export the bundle"
        )
    return path


def load_bundle(bundle_dir: Path, formats: tuple[str, ...] = FILE_FORMATS) -> Manifest:
    """Read the manifest and verify the sha256 of every file of ``formats``."""
    manifest = read_manifest(bundle_dir)
    verify_files(bundle_dir, manifest, formats)
    return manifest


def copy_bundle(
    bundle_dir: Path, out_dir: Path, formats: tuple[str, ...] = FILE_FORMATS
) -> Manifest:
    """Copy the files of ``formats`` (those a member has) and a manifest listing only them
    into the new folder ``out_dir``, verifying every sha256 on both sides: what a runtime
    image bakes in when it carries one backend.

    Raises:
        BundleError: an unknown format, a missing or altered file, a member left with none
            of ``formats``, or ``out_dir`` already holding files.
    """
    unknown = sorted(set(formats) - set(FILE_FORMATS))
    if unknown:
        raise BundleError(f"unknown file format(s) {unknown}; choose from {FILE_FORMATS}")
    manifest = load_bundle(bundle_dir, formats)
    kept = []
    for member in manifest.members:
        files = {fmt: f for fmt, f in member.files.items() if fmt in formats}
        if not files:
            raise BundleError(
                f"member {member.name} has no file of {', '.join(formats)} (it has "
                f"{', '.join(member.files)}); export the bundle with that format"
            )
        kept.append(replace(member, files=files))
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BundleError(f"{out_dir} is not empty; choose a new folder")
    for member in kept:
        for model_file in member.files.values():
            target = out_dir / model_file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(bundle_dir) / model_file.path, target)
    subset = replace(manifest, members=tuple(kept))
    write_manifest(out_dir, subset)
    return load_bundle(out_dir, formats)


def merge_bundles(sources: list[Path], out_dir: Path) -> Manifest:
    """One bundle holding every member of ``sources`` (our folds, imported nnU-Net and
    MONAI groups), their files copied and verified on both sides: the ensemble ``bratskit
    tune`` then chooses the method, top-k and thresholds of.

    The sources must agree on the task (one without a task is its label scheme's glioma
    task), label scheme, channels and missing-modality fills;
    the bratskit preprocessing is that of the sources with bratskit-run members (which
    must agree), member names, pipeline names and file paths must not collide, and at
    most one source may have a localisation stage. The merged bundle recommends the
    defaults (``mean``, or ``argmax`` when every member is label-based) until tuned.

    Raises:
        BundleError: fewer than two sources, a source that does not load, a
            disagreement or a collision (named), or ``out_dir`` already holding files.
    """
    if len(sources) < 2:
        raise BundleError("merge needs at least two bundles")
    manifests = [load_bundle(s) for s in sources]
    first = manifests[0]
    tasks = sorted({m.task for m in manifests} - {None})
    if len(tasks) > 1:
        raise BundleError(f"the bundles are of tasks {', '.join(tasks)}; merge one task's")
    for source, m in zip(sources[1:], manifests[1:]):
        # A bundle without a task (trained without --task) is its label scheme's glioma
        # task: the same regions, so it merges with one that names the task.
        for name in ("scheme", "label_scheme", "channels", "missing_modalities"):
            if getattr(m, name) != getattr(first, name):
                shown = (lambda v: v.name) if name == "scheme" else repr
                raise BundleError(
                    f"{source}: {name} {shown(getattr(m, name))} differs from {sources[0]}'s "
                    f"{shown(getattr(first, name))}; merge bundles of one task and channels"
                )
    ours = [m for m in manifests if any(x.pipeline is None for x in m.members)] or manifests
    if any(m.preprocessing != ours[0].preprocessing for m in ours):
        raise BundleError("the bundles' own members were preprocessed differently")
    staged = [m for m in manifests if m.localization is not None]
    if len(staged) > 1:
        raise BundleError("more than one bundle has a localisation stage")
    members = [x for m in manifests for x in m.members]
    pipelines = [(n, p) for m in manifests for n, p in m.pipelines.items()]
    paths = [f.path for x in members for f in x.files.values()]
    for what, names in (
        ("member", [x.name for x in members]),
        ("pipeline", [n for n, _ in pipelines]),
        ("file", paths),
    ):
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise BundleError(
                f"{what} {', '.join(twice)} is in more than one bundle; re-export or "
                "re-import one of them under another key"
            )
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BundleError(f"{out_dir} is not empty; choose a new folder")
    for source, m in zip(sources, manifests):
        for x in m.members:
            for f in x.files.values():
                (out_dir / f.path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(source) / f.path, out_dir / f.path)
    label_based = all(x.labels is not None for x in members if x.stage == "segmentation")
    merged = replace(
        first,
        task=tasks[0] if tasks else None,
        members=tuple(members),
        pipelines=dict(pipelines),
        preprocessing=ours[0].preprocessing,
        localization=staged[0].localization if staged else None,
        recommended=Recommended(ensemble="argmax" if label_based else "mean"),
    )
    write_manifest(out_dir, merged)
    return load_bundle(out_dir)
