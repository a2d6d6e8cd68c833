"""Training and evaluation of the evaluators: the oracle classifier and the garment parser.

Chapter: "How we measure an edit". Both train on pre-rendered Garments of every style and
extra, with per-image Gaussian noise and slight blur, so that they judge *edited* images
(which carry diffusion noise and softness) fairly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.garments import ATTRIBUTES, PARTS, RenderCache
from ..losses import masked_attribute_ce
from ..training import fit, load_checkpoint, make_accelerator, warmup_cosine


@dataclass(frozen=True)
class SupervisedTrainConfig:
    """Hyperparameters of :func:`train_supervised`."""

    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    total_steps: int = 3000
    min_lr_ratio: float = 0.02
    grad_clip: float = 1.0
    bf16: bool = True
    checkpoint_minutes: float = 10.0
    log_every: int = 25
    seed: int = 0
    data_seed: int = 20
    """Garments seed of the training renders (held-out evaluation uses seed 200)."""
    cache_size: int = 40000
    noise_max: float = 0.12
    """Per-image Gaussian noise std drawn from U(0, noise_max) (images in [-1, 1])."""
    blur_max: float = 1.0
    """Per-image Gaussian blur sigma (pixels) drawn from U(0, blur_max)."""


def to_model_input(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return images_u8.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur with std ``sigma`` (B,) in pixels (5-tap separable kernel; sigma 0 = identity)."""
    taps = torch.arange(-2, 3, dtype=images.dtype, device=images.device)
    s = sigma.clamp(min=1e-3).view(-1, 1)
    kernel = torch.exp(-0.5 * (taps / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, 5)
    b, c, h, w = images.shape
    x = images.reshape(1, b * c, h, w)
    kx = kernel.repeat_interleave(c, dim=0).view(b * c, 1, 1, 5)
    ky = kernel.repeat_interleave(c, dim=0).view(b * c, 1, 5, 1)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), kx, groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), ky, groups=b * c)
    return x.view(b, c, h, w)


def augment(images: torch.Tensor, generator: torch.Generator, noise_max: float, blur_max: float) -> torch.Tensor:
    """Slight blur, then Gaussian noise, each with a per-image random strength."""
    b = images.shape[0]
    sigma = torch.rand(b, generator=generator) * blur_max
    noise_std = torch.rand(b, generator=generator) * noise_max
    noise = torch.randn(images.shape, generator=generator)
    return (gaussian_blur(images, sigma) + noise_std.view(-1, 1, 1, 1) * noise).clamp(-1, 1)


def oracle_loss(model: torch.nn.Module, images: torch.Tensor, batch: dict) -> torch.Tensor:
    logits = model(images)
    return masked_attribute_ce(logits, batch["attributes"], ATTRIBUTES) + F.cross_entropy(logits["style"].float(),
                                                                                          batch["styles"])


def parser_loss(model: torch.nn.Module, images: torch.Tensor, batch: dict) -> torch.Tensor:
    return F.cross_entropy(model(images).float(), batch["parts"].long())


def train_supervised(model: torch.nn.Module, loss_fn: Callable, cache: RenderCache, cfg: SupervisedTrainConfig,
                     workdir: str | Path, minutes: float | None = None, max_steps: int | None = None,
                     resume: bool = False, progress: bool = True) -> tuple[int, float]:
    """Minimise ``loss_fn(model, augmented_images, batch)`` on random batches of ``cache``, with
    checkpoints and resume as the other zoo loops. Returns (steps in all, minutes in all)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg.bf16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup_steps, cfg.total_steps,
                                                                          cfg.min_lr_ratio))
    gen = torch.Generator().manual_seed(cfg.seed)
    step, minutes_before = 0, 0.0
    if resume:
        state = load_checkpoint(workdir / "checkpoint.pt", asdict(cfg), model, optimizer, schedule)
        gen.set_state(state["rng"])
        step, minutes_before = state["step"], state["minutes"]
    model, optimizer = accelerator.prepare(model, optimizer)

    def compute_loss() -> torch.Tensor:
        idx = torch.randint(0, len(cache), (cfg.batch_size,), generator=gen)
        batch = {"attributes": cache.attributes[idx], "styles": cache.styles[idx], "parts": cache.parts[idx]}
        images = augment(to_model_input(cache.images[idx]), gen, cfg.noise_max, cfg.blur_max)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            return loss_fn(model, images.to(accelerator.device), batch)

    result = fit(model=model, optimizer=optimizer, schedule=schedule, accelerator=accelerator,
                 compute_loss=compute_loss, workdir=workdir, config=asdict(cfg), total_steps=cfg.total_steps,
                 batch_size=cfg.batch_size, grad_clip=cfg.grad_clip, log_every=cfg.log_every,
                 checkpoint_minutes=cfg.checkpoint_minutes, step=step, minutes_before=minutes_before,
                 extra_state=lambda: {"rng": gen.get_state()}, minutes=minutes, max_steps=max_steps,
                 fresh_log=not resume, progress=progress)
    return result.steps, result.minutes


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE (Guo et al., 2017): sum over confidence bins of |accuracy - confidence| weighted by bin size."""
    confidence, pred = probs.max(dim=1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if bool(inside.any()):
            ece += float(inside.float().mean() * (correct[inside].mean() - confidence[inside].mean()).abs())
    return ece


@torch.no_grad()
def evaluate_oracle(model: torch.nn.Module, cache: RenderCache, batch_size: int = 250,
                    generator: torch.Generator | None = None, noise_max: float = 0.0, blur_max: float = 0.0) -> dict:
    """Held-out accuracy and ECE per attribute head of ``model`` (applicable images only) and for the
    style; ``mean_accuracy`` averages the attribute heads."""
    model.eval()
    logits: dict[str, list] = {}
    for start in range(0, len(cache), batch_size):
        images = to_model_input(cache.images[start:start + batch_size])
        if noise_max or blur_max:
            images = augment(images, generator or torch.Generator().manual_seed(0), noise_max, blur_max)
        for name, value in model(images).items():
            logits.setdefault(name, []).append(value.float())
    out: dict = {"accuracy": {}, "ece": {}}
    for name in [n for n in ATTRIBUTES + ("style",) if n in logits]:  # the heads the model has
        probs = torch.cat(logits[name]).softmax(dim=1)
        labels = cache.styles if name == "style" else cache.attributes[:, ATTRIBUTES.index(name)]
        keep = labels >= 0
        out["accuracy"][name] = round(float((probs[keep].argmax(1) == labels[keep]).float().mean()), 4)
        out["ece"][name] = round(expected_calibration_error(probs[keep], labels[keep]), 4)
    out["mean_accuracy"] = round(float(np.mean([v for a, v in out["accuracy"].items() if a != "style"])), 4)
    return out


@torch.no_grad()
def evaluate_parser(model: torch.nn.Module, cache: RenderCache, batch_size: int = 250) -> dict:
    """Held-out IoU per part label and their mean (mIoU)."""
    model.eval()
    inter = torch.zeros(len(PARTS))
    union = torch.zeros(len(PARTS))
    for start in range(0, len(cache), batch_size):
        pred = model(to_model_input(cache.images[start:start + batch_size])).argmax(dim=1)
        truth = cache.parts[start:start + batch_size].long()
        for k in range(len(PARTS)):
            inter[k] += ((pred == k) & (truth == k)).sum()
            union[k] += ((pred == k) | (truth == k)).sum()
    iou = inter / union.clamp(min=1)
    return {"iou": {name: round(float(v), 4) for name, v in zip(PARTS, iou)}, "miou": round(float(iou.mean()), 4)}
