"""LoRA fine-tuning of a Stable Diffusion UNet on catalog captions (paper 002).

Chapter: "Stable Diffusion and LoRA" (``notebooks/08_stable_diffusion_lora.py``).

LoRA (Hu et al., 2021) freezes a weight W (d x k) and learns a low-rank update:

    h = W x + (alpha / r) B A x,   B (d x r) zero at the start, A (r x k) Gaussian

so the fine-tuned model starts exactly at the base model. As in paper 002 and diffusers'
``train_text_to_image_lora.py``, the adapters sit on the attention projections ``to_q``, ``to_k``,
``to_v`` and ``to_out.0`` of every attention block of the UNet (self- and cross-attention); the
VAE and the text encoder stay frozen. Adapters are made with peft (``LoraConfig``), trained
through the book's one training loop with Accelerate, saved in diffusers' LoRA format
(``save_lora_weights``) and loaded back with ``pipe.load_lora_weights``.

The data are catalog rows (:mod:`fashionlab.data.catalog`) with the paper's captions
(:func:`~fashionlab.data.catalog.caption_from_row`). The VAE latents' mean and std and the text
states are computed once (both models are frozen), and a latent is sampled from them at every step,
which is the same computation as encoding every step.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..config import check_number, seeded
from ..models.clip import check_prompts
from ..train.latent import encode_prompts, ldm_loss
from ..train.loop import OptimConfig, backward_step, build_optimizer, fit, make_accelerator

TARGET_MODULES: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")


@dataclass(frozen=True)
class LoRAConfig:
    """One LoRA run. Defaults: paper 002's chosen setting (rank 4, lr 5e-5, batch 3, 20 epochs)."""

    rank: int = 4
    alpha: float | None = None
    """LoRA's alpha; None: alpha = rank (scale 1), as diffusers' example sets it."""
    learning_rate: float = 5e-5
    batch_size: int = 3
    epochs: int = 20
    weight_decay: float = 1e-2
    """AdamW weight decay (diffusers' example: 1e-2)."""
    warmup_steps: int = 0
    """The example's default "constant" schedule: no warm-up, no decay."""
    grad_clip: float = 1.0
    bf16: bool = True
    """Mixed precision: bf16 autocast where the hardware has it, else fp16 on a GPU (a T4), else fp32."""
    gradient_checkpointing: bool = False
    """Recompute the UNet's activations in the backward pass (diffusers' ``enable_gradient_checkpointing``):
    much less memory for some more time. The ``full`` run on Stable Diffusion at 512 px turns it on."""
    seed: int = 0
    save_epochs: tuple[int, ...] = (1, 11, 20)
    """Epochs after which the adapter is saved (the paper's early / mid / late stages)."""
    target_modules: tuple[str, ...] = field(default=TARGET_MODULES)

    def __post_init__(self) -> None:
        check_number("rank", self.rank, 1, integer=True)
        if self.alpha is not None:
            check_number("alpha", self.alpha, 0, low_open=True)  # None: alpha = rank
        check_number("learning_rate", self.learning_rate, 0, low_open=True)
        check_number("batch_size", self.batch_size, 1, integer=True)
        check_number("epochs", self.epochs, 1, integer=True)
        check_number("weight_decay", self.weight_decay, 0)
        check_number("warmup_steps", self.warmup_steps, 0, integer=True)
        check_number("grad_clip", self.grad_clip, 0, low_open=True)
        check_number("seed", self.seed, 0, integer=True)
        bad = [e for e in self.save_epochs if not 1 <= e <= self.epochs]
        if bad:
            raise ValueError(f"save_epochs must lie in [1, epochs={self.epochs}], got {bad}")

    @property
    def scale(self) -> float:
        """alpha / r, the factor on B A x."""
        return (self.rank if self.alpha is None else self.alpha) / self.rank


def lora_config(cfg: LoRAConfig):
    """The peft ``LoraConfig`` of a run: A Gaussian, B zero, on :data:`TARGET_MODULES`."""
    from peft import LoraConfig

    return LoraConfig(r=cfg.rank, lora_alpha=cfg.rank if cfg.alpha is None else cfg.alpha,
                      init_lora_weights="gaussian", target_modules=list(cfg.target_modules))


def add_lora(unet, cfg: LoRAConfig, adapter_name: str = "default") -> int:
    """Freeze ``unet``, add a LoRA adapter to it (in place) and return its trainable-parameter count."""
    unet.requires_grad_(False)
    unet.add_adapter(lora_config(cfg), adapter_name=adapter_name)
    return sum(p.numel() for p in unet.parameters() if p.requires_grad)


def lora_state_dict(unet, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The adapter's weights in diffusers' key format (what ``save_lora_weights`` expects)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name=adapter_name))


def save_lora(unet, folder: str | Path, adapter_name: str = "default") -> Path:
    """Save ``unet``'s adapter in diffusers' LoRA format (``pytorch_lora_weights.safetensors``, with
    its rank and alpha as metadata); ``pipe.load_lora_weights(folder)`` loads it."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    metadata = unet.peft_config[adapter_name].to_dict()
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=lora_state_dict(unet, adapter_name),
                                              unet_lora_adapter_metadata=metadata, safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


@dataclass
class CaptionedLatents:
    """A catalog split, encoded once: the VAE posterior's mean and std (N, 4, h, w), the text states
    (N, L, D) of the captions, and the captions."""

    mean: torch.Tensor
    std: torch.Tensor
    text_states: torch.Tensor
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)


@torch.no_grad()
def encode_split(pipe, images: torch.Tensor, captions: list[str], batch_size: int = 64) -> CaptionedLatents:
    """Encode images in [-1, 1] and their captions with ``pipe``'s frozen VAE and text encoder;
    the latents are scaled by the VAE's ``scaling_factor``."""
    captions = check_prompts(captions)
    if len(captions) != len(images):
        raise ValueError(f"images and captions must pair up, got {len(images)} images and {len(captions)} captions")
    scaling = float(pipe.vae.config.scaling_factor)
    means, stds, states = [], [], []
    for start in range(0, len(images), batch_size):
        dist = pipe.vae.encode(images[start:start + batch_size].to(pipe.device)).latent_dist
        means.append(dist.mean.cpu() * scaling)
        stds.append(dist.std.cpu() * scaling)
        states.append(encode_prompts(pipe.tokenizer, pipe.text_encoder, captions[start:start + batch_size]).cpu())
    return CaptionedLatents(torch.cat(means), torch.cat(stds), torch.cat(states), captions)


VALIDATION_SEED = 1234


@torch.no_grad()
def validation_loss(unet, scheduler, data: CaptionedLatents, batch_size: int = 32) -> float:
    """The loss on ``data`` with fixed noise, fixed posterior samples and fixed timesteps (evenly
    spread over [0, T)): the same draw at every call, so that a change is the model's, not the
    sample's (paper 002's validation curve redrew them and was, in its words, unstable)."""
    g = torch.Generator().manual_seed(VALIDATION_SEED)
    n = len(data)
    t_all = torch.linspace(0, scheduler.config.num_train_timesteps - 1, n).round().long()
    z_all = data.mean + data.std * torch.randn(data.mean.shape, generator=g)
    eps_all = torch.randn(data.mean.shape, generator=g)
    abar = scheduler.alphas_cumprod
    device = next(unet.parameters()).device
    total = 0.0
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        z, eps, t = z_all[sl], eps_all[sl], t_all[sl]
        a = abar[t].view(-1, 1, 1, 1)
        z_t = a.sqrt() * z + (1 - a).sqrt() * eps
        target = a.sqrt() * eps - (1 - a).sqrt() * z if scheduler.config.prediction_type == "v_prediction" else eps
        pred = unet(z_t.to(device), t.to(device), encoder_hidden_states=data.text_states[sl].to(device)).sample
        total += float(((pred.float().cpu() - target) ** 2).mean()) * len(z)
    return total / n


@dataclass
class LoRARun:
    """What :func:`train_lora` returns: per-step training losses (averaged per log window), the
    validation loss after every epoch (epoch 0 = the base model), the saved adapter folders per
    epoch, the trainable-parameter count and the seconds spent."""

    losses: list[float]
    validation: dict[int, float]
    saved: dict[int, Path]
    trainable_parameters: int
    steps: int
    seconds: float
    config: dict


def train_lora(pipe, train: CaptionedLatents, cfg: LoRAConfig, workdir: str | Path | None = None,
               validation: CaptionedLatents | None = None, log_every: int = 10, progress: bool = True) -> LoRARun:
    """Add a LoRA adapter to ``pipe.unet`` and train it on ``train`` for ``cfg.epochs`` epochs of
    ``ceil(N / batch_size)`` steps, each epoch a fresh permutation drawn from ``cfg.seed`` (its last
    batch may be smaller). With ``validation``, :func:`validation_loss` before training and after
    every epoch. With ``workdir``, the adapter is saved in diffusers' format after each epoch of
    ``cfg.save_epochs`` (``workdir/epoch-<k>``). A's Gaussian initialisation is drawn from
    ``cfg.seed`` too, so a run is repeatable. The pipeline's UNet keeps the trained adapter, active,
    in eval mode."""
    unet, scheduler = pipe.unet, pipe.scheduler
    noise_scheduler = _training_scheduler(scheduler)
    with seeded(cfg.seed):  # peft draws A's Gaussian init from the global RNG
        trainable = add_lora(unet, cfg)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    params = [p for p in unet.parameters() if p.requires_grad]
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    accelerator = make_accelerator(cfg.bf16)
    optimizer, schedule = build_optimizer(params, OptimConfig(cfg.learning_rate, total_steps, cfg.weight_decay,
                                                              cfg.warmup_steps, 1.0, grad_clip=cfg.grad_clip))
    data_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
    order: list[int] = []
    val: dict[int, float] = {}
    saved: dict[int, Path] = {}
    workdir = None if workdir is None else Path(workdir)
    unet.eval()
    if validation is not None:
        val[0] = validation_loss(unet, noise_scheduler, validation)
    unet.train()
    unet, optimizer = accelerator.prepare(unet, optimizer)

    def compute_loss() -> torch.Tensor:
        nonlocal order
        if not order:
            order = torch.randperm(len(train), generator=data_gen).tolist()
        idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        z = train.mean[idx] + train.std[idx] * torch.randn(train.mean[idx].shape, generator=noise_gen)
        return ldm_loss(unet, noise_scheduler, z.to(accelerator.device), train.text_states[idx].to(accelerator.device),
                        noise_gen, accelerator.autocast)

    def end_of_epoch(step: int) -> None:
        if (step + 1) % steps_per_epoch:
            return
        epoch = (step + 1) // steps_per_epoch
        order.clear()
        model = accelerator.unwrap_model(unet)
        if validation is not None:
            model.eval()
            val[epoch] = validation_loss(model, noise_scheduler, validation)
            model.train()
        if workdir is not None and epoch in cfg.save_epochs:
            saved[epoch] = save_lora(model, workdir / f"epoch-{epoch}").parent

    start = time.time()
    result = fit(model=unet, optimizer=optimizer, schedule=schedule, accelerator=accelerator,
                 step_fn=backward_step(accelerator, compute_loss), total_steps=total_steps, grad_clip=cfg.grad_clip,
                 log_every=log_every, batch_size=cfg.batch_size, clip_params=params, after_step=end_of_epoch,
                 progress=progress, desc=f"lora r{cfg.rank}")
    accelerator.unwrap_model(unet).eval()
    return LoRARun(result.losses, val, saved, trainable, result.steps, time.time() - start, asdict(cfg))


def _training_scheduler(scheduler):
    """The DDPM forward process behind a pipeline's sampler (same betas and prediction type)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler.config)
