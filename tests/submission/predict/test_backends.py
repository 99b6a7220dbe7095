"""Backends on a real tiny ONNX model in real ONNX Runtime and OpenVINO sessions (and
TorchScript where torch is installed), and how backend, precision and file are chosen."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from scipy.special import expit

from submission.predict import backends
from submission.predict.backends import (
    BackendError,
    file_format,
    open_model,
    resolve_backend,
    resolve_device,
    resolve_precision,
)
from tests.submission.predict.onnx_bundles import pointwise_onnx

WEIGHTS = np.array([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, 1.0, -1.0]])
BIAS = np.array([0.25, -0.5])
ONNX_CUDA = "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.fixture
def onnx_file(tmp_path):
    return pointwise_onnx(tmp_path / "m.onnx", WEIGHTS, BIAS)


def batch(shape=(2, 4, 6, 5, 4)):
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


def expected(batch_ncdhw):
    z = np.einsum("rc,ncdhw->nrdhw", WEIGHTS, batch_ncdhw) + BIAS[None, :, None, None, None]
    return expit(z)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_onnx_file_runs_in_a_real_session(onnx_file, backend):
    model = open_model(onnx_file, backend, "cpu", "fp32", threads=1)
    assert (model.backend, model.device, model.precision) == (backend, "cpu", "fp32")
    x = batch()
    out = model(x)
    assert out.dtype == np.float32 and out.shape == (2, 2, 6, 5, 4)
    np.testing.assert_allclose(out, expected(x), atol=1e-5)
    model.release()  # buffers freed, weights kept: it still runs, on another size too
    small = batch((1, 4, 3, 3, 3))
    np.testing.assert_allclose(model(small), expected(small), atol=1e-5)


def test_cpu_sessions_share_one_arena_and_stay_independent(tmp_path):
    first = open_model(pointwise_onnx(tmp_path / "a.onnx", WEIGHTS, BIAS), "onnx", "cpu", "fp32")
    second = open_model(
        pointwise_onnx(tmp_path / "b.onnx", WEIGHTS, BIAS + 1), "onnx", "cpu", "fp32"
    )
    x = batch()
    np.testing.assert_allclose(first(x), expected(x), atol=1e-5)
    assert not np.allclose(second(x), first(x))


def test_torchscript_file_runs_with_autocast(tmp_path):
    torch = pytest.importorskip("torch")
    conv = torch.nn.Conv3d(4, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(WEIGHTS, dtype=torch.float32).reshape(2, 4, 1, 1, 1))
        conv.bias.copy_(torch.tensor(BIAS, dtype=torch.float32))
    path = tmp_path / "m.torchscript.pt"
    torch.jit.script(torch.nn.Sequential(conv, torch.nn.Sigmoid())).save(str(path))
    x = batch()
    fp32 = open_model(path, "torchscript", "cpu", "fp32", threads=1)
    np.testing.assert_allclose(fp32(x), expected(x), atol=1e-5)
    bf16 = open_model(path, "torchscript", "cpu", "bf16")
    out = bf16(x)
    assert out.dtype == np.float32  # float32 out whatever runs inside
    np.testing.assert_allclose(out, expected(x), atol=2e-2)


@pytest.mark.parametrize(
    ("backend", "device", "precision", "message"),
    [
        ("tflite", "cpu", "fp32", "unknown backend 'tflite'; choose one of onnx, openvino"),
        ("openvino", "cuda", "fp32", "the openvino backend runs on the CPU only"),
        ("openvino", "cpu", "fp16", "openvino on the CPU runs fp32 or bf16, not fp16"),
    ],
)
def test_open_model_refuses_what_cannot_run(onnx_file, backend, device, precision, message):
    with pytest.raises(BackendError, match=message):
        open_model(onnx_file, backend, device, precision)


@pytest.mark.skipif(ONNX_CUDA, reason="this onnxruntime has the CUDA provider")
def test_onnx_on_cuda_without_the_provider_says_what_to_install(onnx_file):
    with pytest.raises(BackendError, match="install onnxruntime-gpu, or run with --device cpu"):
        open_model(onnx_file, "onnx", "cuda", "fp32")


@pytest.mark.parametrize(
    ("backend", "precision", "fmt"),
    [
        ("onnx", "fp32", "onnx"),
        ("onnx", "fp16", "onnx-fp16"),
        ("openvino", "fp32", "onnx"),
        ("openvino", "bf16", "onnx"),
        ("torchscript", "fp32", "torchscript"),
        ("torchscript", "fp16", "torchscript"),
    ],
)
def test_file_format_of_each_backend_and_precision(backend, precision, fmt):
    assert file_format(backend, precision) == fmt


def test_auto_backend_on_the_cpu_prefers_openvino_then_onnx_then_torchscript():
    assert resolve_backend("auto", "cpu", {"onnx", "torchscript"}) == "openvino"
    if backends.installed("torchscript"):
        assert resolve_backend("auto", "cpu", {"onnx-fp16", "torchscript"}) == "torchscript"
    # an explicit backend is taken as asked when the bundle has its files
    assert resolve_backend("onnx", "cpu", {"onnx"}) == "onnx"
    assert resolve_backend("openvino", "cuda", {"onnx"}) == "openvino"


@pytest.mark.parametrize(
    ("requested", "formats", "message"),
    [
        ("nope", {"onnx"}, "unknown backend 'nope'; choose auto or onnx, openvino, torchscript"),
        ("torchscript", {"onnx"}, r"--backend torchscript needs torchscript files; .*\['onnx'\]"),
        ("openvino", {"torchscript"}, "--backend openvino needs onnx files"),
        ("onnx", {"onnx-fp16"}, "--backend onnx needs onnx files"),
        ("auto", {"onnx-fp16"}, "no backend can run this bundle on the cpu"),
    ],
)
def test_resolve_backend_errors_name_the_files(requested, formats, message):
    with pytest.raises(BackendError, match=message):
        resolve_backend(requested, "cpu", formats)


@pytest.mark.parametrize(
    ("requested", "device", "backend", "formats", "chosen"),
    [
        ("auto", "cpu", "onnx", {"onnx", "onnx-fp16"}, "fp32"),
        ("auto", "cuda", "onnx", {"onnx", "onnx-fp16"}, "fp16"),
        ("auto", "cuda", "onnx", {"onnx"}, "fp32"),
        ("fp16", "cuda", "onnx", {"onnx", "onnx-fp16"}, "fp16"),
        ("fp16", "cuda", "torchscript", {"torchscript"}, "fp16"),
        ("bf16", "cpu", "openvino", {"onnx"}, "bf16"),
        ("fp32", "cuda", "onnx", {"onnx", "onnx-fp16"}, "fp32"),
    ],
)
def test_resolve_precision_choices(requested, device, backend, formats, chosen):
    assert resolve_precision(requested, device, backend, formats) == chosen


@pytest.mark.parametrize(
    ("requested", "device", "backend", "formats", "message"),
    [
        ("fp8", "cuda", "onnx", {"onnx"}, "unknown precision 'fp8'; choose auto or fp32"),
        ("fp16", "cpu", "onnx", {"onnx-fp16"}, "fp16 runs on a GPU only"),
        ("fp16", "cuda", "onnx", {"onnx"}, "no fp16 ONNX files: export it with --fp16"),
        ("bf16", "cuda", "onnx", {"onnx"}, "use --backend openvino or torchscript for bf16"),
    ],
)
def test_resolve_precision_errors(requested, device, backend, formats, message):
    with pytest.raises(BackendError, match=message):
        resolve_precision(requested, device, backend, formats)


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if backends.cuda_available() else "cpu")
    with pytest.raises(BackendError, match="unknown device 'tpu'; choose auto, cuda or cpu"):
        resolve_device("tpu")
    if not backends.cuda_available():
        with pytest.raises(BackendError, match="no CUDA device is present"):
            resolve_device("cuda")
