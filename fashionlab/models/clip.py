"""CLIP through open_clip: our tiny garment configs, a builder and the encoders (the loader of
both profiles is :func:`fashionlab.zoo.loaders.load_clip`).

Chapter: "CLIP for garments" (``notebooks/03_clip_for_garments.py``).

Importing this module registers two open_clip model configs from ``models/configs/``:

==================  ======================================================================
``garments-clip-s`` 64-px ViT (patch 8, 6 layers, width 192) + 4-layer text transformer (width 64)
``garments-clip-b`` 64-px ViT (patch 8, 8 layers, width 256) + 6-layer text transformer (width 128)
==================  ======================================================================

Both use open_clip's own BPE tokenizer (it ships inside the open_clip package, so it works
offline) with a context of 32 tokens. Under ``full`` the zoo loads ``ViT-B-16`` with OpenAI
weights into the same :class:`CLIPBundle`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import open_clip
import torch

from ..data.transforms import clip_preprocess

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TINY_MODELS: tuple[str, ...] = ("garments-clip-s", "garments-clip-b")
FULL_MODELS: dict[str, tuple[str, str]] = {
    "garments-clip-s": ("ViT-B-16-quickgelu", "openai"),
    "garments-clip-b": ("ViT-B-32", "laion2b_s34b_b79k"),
}
"""Each tiny CLIP's ``full`` counterpart (open_clip model, pretrained tag). OpenAI's weights were
trained with QuickGELU, so their config is the ``-quickgelu`` one (plain ``ViT-B-16`` runs them with
the wrong activation). The independent judge (``-b``) stays a different model trained on other
data, so that under ``full`` it is still not the guide."""
FULL_MODEL, FULL_PRETRAINED = FULL_MODELS["garments-clip-s"]

open_clip.add_model_config(CONFIG_DIR)


@dataclass
class CLIPBundle:
    """A loaded CLIP: the open_clip model, its tokenizer and the numbers its preprocessing needs."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    profile: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (B, 3, H, W) -> this CLIP's normalised input (differentiable)."""
        return clip_preprocess(images, self.image_size, self.mean, self.std)


def input_size(visual: torch.nn.Module) -> int:
    """The square input side of an open_clip image tower (its ``image_size`` is an int or a pair)."""
    size = visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def visual_normalisation(visual: torch.nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(input side, mean, std) of an open_clip image tower; OpenAI's mean/std when it names none."""
    mean = tuple(getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
    std = tuple(getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD)
    return input_size(visual), mean, std


def visual_pixels(visual: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> the normalised input of an open_clip image tower (differentiable): what
    ``CLIPBundle.pixels`` does, for a tower held without its bundle (the attribute classifiers)."""
    return clip_preprocess(images, *visual_normalisation(visual))


def _bundle(model: torch.nn.Module, name: str, profile: str) -> CLIPBundle:
    size, mean, std = visual_normalisation(model.visual)
    return CLIPBundle(model.eval(), open_clip.get_tokenizer(name), name, profile, size, mean, std)


class _RandomInitFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


def create_clip(name: str = "garments-clip-s", pretrained: str | None = None,
                device: str | torch.device = "cpu") -> CLIPBundle:
    """Build a CLIP by open_clip config name; ``pretrained`` is a weights file or an open_clip tag
    (None: random initialisation, used for training and for tests of the ``full`` code path)."""
    known = open_clip.list_models()
    if name not in known:
        raise ValueError(f"unknown open_clip model {name!r}; ours are {TINY_MODELS}")
    quiet = _RandomInitFilter() if pretrained is None else None
    if quiet:  # a random init is what was asked for: open_clip's warning about it is noise
        logging.getLogger().addFilter(quiet)
    try:
        model, _, _ = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
    finally:
        if quiet:
            logging.getLogger().removeFilter(quiet)
    profile = "tiny" if name in TINY_MODELS else "full"
    return _bundle(model, name, profile)


def check_prompts(prompts: Sequence[str] | str) -> list[str]:
    """Validate prompts: a non-empty list of non-empty strings (a single string is wrapped)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or len(prompts) == 0:
        raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r}")
    for p in prompts:
        if not isinstance(p, str):
            raise TypeError(f"every prompt must be a str, got {type(p).__name__}: {p!r}")
        if not p.strip():
            raise ValueError("prompts must not be empty or blank")
    return list(prompts)


def encode_text(bundle: CLIPBundle, prompts: Sequence[str] | str, normalize: bool = True) -> torch.Tensor:
    """Text embeddings (N, D) of ``prompts`` (unit length if ``normalize``)."""
    prompts = check_prompts(prompts)
    device = next(bundle.model.parameters()).device
    tokens = bundle.tokenizer(prompts).to(device)
    features = bundle.model.encode_text(tokens)
    return torch.nn.functional.normalize(features, dim=-1) if normalize else features


def encode_image_tokens(bundle: CLIPBundle, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled image embedding (B, D), patch tokens (B, N, W)) for CLIP-normalised pixels.

    The attention-pooling attribute classifier (chapter 05) reads the patch tokens.
    """
    visual = bundle.model.visual
    previous = visual.output_tokens
    visual.output_tokens = True  # open_clip's switch; restored below so the model is unchanged
    try:
        pooled, tokens = visual(pixels)
    finally:
        visual.output_tokens = previous
    return pooled, tokens
