"""The garment parser: a small U-Net that labels every pixel with a part (background, torso,
sleeves, neck, lower, detail).

Chapter: "How we measure an edit"; the thesis's segmentation guidance (003) and the edit-region
masks of later chapters use it on images that have no ground-truth part map (generated or
edited ones).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.garments import PARTS


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.GroupNorm(8, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.GroupNorm(8, c_out), nn.SiLU())


class GarmentParser(nn.Module):
    """U-Net: 3 downsamplings with skip connections; (B, 3, H, W) in [-1, 1] -> (B, 6, H, W) logits."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 96, 128)) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        c_in = 3
        for width in widths:
            self.down.append(_block(c_in, width))
            c_in = width
        self.up = nn.ModuleList()
        for width, skip in zip(reversed(widths[:-1]), reversed(widths[:-1])):
            self.up.append(_block(c_in + skip, width))
            c_in = width
        self.head = nn.Conv2d(c_in, len(PARTS), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(x.shape)}")
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"image height and width must be multiples of 8, got {tuple(x.shape[-2:])}")
        skips = []
        h = x
        for k, block in enumerate(self.down):
            h = block(h)
            if k < len(self.down) - 1:
                skips.append(h)
                h = F.avg_pool2d(h, 2)  # (B, C, H/2, W/2)
        for block, skip in zip(self.up, reversed(skips)):
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1))
        return self.head(h)

    @torch.no_grad()
    def parse(self, x: torch.Tensor) -> torch.Tensor:
        """Part labels (B, H, W), int64."""
        return self.forward(x).argmax(dim=1)
