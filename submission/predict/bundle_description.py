"""A bundle described for people and for scripts: the readable summary that ``bratskit
export --info`` and ``bratskit bundle`` print, and the JSON one of ``bratskit bundle
--json`` (the manifest itself: :mod:`submission.predict.bundle`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from submission.predict.bundle import FORMAT, FORMAT_VERSION, MANIFEST, Manifest
from submission.predict.bundle_files import sha256_file


def describe(manifest: Manifest, bundle_dir: Path | None = None) -> str:
    """A readable summary of a manifest, for ``bratskit export --info``."""
    rec = manifest.recommended
    loc = "none" if manifest.localization is None else "x".join(map(str, manifest.localization))
    lines = [
        f"bundle {bundle_dir}" if bundle_dir is not None else "bundle",
        f"  format            {FORMAT} v{FORMAT_VERSION} "
        f"(bratskit {manifest.bratskit_version or '?'}, created {manifest.created or '?'})",
        f"  task              {manifest.task or 'not stated (2021 glioma)'}",
        f"  label scheme      {manifest.label_scheme}",
        f"  channels          {', '.join(manifest.channels)}"
        + "".join(f", {m} may be missing ({f})" for m, f in manifest.missing_modalities.items()),
        f"  preprocessing     {manifest.preprocessing.to_dict()}",
        f"  localisation      {loc}",
        f"  recommended       ensemble {rec.ensemble}, top-k {rec.top_k or 'N/2'} "
        f"(empty members: {rec.confidence_empty}), "
        f"ET threshold {rec.et_threshold} ({rec.et_replace}), threshold {rec.threshold}, "
        f"overlap {rec.overlap}",
        f"  members           {len(manifest.members)}",
    ]
    for m in manifest.members:
        arch = (m.architecture or {}).get("name", "imported")
        lines.append(
            f"    {m.name:<20} {m.stage:<12} {','.join(m.regions):<9} {arch:<10} "
            f"{m.outputs:<13} divisors {'x'.join(map(str, m.size_rule.divisors))}"
            + ("" if m.channels is None else f"  channels {','.join(m.channels)}")
        )
        for fmt, f in m.files.items():
            parity = (
                "not checked"
                if f.parity is None
                else (f"parity {f.parity['max_abs_diff']:.2e} <= {f.parity['tolerance']:.0e}")
            )
            lines.append(f"      {fmt:<12} {f.path:<28} {f.sha256[:12]}  {f.precision}  {parity}")
    return "\n".join(lines)


def summary(manifest: Manifest, bundle_dir: Path) -> dict[str, Any]:
    """What ``bratskit bundle --json`` prints: the folder, the sha256 of its manifest (what
    a build pins), label scheme, member count, the formats every member has, the version
    that exported it and the recommended defaults."""
    return {
        "bundle": str(bundle_dir),
        "manifest_sha256": sha256_file(Path(bundle_dir) / MANIFEST),
        "task": manifest.task,
        "label_scheme": manifest.label_scheme,
        "members": len(manifest.members),
        "formats": sorted(manifest.formats),
        "bratskit_version": manifest.bratskit_version,
        "recommended": manifest.to_dict()["recommended"],
    }
