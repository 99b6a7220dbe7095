"""``bratskit view``: one picture of a case, its four modalities and label maps in three planes.

Conventions:
    Arrays keep the file's voxel order (:mod:`submission.io.nifti`) while loaded and checked;
    only for display are they viewed along R, A, S (``*_xyz``: nibabel's RAS+ closest to
    the affine, :func:`nibabel.orientations.io_orientation`, the axes behind
    ``aff2axcodes``). Nothing is written back but the PNG.
    Display follows the radiological convention: axial slices with anterior up and the
    patient's left on the image's right, coronal with superior up and the patient's left on
    the right, sagittal with superior up and anterior on the left. Slice indices shown are
    the file's voxel indices (i, j, k), so they can be found in any viewer.
    Labels take the usual BraTS colours by label name (no label integers here): necrosis
    (NCR / NETC) red, oedema (ED / SNFH) green, enhancing tumour (ET) yellow.

matplotlib is imported only when a picture is drawn (the runtime image has none); the
figure is drawn on matplotlib's Agg canvas without pyplot, so no global backend changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from submission.brats import MODALITIES, SCHEMES, LabelScheme, get_scheme
from submission.exit_codes import BadValueError, UnavailableError, UnusableError
from submission.io.cases import AFFINE_TOLERANCE, Case, discover_cases, load_case
from submission.io.nifti import Grid, read_label_map
from submission.io.references import label_file
from submission.predict.output_folder import OutputError

__all__ = [
    "FIGSIZE_IN",
    "LABEL_COLOURS",
    "CaseChoiceError",
    "LabelMap",
    "ViewError",
    "detect_scheme",
    "display_slice",
    "ras_view",
    "read_labels",
    "region_dice",
    "render_view",
    "select_case",
    "write_view",
]

log = logging.getLogger(__name__)

#: Figure size in inches and resolution: 1400 x 700 pixels.
FIGSIZE_IN, DPI = (14.0, 7.0), 100
#: RGB of each label name in every scheme (BraTS colours); RC and CC are 2024 labels.
LABEL_COLOURS: dict[str, tuple[float, float, float]] = {
    "NCR": (1.0, 0.0, 0.0),
    "NETC": (1.0, 0.0, 0.0),
    "ED": (0.0, 0.85, 0.0),
    "SNFH": (0.0, 0.85, 0.0),
    "ET": (1.0, 1.0, 0.0),
    "RC": (0.2, 0.45, 1.0),
    "CC": (1.0, 0.0, 1.0),
    "GTV": (1.0, 0.5, 0.0),
}
OVERLAY_ALPHA = 0.5
WINDOW_PERCENTILES = (0.5, 99.5)
#: Display planes: name and the RAS axis normal to them (x = R, y = A, z = S).
PLANES: tuple[tuple[str, int], ...] = (("axial", 2), ("coronal", 1), ("sagittal", 0))
MODALITY_TITLES = {"t1n": "T1 (t1n)", "t1c": "T1ce (t1c)", "t2w": "T2 (t2w)", "t2f": "FLAIR (t2f)"}
#: Modality the label maps are drawn on.
OVERLAY_MODALITY = "t2f"


class ViewError(ValueError, UnusableError):
    """A label map unusable for the picture (wrong grid, labels outside its scheme)."""


class CaseChoiceError(ValueError, BadValueError):
    """CASE holds several cases and ``--case-id`` names none of them (a usage error)."""


@dataclass(frozen=True)
class LabelMap:
    """A label map on the case's grid: ``seg_dhw`` integer (D, H, W) in file voxel order."""

    role: str  # "prediction" or "reference"
    path: Path
    seg_dhw: np.ndarray
    scheme: LabelScheme

    def mask(self, region: str) -> np.ndarray:
        """bool (D, H, W) mask of one region (WT, TC, ET, ...) of the map's scheme."""
        return np.isin(self.seg_dhw, sorted(self.scheme.regions[region]))


def select_case(folder: Path, case_id: str | None = None) -> Case:
    """The one case of ``folder`` (any layout of :func:`submission.io.cases.discover_cases`).

    Raises:
        InputError: the folder is missing or holds no case.
        CaseError: the chosen case is unusable (e.g. a modality missing).
        CaseChoiceError: several cases and no ``case_id``, or an unknown ``case_id``.
    """
    found = discover_cases(folder)
    ids = found.case_ids
    if case_id is None:
        if len(ids) > 1:
            raise CaseChoiceError(
                f"{folder} holds {len(ids)} cases ({', '.join(ids[:5])}"
                f"{', ...' if len(ids) > 5 else ''}); pick one with --case-id"
            )
        case_id = ids[0]
    for case in found.cases:
        if case.case_id == case_id:
            return case
    for error in found.errors:
        if error.case_id == case_id:
            raise error
    raise CaseChoiceError(f"no case {case_id!r} in {folder}; cases there: {', '.join(ids)}")


def detect_scheme(
    seg_dhw: np.ndarray, year: str = "2023", labels: str | None = None
) -> LabelScheme:
    """Label scheme of a label map: ``labels`` if given, else from its values.

    A 4 and no 3 means 2021 (NCR, ED, ET), a 3 and no 4 means 2023 (NETC, SNFH, ET);
    with neither the two schemes agree and ``year`` (the case's naming) decides.

    Raises:
        ViewError: both 3 and 4 present without ``labels``, or values outside the scheme.
    """
    low, top = (int(seg_dhw.min()), int(seg_dhw.max())) if seg_dhw.size else (0, 0)
    if low < 0 or top > 255:
        raise ViewError(f"label {low if low < 0 else top} outside 0..255; not a label map")
    present = {int(v) for v in np.flatnonzero(np.bincount(seg_dhw.ravel(), minlength=1))}
    if labels is None:
        has = {name: SCHEMES[name].labels["ET"] in present for name in ("2021", "2023")}
        if all(has.values()):
            raise ViewError(
                f"labels {sorted(present)} fit neither 2021 nor 2023; name the scheme with "
                f"--labels ({', '.join(SCHEMES)})"
            )
        labels = next((name for name, yes in has.items() if yes), year)
    scheme = get_scheme(labels)
    extra = sorted(present - scheme.valid_labels)
    if extra:
        raise ViewError(
            f"labels {extra} are not in the {scheme.name} scheme (valid "
            f"{sorted(scheme.valid_labels)}); pass the right --labels"
        )
    return scheme


def read_labels(
    path: Path, role: str, grid: Grid, year: str = "2023", labels: str | None = None
) -> LabelMap:
    """Read a label map that must lie on the case's grid.

    Raises:
        NiftiError: missing, unreadable, not 3-D or non-integer.
        ViewError: a shape other than the case's, or labels outside the scheme.
    """
    seg_dhw, seg_grid = read_label_map(path)
    if seg_grid.shape != grid.shape:
        raise ViewError(
            f"{role} {path} has shape {seg_grid.shape}, the case's images {grid.shape}; "
            "label maps must lie on the case's grid"
        )
    if not np.allclose(seg_grid.affine, grid.affine, atol=AFFINE_TOLERANCE):
        log.warning("%s %s: affine differs from the case's; drawn on the case's grid", role, path)
    try:
        return LabelMap(role, Path(path), seg_dhw, detect_scheme(seg_dhw, year, labels))
    except ViewError as exc:
        raise ViewError(f"{role} {path}: {exc}") from None


def region_dice(pred: LabelMap, ref: LabelMap) -> dict[str, float]:
    """Dice of each region the two maps' schemes share, in the reference's order (WT, TC,
    ET; GTV for MEN-RT), each map's regions by its own scheme; 1 when both are empty."""
    from submission.evaluation.overlap_2021 import dice

    regions = [r for r in ref.scheme.region_names if r in pred.scheme.regions]
    return {r: dice(pred.mask(r), ref.mask(r)) for r in regions}


def display_slice(volume_xyz: np.ndarray, axis: int, index: int) -> np.ndarray:
    """2-D (rows, cols) image of one slice of a volume whose axes point R, A, S.

    Rows run along the higher remaining axis from its far end (superior, or anterior for
    axial slices) and columns from the patient's right (or anterior, for sagittal slices):
    the radiological convention. Works for RGBA or any trailing axes too.
    """
    return np.take(volume_xyz, index, axis=axis).swapaxes(0, 1)[::-1, ::-1]


def ras_view(volume_dhw: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """View (no copy) of a file-ordered volume with its first three axes along R, A, S.

    The axes are nibabel's closest RAS+ axes of ``affine`` (``io_orientation``, the axes
    ``aff2axcodes`` names); trailing axes (e.g. RGBA) are kept.
    """
    return nib.orientations.apply_orientation(volume_dhw, nib.orientations.io_orientation(affine))


def _centre_xyz(mask_xyz: np.ndarray) -> tuple[int, ...]:
    """Rounded centre of mass of a non-empty mask, per axis."""
    centre = []
    for axis in range(3):
        weights = mask_xyz.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64)
        centre.append(int(round(float(weights @ np.arange(len(weights)) / weights.sum()))))
    return tuple(centre)


def _centre_mask(maps: list[LabelMap], brain_dhw: np.ndarray) -> np.ndarray:
    """The outermost region (WT; GTV for MEN-RT) of the reference if not empty, else of
    the prediction, else the brain (D, H, W)."""
    for label_map in sorted(maps, key=lambda m: m.role != "reference"):
        wt_dhw = label_map.mask(label_map.scheme.region_names[0])
        if wt_dhw.any():
            return wt_dhw
    return brain_dhw if brain_dhw.any() else np.ones(brain_dhw.shape, dtype=bool)


def _window(image_dhw: np.ndarray, brain_dhw: np.ndarray) -> tuple[float, float]:
    values = image_dhw[brain_dhw] if brain_dhw.any() else image_dhw.ravel()
    lo, hi = (float(v) for v in np.percentile(values, WINDOW_PERCENTILES))
    return lo, max(hi, lo + 1e-6)


def _overlay(seg_2d: np.ndarray, scheme: LabelScheme) -> np.ndarray:
    """float32 RGBA (rows, cols, 4) of a label slice; background transparent."""
    rgba = np.zeros((*seg_2d.shape, 4), dtype=np.float32)
    for name, value in scheme.labels.items():
        rgba[seg_2d == value] = (*LABEL_COLOURS[name], OVERLAY_ALPHA)
    return rgba


def _legend_handles(maps: list[LabelMap]):
    from matplotlib.patches import Patch

    names: dict[tuple[float, float, float], list[str]] = {}
    for label_map in maps:
        for name in label_map.scheme.labels:
            group = names.setdefault(LABEL_COLOURS[name], [])
            if name not in group:
                group.append(name)
    return [Patch(color=colour, label=" / ".join(n)) for colour, n in names.items()]


def render_view(
    image_cdhw: np.ndarray,
    grid: Grid,
    maps: list[LabelMap],
    title: str,
    scores: dict[str, float] | None = None,
):
    """Draw the picture and return the matplotlib Figure (on an Agg canvas, no pyplot).

    Args:
        image_cdhw: (4, D, H, W) in MODALITIES order, file voxel order.
        grid: the case's grid (its affine orients the display).
        maps: prediction and/or reference, in that order; one column each, on FLAIR.
        title: first title line (the case id).
        scores: Dice per region for the title; computed when None and both maps given.

    Rows are axial, coronal and sagittal slices through the centre of mass of the
    reference's WT, else the prediction's, else the brain's. Axes are labelled
    ``<modality>-<plane>`` / ``<role>-<plane>`` (e.g. ``prediction-axial``) so tests can
    find the panels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ornt = nib.orientations.io_orientation(grid.affine)
    spacing_xyz = np.sqrt((grid.affine[:3, :3] ** 2).sum(axis=0))[np.argsort(ornt[:, 0])]
    brain_dhw = (image_cdhw != 0).any(axis=0)
    centre = _centre_xyz(ras_view(_centre_mask(maps, brain_dhw), grid.affine))
    windows = [_window(image_dhw, brain_dhw) for image_dhw in image_cdhw]
    columns = [(m, MODALITY_TITLES[m], c, None) for c, m in enumerate(MODALITIES)]
    on = MODALITIES.index(OVERLAY_MODALITY)
    for label_map in maps:
        heading = f"{label_map.role} on {MODALITY_TITLES[OVERLAY_MODALITY].split()[0]}"
        columns.append((label_map.role, heading, on, label_map))

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(PLANES), len(columns), squeeze=False)
    fig.subplots_adjust(left=0.05, right=0.995, top=0.86, bottom=0.07, wspace=0.02, hspace=0.06)
    for row, (plane, axis) in enumerate(PLANES):
        cols_axis, rows_axis = (a for a in range(3) if a != axis)
        aspect = float(spacing_xyz[rows_axis] / spacing_xyz[cols_axis])
        for col, (key, heading, channel, label_map) in enumerate(columns):
            ax = axes[row, col]
            ax.set_label(f"{key}-{plane}")
            grey = display_slice(ras_view(image_cdhw[channel], grid.affine), axis, centre[axis])
            overlay = None
            if label_map is not None:
                seg_2d = display_slice(ras_view(label_map.seg_dhw, grid.affine), axis, centre[axis])
                overlay = _overlay(seg_2d, label_map.scheme)
            _draw_panel(ax, grey, windows[channel], overlay, aspect)
            if row == 0:
                ax.set_title(heading, fontsize=10)
            if col == 0:
                ax.set_ylabel(_row_label(plane, axis, centre[axis], ornt, grid.shape), fontsize=9)
    if scores is None and len(maps) == 2:
        scores = region_dice(*maps)
    fig.suptitle(_title(title, maps, ornt, scores), fontsize=11)
    if maps:
        fig.legend(handles=_legend_handles(maps), loc="lower center", ncol=5, frameon=False)
    return fig


def _draw_panel(ax, grey_2d, window: tuple[float, float], overlay_2d, aspect: float) -> None:
    """Grey slice windowed to ``window``, then the RGBA label overlay when given."""
    ax.imshow(
        grey_2d, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect, interpolation="nearest"
    )
    if overlay_2d is not None:
        # Nearest neighbour keeps label colours pure at the panel edges.
        ax.imshow(overlay_2d, aspect=aspect, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _row_label(plane: str, axis: int, index_xyz: int, ornt: np.ndarray, shape) -> str:
    """Plane name and the slice's index along the file's voxel axis (i, j or k)."""
    file_axis = int(np.flatnonzero(ornt[:, 0] == axis)[0])
    index = index_xyz if ornt[file_axis, 1] > 0 else shape[file_axis] - 1 - index_xyz
    return f"{plane}\n{'ijk'[file_axis]} = {index}"


def _title(
    first: str, maps: list[LabelMap], ornt: np.ndarray, scores: dict[str, float] | None
) -> str:
    axcodes = "".join(nib.orientations.ornt2axcodes(ornt))
    lines = [f"{first}   (voxel axes {axcodes}; radiological: patient's left on the right)"]
    if maps:
        lines.append("   ".join(f"{m.role}: {m.path.name} ({m.scheme.name} labels)" for m in maps))
    if scores is not None:
        lines.append("Dice  " + "   ".join(f"{r} {v:.3f}" for r, v in scores.items()))
    return "\n".join(lines)


def write_view(
    case_dir: Path,
    png_path: Path,
    seg_path: Path | None = None,
    ref_path: Path | None = None,
    labels: str | None = None,
    case_id: str | None = None,
) -> tuple[str, list[LabelMap], dict[str, float] | None]:
    """Draw the case of ``case_dir`` with its label maps into ``png_path`` (``bratskit view``).

    Args:
        seg_path: predicted label map, drawn when given.
        ref_path: reference label map [the case's ``_seg`` / ``-seg`` file, if any].
        labels: the maps' label scheme [detected, :func:`detect_scheme`].
        case_id: the case to draw when ``case_dir`` holds several.

    Returns:
        The case id, the maps drawn, and their Dice per region when both were drawn.

    Raises:
        UnavailableError: matplotlib is not installed (checked before any file is read).
        CaseChoiceError, InputError, CaseError, NiftiError, ViewError: see the functions
            above; nothing is written.
        OutputError: the PNG cannot be written.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UnavailableError(
            "bratskit view needs matplotlib, which is not installed: "
            "pip install matplotlib (or pip install 'bratskit[eval]')"
        ) from None
    case = select_case(case_dir, case_id)
    if ref_path is None:  # CaseError when two label maps name the case
        ref_path = label_file(case)
    image_cdhw, grid = load_case(case)
    maps = [
        read_labels(path, role, grid, case.year, labels)
        for role, path in (("prediction", seg_path), ("reference", ref_path))
        if path is not None
    ]
    scores = region_dice(*maps) if len(maps) == 2 else None
    fig = render_view(image_cdhw, grid, maps, case.case_id, scores)
    try:
        Path(png_path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png_path, dpi=DPI, format="png")
    except OSError as exc:
        raise OutputError(f"cannot write {png_path} ({exc})") from None
    return case.case_id, maps, scores
