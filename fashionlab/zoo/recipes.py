"""Zoo recipes: how each shipped ``tiny`` model is trained, runnable from the command line.

    python -m fashionlab.zoo train garments-ddpm-64 [--resume] [--minutes M]

Each recipe fixes the architecture, the data (Garments seed and domain) and the training
hyperparameters, so a model in ``weights/`` can be re-made from this file alone. Resume state
lives in ``training/<name>/`` at the repository root (model, EMA, optimiser, step, RNG).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.garments import render, spec_for, to_tensor
from ..diffusion.train import DDPMTrainConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_DIR = REPO_ROOT / "training"


@dataclass(frozen=True)
class DDPMRecipe:
    """A pixel-space DDPM trained on Garments."""

    name: str
    unet: dict
    """``UNet2DModel`` keyword arguments."""
    scheduler: dict
    """``DDPMScheduler`` keyword arguments (the forward process the model is trained for)."""
    train: DDPMTrainConfig
    data_seed: int = 0
    """Garments seed of the training images; evaluation uses other seeds."""
    data_size: int = 1_000_000
    """Indices drawn from ``[0, data_size)``: effectively fresh renders every step."""
    domain: str = "in"
    """Only in-domain garments (photo style, no extras): the "unseen domains" stay unseen."""
    notes: str = field(default="")


GARMENTS_DDPM_64 = DDPMRecipe(
    name="garments-ddpm-64",
    unet=dict(
        sample_size=64,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 128, 128),
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=32,
    ),
    scheduler=dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                   prediction_type="epsilon"),
    train=DDPMTrainConfig(batch_size=32, learning_rate=5e-4, total_steps=8000, warmup_steps=200),
    notes="4.3M-parameter UNet2DModel, self-attention at 8x8; about 23 images/s with bf16 on 2 cores.",
)

RECIPES: dict[str, DDPMRecipe] = {GARMENTS_DDPM_64.name: GARMENTS_DDPM_64}


def get_recipe(name: str) -> DDPMRecipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name]


def build_unet(recipe: DDPMRecipe):
    from diffusers import UNet2DModel

    return UNet2DModel(**recipe.unet)


def build_scheduler(recipe: DDPMRecipe):
    from diffusers import DDPMScheduler

    return DDPMScheduler(**recipe.scheduler)


def garments_batch_sampler(seed: int, size: int, data_size: int, domain: str):
    """``sample(generator, B)`` -> (B, 3, size, size) renders of random Garments indices."""

    def sample(generator: torch.Generator, batch_size: int) -> torch.Tensor:
        indices = torch.randint(0, data_size, (batch_size,), generator=generator).tolist()
        return torch.stack([to_tensor(render(spec_for(seed, i, domain), size).image) for i in indices])

    return sample


def run_recipe(name: str, minutes: float | None = None, max_steps: int | None = None, resume: bool = False,
               workdir: Path | None = None, progress: bool = True):
    """Train recipe ``name``; returns the :class:`~fashionlab.diffusion.train.TrainResult`."""
    from ..diffusion.train import train_ddpm

    recipe = get_recipe(name)
    torch.manual_seed(recipe.train.seed)  # only for parameter initialisation inside diffusers
    model = build_unet(recipe)
    sampler = garments_batch_sampler(recipe.data_seed, recipe.unet["sample_size"], recipe.data_size, recipe.domain)
    return train_ddpm(model, build_scheduler(recipe), sampler, recipe.train,
                      workdir or TRAINING_DIR / name, minutes=minutes, max_steps=max_steps, resume=resume,
                      progress=progress)
