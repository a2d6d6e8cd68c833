"""Inversions: from a real image to the noise that regenerates it.

Chapter: "Diffusion in one notebook"; used by DiffusionCLIP (001), the thesis (003) and ZIP (004).

* **DDIM inversion** (DDIM §4.3; DiffusionCLIP §3.1): run the deterministic (eta = 0) step
  *upwards* along a time grid, evaluating eps at the lower timestep as DiffusionCLIP's code
  does (``eps_at="lower"``) or at the higher one as diffusers' ``DDIMInverseScheduler`` does.
  Generating back down the grid approximately reconstructs the image; the error falls as the
  number of steps rises.
* **Edit-friendly DDPM inversion** (Huberman-Spiegelglas et al., 2024; thesis §4.5): noise the
  image *independently* at every level, then read off the z_t that make each DDPM step land on
  the next level exactly. Replaying those z_t reconstructs the image exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .core import Denoiser, _check_grid, alpha_bar_at, ddim_sigma, ddim_step, noise_to, reverse_pairs, sample


@dataclass
class DDIMInversion:
    x_t: torch.Tensor
    """The latent at the top of the grid."""
    grid: list[int]
    trajectory: list[torch.Tensor] = field(default_factory=list)
    """x at every grid level, bottom first (only if requested)."""


@torch.no_grad()
def ddim_invert(
    denoiser: Denoiser,
    x0: torch.Tensor,
    grid: Sequence[int],
    alphas_cumprod: torch.Tensor,
    eps_at: str = "lower",
    return_trajectory: bool = False,
    progress: bool = False,
) -> DDIMInversion:
    """Deterministic DDIM inversion of ``x0`` (taken to sit at level ``grid[0]``) up to ``grid[-1]``.

    Each step x_t -> x_t_next_noisier uses eps_theta evaluated at t (``eps_at="lower"``,
    DiffusionCLIP) or at t_next_noisier (``"higher"``, diffusers). A ``-1`` level is evaluated at
    t = 0.
    """
    if eps_at not in ("lower", "higher"):
        raise ValueError(f"eps_at must be 'lower' or 'higher', got {eps_at!r}")
    grid = _check_grid(grid, len(alphas_cumprod))
    x = x0
    result = DDIMInversion(x, grid, [x0] if return_trajectory else [])
    pairs = list(zip(grid[:-1], grid[1:]))
    for t, t_next_noisier in tqdm(pairs, desc="DDIM inversion", disable=not progress, leave=False):
        eps = denoiser(x, max(t, 0) if eps_at == "lower" else t_next_noisier)
        x = ddim_step(x, eps, alpha_bar_at(alphas_cumprod, t), alpha_bar_at(alphas_cumprod, t_next_noisier)).x_next
        if return_trajectory:
            result.trajectory.append(x)
    result.x_t = x
    return result


def ddim_generate(denoiser: Denoiser, x_t: torch.Tensor, grid: Sequence[int], alphas_cumprod: torch.Tensor,
                  progress: bool = False) -> torch.Tensor:
    """Deterministic DDIM generation from ``x_t`` at ``grid[-1]`` down to ``grid[0]``."""
    return sample(denoiser, x_t, grid, alphas_cumprod, eta=0.0, progress=progress).x0


@dataclass
class EditFriendlyInversion:
    x_T: torch.Tensor
    """x at the top of the grid (the start of the replay)."""
    zs: list[torch.Tensor]
    """z_t per step, top step first; replaying them with :func:`ddpm_replay` gives the input back."""
    sigmas: list[float]
    """sigma_t per step, top step first."""
    grid: list[int]
    xs: list[torch.Tensor] = field(default_factory=list)
    """The (corrected) x_t per level, top first, ending with the input."""


def edit_friendly_sigmas(grid: Sequence[int], alphas_cumprod: torch.Tensor) -> list[float]:
    """sigma_t of each step (top first): the DDPM posterior std (eta = 1).

    The last step goes to the clean image, where the posterior std is 0; there we use
    sigma = sqrt(1 - bar-alpha_t) so that the last z can absorb the remaining error. (The
    authors set the last z to 0 and accept a small reconstruction error; keeping it makes the
    reconstruction exact, which the tests check.)
    """
    grid = list(grid)
    out = []
    for t, t_prev in zip(reversed(grid[1:]), reversed(grid[:-1])):
        alpha_bar_t, alpha_bar_prev = alpha_bar_at(alphas_cumprod, t), alpha_bar_at(alphas_cumprod, t_prev)
        sigma = float(ddim_sigma(alpha_bar_t, alpha_bar_prev, 1.0))
        if sigma == 0.0:
            sigma = float((1 - alpha_bar_t).sqrt())
        out.append(sigma)
    return out


@torch.no_grad()
def edit_friendly_invert(
    denoiser: Denoiser,
    x0: torch.Tensor,
    grid: Sequence[int],
    alphas_cumprod: torch.Tensor,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> EditFriendlyInversion:
    """Edit-friendly DDPM inversion of ``x0`` over ``grid`` (which must start at -1).

    1. Draw x_t = sqrt(bar-alpha_t) x0 + sqrt(1 - bar-alpha_t) eps_t with an *independent*
       eps_t at every level t of the grid.
    2. From the top down: mu_t = sqrt(bar-alpha_prev) P_t + D_t(sigma_t); z_t = (x_prev - mu_t) / sigma_t;
       then set x_prev = mu_t + sigma_t z_t (removes rounding drift, as the authors' code does).
    3. Return x_T and the z_t; :func:`ddpm_replay` reproduces ``x0``.
    """
    grid = _check_grid(grid, len(alphas_cumprod))
    if grid[0] != -1:
        raise ValueError(f"edit-friendly inversion needs a grid that starts at -1 (the clean image), got {grid[0]}")
    # 1. independent noising at every level (bottom = the image itself)
    levels = {-1: x0}
    for t in grid[1:]:
        alpha_bar_t = alpha_bar_at(alphas_cumprod, t).to(x0.dtype)
        eps_t = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device="cpu").to(x0.device)
        levels[t] = noise_to(x0, alpha_bar_t, eps_t)
    sigmas = edit_friendly_sigmas(grid, alphas_cumprod)
    steps = reverse_pairs(grid)
    x_t = levels[grid[-1]]
    result = EditFriendlyInversion(x_t, [], sigmas, grid, [x_t])
    # 2. read off z_t step by step
    for i, (t, t_prev) in enumerate(tqdm(steps, desc="DDPM inversion", disable=not progress, leave=False)):
        eps = denoiser(x_t, t)
        mu = ddim_step(x_t, eps, alpha_bar_at(alphas_cumprod, t), alpha_bar_at(alphas_cumprod, t_prev),
                       sigma=sigmas[i], noise=torch.zeros_like(x_t)).x_next
        z = (levels[t_prev] - mu) / sigmas[i]
        x_t = mu + sigmas[i] * z
        result.zs.append(z)
        result.xs.append(x_t)
    return result


def ddpm_replay(denoiser: Denoiser, inversion: EditFriendlyInversion, alphas_cumprod: torch.Tensor,
                x_T: torch.Tensor | None = None, skip: int = 0, progress: bool = False) -> torch.Tensor:
    """Run the DDPM sampler with the stored z_t (and sigma_t), from the top of the grid or, with
    ``skip`` = T_skip > 0, from the level reached after the first ``skip`` steps (the thesis's
    T_skip, §4.5 and Fig. 18: the replay starts at the inverted x there and uses the remaining z_t).

    ``x_T`` replaces the starting latent (default: the inverted one at that level). With an
    unchanged denoiser this reconstructs the input; with an edited denoiser or guidance it gives
    an edit that keeps the structure fixed by the z_t. ``skip=0`` is the full replay.
    """
    n_steps = len(inversion.zs)
    if not 0 <= skip < n_steps:
        raise ValueError(f"skip (T_skip) must be in [0, {n_steps - 1}] (steps of the inversion), got {skip}")
    start = inversion.xs[skip] if x_T is None else x_T
    grid = inversion.grid[:len(inversion.grid) - skip]
    return sample(denoiser, start, grid, alphas_cumprod, noises=inversion.zs[skip:], sigmas=inversion.sigmas[skip:],
                  progress=progress).x0


__all__ = [
    "DDIMInversion", "ddim_invert", "ddim_generate", "EditFriendlyInversion", "edit_friendly_sigmas",
    "edit_friendly_invert", "ddpm_replay",
]
