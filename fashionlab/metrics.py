"""Metrics on images in [-1, 1]: PSNR, and a crude foreground test for generated garments.

Chapter: "Diffusion in one notebook" (PSNR of inversion round trips; the sample-quality check
of ``garments-ddpm-64``). The edit metrics of chapter 04 will join them here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, for images in [-1, 1] (peak-to-peak range 2)."""
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(4.0 / mse.clamp(min=1e-12))


def foreground_mask(images: torch.Tensor, background_rgb: tuple[int, int, int], tolerance: float = 12.0) -> torch.Tensor:
    """(B, H, W) bool: pixels whose colour differs from ``background_rgb`` (0-255) by more than
    ``tolerance`` in some channel."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    rgb = (images.float().clamp(-1, 1) + 1) * 127.5
    bg = torch.tensor(background_rgb, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb - bg).abs().amax(dim=1) > tolerance


def connected_components(mask: torch.Tensor) -> list[torch.Tensor]:
    """8-connected components of each (H, W) mask in a (B, H, W) batch; returns one tensor of
    component sizes per image (largest first)."""
    if mask.dim() != 3:
        raise ValueError(f"mask must be (B, H, W), got {tuple(mask.shape)}")
    b, h, w = mask.shape
    fg = mask.float().unsqueeze(1)  # (B, 1, H, W)
    labels = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, 1, h, w).expand(b, 1, h, w) * fg
    while True:  # propagate the largest label through each component
        grown = F.max_pool2d(labels, 3, stride=1, padding=1) * fg
        if torch.equal(grown, labels):
            break
        labels = grown
    sizes = []
    for k in range(b):
        _, counts = torch.unique(labels[k][labels[k] > 0], return_counts=True)
        sizes.append(counts.sort(descending=True).values)
    return sizes


def single_region_rate(images: torch.Tensor, background_rgb: tuple[int, int, int], tolerance: float = 12.0,
                       min_pixels: int = 4, coverage: tuple[float, float] = (0.05, 0.8)) -> tuple[float, torch.Tensor]:
    """Share of images that show one garment on a clean background: the foreground (pixels off the
    background colour by more than ``tolerance``) is one connected region (components smaller than
    ``min_pixels`` are ignored as specks) and covers a share of the image within ``coverage`` (so
    that pure noise, which is "one region" everywhere, fails). Returns (rate, per-image bool)."""
    fg = foreground_mask(images, background_rgb, tolerance)
    share = fg.float().flatten(1).mean(dim=1)
    sizes = connected_components(fg)
    ok = torch.tensor([int((s >= min_pixels).sum()) == 1 for s in sizes])
    ok &= (share >= coverage[0]) & (share <= coverage[1])
    return float(ok.float().mean()), ok


def clip_score(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """CLIP score as ZIP reports it: 100 * cos(E_I(x), E_T(y)), per image."""
    return 100 * F.cosine_similarity(image_features, text_features, dim=-1)
