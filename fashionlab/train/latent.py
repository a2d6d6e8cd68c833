"""Training the latent text-to-image model of chapter 08: its autoencoder and its conditional UNet.

Chapter: "Stable Diffusion and LoRA" (``notebooks/08_stable_diffusion_lora.py``); zoo recipes
``garments-vae`` and ``garments-sd-base``.

* :func:`train_vae`: Rombach et al. (2022) train the KL autoencoder with an L1 reconstruction
  loss, a perceptual loss (LPIPS), a patch-GAN loss and a KL term weighted 1e-6. Here: L1 + KL
  only. LPIPS needs ImageNet weights we cannot download, and a perceptual loss on our own oracle
  would flatter every later oracle-based score (FID/KID on oracle features); no GAN, to keep the
  recipe short and stable. The price is softer fine detail, which the recipe's PSNR reports.
* :func:`train_ldm`: the latent diffusion loss, eq. (2) of Rombach et al. with text conditioning:
  L = E || target - UNet(z_t, t, tau(y)) ||^2 on z = scaling_factor * E(x), where the target is eps
  or v as the scheduler's ``prediction_type`` says, and tau is the frozen text encoder. Captions are
  dropped (replaced by "") with probability ``caption_dropout`` so that classifier-free guidance
  has an unconditional model to extrapolate from (Ho & Salimans, 2022).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from ..diffusion.core import PREDICTION_TYPES, SCHEDULE_KEYS, noise_to
from .ddpm import update_ema
from .loop import OptimConfig, backward_step, build_optimizer, fit, load_checkpoint, make_accelerator


@dataclass(frozen=True)
class VAETrainConfig:
    """Hyperparameters of :func:`train_vae`."""

    batch_size: int = 32
    learning_rate: float = 1e-3
    """Peak AdamW learning rate (LDM: 4.5e-6 x batch for its large autoencoders; ours is tiny)."""
    warmup_steps: int = 100
    total_steps: int = 3000
    min_lr_ratio: float = 0.05
    kl_weight: float = 1e-6
    """Weight of the KL term to N(0, I), as in LDM's KL-f8 autoencoders."""
    grad_clip: float = 1.0
    bf16: bool = True
    checkpoint_minutes: float = 5.0
    log_every: int = 25
    seed: int = 0

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(self.learning_rate, self.total_steps, 0.0, self.warmup_steps, self.min_lr_ratio,
                           grad_clip=self.grad_clip)


def vae_loss(vae, images: torch.Tensor, generator: torch.Generator, kl_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, L1) of one batch: decode a sample of the posterior, L1 to the input, plus
    ``kl_weight`` x the KL divergence of the posterior to N(0, I) (summed over latent elements,
    averaged over the batch, as LDM does)."""
    posterior = vae.encode(images).latent_dist
    recon = vae.decode(posterior.sample(generator=generator)).sample
    l1 = (recon.float() - images).abs().mean()
    kl = posterior.kl().float().mean()
    return l1 + kl_weight * kl, l1


def train_vae(vae, sample_batch: Callable[[torch.Generator, int], torch.Tensor], cfg: VAETrainConfig,
              workdir: str | Path, minutes: float | None = None, max_steps: int | None = None,
              resume: bool = False, progress: bool = True) -> tuple[int, float]:
    """Train ``vae`` (a diffusers ``AutoencoderKL``) on batches of ``sample_batch(generator, B)``
    (images in [-1, 1]); checkpoints and ``loss.csv`` (with the L1 column) go to ``workdir``.
    Returns (steps in all, minutes in all)."""
    if cfg.batch_size < 1 or cfg.total_steps < 1:
        raise ValueError(f"batch_size and total_steps must be >= 1, got {cfg.batch_size}, {cfg.total_steps}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg.bf16)
    optimizer, schedule = build_optimizer(vae.parameters(), cfg.optim)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    step, minutes_before = 0, 0.0
    run_config = asdict(cfg)
    if resume:
        state = load_checkpoint(workdir / "checkpoint.pt", run_config, vae, optimizer, schedule)
        data_gen.set_state(state["data_rng"])
        noise_gen.set_state(state["noise_rng"])
        step, minutes_before = state["step"], state["minutes"]
    vae, optimizer = accelerator.prepare(vae, optimizer)
    last_l1 = [0.0]

    def compute_loss() -> torch.Tensor:
        images = sample_batch(data_gen, cfg.batch_size).to(accelerator.device)
        with accelerator.autocast():
            loss, l1 = vae_loss(vae, images, noise_gen, cfg.kl_weight)
        last_l1[0] = float(l1.detach())
        return loss

    vae.train()
    result = fit(model=vae, optimizer=optimizer, schedule=schedule, accelerator=accelerator,
                 step_fn=backward_step(accelerator, compute_loss), workdir=workdir, config=run_config,
                 total_steps=cfg.total_steps, batch_size=cfg.batch_size, grad_clip=cfg.grad_clip,
                 log_every=cfg.log_every, checkpoint_minutes=cfg.checkpoint_minutes, step=step,
                 minutes_before=minutes_before,
                 extra_state=lambda: {"data_rng": data_gen.get_state(), "noise_rng": noise_gen.get_state()},
                 log_columns=("l1",), log_values=lambda: [f"{last_l1[0]:.4f}"], minutes=minutes,
                 max_steps=max_steps, fresh_log=not resume, progress=progress, desc="vae")
    return result.steps, result.minutes


@dataclass(frozen=True)
class LDMTrainConfig:
    """Hyperparameters of :func:`train_ldm`."""

    batch_size: int = 64
    learning_rate: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    total_steps: int = 6000
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_max_decay: float = 0.999
    caption_dropout: float = 0.1
    """Share of captions replaced by "" (the unconditional model of classifier-free guidance)."""
    bf16: bool = True
    checkpoint_minutes: float = 10.0
    log_every: int = 25
    seed: int = 0

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(self.learning_rate, self.total_steps, self.weight_decay, self.warmup_steps,
                           self.min_lr_ratio, grad_clip=self.grad_clip)


def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """The text encoder's last hidden states (B, L, D) for ``prompts``, padded to the tokenizer's
    ``model_max_length``, as ``StableDiffusionPipeline.encode_prompt`` computes them."""
    device = next(text_encoder.parameters()).device
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(device)
    return text_encoder(ids)[0]


def ldm_loss(unet, noise_scheduler, latents: torch.Tensor, text_states: torch.Tensor, generator: torch.Generator,
             autocast=None) -> torch.Tensor:
    """The latent diffusion loss of one batch: t ~ U{0..T-1}, eps ~ N(0, I),
    z_t = sqrt(abar_t) z + sqrt(1 - abar_t) eps, MSE of the UNet's output to eps or to
    v = sqrt(abar_t) eps - sqrt(1 - abar_t) z (the scheduler's ``prediction_type``)."""
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"noise_scheduler prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    eps = torch.randn(latents.shape, generator=generator)
    t, eps = t.to(latents.device), eps.to(latents.device)
    alpha_bar = noise_scheduler.alphas_cumprod.to(latents.device)[t].view(-1, 1, 1, 1)
    z_t = noise_to(latents, alpha_bar, eps)
    target = alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * latents if prediction_type == "v_prediction" else eps
    with (autocast() if autocast is not None else torch.autocast("cpu", enabled=False)):
        pred = unet(z_t, t, encoder_hidden_states=text_states).sample
    return torch.nn.functional.mse_loss(pred.float(), target)


def train_ldm(unet, noise_scheduler, vae, tokenizer, text_encoder,
              sample_batch: Callable[[torch.Generator, int], tuple[torch.Tensor, list[str]]], cfg: LDMTrainConfig,
              workdir: str | Path, minutes: float | None = None, max_steps: int | None = None, resume: bool = False,
              progress: bool = True) -> tuple[int, float]:
    """Train ``unet`` (a ``UNet2DConditionModel``) on ``sample_batch(generator, B)`` -> (images in
    [-1, 1], captions), through the frozen ``vae`` (latents scaled by its ``scaling_factor``) and
    the frozen ``text_encoder``. EMA weights, RNG states and the optimiser go into the checkpoint;
    the zoo ships the EMA. Returns (steps in all, minutes in all)."""
    if cfg.batch_size < 1 or cfg.total_steps < 1:
        raise ValueError(f"batch_size and total_steps must be >= 1, got {cfg.batch_size}, {cfg.total_steps}")
    if not 0 <= cfg.caption_dropout < 1:
        raise ValueError(f"caption_dropout must be in [0, 1), got {cfg.caption_dropout}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(cfg.bf16)
    optimizer, schedule = build_optimizer(unet.parameters(), cfg.optim)
    ema = [p.detach().clone() for p in unet.parameters()]
    data_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    step, minutes_before = 0, 0.0
    run_config = {**asdict(cfg), "noise_schedule": {k: noise_scheduler.config.get(k) for k in SCHEDULE_KEYS}}
    if resume:
        state = load_checkpoint(workdir / "checkpoint.pt", run_config, unet, optimizer, schedule)
        for p_ema, saved in zip(ema, state["ema"]):
            p_ema.copy_(saved)
        data_gen.set_state(state["data_rng"])
        noise_gen.set_state(state["noise_rng"])
        step, minutes_before = state["step"], state["minutes"]
    vae.requires_grad_(False).eval()
    text_encoder.requires_grad_(False).eval()
    scaling = float(vae.config.scaling_factor)
    unet, optimizer = accelerator.prepare(unet, optimizer)

    def compute_loss() -> torch.Tensor:
        images, captions = sample_batch(data_gen, cfg.batch_size)
        drop = torch.rand(len(captions), generator=data_gen) < cfg.caption_dropout
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        with torch.no_grad(), accelerator.autocast():
            latents = vae.encode(images.to(accelerator.device)).latent_dist.sample(generator=noise_gen).float() * scaling
            text_states = encode_prompts(tokenizer, text_encoder, captions).float()
        return ldm_loss(unet, noise_scheduler, latents, text_states, noise_gen, accelerator.autocast)

    def after_step(step_done: int) -> None:
        update_ema(ema, accelerator.unwrap_model(unet).parameters(), step_done, cfg.ema_max_decay)

    unet.train()
    result = fit(model=unet, optimizer=optimizer, schedule=schedule, accelerator=accelerator,
                 step_fn=backward_step(accelerator, compute_loss), workdir=workdir, config=run_config,
                 total_steps=cfg.total_steps, batch_size=cfg.batch_size, grad_clip=cfg.grad_clip,
                 log_every=cfg.log_every, checkpoint_minutes=cfg.checkpoint_minutes, step=step,
                 minutes_before=minutes_before,
                 extra_state=lambda: {"ema": [p.detach().cpu() for p in ema], "data_rng": data_gen.get_state(),
                                      "noise_rng": noise_gen.get_state()},
                 after_step=after_step, minutes=minutes, max_steps=max_steps, fresh_log=not resume,
                 progress=progress, desc="ldm")
    return result.steps, result.minutes
