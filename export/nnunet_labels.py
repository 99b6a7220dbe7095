"""nnU-Net's channels, labels and post-processing in the task's vocabulary.

Channels: ``dataset.json``'s ``channel_names`` become bratskit modalities by
:data:`CHANNEL_WORDS` (``T1``/``native`` -> t1n, ``T1ce``/``T1Gd`` -> t1c, ``T2`` -> t2w,
``FLAIR`` -> t2f, case and punctuation ignored); ``--channels`` overrides.

Labels: nnU-Net trains on consecutive integers, so every BraTS conversion renumbers the
challenge labels, e.g. nnU-Net's ``Dataset137_BraTS21.py`` writes BraTS 2021's 2/1/4
(oedema, necrosis, enhancing) as 1/2/3 and converts predictions back with
``convert_labels_back_to_BraTS``. The map back, nnU-Net label -> challenge label of the
task's scheme, is found from ``dataset.json``:

- region-based models (``labels`` with lists, ``regions_class_order``): each output
  channel is named for a region (:data:`REGION_WORDS`: ``whole tumor`` -> WT, ...); an
  nnU-Net label then belongs to the challenge label that lies in exactly the same regions
  (nnU-Net 1 is in WT only: oedema; 2 in WT and TC: necrosis; 3 in all three: ET);
- label-based models: each label is named for a challenge label (:data:`LABEL_WORDS`:
  ``edema``/``SNFH`` -> the scheme's oedema label, ...).

``--label-map 1=2,2=1,3=4`` overrides either; a region-based model's channels are then
the regions whose labels the mapped label sets are.

Post-processing: nnU-Net's ``determine_postprocessing``
(``nnunetv2/postprocessing/remove_connected_components.py``) writes ``postprocessing.json``
next to its ``.pkl`` (never read here): ``postprocessing_fns`` (function names) and
``postprocessing_kwargs`` (``{"labels_or_regions": int | [int, ...]}``, a tuple region
written as a list). ``find_best_configuration`` writes it into
``<results>/crossval_results_folds_<folds>/``; a copy in the results folder itself wins.
Each step keeps the largest component of the union of its labels; its labels become
challenge labels: a label ``l`` -> ``[c]``, a list -> ``[[c, ...]]`` (one region).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.errors import RunError
from submission.brats import LabelScheme
from submission.predict.pipelines import label_regions
from submission.tasks import Task

log = logging.getLogger(__name__)

#: bratskit modality -> dataset.json channel names meaning it (lower case, alphanumerics).
CHANNEL_WORDS: dict[str, tuple[str, ...]] = {
    "t1n": ("t1", "t1n", "native", "t1native", "t1w", "t1pre", "t1precontrast"),
    "t1c": (
        *("t1ce", "t1gd", "t1c", "t1contrast", "t1post", "t1postcontrast", "t1wce", "t1cegd"),
        *("t1+c", "t1c+", "t1+gd"),
    ),
    "t2w": ("t2", "t2w"),
    "t2f": ("flair", "t2f", "t2flair"),
}
#: Region -> dataset.json region names meaning it (lower case, words).
REGION_WORDS: dict[str, tuple[str, ...]] = {
    "WT": ("wt", "whole tumor", "whole tumour", "whole"),
    "TC": ("tc", "tumor core", "tumour core", "core"),
    "ET": ("et", "enhancing tumor", "enhancing tumour", "enhancing"),
    "RC": ("rc", "resection cavity", "cavity"),
    "CC": ("cc", "cyst", "cystic component"),
    "GTV": ("gtv", "gross tumor volume", "gross tumour volume"),
}
#: (dataset.json label names, the scheme label names they mean, first found wins).
LABEL_WORDS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        (
            "ncr",
            "netc",
            "necrosis",
            "necrotic",
            "necrotic core",
            "necrotic tumor core",
            "necrotic tumour core",
            "ncr net",
            "non enhancing",
            "non enhancing tumor",
            "non enhancing tumour",
            "non enhancing tumor core",
            "non enhancing tumour core",
            "nonenhancing tumor core",
            "necrotic and non enhancing tumor core",
        ),
        ("NCR", "NETC"),
    ),
    (
        (
            "ed",
            "snfh",
            "edema",
            "oedema",
            "peritumoral edema",
            "peritumoral oedema",
            "surrounding non enhancing flair hyperintensity",
            "flair hyperintensity",
        ),
        ("ED", "SNFH"),
    ),
    (("et", "enhancing", "enhancing tumor", "enhancing tumour", "enhancing tissue"), ("ET",)),
    (("rc", "resection cavity", "cavity"), ("RC",)),
    (("cc", "cyst", "cystic component"), ("CC",)),
    (("gtv", "gross tumor volume", "gross tumour volume", "tumor", "tumour"), ("GTV",)),
)
PP_FUNCTIONS = {
    "remove_all_but_largest_component_from_segmentation": "remove_all_but_largest_component"
}


def _words(name: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", str(name).lower()))


def map_channels(names: Sequence[str], task: Task, override: Sequence[str] | None = None):
    """The bratskit modality of each network input channel, in input order.

    Raises:
        ValueError: a bad ``override`` (wrong count, repeated or not the task's).
        RunError: a channel name no modality is known by; the fix is ``--channels``.
    """
    allowed = task.channels
    if override is not None:
        channels = tuple(override)
        if len(channels) != len(names):
            raise ValueError(
                f"--channels names {len(channels)} channels, the model takes {len(names)} "
                f"({', '.join(names)})"
            )
    else:
        channels = []
        for i, name in enumerate(names):
            key = "".join(re.findall(r"[a-z0-9+]", name.lower()))
            found = [m for m, words in CHANNEL_WORDS.items() if key in words]
            if not found:
                known = "; ".join(f"{m}: {'/'.join(w[:3])}" for m, w in CHANNEL_WORDS.items())
                raise RunError(
                    f"dataset.json channel {i} {name!r} is no modality bratskit knows ({known}): "
                    f"give every channel's modality with --channels {','.join(allowed)}"
                )
            channels.append(found[0])
        channels = tuple(channels)
    if len(set(channels)) != len(channels) or set(channels) - set(allowed):
        raise ValueError(
            f"channels must be distinct modalities of task {task.name} ({', '.join(allowed)}), "
            f"got {', '.join(channels)} for dataset.json's {', '.join(names)}"
        )
    return channels


def parse_label_map(text: str) -> dict[int, int]:
    """``1=2,2=1,3=4`` -> {1: 2, 2: 1, 3: 4} (nnU-Net label -> challenge label).

    Raises:
        ValueError: not comma-separated ``int=int`` pairs, or a label given twice.
    """
    pairs = {}
    for item in (p.strip() for p in str(text).split(",") if p.strip()):
        match = re.fullmatch(r"(\d+)\s*=\s*(\d+)", item)
        if match is None:
            raise ValueError(
                f"--label-map takes NNUNET=CHALLENGE pairs like 1=2,2=1,3=4, got {item!r}"
            )
        key = int(match[1])
        if key in pairs:
            raise ValueError(f"--label-map gives nnU-Net label {key} twice")
        pairs[key] = int(match[2])
    if not pairs:
        raise ValueError("--label-map is empty; give NNUNET=CHALLENGE pairs like 1=2,2=1,3=4")
    return pairs


@dataclass(frozen=True)
class LabelMapping:
    """What the outputs mean in the task's scheme.

    Attributes:
        label_map: nnU-Net label -> challenge label (background 0 -> 0).
        regions: region-based: the region of each output channel; label-based: the
            scheme's regions the labels make up (:func:`label_regions`).
        labels: label-based: the challenge label of each output channel; else None.
    """

    label_map: dict[int, int]
    regions: tuple[str, ...]
    labels: tuple[int, ...] | None


def map_labels(
    label_manager, label_dict: Mapping[str, Any], scheme: LabelScheme, override=None
) -> LabelMapping:
    """Map an nnU-Net ``LabelManager``'s outputs to ``scheme`` (see the module docstring).

    Raises:
        ValueError: ``override`` misses an nnU-Net label or names no label of the scheme.
        RunError: names no vocabulary entry matches (fix: ``--label-map``), or labels
            that cannot be told apart.
    """
    foreground = [int(v) for v in label_manager.all_labels if int(v) != 0]
    if override is not None:
        _check_override(override, foreground, scheme)
    if label_manager.has_regions:
        return _region_based(label_manager, label_dict, scheme, override)
    if override is not None:
        label_map = {0: 0, **{k: int(v) for k, v in override.items() if k in foreground}}
    else:
        names: dict[int, str] = {}
        for name, value in label_dict.items():
            if name == "ignore":
                continue
            for v in value if isinstance(value, (list, tuple)) else (value,):
                names.setdefault(int(v), name)
        label_map = {0: 0, **{v: _scheme_label(names[v], scheme) for v in foreground}}
    _distinct(label_map, scheme)
    labels = tuple(label_map[int(v)] for v in label_manager.all_labels)
    regions = label_regions(labels, scheme.regions)
    if not regions:
        raise RunError(
            f"labels {list(labels)} make up no region of scheme {scheme.name} "
            f"({_describe(scheme)}): check --label-map and --task"
        )
    return LabelMapping(label_map, regions, labels)


def _check_override(override: Mapping[int, int], foreground: list[int], scheme) -> None:
    missing = [v for v in foreground if v not in override]
    if missing:
        raise ValueError(
            f"--label-map gives no challenge label for nnU-Net label(s) "
            f"{', '.join(map(str, missing))}; the model's labels are {foreground}"
        )
    wrong = sorted({int(c) for c in override.values()} - set(scheme.labels.values()))
    if wrong:
        raise ValueError(
            f"--label-map maps to {wrong}, no label of scheme {scheme.name} "
            f"({', '.join(f'{n}={v}' for n, v in scheme.labels.items())})"
        )


def _scheme_label(name: str, scheme: LabelScheme) -> int:
    words = _words(name)
    direct = {n.lower(): v for n, v in scheme.labels.items()}
    if words in direct:
        return direct[words]
    for names, meanings in LABEL_WORDS:
        if words in names:
            for meaning in meanings:
                if meaning in scheme.labels:
                    return scheme.labels[meaning]
    raise RunError(
        f"dataset.json label {name!r} names no label of scheme {scheme.name} "
        f"({', '.join(f'{n}={v}' for n, v in scheme.labels.items())}): give the map with "
        "--label-map NNUNET=CHALLENGE,... (e.g. 1=2,2=1,3=4 for BraTS 2021 conversions)"
    )


def _region_based(label_manager, label_dict, scheme, override) -> LabelMapping:
    sets = [
        frozenset(int(v) for v in (r if isinstance(r, (tuple, list)) else (r,)))
        for r in label_manager.all_regions
    ]
    names = [
        k
        for k, r in label_dict.items()
        if k != "ignore" and not (isinstance(r, (list, tuple)) and set(r) == {0}) and r != 0
    ]
    if override is not None:
        label_map = {0: 0, **{int(k): int(v) for k, v in override.items()}}
        regions = tuple(
            _region_of(frozenset(label_map[v] for v in s), n, scheme) for s, n in zip(sets, names)
        )
    else:
        regions = tuple(_region_named(name, scheme) for name in names)
        label_map = {0: 0, **_by_membership(sets, regions, scheme)}
    if len(set(regions)) != len(regions):
        raise RunError(
            f"dataset.json regions {names} map to {list(regions)}: two output channels are "
            "one region; check --label-map"
        )
    _distinct(label_map, scheme)
    return LabelMapping(label_map, regions, None)


def _region_named(name: str, scheme: LabelScheme) -> str:
    words = _words(name)
    for region, names in REGION_WORDS.items():
        if words in names and region in scheme.regions:
            return region
    raise RunError(
        f"dataset.json region {name!r} names no region of scheme {scheme.name} "
        f"({', '.join(scheme.region_names)}): name it (e.g. 'whole tumor') or give the label "
        "map with --label-map NNUNET=CHALLENGE,... (1=2,2=1,3=4 for BraTS 2021 conversions)"
    )


def _region_of(labels: frozenset[int], name: str, scheme: LabelScheme) -> str:
    for region, held in scheme.regions.items():
        if held == labels:
            return region
    raise ValueError(
        f"--label-map makes output channel {name!r} the labels {sorted(labels)}, which are no "
        f"region of scheme {scheme.name} ({_describe(scheme)})"
    )


def _by_membership(sets, regions, scheme: LabelScheme) -> dict[int, int]:
    """nnU-Net label -> the challenge label in exactly the same regions."""
    label_map = {}
    for label in sorted(set().union(*sets)):
        mine = {r for s, r in zip(sets, regions) if label in s}
        same = [
            value
            for value in scheme.labels.values()
            if {r for r in regions if value in scheme.regions[r]} == mine
        ]
        if len(same) != 1:
            raise RunError(
                f"nnU-Net label {label} lies in regions {sorted(mine)}, which "
                f"{'no' if not same else 'more than one'} label of scheme {scheme.name} "
                f"does ({_describe(scheme)}): give the map with --label-map NNUNET=CHALLENGE,..."
            )
        label_map[label] = same[0]
    return label_map


def _distinct(label_map: Mapping[int, int], scheme: LabelScheme) -> None:
    values = [v for k, v in label_map.items() if k != 0]
    if len(set(values)) != len(values) or 0 in values:
        raise RunError(
            f"nnU-Net labels map to {dict(label_map)}: two labels (or background) would be "
            f"one challenge label of scheme {scheme.name}; check --label-map"
        )


def _describe(scheme: LabelScheme) -> str:
    return ", ".join(f"{r}={sorted(v)}" for r, v in scheme.regions.items())


def find_postprocessing(results_dir: Path, folds: Sequence[int]) -> Path | None:
    """``postprocessing.json`` of the results folder (see the module docstring), or None."""
    results_dir = Path(results_dir)
    joined = "_".join(str(f) for f in folds)
    candidates = [
        results_dir / "postprocessing.json",
        results_dir / f"crossval_results_folds_{joined}" / "postprocessing.json",
        *sorted(results_dir.glob("crossval_results_folds_*/postprocessing.json")),
    ]
    return next((p for p in candidates if p.is_file()), None)


def read_postprocessing(path: Path, label_map: Mapping[int, int]) -> list[dict[str, Any]]:
    """The record's ``postprocessing`` steps, in challenge labels, from ``path``.

    Raises:
        RunError: unreadable, a function bratskit does not reproduce, or unknown labels.
    """
    try:
        raw = json.loads(Path(path).read_text())
        fns, kwargs = list(raw["postprocessing_fns"]), list(raw["postprocessing_kwargs"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise RunError(f"cannot read nnU-Net post-processing {path}: {exc}") from None
    if len(fns) != len(kwargs):
        raise RunError(f"{path}: {len(fns)} functions but {len(kwargs)} argument sets")
    steps = []
    for fn, args in zip(fns, kwargs):
        if fn not in PP_FUNCTIONS or not isinstance(args, dict):
            raise RunError(
                f"{path}: post-processing {fn} is not one bratskit reproduces "
                f"({', '.join(PP_FUNCTIONS)}); delete that step from the file (and its .pkl) "
                "or the file"
            )
        if set(args) - {"labels_or_regions", "background_label"} or args.get("background_label", 0):
            raise RunError(f"{path}: {fn} arguments {args} are not nnU-Net's defaults")
        steps.append(
            {
                "function": PP_FUNCTIONS[fn],
                "labels_or_regions": _challenge(args.get("labels_or_regions"), label_map, path),
            }
        )
    log.info("nnU-Net post-processing from %s: %s", path, steps or "none")
    return steps


def _challenge(value, label_map: Mapping[int, int], path: Path) -> list:
    def one(label) -> int:
        if isinstance(label, bool) or not isinstance(label, int) or label not in label_map:
            raise RunError(f"{path}: label {label!r} is not one of the model's {sorted(label_map)}")
        return label_map[label]

    if isinstance(value, list) and value:
        if all(isinstance(v, list) for v in value):
            return [sorted(one(v) for v in region) for region in value]
        return [sorted(one(v) for v in value)]
    return [one(value)]
