"""Text-to-image generation with a Stable Diffusion pipeline, the same call under both profiles.

Chapter: "Stable Diffusion and LoRA" (``notebooks/08_stable_diffusion_lora.py``); the command line
``python -m fashionlab generate`` and chapter 10's visual generator call :func:`generate`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..models.clip import check_prompts


def generate(pipe, prompts: Sequence[str] | str, seed: int = 0, steps: int = 25, guidance: float = 4.0,
             batch_size: int = 32, negative_prompt: str | None = None, progress: bool = False) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] for ``prompts`` from ``pipe`` (a ``StableDiffusionPipeline``).

    Prompt ``i`` draws its initial latent from ``torch.Generator().manual_seed(seed + i)``, so an
    image does not depend on the batch it was generated in. ``steps`` DDIM steps (eta 0) with
    classifier-free guidance of scale ``guidance`` (1 = none)."""
    prompts = check_prompts(prompts)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if guidance < 1:
        raise ValueError(f"guidance must be >= 1 (1 turns classifier-free guidance off), got {guidance}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    out = []
    from tqdm.auto import tqdm

    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress):
        chunk = prompts[start:start + batch_size]
        generators = [torch.Generator().manual_seed(seed + start + k) for k in range(len(chunk))]
        latents = torch.stack([torch.randn(pipe.unet.config.in_channels, pipe.unet.config.sample_size,
                                           pipe.unet.config.sample_size, generator=g) for g in generators])
        result = pipe(list(chunk), num_inference_steps=steps, guidance_scale=guidance, output_type="pt",
                      latents=latents.to(pipe.device, pipe.unet.dtype),
                      negative_prompt=None if negative_prompt is None else [negative_prompt] * len(chunk))
        out.append(result.images.float().cpu() * 2 - 1)
    return torch.cat(out)
