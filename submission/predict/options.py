"""What ``bratskit predict`` may be asked: the predict and runtime options, their choices
and their checks, in one place.

Every check of an ensemble method, top-k, confidence rule for empty members, ET minimum
volume, ET replacement, probability threshold, sliding-window overlap and thread count is
here and only here, and so is the one parser of a threshold written as text
(:func:`parse_threshold`: ``--threshold`` and the parameters file). The engine checks the
options it resolves, the bundle checks its manifest's recommended values (as a
:class:`~submission.predict.bundle.BundleError` naming the key), and the pure functions
that use a value
(:func:`~submission.predict.ensemble.ensemble`,
:func:`~submission.predict.postprocess.postprocess`,
:func:`~submission.predict.sliding_window.window_starts`) check their arguments with the
same functions. Each raises ``ValueError`` naming the bad value and the allowed ones.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from submission.brats import REGION_NAMES, SCHEMES, TUMOUR_REGIONS, get_scheme

if TYPE_CHECKING:
    from submission.predict.bundle import Manifest

#: The papers' fold ensembles (see :mod:`submission.predict.ensemble`)
PAPER_ENSEMBLES = ("mean", "vote", "confidence")
#: ...and argmax, nnU-Net's rule for label-based (softmax) imported members.
ENSEMBLE_METHODS = (*PAPER_ENSEMBLES, "argmax")
#: What ET removed by the ET minimum volume becomes (see
#: :mod:`submission.predict.postprocess`): ``necrosis`` (TC minus ET), ``background``, or
#: ``empty`` (paper 002, 2.6: the ET region alone is emptied before nesting, so TC and WT
#: are what their own models predicted).
ET_REPLACEMENTS = ("necrosis", "background", "empty")
#: The confidence of a member that segments nothing, in the ``confidence`` ensemble (see
#: :mod:`submission.predict.ensemble`): ``zero``, ``exclude`` or ``background``.
CONFIDENCE_EMPTY = ("zero", "exclude", "background")
#: The default rule: ``exclude`` scored at least as well as the others on every held-out
#: comparison where they differed (README, "Ensembles and post-processing").
DEFAULT_CONFIDENCE_EMPTY = "exclude"


def check_ensemble(method: str) -> None:
    """Raises ValueError unless ``method`` is one of :data:`ENSEMBLE_METHODS`."""
    if method not in ENSEMBLE_METHODS:
        choices = ", ".join(ENSEMBLE_METHODS)
        raise ValueError(f"unknown ensemble method {method!r}; choose one of {choices}")


def _check_integer(name: str, value: Any) -> None:
    """Raises ValueError unless ``value`` is an integer (a recipe's ``600.0`` or a
    manifest's ``true`` is not a voxel count)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")


def check_top_k(top_k: int, members: int, counted: str = "") -> None:
    """Raises ValueError unless 1 <= ``top_k`` <= ``members``; ``counted`` says which
    members were counted, for the message."""
    _check_integer("top-k", top_k)
    if not 1 <= top_k <= members:
        raise ValueError(
            f"top-k must lie in 1..{members} for {members} member(s){counted}, got {top_k}"
        )


def check_confidence_empty(rule: str) -> None:
    """Raises ValueError unless ``rule`` is one of :data:`CONFIDENCE_EMPTY`."""
    if rule not in CONFIDENCE_EMPTY:
        choices = ", ".join(CONFIDENCE_EMPTY)
        raise ValueError(
            f"confidence rule for empty members must be one of {choices}, got {rule!r}"
        )


def check_et_threshold(voxels: int) -> None:
    """Raises ValueError for a negative ET minimum volume (0 disables it)."""
    _check_integer("ET threshold", voxels)
    if voxels < 0:
        raise ValueError(f"ET threshold must be >= 0 voxels, got {voxels}")


def check_et_replace(replace_with: str) -> None:
    """Raises ValueError unless ``replace_with`` is one of :data:`ET_REPLACEMENTS`."""
    if replace_with not in ET_REPLACEMENTS:
        choices = ", ".join(ET_REPLACEMENTS)
        raise ValueError(f"ET replacement must be one of {choices}, got {replace_with!r}")


def check_overlap(overlap: float) -> None:
    """Raises ValueError unless the sliding-window overlap lies in [0, 1)."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")


#: The most CPU threads a backend may be given: far above any machine's cores, far below
#: the values a backend misreads (OpenVINO refuses 1e11 with an error about the file).
MAX_THREADS = 4096


def check_threads(threads: int | None) -> None:
    """Raises ValueError unless ``threads`` is None (all cores) or an integer in
    1..:data:`MAX_THREADS`."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an integer in 1..{MAX_THREADS}, got {threads!r}")


def check_thresholds(values: Sequence[float] | Mapping[str, float]) -> None:
    """Raises ValueError unless every probability threshold lies in [0, 1); the message
    lists the bad ones of a mapping, every value of a sequence."""
    if isinstance(values, Mapping):
        bad: Any = {r: v for r, v in values.items() if not 0 <= v < 1}
    else:
        bad = list(values) if any(not 0 <= v < 1 for v in values) else None
    if bad:
        raise ValueError(f"thresholds must lie in [0, 1), got {bad}")


def region_thresholds(
    threshold: float | Mapping[str, float], regions: Sequence[str]
) -> dict[str, float]:
    """The probability threshold of each of ``regions`` (the bundle's, in its order): a
    number applies to all of them.

    Raises:
        ValueError: a mapping without exactly ``regions``, or a value outside [0, 1).
    """
    if isinstance(threshold, Mapping):
        if set(threshold) != set(regions):
            raise ValueError(
                f"per-region thresholds need exactly {', '.join(regions)}, "
                f"got {', '.join(map(str, threshold))}"
            )
        values = {r: float(threshold[r]) for r in regions}
    else:
        values = dict.fromkeys(regions, float(threshold))
    check_thresholds(values)
    return values


def parse_threshold(text: str) -> float | dict[str, float]:
    """A threshold as the command line and the parameters file spell it: one probability
    for every region (``0.4``) or one for each region (``WT=0.4,TC=0.5,ET=0.5``, in any
    order, region names in any case; RC, CC or GTV where the bundle predicts them).

    Which regions a mapping must name is the bundle's to say, so it is checked when the
    options are resolved (:meth:`PredictOptions.resolve`).

    Raises:
        ValueError: neither form, a region twice, a name no label scheme has, or a value
            outside [0, 1).
    """
    text = str(text).strip()
    form = "a probability like 0.4, or one per region like WT=0.4,TC=0.5,ET=0.5"
    if "=" not in text:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"threshold {text!r} is not {form}") from None
        check_thresholds([value])
        return value
    values: dict[str, float] = {}
    for item in text.split(","):
        region, _, number = (part.strip() for part in item.partition("="))
        region = region.upper()
        if region in values:
            raise ValueError(f"threshold {text!r} gives {region} twice")
        if region not in REGION_NAMES:
            raise ValueError(
                f"threshold {text!r}: {region!r} is no region; regions are "
                f"{', '.join(REGION_NAMES)}"
            )
        try:
            values[region] = float(number)
        except ValueError:
            raise ValueError(f"threshold {text!r}: {item.strip()!r} is not {form}") from None
    # The regions of some label scheme, all of them (the bundle's own are checked later).
    region_sets = list(dict.fromkeys(scheme.region_names for scheme in SCHEMES.values()))
    regions = next((r for r in region_sets if set(r) == set(values)), None)
    if regions is None:  # the default scheme's regions first, then the other tasks'
        others = " or ".join(", ".join(r) for r in region_sets[1:])
        raise ValueError(
            f"per-region thresholds need exactly {', '.join(region_sets[0])}, got "
            f"{', '.join(values)} (other tasks' bundles: {others})"
        )
    return region_thresholds(values, regions)


def check_option(
    name: str, value: Any, fewest_members: int, regions: Sequence[str] = TUMOUR_REGIONS
) -> None:
    """Check one ensemble or post-processing option, as a flag or a manifest gives it.

    Args:
        name: ``ensemble``, ``top_k`` (None allowed), ``confidence_empty``,
            ``et_threshold``, ``et_replace``, ``threshold`` or ``overlap``.
        fewest_members: segmentation members of the bundle's least covered region, the
            largest top-k.
        regions: the regions the bundle predicts, which a per-region threshold names
            [WT, TC, ET].

    Raises:
        ValueError: the value is not allowed (see the module docstring).
    """
    if name == "ensemble":
        check_ensemble(value)
    elif name == "top_k":
        if value is not None:
            check_top_k(value, fewest_members, " of the bundle's least covered region")
    elif name == "confidence_empty":
        check_confidence_empty(value)
    elif name == "et_threshold":
        check_et_threshold(value)
    elif name == "et_replace":
        check_et_replace(value)
    elif name == "threshold":
        region_thresholds(value, regions)
    elif name == "overlap":
        check_overlap(value)
    else:
        raise AssertionError(f"no check for option {name!r}")


#: The options a manifest recommends (:class:`~submission.predict.bundle.Recommended`'s
#: fields), in the order :func:`check_option` checks them.
RECOMMENDABLE = (
    "ensemble",
    "et_replace",
    "et_threshold",
    "threshold",
    "overlap",
    "top_k",
    "confidence_empty",
)


@dataclass(frozen=True)
class PredictOptions:
    """What to compute; ``None`` fields take the bundle's recommended values.

    Attributes:
        ensemble: ``mean``, ``vote``, ``confidence`` or ``argmax`` (label-based models:
            :func:`submission.predict.ensemble.argmax_masks`).
        top_k: members averaged by ``confidence`` (default ceil(N/2) per region).
        confidence_empty: the confidence of a member that segments nothing, ``zero``,
            ``exclude`` or ``background`` (:mod:`submission.predict.ensemble`).
        et_threshold: ET minimum volume in voxels (0 disables).
        et_replace: what removed ET becomes, ``necrosis``, ``background`` or ``empty``
            (:mod:`submission.predict.postprocess`).
        threshold: probability above which a voxel belongs to a region, one for all or
            one per region (:func:`region_thresholds`).
        labels: label scheme written.
        tta: mirroring test-time augmentation (8 flips).
        overlap: sliding-window overlap.
        max_memory_gb: activation memory allowed per member call; above it the
            sliding window is used from the start (None: try the full volume).
    """

    ensemble: str | None = None
    top_k: int | None = None
    et_threshold: int | None = None
    et_replace: str | None = None
    threshold: float | dict[str, float] | None = None
    confidence_empty: str | None = None
    labels: str | None = None
    tta: bool = False
    overlap: float | None = None
    max_memory_gb: float | None = None

    def resolve(self, manifest: Manifest) -> PredictOptions:
        """These options with every None replaced by the manifest's recommendation.

        Raises:
            ValueError: an option is not allowed (or the label scheme is unknown).
        """
        recommended = manifest.recommended
        defaults = {name: getattr(recommended, name) for name in RECOMMENDABLE}
        defaults["labels"] = manifest.label_scheme
        unset = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        resolved = replace(self, **unset)
        scheme = get_scheme(resolved.labels)
        if not set(manifest.region_names) & set(scheme.region_names):
            raise ValueError(
                f"labels {scheme.name} need regions {', '.join(scheme.region_names)}; this "
                f"bundle's members predict {', '.join(manifest.region_names)}: its labels "
                "would all be background"
            )
        for name in RECOMMENDABLE:
            check_option(
                name, getattr(resolved, name), manifest.fewest_members, manifest.region_names
            )
        return resolved


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how the members run (see :mod:`submission.predict.backends`)."""

    backend: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        check_threads(self.threads)
