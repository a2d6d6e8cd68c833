"""Pieces every training loop of the zoo shares: Accelerate set-up with bf16 where it pays,
a warm-up + cosine learning-rate schedule, atomic checkpoints and a CSV log.

Used by ``diffusion/train.py`` (DDPM) and ``models/clip_training.py`` (contrastive CLIP).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm


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
    from accelerate.state import AcceleratorState

    on_gpu = torch.cuda.is_available()
    use_bf16 = bf16 and (torch.cuda.is_bf16_supported() if on_gpu else cpu_supports_bf16())
    mixed_precision = "bf16" if use_bf16 else "no"
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed_precision) != mixed_precision:
        # Accelerate keeps one precision per process and refuses another; our trainings run one
        # after the other (a notebook may train in fp32 after a bf16 run), so start afresh.
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(mixed_precision=mixed_precision, cpu=not on_gpu)


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over ``warmup_steps``, then a cosine from 1 to ``min_ratio``
    at ``total_steps`` (for ``torch.optim.lr_scheduler.LambdaLR``)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def write_json_atomic(data: dict, path: Path) -> None:
    """Write ``data`` as indented, key-sorted JSON through a temporary file and a rename, so a
    killed run never leaves a half-written results file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


PART_BYTES = 90 * 2**20
"""Checkpoints larger than this are written in parts (GitHub refuses files over 100 MB, and a
resume state is committed when a recipe outlasts a session)."""


def _parts_index(path: Path) -> Path:
    return path.with_name(path.name + ".parts.json")


def atomic_save(state: dict, path: Path, part_bytes: int = PART_BYTES) -> None:
    """``torch.save`` through temporary files and renames, so a killed run never leaves half a
    checkpoint. A state larger than ``part_bytes`` goes to numbered part files named by its hash,
    listed (with the hash) in ``<path>.parts.json``, which is replaced last; older parts are then
    deleted. :func:`load_state` reads either form."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    index, folder = _parts_index(path), path.parent
    old_parts = json.loads(index.read_text())["parts"] if index.is_file() else []
    if len(data) <= part_bytes:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        index.unlink(missing_ok=True)
        parts: list[str] = []
    else:
        digest = hashlib.sha256(data).hexdigest()
        parts = [f"{path.name}.{digest[:12]}.{k:03d}" for k in range(math.ceil(len(data) / part_bytes))]
        for k, name in enumerate(parts):
            tmp = folder / (name + ".tmp")
            tmp.write_bytes(data[k * part_bytes:(k + 1) * part_bytes])
            os.replace(tmp, folder / name)
        write_json_atomic({"parts": parts, "sha256": digest, "bytes": len(data)}, index)
        path.unlink(missing_ok=True)
    for name in set(old_parts) - set(parts):
        (folder / name).unlink(missing_ok=True)


def state_exists(path: Path) -> bool:
    """True if :func:`atomic_save` left a state at ``path`` (whole or in parts)."""
    return path.is_file() or _parts_index(path).is_file()


def load_state(path: Path) -> dict:
    """Read a state written by :func:`atomic_save` (whole, or joined from its parts after checking
    their hash) onto the CPU."""
    index = _parts_index(path)
    if path.is_file() or not index.is_file():
        return torch.load(path, map_location="cpu", weights_only=False)
    meta = json.loads(index.read_text())
    data = b"".join((path.parent / name).read_bytes() for name in meta["parts"])
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ValueError(f"the parts of {path} listed in {index} do not match their sha256; the checkpoint is damaged")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


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


def read_checkpoint(workdir: str | Path) -> dict:
    """The training state a run left in ``workdir/checkpoint.pt`` (model, optimiser, step, RNG, ...)."""
    path = Path(workdir) / "checkpoint.pt"
    if not state_exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}; train first (python -m fashionlab.zoo train NAME)")
    return load_state(path)


def load_checkpoint(path: Path, config: dict, model: torch.nn.Module, optimizer, schedule) -> dict:
    """Load ``path`` into model, optimiser and schedule after checking it was written with ``config``;
    returns the whole state (for the loop's own extras: RNG states, EMA, ...)."""
    if not state_exists(path):
        raise FileNotFoundError(f"resume=True but there is no checkpoint at {path}")
    state = load_state(path)
    if state["config"] != config:
        raise ValueError(f"checkpoint {path} was written with a different config: {state['config']}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["lr_schedule"])
    return state


@dataclass
class FitResult:
    steps: int
    """Steps done in all (including earlier, resumed runs)."""
    minutes: float
    """Wall-clock minutes in all."""
    last_loss: float
    """Mean loss of the last logged window (nan if nothing was logged)."""


def fit(*, model, optimizer, schedule, accelerator, compute_loss: Callable[[], torch.Tensor], workdir: Path,
        config: dict, total_steps: int, batch_size: int, grad_clip: float, log_every: int,
        checkpoint_minutes: float, extra_state: Callable[[], dict], step: int = 0, minutes_before: float = 0.0,
        after_step: Callable[[int], None] | None = None, log_columns: tuple[str, ...] = (),
        log_values: Callable[[], list] | None = None, minutes: float | None = None, max_steps: int | None = None,
        fresh_log: bool = True, progress: bool = True, desc: str = "train") -> FitResult:
    """The loop every zoo recipe shares: loss, backward, clip, optimiser and schedule steps, a
    CSV row every ``log_every`` steps, and an atomic checkpoint at least every
    ``checkpoint_minutes`` and at the end. ``compute_loss()`` draws its own batch; ``after_step``
    (e.g. an EMA update) runs after each optimiser step; ``extra_state()`` adds the loop's own
    resume state (RNGs, EMA) to the checkpoint. Stops at ``total_steps``, after ``max_steps``
    more steps, or after ``minutes``."""
    ckpt_path, log_path = workdir / "checkpoint.pt", workdir / "loss.csv"
    start = time.time()

    def save() -> None:
        state = {"model": accelerator.unwrap_model(model).state_dict(), "optimizer": optimizer.state_dict(),
                 "lr_schedule": schedule.state_dict(), "step": step,
                 "minutes": minutes_before + (time.time() - start) / 60, "config": config}
        state.update(extra_state())
        atomic_save(state, ckpt_path)

    log = CSVLog(log_path, ["step", "loss", "lr", *log_columns, "images_per_s", "minutes"], fresh=fresh_log)
    stop = total_steps if max_steps is None else min(total_steps, step + max_steps)
    last_ckpt, window, running, count, last_loss = time.time(), time.time(), 0.0, 0, float("nan")
    bar = tqdm(total=stop, initial=step, desc=desc, disable=not progress)
    model.train()
    try:
        while step < stop:
            if minutes is not None and (time.time() - start) / 60 >= minutes:
                break
            loss = compute_loss()
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if after_step is not None:
                after_step(step)
            step += 1
            running += loss.item()
            count += 1
            bar.update(1)
            if step % log_every == 0 or step == stop:
                rate = count * batch_size / max(1e-9, time.time() - window)
                last_loss = running / count
                extra = log_values() if log_values is not None else []
                log.write([step, f"{last_loss:.5f}", f"{schedule.get_last_lr()[0]:.3e}", *extra, f"{rate:.1f}",
                           f"{minutes_before + (time.time() - start) / 60:.2f}"])
                bar.set_postfix(loss=f"{last_loss:.4f}")
                running, count, window = 0.0, 0, time.time()
            if (time.time() - last_ckpt) / 60 >= checkpoint_minutes:
                save()
                last_ckpt = time.time()
    finally:
        bar.close()
        log.close()
    save()
    return FitResult(step, minutes_before + (time.time() - start) / 60, last_loss)
