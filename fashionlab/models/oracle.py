"""The oracle: an independent multi-attribute CNN that *grades* edits and never guides them.

Chapter: "How we measure an edit" (``notebooks/04_measuring_edits.py``).

A guidance classifier must not grade its own edits: guidance climbs that classifier's gradient,
and can fool it with changes no person would call an edit. The oracle is a different
architecture (a small ResNet, where the guidance classifiers are ViTs), trained on many renders
of every style with noise and blur, so that it judges edited images fairly. Its stage features
also give the offline perceptual distance, and its penultimate features FID/KID under ``tiny``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.garments import EXTRAS, NUM_CLASSES, STYLES

HEADS: dict[str, int] = {**NUM_CLASSES, "style": len(STYLES)}


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut (He et al., 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class GarmentOracle(nn.Module):
    """Small ResNet on (B, 3, 64, 64) images in [-1, 1] with one linear head per attribute (and
    one for the render style); ``heads`` (name -> classes) replaces them, as the extras judge does."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 192), blocks_per_stage: int = 1,
                 heads: dict[str, int] | None = None) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, c_in = [], widths[0]
        for k, width in enumerate(widths):
            layers = [BasicBlock(c_in, width, 1 if k == 0 else 2)]
            layers += [BasicBlock(width, width, 1) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.feature_dim = widths[-1]
        self.heads = nn.ModuleDict({name: nn.Linear(widths[-1], n) for name, n in (heads or HEADS).items()})

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage: [(B, 32, 64, 64), (B, 64, 32, 32), (B, 128, 16, 16), (B, 192, 8, 8)]."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(x.shape)}")
        feats, h = [], self.stem(x)
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled last-stage features (B, feature_dim): the FID/KID embedding."""
        return self.stage_features(x)[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.penultimate(x)
        return {name: head(pooled) for name, head in self.heads.items()}


EXTRAS_HEADS: dict[str, int] = {extra: 2 for extra in EXTRAS}
"""The extras judge's heads: absent / present for each of pocket, logo and belt."""


def extras_judge(widths: tuple[int, ...] = (16, 32, 64, 96)) -> GarmentOracle:
    """The judge of chapter 07's out-of-domain edits: a small ResNet, trained apart from the oracle
    (whose published numbers stay as they are), with one absent/present head per detail extra."""
    return GarmentOracle(widths, heads=EXTRAS_HEADS)
