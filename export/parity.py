"""Parity inputs and checks: does an exported file compute what the eager model computes?

Every exported file runs on a realistic input: a synthetic brain case
(:func:`submission.workbench.synth.synthesize_case`) preprocessed as the container preprocesses a
case (:func:`submission.predict.preprocess.preprocess_case`), then a window centred on its whole
tumour, zero-padded where the case is smaller, of a size the model admits. The check
input differs from the one the graph was traced with on the batch axis (2 against 1) and
on every spatial axis the model does not fix, so a file that baked in the traced size
fails here instead of in the container. Its second sample is the first one mirrored on
all three axes (a mirroring-TTA input).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.errors import ExportError
from submission.brats import MODALITIES
from submission.predict.preprocess import Preprocessing, crop, preprocess_case
from submission.predict.sliding_window import SizeRule
from submission.predict.tumour_window import extract_window, tumour_window_start
from submission.workbench.synth import MIN_SIDE, synthesize_case

log = logging.getLogger(__name__)

#: Largest admitted max |probability difference| against the eager fp32 model.
TOLERANCES: dict[str, float] = {"fp32": 1e-4, "fp16": 1e-2}
REFERENCE = "eager torch, fp32"
FLOAT16_MAX = 65504.0

Forward = Callable[[np.ndarray], np.ndarray]
"""``forward(image_ncdhw float32) -> probs_nrdhw float32``."""


@dataclass(frozen=True)
class ParityInputs:
    """The export and check inputs of one model, float32 preprocessed images.

    Attributes:
        trace_ncdhw: (1, C, d, h, w), what the graph is traced and exported with.
        check_ncdhw: (2, C, D, H, W), what every exported file is compared on; D, H, W
            differ from d, h, w on every axis the size rule does not fix.
    """

    trace_ncdhw: np.ndarray
    check_ncdhw: np.ndarray


def parity_shapes(
    rule: SizeRule, patch_dhw: Sequence[int] | None = None
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(trace, check) spatial shapes for a model of size rule ``rule``.

    The check shape is the sliding-window patch fitted to the rule (3 divisors per free
    axis without a patch); the trace shape is one divisor smaller on each free axis, or
    one larger where that would leave fewer than two divisors.
    """
    if patch_dhw is None:
        patch_dhw = tuple(3 * d for d in rule.divisors)
    check = rule.fit(patch_dhw)
    trace = []
    for size, d, fixed in zip(check, rule.divisors, rule.fixed):
        if fixed is not None:
            trace.append(size)
        else:
            trace.append(size - d if size - d >= 2 * d else size + d)
    return tuple(trace), check


def synthetic_case(
    preprocessing: Preprocessing, min_shape_dhw: Sequence[int], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A preprocessed synthetic case a little larger than ``min_shape_dhw``.

    Returns:
        float32 image_cdhw (4, D, H, W) in MODALITIES order, as the network sees it, and
        bool regions_rdhw (3, D, H, W) WT, TC, ET on the same grid.
    """
    shape = tuple(max(MIN_SIDE, int(np.ceil(1.25 * s))) for s in min_shape_dhw)
    image, regions = synthesize_case(np.random.default_rng([seed, 0]), shape)
    image_cdhw, info = preprocess_case(image, preprocessing)
    return image_cdhw, crop(regions, info)


def tumour_window(image_cdhw: np.ndarray, regions_rdhw: np.ndarray, shape_dhw) -> np.ndarray:
    """The (4, *shape_dhw) window centred on the whole tumour, zero-padded as needed.

    The runtime's localisation stage places its window with the same function.
    """
    start = tumour_window_start(regions_rdhw, tuple(shape_dhw))
    return extract_window(image_cdhw, start, tuple(shape_dhw))


def parity_inputs(
    rule: SizeRule,
    preprocessing: Preprocessing,
    patch_dhw: Sequence[int] | None = None,
    seed: int = 0,
    channels: Sequence[str] = MODALITIES,
) -> ParityInputs:
    """Realistic trace and check inputs for a model (see the module docstring), with the
    model's input ``channels`` in their order: the task's modalities, or a member's own
    (paper 003's single-modality networks)."""
    trace, check = parity_shapes(rule, patch_dhw)
    image_cdhw, regions_rdhw = synthetic_case(
        preprocessing, np.maximum(trace, check).tolist(), seed
    )
    image_cdhw = image_cdhw[[MODALITIES.index(c) for c in channels]]
    window = tumour_window(image_cdhw, regions_rdhw, check)
    check_ncdhw = np.stack([window, np.flip(window, (1, 2, 3))])
    trace_ncdhw = tumour_window(image_cdhw, regions_rdhw, trace)[None]
    return ParityInputs(
        np.ascontiguousarray(trace_ncdhw, dtype=np.float32),
        np.ascontiguousarray(check_ncdhw, dtype=np.float32),
    )


def eager_forward(model: torch.nn.Module) -> Forward:
    """The eager model as a numpy forward, without autograd."""

    def forward(image_ncdhw: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(image_ncdhw))).float().numpy()

    return forward


def onnx_session(path: Path):
    """An onnxruntime CPU ``InferenceSession`` of ``path`` that logs errors only."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the fp16 files' inserted-cast notices are expected
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session_forward(session) -> Forward:
    """An onnxruntime session (its first input and output) as a numpy forward."""
    name = session.get_inputs()[0].name

    def forward(image_ncdhw: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(image_ncdhw)})[0]

    return forward


def onnx_forward(path: Path) -> Forward:
    """The ONNX file ``path`` in an onnxruntime CPU session, as a numpy forward."""
    return session_forward(onnx_session(path))


def torchscript_forward(path: Path) -> Forward:
    """A TorchScript file loaded with ``torch.jit.load`` as a numpy forward."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated
        module = torch.jit.load(str(path), map_location="cpu").eval()
    return eager_forward(module)


def eager_reference(
    model: torch.nn.Module, image_ncdhw: np.ndarray, track_peak: bool = False
) -> tuple[np.ndarray, float | None]:
    """The eager model's output on ``image_ncdhw`` and, with ``track_peak``, the largest
    |value| any of its leaf modules outputs on the way (else None).

    A float16 graph overflows to inf where an activation exceeds 65504; onnxruntime's
    CPU provider computes in float32 behind inserted casts, so the CPU parity check
    alone would not see it.
    """
    peak = [0.0]

    def hook(_module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            low, high = torch.aminmax(output.detach())
            peak[0] = max(peak[0], -float(low), float(high))

    leaves = [m for m in model.modules() if not list(m.children())] if track_peak else []
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        out = eager_forward(model)(image_ncdhw)
    finally:
        for handle in handles:
            handle.remove()
    return out, peak[0] if track_peak else None


def check_parity(
    name: str,
    fmt: str,
    forward: Forward,
    inputs: ParityInputs,
    reference_nrdhw: np.ndarray,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Run ``forward`` on the check input and compare it with the eager reference.

    Returns:
        The manifest's parity record: max_abs_diff, tolerance, input_shape,
        export_shape and reference.

    Raises:
        ExportError: a wrong output shape, a non-finite output, or a difference above
            :data:`TOLERANCES` ``[precision]``; the message names ``name`` and ``fmt``.
    """
    tolerance = TOLERANCES[precision]
    shape = inputs.check_ncdhw.shape
    out = np.asarray(forward(inputs.check_ncdhw), dtype=np.float32)
    if out.shape != reference_nrdhw.shape:
        raise ExportError(
            f"{name} {fmt}: output shape {out.shape} for input {shape}, the eager model gives "
            f"{reference_nrdhw.shape}: the file does not accept other sizes than the traced "
            f"{inputs.trace_ncdhw.shape}"
        )
    diff = float(np.max(np.abs(out - reference_nrdhw))) if np.isfinite(out).all() else np.inf
    if not diff <= tolerance:
        raise ExportError(
            f"{name} {fmt}: max |probability difference| {diff:.3g} against the eager model "
            f"exceeds the tolerance {tolerance:g} on input {shape} (traced on "
            f"{inputs.trace_ncdhw.shape}); the exported file does not reproduce the model"
        )
    return {
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "input_shape": list(shape),
        "export_shape": list(inputs.trace_ncdhw.shape),
        "reference": REFERENCE,
    }
