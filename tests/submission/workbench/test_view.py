"""``bratskit view``: orientation, label schemes, overlay colours, exit codes, the real case."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from submission.brats import SCHEMES, modality_filename
from submission.io.cases import load_case
from submission.workbench.view import (
    FIGSIZE_IN,
    CaseChoiceError,
    ViewError,
    detect_scheme,
    display_slice,
    ras_view,
    read_labels,
    render_view,
    select_case,
    write_view,
)
from tests.conftest import LPS_SMALL, SMALL_SHAPE, write_nifti

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

BRATSKIT = [sys.executable, "-m", "submission"]
PNG_SHAPE = (int(FIGSIZE_IN[1] * 100), int(FIGSIZE_IN[0] * 100))  # rows, cols at 100 dpi
CASE_ID = "BraTS-GLI-00007-000"


def bratskit(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*BRATSKIT, *map(str, args)], capture_output=True, text=True)


def nested_tumour(scheme: str = "2023", shape=SMALL_SHAPE) -> np.ndarray:
    """uint8 label map: oedema block holding an ET block holding necrosis, inside the brain."""
    labels = SCHEMES[scheme].labels
    necrosis, oedema = (n for n in labels if n != "ET")
    seg_dhw = np.zeros(shape, dtype=np.uint8)
    seg_dhw[8:24, 8:24, 5:19] = labels[oedema]
    seg_dhw[11:21, 11:21, 8:16] = labels["ET"]
    seg_dhw[14:18, 14:18, 10:14] = labels[necrosis]
    return seg_dhw


@pytest.fixture
def case_2023(case_factory) -> Path:
    """One small 2023-layout case folder with its ``-seg`` reference."""
    root = case_factory("2023-folders", [CASE_ID])
    folder = root / CASE_ID
    write_nifti(folder / modality_filename(CASE_ID, "seg", "2023"), nested_tumour())
    return folder


def colour_counts(rgba: np.ndarray) -> dict[str, int]:
    """Pixels of each overlay colour (blended half over grey) in an RGBA float image."""
    r, g, b = rgba[..., 0], rgba[..., 1], rgba[..., 2]
    return {
        "red": int(np.sum((r - np.maximum(g, b) > 0.3) & (abs(g - b) < 0.1))),
        "green": int(np.sum((g - np.maximum(r, b) > 0.3) & (abs(r - b) < 0.1))),
        "yellow": int(np.sum((np.minimum(r, g) - b > 0.3) & (abs(r - g) < 0.1))),
    }


def panel_pixels(fig, png: np.ndarray, label: str) -> np.ndarray:
    """The PNG pixels inside the axes labelled ``label`` (display y runs upwards)."""
    ax = next(a for a in fig.axes if a.get_label() == label)
    box = ax.get_window_extent()
    top, bottom = png.shape[0] - int(box.y1) + 2, png.shape[0] - int(box.y0) - 2
    return png[top:bottom, int(box.x0) + 2 : int(box.x1) - 2]


# --- orientation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("affine", "voxel"),
    [
        (LPS_SMALL, (28, 3, 20)),  # BraTS: i runs to the left, j to posterior
        (np.diag([1.0, 1.0, 1.0, 1.0]), (3, 28, 20)),  # RAS: i runs to the right
    ],
)
def test_display_is_radiological_whatever_the_affine(affine, voxel):
    # The marker sits in the patient's left, anterior, superior corner.
    volume_dhw = np.zeros(SMALL_SHAPE, dtype=np.uint8)
    volume_dhw[voxel] = 1
    xyz = ras_view(volume_dhw, affine)
    where = {}
    for plane, axis in (("axial", 2), ("coronal", 1), ("sagittal", 0)):
        index = int(np.flatnonzero(xyz.sum(axis=tuple(a for a in range(3) if a != axis)))[0])
        slice_2d = display_slice(xyz, axis, index)
        row, col = np.argwhere(slice_2d)[0]
        where[plane] = (
            "top" if row < slice_2d.shape[0] / 2 else "bottom",
            "right" if col > slice_2d.shape[1] / 2 else "left",
        )
    # Axial: anterior up, patient's left on the image's right; coronal: superior up, left
    # on the right; sagittal: superior up, anterior on the left.
    assert where == {
        "axial": ("top", "right"),
        "coronal": ("top", "right"),
        "sagittal": ("top", "left"),
    }


# --- label schemes ------------------------------------------------------------------------


def test_detect_scheme_from_values_or_override():
    assert detect_scheme(nested_tumour("2021")).name == "2021"
    assert detect_scheme(nested_tumour("2023"), year="2021").name == "2023"
    assert detect_scheme(np.zeros((4, 4, 4), np.uint8), year="2021").name == "2021"
    assert detect_scheme(nested_tumour("2023"), labels="2024-gli").name == "2024-gli"
    with pytest.raises(ViewError, match="not in the 2021 scheme"):
        detect_scheme(nested_tumour("2023"), labels="2021")
    both = nested_tumour("2021")
    both[0, 0, 0] = SCHEMES["2023"].labels["ET"]
    with pytest.raises(ViewError, match="--labels"):
        detect_scheme(both)


def test_label_map_on_another_grid_is_refused(case_2023, tmp_path):
    _, grid = load_case(select_case(case_2023))
    path = write_nifti(tmp_path / "small.nii.gz", nested_tumour()[:-2])
    with pytest.raises(ViewError, match="has shape"):
        read_labels(path, "prediction", grid)


def test_several_cases_need_case_id(case_factory):
    root = case_factory("2021-folders", ["BraTS2021_00001", "BraTS2021_00002"])
    with pytest.raises(CaseChoiceError, match="--case-id"):
        select_case(root)
    assert select_case(root, "BraTS2021_00002").case_id == "BraTS2021_00002"
    with pytest.raises(CaseChoiceError, match="no case 'nope'"):
        select_case(root, "nope")


# --- the picture ----------------------------------------------------------------------------


def test_prediction_panel_shows_every_label_colour(case_2023, tmp_path):
    case = select_case(case_2023)
    image_cdhw, grid = load_case(case)
    ref_path = case_2023 / modality_filename(CASE_ID, "seg", "2023")
    pred_path = write_nifti(tmp_path / "empty.nii.gz", np.zeros(SMALL_SHAPE, np.uint8))
    maps = [
        read_labels(pred_path, "prediction", grid, case.year),
        read_labels(ref_path, "reference", grid, case.year),
    ]
    fig = render_view(image_cdhw, grid, maps, CASE_ID)
    out = tmp_path / "view.png"
    fig.savefig(out, dpi=100)
    png = imread(out)
    assert png.shape[:2] == PNG_SHAPE
    for plane in ("axial", "coronal", "sagittal"):
        # Every plane cuts the nested blocks through all three labels.
        assert min(colour_counts(panel_pixels(fig, png, f"reference-{plane}")).values()) > 5
        # Controls: grey modalities and an empty prediction carry no colour at all.
        assert max(colour_counts(panel_pixels(fig, png, f"t2f-{plane}")).values()) == 0
        assert max(colour_counts(panel_pixels(fig, png, f"prediction-{plane}")).values()) == 0
    assert any("Dice  WT 0.000   TC 0.000   ET 0.000" in t.get_text() for t in fig.texts)


def test_write_view_returns_the_case_and_maps_it_drew(case_2023, tmp_path):
    out = tmp_path / "deeper" / "v.png"
    case_id, maps, scores = write_view(case_2023, out, labels="2023")
    assert case_id == CASE_ID and scores is None
    assert [(m.role, m.path.name, m.scheme.name) for m in maps] == [
        ("reference", modality_filename(CASE_ID, "seg", "2023"), "2023")
    ]
    assert imread(out).shape[:2] == PNG_SHAPE


# --- the command ----------------------------------------------------------------------------


def test_view_command_writes_png_with_auto_reference(case_2023, tmp_path):
    pred = shutil.copy(case_2023 / modality_filename(CASE_ID, "seg", "2023"), tmp_path / "p.nii.gz")
    out = tmp_path / "pics" / "case.png"
    result = bratskit("view", case_2023, "--seg", pred, "--png", out)
    assert result.returncode == 0, result.stderr
    assert "reference" in result.stdout and "Dice WT 1.000 TC 1.000 ET 1.000" in result.stdout
    png = imread(out)
    assert png.shape[:2] == PNG_SHAPE
    assert min(colour_counts(png).values()) > 50


@pytest.mark.parametrize(
    ("make_args", "code", "message"),
    [
        (lambda case, tmp: ["--seg", tmp / "missing.nii.gz"], 3, "file not found"),
        (
            lambda case, tmp: [
                "--seg",
                write_nifti(tmp / "s.nii.gz", np.zeros((30, 32, 24), np.uint8)),
            ],
            3,
            "has shape (30, 32, 24)",
        ),
        (lambda case, tmp: ["--case-id", "nope"], 2, "no case 'nope'"),
    ],
    ids=["missing-seg", "shape-mismatch", "unknown-case-id"],
)
def test_view_command_errors(case_2023, tmp_path, make_args, code, message):
    out = tmp_path / "x.png"
    result = bratskit("view", case_2023, "--png", out, *make_args(case_2023, tmp_path))
    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert not out.exists()


def test_missing_case_folder_exits_3(tmp_path):
    result = bratskit("view", tmp_path / "nope", "--png", tmp_path / "x.png")
    assert result.returncode == 3
    assert f"{tmp_path}/nope does not exist" in result.stderr


def test_without_matplotlib_exits_4(case_2023, tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from submission.cli import main\n"
        f"main(['view', {str(case_2023)!r}, '--png', {str(tmp_path / 'x.png')!r}])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 4, result.stderr
    assert "pip install matplotlib" in result.stderr


def test_real_case_renders(real_data, tmp_path):
    out = tmp_path / "gli.png"
    result = bratskit("view", real_data / "BraTS-GLI-00001-000", "--png", out)
    assert result.returncode == 0, result.stderr
    assert imread(out).shape[:2] == PNG_SHAPE


def test_real_label_maps_on_real_grid(real_data, tmp_path):
    # TCGA-FG-6692 as a 2021 flat case: a real 2021 prediction against the fused reference.
    tcga = real_data / "TCGA-FG-6692"
    folder = tmp_path / "flat"
    folder.mkdir()
    for name in ("flair", "t1", "t1ce", "t2"):
        shutil.copy(tcga / "images" / f"{name}.nii.gz", folder / f"TCGA-FG-6692_{name}.nii.gz")
    case = select_case(folder)
    image_cdhw, grid = load_case(case)
    maps = [
        read_labels(tcga / "segmentations" / "isen-20.nii.gz", "prediction", grid, case.year),
        read_labels(tcga / "fusions" / "mav.nii.gz", "reference", grid, case.year),
    ]
    assert [m.scheme.name for m in maps] == ["2021", "2021"]
    fig = render_view(image_cdhw, grid, maps, case.case_id)
    out = tmp_path / "tcga.png"
    fig.savefig(out, dpi=100)
    png = imread(out)
    assert min(colour_counts(panel_pixels(fig, png, "prediction-axial")).values()) > 5
    assert nib.aff2axcodes(grid.affine) == ("L", "P", "S")


def test_a_gtv_map_is_drawn_centred_on_the_gtv_with_gtv_dice(case_2023, tmp_path):
    # MEN-RT label maps (one label, GTV) have no WT: centre, colour and Dice use GTV.
    case = select_case(case_2023)
    image_cdhw, grid = load_case(case)
    seg = np.zeros(SMALL_SHAPE, np.uint8)
    seg[4:9, 20:26, 3:8] = 1
    ref_path = write_nifti(tmp_path / "ref.nii.gz", seg)
    pred = seg.copy()
    pred[4:9, 20:23, 3:8] = 0  # half the GTV: Dice 2 * 45 / (45 + 90)
    pred_path = write_nifti(tmp_path / "pred.nii.gz", pred)
    maps = [
        read_labels(pred_path, "prediction", grid, case.year, labels="men-rt"),
        read_labels(ref_path, "reference", grid, case.year, labels="men-rt"),
    ]
    fig = render_view(image_cdhw, grid, maps, CASE_ID)
    assert any("Dice  GTV 0.667" in t.get_text() for t in fig.texts)
    out = tmp_path / "view.png"
    fig.savefig(out, dpi=100)
    png = imread(out)
    for plane in ("axial", "coronal", "sagittal"):  # every plane cuts the GTV
        rgb = panel_pixels(fig, png, f"reference-{plane}")[..., :3]
        orange = (
            (rgb[..., 0] > 0.6)
            & (np.abs(rgb[..., 1] - rgb[..., 0] / 2) < 0.25)
            & (rgb[..., 2] < 0.35)
        )
        assert orange.sum() > 5, plane
