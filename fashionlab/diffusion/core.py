"""The shared pieces of every sampler in the book: P_t, D_t, one reverse step, time grids,
denoiser adapters (pixel, latent, mixed) and sampling with and without gradients.

Chapter: "Diffusion in one notebook" (``notebooks/02_diffusion_basics.py``).

Notation (``book/notation.md``); ``alpha_bar`` is the *cumulative* product, which DDIM,
DiffusionCLIP, the thesis and ZIP all write as alpha_t:

================  =================================================  ==========================
code              symbol                                             where
================  =================================================  ==========================
``alpha_bar_t``   bar-alpha_t = prod_{s<=t} (1 - beta_s)             DDPM eq. (4)
``eps``           eps_theta(x_t, t)                                  DDPM eq. (11)
``x0_pred``       P_t = (x_t - sqrt(1 - bar-alpha_t) eps) / sqrt(bar-alpha_t)   DDIM eq. (9); 001 eq. (6)
``sigma``         sigma_t(eta), DDIM eq. (16)                        eta=0: DDIM, eta=1: DDPM
``direction``     D_t = sqrt(1 - bar-alpha_prev - sigma^2) eps       DDIM eq. (12)
``x_prev``        sqrt(bar-alpha_prev) P_t + D_t + sigma z           DDIM eq. (12); ZIP eq. (5)
================  =================================================  ==========================

One step goes from level ``t`` to the *next level of its walk*: ``t_prev`` (less noisy) in
generation, ``t_next_noisier`` in inversion. The step functions are direction-agnostic, so
their arguments say ``alpha_bar_next`` and their output ``x_next``.

A *time grid* is an increasing list of timesteps whose first entry may be ``-1``, meaning the
clean image (bar-alpha_{-1} = 1, DiffusionCLIP's convention; diffusers calls it
``final_alpha_cumprod``). Generation walks the grid downwards, inversion upwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

Denoiser = Callable[[torch.Tensor, int], torch.Tensor]
"""Anything that maps (x_t, t) to the noise prediction eps_theta(x_t, t), same shape as x_t."""


# ----------------------------------------------------------------------------------------
# Denoiser adapters: a pixel UNet2DModel, or a latent UNet2DConditionModel with text embeddings
# ----------------------------------------------------------------------------------------
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "v_prediction")
"""What a pixel UNet may be trained to predict (a diffusers scheduler's ``prediction_type``)."""
SCHEDULE_KEYS: tuple[str, ...] = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type")
"""The scheduler-config entries that define a noise schedule and what the model predicts."""


def eps_from_output(out: torch.Tensor, x_t: torch.Tensor, t: int, prediction_type: str,
                    alphas_cumprod: torch.Tensor | None) -> torch.Tensor:
    """A UNet's raw output as eps: unchanged for an eps model; for a v model,
    eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t (affine in the output, so a difference of two
    outputs maps to a difference of eps scaled by sqrt(abar_t))."""
    if prediction_type != "v_prediction":
        return out
    alpha_bar_t = alpha_bar_at(alphas_cumprod, int(t)).to(device=x_t.device, dtype=x_t.dtype)
    return alpha_bar_t.sqrt() * out + (1 - alpha_bar_t).sqrt() * x_t


class PixelDenoiser:
    """eps_theta for a diffusers ``UNet2DModel``, whatever the model was trained to predict.

    Models with a learned variance (ADM, ``out_channels == 2 * in_channels``) predict
    [eps, variance interpolation]; we keep the eps half, as guided-diffusion does. A model trained
    with ``prediction_type="v_prediction"`` (Salimans & Ho, 2022) predicts
    v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0; its eps is recovered exactly as

        eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t,

    so every method in the book keeps working on eps. Pass the model's ``scheduler`` (its config
    names the prediction type and its ``alphas_cumprod`` the schedule); without one, the model is
    taken to predict eps.
    """

    def __init__(self, unet: torch.nn.Module, scheduler=None) -> None:
        self.unet = unet
        in_ch, out_ch = unet.config.in_channels, unet.config.out_channels
        if out_ch not in (in_ch, 2 * in_ch):
            raise ValueError(f"unet out_channels must be in_channels ({in_ch}) or twice that, got {out_ch}")
        self.learned_variance = out_ch == 2 * in_ch
        self.prediction_type = "epsilon" if scheduler is None else scheduler.config.prediction_type
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"scheduler prediction_type must be one of {PREDICTION_TYPES}, "
                             f"got {self.prediction_type!r}")
        self.alphas_cumprod = None if scheduler is None else scheduler.alphas_cumprod

    def __call__(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        timestep = torch.full((x_t.shape[0],), int(t), device=x_t.device, dtype=torch.long)
        out = self.unet(x_t, timestep).sample
        if self.learned_variance:
            out = out[:, : x_t.shape[1]]  # (B, 2C, H, W) -> (B, C, H, W): eps, drop the variance
        return eps_from_output(out, x_t, t, self.prediction_type, self.alphas_cumprod)


class LatentDenoiser:
    """eps_theta for a latent ``UNet2DConditionModel`` conditioned on text embeddings.

    With ``uncond_embeddings`` and ``guidance_scale`` != 1 it applies classifier-free guidance:
    eps = eps_uncond + w (eps_cond - eps_uncond) (Ho & Salimans, 2022). With ``scheduler``, a
    v-predicting model's output is turned into eps as :class:`PixelDenoiser` does.
    """

    def __init__(self, unet: torch.nn.Module, text_embeddings: torch.Tensor,
                 uncond_embeddings: torch.Tensor | None = None, guidance_scale: float = 1.0,
                 scheduler=None) -> None:
        if text_embeddings.dim() != 3:
            raise ValueError(f"text_embeddings must be (B, L, D), got {tuple(text_embeddings.shape)}")
        if guidance_scale != 1.0 and uncond_embeddings is None:
            raise ValueError("guidance_scale != 1 needs uncond_embeddings")
        self.unet = unet
        self.text_embeddings = text_embeddings
        self.uncond_embeddings = uncond_embeddings
        self.guidance_scale = guidance_scale
        self.prediction_type = "epsilon" if scheduler is None else scheduler.config.prediction_type
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"scheduler prediction_type must be one of {PREDICTION_TYPES}, "
                             f"got {self.prediction_type!r}")
        self.alphas_cumprod = None if scheduler is None else scheduler.alphas_cumprod

    def _eps(self, out: torch.Tensor, x_t: torch.Tensor, t: int) -> torch.Tensor:
        return eps_from_output(out, x_t, t, self.prediction_type, self.alphas_cumprod)

    def __call__(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        batch = x_t.shape[0]
        if self.text_embeddings.shape[0] not in (1, batch):
            raise ValueError(f"text_embeddings hold {self.text_embeddings.shape[0]} prompts for a batch of {batch} "
                             "latents: give one prompt, or one per latent")
        cond = self.text_embeddings.expand(batch, -1, -1) if self.text_embeddings.shape[0] == 1 else self.text_embeddings
        timestep = torch.full((batch,), int(t), device=x_t.device, dtype=torch.long)
        if self.guidance_scale == 1.0:
            return self._eps(self.unet(x_t, timestep, encoder_hidden_states=cond).sample, x_t, t)
        uncond = self.uncond_embeddings.expand(batch, -1, -1) if self.uncond_embeddings.shape[0] == 1 else self.uncond_embeddings
        eps_both = self.unet(torch.cat([x_t, x_t]), torch.cat([timestep, timestep]),
                             encoder_hidden_states=torch.cat([uncond, cond])).sample
        eps_uncond, eps_cond = self._eps(eps_both, torch.cat([x_t, x_t]), t).chunk(2)
        return eps_uncond + self.guidance_scale * (eps_cond - eps_uncond)


class MixedDenoiser:
    """eps(x_t, t) = sum_i gamma_i(t) eps_i(x_t, t): several denoisers combined with
    time-dependent weights (DiffusionCLIP's noise combination, 001 eq. 14, which mixes models
    fine-tuned for different attributes; with one weight 1 and the rest 0 it *is* that model).

    ``weights`` is a function ``t -> (gamma_1, ..., gamma_n)`` or a constant sequence. A zero
    weight skips its model. The paper's weights sum to 1; that is the caller's choice, not checked.
    """

    def __init__(self, denoisers: Sequence[Denoiser],
                 weights: Callable[[int], Sequence[float]] | Sequence[float]) -> None:
        self.denoisers = list(denoisers)
        if not self.denoisers:
            raise ValueError("denoisers must hold at least one denoiser")
        self.weights = weights if callable(weights) else (lambda t, w=tuple(float(v) for v in weights): w)
        self.gammas(0)  # fail at construction, not mid-sampling, on a wrong number of weights

    def gammas(self, t: int) -> tuple[float, ...]:
        """(gamma_1(t), ..., gamma_n(t))."""
        gammas = tuple(float(g) for g in self.weights(t))
        if len(gammas) != len(self.denoisers):
            raise ValueError(f"weights must give one gamma per denoiser ({len(self.denoisers)}), got {len(gammas)} "
                             f"at t={t}")
        return gammas

    def __call__(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        out = None
        for gamma, denoiser in zip(self.gammas(t), self.denoisers):
            if gamma == 0.0:
                continue
            term = gamma * denoiser(x_t, t)
            out = term if out is None else out + term
        return torch.zeros_like(x_t) if out is None else out


# ----------------------------------------------------------------------------------------
# The algebra of one step
# ----------------------------------------------------------------------------------------
def alpha_bar_at(alphas_cumprod: torch.Tensor, t: int, final_alpha_cumprod: float = 1.0) -> torch.Tensor:
    """bar-alpha_t from a scheduler's ``alphas_cumprod``; ``t = -1`` is the clean image."""
    if t == -1:
        return torch.tensor(final_alpha_cumprod, dtype=alphas_cumprod.dtype)
    if not (0 <= t < len(alphas_cumprod)):
        raise ValueError(f"t must be -1 or in [0, {len(alphas_cumprod)}), got {t}")
    return alphas_cumprod[t]


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor | float) -> torch.Tensor:
    """P_t = (x_t - sqrt(1 - bar-alpha_t) eps) / sqrt(bar-alpha_t)   (DDIM eq. 9)."""
    alpha_bar_t = torch.as_tensor(alpha_bar_t, dtype=x_t.dtype, device=x_t.device)
    return (x_t - (1 - alpha_bar_t).sqrt() * eps) / alpha_bar_t.sqrt()


def noise_to(x0: torch.Tensor, alpha_bar_t: torch.Tensor | float, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(bar-alpha_t) x0 + sqrt(1 - bar-alpha_t) eps: the forward process q(x_t | x0), DDPM eq. (4)."""
    alpha_bar_t = torch.as_tensor(alpha_bar_t, dtype=x0.dtype, device=x0.device)
    return alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * eps


def predict_eps(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar_t: torch.Tensor | float) -> torch.Tensor:
    """The eps that makes P_t equal ``x0``: (x_t - sqrt(bar-alpha_t) x0) / sqrt(1 - bar-alpha_t)."""
    alpha_bar_t = torch.as_tensor(alpha_bar_t, dtype=x_t.dtype, device=x_t.device)
    return (x_t - alpha_bar_t.sqrt() * x0) / (1 - alpha_bar_t).sqrt()


def ddim_sigma(alpha_bar_t: torch.Tensor | float, alpha_bar_prev: torch.Tensor | float, eta: float) -> torch.Tensor:
    """sigma_t(eta) = eta sqrt((1 - bar-alpha_prev) / (1 - bar-alpha_t)) sqrt(1 - bar-alpha_t / bar-alpha_prev)
    (DDIM eq. 16). eta = 1 gives the DDPM posterior standard deviation."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    alpha_bar_t = torch.as_tensor(alpha_bar_t, dtype=torch.float64)
    alpha_bar_prev = torch.as_tensor(alpha_bar_prev, dtype=torch.float64)
    variance = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)
    return (eta * variance.clamp(min=0).sqrt()).to(torch.float32)


def direction(eps: torch.Tensor, alpha_bar_prev: torch.Tensor | float, sigma: torch.Tensor | float = 0.0) -> torch.Tensor:
    """D_t = sqrt(1 - bar-alpha_prev - sigma_t^2) eps, the "direction pointing to x_t" (DDIM eq. 12)."""
    alpha_bar_prev = torch.as_tensor(alpha_bar_prev, dtype=eps.dtype, device=eps.device)
    sigma = torch.as_tensor(sigma, dtype=eps.dtype, device=eps.device)
    return (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps


@dataclass
class StepOutput:
    x_next: torch.Tensor
    """The sample at the next level of the walk: x_{t-1} in generation, x_{t+1} in inversion."""
    x0_pred: torch.Tensor
    """P_t."""


def _draw_noise(like: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    """z for a stochastic step: ``noise`` if given (checked), else drawn on the CPU from ``generator``."""
    if noise is None:
        return torch.randn(like.shape, generator=generator, dtype=like.dtype, device="cpu").to(like.device)
    if noise.shape != like.shape:
        raise ValueError(f"noise must have shape {tuple(like.shape)}, got {tuple(noise.shape)}")
    return noise


def _combine(x0_pred: torch.Tensor, eps_dir: torch.Tensor, alpha_bar_next: torch.Tensor | float,
             sigma: torch.Tensor | float, noise: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    """sqrt(bar-alpha_next) P_t + D_t(eps_dir, sigma) + sigma z."""
    sigma = torch.as_tensor(sigma, dtype=x0_pred.dtype, device=x0_pred.device)
    alpha_bar_next = torch.as_tensor(alpha_bar_next, dtype=x0_pred.dtype, device=x0_pred.device)
    x_next = alpha_bar_next.sqrt() * x0_pred + direction(eps_dir, alpha_bar_next, sigma)
    if float(sigma) > 0:
        x_next = x_next + sigma * _draw_noise(x0_pred, noise, generator)
    return x_next


def reverse_step(
    x_t: torch.Tensor,
    eps_x0: torch.Tensor,
    eps_dir: torch.Tensor,
    alpha_bar_t: torch.Tensor | float,
    alpha_bar_next: torch.Tensor | float,
    sigma: torch.Tensor | float = 0.0,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> StepOutput:
    """The step with separate noise predictions for P_t and for D_t:

        x_next = sqrt(bar-alpha_next) P_t(eps_x0) + D_t(eps_dir) + sigma z

    Asyrp's and ZIP's asymmetric reverse process (004 eq. 5) predicts P_t with the *edited* eps
    (h + delta-h) and keeps the original eps in D_t. With ``eps_x0`` equal to ``eps_dir`` this is
    :func:`ddim_step` with that ``sigma``."""
    x0_pred = predict_x0(x_t, eps_x0, alpha_bar_t)
    return StepOutput(_combine(x0_pred, eps_dir, alpha_bar_next, sigma, noise, generator), x0_pred)


def ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar_t: torch.Tensor | float,
    alpha_bar_next: torch.Tensor | float,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    sigma: torch.Tensor | float | None = None,
    clip_x0: bool = False,
) -> StepOutput:
    """One step x_t -> x_next = sqrt(bar-alpha_next) P_t + D_t + sigma_t z   (DDIM eq. 12).

    ``eta`` = 0 is deterministic DDIM, ``eta`` = 1 the DDPM ancestral step. ``noise`` supplies
    z explicitly (edit-friendly inversion replays stored z's); otherwise z is drawn from
    ``generator``. ``sigma`` overrides sigma_t(eta). With eta = 0 and bar-alpha_next <
    bar-alpha_t (a *noisier* level) the same formula runs upwards: that is DDIM inversion.
    """
    # 1. predicted x0 (P_t), optionally clipped to the data range as diffusers' clip_sample
    x0_pred = predict_x0(x_t, eps, alpha_bar_t)
    if clip_x0:
        x0_pred = x0_pred.clamp(-1, 1)
        eps = predict_eps(x_t, x0_pred, alpha_bar_t)
    # 2. sigma_t(eta), see formula (16)
    if sigma is None:
        sigma = ddim_sigma(alpha_bar_t, alpha_bar_next, eta)
    # 3. direction pointing to x_t, the mean of x_next, and sigma_t z
    return StepOutput(_combine(x0_pred, eps, alpha_bar_next, sigma, noise, generator), x0_pred)


# ----------------------------------------------------------------------------------------
# Time grids
# ----------------------------------------------------------------------------------------
def _check_grid(grid: Sequence[int], num_train_timesteps: int) -> list[int]:
    grid = [int(t) for t in grid]
    if len(grid) < 2:
        raise ValueError(f"a time grid needs at least 2 entries, got {grid}")
    if any(b <= a for a, b in zip(grid[:-1], grid[1:])):
        raise ValueError(f"a time grid must be strictly increasing, got {grid}")
    if grid[0] < -1 or grid[-1] >= num_train_timesteps:
        raise ValueError(f"grid entries must lie in [-1, {num_train_timesteps}), got {grid[0]}..{grid[-1]}")
    return grid


def diffusers_grid(scheduler, num_inference_steps: int) -> list[int]:
    """The grid of a diffusers scheduler after ``set_timesteps``: ``[-1] + sorted(timesteps)``.

    Its last DDIM step goes to ``final_alpha_cumprod`` (1 with ``set_alpha_to_one=True``),
    which this book writes as t = -1. Pass that value to :func:`alpha_bar_at` if it is not 1.
    """
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    scheduler.set_timesteps(num_inference_steps)
    return [-1] + sorted(int(t) for t in scheduler.timesteps)


def diffusionclip_grid(depth: int, num_steps: int) -> list[int]:
    """DiffusionCLIP's grid: ``seq = int(linspace(0, 1, S) * t0)`` with ``-1`` in front, where
    ``depth`` is its return step t_0 (the book calls every paper's edit depth ``depth``).

    Generation runs ``(seq[i] -> seq_next[i])`` with ``seq_next = [-1] + seq[:-1]``, downwards
    from t_0 to the clean image. Its inversion starts from x0 *as if at t = 0* (``seq[0]``), so
    for a faithful inversion use ``diffusionclip_grid(depth, S)[1:]``.
    """
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    if depth < num_steps - 1:
        raise ValueError(f"depth ({depth}) must be >= num_steps - 1 ({num_steps - 1}) for distinct timesteps")
    seq = [int(s) for s in np.linspace(0, 1, num_steps) * depth]
    return [-1] + seq


def even_grid(depth: int, num_steps: int) -> list[int]:
    """``num_steps`` steps from ``depth`` to the clean image, evenly spaced: ``[-1, ..., depth]``."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if depth < num_steps - 1:
        raise ValueError(f"depth ({depth}) must be >= num_steps - 1 ({num_steps - 1})")
    upper = np.linspace(depth, -1, num_steps + 1)[:-1]  # num_steps timesteps above the clean image
    return [-1] + sorted({int(round(t)) for t in upper})


# ----------------------------------------------------------------------------------------
# Sampling without and with gradients
# ----------------------------------------------------------------------------------------
def reverse_pairs(grid: Sequence[int]) -> list[tuple[int, int]]:
    """The steps ``(t, t_prev)`` of a generation down ``grid``, top first."""
    return list(zip(reversed(grid[1:]), reversed(grid[:-1])))


@dataclass
class SampleOutput:
    x0: torch.Tensor
    """The final sample (B, C, H, W)."""
    x0_preds: list[torch.Tensor] = field(default_factory=list)
    """P_t at every step, if requested (top of the grid first)."""
    x_ts: list[torch.Tensor] = field(default_factory=list)
    """x_t at every step, if requested (x_T first)."""


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    x_t: torch.Tensor,
    grid: Sequence[int],
    alphas_cumprod: torch.Tensor,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    noises: Sequence[torch.Tensor] | None = None,
    sigmas: Sequence[float] | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    clip_x0: bool = False,
) -> SampleOutput:
    """Run the reverse process from ``x_t`` at level ``grid[-1]`` down the grid to ``grid[0]``.

    ``noises[i]`` (and optionally ``sigmas[i]``) give step i's z explicitly, top step first;
    this is how edit-friendly DDPM inversion replays its noise maps. ``clip_x0`` clips every P_t to
    [-1, 1] (DDPM's sampler and diffusers' ``clip_sample=True``); off by default, since inversion
    and exact replay need the unclipped step.
    """
    grid = _check_grid(grid, len(alphas_cumprod))
    steps = reverse_pairs(grid)
    if noises is not None and len(noises) != len(steps):
        raise ValueError(f"noises must have one entry per step ({len(steps)}), got {len(noises)}")
    if sigmas is not None and len(sigmas) != len(steps):
        raise ValueError(f"sigmas must have one entry per step ({len(steps)}), got {len(sigmas)}")
    out = SampleOutput(x_t)
    for i, (t, t_prev) in enumerate(tqdm(steps, desc="sampling", disable=not progress, leave=False)):
        eps = denoiser(x_t, t)
        step = ddim_step(
            x_t, eps, alpha_bar_at(alphas_cumprod, t), alpha_bar_at(alphas_cumprod, t_prev), eta,
            noise=None if noises is None else noises[i], generator=generator,
            sigma=None if sigmas is None else sigmas[i], clip_x0=clip_x0,
        )
        if return_trajectory:
            out.x_ts.append(x_t)
            out.x0_preds.append(step.x0_pred)
        x_t = step.x_next
    out.x0 = x_t
    return out


@dataclass
class GradSampleOutput:
    x0: torch.Tensor
    """The final sample: in the autograd graph of the whole chain (``on_step=None``), else detached."""
    step_results: list = field(default_factory=list)
    """What ``on_step`` returned at every step, top first (per-step mode only)."""


StepCallback = Callable[[int, int, StepOutput], object]
"""``on_step(i, t, step)``: step index i (0 = the noisiest), its timestep t, and the step's
x_next and P_t, both still in the graph of this step's denoiser call."""


def sample_with_grad(
    denoiser: Denoiser,
    x_t: torch.Tensor,
    grid: Sequence[int],
    alphas_cumprod: torch.Tensor,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    on_step: StepCallback | None = None,
    progress: bool = False,
) -> GradSampleOutput:
    """The reverse process with autograd on, in the two modes DiffusionCLIP fine-tunes with.

    * ``on_step=None`` -- **the whole chain**: every step stays in the graph, so a loss on the
      returned ``x0`` back-propagates through all denoiser calls to the weights and to ``x_t``
      (DiffusionCLIP's fine-tuning as its eq. 10 writes it; its latent-optimisation baseline).
      Memory grows with the number of steps.
    * ``on_step`` given -- **per step**: each step starts from a *detached* x_t, so the graph holds
      one denoiser call; ``on_step(i, t, step)`` runs right after it and may compute a loss on
      ``step.x0_pred`` (P_t), call ``backward`` and step an optimiser (DiffusionCLIP's
      GPU-efficient mode; ZIP's training). Memory stays that of one step.

    With a one-step grid both modes give the same x0, the same loss and the same gradient.
    """
    grid = _check_grid(grid, len(alphas_cumprod))
    out = GradSampleOutput(x_t)
    with torch.enable_grad():
        for i, (t, t_prev) in enumerate(tqdm(reverse_pairs(grid), desc="sampling (grad)", disable=not progress,
                                             leave=False)):
            if on_step is not None:
                x_t = x_t.detach()
            eps = denoiser(x_t, t)
            step = ddim_step(x_t, eps, alpha_bar_at(alphas_cumprod, t), alpha_bar_at(alphas_cumprod, t_prev), eta,
                             generator=generator)
            if on_step is not None:
                out.step_results.append(on_step(i, t, step))
            x_t = step.x_next
    out.x0 = x_t.detach() if on_step is not None else x_t
    return out
