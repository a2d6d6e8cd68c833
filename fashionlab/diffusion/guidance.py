"""Gradient guidance as small engine functions, and one thin guided loop over them.

Chapter: "Diffusion in one notebook"; used by classifier-guided editing (000, Procedure 1),
gradient guidance (003, Algorithm 1), and Blended Diffusion, which writes its own short loop
from the same parts.

A guidance function ``loss_fn(P_t) -> (B,)`` is *minimised*; ``strength`` is lambda and ``g`` the
gradient of the loss (w.r.t. x_t through the UNet, or w.r.t. P_t; see :func:`loss_gradient`).

=================  ====================================================================  ==========================
function           what it does to the step                                              source
=================  ====================================================================  ==========================
``universal_eps``  eps_hat = eps + lambda sqrt(1 - bar-alpha_t) g                       universal guidance; 003 eq. 13
``mean_shift``     x_{t-1} ~ N(mu - lambda Sigma g, Sigma), Sigma = sigma_t^2 (eta > 0)  Dhariwal & Nichol; 000 Proc. 1
``nudge``          after the step: x_{t-1} <- x_{t-1} - lambda g(P_{t-1}) bar-alpha_t^2  003 Algorithm 1
``z_nudge``        edit-friendly noise: z_t <- z_t - lambda g(P_t) bar-alpha_t^2          003 eq. 19
=================  ====================================================================  ==========================

The thesis writes eq. 19 with ``+``: its ``L`` there is a score to raise; ours is a loss to lower.
Its alpha_t is cumulative (``book/notation.md``), so ``bar-alpha_t^2`` is ~1e-9 near t = T.

:func:`guided_sample` runs one of the four over a frozen :class:`Guidance`: its guided steps
``[step_start, step_stop)`` are *step indices* of the reverse process (index 0 is the noisiest
step), the thesis's [t1, t2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import check_number
from .core import Denoiser, _check_grid, alpha_bar_at, ddim_sigma, ddim_step, predict_x0, reverse_pairs

MODES = ("universal", "mean_shift", "nudge", "z_nudge")
LossFn = Callable[[torch.Tensor], torch.Tensor]
LossInput = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(x0_pred, x_t, alpha_bar_t) -> what the loss sees`` (default: P_t itself)."""


# ----------------------------------------------------------------------------------------
# The pieces
# ----------------------------------------------------------------------------------------
def loss_gradient(loss_fn: LossFn, x: torch.Tensor, t: int, denoiser: Denoiser, alpha_bar_t: torch.Tensor,
                  through_unet: bool = True, loss_input: LossInput | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(eps, g, loss)`` at x: eps_theta(x, t), and the gradient of ``loss_fn(P_t)`` w.r.t. x
    (``through_unet=True``: back through the UNet, as universal guidance and the thesis do) or
    w.r.t. P_t (``False``: no UNet backward pass, paper 000's gradient w.r.t. X-hat_0).

    ``loss_input(P_t, x_t, bar-alpha_t)`` changes what the loss sees (Blended Diffusion's
    noisy-x0 blend); it needs ``through_unet``. At ``t = -1`` (the clean level) P_t = x."""
    if loss_input is not None and not through_unet:
        raise ValueError("loss_input sees x_t, so its gradient needs through_unet=True")
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(through_unet)
        if t < 0:  # the clean level: P = x
            eps = torch.zeros_like(x_in)
        elif through_unet:
            eps = denoiser(x_in, t)
        else:
            with torch.no_grad():
                eps = denoiser(x_in, t)
        x0_pred = predict_x0(x_in, eps, alpha_bar_t)
        if through_unet:
            loss = loss_fn(x0_pred if loss_input is None else loss_input(x0_pred, x_in, alpha_bar_t))
            (grad,) = torch.autograd.grad(loss.sum(), x_in)
        else:
            x0_leaf = x0_pred.detach().requires_grad_(True)
            loss = loss_fn(x0_leaf)
            (grad,) = torch.autograd.grad(loss.sum(), x0_leaf)
    return eps.detach(), grad.detach(), loss.detach()


def universal_eps(eps: torch.Tensor, grad: torch.Tensor, alpha_bar_t: torch.Tensor, strength: float) -> torch.Tensor:
    """eps_hat = eps + lambda sqrt(1 - bar-alpha_t) g  (universal guidance; thesis eq. 13)."""
    return eps + strength * (1 - alpha_bar_t).sqrt() * grad


def mean_shift(x_prev: torch.Tensor, grad: torch.Tensor, sigma: torch.Tensor, strength: float) -> torch.Tensor:
    """x_{t-1} - lambda sigma_t^2 g: the sampled step with its mean moved by -lambda Sigma g
    (classifier guidance, Dhariwal & Nichol Alg. 1; 000 Procedure 1). Zero for DDIM (sigma = 0)."""
    return x_prev - strength * sigma**2 * grad


def nudge(x_prev: torch.Tensor, grad: torch.Tensor, alpha_bar_t: torch.Tensor, strength: float) -> torch.Tensor:
    """x_{t-1} - lambda g bar-alpha_t^2, with g taken at P_{t-1}(x_{t-1})  (thesis Algorithm 1, lines 5-10)."""
    return x_prev - strength * grad * alpha_bar_t**2


def z_nudge(z: torch.Tensor, grad: torch.Tensor, alpha_bar_t: torch.Tensor, strength: float) -> torch.Tensor:
    """z_t - lambda g bar-alpha_t^2: the edit-friendly noise nudged before it is replayed
    (thesis eq. 19, with g from P_t; see the module note on its sign)."""
    return z - strength * grad * alpha_bar_t**2


def renoise(x_prev: torch.Tensor, alpha_bar_t: torch.Tensor, alpha_bar_prev: torch.Tensor,
            generator: torch.Generator | None) -> torch.Tensor:
    """x_t = sqrt(a) x_{t-1} + sqrt(1 - a) eps', a = bar-alpha_t / bar-alpha_{t-1}: one forward step
    back up, for universal guidance's self-recurrence (§3.3)."""
    ratio = (alpha_bar_t / alpha_bar_prev).to(x_prev.dtype)
    fresh = torch.randn(x_prev.shape, generator=generator, dtype=x_prev.dtype, device="cpu").to(x_prev.device)
    return ratio.sqrt() * x_prev + (1 - ratio).sqrt() * fresh


def refine_tail(grid: Sequence[int], step_stop: int, extra_steps: int) -> list[int]:
    """Give the unguided tail of ``grid`` (the steps after step index ``step_stop``) ``extra_steps`` more steps.

    The thesis (§4.2, following Meng et al.) adds steps after the last guided step so the model
    can clean up the noise the guidance left.
    """
    grid = list(grid)
    n_steps = len(grid) - 1
    if extra_steps == 0 or step_stop >= n_steps:
        return grid
    t_start = grid[n_steps - step_stop]  # the level reached after step_stop steps from the top
    n_tail = n_steps - step_stop
    tail = sorted({int(round(t)) for t in np.linspace(t_start, -1, n_tail + extra_steps + 1)[1:-1]})
    return [-1] + [t for t in tail if -1 < t < t_start] + grid[n_steps - step_stop:]


# ----------------------------------------------------------------------------------------
# The thin loop
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Guidance:
    """How :func:`guided_sample` guides: which piece, how strongly, and on which steps."""

    strength: float
    """lambda."""
    mode: str = "universal"
    """``"universal"``, ``"mean_shift"`` (needs eta > 0), ``"nudge"`` or ``"z_nudge"`` (needs replayed noises)."""
    step_start: int = 0
    """The first guided step index (0 = the noisiest step; the thesis's t1)."""
    step_stop: int | None = None
    """Guidance stops before this step index (None: guide to the end; the thesis's t2)."""
    through_unet: bool = True
    """g w.r.t. x_t through the UNet (True) or w.r.t. P_t (False)."""
    recurrence: int = 0
    """k: re-noise x_{t-1} -> x_t and repeat a guided step k more times (universal guidance §3.3)."""
    extra_steps: int = 0
    """More steps for the unguided tail after ``step_stop`` (see :func:`refine_tail`)."""

    def __post_init__(self) -> None:
        check_number("strength (lambda)", self.strength, 0)
        check_number("extra_steps", self.extra_steps, 0, integer=True)
        check_number("recurrence", self.recurrence, 0, integer=True)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.extra_steps < 0 or self.recurrence < 0:
            raise ValueError(f"extra_steps and recurrence must be >= 0, got {self.extra_steps}, {self.recurrence}")
        if self.step_start < 0 or (self.step_stop is not None and self.step_stop < self.step_start):
            raise ValueError(f"need 0 <= step_start <= step_stop, got step_start={self.step_start}, "
                             f"step_stop={self.step_stop}")


@dataclass
class GuidedOutput:
    x0: torch.Tensor
    """The final image."""
    grid: list[int]
    """The time grid actually used (with the extra steps after step_stop, if any)."""
    x0_preds: list[torch.Tensor] = field(default_factory=list)
    """P_t at every step, top first (if requested)."""
    losses: list[float] = field(default_factory=list)
    """loss_fn(P_t) at every guided step (mean over the batch)."""
    nudges: list[float] = field(default_factory=list)
    """At every guided step, the mean over the batch of the L2 norm of what guidance moved
    x_{t-1} by (for ``universal``, the eps change times its coefficient in the step)."""


def _mean_norm(delta: torch.Tensor) -> float:
    return float(delta.flatten(1).norm(dim=1).mean())


def guided_sample(
    denoiser: Denoiser,
    x_t: torch.Tensor,
    grid: Sequence[int],
    alphas_cumprod: torch.Tensor,
    loss_fn: LossFn,
    guidance: Guidance,
    mask: torch.Tensor | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    noises: Sequence[torch.Tensor] | None = None,
    sigmas: Sequence[float] | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    clip_x0: bool = False,
) -> GuidedOutput:
    """Reverse process from ``x_t`` (at ``grid[-1]``) with ``guidance`` on its guided steps.

    ``mask`` (broadcastable to x) multiplies the gradient; ``noises``/``sigmas`` replay explicit
    z_t (edit-friendly inversion; ``z_nudge`` edits those). ``clip_x0`` clips the P_t of each step
    to [-1, 1] (diffusers' ``clip_sample``); the guidance functions still see the unclipped P_t,
    whose gradient a clamp would zero. With ``strength=0`` the result equals
    :func:`fashionlab.diffusion.core.sample` (same ``clip_x0``) bit for bit.
    """
    grid = _check_grid(grid, len(alphas_cumprod))
    n_steps = len(grid) - 1
    step_stop = n_steps if guidance.step_stop is None else guidance.step_stop
    if step_stop > n_steps:
        raise ValueError(f"need step_stop <= number of steps ({n_steps}), got step_start={guidance.step_start}, "
                         f"step_stop={step_stop}")
    if guidance.mode == "mean_shift" and eta == 0 and sigmas is None:
        raise ValueError("mode='mean_shift' shifts the mean by Sigma * grad, which is 0 for DDIM; use eta > 0")
    if guidance.mode == "z_nudge" and noises is None:
        raise ValueError("mode='z_nudge' nudges replayed noise: pass noises (and sigmas) from edit-friendly inversion")
    if mask is not None and mask.shape[-2:] != x_t.shape[-2:]:
        raise ValueError(f"mask must match the image size {tuple(x_t.shape[-2:])}, got {tuple(mask.shape)}")
    if guidance.extra_steps and sigmas is not None:
        raise ValueError("extra_steps changes the grid, so it cannot be combined with explicit sigmas "
                         "(explicit noises must then cover the refined grid)")
    grid = refine_tail(grid, step_stop, guidance.extra_steps)
    steps = reverse_pairs(grid)
    if noises is not None and len(noises) != len(steps):
        raise ValueError(f"noises must have one entry per step ({len(steps)}"
                         f"{', after extra_steps' if guidance.extra_steps else ''}), got {len(noises)}")
    strength, mode = guidance.strength, guidance.mode

    out = GuidedOutput(x_t, grid)
    for i, (t, t_prev) in enumerate(tqdm(steps, desc="guided sampling", disable=not progress, leave=False)):
        alpha_bar_t, alpha_bar_prev = alpha_bar_at(alphas_cumprod, t), alpha_bar_at(alphas_cumprod, t_prev)
        sigma = ddim_sigma(alpha_bar_t, alpha_bar_prev, eta) if sigmas is None else torch.tensor(sigmas[i])
        noise = None if noises is None else noises[i]
        guided = guidance.step_start <= i < step_stop
        x_prev = x_t
        for r in range(1 + (guidance.recurrence if guided else 0)):
            if r > 0:
                x_t = renoise(x_prev, alpha_bar_t, alpha_bar_prev, generator)
            if guided and mode != "nudge":
                eps, grad, loss = loss_gradient(loss_fn, x_t, t, denoiser, alpha_bar_t, guidance.through_unet)
                out.losses.append(float(loss.mean()))
                if mask is not None:
                    grad = grad * mask
                if mode == "universal":
                    guided_eps = universal_eps(eps, grad, alpha_bar_t, strength)
                    coefficient = ((1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt()
                                   - alpha_bar_prev.sqrt() * (1 - alpha_bar_t).sqrt() / alpha_bar_t.sqrt())
                    out.nudges.append(_mean_norm(coefficient * (guided_eps - eps)))
                    eps = guided_eps
                elif mode == "z_nudge":
                    out.nudges.append(_mean_norm(sigma * strength * grad * alpha_bar_t**2))
                elif mode == "mean_shift":
                    out.nudges.append(_mean_norm(strength * sigma**2 * grad))
                z = z_nudge(noise, grad, alpha_bar_t, strength) if mode == "z_nudge" else noise
                step = ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise=z, generator=generator, sigma=sigma,
                                 clip_x0=clip_x0)
                x_prev = step.x_next
                if mode == "mean_shift":
                    x_prev = mean_shift(x_prev, grad, sigma, strength)
            else:
                with torch.no_grad():
                    eps = denoiser(x_t, t)
                step = ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise=noise, generator=generator,
                                 sigma=sigma, clip_x0=clip_x0)
                x_prev = step.x_next
                if guided:  # mode == "nudge"
                    _, grad, loss = loss_gradient(loss_fn, x_prev, t_prev, denoiser, alpha_bar_prev,
                                                  guidance.through_unet)
                    out.losses.append(float(loss.mean()))
                    if mask is not None:
                        grad = grad * mask
                    out.nudges.append(_mean_norm(strength * grad * alpha_bar_t**2))
                    x_prev = nudge(x_prev, grad, alpha_bar_t, strength)
        if return_trajectory:
            out.x0_preds.append(step.x0_pred.detach())
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
