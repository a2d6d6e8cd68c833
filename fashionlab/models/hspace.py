"""A diffusers ``UNet2DModel`` split at its bottleneck: encoder -> (h, skips, temb) -> decoder.

Chapter: "ZIP" (paper 004, after Asyrp): h-space is the output of the UNet's middle block. Asyrp
and ZIP edit it (h + delta-h) while the decoder keeps the *original* skip connections, so one
step runs the encoder once and the decoder twice (edited and original eps; see
:func:`fashionlab.diffusion.core.reverse_step`).

==============  ==========================================================================
code            meaning
==============  ==========================================================================
``h``           the middle block's output (B, C_mid, H / 2^k, W / 2^k): "h-space"
``skips``       the down path's residual outputs, which the up blocks consume
``temb``        the time embedding every resnet block receives
==============  ==========================================================================

:func:`encode` and :func:`decode` replay ``UNet2DModel.forward`` (diffusers 0.3x) step by step;
``decode(*encode(unet, x, t))`` equals ``unet(x, t).sample`` (a test checks it). Class
conditioning, skip-sample blocks (``AttnSkipDownBlock2D``) and Fourier time embeddings are refused:
none of the book's pixel UNets uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class HSpace:
    """What the encoder hands the decoder."""

    h: torch.Tensor
    skips: tuple[torch.Tensor, ...]
    temb: torch.Tensor


def check_splittable(unet: torch.nn.Module) -> None:
    """Raise ``ValueError`` unless ``unet`` is a ``UNet2DModel`` this module can split."""
    config = getattr(unet, "config", None)
    if config is None or not hasattr(unet, "mid_block") or not hasattr(unet, "down_blocks"):
        raise ValueError(f"unet must be a diffusers UNet2DModel, got {type(unet).__name__}")
    if getattr(unet, "class_embedding", None) is not None:
        raise ValueError("class-conditional UNets are not supported by the h-space split")
    if unet.mid_block is None:
        raise ValueError("the UNet has no middle block, so it has no h-space")
    if config.time_embedding_type == "fourier":
        raise ValueError("Fourier time embeddings are not supported by the h-space split")
    if any(hasattr(block, "skip_conv") for block in list(unet.down_blocks) + list(unet.up_blocks)):
        raise ValueError("skip-sample blocks (AttnSkip*) are not supported by the h-space split")


def _timesteps(t: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    if not torch.is_tensor(t):
        t = torch.tensor([int(t)], dtype=torch.long, device=device)
    elif t.dim() == 0:
        t = t[None].to(device)
    return t * torch.ones(batch, dtype=t.dtype, device=t.device)


def encode(unet: torch.nn.Module, x_t: torch.Tensor, t: int | torch.Tensor) -> HSpace:
    """The UNet's time embedding, input convolution, down blocks and middle block."""
    check_splittable(unet)
    sample = 2 * x_t - 1.0 if unet.config.center_input_sample else x_t
    t_emb = unet.time_proj(_timesteps(t, x_t.shape[0], x_t.device)).to(dtype=unet.dtype)
    temb = unet.time_embedding(t_emb)
    sample = unet.conv_in(sample)
    skips: tuple[torch.Tensor, ...] = (sample,)
    for block in unet.down_blocks:
        sample, res_samples = block(hidden_states=sample, temb=temb)
        skips += res_samples
    return HSpace(unet.mid_block(sample, temb), skips, temb)


def decode(unet: torch.nn.Module, h: torch.Tensor, skips: tuple[torch.Tensor, ...], temb: torch.Tensor) -> torch.Tensor:
    """The up blocks (consuming ``skips``) and the output head, from ``h``: the model's raw output
    (eps, v, or eps with a variance half, as the UNet was trained)."""
    sample = h
    for block in unet.up_blocks:
        n = len(block.resnets)
        res_samples, skips = skips[-n:], skips[:-n]
        sample = block(sample, res_samples, temb)
    sample = unet.conv_norm_out(sample)
    sample = unet.conv_act(sample)
    return unet.conv_out(sample)


def forward(unet: torch.nn.Module, x_t: torch.Tensor, t: int | torch.Tensor,
            delta_h: torch.Tensor | None = None) -> torch.Tensor:
    """The UNet's output with ``delta_h`` added to h (None: the plain forward)."""
    space = encode(unet, x_t, t)
    h = space.h if delta_h is None else space.h + delta_h
    return decode(unet, h, space.skips, space.temb)
