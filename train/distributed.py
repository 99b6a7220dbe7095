"""Device, mixed precision and torchrun process groups.

``torchrun --standalone --nproc_per_node N --no-python bratskit train ...`` sets RANK,
WORLD_SIZE and LOCAL_RANK; :func:`setup` then joins the process group (NCCL on GPUs, gloo
on CPUs), pins each rank to its GPU, and only rank 0 logs, validates and writes files.
Without those variables training is a single process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from train.config import ConfigError

log = logging.getLogger(__name__)
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Env:
    """Where this process trains and what it is responsible for."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    amp_dtype: torch.dtype | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: logs, validates, writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; ``cuda`` without one is an error."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked but no CUDA GPU is visible; use --device cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for a recipe's ``amp`` on this device (None: full fp32).

    ``auto`` is bf16 on GPUs that support it (Ampere and later), fp16 on older GPUs; on a
    CPU it is bf16 where the CPU has native bf16 instructions (AVX512-BF16 or AMX, as
    oneDNN reports them), which made a training step of the ``tiny`` recipe 1.4-1.7x
    faster on this project's 2-core AMD EPYC, and off elsewhere, where emulated bf16 is
    slower than fp32.
    """
    if mode == "off":
        return None
    if mode == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if mode == "fp16" and device.type != "cuda":
        raise ValueError("fp16 mixed precision needs a GPU; use amp: bf16 or off on CPU")
    return torch.bfloat16 if mode == "bf16" else torch.float16


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def setup(device: str, amp: str) -> Env:
    """Join the torchrun process group when launched by torchrun; resolve device and AMP."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        dev = resolve_device(device)
        return Env(dev, amp_dtype=resolve_amp(amp, dev))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if rank == 0:
        log.info("distributed training: %d processes, backend %s", world, dist.get_backend())
    return Env(dev, rank, world, resolve_amp(amp, dev))


def split_batch(batch_size: int, world_size: int, accumulate: int = 1) -> int:
    """Per-process micro-batch of a global batch: ``batch_size`` samples per optimiser step,
    shared by ``world_size`` processes, each accumulating ``accumulate`` micro-batches.

    The recipe's ``batch_size`` is the papers' batch, the one their learning rate goes
    with (002 §3.1: "a batch size of 4" on 4 GPUs), so it must not grow with the number
    of processes: 4 on 4 processes is 1 each; 4 on 1 process with ``accumulate: 4`` is 1
    at a time, 4 per step.

    Raises:
        ConfigError: ``world_size x accumulate`` does not divide ``batch_size``; the
            message names the products that do.
    """
    share, rest = divmod(batch_size, world_size * accumulate)
    if share < 1 or rest:
        divisors = [str(d) for d in range(1, batch_size + 1) if batch_size % d == 0]
        raise ConfigError(
            f"batch_size {batch_size} is the global batch per optimiser step; "
            f"{world_size} process(es) x accumulate {accumulate} does not divide it. Use "
            f"processes x accumulate = {', '.join(divisors)}, or a --batch-size that is a "
            f"multiple of {world_size * accumulate} (the recipe's learning rate goes with "
            "its batch)"
        )
    return share


def broadcast(value, env: Env):
    """Rank 0's ``value`` on every rank (identity in a single process)."""
    if not env.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: Env) -> None:
    """Wait for every rank."""
    if env.distributed:
        dist.barrier()


def teardown(env: Env) -> None:
    """Leave the process group."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
