"""The supervised trainer: the evaluators (oracle classifier, garment parser) and the category
ViT that stands in for ImageNet pretraining.

Chapter: "How we measure an edit" (the evaluators; their held-out scores are in
:mod:`fashionlab.eval.classifiers`). The evaluators train on pre-rendered Garments of every
style and extra, with per-image Gaussian noise and slight blur, so that they judge *edited*
images (which carry diffusion noise and softness) fairly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..data.garments import ATTRIBUTES, EXTRAS, RenderCache
from ..data.transforms import noise_and_blur, to_model_input
from ..losses import masked_attribute_ce
from .loop import OptimConfig, backward_step, build_optimizer, fit, load_checkpoint, make_accelerator


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

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(self.learning_rate, self.total_steps, self.weight_decay, self.warmup_steps,
                           self.min_lr_ratio, grad_clip=self.grad_clip)


def oracle_loss(model: torch.nn.Module, images: torch.Tensor, batch: dict) -> torch.Tensor:
    logits = model(images)
    return masked_attribute_ce(logits, batch["attributes"], ATTRIBUTES) + F.cross_entropy(logits["style"].float(),
                                                                                          batch["styles"])


def parser_loss(model: torch.nn.Module, images: torch.Tensor, batch: dict) -> torch.Tensor:
    return F.cross_entropy(model(images).float(), batch["parts"].long())


def category_loss(model: torch.nn.Module, images: torch.Tensor, batch: dict) -> torch.Tensor:
    """Cross-entropy on category and render style: the only labels the supervised pretraining
    (:class:`~fashionlab.models.category_vit.CategoryViT`, chapter 05) sees."""
    logits = model(images)
    category = batch["attributes"][:, ATTRIBUTES.index("category")]
    return F.cross_entropy(logits["category"].float(), category) + F.cross_entropy(logits["style"].float(),
                                                                                   batch["styles"])


def extras_loss(model: torch.nn.Module, images: torch.Tensor, batch: dict) -> torch.Tensor:
    """Cross-entropy of each absent/present head of the extras judge."""
    logits = model(images)
    return sum(F.cross_entropy(logits[extra].float(), batch["extras"][:, k]) for k, extra in enumerate(EXTRAS))


LOSSES = {"oracle": oracle_loss, "parser": parser_loss, "category-vit": category_loss, "extras-judge": extras_loss}
"""The loss of each supervised zoo kind."""


def train_supervised(model: torch.nn.Module, loss_fn: Callable, cache: RenderCache, cfg: SupervisedTrainConfig,
                     workdir: str | Path, minutes: float | None = None, max_steps: int | None = None,
                     resume: bool = False, progress: bool = True) -> tuple[int, float]:
    """Minimise ``loss_fn(model, augmented_images, batch)`` on random batches of ``cache``, with
    checkpoints and resume as the other zoo loops. Returns (steps in all, minutes in all)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg.bf16)
    optimizer, schedule = build_optimizer(model.parameters(), cfg.optim)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, minutes_before = 0, 0.0
    if resume:
        state = load_checkpoint(workdir / "checkpoint.pt", asdict(cfg), model, optimizer, schedule)
        gen.set_state(state["rng"])
        step, minutes_before = state["step"], state["minutes"]
    model, optimizer = accelerator.prepare(model, optimizer)

    def compute_loss() -> torch.Tensor:
        idx = torch.randint(0, len(cache), (cfg.batch_size,), generator=gen)
        batch = {"attributes": cache.attributes[idx], "styles": cache.styles[idx], "parts": cache.parts[idx],
                 "extras": cache.extras[idx]}
        images = noise_and_blur(to_model_input(cache.images[idx]), gen, cfg.noise_max, cfg.blur_max)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            return loss_fn(model, images.to(accelerator.device), batch)

    model.train()
    result = fit(model=model, optimizer=optimizer, schedule=schedule, accelerator=accelerator,
                 step_fn=backward_step(accelerator, compute_loss), workdir=workdir, config=asdict(cfg), total_steps=cfg.total_steps,
                 batch_size=cfg.batch_size, grad_clip=cfg.grad_clip, log_every=cfg.log_every,
                 checkpoint_minutes=cfg.checkpoint_minutes, step=step, minutes_before=minutes_before,
                 extra_state=lambda: {"rng": gen.get_state()}, minutes=minutes, max_steps=max_steps,
                 fresh_log=not resume, progress=progress)
    return result.steps, result.minutes
