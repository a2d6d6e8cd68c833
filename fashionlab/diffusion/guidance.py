"""One guided reverse loop for every gradient-guided method in the book.

Chapter: "Diffusion in one notebook"; used by classifier-guided editing (000, Procedure 1),
gradient guidance (003, Algorithm 1) and the Blended-Diffusion baseline.

A guidance function ``loss_fn(P_t) -> scalar`` is *minimised*; ``strength`` is lambda. Where the
gradient g = d(loss)/dx acts is chosen by ``mode``:

``"nudge"``       thesis Algorithm 1: take the step to x_{t-1}, then
                  x_{t-1} <- x_{t-1} - lambda * g(P_{t-1}(x_{t-1})) * bar-alpha_t^2
``"universal"``   universal guidance (Bansal et al.; thesis eq. 13): eps_hat = eps + lambda sqrt(1 - bar-alpha_t) g
``"mean_shift"``  classifier guidance (Dhariwal & Nichol Alg. 1; 000 Procedure 1):
                  x_{t-1} ~ N(mu - lambda Sigma g, Sigma), Sigma = sigma_t^2 (needs eta > 0)

``through_unet=True`` differentiates through the UNet (g = d loss / d x_t, as universal guidance
and the thesis do); ``False`` uses g = d loss / d P_t, which skips the UNet backward pass (as
paper 000's Procedure 1 writes it: the gradient with respect to X_hat_0).

The conditioning range ``[t1, t2)`` is given as *step indices* of the reverse process, as in
the thesis: index 0 is the first (noisiest) step.

``loss_on="blend"`` feeds the loss Blended Diffusion's noisy-x0 blend
sqrt(1 - bar-alpha_t) P_t + (1 - sqrt(1 - bar-alpha_t)) x_t instead of P_t (their code's
``cond_fn``); ``after_step(x_prev, t_prev)`` may rewrite every x_{t-1} (their background
re-noising).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .core import Denoiser, _check_grid, alpha_bar_at, ddim_sigma, ddim_step, predict_x0

MODES = ("nudge", "universal", "mean_shift")
LOSS_INPUTS = ("x0", "blend")
LossFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class GuidedOutput:
    x0: torch.Tensor
    """The final image."""
    grid: list[int]
    """The time grid actually used (with the extra steps after t2, if any)."""
    x0_trajectory: list[torch.Tensor] = field(default_factory=list)
    """P_t at every step, top first (if requested)."""
    losses: list[float] = field(default_factory=list)
    """loss_fn(P_t) at every guided step (mean over the batch)."""


def refine_tail(grid: Sequence[int], t2: int, extra_steps: int) -> list[int]:
    """Give the unguided tail of ``grid`` (the steps after step index ``t2``) ``extra_steps`` more steps.

    The thesis (§4.2, following Meng et al.) adds steps after the last guided step so the model
    can clean up the noise the guidance left.
    """
    grid = list(grid)
    n_steps = len(grid) - 1
    if extra_steps == 0 or t2 >= n_steps:
        return grid
    t_start = grid[n_steps - t2]  # the level reached after t2 steps from the top
    n_tail = n_steps - t2
    tail = sorted({int(round(t)) for t in np.linspace(t_start, -1, n_tail + extra_steps + 1)[1:-1]})
    return [-1] + [t for t in tail if -1 < t < t_start] + grid[n_steps - t2:]


def _loss_grad(loss_fn: LossFn, x: torch.Tensor, t: int, denoiser: Denoiser, alpha_bar: torch.Tensor,
               through_unet: bool, loss_on: str = "x0") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(eps, g, loss) at x: eps_theta(x, t) and the gradient of loss_fn(P_t) w.r.t. x (or P_t);
    with ``loss_on="blend"`` the loss sees the noisy-x0 blend of P_t and x (see the module doc)."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(through_unet)
        if t < 0:  # the clean level: P = x
            eps = torch.zeros_like(x_in)
        elif through_unet:
            eps = denoiser(x_in, t)
        else:
            with torch.no_grad():
                eps = denoiser(x_in, t)
        x0_pred = predict_x0(x_in, eps, alpha_bar)
        if through_unet:
            if loss_on == "blend":
                fac = (1 - alpha_bar).sqrt().to(x_in.dtype)
                loss = loss_fn(fac * x0_pred + (1 - fac) * x_in)
            else:
                loss = loss_fn(x0_pred)
            (grad,) = torch.autograd.grad(loss.sum(), x_in)
        else:
            x0_leaf = x0_pred.detach().requires_grad_(True)
            loss = loss_fn(x0_leaf)
            (grad,) = torch.autograd.grad(loss.sum(), x0_leaf)
    return eps.detach(), grad.detach(), loss.detach()


def guided_sample(
    denoiser: Denoiser,
    x_t: torch.Tensor,
    grid: Sequence[int],
    alphas_cumprod: torch.Tensor,
    loss_fn: LossFn,
    strength: float,
    t1: int = 0,
    t2: int | None = None,
    mode: str = "universal",
    mask: torch.Tensor | None = None,
    extra_steps: int = 0,
    recurrence: int = 0,
    through_unet: bool = True,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    noises: Sequence[torch.Tensor] | None = None,
    sigmas: Sequence[float] | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    loss_on: str = "x0",
    after_step: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> GuidedOutput:
    """Reverse process from ``x_t`` (at ``grid[-1]``) with gradient guidance on steps ``[t1, t2)``.

    ``mask`` (broadcastable to x) multiplies the gradient; ``recurrence`` k re-noises
    x_{t-1} -> x_t and repeats a guided step k more times (universal guidance §3.3);
    ``noises``/``sigmas`` replay explicit z_t (edit-friendly inversion). ``loss_on`` and
    ``after_step`` serve Blended Diffusion (module doc). With ``strength=0`` the result equals
    :func:`fashionlab.diffusion.core.sample` bit for bit.
    """
    grid = _check_grid(grid, len(alphas_cumprod))
    n_steps = len(grid) - 1
    t2 = n_steps if t2 is None else t2
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if loss_on not in LOSS_INPUTS:
        raise ValueError(f"loss_on must be one of {LOSS_INPUTS}, got {loss_on!r}")
    if loss_on == "blend" and not through_unet:
        raise ValueError("loss_on='blend' differentiates through x_t, so it needs through_unet=True")
    if not (0 <= t1 <= t2 <= n_steps):
        raise ValueError(f"need 0 <= t1 <= t2 <= number of steps ({n_steps}), got t1={t1}, t2={t2}")
    if extra_steps < 0 or recurrence < 0:
        raise ValueError(f"extra_steps and recurrence must be >= 0, got {extra_steps}, {recurrence}")
    if mode == "mean_shift" and eta == 0 and sigmas is None:
        raise ValueError("mode='mean_shift' shifts the mean by Sigma * grad, which is 0 for DDIM; use eta > 0")
    if mask is not None and mask.shape[-2:] != x_t.shape[-2:]:
        raise ValueError(f"mask must match the image size {tuple(x_t.shape[-2:])}, got {tuple(mask.shape)}")
    if extra_steps and (noises is not None or sigmas is not None):
        raise ValueError("extra_steps changes the grid, so it cannot be combined with explicit noises/sigmas")
    grid = refine_tail(grid, t2, extra_steps)
    steps = list(zip(reversed(grid[1:]), reversed(grid[:-1])))
    if noises is not None and len(noises) != len(steps):
        raise ValueError(f"noises must have one entry per step ({len(steps)}), got {len(noises)}")

    out = GuidedOutput(x_t, grid)
    for i, (t, t_prev) in enumerate(tqdm(steps, desc="guided sampling", disable=not progress, leave=False)):
        a_t, a_prev = alpha_bar_at(alphas_cumprod, t), alpha_bar_at(alphas_cumprod, t_prev)
        sigma = ddim_sigma(a_t, a_prev, eta) if sigmas is None else torch.tensor(sigmas[i])
        noise = None if noises is None else noises[i]
        guided = t1 <= i < t2
        for r in range(1 + (recurrence if guided else 0)):
            if r > 0:  # self-recurrence: x_t = sqrt(a_t / a_prev) x_prev + sqrt(1 - a_t / a_prev) eps'
                ratio = (a_t / a_prev).to(x_t.dtype)
                fresh = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device="cpu").to(x_t.device)
                x_t = ratio.sqrt() * x_prev + (1 - ratio).sqrt() * fresh
            if guided and mode in ("universal", "mean_shift"):
                eps, grad, loss = _loss_grad(loss_fn, x_t, t, denoiser, a_t, through_unet, loss_on)
                out.losses.append(float(loss.mean()))
                if mask is not None:
                    grad = grad * mask
                if mode == "universal":
                    eps = eps + strength * (1 - a_t).sqrt() * grad
                step = ddim_step(x_t, eps, a_t, a_prev, eta, noise=noise, generator=generator, sigma=sigma)
                x_prev = step.x_prev
                if mode == "mean_shift":
                    x_prev = x_prev - strength * sigma**2 * grad
            else:
                with torch.no_grad():
                    eps = denoiser(x_t, t)
                step = ddim_step(x_t, eps, a_t, a_prev, eta, noise=noise, generator=generator, sigma=sigma)
                x_prev = step.x_prev
                if guided:  # mode == "nudge": Algorithm 1, lines 5-10
                    _, grad, loss = _loss_grad(loss_fn, x_prev, t_prev, denoiser, a_prev, through_unet, loss_on)
                    out.losses.append(float(loss.mean()))
                    if mask is not None:
                        grad = grad * mask
                    x_prev = x_prev - strength * grad * a_t**2
        if after_step is not None:
            x_prev = after_step(x_prev, t_prev)
        if return_trajectory:
            out.x0_trajectory.append(step.x0_pred.detach())
        x_t = x_prev.detach()
    out.x0 = x_t
    return out


def colour_loss(channel: int, target: float) -> LossFn:
    """The thesis's colour guidance function (§3.3.1): mean |P_t[:, c] - w| per image.

    ``channel`` 0/1/2 = R/G/B; ``target`` w in [-1, 1] (the package's image range).
    """
    if channel not in (0, 1, 2):
        raise ValueError(f"channel must be 0, 1 or 2, got {channel}")
    if not -1.0 <= target <= 1.0:
        raise ValueError(f"target must be in [-1, 1], got {target}")

    def loss(x0_pred: torch.Tensor) -> torch.Tensor:
        return (x0_pred[:, channel] - target).abs().mean(dim=(-2, -1))  # (B,)

    return loss
