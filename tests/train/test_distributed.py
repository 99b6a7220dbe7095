"""Device and mixed-precision resolution (torchrun itself is exercised in test_training)."""

from __future__ import annotations

import pytest
import torch

from train.distributed import cpu_has_native_bf16, resolve_amp, resolve_device

CPU = torch.device("cpu")


def test_auto_device_is_the_gpu_only_when_there_is_one():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_cuda_without_a_gpu_says_so():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_mixed_precision_on_the_cpu():
    assert resolve_amp("off", CPU) is None
    assert resolve_amp("bf16", CPU) is torch.bfloat16
    assert resolve_amp("auto", CPU) is (torch.bfloat16 if cpu_has_native_bf16() else None)
    with pytest.raises(ValueError, match="fp16 mixed precision needs a GPU"):
        resolve_amp("fp16", CPU)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mixed_precision_on_the_gpu():
    gpu = torch.device("cuda")
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert resolve_amp("auto", gpu) is expected
    assert resolve_amp("fp16", gpu) is torch.float16
