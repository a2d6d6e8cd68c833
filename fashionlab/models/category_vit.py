"""CategoryViT: the "supervised" (ImageNet-like) pretraining of chapter 05.

Chapter: "Taming a ViT for multi-attribute guidance" (``notebooks/05_attribute_classifier.py``):
a ViT of a tiny CLIP's image-tower shape trained on garment category and render style only
(recipe ``garments-vit-sup-s``/``-b``); its backbone is one of the three initialisations of
paper 000's Table 2, and its LPIPS analogue is the perceptual term of chapter 06's background loss.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..data.garments import NUM_CLASSES, STYLES
from .clip import create_clip, visual_pixels

SUPERVISED_HEADS: dict[str, int] = {"category": NUM_CLASSES["category"], "style": len(STYLES)}


class CategoryViT(nn.Module):
    """A ViT of a tiny CLIP's image-tower shape with linear heads for garment category and render
    style on its pooled embedding: the "supervised" (ImageNet-like) pretraining of chapter 05.
    Takes images in [-1, 1] and applies the CLIP preprocessing itself, so its backbone sees exactly
    the pixels an AttributeNet built on it will see."""

    def __init__(self, clip_name: str = "garments-clip-s") -> None:
        super().__init__()
        bundle = create_clip(clip_name)
        self.clip_name = clip_name
        self.visual = bundle.model.visual
        self.heads = nn.ModuleDict({k: nn.Linear(self.visual.output_dim, n) for k, n in SUPERVISED_HEADS.items()})

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> the ViT's CLIP-normalised input (differentiable)."""
        return visual_pixels(self.visual, images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.visual(self.preprocess(images))
        return {name: head(pooled) for name, head in self.heads.items()}
