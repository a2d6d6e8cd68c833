"""Contrastive training of the tiny garment CLIPs (their zero-shot evaluation is in
:mod:`fashionlab.eval.zero_shot`).

Chapter: "CLIP for garments"; zoo recipes ``garments-clip-s`` and ``garments-clip-b``.

The CLIP objective (Radford et al., 2021): for a batch of N image-caption pairs with unit
embeddings I_i, T_j and a learned temperature, the symmetric cross-entropy of the N x N logits
``exp(logit_scale) * I @ T.T`` against the diagonal (``open_clip.ClipLoss``).

Our CLIP must know *more* than the diffusion model: it sees every render style and every detail
extra (the ``all`` domain) and captions with every template and with random attribute subsets,
so that "a striped dress" matches a long caption's image too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import config
from ..data.garments import ATTRIBUTES, CAPTION_TEMPLATES, GarmentSpec, RenderCache, caption, render_cache
from ..data.transforms import to_model_input
from ..models.clip import CLIPBundle, create_clip
from .loop import OptimConfig, backward_step, build_optimizer, fit, load_checkpoint, make_accelerator


@dataclass(frozen=True)
class CLIPTrainConfig:
    """Hyperparameters of :func:`train_clip`."""

    batch_size: int = 128
    """Pairs per step; the contrastive task has batch_size - 1 negatives per positive."""
    learning_rate: float = 5e-4
    """Peak AdamW learning rate (CLIP's ViT-B used 5e-4)."""
    weight_decay: float = 0.2
    """AdamW weight decay (CLIP: 0.2)."""
    warmup_steps: int = 200
    total_steps: int = 4000
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    bf16: bool = True
    checkpoint_minutes: float = 10.0
    log_every: int = 25
    seed: int = 0
    data_seed: int = 10
    """Garments seed of the training images (evaluation uses other seeds)."""
    cache_size: int = 60000
    """Pre-rendered training images (all styles and extras); captions are drawn fresh every step."""
    full_caption_prob: float = 0.5
    """Share of captions naming every attribute; the rest name a random subset of 1-3 (plus the category)."""

    @property
    def optim(self) -> OptimConfig:
        """CLIP's AdamW: betas (0.9, 0.98), eps 1e-6; no decay on gains, biases, embeddings, the temperature."""
        return OptimConfig(self.learning_rate, self.total_steps, self.weight_decay, self.warmup_steps,
                           self.min_lr_ratio, betas=(0.9, 0.98), eps=1e-6, grad_clip=self.grad_clip)


def random_caption(spec: GarmentSpec, rng: np.random.Generator, full_caption_prob: float = 0.5) -> str:
    """A training caption: a random template, and with probability 1 - ``full_caption_prob`` only a
    random subset of 1-3 applicable attributes (the category is always named)."""
    template = int(rng.integers(len(CAPTION_TEMPLATES)))
    if rng.random() < full_caption_prob:
        return caption(spec, template)
    named = [a for a in ATTRIBUTES if a != "category" and getattr(spec, a) is not None]
    k = int(rng.integers(1, 4))
    subset = tuple(rng.choice(named, size=min(k, len(named)), replace=False).tolist())
    return caption(spec, template, ("category",) + subset)


def _to_pixels(images_u8: torch.Tensor, bundle: CLIPBundle) -> torch.Tensor:
    """uint8 (B, H, W, 3) renders -> CLIP-normalised pixels, through the same preprocessing the losses use."""
    return bundle.pixels(to_model_input(images_u8))


def train_clip(name: str, cfg: CLIPTrainConfig, workdir: str | Path, minutes: float | None = None,
               max_steps: int | None = None, resume: bool = False, progress: bool = True,
               cache: RenderCache | None = None) -> tuple[int, float]:
    """Train tiny CLIP ``name`` contrastively; checkpoints (model, optimiser, schedule, step, RNG
    states) go to ``workdir/checkpoint.pt`` and the loss to ``workdir/loss.csv``. Returns
    (steps in all, minutes in all)."""
    import open_clip

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with config.seeded(cfg.seed):  # parameter initialisation inside open_clip
        bundle = create_clip(name)
    model = bundle.model
    accelerator = make_accelerator(cfg.bf16)
    decay, no_decay = [], []
    for pname, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "logit_scale" in pname or "embedding" in pname else decay).append(p)
    optimizer, schedule = build_optimizer([{"params": decay, "weight_decay": cfg.weight_decay},
                                           {"params": no_decay, "weight_decay": 0.0}], cfg.optim)
    batch_gen = torch.Generator().manual_seed(cfg.seed + 1)
    caption_rng = np.random.default_rng([cfg.seed, 2])
    run_config = {**asdict(cfg), "name": name}
    step, minutes_before = 0, 0.0
    if resume:
        state = load_checkpoint(workdir / "checkpoint.pt", run_config, model, optimizer, schedule)
        batch_gen.set_state(state["batch_rng"])
        caption_rng.bit_generator.state = state["caption_rng"]
        step, minutes_before = state["step"], state["minutes"]
    cache = cache if cache is not None else render_cache(cfg.data_seed, cfg.cache_size, bundle.image_size,
                                                         progress=progress, on_disk=True)
    images, specs = cache.images, cache.specs
    model, optimizer = accelerator.prepare(model, optimizer)
    loss_fn = open_clip.ClipLoss()
    last_scale = [0.0]

    def compute_loss() -> torch.Tensor:
        idx = torch.randint(0, len(specs), (cfg.batch_size,), generator=batch_gen)
        pixels = _to_pixels(images[idx], bundle).to(accelerator.device)
        texts = [random_caption(specs[i], caption_rng, cfg.full_caption_prob) for i in idx.tolist()]
        tokens = bundle.tokenizer(texts).to(accelerator.device)
        with accelerator.autocast():
            image_f, text_f, scale = model(pixels, tokens)[:3]  # unit features and exp(logit_scale)
        last_scale[0] = scale.item()
        return loss_fn(image_f.float(), text_f.float(), scale.float())

    def clamp_temperature(step_done: int) -> None:
        with torch.no_grad():  # CLIP clamps the logit scale at 100
            accelerator.unwrap_model(model).logit_scale.clamp_(0, np.log(100))

    model.train()
    result = fit(model=model, optimizer=optimizer, schedule=schedule, accelerator=accelerator,
                 step_fn=backward_step(accelerator, compute_loss), workdir=workdir, config=run_config, total_steps=cfg.total_steps,
                 batch_size=cfg.batch_size, grad_clip=cfg.grad_clip, log_every=cfg.log_every,
                 checkpoint_minutes=cfg.checkpoint_minutes, step=step, minutes_before=minutes_before,
                 extra_state=lambda: {"batch_rng": batch_gen.get_state(),
                                      "caption_rng": caption_rng.bit_generator.state},
                 after_step=clamp_temperature, log_columns=("logit_scale",),
                 log_values=lambda: [f"{last_scale[0]:.2f}"], minutes=minutes, max_steps=max_steps,
                 fresh_log=not resume, progress=progress, desc=name)
    return result.steps, result.minutes
