"""Pieces every training loop of the zoo shares: Accelerate set-up with bf16 where it pays,
a warm-up + cosine learning-rate schedule, atomic checkpoints and a CSV log.

Used by ``diffusion/train.py`` (DDPM) and ``models/clip_training.py`` (contrastive CLIP).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Callable

import torch


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 arithmetic (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def make_accelerator(bf16: bool):
    """An ``accelerate.Accelerator`` on the GPU if there is one, else the CPU; bf16 autocast only
    where the hardware supports it (otherwise fp32)."""
    from accelerate import Accelerator

    on_gpu = torch.cuda.is_available()
    use_bf16 = bf16 and (torch.cuda.is_bf16_supported() if on_gpu else cpu_supports_bf16())
    return Accelerator(mixed_precision="bf16" if use_bf16 else "no", cpu=not on_gpu)


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over ``warmup_steps``, then a cosine from 1 to ``min_ratio``
    at ``total_steps`` (for ``torch.optim.lr_scheduler.LambdaLR``)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def atomic_save(state: dict, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a killed run never leaves half a checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


class CSVLog:
    """Append rows to ``path``; writes ``header`` first if the file is new (or ``fresh``)."""

    def __init__(self, path: Path, header: list[str], fresh: bool) -> None:
        if fresh and path.exists():
            path.unlink()
        new = not path.exists()
        self.handle = open(path, "a", newline="")
        self.writer = csv.writer(self.handle)
        if new:
            self.writer.writerow(header)

    def write(self, row: list) -> None:
        self.writer.writerow(row)
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
