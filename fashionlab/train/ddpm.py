"""The DDPM trainer: epsilon-prediction MSE, AdamW, EMA, gradient clipping, bf16 autocast,
timed checkpoints with resume, and a CSV loss log.

Chapter: "Diffusion in one notebook" (``notebooks/02_diffusion_basics.py``); used by the zoo
recipes (``fashionlab/zoo/recipes.py``).

The objective is eq. (14) of Ho et al. (2020), the "simple" loss every paper in the book uses:

    L = E_{x0, eps, t} || eps - eps_theta( sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t ) ||^2

The loop runs through Hugging Face Accelerate, so the same recipe runs on this CPU, on one
Colab GPU, or under ``accelerate launch`` on several GPUs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from ..diffusion.core import PREDICTION_TYPES, SCHEDULE_KEYS, noise_to
from .loop import OptimConfig, backward_step, build_optimizer, fit, load_checkpoint, make_accelerator, read_checkpoint


@dataclass(frozen=True)
class DDPMTrainConfig:
    """Hyperparameters of :func:`train_ddpm`."""

    batch_size: int = 32
    """Images per step. Batch 32 beat 64 per wall-clock minute on the 2-core CPU (probe notes)."""
    learning_rate: float = 5e-4
    """Peak AdamW learning rate (our tuning for small UNets; DDPM used 2e-4 for 35M parameters)."""
    weight_decay: float = 0.0
    """AdamW weight decay (DDPM and ADM use none)."""
    warmup_steps: int = 200
    """Linear learning-rate warm-up (DDPM used 5000 at a far larger scale)."""
    total_steps: int = 8000
    """Planned steps; the learning rate follows a cosine from the peak to ``min_lr_ratio`` of it."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak."""
    grad_clip: float = 1.0
    """Global gradient-norm clip (as in DDPM's code)."""
    ema_max_decay: float = 0.999
    """Cap of the EMA decay; the decay warms up as 1 - (1 + step)^(-2/3) (diffusers' EMAModel)."""
    bf16: bool = True
    """bf16 autocast where the CPU (or GPU) supports it; weights and optimiser stay fp32."""
    checkpoint_minutes: float = 10.0
    """Write the resume state at least this often (and at the end)."""
    log_every: int = 25
    """Steps between loss-log rows."""
    seed: int = 0
    """Seed of the explicit generators for data order, noise and timesteps."""

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(self.learning_rate, self.total_steps, self.weight_decay, self.warmup_steps,
                           self.min_lr_ratio, grad_clip=self.grad_clip)


@dataclass
class TrainResult:
    steps: int
    minutes: float
    final_loss: float
    finished: bool


def ema_decay(step: int, max_decay: float) -> float:
    return min(max_decay, 1.0 - (1.0 + step) ** (-2.0 / 3.0))


@torch.no_grad()
def update_ema(ema: list[torch.Tensor], parameters, step: int, max_decay: float) -> None:
    """One EMA update of ``ema`` (CPU copies) towards ``parameters``, with the warm-up decay of
    diffusers' EMAModel (:func:`ema_decay`)."""
    decay = ema_decay(step, max_decay)
    for p_ema, p in zip(ema, parameters):
        p_ema.mul_(decay).add_(p.detach().cpu(), alpha=1 - decay)


def train_ddpm(
    model: torch.nn.Module,
    noise_scheduler,
    sample_batch: Callable[[torch.Generator, int], torch.Tensor],
    cfg: DDPMTrainConfig,
    workdir: str | Path,
    minutes: float | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` (a diffusers ``UNet2DModel``) to predict noise; return a :class:`TrainResult`.

    ``sample_batch(generator, batch_size)`` returns clean images (B, 3, H, W) in [-1, 1].
    ``workdir`` receives ``checkpoint.pt`` (model, EMA, optimiser, schedule, step, RNG states)
    and ``loss.csv``. Training stops after ``minutes`` of wall-clock time, ``max_steps`` steps,
    or ``cfg.total_steps``, whichever comes first; with ``resume=True`` it continues from
    ``workdir/checkpoint.pt``. The EMA weights are what the zoo ships.
    """
    if cfg.batch_size < 1 or cfg.total_steps < 1:
        raise ValueError(f"batch_size and total_steps must be >= 1, got {cfg.batch_size}, {cfg.total_steps}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg.bf16)
    device = accelerator.device
    optimizer, lr_schedule = build_optimizer(model.parameters(), cfg.optim)
    ema = [p.detach().clone() for p in model.parameters()]
    data_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    step, minutes_before = 0, 0.0
    # What a resumed run must share with the checkpoint: the hyperparameters and the noise schedule.
    run_config = {**asdict(cfg), "noise_schedule": {k: noise_scheduler.config.get(k) for k in SCHEDULE_KEYS}}
    if resume:
        state = load_checkpoint(workdir / "checkpoint.pt", run_config, model, optimizer, lr_schedule)
        for p_ema, saved in zip(ema, state["ema"]):
            p_ema.copy_(saved)
        data_gen.set_state(state["data_rng"])
        noise_gen.set_state(state["noise_rng"])
        step, minutes_before = state["step"], state["minutes"]
    model, optimizer = accelerator.prepare(model, optimizer)
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(device)
    num_train_timesteps = noise_scheduler.config.num_train_timesteps
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"noise_scheduler prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    v_target = prediction_type == "v_prediction"

    def compute_loss() -> torch.Tensor:
        # 1. x0 ~ data; t ~ U{0..T-1}; eps ~ N(0, I)
        x0 = sample_batch(data_gen, cfg.batch_size).to(device)
        t = torch.randint(0, num_train_timesteps, (x0.shape[0],), generator=noise_gen).to(device)
        eps = torch.randn(x0.shape, generator=noise_gen).to(device)
        # 2. x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps   (forward process, eq. 4 of DDPM)
        alpha_bar_t = alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = noise_to(x0, alpha_bar_t, eps)
        # 3. L_simple = || eps - eps_theta(x_t, t) ||^2, or the same on v (Salimans & Ho, 2022):
        #    v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0
        target = alpha_bar_t.sqrt() * eps - (1 - alpha_bar_t).sqrt() * x0 if v_target else eps
        with accelerator.autocast():
            pred = model(x_t, t).sample
        return torch.nn.functional.mse_loss(pred.float(), target)

    def after_step(step_done: int) -> None:
        # 4. EMA of the weights, with the warm-up decay of diffusers' EMAModel
        update_ema(ema, accelerator.unwrap_model(model).parameters(), step_done, cfg.ema_max_decay)

    model.train()
    result = fit(model=model, optimizer=optimizer, schedule=lr_schedule, accelerator=accelerator,
                 step_fn=backward_step(accelerator, compute_loss), workdir=workdir, config=run_config, total_steps=cfg.total_steps,
                 batch_size=cfg.batch_size, grad_clip=cfg.grad_clip, log_every=cfg.log_every,
                 checkpoint_minutes=cfg.checkpoint_minutes, step=step, minutes_before=minutes_before,
                 extra_state=lambda: {"ema": [p.detach().cpu() for p in ema], "data_rng": data_gen.get_state(),
                                      "noise_rng": noise_gen.get_state()},
                 after_step=after_step, minutes=minutes, max_steps=max_steps, fresh_log=not resume,
                 progress=progress, desc="ddpm")
    return TrainResult(result.steps, result.minutes, result.last_loss, result.steps >= cfg.total_steps)


def load_ema_weights(model: torch.nn.Module, workdir: str | Path, state: dict | None = None) -> torch.nn.Module:
    """Copy the EMA weights of ``workdir/checkpoint.pt`` (or of an already read ``state``) into
    ``model`` (in place) and return it."""
    state = read_checkpoint(workdir) if state is None else state
    with torch.no_grad():
        for p, saved in zip(model.parameters(), state["ema"]):
            p.copy_(saved)
    return model
