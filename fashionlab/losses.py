"""Losses shared by the editing chapters.

Chapter: "CLIP for garments" (CLIP losses); later chapters add the masked multi-attribute
cross-entropy (000 eq. 6) and the background-preservation loss here. The augmentations the
losses see (CLIP preprocessing, extending augmentations) are in :mod:`fashionlab.data.transforms`.

========================  ===========================================================  ===================
function                  formula                                                     source
========================  ===========================================================  ===================
``global_clip_loss``      1 - cos(E_I(x), E_T(y))                                      DiffusionCLIP eq. 8
``text_direction``        dT = normalize(mean_templates(E_T(target) - E_T(source)))   DiffusionCLIP code
``directional_clip_loss`` dI = E_I(x_edit) - E_I(x_src); 1 - cos(dI, dT)               DiffusionCLIP eq. 9
                          or -log((2 - (1 - cos)) / 2)  (their training code)
``spherical_distance``    2 arcsin(|u - v| / 2)^2                                      Blended Diffusion code
``masked_attribute_ce``   sum_a CE(logits_a, y_a) over labels != -1                    000 eq. 6
``background_loss``       keep * ||x - X||^2 + keep * pd(x, X)                         000 eq. 7
========================  ===========================================================  ===================
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

# A short version of the ~80 ImageNet templates DiffusionCLIP averages over, worded for garments.
GARMENT_TEMPLATES: tuple[str, ...] = (
    "{}",
    "a photo of {}",
    "a picture of {}",
    "an image of {}",
    "a product photo of {}",
    "a close-up photo of {}",
    "a catalogue image of {}",
    "a sketch of {}",
    "a cartoon of {}",
    "a drawing of {}",
)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a, b, dim=-1)


def global_clip_loss(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """1 - cos(E_I(x), E_T(y)) per image (DiffusionCLIP eq. 8; the latent-optimisation baseline)."""
    return 1 - cosine(image_features, text_features)


def spherical_distance(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """2 arcsin(|u - v| / 2)^2 for unit-normalised u, v (the squared great-circle distance): the
    CLIP loss of Blended Diffusion's code (after Crowson's CLIP-guided diffusion)."""
    u, v = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    return (u - v).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)


def text_direction(encode_text, source: str, target: str, templates: Sequence[str] = GARMENT_TEMPLATES) -> torch.Tensor:
    """The text direction dT: normalize(mean over templates of (E_T(target) - E_T(source))), with
    unit-normalised embeddings per template, as DiffusionCLIP's ``compute_text_direction``.

    ``encode_text(list_of_prompts) -> (N, D)`` normalised embeddings (e.g. ``partial(clip.encode_text, bundle)``).
    """
    for name, value in (("source", source), ("target", target)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError("templates must be a non-empty list of strings with a '{}' slot")
    src = encode_text([t.format(source) for t in templates])
    tgt = encode_text([t.format(target) for t in templates])
    return F.normalize((tgt - src).mean(dim=0, keepdim=True), dim=-1)  # (1, D)


def directional_clip_loss(edited_features: torch.Tensor, source_features: torch.Tensor, direction: torch.Tensor,
                          form: str = "1-cos") -> torch.Tensor:
    """Directional CLIP loss per image (DiffusionCLIP eq. 9): dI = E_I(edited) - E_I(source),
    L = 1 - cos(dI, dT). ``form="log"`` is what the authors' training code minimises:
    -log((2 - L) / 2) = -log((1 + cos) / 2). Both are 0 when dI is parallel to dT and largest when
    they are opposed."""
    if form not in ("1-cos", "log"):
        raise ValueError(f"form must be '1-cos' or 'log', got {form!r}")
    delta = F.normalize(edited_features - source_features, dim=-1)
    loss = 1 - cosine(delta, direction)
    if form == "log":
        return -torch.log(((2 - loss) / 2).clamp(min=1e-8))
    return loss


def masked_attribute_ce(logits: dict[str, torch.Tensor], labels: torch.Tensor,
                        attributes: Sequence[str]) -> torch.Tensor:
    """Multi-attribute cross-entropy with missing labels masked out (paper 000, eq. 6).

    ``logits[a]`` is (B, C_a); ``labels`` is (B, len(attributes)) with -1 where attribute a does
    not apply (a neckline on trousers). The loss is the sum over attributes of the mean CE over
    the images where the attribute applies; attributes absent from the whole batch add nothing.
    """
    if labels.dim() != 2 or labels.shape[1] != len(attributes):
        raise ValueError(f"labels must be (B, {len(attributes)}), got {tuple(labels.shape)}")
    total = labels.new_zeros((), dtype=torch.float32)
    for k, name in enumerate(attributes):
        if name not in logits:
            raise ValueError(f"logits lack attribute {name!r}; got {sorted(logits)}")
        target = labels[:, k]
        if bool((target >= 0).any()):
            total = total + F.cross_entropy(logits[name].float(), target, ignore_index=-1)
    return total


def background_loss(edited: torch.Tensor, source: torch.Tensor, keep: torch.Tensor,
                    perceptual: torch.nn.Module | None = None, mse_weight: float = 1.0,
                    perceptual_weight: float = 1.0) -> torch.Tensor:
    """Background preservation (000 eq. 7) per image:

        mse_weight * mean_hw[keep * ||edited - source||^2] + perceptual_weight * mean_hw[keep * pd(edited, source)]

    ``keep`` (B, 1, H, W) in [0, 1] weights the pixels to preserve (000: 1 - M-bar, the low-attention
    region; Blended Diffusion: everything, with weights 1e4 and 1e3). ``perceptual`` is a module
    with ``distance_map(x, y) -> (B, 1, H, W)`` (:class:`~fashionlab.metrics.OraclePerceptual` or
    LPIPS); None drops that term. It sees ``edited`` clipped to [-1, 1] with a straight-through
    gradient: a guided P_t leaves the image range at high noise, where a perceptual network (and
    its range check) is undefined."""
    if edited.shape != source.shape or edited.dim() != 4:
        raise ValueError(f"edited and source must be equal (B, C, H, W) shapes, got {tuple(edited.shape)} "
                         f"and {tuple(source.shape)}")
    if keep.dim() != 4 or keep.shape[1] != 1 or keep.shape[-2:] != edited.shape[-2:]:
        raise ValueError(f"keep must be (B, 1, {edited.shape[-2]}, {edited.shape[-1]}), got {tuple(keep.shape)}")
    loss = mse_weight * (keep * (edited - source).pow(2).sum(dim=1, keepdim=True)).mean(dim=(1, 2, 3))
    if perceptual is not None and perceptual_weight:
        # clipped value, identity gradient; written so that the value is exactly the clipped one at
        # any magnitude (edited + (clipped - edited) loses it to rounding once |edited| > 2**23)
        inside = edited.clamp(-1, 1).detach() + (edited - edited.detach())
        loss = loss + perceptual_weight * (keep * perceptual.distance_map(inside, source)).mean(dim=(1, 2, 3))
    return loss
