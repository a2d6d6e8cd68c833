"""The one training loop: :func:`fit` runs a step function through 🤗 Accelerate, with an
optimiser config, a warm-up + cosine schedule, gradient clipping, a CSV log and atomic
checkpoints with resume.

Every trainer of the book runs through it: the DDPM (``train/ddpm.py``), the contrastive CLIP
(``train/clip.py``), the evaluators (``train/supervised.py``), the attribute classifier
(``train/attrnet.py``), and the fine-tuning methods of the later chapters. The *step function*
owns its forward and backward passes, so a step that back-propagates several times (a
trajectory, per-step DiffusionCLIP) fits as well as a plain ``loss.backward()``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from ..config import write_json_atomic


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 arithmetic (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def mixed_precision_for(low_precision: bool, on_gpu: bool, bf16_supported: bool) -> str:
    """Accelerate's ``mixed_precision`` for a run that asks for low precision: ``"bf16"`` where the
    hardware has it; on a GPU without it (a Colab T4) ``"fp16"``, with Accelerate's loss scaling;
    on a CPU without it, ``"no"`` (fp32)."""
    if not low_precision:
        return "no"
    if bf16_supported:
        return "bf16"
    return "fp16" if on_gpu else "no"


def make_accelerator(bf16: bool):
    """An ``accelerate.Accelerator`` on the GPU if there is one, else the CPU, with the mixed
    precision :func:`mixed_precision_for` picks when ``bf16`` asks for low precision."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    on_gpu = torch.cuda.is_available()
    supported = torch.cuda.is_bf16_supported() if on_gpu else cpu_supports_bf16()
    mixed_precision = mixed_precision_for(bf16, on_gpu, supported)
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


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a linear warm-up and a cosine decay: what every trainer of the book uses."""

    learning_rate: float
    """Peak learning rate (a parameter group may set its own ``lr``)."""
    total_steps: int
    """The planned steps; the cosine reaches ``min_lr_ratio`` there."""
    weight_decay: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    """Global gradient-norm clip."""

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or self.total_steps < 1 or self.warmup_steps < 0:
            raise ValueError(f"need learning_rate > 0, total_steps >= 1 and warmup_steps >= 0, got "
                             f"{self.learning_rate}, {self.total_steps}, {self.warmup_steps}")


def build_optimizer(params, optim: OptimConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """(AdamW, its warm-up + cosine ``LambdaLR``) for ``params`` (tensors or parameter groups)."""
    optimizer = torch.optim.AdamW(params, lr=optim.learning_rate, weight_decay=optim.weight_decay,
                                  betas=optim.betas, eps=optim.eps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(optim.warmup_steps, optim.total_steps, optim.min_lr_ratio))
    return optimizer, schedule


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
    their hash) onto the CPU. States hold tensors and plain containers only, so they load with
    ``weights_only=True``: a checkpoint cannot run code when it is read."""
    index = _parts_index(path)
    if path.is_file() or not index.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    meta = json.loads(index.read_text())
    data = b"".join((path.parent / name).read_bytes() for name in meta["parts"])
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ValueError(f"the parts of {path} listed in {index} do not match their sha256; the checkpoint is damaged")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


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
    losses: list[float] = field(default_factory=list)
    """The mean loss of every logged window of this run."""


StepFn = Callable[[], "torch.Tensor | float"]
"""Draws its own batch, runs forward and backward (``accelerator.backward``), returns the loss
(detached or a float). :func:`fit` clips, steps the optimiser and the schedule, and zeroes the
gradients."""


def backward_step(accelerator, compute_loss: Callable[[], torch.Tensor]) -> StepFn:
    """The step function of a plain trainer: ``loss = compute_loss(); accelerator.backward(loss)``."""

    def step_fn() -> torch.Tensor:
        loss = compute_loss()
        accelerator.backward(loss)
        return loss.detach()

    return step_fn


def fit(*, model, optimizer, schedule, accelerator, step_fn: StepFn, total_steps: int, grad_clip: float,
        log_every: int, batch_size: int, workdir: Path | None = None, config: dict | None = None,
        checkpoint_minutes: float = 10.0, extra_state: Callable[[], dict] = dict, step: int = 0,
        minutes_before: float = 0.0, after_step: Callable[[int], None] | None = None,
        clip_params: Iterable[torch.nn.Parameter] | None = None, log_columns: tuple[str, ...] = (),
        log_values: Callable[[], list] | None = None, minutes: float | None = None, max_steps: int | None = None,
        fresh_log: bool = True, progress: bool = True, desc: str = "train") -> FitResult:
    """Run ``step_fn`` until ``total_steps``, ``max_steps`` more steps, or ``minutes``; after each
    call clip the gradient norm of ``clip_params`` (default: the model's) to ``grad_clip``, step
    the optimiser and the schedule, zero the gradients, and call ``after_step(step)`` (an EMA
    update, a clamp). Every ``log_every`` steps the mean loss goes to ``FitResult.losses`` and,
    with a ``workdir``, a row of ``workdir/loss.csv``; with a ``workdir`` an atomic checkpoint
    (model, optimiser, schedule, step, minutes, ``config`` and ``extra_state()``: RNGs, EMA) is
    written at least every ``checkpoint_minutes`` and at the end. Without one (a short run in a
    notebook) nothing is written. The model's train/eval mode is the caller's to set."""
    start = time.time()
    ckpt_path = None if workdir is None else workdir / "checkpoint.pt"
    clip_params = list(model.parameters() if clip_params is None else clip_params)

    def save() -> None:
        if ckpt_path is None:
            return
        state = {"model": accelerator.unwrap_model(model).state_dict(), "optimizer": optimizer.state_dict(),
                 "lr_schedule": schedule.state_dict(), "step": step,
                 "minutes": minutes_before + (time.time() - start) / 60, "config": config}
        state.update(extra_state())
        atomic_save(state, ckpt_path)

    log = None if workdir is None else CSVLog(workdir / "loss.csv", ["step", "loss", "lr", *log_columns,
                                                                    "images_per_s", "minutes"], fresh=fresh_log)
    stop = total_steps if max_steps is None else min(total_steps, step + max_steps)
    last_ckpt, window, running, count, losses = time.time(), time.time(), 0.0, 0, []
    bar = tqdm(total=stop, initial=step, desc=desc, disable=not progress)
    try:
        while step < stop:
            if minutes is not None and (time.time() - start) / 60 >= minutes:
                break
            loss = step_fn()
            accelerator.clip_grad_norm_(clip_params, grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if after_step is not None:
                after_step(step)
            step += 1
            running += float(loss)
            count += 1
            bar.update(1)
            if step % log_every == 0 or step == stop:
                rate = count * batch_size / max(1e-9, time.time() - window)
                losses.append(running / count)
                if log is not None:
                    extra = log_values() if log_values is not None else []
                    log.write([step, f"{losses[-1]:.5f}", f"{schedule.get_last_lr()[0]:.3e}", *extra, f"{rate:.1f}",
                               f"{minutes_before + (time.time() - start) / 60:.2f}"])
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                running, count, window = 0.0, 0, time.time()
            if ckpt_path is not None and (time.time() - last_ckpt) / 60 >= checkpoint_minutes:
                save()
                last_ckpt = time.time()
    finally:
        bar.close()
        if log is not None:
            log.close()
        # prepare() may have wrapped forward in autocast; the trained model goes back to plain fp32 calls
        accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    save()
    return FitResult(step, minutes_before + (time.time() - start) / 60, losses[-1] if losses else float("nan"), losses)
