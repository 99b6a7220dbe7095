"""Write a model as ONNX, float16 ONNX and TorchScript files, each checked for parity.

The exported network is :class:`ProbabilityModel`: the eval-mode model without its
training-only branches (SegResNet's projection, paper 004 section 3.1), followed by the
sigmoid, so every file maps ``image`` (N, 4, D, H, W) float32 to ``probabilities``
(N, R, D, H, W) float32.

ONNX comes from the legacy TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False, dynamic_axes=...)``, opset 17 by default), whose DeprecationWarning is
silenced around the call only. It is the better exporter for these networks: measured on
a SegResNet-16 it exports in 0.9 s against 17.7 s with ``dynamo=True``, and onnxruntime
runs its graph about 30 % faster (InstanceNormalization stays one op; 6.5 s against
10.2 s on 1 x 4 x 160 x 208 x 160). That InstanceNormalization op is, however, not
accurate enough in onnxruntime on BraTS-sized volumes (3e-3 off in probability), so the
fp32 file is exported from :func:`export.norms.with_exact_norms` of the model, whose
norms are a few plain ops that onnxruntime computes to 2e-6, as fast (see
:mod:`export.norms`). The batch axis and every spatial axis the model does not fix are
dynamic (effunet's slice axis stays fixed). Weights are embedded in the file: a bundle
file is one file with one sha256.

float16 ONNX (``--fp16``): the model with its native norms, exported the same way, then
:func:`onnxruntime.transformers.float16.convert_float_to_float16` (shipped inside
onnxruntime) with ``keep_io_types=True``, so input and output stay float32 behind Cast
nodes. onnxruntime's CPU provider has no float16 kernels for most of these ops (Conv,
InstanceNormalization, Resize); its session inserts Casts around them and runs them in
float32, so every op executes on the CPU and no op block list is needed, and the CPU
parity check measures the float16 rounding of the weights and of the tensors between
casts. Float16 arithmetic on a GPU can also overflow (above 65504), which the CPU never
shows: :func:`export_files` refuses float16 when an eager activation on the check input
exceeds half that range.

TorchScript: ``torch.jit.trace`` of the model with its native norms (torch's kernels are
accurate), saved with ``torch.jit.save``.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from export.errors import ExportError
from export.norms import with_exact_norms
from export.parity import (
    FLOAT16_MAX,
    Forward,
    ParityInputs,
    check_parity,
    eager_reference,
    onnx_forward,
    torchscript_forward,
)
from submission.predict.bundle_files import sha256_file
from submission.predict.members import ModelFile
from submission.predict.sliding_window import SizeRule

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 17
#: The legacy exporter's range here: 13 has every op these models need, 20 is its maximum.
OPSET_RANGE = (13, 20)
INPUT_NAME, OUTPUT_NAME = "image", "probabilities"
SUFFIXES = {"onnx": ".onnx", "onnx-fp16": ".fp16.onnx", "torchscript": ".torchscript.pt"}


@dataclass(frozen=True)
class ExportSettings:
    """What to write per member.

    Attributes:
        formats: subset of :data:`EXPORT_FORMATS`, in the order written.
        opset: ONNX opset of the legacy exporter.
        fp16: also write a float16 ONNX file.
    """

    formats: tuple[str, ...] = EXPORT_FORMATS
    opset: int = DEFAULT_OPSET
    fp16: bool = False

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in EXPORT_FORMATS]
        if bad or not self.formats:
            raise ValueError(
                f"formats must be from {', '.join(EXPORT_FORMATS)}, got {list(self.formats)}"
            )
        if not OPSET_RANGE[0] <= self.opset <= OPSET_RANGE[1]:
            raise ValueError(
                f"opset {self.opset} is outside {OPSET_RANGE[0]}..{OPSET_RANGE[1]}, the range "
                "the legacy ONNX exporter supports for these models"
            )

    @property
    def file_keys(self) -> tuple[str, ...]:
        """Manifest file keys written per member, in order (``onnx-fp16`` last)."""
        return (*self.formats, "onnx-fp16") if self.fp16 else self.formats


class ProbabilityModel(nn.Module):
    """``sigmoid(net(image))``: the network as exported, logits turned into probabilities."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Map (N, C, D, H, W) float32 images to (N, R, D, H, W) float32 probabilities."""
        return torch.sigmoid(self.net(image).float())


def inference_model(net: nn.Module) -> ProbabilityModel:
    """An eval-mode, gradient-free :class:`ProbabilityModel` of ``net``, inference part only.

    Training-only branches are dropped (``without_projection`` where the model has it).
    """
    if hasattr(net, "without_projection"):
        net = net.without_projection()
    model = ProbabilityModel(net).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def _onnx_proto(model: nn.Module, example_ncdhw: torch.Tensor, rule: SizeRule, opset: int):
    """Export ``model`` with the legacy exporter into memory; returns the ModelProto."""
    import onnx

    axes = {0: "batch"} | {2 + i: "DHW"[i] for i, fixed in enumerate(rule.fixed) if fixed is None}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter's deprecation notice, and its shape-inference and
        # "instance_norm with train=True" (InstanceNorm without running stats) notes.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the parity check decides
        torch.onnx.export(
            model,
            (example_ncdhw,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
        )
    return onnx.load_from_string(buffer.getvalue())


def _save(proto, path: Path) -> None:
    """Check and write one self-contained ONNX file (weights embedded, under 2 GB)."""
    import onnx

    if proto.ByteSize() >= 2**31:
        raise ValueError(f"{path.name} would exceed protobuf's 2 GB limit; weights must be inline")
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def export_onnx(
    model: nn.Module,
    example_ncdhw: torch.Tensor,
    path: Path,
    rule: SizeRule | None = None,
    opset: int = DEFAULT_OPSET,
) -> None:
    """Export ``model`` (its norms made exact) to one ONNX file with dynamic axes.

    Args:
        rule: the model's size rule; its fixed axes stay fixed (default: none fixed).

    Raises:
        ValueError: the file would not fit in one protobuf (2 GB).
    """
    proto = _onnx_proto(with_exact_norms(model), example_ncdhw, rule or SizeRule(), opset)
    _save(proto, path)


def export_onnx_fp16(
    model: nn.Module,
    example_ncdhw: torch.Tensor,
    path: Path,
    rule: SizeRule | None = None,
    opset: int = DEFAULT_OPSET,
) -> None:
    """Export ``model`` with its native norms, converted to float16 with float32 I/O.

    Native norms (InstanceNormalization) rather than :func:`with_exact_norms`: the
    exact form squares deviations, which can overflow in float16 on a GPU, while
    onnxruntime runs InstanceNormalization's statistics in float32.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    proto = _onnx_proto(model, example_ncdhw, rule or SizeRule(), opset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "values truncated to fp16 range"
        half = convert_float_to_float16(proto, keep_io_types=True)
    # The converter appends the input Cast after its consumers; the ONNX spec (and
    # onnx.checker) wants nodes in topological order.
    OnnxModel.graph_topological_sort(half.graph, is_deterministic=True)
    _save(half, path)


def export_torchscript(model: nn.Module, example_ncdhw: torch.Tensor, path: Path) -> None:
    """Trace ``model`` on ``example_ncdhw`` and save it with ``torch.jit.save``."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (example_ncdhw,), check_trace=False)
    torch.jit.save(traced, str(path))


def export_files(
    model: ProbabilityModel,
    rule: SizeRule,
    inputs: ParityInputs,
    bundle_dir: Path,
    stem: str,
    name: str,
    settings: ExportSettings | None = None,
) -> dict[str, ModelFile]:
    """Write ``model`` in every format of ``settings`` and check each file's parity.

    Args:
        model: the :class:`ProbabilityModel` (eval mode) to export.
        rule: its size rule; fixed axes stay fixed in the ONNX graph.
        inputs: trace and check inputs (:func:`export.parity.parity_inputs`).
        bundle_dir: the bundle folder; files go to ``bundle_dir/stem<suffix>``.
        stem: relative path without suffix, e.g. ``seg/fold0``.
        name: the member's name in messages, e.g. ``seg/fold0``.
        settings: formats, opset and fp16 (default :class:`ExportSettings`).

    Returns:
        :class:`ModelFile` per format key (``onnx``, ``onnx-fp16``, ``torchscript``).

    Raises:
        ExportError: a file cannot be written or loaded, or fails its parity check, or
            (``fp16``) an eager activation exceeds half of float16's range.
    """
    settings = settings or ExportSettings()
    reference, peak = eager_reference(model, inputs.check_ncdhw, track_peak=settings.fp16)
    if peak is not None and peak > FLOAT16_MAX / 2:
        raise ExportError(
            f"{name} onnx-fp16: an activation reaches {peak:.3g} on the check input, more "
            f"than half of float16's maximum {FLOAT16_MAX:g}: export without --fp16"
        )
    (bundle_dir / stem).parent.mkdir(parents=True, exist_ok=True)
    files = {}
    for key in settings.file_keys:
        start = time.perf_counter()
        rel = f"{stem}{SUFFIXES[key]}"
        precision = "fp16" if key == "onnx-fp16" else "fp32"
        with export_failure(name, key):
            forward = _write(key, model, rule, inputs, bundle_dir, stem, settings)
        parity = check_parity(name, key, forward, inputs, reference, precision)
        files[key] = ModelFile(rel, sha256_file(bundle_dir / rel), precision, parity)
        log_parity(name, key, rel, parity, start)
    return files


@contextmanager
def export_failure(name: str, key: str) -> Iterator[None]:
    """Any exception while writing or loading back ``name``'s ``key`` file (torch, onnx
    and onnxruntime raise many types) as an :class:`ExportError` naming both."""
    try:
        yield
    except Exception as exc:
        log.debug("export of %s %s failed", name, key, exc_info=True)
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ExportError(f"{name} {key}: export failed: {type(exc).__name__}: {first}") from exc


def write_onnx(
    name: str, model: nn.Module, inputs: ParityInputs, path: Path, rule: SizeRule, opset: int
) -> Forward:
    """Export ``model`` to ONNX at ``path`` (its folder made) and load the file back: its
    forward (what an importer parity-checks); failures as :func:`export_failure`'s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with export_failure(name, "onnx"):
        export_onnx(model, torch.from_numpy(inputs.trace_ncdhw), path, rule, opset)
        return onnx_forward(path)


def log_parity(name: str, key: str, rel: str, parity: dict, start: float) -> None:
    """The log line of one checked file: its parity, the check's input and the seconds."""
    log.info(
        "%s %-11s %s  parity %.2e <= %.0e at %s  %.1f s",
        name,
        key,
        rel,
        parity["max_abs_diff"],
        parity["tolerance"],
        "x".join(map(str, parity["input_shape"])),
        time.perf_counter() - start,
    )


def _write(
    key: str,
    model: nn.Module,
    rule: SizeRule,
    inputs: ParityInputs,
    bundle_dir: Path,
    stem: str,
    settings: ExportSettings,
) -> Forward:
    """Write the ``key`` file of ``model`` and load it back as a forward."""
    path = bundle_dir / f"{stem}{SUFFIXES[key]}"
    example = torch.from_numpy(inputs.trace_ncdhw)
    if key == "onnx":
        export_onnx(model, example, path, rule, settings.opset)
        return onnx_forward(path)
    if key == "onnx-fp16":
        export_onnx_fp16(model, example, path, rule, settings.opset)
        return onnx_forward(path)
    export_torchscript(model, example, path)
    return torchscript_forward(path)
