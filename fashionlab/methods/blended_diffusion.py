"""Blended Diffusion (Avrahami et al., 2022): CLIP guidance inside a user mask, the baseline of
paper 000.

Chapter: "Mask-free, classifier-guided fashion attribute editing" (``notebooks/06_guided_editing.py``).

As its public code does it: the loss sees the noisy-x0 blend of P_t and x_t, masked by the user
mask (outside set to 0), through the extending augmentations, as the squared spherical distance
to the prompt's CLIP embedding (weight 1000), plus a range loss (weight 50); the gradient is taken
through the UNet with respect to x_t and shifts the mean of each DDPM step; after every step the
region outside the mask is replaced by the source noised to the same level, and the final image
pastes the source background back. The loop is written here from the engine's parts
(:func:`~fashionlab.diffusion.guidance.loss_gradient`, :func:`~fashionlab.diffusion.core.ddim_step`,
:func:`~fashionlab.diffusion.guidance.mean_shift`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..data.transforms import extending_augmentations
from ..config import check_number
from ..diffusion.core import Denoiser, alpha_bar_at, ddim_sigma, ddim_step, noise_to, reverse_pairs
from ..diffusion.guidance import loss_gradient, mean_shift
from ..losses import spherical_distance
from ..models.clip import encode_text
from .guided_edit import EditOutput, check_schedule, check_unet_input, check_views_and_eta, noised_start


@dataclass(frozen=True)
class BlendedConfig:
    """Hyperparameters of :func:`blended_edit`: Blended Diffusion's code defaults (100 respaced
    steps, 25 skipped; CLIP weight 1000; range weight 50; 8 views; no background loss)."""

    depth: int = 750
    steps: int = 75
    clip_weight: float = 1000.0
    range_weight: float = 50.0
    views: int = 8
    eta: float = 1.0
    augment_seed: int = 0

    def __post_init__(self) -> None:
        check_number("clip_weight", self.clip_weight, 0)
        check_number("range_weight", self.range_weight, 0)
        check_number("depth", self.depth, 1, 999, integer=True)
        check_number("steps", self.steps, 1, integer=True)
        check_number("augment_seed", self.augment_seed, 0, integer=True)
        check_views_and_eta(self.views, self.eta)


def blended_edit(denoiser: Denoiser, alphas_cumprod: torch.Tensor, clip_bundle, images: torch.Tensor,
                 prompts: str | Sequence[str], mask: torch.Tensor, cfg: BlendedConfig = BlendedConfig(),
                 generator: torch.Generator | None = None, return_trajectory: bool = False,
                 progress: bool = False) -> EditOutput:
    """Blended Diffusion: CLIP-guided editing of ``images`` inside ``mask`` (B, 1, H, W) in {0, 1},
    towards ``prompts`` (one, or one per image). ``clip_bundle`` is a
    :class:`~fashionlab.models.clip.CLIPBundle`."""
    check_unet_input(images, denoiser)
    check_schedule(cfg.depth, cfg.steps, alphas_cumprod)
    if mask.dim() != 4 or mask.shape[0] != len(images) or mask.shape[1] != 1 or mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"mask must be ({len(images)}, 1, {images.shape[-2]}, {images.shape[-1]}), "
                         f"got {tuple(mask.shape)}")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if len(prompts) not in (1, len(images)):
        raise ValueError(f"prompts must be one string or one per image ({len(images)}), got {len(prompts)}")
    start_time = time.perf_counter()
    b = len(images)
    mask = mask.to(images)
    with torch.no_grad():
        text = encode_text(clip_bundle, prompts).to(images.device).expand(b, -1)
    grid, x_k = noised_start(images, cfg.depth, cfg.steps, alphas_cumprod, generator)
    model = clip_bundle.model
    augment_gen = torch.Generator().manual_seed(cfg.augment_seed)

    def loss_fn(x_in: torch.Tensor) -> torch.Tensor:
        views = extending_augmentations(x_in * mask, cfg.views, generator=augment_gen)
        features = model.encode_image(clip_bundle.pixels(views))
        clip = spherical_distance(features.float(), text.repeat(cfg.views, 1)).view(cfg.views, b).mean(dim=0)
        outside = (x_in - x_in.clamp(-1, 1)).pow(2).mean(dim=(1, 2, 3))
        return cfg.clip_weight * clip + cfg.range_weight * outside

    def noisy_x0_blend(x0_pred: torch.Tensor, x_t: torch.Tensor, alpha_bar_t: torch.Tensor) -> torch.Tensor:
        # what the loss sees in their code's cond_fn: sqrt(1 - bar-alpha_t) P_t + (1 - sqrt(1 - bar-alpha_t)) x_t
        fac = (1 - alpha_bar_t).sqrt().to(x_t.dtype)
        return fac * x0_pred + (1 - fac) * x_t

    def keep_background(x_prev: torch.Tensor, t_prev: int) -> torch.Tensor:
        eps = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
        background = noise_to(images, alpha_bar_at(alphas_cumprod, t_prev), eps) if t_prev >= 0 else images
        return x_prev * mask + background * (1 - mask)

    # The loop: classifier guidance's mean shift on every step, the gradient through the UNet w.r.t. x_t
    x_t, x0_preds, losses = x_k, [], []
    for t, t_prev in tqdm(reverse_pairs(grid), desc="Blended Diffusion", disable=not progress, leave=False):
        alpha_bar_t, alpha_bar_prev = alpha_bar_at(alphas_cumprod, t), alpha_bar_at(alphas_cumprod, t_prev)
        sigma = ddim_sigma(alpha_bar_t, alpha_bar_prev, cfg.eta)
        eps, grad, loss = loss_gradient(loss_fn, x_t, t, denoiser, alpha_bar_t, through_unet=True,
                                        loss_input=noisy_x0_blend)
        losses.append(float(loss.mean()))
        step = ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, cfg.eta, generator=generator, sigma=sigma)
        x_prev = keep_background(mean_shift(step.x_next, grad, sigma, 1.0), t_prev)
        if return_trajectory:
            x0_preds.append(step.x0_pred.detach())
        x_t = x_prev.detach()
    edited = x_t.clamp(-1, 1) * mask + images * (1 - mask)
    return EditOutput(edited, x_k, grid, x0_preds, [], losses, time.perf_counter() - start_time)
