"""Fine-tuning AttributeNet variants (paper 000 §3.2, §4.4, Tables 2-4).

Chapter: "Taming a ViT for multi-attribute guidance" (``notebooks/05_attribute_classifier.py``).

Three initialisations of the same ViT (the image tower of ``garments-clip-s``, or of ``-b``):

=============  ==============================================================================
init           what the backbone has learned before the attribute task
=============  ==============================================================================
``random``     nothing
``supervised`` the analogue of ImageNet pretraining: ``CategoryViT``, the same ViT trained
               with *labels of a different task* -- garment category and render style only --
               on the same renders and with the same compute as the CLIP. Like an ImageNet
               model, it knows *what object* is shown, never the words for colour, pattern,
               sleeve or neckline
``clip``       the tiny CLIP's image tower, trained on captions that name every attribute
=============  ==============================================================================

Fine-tuning strategies come from :func:`~fashionlab.models.attrnet.apply_strategy`
(``attnpool``, ``lastK``, ``e2e``); the loss is the masked multi-attribute cross-entropy of eq. (6).
The backbones are loaded by :func:`fashionlab.zoo.loaders.build_attrnet`; the grid of chapter 05
runs from :mod:`fashionlab.experiments.ch05_attrnet_grid`; the held-out scores are
:func:`fashionlab.eval.classifiers.evaluate_attrnet`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..data.garments import RenderCache
from ..data.transforms import random_augment, to_model_input
from ..losses import masked_attribute_ce
from ..models.attrnet import AttributeNet, apply_strategy
from .loop import OptimConfig, backward_step, build_optimizer, fit, make_accelerator

INITS: tuple[str, ...] = ("random", "supervised", "clip")
"""The backbone initialisations of 000 Table 2 (see the module table)."""

TRAIN_SEED, N_TRAIN = 30, 2000
"""The low-data labelled set: 2,000 in-domain (photo, no extras) garments, like a few thousand
Shopping100k images per attribute value."""
VAL_SEED = 31
"""Validation garments of the same domain (as many as the test set): they choose the variant that
ships as garments-attrnet."""
TEST_SEED, N_TEST = 32, 1000
"""Held-out garments of the same domain; never used for any choice."""


@dataclass(frozen=True)
class AttrNetTrainConfig:
    """Hyperparameters of :func:`train_attrnet` (the same for every variant of a table)."""

    steps: int = 600
    batch_size: int = 64
    learning_rate: float = 1e-3
    """Peak AdamW learning rate of the pooler and heads."""
    backbone_lr_ratio: float = 0.1
    """Unfrozen pretrained backbone blocks train at this fraction of it (1.0 for a random init)."""
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    augment: bool = False
    bf16: bool = False

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(self.learning_rate, self.steps, self.weight_decay, self.warmup_steps, self.min_lr_ratio,
                           grad_clip=self.grad_clip)


def model_pixels(model: AttributeNet, images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 renders (B, H, W, 3) -> the CLIP-normalised input of ``model``."""
    return model.preprocess(to_model_input(images_u8))


@dataclass
class AttrNetRun:
    """What :func:`train_attrnet` returns: the losses every ``log_every`` steps and the wall-clock time."""

    losses: list[float]
    seconds: float
    trainable_parameters: int
    precision: str
    """The arithmetic the run actually used: ``"bf16"`` or ``"fp16"`` (autocast) or ``"fp32"``. A config
    asking for bf16 on a CPU without native bf16 trains in fp32 (on a GPU without it, in fp16), and
    results files record that."""

    def record(self) -> dict:
        """The run as results files store it: seconds and losses rounded, parameters, precision."""
        return {"train_seconds": round(self.seconds, 1), "losses": [round(v, 4) for v in self.losses],
                "trainable_parameters": self.trainable_parameters, "precision": self.precision}


def train_attrnet(model: AttributeNet, strategy: str, cache: RenderCache, cfg: AttrNetTrainConfig, seed: int = 0,
                  log_every: int = 25, progress: bool = False) -> AttrNetRun:
    """Fine-tune ``model`` on the labelled renders of ``cache`` with ``strategy`` and the masked
    multi-attribute CE (000 eq. 6), through :func:`~fashionlab.train.loop.fit` and Accelerate.
    Batches (and augmentations) come from ``seed``. With ``attnpool`` and no augmentation the
    frozen backbone's patch tokens are computed once. Minutes of work, so no checkpoints."""
    apply_strategy(model, strategy)
    head_params = list(model.pool.parameters()) + list(model.heads.parameters())
    head_ids = {id(p) for p in head_params}
    backbone_params = [p for p in model.backbone.parameters() if p.requires_grad and id(p) not in head_ids]
    ratio = 1.0 if model.backbone_init == "random" else cfg.backbone_lr_ratio
    groups = [{"params": head_params, "lr": cfg.learning_rate}]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": cfg.learning_rate * ratio})
    optimizer, schedule = build_optimizer(groups, cfg.optim)
    accelerator = make_accelerator(cfg.bf16)
    model, optimizer = accelerator.prepare(model, optimizer)
    gen = torch.Generator().manual_seed(seed)
    cached_tokens = None
    model.train()
    if strategy == "attnpool":
        model.backbone.eval()  # frozen: no dropout or norm statistics to update either way
        if not cfg.augment:
            with torch.no_grad():
                pixels = [model_pixels(model, cache.images[i:i + 250]).to(accelerator.device)
                          for i in range(0, len(cache), 250)]
                cached_tokens = torch.cat([model.patch_tokens(x) for x in pixels])

    def compute_loss() -> torch.Tensor:
        idx = torch.randint(0, len(cache), (cfg.batch_size,), generator=gen)
        labels = cache.attributes[idx].to(accelerator.device)
        with accelerator.autocast():
            if cached_tokens is not None:
                logits, _ = model.forward_tokens(cached_tokens[idx])
            else:
                images = to_model_input(cache.images[idx])
                if cfg.augment:
                    images = random_augment(images, gen)
                logits, _ = model(model.preprocess(images.to(accelerator.device)))
            return masked_attribute_ce(logits, labels, model.attributes)

    start = time.perf_counter()
    trainable = [p for g in groups for p in g["params"]]
    result = fit(model=model, optimizer=optimizer, schedule=schedule, accelerator=accelerator,
                 step_fn=backward_step(accelerator, compute_loss), total_steps=cfg.steps, grad_clip=cfg.grad_clip,
                 log_every=log_every, batch_size=cfg.batch_size, clip_params=trainable, progress=progress,
                 desc=f"attrnet {strategy}")
    model.eval()
    precision = {"bf16": "bf16", "fp16": "fp16"}.get(accelerator.mixed_precision, "fp32")
    return AttrNetRun(result.losses, time.perf_counter() - start, sum(p.numel() for p in trainable), precision)


@dataclass(frozen=True)
class Variant:
    """One row-and-seed of 000's Tables 2-4."""

    init: str
    strategy: str
    augment: bool = False
    clip_name: str = "garments-clip-s"
    seed: int = 0

    @property
    def key(self) -> str:
        return f"{self.init}|{self.strategy}|aug={int(self.augment)}|{self.clip_name}|seed={self.seed}"


def table_variants(seeds: tuple[int, ...] = (0, 1, 2)) -> list[Variant]:
    """Every run the chapter's tables need: Table 2 (inits x strategies, no augmentation), Table 3
    (augmentation on for the attnpool rows) and Table 4 (the ``-b`` CLIP, attnpool and e2e)."""
    rows = [("random", "e2e", False, "garments-clip-s")]
    rows += [(init, s, False, "garments-clip-s") for init in ("supervised", "clip")
             for s in ("attnpool", "last2", "last4", "e2e")]
    rows += [(init, "attnpool", True, "garments-clip-s") for init in ("supervised", "clip")]
    rows += [("clip", s, False, "garments-clip-b") for s in ("attnpool", "e2e")]
    return [Variant(i, s, a, c, seed) for i, s, a, c in rows for seed in seeds]
