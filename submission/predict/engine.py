"""The inference engine: a bundle loaded once, then case after case to a label map.

Per case (:meth:`Engine.prepare` in the reading thread, :meth:`Engine.segment` in the
main one): resample to the members' training spacing when the manifest states one and the
case's differs (native-space MET and MEN-RT, :mod:`submission.predict.resample`), crop to
the brain and z-score (the manifest's preprocessing), optionally localise (paper 002,
2.3), run every segmentation member (with mirroring TTA when asked, averaged per member
before ensembling; imported members through their own framework's pipeline,
:mod:`submission.predict.pipelines`), ensemble per region (paper 002 2.5 mean or vote,
paper 004 3.2 confidence top-k, or argmax for label-based models), post-process (ET
minimum volume, paper 002 2.6), assemble labels in the chosen scheme and put them back on
the input's exact grid. A resampled case's probabilities go back to the input grid
(linear) member by member, before the ensemble thresholds them.

Each member runs full-volume on the cropped brain when that fits (in windows of its patch
if it was trained on random ones), else (or after a device out-of-memory) with a Gaussian
sliding window over its training patch; a GPU that still runs out of memory hands the
member to the CPU. Every fallback is logged and reported on the case's log line.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.special import expit

from submission.brats import ENHANCING, MODALITIES, get_scheme
from submission.io.cases import Case, load_channels
from submission.io.nifti import Grid
from submission.predict import backends, resample
from submission.predict.backends import BackendError
from submission.predict.bundle import read_manifest
from submission.predict.bundle_files import verify_file, verify_files
from submission.predict.ensemble import region_masks
from submission.predict.members import Member
from submission.predict.options import PredictOptions, RuntimeOptions, region_thresholds
from submission.predict.pipelines import RawCase, final_postprocessing, run_pipeline
from submission.predict.postprocess import postprocess
from submission.predict.prepared import Prepared, Resampling, to_input_frame
from submission.predict.preprocess import CropInfo, crop, preprocess_case, uncrop
from submission.predict.runner import CaseOutput
from submission.predict.sliding_window import flip_tta, predict_volume
from submission.predict.tumour_window import extract_window, paste_window, tumour_window_start

log = logging.getLogger(__name__)

#: Activation memory assumed per input voxel when ``max_memory_gb`` decides between the
#: full volume and a sliding window: ONNX Runtime peaks at about 330 B/voxel for a
#: SegResNet with 16 filters in fp32 (1.5 GB at 152 x 200 x 152); 1 KiB covers the papers'
#: 32- and 64-filter networks.
BYTES_PER_VOXEL = 1024
DEFAULT_PATCH = (128, 128, 128)


@dataclass
class _Slot:
    """A member's loaded model, and its CPU copy once a GPU ran out of memory."""

    member: Member
    model: backends.Model
    cpu_model: backends.Model | None = None


class Engine:
    """A loaded bundle; :meth:`prepare` then :meth:`segment` each case (a runner Pipeline).

    Attributes:
        manifest: the bundle's manifest, read once.
        options: the predict options, None fields resolved from the manifest.
        device, backend, precision: where and how the members run.
        slots: each member's loaded model, in manifest order.
    """

    def __init__(
        self,
        bundle_dir: Path,
        options: PredictOptions | None = None,
        runtime: RuntimeOptions | None = None,
    ) -> None:
        start = time.perf_counter()
        self.bundle_dir = Path(bundle_dir)
        self.runtime = runtime or RuntimeOptions()
        device = backends.resolve_device(self.runtime.device)
        self.manifest = read_manifest(self.bundle_dir)
        verified: set[str] = set()
        try:
            self.backend, self.precision, self.slots = self._open_members(device, verified)
        except BackendError as exc:
            # A GPU the driver reports but the runtime cannot use (driver older than the
            # image's CUDA, missing libraries): with --device auto, run on the CPU instead.
            if self.runtime.device != "auto" or device == "cpu":
                raise
            log.warning("cannot use the GPU (%s); running on the CPU instead", exc)
            device = "cpu"
            self.backend, self.precision, self.slots = self._open_members(device, verified)
        self.device = device
        self.options = (options or PredictOptions()).resolve(self.manifest)
        self.scheme = get_scheme(self.options.labels)
        self.thresholds = region_thresholds(self.options.threshold, self.manifest.region_names)
        #: What :meth:`prepare` takes: the bundle's channels in MODALITIES order (all four
        #: for most tasks, t1c alone for MEN-RT), reordered to the members' order there.
        self.input_modalities = tuple(m for m in MODALITIES if m in self.manifest.channels)
        self.channel_order = [self.input_modalities.index(c) for c in self.manifest.channels]
        # The manifest's preprocessing without its padding to a divisor: each member pads
        # to its own size rule in predict_volume, so a network of stride 8 is not run on a
        # volume padded to 16 (a 240 x 240 x 155 brain: 152 x 200 x 152 voxels instead of
        # 160 x 208 x 160, 13 % less compute). Brain voxels and their z-scores are the same.
        self.preprocessing = replace(self.manifest.preprocessing, divisor=1)
        #: nnU-Net's own post-processing when its folds are the whole ensemble, else None.
        self.final_postprocessing = final_postprocessing(self.manifest, self.scheme)
        log.info(
            "bundle %s: %d member(s) on %s with %s (%s) in %.1f s; ensemble %s, ET threshold "
            "%d, labels %s%s",
            self.bundle_dir,
            len(self.slots),
            self.device,
            self.backend,
            self.precision,
            time.perf_counter() - start,
            self.options.ensemble,
            self.options.et_threshold,
            self.options.labels,
            ", TTA" if self.options.tta else "",
        )

    def _open_members(self, device: str, verified: set[str]) -> tuple[str, str, list[_Slot]]:
        """Backend, precision and every member opened for ``device``, after verifying the
        sha256 of the files it loads (each format once: ``verified`` remembers them).

        Raises:
            BackendError: no backend can run the bundle on ``device``.
            BundleError: a file to load is missing or altered.
        """
        formats = self.manifest.formats
        backend = backends.resolve_backend(self.runtime.backend, device, formats)
        precision = backends.resolve_precision(self.runtime.precision, device, backend, formats)
        file_format = backends.file_format(backend, precision)
        if file_format not in verified:
            verify_files(self.bundle_dir, self.manifest, (file_format,))
            verified.add(file_format)
        slots = [_Slot(m, self._open(m, backend, device, precision)) for m in self.manifest.members]
        return backend, precision, slots

    def _open(self, member: Member, backend: str, device: str, precision: str):
        fmt = backends.file_format(backend, precision)
        path = self.bundle_dir / member.files[fmt].path
        return backends.open_model(path, backend, device, precision, self.runtime.threads)

    # -- per case -------------------------------------------------------------------

    @property
    def required_modalities(self) -> tuple[str, ...]:
        """The modalities a case must have (the runner's discovery refuses the others)."""
        return tuple(m for m in self.input_modalities if m in self.manifest.required_channels)

    def prepare_case(self, case: Case) -> tuple[Prepared, Grid]:
        """Load a case's channels (an absent optional one filled as in training, said on
        the case's line) and :meth:`prepare` it: the runner's reading-thread step."""
        optional = tuple(self.manifest.missing_modalities)
        image_cdhw, grid, absent = load_channels(case, self.input_modalities, optional)
        prepared = self.prepare(image_cdhw, resample.voxel_spacing(grid.affine), grid.affine)
        prepared.notes += [
            f"{m} absent: filled with {self.manifest.missing_modalities[m]}s, as the members "
            "saw a dropped modality in training"
            for m in absent
        ]
        return prepared, grid

    def prepare(
        self,
        image_cdhw: np.ndarray,
        spacing: tuple[float, ...] | None = None,
        affine: np.ndarray | None = None,
    ) -> Prepared:
        """Crop and normalise a case (:attr:`input_modalities` order in, the bundle's
        channel order out), first resampled (third order) to the manifest's spacing when
        both ``spacing`` (the case's voxel sizes in mm) and the manifest's are known and
        differ beyond :data:`submission.predict.resample.SPACING_TOLERANCE`. A bundle with
        imported members also keeps the case as read, with ``spacing`` and ``affine``,
        for their own pipelines."""
        prepared = self._prepare(image_cdhw, spacing)
        if self.manifest.pipelines:
            prepared.raw = RawCase(image_cdhw, self.input_modalities, spacing, affine)
        return prepared

    def _prepare(self, image_cdhw: np.ndarray, spacing: tuple[float, ...] | None) -> Prepared:
        start = time.perf_counter()
        target = self.preprocessing.spacing
        in_shape = shape = tuple(image_cdhw.shape[1:])
        known = target is not None and spacing is not None
        if known and resample.needs_resampling(spacing, target):
            shape = resample.target_shape(in_shape, spacing, target)
        if shape == in_shape:  # today's path, also when rounding leaves the shape as it is
            image, box = preprocess_case(image_cdhw, self.preprocessing)
            return Prepared(image[self.channel_order], box, time.perf_counter() - start)
        resampled = resample.resample_image(image_cdhw, shape)
        image, box = preprocess_case(resampled, self.preprocessing)
        resampling = Resampling(shape, box, tuple(spacing), target)
        return Prepared(
            image[self.channel_order],
            resample.covering_crop(box, in_shape),
            time.perf_counter() - start,
            notes=[resampling.note],
            resampling=resampling,
        )

    def segment(self, prepared: Prepared) -> CaseOutput:
        """Labels of one prepared case on its original grid, with stage timings."""
        warnings: list[str] = list(prepared.notes)
        timings = {"preprocess": prepared.seconds}
        probs = self.member_probabilities(prepared, warnings, timings)
        tick = time.perf_counter()
        regions = self.regions(probs)
        timings["ensemble"] = time.perf_counter() - tick
        tick = time.perf_counter()
        labels_dhw = self.labels(regions, prepared.crop)
        et_voxels = (
            int(np.count_nonzero(labels_dhw == self.scheme.labels[ENHANCING]))
            if self.scheme.has_enhancing
            else None
        )
        timings["postprocess"] = time.perf_counter() - tick
        return CaseOutput(labels_dhw, timings, warnings, et_voxels)

    def member_probabilities(
        self,
        prepared: Prepared,
        warnings: list[str],
        timings: dict[str, float] | None = None,
        keep: Callable[[Member], bool] = lambda member: True,
    ) -> dict[str, list[np.ndarray]]:
        """Each segmentation member's float32 probabilities (d, h, w) in the frame of
        ``prepared.crop`` (a crop of the input grid), per region, in manifest order, after
        stage-1 localisation; only the members (of both stages) that ``keep`` accepts run
        (``bratskit tune``'s out-of-fold mode). A resampled case's probabilities are
        resampled back to the input grid here, one member at a time, before any ensemble
        thresholds them."""
        timings = {} if timings is None else timings
        image = prepared.image_cdhw
        tick = time.perf_counter()
        window = self._localise(image, warnings, keep)
        timings["localise"] = time.perf_counter() - tick
        tick = time.perf_counter()
        probs: dict[str, list[np.ndarray]] = {r: [] for r in self.manifest.region_names}
        size = self.manifest.localization
        stage_image = image if window is None else extract_window(image, window, size)
        for slot in self._slots("segmentation", keep):
            member_probs = self._predict(slot, stage_image, warnings)
            if window is not None:
                member_probs = paste_window(member_probs, window, image.shape[1:])
            member_probs = to_input_frame(member_probs, prepared)
            for region, p in zip(slot.member.regions, member_probs):
                probs[region].append(p)
        for regions, member_probs in self._imported(prepared, keep):
            for region, p in zip(regions, crop(member_probs, prepared.crop)):
                probs[region].append(p)
        timings["members"] = time.perf_counter() - tick
        return probs

    def _imported(self, prepared: Prepared, keep: Callable[[Member], bool]):
        """(regions, probabilities on the input grid) of each imported member group's
        outputs (:mod:`submission.predict.pipelines`), those ``keep`` accepts."""
        for name, pipeline in self.manifest.pipelines.items():
            group = [s for s in self.slots if s.member.pipeline == name and keep(s.member)]
            if not group:
                continue
            try:
                yield from run_pipeline(
                    pipeline,
                    [s.member for s in group],
                    [s.model for s in group],
                    prepared.raw,
                    self.options.tta,
                    self.manifest.scheme.regions,
                )
            finally:
                for s in group:
                    s.model.release()

    def labels(self, regions_rdhw: np.ndarray, crop: CropInfo) -> np.ndarray:
        """uint8 labels on the case's grid from :meth:`regions`: the options' ET threshold
        and label scheme, uncropped."""
        options = self.options
        labels = postprocess(regions_rdhw, self.scheme, options.et_threshold, options.et_replace)
        if self.final_postprocessing is not None:
            labels = self.final_postprocessing(labels)
        return uncrop(labels, crop, fill=0).astype(np.uint8)

    def _slots(self, stage: str, keep: Callable[[Member], bool] = lambda m: True) -> list[_Slot]:
        """The stage's members run the bratskit way (not through a pipeline)."""
        return [
            s
            for s in self.slots
            if s.member.stage == stage and s.member.pipeline is None and keep(s.member)
        ]

    def _localise(
        self, image: np.ndarray, warnings: list[str], keep: Callable[[Member], bool]
    ) -> tuple[int, int, int] | None:
        """Start of the stage-2 window (paper 002, 2.3), or None without a localisation stage."""
        stage1 = self._slots("localization", keep)
        if not stage1:
            return None
        outer = self.manifest.scheme.outermost
        whole = [self._predict(slot, image, warnings)[0] for slot in stage1]
        mask = region_masks({outer: whole}, [outer], "mean", self.thresholds)[0]
        if not mask.any():
            warnings.append("stage 1 found no tumour: stage 2 ran on the brain-centred window")
            log.warning("localisation: %s", warnings[-1])
        return tumour_window_start(mask, self.manifest.localization)

    def regions(self, probs: dict[str, list[np.ndarray]]) -> np.ndarray:
        """The options' ensemble of :meth:`member_probabilities`: bool region masks
        (R, d, h, w) in the region order of the options' label scheme."""
        method, top_k = self.options.ensemble, self.options.top_k
        return region_masks(
            probs,
            self.scheme.region_names,
            method,
            self.thresholds,
            top_k,
            confidence_empty=self.options.confidence_empty,
            scheme_regions=self.scheme.regions,
        )

    # -- one member, with its fallbacks ------------------------------------------------

    def _predict(self, slot: _Slot, image: np.ndarray, warnings: list[str]) -> np.ndarray:
        """float32 probabilities (R_member, d, h, w) of one member, TTA included; a member
        with its own ``channels`` (paper 003's single-modality networks) gets only those
        channels of ``image`` (the bundle's channel order), in its order."""
        if slot.member.channels is not None:
            image = image[[self.manifest.channels.index(c) for c in slot.member.channels]]
        for plan, model, patch in self._plans(slot, image.shape[1:]):
            try:
                return self._run(slot.member, model, patch, image)
            except backends.DeviceOutOfMemory as exc:
                message = f"{slot.member.name}: out of memory ({plan}), falling back"
                warnings.append(message)
                log.warning("%s: %s", message, exc)
        raise backends.DeviceOutOfMemory(
            f"{slot.member.name} ran out of memory even with a sliding window on the CPU"
        )

    def _plans(self, slot: _Slot, shape: tuple[int, ...]):
        """(description, model, patch) to try: full volume or patch windows, sliding, CPU."""
        member = slot.member
        fixed = any(f is not None for f in member.size_rule.fixed)
        window = None if fixed else member.prediction_window(shape)
        patch = window or member.patch or member.size_rule.fit(DEFAULT_PATCH)
        padded = member.size_rule.fit(shape)
        budget = self.options.max_memory_gb
        fits = budget is None or math.prod(padded) * BYTES_PER_VOXEL <= budget * 2**30
        if fixed:  # a fixed axis (effunet's slice count) slides along that axis only
            patch = member.size_rule.fixed
            yield "sliding window on the fixed axis", slot.model, patch
        elif window is not None:
            yield "sliding window of the training patch", slot.model, patch
        elif fits:
            yield "full volume", slot.model, None
            yield "sliding window", slot.model, patch
        else:
            yield "sliding window", slot.model, patch
        if slot.model.device != "cpu":
            if slot.cpu_model is None:
                backend = backends.resolve_backend("auto", "cpu", set(member.files))
                # The GPU may have run another format (onnx-fp16): check the file opened now.
                verify_file(self.bundle_dir, member, backends.file_format(backend, "fp32"))
                slot.cpu_model = self._open(member, backend, "cpu", "fp32")
            yield "sliding window on the CPU", slot.cpu_model, patch

    def _run(self, member: Member, model, patch, image: np.ndarray) -> np.ndarray:
        forward = model if member.outputs == "probabilities" else _sigmoid(model)
        predict = functools.partial(
            predict_volume,
            forward=forward,
            rule=member.size_rule,
            patch_dhw=patch,
            overlap=self.options.overlap,
        )
        try:
            return flip_tta(image, predict) if self.options.tta else predict(image)
        finally:
            model.release()  # members run one after another: one member's buffers at a time


def _sigmoid(model):
    """A forward that turns a logits model's output into probabilities."""

    def forward(batch_ncdhw: np.ndarray) -> np.ndarray:
        return expit(model(batch_ncdhw)).astype(np.float32)

    return forward
