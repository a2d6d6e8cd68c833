"""DiffusionCLIP (Kim & Ye, paper 001): fine-tune the diffusion model itself with a directional
CLIP loss, then edit by DDIM inversion with the original model and generation with the fine-tuned one.

Chapter: "DiffusionCLIP on garments" (``notebooks/07_diffusionclip.py``). Equation numbers are the
2021 preprint's (``../shared/papers``): P_t is eq. 6, the global CLIP loss eq. 8, the directional
loss eq. 9, the objective eqs. 10-11, the noise combination eq. 14; inversion is §3.1.

==========================  ================================================================  ======================
code                        paper 001                                                         notes
==========================  ================================================================  ======================
``depth``                   t_0, the "return step" the image is inverted to                   [300, 600]; code 400
``inv_steps``, ``gen_steps``  S_inv, S_gen                                                   40 and 6 to train, 40/40 to test
``invert_latents``          x_{t0} by DDIM inversion (eq. 12), eps at the lower t             once per training image
``finetune``                min_theta  L_direction(x0_hat(theta), t_tar; x0, t_ref) + L_id    eqs. 10-11, all UNet weights
``loss_form``               ``"log"``: -log((1 + cos) / 2) (their code); ``"1-cos"``: eq. 9
``clip_weight``             3 (their code; the paper writes 1)
``l1_weight``               lambda_L1 = 0.3 (eq. 11; no face-identity term for garments)
``mode``                    ``"chain"``: back-propagate through all S_gen steps (Fig. 3);
                            ``"per_step"``: loss on P_t, backward and optimiser step at every
                            step, x detached between steps (their GPU-efficient mode)
``latent_optimisation``     the baseline: optimise x_{t0} with the *global* CLIP loss (eq. 8)    Adam, lr 2e-2 (code)
``mixed`` (core.MixedDenoiser)  eps = sum_i gamma_i(t) eps_i (eq. 14)                          one model at strength r
``translate``               unseen -> unseen (§3.2): noise to t_s, generate with the original
                            model, invert, generate with a fine-tuned one
==========================  ================================================================  ======================

Deviations for garments (the chapter says so): the text pair is worded on each garment's own
category ("a plain dress" -> "a striped dress"), since one garment noun does not fit every
training image as "face" fits every face; the fine-tuning runs through the book's one training loop
(``train.loop.fit``), in batches (their code uses batch 1); Adam's learning rate is our own sweep's,
since the paper's 1e-6 (x1.2 per 50 iterations) and the code's 2e-6 (x1.3 per pass) were tuned for a
113M-parameter eps-model and ours has 4.3M and predicts v.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.garments import ATTRIBUTES, EXTRAS, STYLES, SCHEMA, GarmentSpec, caption, default_spec, applicable
from ..config import check_number
from ..data.transforms import check_images
from ..diffusion import core, inversion
from ..losses import directional_clip_loss, global_clip_loss, text_direction
from ..models.clip import CLIPBundle, encode_text
from ..train.loop import fit, make_accelerator

LOSS_FORMS: tuple[str, ...] = ("log", "1-cos")
MODES: tuple[str, ...] = ("chain", "per_step")


# ----------------------------------------------------------------------------------------
# Text pairs and their directions
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextPair:
    """t_ref -> t_tar of the directional loss ("a plain t-shirt" -> "a striped t-shirt")."""

    source: str
    target: str

    def __post_init__(self) -> None:
        for name in ("source", "target"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"TextPair {name} must be a non-empty string, got {value!r}")
        if " ".join(self.source.lower().split()) == " ".join(self.target.lower().split()):
            raise ValueError(f"TextPair source and target are the same text ({self.source!r}): the text direction "
                             "would be zero and the directional loss constant")


@dataclass(frozen=True)
class GarmentEdit:
    """One edit a fine-tuned model learns: set ``attribute`` (a schema attribute, ``"style"`` or
    ``"extra"``) to ``value``."""

    attribute: str
    value: str

    def __post_init__(self) -> None:
        if self.attribute in ATTRIBUTES:
            allowed = SCHEMA[self.attribute]
        elif self.attribute == "style":
            allowed = STYLES
        elif self.attribute == "extra":
            allowed = EXTRAS
        else:
            raise ValueError(f"attribute must be one of {ATTRIBUTES + ('style', 'extra')}, got {self.attribute!r}")
        if self.value not in allowed:
            raise ValueError(f"value for {self.attribute} must be one of {allowed}, got {self.value!r}")

    def applies_to(self, spec: GarmentSpec) -> bool:
        """True if the edit changes ``spec`` (the attribute applies and does not already have the value)."""
        if self.attribute == "style":
            return spec.style != self.value
        if self.attribute == "extra":
            return self.value not in spec.extras
        return applicable(self.attribute, spec.category, spec.collar) and getattr(spec, self.attribute) != self.value

    def apply(self, spec: GarmentSpec) -> GarmentSpec:
        """``spec`` with the edit made (the ideal edit, for grading)."""
        if self.attribute == "style":
            return spec.edit(style=self.value)
        if self.attribute == "extra":
            return spec.edit(extras=tuple(sorted(set(spec.extras) | {self.value})))
        return spec.edit(**{self.attribute: self.value})

    def text_pair(self, category: str) -> TextPair:
        """The pair worded on a neutral garment of ``category`` (``garments.default_spec``): "a plain
        dress" -> "a striped dress", "a photo of a dress" -> "a sketch of a dress", "a dress" -> "a
        dress with a pocket"."""
        base = default_spec(category)
        if self.attribute == "style":
            words = {"photo": "a photo of", "sketch": "a sketch of", "cartoon": "a cartoon of"}
            noun = caption(base, 0, ("category",))
            return TextPair(f"{words[base.style]} {noun}", f"{words[self.value]} {noun}")
        if self.attribute == "extra":
            return TextPair(caption(base, 0, ("category",)), caption(base.edit(extras=(self.value,)), 0, ("category",)))
        if not applicable(self.attribute, category):
            raise ValueError(f"{self.attribute} does not apply to a {category}")
        source = base if getattr(base, self.attribute) != self.value else base.edit(
            **{self.attribute: next(v for v in SCHEMA[self.attribute] if v != self.value)})
        return TextPair(caption(source, 0, ("category", self.attribute)),
                        caption(source.edit(**{self.attribute: self.value}), 0, ("category", self.attribute)))


GARMENT_EDITS: dict[str, GarmentEdit] = {
    "striped": GarmentEdit("pattern", "striped"),
    "blue": GarmentEdit("colour", "blue"),
    "long-sleeve": GarmentEdit("sleeve", "long"),
    "sketch": GarmentEdit("style", "sketch"),
    "pocket": GarmentEdit("extra", "pocket"),
}
"""The chapter's edits: in-domain (pattern, colour, sleeve) and out of the DDPM's domain (the sketch
style and the pocket extra, which it never saw)."""


@torch.no_grad()
def text_directions(clip_bundle: CLIPBundle, pairs: Sequence[TextPair]) -> torch.Tensor:
    """Unit text directions dT (N, D), one per pair (template-averaged, as their code does; each
    distinct pair is encoded once)."""
    cache: dict[TextPair, torch.Tensor] = {}
    encode = lambda prompts: encode_text(clip_bundle, prompts)  # noqa: E731
    for pair in pairs:
        if pair not in cache:
            cache[pair] = text_direction(encode, pair.source, pair.target)[0]
    return torch.stack([cache[p] for p in pairs])


def image_features(clip_bundle: CLIPBundle, images: torch.Tensor) -> torch.Tensor:
    """Unit CLIP image embeddings of images in [-1, 1] (differentiable)."""
    return F.normalize(clip_bundle.model.encode_image(clip_bundle.pixels(images)).float(), dim=-1)


# ----------------------------------------------------------------------------------------
# Configuration and the objective
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiffusionCLIPConfig:
    """Hyperparameters of :func:`finetune` and :func:`edit` (defaults: the authors' code where it
    transfers; see the module table)."""

    depth: int = 400
    """t_0, the return step (their code's default; the paper: 300-600)."""
    inv_steps: int = 40
    """S_inv."""
    gen_steps: int = 6
    """S_gen while fine-tuning."""
    test_gen_steps: int = 40
    """S_gen when editing."""
    clip_weight: float = 3.0
    l1_weight: float = 0.3
    loss_form: str = "log"
    mode: str = "chain"
    learning_rate: float = 2e-6
    lr_growth: float = 1.3
    """Learning rate x this after every pass over the training images (their code)."""
    epochs: int = 1
    batch_size: int = 4
    seed: int = 0
    """Seed of the order of the training images."""

    def __post_init__(self) -> None:
        if self.loss_form not in LOSS_FORMS:
            raise ValueError(f"loss_form must be one of {LOSS_FORMS}, got {self.loss_form!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        check_number("depth (t_0)", self.depth, 1, 999, integer=True)
        for name in ("inv_steps", "gen_steps", "test_gen_steps"):
            steps = getattr(self, name)
            check_number(name, steps, 2, integer=True)
            if not 2 <= steps <= self.depth + 1:
                raise ValueError(f"{name} must be in [2, depth + 1 = {self.depth + 1}], got {steps}")
        check_number("learning_rate", self.learning_rate, 0, low_open=True)
        check_number("lr_growth", self.lr_growth, 0, low_open=True)
        check_number("epochs", self.epochs, 1, integer=True)
        check_number("batch_size", self.batch_size, 1, integer=True)
        check_number("clip_weight", self.clip_weight, 0)
        check_number("l1_weight", self.l1_weight, 0)
        check_number("seed", self.seed, 0, integer=True)


def objective(clip_bundle: CLIPBundle, x0: torch.Tensor, x0_hat: torch.Tensor, source_features: torch.Tensor,
              directions: torch.Tensor, cfg: DiffusionCLIPConfig) -> torch.Tensor:
    """clip_weight * L_direction(x0_hat; x0, dT) + l1_weight * |x0 - x0_hat|, per image (eqs. 9-11)."""
    direction = directional_clip_loss(image_features(clip_bundle, x0_hat), source_features, directions,
                                      form=cfg.loss_form)
    l1 = (x0 - x0_hat).abs().mean(dim=(1, 2, 3))
    return cfg.clip_weight * direction + cfg.l1_weight * l1


@torch.no_grad()
def invert_latents(denoiser: core.Denoiser, alphas_cumprod: torch.Tensor, images: torch.Tensor,
                   cfg: DiffusionCLIPConfig, batch_size: int = 16, progress: bool = False) -> torch.Tensor:
    """x_{t0} of every image by DDIM inversion with S_inv steps (eps at the lower t, as their code)."""
    check_images(images, "images")
    grid = core.diffusionclip_grid(cfg.depth, cfg.inv_steps)[1:]
    return torch.cat([inversion.ddim_invert(denoiser, images[i:i + batch_size], grid, alphas_cumprod).x_t
                      for i in tqdm(range(0, len(images), batch_size), desc="inverting", disable=not progress)])


# ----------------------------------------------------------------------------------------
# Fine-tuning
# ----------------------------------------------------------------------------------------
@dataclass
class FineTuneResult:
    unet: torch.nn.Module
    """The fine-tuned UNet (eval mode)."""
    losses: list[float]
    """Mean objective per logged window (one per batch in chain mode, per generation step in per-step mode)."""
    seconds: float
    steps: int
    """Optimiser steps taken."""


def finetune(unet: torch.nn.Module, scheduler, clip_bundle: CLIPBundle, images: torch.Tensor,
             pairs: Sequence[TextPair], cfg: DiffusionCLIPConfig = DiffusionCLIPConfig(),
             latents: torch.Tensor | None = None, progress: bool = False) -> FineTuneResult:
    """Fine-tune a *copy* of ``unet`` (a pixel ``UNet2DModel`` with its ``scheduler``) so that DDIM
    generation from the inverted latents of ``images`` moves each image along its text pair
    (``pairs``: one per image). ``latents`` (from :func:`invert_latents`) are computed with the
    original model if not given. Returns the fine-tuned UNet; the original is untouched."""
    check_images(images, "images")
    if len(pairs) != len(images):
        raise ValueError(f"pairs must give one TextPair per image ({len(images)}), got {len(pairs)}")
    alphas_cumprod = scheduler.alphas_cumprod
    base = core.PixelDenoiser(unet, scheduler)
    if latents is None:
        latents = invert_latents(base, alphas_cumprod, images, cfg, progress=progress)
    elif latents.shape != images.shape:
        raise ValueError(f"latents must match images {tuple(images.shape)}, got {tuple(latents.shape)}")
    start = time.perf_counter()
    with torch.no_grad():
        directions = text_directions(clip_bundle, list(pairs)).to(images.device)
        source_features = torch.cat([image_features(clip_bundle, images[i:i + 64]) for i in range(0, len(images), 64)])
    clip_bundle.model.requires_grad_(False)

    model = copy.deepcopy(unet).train().requires_grad_(True)
    accelerator = make_accelerator(bf16=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    batches_per_epoch = -(-len(images) // cfg.batch_size)
    calls_per_batch = 1 if cfg.mode == "chain" else cfg.gen_steps
    per_epoch = batches_per_epoch * calls_per_batch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cfg.lr_growth ** (step // per_epoch))
    model, optimizer = accelerator.prepare(model, optimizer)
    denoiser = core.PixelDenoiser(model, scheduler)
    grid = core.diffusionclip_grid(cfg.depth, cfg.gen_steps)
    steps = core.reverse_pairs(grid)
    order_gen = torch.Generator().manual_seed(cfg.seed)
    state = {"order": [], "batch": None, "x": None, "i": 0}

    def next_batch() -> list[int]:
        if not state["order"]:
            state["order"] = torch.randperm(len(images), generator=order_gen).tolist()
        idx, state["order"] = state["order"][:cfg.batch_size], state["order"][cfg.batch_size:]
        return idx

    def chain_step() -> float:
        idx = next_batch()
        x0_hat = core.sample_with_grad(denoiser, latents[idx], grid, alphas_cumprod).x0
        loss = objective(clip_bundle, images[idx], x0_hat, source_features[idx], directions[idx], cfg).mean()
        accelerator.backward(loss)
        return loss.item()

    def per_step() -> float:
        # one generation step of the current batch: loss on its P_t, backward (fit steps the optimiser)
        if state["i"] == 0:
            state["batch"] = next_batch()
            state["x"] = latents[state["batch"]]
        idx, (t, t_prev) = state["batch"], steps[state["i"]]
        x_t = state["x"].detach()
        step = core.ddim_step(x_t, denoiser(x_t, t), core.alpha_bar_at(alphas_cumprod, t),
                              core.alpha_bar_at(alphas_cumprod, t_prev))
        loss = objective(clip_bundle, images[idx], step.x0_pred, source_features[idx], directions[idx], cfg).mean()
        accelerator.backward(loss)
        state["x"] = step.x_next.detach()
        state["i"] = (state["i"] + 1) % len(steps)
        return loss.item()

    with torch.enable_grad():  # a notebook may have switched gradients off
        result = fit(model=model, optimizer=optimizer, schedule=schedule, accelerator=accelerator,
                     step_fn=chain_step if cfg.mode == "chain" else per_step, total_steps=cfg.epochs * per_epoch,
                     grad_clip=float("inf"), log_every=calls_per_batch, batch_size=cfg.batch_size,
                     progress=progress, desc=f"DiffusionCLIP ({cfg.mode})")
    model = accelerator.unwrap_model(model).eval().requires_grad_(False)
    return FineTuneResult(model, result.losses, time.perf_counter() - start, result.steps)


# ----------------------------------------------------------------------------------------
# Editing, the latent-optimisation baseline, noise combination, translation
# ----------------------------------------------------------------------------------------
@torch.no_grad()
def edit(base: core.Denoiser, edited: core.Denoiser, alphas_cumprod: torch.Tensor, images: torch.Tensor,
         cfg: DiffusionCLIPConfig = DiffusionCLIPConfig(), latents: torch.Tensor | None = None,
         batch_size: int = 16, progress: bool = False) -> torch.Tensor:
    """DiffusionCLIP's edit: DDIM inversion of ``images`` to t_0 with ``base`` (S_inv steps), then
    DDIM generation with ``edited`` (a fine-tuned model, or a :class:`~fashionlab.diffusion.core.MixedDenoiser`)
    in ``cfg.test_gen_steps`` steps. Returns images in [-1, 1]."""
    latents = invert_latents(base, alphas_cumprod, images, cfg, batch_size) if latents is None else latents
    grid = core.diffusionclip_grid(cfg.depth, cfg.test_gen_steps)
    out = [inversion.ddim_generate(edited, latents[i:i + batch_size], grid, alphas_cumprod)
           for i in tqdm(range(0, len(images), batch_size), desc="generating", disable=not progress)]
    return torch.cat(out).clamp(-1, 1)


def mixed(models: Sequence[core.Denoiser], gammas: Callable[[int], Sequence[float]] | Sequence[float]
          ) -> core.MixedDenoiser:
    """Eq. 14: eps = sum_i gamma_i(t) eps_i. For one fine-tuned model at strength r:
    ``mixed([finetuned, original], [r, 1 - r])``."""
    return core.MixedDenoiser(models, gammas)


@dataclass
class LatentOptimisation:
    edited: torch.Tensor
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def latent_optimisation(base: core.Denoiser, alphas_cumprod: torch.Tensor, clip_bundle: CLIPBundle,
                        images: torch.Tensor, targets: Sequence[str], cfg: DiffusionCLIPConfig = DiffusionCLIPConfig(),
                        iterations: int = 20, learning_rate: float = 2e-2, latents: torch.Tensor | None = None,
                        progress: bool = False) -> LatentOptimisation:
    """The baseline of their Fig. 9: keep the model, optimise the inverted latent x_{t0} (Adam, lr 2e-2,
    their code) so that generation with ``cfg.gen_steps`` steps minimises clip_weight * the *global*
    CLIP loss (eq. 8) to the target text + l1_weight * |x0 - x0_hat|; the result is generated from the
    optimised latent with ``cfg.test_gen_steps`` steps."""
    check_images(images, "images")
    targets = [targets] * len(images) if isinstance(targets, str) else list(targets)
    if len(targets) != len(images) or not all(isinstance(t, str) and t.strip() for t in targets):
        raise ValueError(f"targets must be one non-empty string or one per image ({len(images)})")
    if iterations < 1 or learning_rate <= 0:
        raise ValueError(f"need iterations >= 1 and learning_rate > 0, got {iterations}, {learning_rate}")
    start = time.perf_counter()
    latents = invert_latents(base, alphas_cumprod, images, cfg) if latents is None else latents
    with torch.no_grad():
        text = encode_text(clip_bundle, targets).float()
    clip_bundle.model.requires_grad_(False)
    x_t = latents.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x_t], lr=learning_rate)
    grid = core.diffusionclip_grid(cfg.depth, cfg.gen_steps)
    losses = []
    for _ in tqdm(range(iterations), desc="latent optimisation", disable=not progress):
        with torch.enable_grad():
            x0_hat = core.sample_with_grad(base, x_t, grid, alphas_cumprod).x0
            loss = (cfg.clip_weight * global_clip_loss(image_features(clip_bundle, x0_hat), text)
                    + cfg.l1_weight * (images - x0_hat).abs().mean(dim=(1, 2, 3))).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
        losses.append(loss.item())
    edited = edit(base, base, alphas_cumprod, images, cfg, latents=x_t.detach())
    return LatentOptimisation(edited, losses, time.perf_counter() - start)


@torch.no_grad()
def translate(base: core.Denoiser, edited: core.Denoiser, alphas_cumprod: torch.Tensor, images: torch.Tensor,
              t_s: int = 500, sde_steps: int = 50, cfg: DiffusionCLIPConfig = DiffusionCLIPConfig(),
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Unseen -> unseen translation (§3.2): noise ``images`` (out of the model's domain: a stroke
    drawing, a cartoon) to ``t_s`` with the stochastic forward process, generate an in-domain image
    with ``base`` (DDPM steps, eta = 1), then edit that image with ``edited`` (:func:`edit`).
    Returns (the in-domain bridge images, the translated images)."""
    bridged = bridge(base, alphas_cumprod, images, t_s, sde_steps, generator)
    return bridged, edit(base, edited, alphas_cumprod, bridged, cfg)


def bridge(base: core.Denoiser, alphas_cumprod: torch.Tensor, images: torch.Tensor, t_s: int = 500,
           sde_steps: int = 50, generator: torch.Generator | None = None) -> torch.Tensor:
    """The first half of :func:`translate`: noise ``images`` to ``t_s`` with the stochastic forward
    process and generate in-domain images from there with ``base`` (DDPM steps, eta = 1)."""
    check_images(images, "images")
    if not 0 < t_s < len(alphas_cumprod):
        raise ValueError(f"t_s must be in [1, {len(alphas_cumprod) - 1}], got {t_s}")
    eps = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    x_s = core.noise_to(images, core.alpha_bar_at(alphas_cumprod, t_s), eps)
    return core.sample(base, x_s, core.even_grid(t_s, sde_steps), alphas_cumprod, eta=1.0, generator=generator,
                       clip_x0=True).x0.clamp(-1, 1)
