"""Garments: a deterministic procedural renderer with ground truth for every attribute and part.

Chapter: "Garments" (``notebooks/01_garments.py``).

Real fashion photos come with a few noisy labels and no part masks. Garments come with the
exact attribute vector, a per-pixel part map and a caption, so an edit can be *measured*:
did the sleeve change, and did anything outside the sleeves move?

Pipeline for one image (numbered as in :func:`render`):

1. ``spec`` -> polygons in a unit canvas (y points down), moved by the spec's small jitter;
2. polygons -> a part-label map and a "marks" map (seams, buttons, bands, logo ink) drawn
   with PIL at ``supersample`` times the output size;
3. a colour field: pattern x fabric texture x style (photo shading, sketch wash, cartoon ink);
4. box-filter down to the output size (anti-aliasing) and a majority vote for the part map.

Only numpy and PIL are used, with fixed-seed textures, so the same ``(seed, index)`` gives
the same pixels on any machine.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from .transforms import to_tensor

# ----------------------------------------------------------------------------------------
# Schema: the one source of truth for attributes (modelled on Shopping100k, paper 000 Tab. 1)
# ----------------------------------------------------------------------------------------
SCHEMA: dict[str, tuple[str, ...]] = {
    "category": ("t-shirt", "shirt", "sweater", "jacket", "dress", "skirt", "trousers", "shorts"),
    "sleeve": ("sleeveless", "short", "elbow", "long"),
    "neckline": ("round", "v-neck", "square", "boat"),
    "collar": ("none", "pointed", "hood"),
    "pattern": ("plain", "striped", "checked", "polka-dot", "gradient"),
    "colour": ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink"),
    "fabric": ("cotton", "denim", "knit", "leather"),
    "fit": ("slim", "regular", "loose"),
}
ATTRIBUTES: tuple[str, ...] = tuple(SCHEMA)
NUM_CLASSES: dict[str, int] = {name: len(values) for name, values in SCHEMA.items()}

TOPS = ("t-shirt", "shirt", "sweater", "jacket")
BOTTOMS = ("skirt", "trousers", "shorts")
SLEEVED = TOPS + ("dress",)
COLLARED = ("shirt", "sweater", "jacket")

STYLES: tuple[str, ...] = ("photo", "sketch", "cartoon")
EXTRAS: tuple[str, ...] = ("pocket", "logo", "belt")

# Part labels of the per-pixel map.
PARTS: tuple[str, ...] = ("background", "torso", "sleeves", "neck", "lower", "detail")
BACKGROUND, TORSO, SLEEVES, NECK, LOWER, DETAIL = range(len(PARTS))

# Which region of the part map each attribute lives in (used as the ground-truth edit region).
ATTRIBUTE_REGION: dict[str, str] = {
    "sleeve": "sleeves",
    "neckline": "neck",
    "collar": "neck",
    "pattern": "garment",
    "colour": "garment",
    "fabric": "garment",
    "category": "garment+margin",
    "fit": "garment+margin",
    "style": "image",
    "extra": "detail",
}

# sRGB colours chosen to stay distinguishable at 64 px and far from every background.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40),
    "orange": (235, 120, 20),
    "yellow": (232, 196, 24),
    "green": (40, 150, 60),
    "teal": (0, 138, 138),
    "blue": (30, 70, 190),
    "purple": (120, 50, 165),
    "pink": (230, 100, 170),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "photo": (236, 236, 236),
    "sketch": (250, 248, 242),
    "cartoon": (210, 232, 250),
}


def applicable(attribute: str, category: str, collar: str | None = None) -> bool:
    """Whether ``attribute`` applies to a garment of ``category`` (with ``collar``, if any).

    Rules: sleeves on tops and dresses; a collar on shirts, sweaters and jackets; a neckline
    wherever there is no collar (t-shirts, dresses, and collarless shirts/sweaters/jackets);
    pattern, colour, fabric and fit everywhere.
    """
    if attribute not in SCHEMA:
        raise ValueError(f"attribute must be one of {ATTRIBUTES}, got {attribute!r}")
    if category not in SCHEMA["category"]:
        raise ValueError(f"category must be one of {SCHEMA['category']}, got {category!r}")
    if attribute == "sleeve":
        return category in SLEEVED
    if attribute == "collar":
        return category in COLLARED
    if attribute == "neckline":
        if category in ("t-shirt", "dress"):
            return True
        return category in COLLARED and collar in (None, "none")
    return True


@dataclass(frozen=True)
class GarmentSpec:
    """Everything that determines one Garments image.

    The eight schema attributes are ``None`` where they do not apply (a neckline on
    trousers); asking for an inapplicable one raises ``ValueError``. ``style`` and
    ``extras`` take an image out of the diffusion model's training domain. ``dx``, ``dy``,
    ``scale``, ``shade`` and ``phase`` are small nuisance variations (position, size,
    brightness, pattern phase) that carry no label.
    """

    category: str
    sleeve: str | None = None
    neckline: str | None = None
    collar: str | None = None
    pattern: str = "plain"
    colour: str = "red"
    fabric: str = "cotton"
    fit: str = "regular"
    style: str = "photo"
    extras: tuple[str, ...] = ()
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    shade: float = 1.0
    phase: float = 0.0

    def __post_init__(self) -> None:
        for name in ATTRIBUTES:
            value = getattr(self, name)
            if value is None:
                if name in ("category", "pattern", "colour", "fabric", "fit"):
                    raise ValueError(f"{name} is required, got None")
                continue
            if value not in SCHEMA[name]:
                raise ValueError(f"{name} must be one of {SCHEMA[name]}, got {value!r}")
        for name in ("sleeve", "collar", "neckline"):
            value = getattr(self, name)
            is_applicable = applicable(name, self.category, self.collar)
            if value is not None and not is_applicable:
                raise ValueError(
                    f"{name}={value!r} does not apply to a {self.category}"
                    + (f" with collar={self.collar!r}" if name == "neckline" and self.collar else "")
                )
            if value is None and is_applicable:
                raise ValueError(f"{name} is required for a {self.category}, got None")
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {self.style!r}")
        if not isinstance(self.extras, tuple):
            raise TypeError(f"extras must be a tuple of names, got {type(self.extras).__name__}")
        for extra in self.extras:
            if extra not in EXTRAS:
                raise ValueError(f"extras must be drawn from {EXTRAS}, got {extra!r}")
        if len(set(self.extras)) != len(self.extras):
            raise ValueError(f"extras must not repeat, got {self.extras}")
        if not (0.7 <= self.scale <= 1.3):
            raise ValueError(f"scale must be in [0.7, 1.3], got {self.scale}")
        if abs(self.dx) > 0.15 or abs(self.dy) > 0.15:
            raise ValueError(f"dx and dy must be within +-0.15, got ({self.dx}, {self.dy})")

    @property
    def in_domain(self) -> bool:
        """Photo style and no extras: the unconditional diffusion model's training domain."""
        return self.style == "photo" and not self.extras

    def attributes(self) -> dict[str, str | None]:
        """The eight schema attributes, ``None`` where inapplicable."""
        return {name: getattr(self, name) for name in ATTRIBUTES}

    def attribute_vector(self) -> np.ndarray:
        """Class indices in :data:`ATTRIBUTES` order, ``-1`` where inapplicable (eq. 6 of 000)."""
        return np.array(
            [-1 if getattr(self, n) is None else SCHEMA[n].index(getattr(self, n)) for n in ATTRIBUTES],
            dtype=np.int64,
        )

    def edit(self, **changes: object) -> "GarmentSpec":
        """A copy with ``changes`` applied; attributes that stop applying become ``None`` and
        ones that start applying get their first value (e.g. trousers -> t-shirt gets
        ``sleeve="sleeveless"`` unless given). This is how hand-made "ground-truth edits" are made.
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown GarmentSpec field(s): {sorted(unknown)}")
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(changes)
        category = values["category"]
        for name in ("collar", "sleeve", "neckline"):
            if name in changes and changes[name] is not None:
                continue
            ok = applicable(name, category, values["collar"])
            if not ok:
                values[name] = None
            elif values[name] is None:
                values[name] = SCHEMA[name][0]
        return GarmentSpec(**values)


def default_spec(category: str) -> GarmentSpec:
    """A plain red regular-fit cotton garment of ``category`` with short sleeves, round neck and no
    collar where those apply: the neutral base that prompts and text directions are worded on."""
    kwargs: dict = {}
    if category in SLEEVED:
        kwargs["sleeve"] = "short"
    if category in COLLARED:
        kwargs["collar"] = "none"
    if category in ("t-shirt", "dress") or category in COLLARED:
        kwargs["neckline"] = "round"
    return GarmentSpec(category, **kwargs)


def spec_from_vector(vector: np.ndarray | list[int], **nuisance: object) -> GarmentSpec:
    """Inverse of :meth:`GarmentSpec.attribute_vector` (``-1`` -> ``None``)."""
    vector = [int(v) for v in vector]
    if len(vector) != len(ATTRIBUTES):
        raise ValueError(f"vector must have {len(ATTRIBUTES)} entries, got {len(vector)}")
    values = {}
    for name, index in zip(ATTRIBUTES, vector):
        if index == -1:
            values[name] = None
        elif 0 <= index < NUM_CLASSES[name]:
            values[name] = SCHEMA[name][index]
        else:
            raise ValueError(f"{name} index must be -1 or in [0, {NUM_CLASSES[name]}), got {index}")
    return GarmentSpec(**values, **nuisance)


# ----------------------------------------------------------------------------------------
# Sampling specs: (seed, index) -> spec, reproducible on any machine (PCG64 is portable)
# ----------------------------------------------------------------------------------------
DOMAINS = ("in", "all")


def sample_spec(rng: np.random.Generator, domain: str = "in") -> GarmentSpec:
    """Draw a spec with uniform attributes among the applicable values.

    ``domain="in"``: photo style, no extras (what the diffusion model is trained on).
    ``domain="all"``: 60 % photo, 20 % sketch, 20 % cartoon; each extra with probability 0.25.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    category = SCHEMA["category"][rng.integers(8)]
    collar = SCHEMA["collar"][rng.integers(3)] if category in COLLARED else None
    sleeve = SCHEMA["sleeve"][rng.integers(4)] if category in SLEEVED else None
    neckline = SCHEMA["neckline"][rng.integers(4)] if applicable("neckline", category, collar) else None
    pattern = SCHEMA["pattern"][rng.integers(5)]
    colour = SCHEMA["colour"][rng.integers(8)]
    fabric = SCHEMA["fabric"][rng.integers(4)]
    fit = SCHEMA["fit"][rng.integers(3)]
    dx, dy = (float(v) for v in rng.uniform(-0.04, 0.04, size=2))
    scale = float(rng.uniform(0.92, 1.04))
    shade = float(rng.uniform(0.92, 1.06))
    phase = float(rng.uniform(0.0, 1.0))
    style = "photo"
    extras: tuple[str, ...] = ()
    if domain == "all":
        style = STYLES[int(rng.choice(3, p=[0.6, 0.2, 0.2]))]
        extras = tuple(name for name, on in zip(EXTRAS, rng.random(3) < 0.25) if on)
    return GarmentSpec(category, sleeve, neckline, collar, pattern, colour, fabric, fit, style, extras,
                       dx, dy, scale, shade, phase)


def spec_for(seed: int, index: int, domain: str = "in") -> GarmentSpec:
    """The spec of item ``index`` of the dataset with ``seed``: ``rng = default_rng([seed, index])``."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return sample_spec(np.random.default_rng([seed, index]), domain)


# ----------------------------------------------------------------------------------------
# Geometry: spec -> polygons on a unit canvas
# ----------------------------------------------------------------------------------------
# Mark codes, drawn in a second map; they change colour, never the part label.
MARK_LINE, MARK_LIGHT, MARK_BAND, MARK_GLYPH, MARK_BADGE, MARK_BELT, MARK_GOLD, MARK_SHADOW = range(1, 9)

_FIT = {  # (chest half-width, hem half-width of tops, sleeve width, sleeve angle in degrees)
    "slim": (0.15, 0.14, 0.095, 16.0),
    "regular": (0.18, 0.185, 0.11, 22.0),
    "loose": (0.225, 0.245, 0.14, 30.0),
}
_SLEEVE_LENGTH = {"sleeveless": 0.0, "short": 0.12, "elbow": 0.24, "long": 0.40}
_TOP_HEM = {"t-shirt": 0.74, "shirt": 0.78, "sweater": 0.76, "jacket": 0.81, "dress": 0.46}
_DRESS_HEM = {"slim": 0.17, "regular": 0.25, "loose": 0.33}
_SKIRT_HEM = {"slim": 0.17, "regular": 0.25, "loose": 0.32}
_LEG = {  # (waist half-width, outer hem, inner hem) for trousers
    "slim": (0.145, 0.14, 0.05),
    "regular": (0.16, 0.175, 0.045),
    "loose": (0.18, 0.225, 0.035),
}

CX = 0.5
Y_SHOULDER = 0.22
NECK_HALF = 0.065
Y_NECK = Y_SHOULDER - 0.025


class _Canvas:
    """Draws polygons given in unit coordinates onto a label map and a marks map."""

    def __init__(self, spec: GarmentSpec, resolution: int) -> None:
        self.spec = spec
        self.res = resolution
        self.labels = Image.new("L", (resolution, resolution), BACKGROUND)
        self.marks = Image.new("L", (resolution, resolution), 0)
        self.draw_labels = ImageDraw.Draw(self.labels)
        self.draw_marks = ImageDraw.Draw(self.marks)

    def to_px(self, x: float, y: float) -> tuple[float, float]:
        s = self.spec
        return ((0.5 + (x - 0.5) * s.scale + s.dx) * self.res, (0.5 + (y - 0.5) * s.scale + s.dy) * self.res)

    def polygon(self, points: list[tuple[float, float]], label: int | None = None, mark: int | None = None,
                mirror: bool = False) -> None:
        shapes = [points]
        if mirror:
            shapes.append([(2 * CX - x, y) for x, y in points])
        for shape in shapes:
            px = [self.to_px(x, y) for x, y in shape]
            if label is not None:
                self.draw_labels.polygon(px, fill=label)
            if mark is not None:
                self.draw_marks.polygon(px, fill=mark)

    def ellipse(self, box: tuple[float, float, float, float], label: int | None = None,
                mark: int | None = None) -> None:
        x0, y0 = self.to_px(box[0], box[1])
        x1, y1 = self.to_px(box[2], box[3])
        if label is not None:
            self.draw_labels.ellipse((x0, y0, x1, y1), fill=label)
        if mark is not None:
            self.draw_marks.ellipse((x0, y0, x1, y1), fill=mark)

    def rect(self, box: tuple[float, float, float, float], label: int | None = None,
             mark: int | None = None) -> None:
        x0, y0, x1, y1 = box
        self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], label, mark)

    def line(self, points: list[tuple[float, float]], width: float, mark: int) -> None:
        px = [self.to_px(x, y) for x, y in points]
        self.draw_marks.line(px, fill=mark, width=max(1, round(width * self.res * self.spec.scale)))


def _neck_cutout(canvas: _Canvas, shape: str, label: int, grow: float) -> float:
    """Draw a neckline opening (grown by ``grow``) with ``label``; return its lowest y."""
    nw, yn, g = NECK_HALF, Y_NECK, grow
    if shape == "round":
        canvas.ellipse((CX - nw - g, yn - 0.04 - g, CX + nw + g, yn + 0.06 + g), label)
        return yn + 0.06
    if shape == "v-neck":
        canvas.polygon([(CX - nw - g, yn - 0.03 - g), (CX + nw + g, yn - 0.03 - g), (CX, yn + 0.13 + 1.8 * g)], label)
        return yn + 0.13
    if shape == "square":
        canvas.rect((CX - nw - g, yn - 0.03 - g, CX + nw + g, yn + 0.07 + g), label)
        return yn + 0.07
    if shape == "boat":
        canvas.ellipse((CX - 1.8 * nw - g, yn - 0.03 - g, CX + 1.8 * nw + g, yn + 0.035 + g), label)
        return yn + 0.035
    if shape == "collar-base":  # the small opening behind a collar or hood
        canvas.ellipse((CX - 0.05 - g, yn - 0.03 - g, CX + 0.05 + g, yn + 0.04 + g), label)
        return yn + 0.04
    raise ValueError(f"unknown neck shape {shape!r}")


def _draw_top(canvas: _Canvas, spec: GarmentSpec) -> tuple[float, float]:
    """Bodice (and sleeves) of a top or dress. Returns (neck bottom y, hem y)."""
    chest, hem_half, sleeve_w, angle = _FIT[spec.fit]
    cat = spec.category
    yh = _TOP_HEM[cat]
    ys = Y_SHOULDER
    shoulder = chest + (0.025 if cat == "jacket" else 0.01)
    if spec.sleeve == "sleeveless":
        shoulder = chest - 0.05
    if cat == "dress":
        hem_half = chest - (0.05 if spec.fit == "slim" else 0.03)
    waist = hem_half - 0.03 if spec.fit == "slim" else hem_half

    # Hood behind everything.
    if spec.collar == "hood":
        canvas.ellipse((CX - 0.125, Y_NECK - 0.17, CX + 0.125, Y_NECK + 0.05), NECK)
        canvas.ellipse((CX - 0.075, Y_NECK - 0.125, CX + 0.075, Y_NECK + 0.02), mark=MARK_SHADOW)

    # Sleeves: a quadrilateral from the shoulder seam along direction d = (sin a, cos a).
    length = _SLEEVE_LENGTH[spec.sleeve]
    if length > 0:
        a = math.radians(angle)
        p1 = (CX + shoulder, ys + 0.005)
        p2 = (CX + chest - 0.005, ys + sleeve_w + 0.03)
        mx, my = (p1[0] + p2[0]) / 2, (p1[1] + p2[1]) / 2
        d = (math.sin(a), math.cos(a))
        n = (math.cos(a), -math.sin(a))
        end = (mx + d[0] * length, my + d[1] * length)
        half = sleeve_w / 2 * (0.85 if spec.fit == "slim" and spec.sleeve == "long" else 1.0)
        e1 = (end[0] + n[0] * half, end[1] + n[1] * half)
        e2 = (end[0] - n[0] * half, end[1] - n[1] * half)
        canvas.polygon([p1, e1, e2, p2], SLEEVES, mirror=True)
        if cat == "sweater":  # rib cuffs
            c = 0.035
            canvas.polygon([(e1[0] - d[0] * c, e1[1] - d[1] * c), e1, e2, (e2[0] - d[0] * c, e2[1] - d[1] * c)],
                           mark=MARK_BAND, mirror=True)

    # Torso polygon (left half, mirrored into a full outline).
    right = [(CX + NECK_HALF, Y_NECK), (CX + shoulder, ys + 0.005), (CX + chest, ys + 0.12),
             (CX + waist, (ys + 0.12 + yh) / 2), (CX + hem_half, yh)]
    if cat == "shirt":  # curved shirt-tail hem
        right[-1] = (CX + hem_half, yh - 0.02)
        right.append((CX + hem_half * 0.5, yh + 0.005))
        right.append((CX, yh + 0.015))
    left = [(2 * CX - x, y) for x, y in reversed(right)]
    canvas.polygon(right + left, TORSO)
    if cat == "dress":
        skirt = _DRESS_HEM[spec.fit]
        canvas.polygon([(CX - waist, yh - 0.005), (CX + waist, yh - 0.005), (CX + skirt, 0.9), (CX - skirt, 0.9)], LOWER)
    if cat == "sweater":  # rib hem band
        canvas.rect((CX - hem_half, yh - 0.045, CX + hem_half, yh + 0.002), mark=MARK_BAND)
    return Y_NECK, (0.9 if cat == "dress" else yh)


def _draw_bottom(canvas: _Canvas, spec: GarmentSpec) -> None:
    cat = spec.category
    if cat == "skirt":
        waist = 0.15
        hip = {"slim": 0.155, "regular": 0.17, "loose": 0.185}[spec.fit]
        hem = _SKIRT_HEM[spec.fit]
        canvas.polygon([(CX - waist, 0.2), (CX + waist, 0.2), (CX + hip, 0.32), (CX + hem, 0.74), (CX - hem, 0.74),
                        (CX - hip, 0.32)], LOWER)
        canvas.rect((CX - waist, 0.2, CX + waist, 0.24), mark=MARK_BAND)
        return
    waist, outer, inner = _LEG[spec.fit]
    hip = waist + 0.02
    crotch = 0.4
    if cat == "trousers":
        y_hem = 0.92
    else:  # shorts: short legs that flare a little with the fit
        y_hem, crotch = 0.52, 0.36
        outer = hip + {"slim": 0.0, "regular": 0.015, "loose": 0.04}[spec.fit]
        inner = {"slim": 0.045, "regular": 0.04, "loose": 0.03}[spec.fit]
    canvas.polygon([(CX - waist, 0.1), (CX + waist, 0.1), (CX + hip, 0.3), (CX + outer, y_hem), (CX + inner, y_hem),
                    (CX, crotch), (CX - inner, y_hem), (CX - outer, y_hem), (CX - hip, 0.3)], LOWER)
    canvas.rect((CX - waist, 0.1, CX + waist, 0.135), mark=MARK_BAND)
    canvas.line([(CX, 0.135), (CX, crotch - 0.1)], 0.008, MARK_LINE)


def _draw_extras(canvas: _Canvas, spec: GarmentSpec, hem: float) -> None:
    cat = spec.category
    top = cat in SLEEVED
    if "pocket" in spec.extras:
        if top and cat != "dress":
            box = (CX + 0.045, Y_SHOULDER + 0.08, CX + 0.125, Y_SHOULDER + 0.165)
        elif cat == "dress":
            box = (CX + 0.05, 0.56, CX + 0.135, 0.645)
        elif cat == "skirt":
            box = (CX + 0.04, 0.3, CX + 0.12, 0.385)
        else:
            box = (CX + 0.045, 0.17, CX + 0.125, 0.255)
        canvas.rect(box, DETAIL)
    if "logo" in spec.extras:
        if top:
            x, y, r = CX - 0.075, Y_SHOULDER + 0.13, 0.042
        elif cat == "skirt":
            x, y, r = CX - 0.08, 0.5, 0.04
        elif cat == "trousers":
            x, y, r = CX - 0.1, 0.56, 0.04
        else:
            x, y, r = CX - 0.09, 0.4, 0.038
        canvas.ellipse((x - r, y - r, x + r, y + r), DETAIL, MARK_BADGE)
        s = r * 0.6  # a gold triangular glyph on a dark badge
        canvas.polygon([(x, y - s), (x + s * 0.87, y + s * 0.5), (x - s * 0.87, y + s * 0.5)], mark=MARK_GLYPH)
    if "belt" in spec.extras:
        if cat == "dress":
            y0 = _TOP_HEM["dress"] - 0.025
        elif cat == "skirt":
            y0 = 0.2
        elif cat in ("trousers", "shorts"):
            y0 = 0.1
        else:
            y0 = hem - 0.13
        y1 = y0 + 0.045
        canvas.rect((0.0, y0, 1.0, y1), DETAIL, MARK_BELT)
        canvas.rect((CX - 0.028, y0 - 0.006, CX + 0.028, y1 + 0.006), DETAIL, MARK_GOLD)


def _draw(spec: GarmentSpec, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-2 of :func:`render`: part labels and marks at ``resolution`` (uint8 arrays)."""
    canvas = _Canvas(spec, resolution)
    neck_bottom, hem = Y_NECK, 0.0
    if spec.category in SLEEVED:
        neck_bottom, hem = _draw_top(canvas, spec)
    else:
        _draw_bottom(canvas, spec)
    labels = np.asarray(canvas.labels).copy()
    garment_before_neck = labels > 0

    if spec.category in SLEEVED:
        shape = spec.neckline if spec.neckline is not None else "collar-base"
        _neck_cutout(canvas, shape, NECK, grow=0.018)  # the trim band ...
        neck_bottom = _neck_cutout(canvas, shape, BACKGROUND, grow=0.0)  # ... around the opening
        labels = np.asarray(canvas.labels).copy()
        labels[(labels == NECK) & ~garment_before_neck] = BACKGROUND  # trim never leaves the cloth
        if spec.collar == "hood":
            labels[np.asarray(canvas.marks) == MARK_SHADOW] = NECK
        canvas.labels = Image.fromarray(labels)
        canvas.draw_labels = ImageDraw.Draw(canvas.labels)
        if spec.collar == "pointed":
            k = 1.35 if spec.category == "jacket" else 1.0
            flap = [(CX - 0.07 * k, Y_NECK - 0.02), (CX - 0.004, Y_NECK + 0.04 * k), (CX - 0.045 * k, Y_NECK + 0.1 * k)]
            canvas.polygon(flap, NECK, mirror=True)
        # Category details below the neck opening.
        if spec.category == "shirt":
            canvas.line([(CX, neck_bottom), (CX, hem)], 0.007, MARK_LINE)
            y = neck_bottom + 0.04
            while y < hem - 0.03:
                canvas.ellipse((CX - 0.011, y - 0.011, CX + 0.011, y + 0.011), mark=MARK_LIGHT)
                y += 0.09
        elif spec.category == "jacket":
            canvas.line([(CX, neck_bottom), (CX, hem + 0.01)], 0.014, MARK_LINE)
            for y in (neck_bottom + 0.12, neck_bottom + 0.27):
                canvas.ellipse((CX + 0.014, y - 0.012, CX + 0.038, y + 0.012), mark=MARK_LIGHT)

    garment = np.asarray(canvas.labels) > 0
    _draw_extras(canvas, spec, hem)
    labels = np.asarray(canvas.labels).copy()
    labels[(labels == DETAIL) & ~garment] = BACKGROUND  # belts and pockets stay on the cloth
    marks = np.asarray(canvas.marks).copy()
    marks[labels == BACKGROUND] = 0
    return labels, marks


# ----------------------------------------------------------------------------------------
# Colour: pattern x fabric x style
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _noise(resolution: int) -> np.ndarray:
    """A fixed-seed noise texture, the same on every machine."""
    return np.random.default_rng(20261122).standard_normal((resolution, resolution)).astype(np.float32)


def _pattern_field(spec: GarmentSpec, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """p in [0, 1] per pixel: 0 = main colour, 1 = the darker secondary shade."""
    ph = spec.phase
    if spec.pattern == "plain":
        return np.zeros_like(u)
    if spec.pattern == "striped":
        return (np.mod(v / 0.11 + ph, 1.0) < 0.5).astype(np.float32)
    if spec.pattern == "checked":
        a = (np.mod(u / 0.125 + ph, 1.0) < 0.5).astype(np.float32)
        b = (np.mod(v / 0.125 + ph, 1.0) < 0.5).astype(np.float32)
        return 0.5 * (a + b)
    if spec.pattern == "polka-dot":
        period, radius = 0.115, 0.03
        gv = v / period + ph
        row = np.floor(gv)
        gu = u / period + 0.5 * np.mod(row, 2.0) + ph
        du = np.mod(gu, 1.0) - 0.5
        dv = np.mod(gv, 1.0) - 0.5
        return ((du * du + dv * dv) * (period * period) < radius * radius).astype(np.float32)
    if spec.pattern == "gradient":
        return np.clip((v - 0.2) / 0.65, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown pattern {spec.pattern!r}")


def _fabric_gain(spec: GarmentSpec, u: np.ndarray, v: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Multiplicative texture of the fabric per pixel (mean about 1)."""
    if spec.fabric == "cotton":
        return np.ones_like(u)
    # Periods of at least 0.065 of the canvas (about 4 px at 64 px): finer textures vanish under the
    # box filter and the slight blur that edited images carry, and nothing could then judge them.
    if spec.fabric == "denim":  # twill diagonals plus fibre speckle
        return 1.0 + 0.15 * np.cos((2 * np.pi / 0.07) * (u + v)) + 0.06 * noise
    if spec.fabric == "knit":  # vertical ribs with stitch rows
        return 1.0 + 0.18 * np.cos((2 * np.pi / 0.065) * u) + 0.05 * np.cos((2 * np.pi / 0.05) * v)
    if spec.fabric == "leather":  # darker and smooth; the sheen is added in _colour
        return np.full_like(u, 0.86)
    raise ValueError(f"unknown fabric {spec.fabric!r}")


def _sketch_fabric(spec: GarmentSpec, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pencil marks that tell the fabric in a sketch: (darkened strokes (N,) bool, whitening (N,)).

    Denim: dense diagonal twill lines (against the direction of the shadow hatching); knit:
    vertical rib lines; leather: a bright diagonal sheen; cotton: no marks.
    """
    strokes = np.zeros(u.shape, bool)
    sheen = np.zeros(u.shape, np.float32)
    if spec.fabric == "denim":
        strokes = np.mod((u + v) / 0.07, 1.0) < 0.3
    elif spec.fabric == "knit":
        strokes = np.mod(u / 0.065, 1.0) < 0.3
    elif spec.fabric == "leather":
        t = (u * 0.8 + v * 0.6) - 0.62 - 0.15 * spec.phase
        sheen = (0.7 * np.exp(-(t / 0.05) ** 2)).astype(np.float32)
    return strokes, sheen


def _edges(labels: np.ndarray, thickness: int, garment_only: bool) -> np.ndarray:
    """Boolean map of boundaries between part labels, ``thickness`` pixels wide."""
    e = np.zeros(labels.shape, bool)
    dx = labels[:, 1:] != labels[:, :-1]
    dy = labels[1:, :] != labels[:-1, :]
    if garment_only:
        dx &= (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
        dy &= (labels[1:, :] > 0) & (labels[:-1, :] > 0)
    e[:, 1:] |= dx
    e[1:, :] |= dy
    out = e.copy()
    for k in range(1, thickness):
        shift = (k + 1) // 2 * (1 if k % 2 else -1)
        if shift > 0:
            out[:, shift:] |= e[:, :-shift]
            out[shift:, :] |= e[:-shift, :]
        else:
            out[:, :shift] |= e[:, -shift:]
            out[:shift, :] |= e[-shift:, :]
    return out


_OVERRIDES = ((MARK_GLYPH, (236, 184, 48)), (MARK_BADGE, (34, 34, 40)), (MARK_BELT, (78, 48, 28)),
              (MARK_GOLD, (212, 172, 60)))


def _colour(spec: GarmentSpec, labels: np.ndarray, marks: np.ndarray, size: int, ss: int) -> np.ndarray:
    """Step 3 of :func:`render`: the uint8 RGB image (R, R, 3) at the supersampled size.

    Only garment pixels (and ink lines) are coloured; the rest is the style's background.
    Multiplicative effects (fabric, trims, seams, shading) are gathered in one gain per pixel,
    and lightening effects (buttons, leather sheen) in one weight towards white.
    """
    res = labels.shape[0]
    garment = labels > 0
    ink = None
    if spec.style != "photo":  # ink outlines, drawn on the cloth side so the part map stays exact
        ink = _edges(labels, 2 * ss if spec.style == "cartoon" else ss, garment_only=False) & garment
    ys, xs = np.nonzero(garment)  # (N,) pixel coordinates of everything we colour
    lab, mk = labels[ys, xs], marks[ys, xs]
    # Garment-local coordinates: the pattern moves with the garment.
    u = ((xs.astype(np.float32) + 0.5) / res - 0.5 - spec.dx) / spec.scale + 0.5
    v = ((ys.astype(np.float32) + 0.5) / res - 0.5 - spec.dy) / spec.scale + 0.5

    main = np.array(PALETTE[spec.colour], np.float32)
    if spec.style == "photo":
        main = main * spec.shade
    p = _pattern_field(spec, u, v)  # (N,)
    base = main[None, :] * (1.0 - 0.58 * p)[:, None]  # secondary shade = 0.42 * main; (N, 3)

    gain = np.ones_like(u)
    whiten = np.zeros_like(u)
    if spec.style != "sketch":  # photo and cartoon show the cloth's texture; sketches draw strokes (below)
        gain *= _fabric_gain(spec, u, v, _noise(res)[ys, xs])
    gain[lab == NECK] *= 0.82
    gain[(lab == DETAIL) & (mk == 0)] *= 0.88
    gain[(mk == MARK_LINE) | (mk == MARK_SHADOW)] *= 0.45
    whiten[mk == MARK_LIGHT] = 0.6
    band = mk == MARK_BAND
    if spec.style == "photo":
        gain[band] *= 0.8 * (1.0 + 0.12 * np.cos((2 * np.pi / 0.03) * u[band]))
        if spec.fabric == "leather":  # an additive diagonal highlight
            t = (u * 0.8 + v * 0.6) - 0.62 - 0.15 * spec.phase
            whiten = np.maximum(whiten, 0.5 * np.exp(-(t / 0.05) ** 2))
        gain[_edges(labels, 2, garment_only=True)[ys, xs]] *= 0.62  # seams between parts
        # Soft shading: darker towards the silhouette, lit from the upper left.
        cover = _box_down(Image.fromarray(garment.astype(np.uint8) * 255), size)
        blurred = cover.filter(ImageFilter.GaussianBlur(radius=size / 24))
        shade = 0.72 + 0.3 * np.asarray(blurred, np.float32) / 255.0
        gain *= shade[ys // ss, xs // ss] + 0.08 * (0.5 - v) + 0.05 * (0.5 - u)
    elif spec.style == "cartoon":
        gain[band] *= 0.8

    rgb = base * gain[:, None]
    rgb += (255.0 - rgb) * whiten[:, None]
    for code, value in _OVERRIDES:
        rgb[mk == code] = value

    if spec.style == "sketch":
        paper = np.array(BACKGROUNDS["sketch"], np.float32)
        rgb = paper * 0.62 + rgb * 0.38
        hatch = (np.mod((u - v) / 0.05, 1.0) < 0.18) & (u > 0.55)  # shadow-side hatching
        rgb[hatch] *= 0.82
        strokes, sheen = _sketch_fabric(spec, u, v)  # the fabric, drawn the way an illustrator would
        rgb[strokes] *= 0.72
        rgb += (255.0 - rgb) * sheen[:, None]
        rgb[ink[ys, xs]] = (70, 70, 74)  # graphite
    elif spec.style == "cartoon":
        rgb[ink[ys, xs]] = 20.0

    out = np.empty((res, res, 3), np.uint8)
    out[...] = BACKGROUNDS[spec.style]
    # Quantise here, so that everything after is exact integer arithmetic.
    out[ys, xs] = np.floor(np.clip(rgb, 0.0, 255.0) + 0.5).astype(np.uint8)
    return out


def _box_down(image: Image.Image, size: int) -> Image.Image:
    """Box-filter ``image`` to ``size`` x ``size`` (PIL's fixed-point resampler: exact and fast)."""
    return image.resize((size, size), Image.Resampling.BOX)


@dataclass(frozen=True)
class Rendering:
    """A rendered garment: ``image`` (H, W, 3) uint8 RGB and ``parts`` (H, W) uint8 labels."""

    spec: GarmentSpec
    image: np.ndarray
    parts: np.ndarray = field(repr=False)


def render(spec: GarmentSpec, size: int = 64, supersample: int | None = None) -> Rendering:
    """Render ``spec`` as a ``size`` x ``size`` image with its part map.

    ``supersample`` (default 3 up to 128 px, 2 above) sets the anti-aliasing factor: the
    scene is drawn that many times larger and box-filtered down. The part map is the
    majority label of each output pixel's sub-pixels.
    """
    if not isinstance(spec, GarmentSpec):
        raise TypeError(f"spec must be a GarmentSpec, got {type(spec).__name__}")
    if not isinstance(size, int) or not (16 <= size <= 1024):
        raise ValueError(f"size must be an int in [16, 1024], got {size!r}")
    ss = supersample if supersample is not None else (3 if size <= 128 else 2)
    if not isinstance(ss, int) or not (1 <= ss <= 8):
        raise ValueError(f"supersample must be an int in [1, 8], got {supersample!r}")
    res = size * ss
    # 1-2. polygons -> label and mark maps at the supersampled resolution
    labels, marks = _draw(spec, res)
    # 3. colour field
    rgb = _colour(spec, labels, marks, size, ss)
    # 4. box filter to the output size; majority vote for the labels
    image = np.array(_box_down(Image.fromarray(rgb), size))  # a writable copy
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=len(PARTS)))
    coverage = np.stack([np.asarray(_box_down(Image.fromarray((labels == k).astype(np.uint8) * 255), size))
                         for k in present])  # (K, size, size) share of sub-pixels with label k
    parts = present[coverage.argmax(axis=0)].astype(np.uint8)
    return Rendering(spec, image, parts)


def render_batch(specs: Sequence[GarmentSpec], size: int = 64) -> torch.Tensor:
    """The renders of ``specs`` as one float batch (B, 3, size, size) in [-1, 1]."""
    specs = list(specs)
    if not specs:
        raise ValueError("specs must name at least one garment")
    return torch.stack([to_tensor(render(spec, size).image) for spec in specs])


@dataclass
class RenderCache:
    """Many renders held in memory, for trainers and notebooks that draw random batches."""

    images: torch.Tensor
    """(N, H, W, 3) uint8 RGB."""
    attributes: torch.Tensor
    """(N, 8) int64 class indices in :data:`ATTRIBUTES` order, -1 where inapplicable."""
    styles: torch.Tensor
    """(N,) int64 index into :data:`STYLES`."""
    parts: torch.Tensor
    """(N, H, W) uint8 part labels."""
    specs: list[GarmentSpec]

    def __len__(self) -> int:
        return self.images.shape[0]

    @functools.cached_property
    def extras(self) -> torch.Tensor:
        """(N, 3) int64: 1 where the garment carries each of :data:`EXTRAS`, else 0."""
        return torch.tensor([[int(e in spec.extras) for e in EXTRAS] for spec in self.specs], dtype=torch.int64)


def render_cache(seed: int, n: int, size: int = 64, domain: str = "all", progress: bool = True,
                 on_disk: bool = False) -> RenderCache:
    """Render items ``0..n-1`` of the Garments dataset with ``seed`` (see :func:`spec_for`).

    ``on_disk``: keep the result in :func:`fashionlab.config.cache_dir` and reuse it next time (60,000
    renders take ~10 minutes on two cores). The file name carries a hash of this module's source,
    so a changed renderer never serves stale images.
    """
    from tqdm.auto import tqdm

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if on_disk:
        import hashlib

        from ..config import cache_dir

        digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
        path = cache_dir() / f"renders-seed{seed}-n{n}-{size}px-{domain}-{digest}.pt"
        if path.is_file():  # tensors and plain containers only, so torch.load needs no pickled classes
            stored = torch.load(path, weights_only=True)
            specs = [GarmentSpec(**{**spec, "extras": tuple(spec["extras"])}) for spec in stored.pop("specs")]
            return RenderCache(**stored, specs=specs)
        cache = render_cache(seed, n, size, domain, progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two processes may fill the cache at once
        stored = {f.name: getattr(cache, f.name) for f in dataclasses.fields(cache)}
        stored["specs"] = [dataclasses.asdict(spec) for spec in cache.specs]
        torch.save(stored, tmp)
        tmp.replace(path)
        return cache
    images = np.empty((n, size, size, 3), np.uint8)
    parts = np.empty((n, size, size), np.uint8)
    attributes = np.empty((n, len(ATTRIBUTES)), np.int64)
    styles = np.empty((n,), np.int64)
    specs = []
    for i in tqdm(range(n), desc="rendering", disable=not progress, leave=False):
        spec = spec_for(seed, i, domain)
        r = render(spec, size)
        images[i], parts[i] = r.image, r.parts
        attributes[i] = spec.attribute_vector()
        styles[i] = STYLES.index(spec.style)
        specs.append(spec)
    return RenderCache(torch.from_numpy(images), torch.from_numpy(attributes), torch.from_numpy(styles),
                       torch.from_numpy(parts), specs)


# ----------------------------------------------------------------------------------------
# Ground-truth edit regions
# ----------------------------------------------------------------------------------------
def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return mask
    m = mask.float()
    while m.dim() < 4:
        m = m.unsqueeze(0)
    out = torch.nn.functional.max_pool2d(m, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return out.reshape(mask.shape) > 0.5


def region_mask(parts: np.ndarray | torch.Tensor, attribute: str, margin: float = 0.06) -> torch.Tensor:
    """Boolean mask of the pixels where ``attribute`` lives, from a part map (``(H, W)`` or ``(B, H, W)``).

    See :data:`ATTRIBUTE_REGION`: sleeve -> sleeves; neckline/collar -> the neck trim grown by
    ``margin/2`` (it then covers the opening); pattern/colour/fabric -> every garment pixel;
    category/fit -> the garment grown by ``margin`` (a fraction of the image width), since
    shape edits move the silhouette; style -> the whole image (a style redraws the background too);
    extra -> the detail part (pocket, logo, belt) grown by ``margin/2``.
    """
    if attribute not in ATTRIBUTE_REGION:
        raise ValueError(f"attribute must be one of {tuple(ATTRIBUTE_REGION)}, got {attribute!r}")
    parts_t = torch.as_tensor(np.asarray(parts) if not isinstance(parts, torch.Tensor) else parts)
    if parts_t.dim() not in (2, 3):
        raise ValueError(f"parts must have shape (H, W) or (B, H, W), got {tuple(parts_t.shape)}")
    if parts_t.is_floating_point() or int(parts_t.max()) >= len(PARTS) or int(parts_t.min()) < 0:
        raise ValueError(f"parts must hold integer labels in [0, {len(PARTS)}), got dtype {parts_t.dtype}")
    size = parts_t.shape[-1]
    radius = max(1, round(margin * size))
    region = ATTRIBUTE_REGION[attribute]
    if region == "sleeves":
        return _dilate(parts_t == SLEEVES, 1)
    if region == "neck":
        return _dilate(parts_t == NECK, max(1, radius // 2))
    if region == "garment":
        return parts_t > 0
    if region == "image":  # a render style redraws everything, background included
        return torch.ones(parts_t.shape, dtype=torch.bool)
    if region == "detail":  # a pocket, logo or belt, and the seam around it
        return _dilate(parts_t == DETAIL, max(1, radius // 2))
    return _dilate(parts_t > 0, radius)


def edit_region(source_parts: np.ndarray | torch.Tensor, target_parts: np.ndarray | torch.Tensor,
                attributes: str | tuple[str, ...] | list[str], margin: float = 0.06) -> torch.Tensor:
    """The ground-truth region of an edit: the union of each edited attribute's region on the
    source's part map and on the *ideal* edit's part map (the re-rendered target spec).

    A sleeve lengthened from short to long moves pixels outside the source's sleeves, so the
    source alone under-counts the region a faithful edit may touch.
    """
    names = (attributes,) if isinstance(attributes, str) else tuple(attributes)
    if not names:
        raise ValueError("attributes must name at least one edited attribute")
    src, tgt = (torch.as_tensor(np.asarray(p) if not isinstance(p, torch.Tensor) else p)
                for p in (source_parts, target_parts))
    if src.shape != tgt.shape:
        raise ValueError(f"source_parts and target_parts must have the same shape, got {tuple(src.shape)} "
                         f"and {tuple(tgt.shape)}")
    mask = torch.zeros(src.shape, dtype=torch.bool)
    for name in names:
        mask |= region_mask(src, name, margin) | region_mask(tgt, name, margin)
    return mask


# ----------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------
_WORDS = {
    "sleeve": {"sleeveless": "sleeveless", "short": "short-sleeve", "elbow": "elbow-sleeve", "long": "long-sleeve"},
    "neckline": {"round": "round-neck", "v-neck": "v-neck", "square": "square-neck", "boat": "boat-neck"},
    "collar": {"none": "without a collar", "pointed": "with a pointed collar", "hood": "with a hood"},
    "pattern": {"plain": "plain", "striped": "striped", "checked": "checked", "polka-dot": "polka-dot",
                "gradient": "gradient"},
    "fit": {"slim": "slim-fit", "regular": "regular-fit", "loose": "loose-fit"},
    "fabric": {"cotton": "cotton", "denim": "denim", "knit": "knit", "leather": "leather"},
}
_EXTRA_WORDS = {"pocket": "a pocket", "logo": "a logo print", "belt": "a belt"}
_STYLE_WORDS = {"photo": "a photo of", "sketch": "a sketch of", "cartoon": "a cartoon of"}

CAPTION_TEMPLATES: tuple[str, ...] = (
    "{article}{fit}{colour}{pattern}{sleeve}{neckline}{category}{collar} in {fabric}{extras}",
    "{style} {article}{colour}{pattern}{category}, {sleeve}{neckline}{fit}{fabric}{collar}{extras}",
    "{category}: {colour}, {pattern}, {fabric}, {fit}{sleeve_list}{neckline_list}{collar_list}{extras}",
)


def _word(attribute: str, value: str) -> str:
    if attribute == "colour":
        return value
    if attribute == "category":
        return value
    return _WORDS[attribute][value]


def caption(spec: GarmentSpec, template: int = 0, attributes: tuple[str, ...] | None = None) -> str:
    """A natural-language caption of ``spec``.

    ``template`` picks one of :data:`CAPTION_TEMPLATES`. ``attributes`` restricts the caption
    to a subset (e.g. ``("colour", "pattern")`` -> "a red striped t-shirt"; the category is
    always named). Inapplicable attributes are never mentioned.
    """
    if not isinstance(spec, GarmentSpec):
        raise TypeError(f"spec must be a GarmentSpec, got {type(spec).__name__}")
    if not (0 <= template < len(CAPTION_TEMPLATES)):
        raise ValueError(f"template must be in [0, {len(CAPTION_TEMPLATES)}), got {template}")
    wanted = ATTRIBUTES if attributes is None else tuple(attributes)
    for name in wanted:
        if name not in SCHEMA:
            raise ValueError(f"attributes must be drawn from {ATTRIBUTES}, got {name!r}")
    values = {n: getattr(spec, n) for n in ATTRIBUTES if n in wanted and getattr(spec, n) is not None}
    plural = spec.category in ("trousers", "shorts")
    words = {n: _word(n, v) for n, v in values.items()}
    collar = words.get("collar")
    if template == 2:
        listed = [words[n] for n in ("colour", "pattern", "fabric", "fit", "sleeve", "neckline") if n in words]
        if collar is not None:
            listed.append(collar)
        text = spec.category + (": " + ", ".join(listed) if listed else "")
        if spec.extras:
            text += ", with " + " and ".join(_EXTRA_WORDS[e] for e in spec.extras)
        return text
    adjectives_0 = [words[n] for n in ("fit", "colour", "pattern", "sleeve", "neckline") if n in words]
    adjectives_1 = [words[n] for n in ("colour", "pattern") if n in words]
    if template == 0:
        noun = " ".join(adjectives_0 + [spec.category])
        if collar is not None:
            noun += " " + collar
        text = ("a pair of " if plural else _article(noun)) + noun
        if "fabric" in words:
            text += " in " + words["fabric"]
    else:
        noun = " ".join(adjectives_1 + [spec.category])
        text = _STYLE_WORDS[spec.style] + " " + ("a pair of " if plural else _article(noun)) + noun
        rest = [words[n] for n in ("sleeve", "neckline", "fit", "fabric") if n in words]
        if collar is not None:
            rest.append(collar)
        if rest:
            text += ", " + ", ".join(rest)
    if spec.extras:
        text += " with " + " and ".join(_EXTRA_WORDS[e] for e in spec.extras)
    return text


def _article(noun: str) -> str:
    return "an " if noun[0] in "aeiou" else "a "


# ----------------------------------------------------------------------------------------
# torch Dataset
# ----------------------------------------------------------------------------------------
class GarmentsDataset(torch.utils.data.Dataset):
    """Garments item ``i`` = render(spec_for(seed, i, domain), size).

    Each item is a dict: ``image`` (3, H, W) float in [-1, 1]; ``attributes`` (8,) int64 with
    -1 where inapplicable; ``parts`` (H, W) int64; ``caption`` str; ``spec`` GarmentSpec.
    Use :func:`collate` as the DataLoader's ``collate_fn``.
    """

    def __init__(self, length: int, seed: int = 0, size: int = 64, domain: str = "in",
                 caption_template: int | None = 0) -> None:
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        if domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.length, self.seed, self.size, self.domain = length, seed, size, domain
        self.caption_template = caption_template

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not (-self.length <= index < self.length):
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        index = index % self.length
        spec = spec_for(self.seed, index, self.domain)
        out = render(spec, self.size)
        template = self.caption_template if self.caption_template is not None else index % len(CAPTION_TEMPLATES)
        return {
            "image": to_tensor(out.image),
            "attributes": torch.from_numpy(spec.attribute_vector()),
            "parts": torch.from_numpy(out.parts.astype(np.int64)),
            "caption": caption(spec, template),
            "spec": spec,
        }


def collate(batch: list[dict]) -> dict:
    """Stack tensors; keep captions and specs as lists."""
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "attributes": torch.stack([b["attributes"] for b in batch]),
        "parts": torch.stack([b["parts"] for b in batch]),
        "caption": [b["caption"] for b in batch],
        "spec": [b["spec"] for b in batch],
    }
