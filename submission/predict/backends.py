"""Execution backends: one exported member file -> a forward function
(:data:`submission.predict.sliding_window.Forward`).

    ``onnx``         ONNX Runtime: the CUDA execution provider with a GPU, else the CPU one.
                     On the CPU every session allocates from one process-wide arena
                     (``session.use_env_allocators``), so five members' sessions hold the
                     activation memory of one, not five.
    ``openvino``     OpenVINO on the CPU, reading the same ONNX files. On this project's
                     2-core benchmark it runs a SegResNet-16 about twice as fast as ONNX
                     Runtime (im2col 3-D convolutions there, oneDNN here) and is what
                     ``auto`` picks on a CPU when it is installed; intermediate buffers
                     are released after each case.
    ``torchscript``  torch.jit.load of the TorchScript file, on CUDA or CPU, when torch is
                     installed (it never is in the default image).

Precision: ``fp32``; ``fp16`` on a GPU (the bundle's ``onnx-fp16`` file for ONNX Runtime,
autocast for TorchScript); ``bf16`` (OpenVINO's inference precision, or TorchScript
autocast). Inputs and outputs are float32 whatever runs inside.

A GPU out-of-memory surfaces as :class:`DeviceOutOfMemory`, so the engine can fall back
to a sliding window and then to the CPU.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from submission.exit_codes import UnavailableError
from submission.predict.bundle import BundleError

log = logging.getLogger(__name__)

BACKENDS = ("onnx", "openvino", "torchscript")
DEVICES = ("cuda", "cpu")
PRECISIONS = ("fp32", "fp16", "bf16")
#: The Python package each backend imports.
_PACKAGES = {"onnx": "onnxruntime", "openvino": "openvino", "torchscript": "torch"}
#: Messages of ONNX Runtime / CUDA / cuDNN allocation failures.
_OOM_MARKERS = ("out of memory", "failed to allocate", "cudnn_status_alloc_failed", "bad_alloc")


class BackendError(RuntimeError, UnavailableError):
    """A backend that cannot run here (not installed, no GPU, no file of its format)."""


class DeviceOutOfMemory(RuntimeError):
    """The device ran out of memory during one forward call."""


class Model(Protocol):
    """A loaded member file: ``model(batch_ncdhw) -> outputs_nrdhw`` (float32)."""

    backend: str
    device: str
    precision: str

    def __call__(self, batch_ncdhw: np.ndarray) -> np.ndarray: ...

    def release(self) -> None:
        """Free intermediate buffers between cases (the weights stay loaded)."""


def installed(backend: str) -> bool:
    """Whether the Python package a backend needs is importable."""
    module = _PACKAGES[backend]
    return importlib.util.find_spec(module) is not None


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when a CUDA driver with at least one device is present (no torch needed)."""
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        return (
            lib.cuInit(0) == 0
            and lib.cuDeviceGetCount(ctypes.byref(count)) == 0
            and count.value > 0
        )
    return False


@functools.lru_cache(maxsize=1)
def _preload_cuda_libraries(ort) -> None:
    """Load CUDA and cuDNN from the ``nvidia-*`` pip packages (``onnxruntime-gpu[cuda,cudnn]``,
    what the image installs) before the CUDA provider needs them; without this the provider
    finds them only on ``LD_LIBRARY_PATH``. A no-op for onnxruntime builds without
    ``preload_dlls`` (before 1.21) or where the libraries come from the system."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload(directory="")
    except Exception as exc:  # the provider may still find system libraries
        log.warning("could not preload CUDA/cuDNN from the nvidia packages: %s", exc)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or any(m in str(exc).lower() for m in _OOM_MARKERS)


class OrtModel:
    """An ONNX Runtime session for one ONNX file."""

    backend = "onnx"

    def __init__(self, path: Path, device: str, precision: str, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError(
                    "this onnxruntime has no CUDA execution provider: install onnxruntime-gpu, "
                    "or run with --device cpu"
                )
            _preload_cuda_libraries(ort)
            providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})]
        else:
            _register_shared_cpu_arena(ort)
            options.add_session_config_entry("session.use_env_allocators", "1")
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        if device == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise BackendError(f"ONNX Runtime could not start CUDA for {path}")
        self.input_name = self.session.get_inputs()[0].name
        self.device, self.precision = device, precision

    def __call__(self, batch_ncdhw: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch_ncdhw, dtype=np.float32)
        try:
            return self.session.run(None, {self.input_name: x})[0]
        except Exception as exc:
            if _is_oom(exc):
                raise DeviceOutOfMemory(f"onnxruntime on {self.device}: {exc}") from exc
            raise

    def release(self) -> None:
        """The shared arena keeps its memory for the next case (ONNX Runtime's design)."""


@functools.lru_cache(maxsize=1)
def _register_shared_cpu_arena(ort) -> None:
    info = ort.OrtMemoryInfo(
        "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
    )
    ort.create_and_register_allocator(info, None)


class OpenVinoModel:
    """An OpenVINO compiled model of one ONNX file (CPU)."""

    backend = "openvino"

    def __init__(self, path: Path, device: str, precision: str, threads: int | None) -> None:
        if device != "cpu":
            raise BackendError("the openvino backend runs on the CPU only; use --backend onnx")
        if precision == "fp16":
            raise BackendError("openvino on the CPU runs fp32 or bf16, not fp16")
        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = _openvino_core().compile_model(str(path), "CPU", config)
        self.device, self.precision = device, precision

    def __call__(self, batch_ncdhw: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch_ncdhw, dtype=np.float32)
        try:
            return np.asarray(self.compiled(x)[0], dtype=np.float32)
        except Exception as exc:
            if _is_oom(exc):
                raise DeviceOutOfMemory(f"openvino on the CPU: {exc}") from exc
            raise

    def release(self) -> None:
        self.compiled.release_memory()


@functools.lru_cache(maxsize=1)
def _openvino_core():
    import openvino

    return openvino.Core()


class TorchScriptModel:
    """A TorchScript module on CUDA or the CPU, with autocast for fp16/bf16."""

    backend = "torchscript"

    def __init__(self, path: Path, device: str, precision: str, threads: int | None) -> None:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise BackendError("torch sees no CUDA device; run with --device cpu")
        if threads and device == "cpu":
            torch.set_num_threads(int(threads))
        self.torch = torch
        self.module = torch.jit.load(str(path), map_location=device).eval()
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self.device, self.precision = device, precision

    def __call__(self, batch_ncdhw: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch_ncdhw, dtype=np.float32)).to(self.device)
        try:
            with (
                torch.inference_mode(),
                torch.autocast(
                    self.device, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
                ),
            ):
                return self.module(x).float().cpu().numpy()
        except torch.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise DeviceOutOfMemory(f"torch on {self.device}: {exc}") from exc

    def release(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.empty_cache()


_CLASSES = {"onnx": OrtModel, "openvino": OpenVinoModel, "torchscript": TorchScriptModel}


def open_model(
    path: Path, backend: str, device: str, precision: str, threads: int | None = None
) -> Model:
    """Load one member file with ``backend`` on ``device`` at ``precision``.

    Raises:
        BackendError: the backend is not installed or cannot use the device (or cannot
            load the file on a GPU, so that ``--device auto`` tries the CPU).
        BundleError: the backend cannot load the file on the CPU (a file that matches its
            sha256 but is no model: truncated or garbage when exported).
    """
    if backend not in _CLASSES:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not installed(backend):
        package = _PACKAGES[backend]
        raise BackendError(
            f"the {backend} backend needs the {package} package, which is not installed"
        )
    try:
        return _CLASSES[backend](Path(path), device, precision, threads)
    except (BackendError, DeviceOutOfMemory):
        raise
    except Exception as exc:  # each backend raises its own types for a file it cannot read
        reason = _reason(exc)
        if device != "cpu":
            raise BackendError(f"{backend} cannot load {path} on {device}: {reason}") from exc
        raise BundleError(
            f"{backend} cannot load {path}: {reason}; the file matches its sha256, so it was "
            "exported broken: re-export the bundle"
        ) from exc


def _reason(exc: BaseException) -> str:
    """The informative line of a backend's error (OpenVINO's start with a C++ trace)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Exception from")] or lines
    return lines[0][:300] if lines else type(exc).__name__


def file_format(backend: str, precision: str) -> str:
    """Which of a member's files a backend loads at a precision: the one rule tying
    backends to the bundle's file formats (OpenVINO reads the fp32 ONNX file)."""
    if backend == "torchscript":
        return "torchscript"
    return "onnx-fp16" if backend == "onnx" and precision == "fp16" else "onnx"


def resolve_device(requested: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``; others are checked."""
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested not in DEVICES:
        raise BackendError(f"unknown device {requested!r}; choose auto, cuda or cpu")
    if requested == "cuda" and not cuda_available():
        raise BackendError("--device cuda was asked but no CUDA device is present")
    return requested


def resolve_backend(requested: str, device: str, formats: set[str]) -> str:
    """The backend to use for a bundle whose members all have files of ``formats``.

    ``auto``: on a GPU ONNX Runtime when it has the CUDA provider, else TorchScript; on
    the CPU OpenVINO, then ONNX Runtime, then TorchScript, whichever is installed and has
    files in the bundle.
    """
    if requested != "auto":
        if requested not in BACKENDS:
            raise BackendError(
                f"unknown backend {requested!r}; choose auto or {', '.join(BACKENDS)}"
            )
        needed = file_format(requested, "fp32")
        if needed not in formats:
            raise BackendError(
                f"--backend {requested} needs {needed} files; the bundle has {sorted(formats)}"
            )
        return requested
    order = ("onnx", "torchscript") if device == "cuda" else ("openvino", "onnx", "torchscript")
    for backend in order:
        has_file = file_format(backend, "fp32") in formats
        if has_file and installed(backend) and (device == "cpu" or _has_cuda(backend)):
            return backend
    raise BackendError(
        f"no backend can run this bundle on the {device}: it has {sorted(formats)} files; "
        "install onnxruntime (or onnxruntime-gpu), openvino or torch"
    )


def _has_cuda(backend: str) -> bool:
    if backend == "onnx":
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()
    if backend == "torchscript":
        import torch

        return torch.cuda.is_available()
    return False


def resolve_precision(requested: str, device: str, backend: str, formats: set[str]) -> str:
    """``auto`` -> fp16 on a GPU when the bundle was exported with ``--fp16`` (it has fp16
    ONNX files), else fp32."""
    if requested == "auto":
        return "fp16" if device == "cuda" and file_format("onnx", "fp16") in formats else "fp32"
    if requested not in PRECISIONS:
        raise BackendError(
            f"unknown precision {requested!r}; choose auto or {', '.join(PRECISIONS)}"
        )
    if requested == "fp16" and device == "cpu":
        raise BackendError("fp16 runs on a GPU only; use fp32 or bf16 on the CPU")
    if requested == "fp16" and file_format(backend, requested) not in formats:
        raise BackendError("this bundle has no fp16 ONNX files: export it with --fp16")
    if requested == "bf16" and backend == "onnx":
        raise BackendError(
            "ONNX Runtime runs fp32 or fp16; use --backend openvino or torchscript for bf16"
        )
    return requested
