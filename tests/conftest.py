"""Shared fixtures: small real NIfTI cases written into tmp folders, and the real data."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from submission.brats import MODALITIES, modality_filename

TESTS = Path(__file__).resolve().parent
REAL_DATA = TESTS.parents[1] / "shared" / "data" / "real"
LPS_SMALL = np.array([[-1.0, 0, 0, 0], [0, -1, 0, 31], [0, 0, 1, 0], [0, 0, 0, 1]])
SMALL_SHAPE = (32, 32, 24)


#: Test folders whose tests run torch; the runtime tests never import it.
TORCH_TEST_FOLDERS = ("train", "export")


@pytest.fixture(autouse=True)
def _two_threads(request):
    """Tests share 2 cores; keep torch from oversubscribing them (torch tests only)."""
    if Path(request.path).relative_to(TESTS).parts[0] not in TORCH_TEST_FOLDERS:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def real_data() -> Path:
    """The shared real cases; tests using it skip with a reason when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} not present")
    return REAL_DATA


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray = LPS_SMALL) -> Path:
    """Write an image with qform and sform both set, as BraTS files have."""
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, 2)
    img.set_sform(affine, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def small_image(seed: int = 0, shape=SMALL_SHAPE) -> np.ndarray:
    """int16 (4, *shape) brain-like block: zeros outside a central box."""
    rng = np.random.default_rng(seed)
    image = np.zeros((4, *shape), dtype=np.int16)
    image[:, 4:-4, 5:-5, 3:-3] = rng.integers(
        100, 1000, size=(4, shape[0] - 8, shape[1] - 10, shape[2] - 6)
    )
    return image


def write_case(
    folder: Path, case_id: str, year: str = "2021", seed: int = 0, image: np.ndarray | None = None
) -> dict[str, Path]:
    """Write the four modalities of a case into ``folder`` (no sub-folder is created)."""
    image = small_image(seed) if image is None else image
    return {
        m: write_nifti(folder / modality_filename(case_id, m, year), image[i])
        for i, m in enumerate(MODALITIES)
    }


@pytest.fixture
def case_factory(tmp_path):
    """Build input folders: ``case_factory(layout, ids)`` -> input folder path."""

    def make(layout: str = "2021-folders", ids=("BraTS2021_00001",), root: Path | None = None):
        root = root or tmp_path / "input"
        year = layout.split("-")[0]
        for i, case_id in enumerate(ids):
            folder = root if layout.endswith("flat") else root / case_id
            write_case(folder, case_id, year, seed=i)
        return root

    return make


def real_inputs(real_data, tmp_path):
    """BraTS-GLI-00001-000 as a 2023 folder and TCGA-FG-6692 as a 2021 flat case."""
    gli = tmp_path / "in-2023"
    shutil.copytree(real_data / "BraTS-GLI-00001-000", gli / "BraTS-GLI-00001-000")
    flat = tmp_path / "in-2021"
    flat.mkdir()
    for name in ("flair", "t1", "t1ce", "t2"):
        shutil.copy(
            real_data / "TCGA-FG-6692" / "images" / f"{name}.nii.gz",
            flat / f"TCGA-FG-6692_{name}.nii.gz",
        )
    return gli, flat


def threshold_segmenter(image_cdhw):
    """A stand-in for the network in runner tests: labels bright FLAIR as edema (label 2)."""
    return (image_cdhw[MODALITIES.index("t2f")] > 900).astype(np.uint8) * 2
