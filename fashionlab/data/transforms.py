"""Image checks and conversions shared by every public entry point.

Inside ``fashionlab`` an image batch is a float tensor ``(B, 3, H, W)`` in ``[-1, 1]``
(``book/notation.md``). :func:`check_images` is the one place that says so to a caller who passed
something else, naming the argument and what was expected, before any model sees it.
"""

from __future__ import annotations

import torch

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
                        "(convert uint8 images with garments.to_tensor)")
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
