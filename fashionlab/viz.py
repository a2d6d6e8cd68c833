"""Figures for the book: image grids and part-map overlays (matplotlib, PIL at the edges).

Functions return the matplotlib ``Figure``; showing or saving it is the notebook's job.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .data.garments import PARTS
from .data.transforms import to_uint8

GLUE_MIME_PREFIX = "application/papermill.record/"
"""Where a hidden glued value's MIME types live in a cell's outputs (the scrapbook convention that
myst-nb's ``{glue}`` roles read)."""


def glue(name: str, value: Any, display: bool = True) -> None:
    """Record ``value`` under ``name`` in the running cell's outputs, for the book's ``{glue}`` roles.

    The output is exactly what ``myst_nb.glue`` writes (a display output whose metadata carries
    ``{"scrapbook": {"name": ..., "mime_prefix": ...}}``; hidden values have their MIME types
    prefixed), so the book builds from it, but myst-nb itself is not needed: it is a book-building
    tool, not a dependency of the package, and a notebook that imported it would stop on Colab.
    ``display=False`` records the value without showing it.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    from IPython.core.formatters import format_display_data
    from IPython.display import display as show

    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_MIME_PREFIX
    metadata = {**metadata, "scrapbook": {"name": name, "mime_prefix": prefix}}
    show({prefix + mime: data for mime, data in bundle.items()}, raw=True, metadata=metadata)


# One colour per part label (background is transparent in overlays).
PART_COLOURS = np.array([
    (0, 0, 0),        # background
    (230, 25, 75),    # torso
    (60, 180, 75),    # sleeves
    (255, 225, 25),   # neck
    (0, 130, 200),    # lower
    (145, 30, 180),   # detail
], dtype=np.float32)


def as_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """Accept uint8 (H, W, 3) arrays or float (3, H, W) tensors in [-1, 1]; return uint8 (H, W, 3)."""
    if isinstance(image, torch.Tensor):
        return to_uint8(image)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3) or a (3, H, W) tensor, got {image.dtype} {image.shape}")
    return image


def parts_overlay(image: np.ndarray | torch.Tensor, parts: np.ndarray | torch.Tensor, alpha: float = 0.55) -> np.ndarray:
    """Blend a colour-coded part map over an image (background left untouched)."""
    rgb = as_uint8(image).astype(np.float32)
    labels = np.asarray(parts).astype(np.int64)
    if labels.shape != rgb.shape[:2]:
        raise ValueError(f"parts shape {labels.shape} does not match image shape {rgb.shape[:2]}")
    colour = PART_COLOURS[labels]
    mix = np.where((labels > 0)[..., None], (1 - alpha) * rgb + alpha * colour, rgb)
    return mix.round().astype(np.uint8)


def heatmap(values: np.ndarray | torch.Tensor, vmax: float | None = None, cmap: str = "magma") -> np.ndarray:
    """A (H, W) map (a mask, a distance map, an attention map) as a uint8 (H, W, 3) image for
    :func:`image_grid`: values from 0 to ``vmax`` (default: the map's maximum) through ``cmap``."""
    import matplotlib

    v = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, np.float32)
    if v.ndim != 2:
        raise ValueError(f"values must be a (H, W) map, got shape {v.shape}")
    top = float(v.max()) if vmax is None else float(vmax)
    scaled = np.clip(v / top, 0.0, 1.0) if top > 0 else np.zeros_like(v)
    return (matplotlib.colormaps[cmap](scaled)[..., :3] * 255).round().astype(np.uint8)


def image_grid(images: Sequence, ncols: int, titles: Sequence[str] | None = None, row_labels: Sequence[str] | None = None,
               cell: float = 1.2, title_size: int = 7):
    """A grid of images with optional per-image titles and per-row labels; returns the Figure.

    ``images`` may contain ``None`` to leave a cell empty.
    """
    import matplotlib.pyplot as plt

    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols + (0.9 if row_labels else 0), cell * nrows + 0.1),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if k < n and images[k] is not None:
            ax.imshow(as_uint8(images[k]), interpolation="nearest")
            if titles is not None and titles[k]:
                ax.set_title(titles[k], fontsize=title_size, pad=2)
    if row_labels is not None:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center", labelpad=6)
    fig.tight_layout(pad=0.3)
    return fig


def part_legend_handles():
    """Legend patches for :data:`PART_COLOURS` (skipping background)."""
    from matplotlib.patches import Patch

    return [Patch(color=PART_COLOURS[k] / 255, label=name) for k, name in enumerate(PARTS) if k > 0]
