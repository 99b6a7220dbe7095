"""Device and mixed-precision resolution (torchrun itself is exercised in test_training)."""

from __future__ import annotations

import pytest
import torch

from train.distributed import cpu_has_native_bf16, resolve_amp, resolve_device, setup

CPU = torch.device("cpu")


def test_cpu_is_always_available_and_unknown_devices_are_refused():
    assert resolve_device("cpu") == CPU  # --device cpu even where there is a GPU
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda, got 'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_without_a_gpu_auto_is_the_cpu_and_cuda_says_so(monkeypatch):
    assert resolve_device("auto") == CPU
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    monkeypatch.delenv("WORLD_SIZE", raising=False)  # not launched by torchrun
    env = setup("auto", "off")
    assert (env.device, env.rank, env.world_size, env.amp_dtype) == (CPU, 0, 1, None)
    assert env.is_main and not env.distributed
    assert setup("auto", "bf16").amp_dtype is torch.bfloat16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_with_a_gpu_auto_is_the_gpu():
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")


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
