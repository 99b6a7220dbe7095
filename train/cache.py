"""Preprocessed training cache: each case decoded, cropped and normalised once, then memory-mapped.

Epochs read uncompressed ``.npy`` files through ``np.load(mmap_mode="r")``, so no epoch
ever decompresses gzip, and worker processes share the pages through the OS cache instead
of copying volumes. The cache folder records the preprocessing it was built with
(``cache.json``); a different setting builds a fresh cache in a sibling folder keyed by its
hash, and a case whose source files changed (size or mtime) is rebuilt. Each case is
written to temporary names and renamed, so five fold jobs sharing a run may build the
cache at the same time.

Layout per case, ``<cache>/<key>/<case id>/``:
    ``image.npy``    (C, d, h, w) float16 or float32, the network input of
                     :func:`submission.predict.preprocess.preprocess_case`, after
                     resampling to ``preprocessing.spacing`` when the recipe sets one
                     (:func:`submission.predict.resample.resample_case`, as the runtime).
    ``regions.npy``  (d, h, w) uint8, bit r set where region r of the label scheme (WT, TC,
                     ET, then RC or CC; GTV alone for MEN-RT) is present.
    ``meta.json``    source files, crop, label scheme.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from submission.brats import MODALITIES, LabelScheme, get_scheme, labels_to_regions
from submission.io.cases import Case, CaseError, InputError, discover_cases, load_channels
from submission.io.nifti import read_label_map
from submission.io.references import label_file
from submission.predict.preprocess import Preprocessing, crop, preprocess_case
from submission.predict.resample import resample_case, voxel_spacing

log = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass(frozen=True)
class CachedCase:
    """One case of the cache, memory-mapped on first use."""

    case_id: str
    folder: Path

    def image(self) -> np.ndarray:
        """(C, d, h, w) memory-mapped network input, the run's channels in order."""
        return np.load(self.folder / "image.npy", mmap_mode="r")

    def packed_regions(self) -> np.ndarray:
        """(d, h, w) uint8 memory-mapped bits, see :func:`pack_regions` (bit 0 is WT)."""
        return np.load(self.folder / "regions.npy", mmap_mode="r")

    @functools.cached_property
    def scheme(self) -> LabelScheme:
        """The label scheme the case's regions follow (its ``meta.json``)."""
        return get_scheme(json.loads((self.folder / "meta.json").read_text())["scheme"])

    def regions(self) -> np.ndarray:
        """(R, d, h, w) uint8 masks in the order of :attr:`scheme`'s regions."""
        return unpack_regions(self.packed_regions(), len(self.scheme.regions))


def pack_regions(regions_rdhw: np.ndarray) -> np.ndarray:
    """Bit-pack (R, d, h, w) masks, R <= 8, into one uint8 volume (bit r = region r)."""
    if len(regions_rdhw) > 8:
        raise ValueError(f"at most 8 regions fit a uint8, got {len(regions_rdhw)}")
    packed = np.zeros(regions_rdhw.shape[1:], dtype=np.uint8)
    for r, mask in enumerate(regions_rdhw):
        packed |= mask.astype(np.uint8) << r
    return packed


def unpack_regions(packed_dhw: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`pack_regions`: (count, d, h, w) uint8."""
    shifts = np.arange(count, dtype=np.uint8)[:, None, None, None]
    return (np.asarray(packed_dhw)[None] >> shifts) & 1


def cache_key(
    spec: Preprocessing,
    dtype: str,
    label_scheme: str,
    channels: tuple[str, ...] = MODALITIES,
) -> str:
    """Short hash of everything that changes the cached arrays (the four modalities'
    keys are those of caches written before tasks had their own channels)."""
    state = {
        "version": CACHE_VERSION,
        "pre": spec.to_dict(),
        "dtype": dtype,
        "labels": label_scheme,
    }
    if tuple(channels) != MODALITIES:
        state["channels"] = list(channels)
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:12]


def training_cases(data_dir: Path, required: tuple[str, ...] = MODALITIES) -> list[Case]:
    """Cases of a training folder that have a label map; others are reported and skipped.

    The label map is found by the rule ``tune`` and ``evaluate`` use
    (:func:`submission.io.references.find_label_maps`); a case with two is skipped.

    Raises:
        InputError: the folder is missing or has no usable labelled case.
    """
    found = discover_cases(data_dir, required)
    cases, unlabelled = [], []
    for case in found.cases:
        try:
            (cases if label_file(case) is not None else unlabelled).append(case)
        except CaseError as exc:  # two label maps: which is the truth is the user's call
            found.errors.append(exc)
    for error in found.errors:
        log.warning("skipping %s", error)
    unlabelled = sorted(c.case_id for c in unlabelled)
    if unlabelled:
        log.warning("skipping %d case(s) without a label map: %s", len(unlabelled), unlabelled)
    if not cases:
        raise InputError(f"no labelled case in {data_dir}: training needs <id>_seg/-seg files")
    return cases


def build_cache(
    cases: list[Case],
    cache_root: Path,
    spec: Preprocessing,
    dtype: str = "float16",
    label_scheme: str = "auto",
    progress: bool = True,
    channels: tuple[str, ...] = MODALITIES,
    optional: tuple[str, ...] = (),
) -> dict[str, CachedCase]:
    """Make sure every case is cached with these settings; build what is missing or stale.

    Args:
        cases: labelled cases (see :func:`training_cases`).
        cache_root: parent folder; the cache lives in ``cache_root/<cache_key>``.
        spec: preprocessing, the same the bundle manifest will state.
        dtype: ``float16`` or ``float32`` storage of the image.
        label_scheme: scheme of the label maps, or ``auto`` (2021 names -> 2021, else 2023).
        progress: show a progress bar while building.
        channels: the modalities cached, in this order (the task's).
        optional: channels a case may lack, cached as zeros (the runtime's fill).

    Returns:
        case id -> :class:`CachedCase`, in case order.
    """
    folder = Path(cache_root) / cache_key(spec, dtype, label_scheme, channels)
    folder.mkdir(parents=True, exist_ok=True)
    state = {"version": CACHE_VERSION, "preprocessing": spec.to_dict(), "dtype": dtype}
    (folder / "cache.json").write_text(json.dumps(state, indent=1))
    stale = [c for c in cases if not _is_fresh(c, folder / c.case_id)]
    if stale:
        log.info("caching %d of %d case(s) in %s", len(stale), len(cases), folder)
    for case in tqdm(stale, desc="cache", unit="case", disable=not progress or not stale):
        _cache_case(case, folder / case.case_id, spec, dtype, label_scheme, channels, optional)
    return {c.case_id: CachedCase(c.case_id, folder / c.case_id) for c in cases}


def _sources(case: Case) -> dict[str, list]:
    paths = [*case.files.values(), label_file(case)]
    return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}


def _is_fresh(case: Case, folder: Path) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("sources") == _sources(case)


def _cache_case(
    case: Case,
    folder: Path,
    spec: Preprocessing,
    dtype: str,
    scheme: str,
    channels: tuple[str, ...],
    optional: tuple[str, ...],
) -> None:
    image_cdhw, grid, absent = load_channels(case, channels, optional)
    seg_path = label_file(case)
    seg_dhw, seg_grid = read_label_map(seg_path)
    if seg_grid.shape != grid.shape:
        raise ValueError(f"{seg_path}: label shape {seg_grid.shape} != image {grid.shape}")
    scheme_name = ("2021" if case.year == "2021" else "2023") if scheme == "auto" else scheme
    bad = set(np.unique(seg_dhw).tolist()) - get_scheme(scheme_name).valid_labels
    if bad:
        raise ValueError(f"{seg_path}: labels {sorted(bad)} not in scheme {scheme_name}")
    regions = labels_to_regions(seg_dhw, scheme_name)
    if spec.spacing is not None:  # native-space tasks: the members' spacing, as at runtime
        spacing = voxel_spacing(grid.affine)
        image_cdhw, regions = resample_case(image_cdhw, regions, spacing, spec.spacing)
    norm_cdhw, info = preprocess_case(image_cdhw, spec)
    regions = crop(regions, info)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_save(folder / "image.npy", norm_cdhw.astype(dtype))
    _atomic_save(folder / "regions.npy", pack_regions(regions))
    meta = {
        "case_id": case.case_id,
        "scheme": scheme_name,
        "absent": absent,
        "crop": {"in_shape": info.in_shape, "start": info.start, "stop": info.stop},
        "sources": _sources(case),
    }
    tmp = folder / f".meta.json.{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(folder / "meta.json")


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npy")
    np.save(tmp, array)
    tmp.replace(path)
