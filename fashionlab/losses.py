"""Losses shared by the editing chapters.

Chapter: "CLIP for garments" (CLIP losses and augmentations); later chapters add the masked
multi-attribute cross-entropy (000 eq. 6) and the background-preservation loss here.

========================  ===========================================================  ===================
function                  formula                                                     source
========================  ===========================================================  ===================
``clip_preprocess``       resize to the CLIP size, (x + 1) / 2, (x - mean) / std         differentiable
``global_clip_loss``      1 - cos(E_I(x), E_T(y))                                      DiffusionCLIP eq. 7
``text_direction``        dT = normalize(mean_templates(E_T(target) - E_T(source)))   DiffusionCLIP code
``directional_clip_loss`` dI = E_I(x_edit) - E_I(x_src); 1 - cos(dI, dT)               DiffusionCLIP eq. 8
                          or -log((2 - (1 - cos)) / 2)  (their training code)
``extending_augmentations`` N views: the first as is, the rest random affine + perspective  Blended Diffusion
``spherical_distance``    2 arcsin(|u - v| / 2)^2                                      Blended Diffusion code
``masked_attribute_ce``   sum_a CE(logits_a, y_a) over labels != -1                    000 eq. 6
``background_loss``       keep * ||x - X||^2 + keep * pd(x, X)                         000 eq. 7
========================  ===========================================================  ===================
"""

from __future__ import annotations

import math
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


def clip_preprocess(images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Differentiable CLIP preprocessing of images in [-1, 1] (B, 3, H, W): resize to ``size``
    (bicubic, antialiased when shrinking), map to [0, 1], normalise with CLIP's mean and std."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    x = (images + 1) / 2  # [-1, 1] -> [0, 1]  (DiffusionCLIP: Normalize(-1, 2))
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False,
                          antialias=x.shape[-1] > size)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a, b, dim=-1)


def global_clip_loss(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """1 - cos(E_I(x), E_T(y)) per image (DiffusionCLIP eq. 7; the latent-optimisation baseline)."""
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
    """Directional CLIP loss per image (DiffusionCLIP eq. 8): dI = E_I(edited) - E_I(source),
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


def affine_theta(angle_deg: torch.Tensor, translate: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) affine matrices for ``F.affine_grid``: rotation then translation (in [-1, 1] units)."""
    a = angle_deg * math.pi / 180
    cos, sin = torch.cos(a), torch.sin(a)
    return torch.stack([torch.stack([cos, -sin, translate[:, 0]], -1), torch.stack([sin, cos, translate[:, 1]], -1)], 1)


def _perspective_grid(corners_shift: torch.Tensor, size: tuple[int, int], dtype, device) -> torch.Tensor:
    """A sampling grid for a random perspective: the unit square's corners moved by ``corners_shift``
    (N, 4, 2) in [-1, 1] units; solves the 8-parameter homography per view."""
    src = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    n = corners_shift.shape[0]
    grids = []
    h, w = size
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, dtype=torch.float64), torch.linspace(-1, 1, w, dtype=torch.float64),
                            indexing="ij")
    ones = torch.ones_like(xs)
    pts = torch.stack([xs, ys, ones], -1).reshape(-1, 3)  # (HW, 3) output coordinates
    for k in range(n):
        dst = src + corners_shift[k].to(torch.float64)
        # Homography H mapping output (dst) coordinates to input (src) coordinates: 8 unknowns.
        rows, rhs = [], []
        for (x, y), (u, v) in zip(dst.tolist(), src.tolist()):
            rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
            rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
            rhs += [u, v]
        coeffs = torch.linalg.solve(torch.tensor(rows, dtype=torch.float64), torch.tensor(rhs, dtype=torch.float64))
        hom = torch.cat([coeffs, torch.ones(1, dtype=torch.float64)]).view(3, 3)
        mapped = pts @ hom.T
        grids.append((mapped[:, :2] / mapped[:, 2:3]).reshape(h, w, 2))
    return torch.stack(grids).to(dtype=dtype, device=device)


def extending_augmentations(images: torch.Tensor, num_views: int = 8, generator: torch.Generator | None = None,
                            degrees: float = 15.0, translate: float = 0.1, perspective_p: float = 0.7,
                            distortion: float = 0.5) -> torch.Tensor:
    """Blended Diffusion's "extending augmentations": ``num_views`` views of each image, the first
    unaugmented, the others with a random affine (rotation up to ``degrees``, translation up to
    ``translate`` of the size) and, with probability ``perspective_p``, a random perspective
    (torchvision's distortion scale ``distortion``). Differentiable (grid_sample); returns
    (num_views * B, 3, H, W), view-major. Random draws come from ``generator``."""
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    b, _, h, w = images.shape
    views = [images]
    n = (num_views - 1) * b
    if n == 0:
        return images
    angle = (torch.rand(n, generator=generator) * 2 - 1) * degrees
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * translate * 2  # fraction of size -> [-1, 1] units
    theta = affine_theta(angle, shift).to(images.dtype).to(images.device)
    repeated = images.repeat(num_views - 1, 1, 1, 1)
    grid = F.affine_grid(theta, list(repeated.shape), align_corners=False)
    out = F.grid_sample(repeated, grid, mode="bilinear", padding_mode="border", align_corners=False)
    use_persp = torch.rand(n, generator=generator) < perspective_p
    corners = (torch.rand(n, 4, 2, generator=generator) * 2 - 1) * distortion * 0.5
    if bool(use_persp.any()):
        idx = use_persp.nonzero().flatten()
        pgrid = _perspective_grid(corners[idx], (h, w), images.dtype, images.device)
        warped = F.grid_sample(out[idx], pgrid, mode="bilinear", padding_mode="border", align_corners=True)
        out = out.index_copy(0, idx.to(images.device), warped)
    views.append(out)
    return torch.cat(views)


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
