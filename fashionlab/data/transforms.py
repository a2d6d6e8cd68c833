"""Image conversions, checks and augmentations: every function that turns one image tensor into
another without a model.

Inside ``fashionlab`` an image batch is a float tensor ``(B, 3, H, W)`` in ``[-1, 1]``
(``book/notation.md``); uint8 appears only at the edges. :func:`check_images` is the one place that
says so to a caller who passed something else, naming the argument and what was expected, before
any model sees it.

===========================  ================================================================  =====================
function                     what                                                              chapter / source
===========================  ================================================================  =====================
``to_tensor`` / ``to_uint8`` uint8 (H, W, 3) <-> float (3, H, W) in [-1, 1]                    01
``to_model_input``           uint8 batch (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]          04
``clip_preprocess``          resize to the CLIP size, (x + 1) / 2, (x - mean) / std (differentiable)  03
``gaussian_blur``            per-image 5-tap Gaussian blur                                      04 (evaluators)
``noise_and_blur``           slight blur, then Gaussian noise, per-image strengths              04 (evaluators)
``random_augment``           label-preserving rotation, shift, scale, brightness, contrast      05 (000 Table 3)
``extending_augmentations``  N views: the first as is, the rest random affine + perspective     06 (Blended Diffusion)
===========================  ================================================================  =====================
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

RANGE_SLACK = 1e-3
"""How far outside [-1, 1] a value may lie before it is refused (fp16 and resampling round)."""


def check_images(images: object, name: str = "images", size: int | None = None,
                 multiple_of: int | None = None) -> torch.Tensor:
    """Check that ``images`` is a finite float batch ``(B, 3, H, W)`` in ``[-1, 1]``. With ``size``
    (the size a model was trained at), ``H = W = size``; with ``multiple_of`` as well (a fully
    convolutional model, such as a UNet that halves the image ``k`` times, takes any multiple of
    2**k), H and W need only be multiples of it. Returns ``images`` unchanged; raises ``TypeError``
    or ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (B, 3, H, W) in [-1, 1], got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a float tensor in [-1, 1], got dtype {images.dtype} "
                        "(convert uint8 images with transforms.to_tensor or to_model_input)")
    if images.dim() != 4 or images.shape[1] != 3 or len(images) == 0:
        raise ValueError(f"{name} must be a non-empty (B, 3, H, W) batch, got shape {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if multiple_of is not None and (height % multiple_of or width % multiple_of):
        trained = f" (it was trained at {size}x{size})" if size is not None else ""
        raise ValueError(f"{name} must have a height and width divisible by {multiple_of} for this model{trained}, "
                         f"got {height}x{width}: resize them first")
    if multiple_of is None and size is not None and (height, width) != (size, size):
        raise ValueError(f"{name} must be {size}x{size} pixels for this model, got {height}x{width}: "
                         f"resize them to {size}x{size} first")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < -1 - RANGE_SLACK or high > 1 + RANGE_SLACK:
        raise ValueError(f"{name} must be in [-1, 1], got values in [{low:.3f}, {high:.3f}]")
    return images


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1] (the package's image convention)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (3, H, W) or (B, 3, H, W) in [-1, 1] -> uint8 (H, W, 3) or (B, H, W, 3)."""
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"images must be (3, H, W) or (B, 3, H, W), got {tuple(images.shape)}")
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def to_model_input(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return images_u8.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur with std ``sigma`` (B,) in pixels (5-tap separable kernel; sigma 0 = identity)."""
    taps = torch.arange(-2, 3, dtype=images.dtype, device=images.device)
    s = sigma.clamp(min=1e-3).view(-1, 1)
    kernel = torch.exp(-0.5 * (taps / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, 5)
    b, c, h, w = images.shape
    x = images.reshape(1, b * c, h, w)
    kx = kernel.repeat_interleave(c, dim=0).view(b * c, 1, 1, 5)
    ky = kernel.repeat_interleave(c, dim=0).view(b * c, 1, 5, 1)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), kx, groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), ky, groups=b * c)
    return x.view(b, c, h, w)


def colour_blocks(images: torch.Tensor, background: Sequence[int], cells: int = 8) -> torch.Tensor:
    """A coarse colour-block drawing of each garment: the kind of stroke painting a designer dashes
    off, outside every model's domain (§3.2 of DiffusionCLIP translates such drawings).

    ``images`` (B, 3, H, W) in [-1, 1] on a flat ``background`` (RGB 0-255). Each of the
    ``cells`` x ``cells`` blocks is painted in the garment's mean colour if at least half of it is
    garment, and left as background otherwise: a blocky silhouette in one flat colour. Category and
    main colour survive; texture, pattern and detail do not."""
    check_images(images, "images")
    h, w = images.shape[-2:]
    if cells < 1 or h % cells or w % cells:
        raise ValueError(f"cells must divide the image size {h}x{w}, got {cells}")
    bg = torch.tensor(background, dtype=images.dtype, device=images.device).view(1, 3, 1, 1) / 127.5 - 1
    garment = ((images - bg).abs().amax(dim=1, keepdim=True) > 0.06).to(images.dtype)  # (B, 1, H, W)
    share = F.adaptive_avg_pool2d(garment, cells)
    colour = (images * garment).sum(dim=(2, 3), keepdim=True) / garment.sum(dim=(2, 3), keepdim=True).clamp(min=1)
    blocks = torch.where(share >= 0.5, colour.expand(-1, -1, cells, cells), bg.expand(len(images), -1, cells, cells))
    return F.interpolate(blocks, size=(h, w), mode="nearest")


def noise_and_blur(images: torch.Tensor, generator: torch.Generator, noise_max: float, blur_max: float) -> torch.Tensor:
    """Slight blur, then Gaussian noise, each with a per-image random strength."""
    b = images.shape[0]
    sigma = torch.rand(b, generator=generator) * blur_max
    noise_std = torch.rand(b, generator=generator) * noise_max
    noise = torch.randn(images.shape, generator=generator)
    return (gaussian_blur(images, sigma) + noise_std.view(-1, 1, 1, 1) * noise).clamp(-1, 1)


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


def random_augment(images: torch.Tensor, generator: torch.Generator, degrees: float = 10.0, translate: float = 0.08,
                   scale: tuple[float, float] = (0.9, 1.1), brightness: float = 0.15,
                   contrast: float = 0.15) -> torch.Tensor:
    """Random rotation, translation, scale, brightness and contrast, per image, on images in
    [-1, 1]. Unlike RandAugment it never shifts hue, solarises or posterises: those would change
    the colour label."""
    b = images.shape[0]
    angle = (torch.rand(b, generator=generator) * 2 - 1) * degrees
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * translate * 2
    zoom = scale[0] + torch.rand(b, generator=generator) * (scale[1] - scale[0])
    theta = affine_theta(angle, shift)
    theta[:, :, :2] = theta[:, :, :2] / zoom.view(-1, 1, 1)
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = 1 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * contrast
    offset = (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * brightness * 2
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * gain.to(out) + mean + offset.to(out)).clamp(-1, 1)


def reframe(images: torch.Tensor, generator: torch.Generator, zoom: tuple[float, float] = (0.8, 1.2),
            shift: float = 0.1, crop_prob: float = 0.1, crop_zoom: tuple[float, float] = (1.35, 1.7)) -> torch.Tensor:
    """Varied framing for text-to-image training: each image is zoomed by a factor from ``zoom``
    (> 1 enlarges the garment) and shifted by up to ``shift`` of the image side; with probability
    ``crop_prob`` it is instead zoomed by ``crop_zoom``, so that part of the garment falls out of
    the frame. Uncovered borders take each image's top-left pixel colour (background on every
    render)."""
    check_images(images, "images")
    for name, (lo, hi) in (("zoom", zoom), ("crop_zoom", crop_zoom)):
        if not 0 < lo <= hi:
            raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(lo, hi)}")
    if not 0 <= crop_prob <= 1:
        raise ValueError(f"crop_prob must be in [0, 1], got {crop_prob}")
    b = images.shape[0]
    factor = zoom[0] + torch.rand(b, generator=generator) * (zoom[1] - zoom[0])
    cropped = torch.rand(b, generator=generator) < crop_prob
    crop_factor = crop_zoom[0] + torch.rand(b, generator=generator) * (crop_zoom[1] - crop_zoom[0])
    factor = torch.where(cropped, crop_factor, factor)
    offset = (torch.rand(b, 2, generator=generator) * 2 - 1) * shift * 2  # fraction of the side -> [-1, 1] units
    theta = affine_theta(torch.zeros(b), offset)
    theta[:, :, :2] = theta[:, :, :2] / factor.view(-1, 1, 1)
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    background = images[:, :, :1, :1]
    return F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + background
