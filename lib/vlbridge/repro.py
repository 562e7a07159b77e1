"""Determinism: seeds, threads, deterministic kernels, named random generators."""
from __future__ import annotations

import os
import random
import zlib

import numpy as np
import torch


def setup(seed: int = 0, threads: int = 2, device: str = "cpu") -> torch.device:
    """Seed every generator, fix the thread count, and ask torch for deterministic kernels in fp32
    (TF32 off). Returns the torch device to use."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was asked for, but torch sees no CUDA device here; use device: cpu")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed for deterministic cuBLAS
    return torch.device(device)


def generator(seed: int, name: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator for one purpose ('data-order', 'sampling', ...): each purpose gets its own
    stream, so adding randomness in one place does not shift another."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63))
    return g


def numpy_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def progress_enabled() -> bool:
    """Progress bars for people at a terminal or in JupyterLab; none in headless runs or CI
    (the runner sets VLBRIDGE_PROGRESS=0 for the kernels it starts)."""
    if os.environ.get("CI"):
        return False
    return os.environ.get("VLBRIDGE_PROGRESS", "1") != "0"
