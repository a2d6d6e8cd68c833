"""Mask-free, classifier-guided attribute editing (paper 000, Procedure 1).

Chapter: "Mask-free, classifier-guided fashion attribute editing" (``notebooks/06_guided_editing.py``).
It runs on the engine's thin guided loop, :func:`fashionlab.diffusion.guidance.guided_sample`,
with classifier guidance as a mean shift (``mode="mean_shift"``, eta = 1, the gradient taken
w.r.t. P_t). Its baseline, Blended Diffusion, is :mod:`fashionlab.methods.blended_diffusion`.

==========================  ============================================================  ==================
code                        Procedure 1 of paper 000                                      notes
==========================  ============================================================  ==================
``start``                   X_k ~ N(sqrt(bar-alpha_k) X, (1 - bar-alpha_k) I)             k = ``depth``
``x0_pred`` (loss input)    X-hat_0 = (X_t - sqrt(1 - bar-alpha_t) eps) / sqrt(bar-alpha_t)
``views``                   ExtendingAugmentations(X-hat_0, N)                             first view as is
attribute loss              -(1/N) sum_i log p(A | view_i), summed over target attributes   CE; f = log p
``mask``                    M-bar = mean over targets of the attention maps on X-hat_0       divided by its max
background loss             (1 - M-bar) ||X-hat_0 - X||^2 + (1 - M-bar) pd(X-hat_0, X)       000 eq. 7
step                        X_{t-1} ~ N(mu + Sigma grad_total, Sigma)                       grad w.r.t. X-hat_0
==========================  ============================================================  ==================

``grad_total = lambda grad_attr + grad_bckg``: the loss handed to the loop is
``lambda * attribute loss + background loss`` and the loop's ``strength`` is 1. The attention maps
of the attention pooler sum to 1 over the patches; 000 does not say how M-bar is scaled before
``1 - M-bar``, and unscaled it would be ~1/64 everywhere (no region at all), so we divide each
image's map by its maximum. The maps are treated as constants (no gradient through M-bar).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from ..data.garments import ATTRIBUTES, SCHEMA, applicable
from ..config import check_number
from ..data.transforms import check_images, extending_augmentations
from ..diffusion.core import Denoiser, alpha_bar_at, even_grid, noise_to
from ..diffusion.guidance import Guidance, guided_sample
from ..losses import background_loss


# ----------------------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------------------
Targets = dict[str, str] | Sequence[dict[str, str]]
"""One ``{attribute: value}`` dict for every image, or one dict per image (each naming its own attributes)."""


def check_targets(targets: Targets, attributes: Sequence[str] = ATTRIBUTES, categories: Sequence[str] | None = None,
                  n_images: int | None = None) -> dict[str, torch.Tensor]:
    """Validate edit targets and return ``{attribute: (B,) class indices}`` (B = ``n_images``, or
    1 for a shared dict without ``n_images``), with -1 where an image has no target for that
    attribute (per-image dicts may name different attributes: one image's colour, another's sleeve).

    ``attributes`` are the ones the classifier has heads for; ``categories`` (one per image, if
    given) let us refuse an inapplicable target, such as a neckline on trousers."""
    per_image = [targets] if isinstance(targets, dict) else list(targets)
    if not per_image or not all(isinstance(t, dict) and t for t in per_image):
        raise ValueError(f"targets must be a non-empty dict {{attribute: value}} or one per image, got {targets!r}")
    n = n_images if n_images is not None else len(per_image)
    if isinstance(targets, dict):
        per_image = per_image * n
    elif len(per_image) != n:
        raise ValueError(f"targets must be one dict or one per image ({n}), got {len(per_image)}")
    if categories is not None and len(categories) != n:
        raise ValueError(f"categories must name one category per image ({n}), got {len(categories)}")
    indices: dict[str, list[int]] = {}
    for k, image_targets in enumerate(per_image):
        for attribute, value in image_targets.items():
            if attribute not in attributes:
                raise ValueError(f"target attribute must be one of {tuple(attributes)}, got {attribute!r}")
            if value not in SCHEMA[attribute]:
                raise ValueError(f"target value for {attribute!r} must be one of {SCHEMA[attribute]}, got {value!r}")
            if categories is not None and not applicable(attribute, categories[k]):
                raise ValueError(f"target {attribute}={value!r} does not apply to image {k}, a {categories[k]}")
            indices.setdefault(attribute, [-1] * n)[k] = SCHEMA[attribute].index(value)
    return {a: torch.tensor(v) for a, v in indices.items()}


# ----------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------
@dataclass
class EditOutput:
    """What :func:`guided_edit` and :func:`~fashionlab.methods.blended_diffusion.blended_edit` return."""

    edited: torch.Tensor
    """The edited images (B, 3, H, W) in [-1, 1]."""
    x_k: torch.Tensor
    """The noised start X_k."""
    grid: list[int]
    x0_preds: list[torch.Tensor] = field(default_factory=list)
    """P_t at every step, top first (``return_trajectory=True``)."""
    masks: list[torch.Tensor] = field(default_factory=list)
    """M-bar (B, 1, H, W) at every guided step, top first (``return_trajectory=True``; guided_edit only)."""
    losses: list[float] = field(default_factory=list)
    """The total guidance loss at every step (mean over the batch)."""
    seconds: float = 0.0


def check_unet_input(images: torch.Tensor, denoiser: Denoiser) -> None:
    """``check_images`` with the geometry of the denoiser's UNet, where it has one: the size it was
    trained at, and the multiple of 2 its down blocks need (a UNet runs at any such size)."""
    unet_config = getattr(getattr(denoiser, "unet", None), "config", None)
    if unet_config is None:
        check_images(images, "images")
        return
    halvings = len(unet_config.down_block_types) - 1
    check_images(images, "images", unet_config.sample_size, 2 ** halvings)


def check_schedule(depth: int, steps: int, alphas_cumprod: torch.Tensor) -> None:
    """An edit depth inside the schedule and between 1 and depth + 1 steps."""
    if not 0 < depth < len(alphas_cumprod):
        raise ValueError(f"depth (k) must be in [1, {len(alphas_cumprod) - 1}], got {depth}")
    if not 1 <= steps <= depth + 1:
        raise ValueError(f"steps must be in [1, depth + 1 = {depth + 1}], got {steps}")


def check_views_and_eta(views: int, eta: float) -> None:
    """At least one augmentation view, and 0 < eta <= 1 (the mean shift is 0 for DDIM)."""
    check_number("views", views, 1, integer=True)
    check_number("eta (> 0 for the mean shift)", eta, 0, 1, low_open=True)


def noised_start(images: torch.Tensor, depth: int, steps: int, alphas_cumprod: torch.Tensor,
                 generator: torch.Generator | None) -> tuple[list[int], torch.Tensor]:
    """The time grid from ``depth`` down to the clean image, and X_k = q(X_k | X) (drawn on the CPU)."""
    grid = even_grid(depth, steps)
    eps = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    return grid, noise_to(images, alpha_bar_at(alphas_cumprod, grid[-1]), eps)


def attention_region(maps: dict[str, torch.Tensor], attributes: Sequence[str], size: tuple[int, int],
                     chosen: torch.Tensor | None = None) -> torch.Tensor:
    """M-bar: the attention maps (B, g, g) of ``attributes`` averaged, upsampled (bilinear) to
    ``size`` and scaled so each image's maximum is 1; returns (B, 1, H, W) in [0, 1].

    ``chosen`` (B, len(attributes)) bool, if given, says which attributes each image averages
    (its own targets, in a batch with mixed targets); every image must choose at least one."""
    stacked = torch.stack([maps[a] for a in attributes])  # (A, B, g, g)
    if chosen is None:
        mean = stacked.mean(dim=0).unsqueeze(1)  # (B, 1, g, g)
    else:
        if chosen.shape != (stacked.shape[1], len(attributes)) or not chosen.any(dim=1).all():
            raise ValueError(f"chosen must be ({stacked.shape[1]}, {len(attributes)}) bool with at least one "
                             f"attribute per image, got shape {tuple(chosen.shape)}")
        weights = chosen.T.to(stacked)[..., None, None]  # (A, B, 1, 1)
        mean = ((stacked * weights).sum(dim=0) / weights.sum(dim=0)).unsqueeze(1)
    up = F.interpolate(mean, size=size, mode="bilinear", align_corners=False)
    return (up / up.amax(dim=(2, 3), keepdim=True).clamp(min=1e-12)).clamp(0, 1)


# ----------------------------------------------------------------------------------------
# Paper 000, Procedure 1
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GuidedEditConfig:
    """Hyperparameters of :func:`guided_edit`. Defaults are paper 000's where stated (lambda = 100,
    Fig. 8) and Blended Diffusion's code otherwise (000 builds on it): 8 views, 100 respaced
    steps with the first 25 skipped (k = 750, 75 steps), background weights 1e4 (MSE) and 1e3
    (perceptual)."""

    depth: int = 750
    """k: the noise level the edit starts from (of 1000)."""
    steps: int = 75
    """Reverse steps from k to the clean image."""
    strength: float = 100.0
    """lambda, the weight of the attribute loss."""
    views: int = 8
    """N, the number of extending-augmentation views (the first is the unaugmented P_t)."""
    background: bool = True
    """Use the background loss of eq. 7 (False: the ablation of 000 Fig. 8)."""
    mse_weight: float = 1e4
    perceptual_weight: float = 1e3
    eta: float = 1.0
    """Stochasticity of the reverse steps (1 = DDPM; the mean shift needs eta > 0)."""
    augment_seed: int = 0
    """Seed of the augmentations' own generator (apart from the noise, so lambda = 0 changes no draw)."""

    def __post_init__(self) -> None:
        check_number("strength (lambda)", self.strength, 0)
        check_number("mse_weight", self.mse_weight, 0)
        check_number("perceptual_weight", self.perceptual_weight, 0)
        check_number("depth (k)", self.depth, 1, 999, integer=True)
        check_number("steps", self.steps, 1, integer=True)
        check_number("augment_seed", self.augment_seed, 0, integer=True)
        check_views_and_eta(self.views, self.eta)


def guided_edit(denoiser: Denoiser, alphas_cumprod: torch.Tensor, classifier: torch.nn.Module, images: torch.Tensor,
                targets: Targets, cfg: GuidedEditConfig = GuidedEditConfig(),
                perceptual: torch.nn.Module | None = None, categories: Sequence[str] | None = None,
                generator: torch.Generator | None = None, return_trajectory: bool = False,
                progress: bool = False) -> EditOutput:
    """Edit ``images`` (B, 3, H, W) in [-1, 1] towards ``targets`` (one dict, or one per image)
    with Procedure 1 of paper 000.

    ``classifier`` is an :class:`~fashionlab.models.attrnet.AttributeNet` (logits and attention
    maps per attribute); ``perceptual`` a module with ``distance_map`` for the background loss's
    pd term (None: MSE only). All random draws (X_k, the augmentations, the steps' noise) come
    from ``generator``."""
    check_unet_input(images, denoiser)
    check_schedule(cfg.depth, cfg.steps, alphas_cumprod)
    indices = check_targets(targets, classifier.attributes, categories, n_images=len(images))
    start_time = time.perf_counter()
    grid, x_k = noised_start(images, cfg.depth, cfg.steps, alphas_cumprod, generator)
    source = images.detach()
    b = len(images)
    labels = {a: i.repeat(cfg.views).to(images.device) for a, i in indices.items()}  # view-major, like the views
    chosen = torch.stack([i >= 0 for i in indices.values()], dim=1)  # (B, A): which targets each image has
    chosen = None if chosen.all() else chosen.to(images.device)
    masks: list[torch.Tensor] = []
    augment_gen = torch.Generator().manual_seed(cfg.augment_seed)

    def loss_fn(x0_pred: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(x0_pred).all():
            raise ValueError(f"strength (lambda) = {cfg.strength:g} made the edit overflow (P_t is no longer "
                             "finite); use a smaller strength (the book uses 100-1000)")
        views = extending_augmentations(x0_pred, cfg.views, generator=augment_gen)  # view-major; views[:b] is P_t
        logits, maps = classifier(classifier.preprocess(views))
        attr = sum(F.cross_entropy(logits[a].float(), labels[a], reduction="none", ignore_index=-1) for a in indices)
        loss = cfg.strength * attr.view(cfg.views, b).mean(dim=0)
        if not (cfg.background or return_trajectory):
            return loss  # M-bar is needed only by the background loss and the trajectory
        region = attention_region({a: maps[a][:b].detach() for a in indices}, list(indices),
                                  tuple(x0_pred.shape[-2:]), chosen)
        if return_trajectory:
            masks.append(region.cpu())
        if cfg.background:
            loss = loss + background_loss(x0_pred, source, 1 - region, perceptual, cfg.mse_weight, cfg.perceptual_weight)
        return loss

    guidance = Guidance(strength=1.0, mode="mean_shift", through_unet=False)
    out = guided_sample(denoiser, x_k, grid, alphas_cumprod, loss_fn, guidance, eta=cfg.eta, generator=generator,
                        return_trajectory=return_trajectory, progress=progress)
    return EditOutput(out.x0.clamp(-1, 1), x_k, out.grid, out.x0_preds, masks, out.losses,
                      time.perf_counter() - start_time)
