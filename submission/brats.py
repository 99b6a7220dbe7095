"""BraTS vocabulary: modalities, file-name patterns, label schemes and regions.

This is the only module that knows label integers (DESIGN.md, conventions).
Facts follow CONTRACT.md sections 1 and 2.

Models predict *regions* (nested binary masks: WT contains TC contains ET, plus
the separate resection cavity RC in the 2024 GLI/MET scheme); labels are
assembled at the very end with :func:`regions_to_labels`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: Canonical channel order of every image array in bratskit (C axis of ``image_cdhw``).
MODALITIES: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f")

#: 2021 file suffix of each canonical modality (t1 = t1n, t1ce = t1c, t2 = t2w, flair = t2f).
SUFFIX_2021: dict[str, str] = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair"}
#: 2023+ file suffix of each canonical modality.
SUFFIX_2023: dict[str, str] = {m: m for m in MODALITIES}

#: File-name conventions: ``2021`` (``<id>_t1ce.nii.gz``), ``2023`` (``<id>-t1c.nii.gz``,
#: 2023 onwards) and ``men-rt`` (``<id>_t1c.nii.gz``: 2023 suffixes after ``_``, the
#: MEN-RT release, CONTRACT.md section 7). The name is historical: a convention, not a year.
LAYOUT_YEARS: tuple[str, ...] = ("2021", "2023", "men-rt")
SEG_SUFFIX = "seg"
NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")

_SEPARATOR = {"2021": "_", "2023": "-", "men-rt": "_"}
_SUFFIXES = {"2021": SUFFIX_2021, "2023": SUFFIX_2023, "men-rt": SUFFIX_2023}
#: Suffixes of a reference label map, the first the one written: MEN-RT releases its
#: gross tumour volume as ``<id>_gtv.nii.gz``.
_LABEL_SUFFIXES = {"2021": (SEG_SUFFIX,), "2023": (SEG_SUFFIX,), "men-rt": ("gtv", SEG_SUFFIX)}
_FILE_RE = {
    year: re.compile(
        r"^(?P<id>.+)"
        + re.escape(_SEPARATOR[year])
        + r"(?P<suffix>"
        + "|".join(
            sorted([*_SUFFIXES[year].values(), *_LABEL_SUFFIXES[year]], key=len, reverse=True)
        )
        + r")\.nii(\.gz)?$"
    )
    for year in LAYOUT_YEARS
}


@dataclass(frozen=True)
class ParsedName:
    """What a BraTS image file name says: case id, year convention, and modality or ``seg``."""

    case_id: str
    year: str
    modality: str  # canonical modality name, or "seg"


def parse_filename(name: str) -> ParsedName | None:
    """Parse a BraTS file name (``<id>_t1ce.nii.gz``, ``<id>-t1c.nii.gz`` or
    ``<id>_t1c.nii.gz``); a label map's suffix (``seg``, MEN-RT's ``gtv``) reads as ``seg``.

    Returns None for names that follow no convention.
    """
    for year in LAYOUT_YEARS:
        match = _FILE_RE[year].match(name)
        if match:
            suffix = match["suffix"]
            if suffix in _LABEL_SUFFIXES[year]:
                modality = SEG_SUFFIX
            else:
                modality = next(m for m, s in _SUFFIXES[year].items() if s == suffix)
            return ParsedName(match["id"], year, modality)
    return None


def modality_filename(case_id: str, modality: str, year: str) -> str:
    """File name of one modality (or ``seg``) of a case in the given year's convention."""
    suffix = _LABEL_SUFFIXES[year][0] if modality == SEG_SUFFIX else _SUFFIXES[year][modality]
    return f"{case_id}{_SEPARATOR[year]}{suffix}.nii.gz"


#: Case ids safe as output file names and matching the organisers' patterns.
_CASE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_valid_case_id(case_id: str) -> bool:
    """True for ids of letters, digits, '.', '_' and '-' starting with a letter or digit."""
    return bool(_CASE_ID_RE.match(case_id))


def prediction_filename(case_id: str) -> str:
    """The one output file name the organisers accept for a case (CONTRACT.md section 3)."""
    return f"{case_id}.nii.gz"


#: 2024+ case ids end in a case number and a timepoint, ``NNNNN-NNN``; the 2026 organisers
#: match predictions by that suffix (CONTRACT.md section 7).
_CASE_NUMBER_RE = re.compile(r"\d{5}-\d{3}$")


def has_case_number(case_id: str) -> bool:
    """True when ``case_id`` ends in ``NNNNN-NNN`` (``BraTS-GLI-00001-100``)."""
    return bool(_CASE_NUMBER_RE.search(case_id))


# --- label schemes -----------------------------------------------------------------------

#: The regions the 2021 and 2023 evaluators score, in their order (a scheme's own regions,
#: :attr:`LabelScheme.region_names`, are what models predict).
TUMOUR_REGIONS: tuple[str, ...] = ("WT", "TC", "ET")
#: The enhancing tumour, the region paper 002's minimum-volume rule (section 2.6) removes.
ENHANCING = "ET"


@dataclass(frozen=True)
class LabelScheme:
    """One challenge label convention (CONTRACT.md section 2).

    Attributes:
        name: scheme key (``2021``, ``2023``, ``2024-gli``, ``2024-ped``).
        labels: label name -> integer written to the label map.
        regions: region name -> labels it is the union of, the regions a model predicts
            (sigmoid outputs): WT, TC, ET in the glioma schemes, plus RC (resection
            cavity, separate) in 2024-gli and CC (cyst, inside TC) in 2024-ped; GTV alone
            in MEN-RT. A region contains another when its labels include the other's.
        paint_order: (region, label) pairs painted in this order by
            :func:`regions_to_labels`; later entries overwrite earlier ones, which
            is what keeps ET inside TC inside WT.
    """

    name: str
    labels: dict[str, int]
    regions: dict[str, frozenset[int]]
    paint_order: tuple[tuple[str, int], ...]

    @property
    def region_names(self) -> tuple[str, ...]:
        """Regions in the scheme's order (the R axis of region masks and probabilities)."""
        return tuple(self.regions)

    def containing(self, region: str) -> tuple[str, ...]:
        """The regions that hold ``region`` (their labels a strict superset of its own):
        TC and WT for ET, TC and WT for the cyst; none for RC or GTV."""
        inner = self.regions[region]
        return tuple(r for r, labels in self.regions.items() if labels > inner)

    @property
    def innermost_first(self) -> tuple[str, ...]:
        """Regions ordered by how few labels they hold (ET before TC before WT): the
        order in which growing each region's containers makes the nesting transitive."""
        return tuple(sorted(self.regions, key=lambda r: len(self.regions[r])))

    @property
    def outermost(self) -> str:
        """The region holding the most labels (WT; GTV for MEN-RT): what paper 002's
        localisation stage predicts and the whole-tumour view centres on."""
        return max(self.regions, key=lambda r: len(self.regions[r]))

    @property
    def has_enhancing(self) -> bool:
        """True when the scheme has the region the ET minimum volume applies to."""
        return ENHANCING in self.regions

    @property
    def valid_labels(self) -> frozenset[int]:
        """Every integer a label map in this scheme may hold, background included."""
        return frozenset({0, *self.labels.values()})


def _scheme(
    name: str,
    labels: dict[str, int],
    regions: dict[str, tuple[str, ...]],
    paint: tuple[tuple[str, str], ...],
) -> LabelScheme:
    return LabelScheme(
        name=name,
        labels=labels,
        regions={r: frozenset(labels[n] for n in names) for r, names in regions.items()},
        paint_order=tuple((region, labels[label]) for region, label in paint),
    )


SCHEMES: dict[str, LabelScheme] = {
    s.name: s
    for s in (
        _scheme(
            "2021",
            {"NCR": 1, "ED": 2, "ET": 4},
            {"WT": ("NCR", "ED", "ET"), "TC": ("NCR", "ET"), "ET": ("ET",)},
            (("WT", "ED"), ("TC", "NCR"), ("ET", "ET")),
        ),
        _scheme(
            "2023",
            {"NETC": 1, "SNFH": 2, "ET": 3},
            {"WT": ("NETC", "SNFH", "ET"), "TC": ("NETC", "ET"), "ET": ("ET",)},
            (("WT", "SNFH"), ("TC", "NETC"), ("ET", "ET")),
        ),
        _scheme(
            "2024-gli",
            {"NETC": 1, "SNFH": 2, "ET": 3, "RC": 4},
            {
                "WT": ("NETC", "SNFH", "ET"),
                "TC": ("NETC", "ET"),
                "ET": ("ET",),
                "RC": ("RC",),
            },
            # The cavity is painted first so tumour labels win where masks overlap.
            (("RC", "RC"), ("WT", "SNFH"), ("TC", "NETC"), ("ET", "ET")),
        ),
        _scheme(
            "2024-ped",
            {"ET": 1, "NETC": 2, "CC": 3, "ED": 4},
            {
                "WT": ("ET", "NETC", "CC", "ED"),
                "TC": ("ET", "NETC", "CC"),
                "ET": ("ET",),
                "CC": ("CC",),
            },
            # The cyst is a region of its own inside TC: TC minus ET minus CC is NETC.
            (("WT", "ED"), ("TC", "NETC"), ("CC", "CC"), ("ET", "ET")),
        ),
        # MEN-RT (CONTRACT.md section 7, brats-evaluation config_MenRT.yaml): one label.
        _scheme("men-rt", {"GTV": 1}, {"GTV": ("GTV",)}, (("GTV", "GTV"),)),
    )
}

DEFAULT_SCHEME = "2021"
#: Every region name some scheme has (WT, TC, ET, RC, CC, GTV), sorted: what a region
#: flag or a per-region threshold may name before a bundle or task says which apply.
REGION_NAMES: tuple[str, ...] = tuple(sorted({r for s in SCHEMES.values() for r in s.regions}))


def get_scheme(name: str) -> LabelScheme:
    """Look up a label scheme by name, with an error that lists the valid names."""
    try:
        return SCHEMES[str(name)]
    except KeyError:
        raise ValueError(
            f"unknown label scheme {name!r}; choose one of {', '.join(SCHEMES)}"
        ) from None


def labels_to_regions(seg_dhw: np.ndarray, scheme: LabelScheme | str) -> np.ndarray:
    """Nested region masks of a label map.

    Args:
        seg_dhw: integer label map, any spatial shape.
        scheme: label scheme or its name.

    Returns:
        bool array (R, *seg_dhw.shape), regions in ``scheme.region_names`` order.
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    return np.stack([np.isin(seg_dhw, sorted(labels)) for labels in scheme.regions.values()])


def regions_to_labels(regions_rdhw: np.ndarray, scheme: LabelScheme | str) -> np.ndarray:
    """Assemble a uint8 label map from region masks, forcing ET in TC in WT.

    Args:
        regions_rdhw: bool-like (R, D, H, W) in ``scheme.region_names`` order.
            A voxel in ET but outside TC or WT is still labelled ET: the inner
            region wins, so no predicted ET voxel is lost.
        scheme: label scheme or its name.

    Returns:
        uint8 (D, H, W) label map.
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    names = scheme.region_names
    if regions_rdhw.shape[0] != len(names):
        raise ValueError(
            f"scheme {scheme.name} needs {len(names)} regions ({', '.join(names)}), "
            f"got {regions_rdhw.shape[0]}"
        )
    seg_dhw = np.zeros(regions_rdhw.shape[1:], dtype=np.uint8)
    for region, label in scheme.paint_order:
        seg_dhw[regions_rdhw[names.index(region)].astype(bool)] = label
    return seg_dhw
