"""Exact instance/group norms: same values as torch, accurate in onnxruntime on BraTS volumes."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from export.norms import ExactGroupNorm, ExactInstanceNorm, with_exact_norms
from export.parity import synthetic_case, tumour_window
from submission.predict.preprocess import Preprocessing


@pytest.mark.parametrize(
    ("norm", "shape"),
    [
        (nn.InstanceNorm3d(6, affine=True), (2, 6, 8, 12, 10)),
        (nn.InstanceNorm3d(6), (1, 6, 8, 8, 8)),
        (nn.GroupNorm(3, 6), (2, 6, 8, 12, 10)),
        (nn.GroupNorm(2, 6), (2, 6, 16, 12)),  # effunet's 2-D decoder
    ],
)
def test_exact_norms_compute_what_torch_computes(norm, shape):
    torch.manual_seed(0)
    if norm.affine:
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
    model = nn.Sequential(norm).eval()
    exact = with_exact_norms(model)
    assert isinstance(exact[0], (ExactInstanceNorm, ExactGroupNorm))
    assert model[0] is norm  # the original is untouched
    x = torch.randn(shape) * 3 + 1
    with torch.no_grad():
        torch.testing.assert_close(exact(x), model(x), atol=1e-5, rtol=1e-5)


def _onnx_session(model: nn.Module, x: torch.Tensor) -> ort.InferenceSession:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=["x"])
    return ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])


def test_exact_norm_graph_is_accurate_where_instance_normalization_is_not():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(4, 8, 3, padding=1), nn.InstanceNorm3d(8, affine=True)).eval()
    image, regions = synthetic_case(Preprocessing(divisor=8), (96, 96, 64))
    x = torch.from_numpy(tumour_window(image, regions, (96, 96, 64))[None])
    with torch.no_grad():
        reference = model.double()(x.double()).float().numpy()
        model.float()
    native = _onnx_session(model, x).run(None, {"x": x.numpy()})[0]
    exact = _onnx_session(with_exact_norms(model), x).run(None, {"x": x.numpy()})[0]
    assert np.abs(exact - reference).max() < 2e-5  # as close as torch float32
    # Why export/norms.py exists; if this fails, onnxruntime's kernel got accurate.
    assert np.abs(native - reference).max() > 1e-4
