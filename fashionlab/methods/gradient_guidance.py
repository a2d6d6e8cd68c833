"""Image editing with gradient guidance and small guidance functions (thesis 003, Algorithm 1).

Chapter: "Gradient guidance: colour, segmentation and attribute functions"
(``notebooks/09_gradient_guidance.py``).

A *guidance function* maps P_t (the predicted clean image) to a per-image score ``s``; the loop of
:func:`fashionlab.diffusion.guidance.guided_sample` lowers ``lambda * loss`` by nudging x_{t-1}
(Algorithm 1, ``mode="nudge"``) or the replayed noise z_t (eq. 19, ``mode="z_nudge"``). Every
function here returns a *loss* (to lower); ``direction="raise"`` makes the loss ``-s``.

====================  ====================================================================  ===========
function              score s(P_t)                                                          thesis
====================  ====================================================================  ===========
:func:`colour_loss`   mean |P_t[c] - w| over pixels (a channel; :func:`rgb_loss`: all three)  §3.3.1
:func:`segmentation_  (1 / HW) sum_hw softmax(parser(P_t))[k], summed over the chosen parts,   §3.3.2,
score`                minus the same over ``minus`` parts ("lips minus mouth")              eqs. 14-15
:func:`attribute_     the logit of one value of one attribute of ``garments-attrnet``       §3.3.3
score`                (``variant="logit"``) or its margin over the largest other logit
                      (``"max"``, our reading of appendix F, which our copy lacks)
:func:`parser_mask`   M = [parser(x_0) in parts]                                            §3.4, eq. 16
:func:`regularised`   s_main + w (s_other(P_t) -/+ s_other(x_0))^2                         eqs. 17-18
====================  ====================================================================  ===========

Deviations (stated in the chapter): the thesis's colour target w lives in [0, 1], ours in
[-1, 1] (its w = 0.9 is our 0.8); its classifier is binary per attribute (one logit each way),
ours has one softmax head per attribute, so "the positive logit" is the logit of the target value
and the sign-symmetric score of eqs. 17-18 is the value's log-odds against the rest,
:func:`log_odds`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..data.garments import ATTRIBUTES, PARTS, SCHEMA
from ..config import check_number
from ..data.transforms import check_images
from ..diffusion.core import Denoiser, LatentDenoiser, diffusers_grid, even_grid, reverse_pairs, sample
from ..diffusion.guidance import Guidance, GuidedOutput, LossFn, colour_loss, guided_sample, refine_tail
from ..diffusion.inversion import ddim_invert, edit_friendly_invert
from ..models.clip import check_prompts

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""``P_t (B, 3, H, W) -> (B,)`` attribute score."""
DIRECTIONS: tuple[str, ...] = ("raise", "lower")
VARIANTS: tuple[str, ...] = ("logit", "max")


def _check_direction(direction: str) -> float:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return -1.0 if direction == "raise" else 1.0


def as_loss(score: ScoreFn, direction: str) -> LossFn:
    """The loss that moves ``score`` in ``direction`` when lowered: ``-s`` to raise, ``s`` to lower."""
    sign = _check_direction(direction)
    return lambda x0_pred: sign * score(x0_pred)


# ----------------------------------------------------------------------------------------
# Colour (§3.3.1)
# ----------------------------------------------------------------------------------------
def rgb_loss(target: Sequence[float]) -> LossFn:
    """Colour guidance towards a target RGB ``(r, g, b)`` in [-1, 1]: the mean over the three
    channels of the thesis's per-channel score mean |P_t[c] - w_c|."""
    target = tuple(float(v) for v in target)
    if len(target) != 3 or not all(-1.0 <= v <= 1.0 for v in target):
        raise ValueError(f"target must be three values in [-1, 1] (r, g, b), got {target}")
    per_channel = [colour_loss(c, w) for c, w in enumerate(target)]
    return lambda x0_pred: sum(loss(x0_pred) for loss in per_channel) / 3


# ----------------------------------------------------------------------------------------
# Segmentation (§3.3.2, eqs. 14-15) and the mask (§3.4, eq. 16)
# ----------------------------------------------------------------------------------------
def _part_indices(parts: Sequence[str], argument: str) -> list[int]:
    parts = [parts] if isinstance(parts, str) else list(parts)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"{argument} must be parser parts from {PARTS}, got {unknown}")
    return [PARTS.index(p) for p in parts]


def segmentation_score(parser: torch.nn.Module, parts: Sequence[str] | str, minus: Sequence[str] | str = ()) -> ScoreFn:
    """eq. 15: the parser's softmax mass of ``parts`` (summed), as a share of the image, minus
    the mass of ``minus`` (the thesis's "lips minus mouth")."""
    plus_idx, minus_idx = _part_indices(parts, "parts"), _part_indices(minus, "minus")
    if not plus_idx:
        raise ValueError("parts must name at least one parser part")
    if set(plus_idx) & set(minus_idx):
        raise ValueError(f"parts and minus overlap: {parts}, {minus}")

    def score(x0_pred: torch.Tensor) -> torch.Tensor:
        probs = parser(x0_pred).softmax(dim=1).mean(dim=(-2, -1))  # (B, 6): share of the image per part
        out = probs[:, plus_idx].sum(dim=1)
        return out - probs[:, minus_idx].sum(dim=1) if minus_idx else out

    return score


def segmentation_loss(parser: torch.nn.Module, parts: Sequence[str] | str, direction: str = "raise",
                      minus: Sequence[str] | str = ()) -> LossFn:
    """Grow (``"raise"``) or shrink (``"lower"``) the parts' area: the sign of the thesis's lambda."""
    return as_loss(segmentation_score(parser, parts, minus), direction)


@torch.no_grad()
def parser_mask(parser: torch.nn.Module, images: torch.Tensor, parts: Sequence[str] | str) -> torch.Tensor:
    """eq. 16: M = 1 where the parser labels ``images`` (the source x_0) as one of ``parts``;
    (B, 1, H, W) float, to multiply the gradient with."""
    check_images(images, "images")
    idx = torch.tensor(_part_indices(parts, "parts"), device=images.device)
    labels = parser(images).argmax(dim=1)  # (B, H, W)
    return torch.isin(labels, idx).unsqueeze(1).to(images.dtype)


# ----------------------------------------------------------------------------------------
# Attributes (§3.3.3) and the regularisers (eqs. 17-18)
# ----------------------------------------------------------------------------------------
def classifier_logits(classifier: torch.nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{attribute: (B, C) logits}`` of an :class:`~fashionlab.models.attrnet.AttributeNet` (the
    guide) or of the oracle (the judge), from images in [-1, 1], differentiably."""
    if hasattr(classifier, "preprocess"):
        return classifier(classifier.preprocess(images))[0]
    return classifier(images)


def _check_value(attribute: str, value: str) -> int:
    if attribute not in ATTRIBUTES:
        raise ValueError(f"attribute must be one of {ATTRIBUTES}, got {attribute!r}")
    if value not in SCHEMA[attribute]:
        raise ValueError(f"value must be one of {SCHEMA[attribute]} for {attribute!r}, got {value!r}")
    return SCHEMA[attribute].index(value)


def attribute_score(classifier: torch.nn.Module, attribute: str, value: str, variant: str = "logit") -> ScoreFn:
    """The logit of ``attribute == value`` (``"logit"``, the thesis's positive prediction), or that
    logit minus the largest other logit of the attribute (``"max"``)."""
    k = _check_value(attribute, value)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")

    def score(x0_pred: torch.Tensor) -> torch.Tensor:
        logits = classifier_logits(classifier, x0_pred)[attribute]
        if variant == "logit":
            return logits[:, k]
        others = torch.cat([logits[:, :k], logits[:, k + 1:]], dim=1)
        return logits[:, k] - others.max(dim=1).values

    return score


def attribute_loss(classifier: torch.nn.Module, attribute: str, value: str, direction: str = "raise",
                   variant: str = "logit") -> LossFn:
    """Binary-attribute guidance (§3.3.3): raise or lower :func:`attribute_score`."""
    return as_loss(attribute_score(classifier, attribute, value, variant), direction)


def log_odds(classifier: torch.nn.Module, attribute: str, value: str) -> ScoreFn:
    """log p(value) - log p(not value): the sign-symmetric, binary-classifier-like score of one value
    (positive when the classifier favours it over all the others together)."""
    k = _check_value(attribute, value)

    def score(x0_pred: torch.Tensor) -> torch.Tensor:
        logp = classifier_logits(classifier, x0_pred)[attribute].log_softmax(dim=1)
        return logp[:, k] - torch.log1p(-logp[:, k].exp().clamp(max=1 - 1e-6))

    return score


def regularised(loss: LossFn, other: Callable[[torch.Tensor], torch.Tensor], source: torch.Tensor, mode: str = "hold",
                weight: float = 1.0) -> LossFn:
    """eqs. 17-18: ``loss + weight (s_other(P_t) - s_other(x_0))^2`` (``"hold"``: disentangle, keep
    the other attribute where the source has it) or ``... + s_other(x_0))^2`` (``"flip"``: entangle,
    push a sign-symmetric score such as :func:`log_odds` to minus its source value). ``other`` may
    return (B,) or, for ``"hold"``, (B, C) (a whole logit vector; the squares are summed).
    ``source`` is x_0 (B, 3, H, W)."""
    if mode not in ("hold", "flip"):
        raise ValueError(f"mode must be 'hold' or 'flip', got {mode!r}")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    check_images(source, "source")
    with torch.no_grad():
        reference = other(source)
    if mode == "flip" and reference.dim() != 1:
        raise ValueError(f"mode='flip' needs a (B,) score such as log_odds, got shape {tuple(reference.shape)}")
    sign = -1.0 if mode == "hold" else 1.0

    def total(x0_pred: torch.Tensor) -> torch.Tensor:
        if x0_pred.shape[0] != reference.shape[0]:
            raise ValueError(f"the regulariser was built for {reference.shape[0]} source images, got {x0_pred.shape[0]}")
        penalty = (other(x0_pred) + sign * reference).pow(2)
        return loss(x0_pred) + weight * (penalty.sum(dim=1) if penalty.dim() == 2 else penalty)

    return total


# ----------------------------------------------------------------------------------------
# Algorithm 1 on generated images
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GradientGuidanceConfig:
    """Algorithm 1's settings. Defaults are the thesis's: eta = 1, 50 steps, ``clip_sample`` on for
    generated images, guidance on every step (t1 = 0, t2 = None)."""

    strength: float
    """lambda."""
    steps: int = 50
    t1: int = 0
    """The first guided step index (0 = the noisiest step)."""
    t2: int | None = None
    """Guidance stops before this step index (None: to the end)."""
    eta: float = 1.0
    clip_sample: bool = True
    extra_steps: int = 0
    """Unguided steps added after t2 (the thesis's §4.3, after Kwon et al.)."""
    mode: str = "nudge"
    """``"nudge"`` (Algorithm 1) or ``"universal"`` (eq. 13, the comparator)."""

    def __post_init__(self) -> None:
        check_number("strength (lambda)", self.strength, 0)
        check_number("steps", self.steps, 1, integer=True)
        check_number("t1", self.t1, 0, integer=True)
        if self.t2 is not None:
            check_number("t2", self.t2, 1, integer=True)
        check_number("extra_steps", self.extra_steps, 0, integer=True)
        check_number("eta", self.eta, 0, 1)
        if self.mode not in ("nudge", "universal"):
            raise ValueError(f"mode must be 'nudge' or 'universal', got {self.mode!r}")
        if not 0 <= self.t1 < self.steps or (self.t2 is not None and not self.t1 < self.t2 <= self.steps):
            raise ValueError(f"need 0 <= t1 < t2 <= steps ({self.steps}), got t1={self.t1}, t2={self.t2}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")

    def guidance(self) -> Guidance:
        return Guidance(self.strength, self.mode, self.t1, self.t2, extra_steps=self.extra_steps)


@dataclass
class Draw:
    """The randomness of synthetic edits: x_T and the DDPM noise of every step, each image from its
    own generator (``seed``, index), so image i is the same in any batch and any subset."""

    x_T: torch.Tensor
    """(B, 3, H, W)."""
    noises: list[torch.Tensor]
    """z of every step, top step first, each (B, 3, H, W)."""
    seed: int
    indices: list[int]

    def subset(self, keep: Sequence[int]) -> "Draw":
        """The images at positions ``keep`` of this draw."""
        keep = list(keep)
        return Draw(self.x_T[keep], [z[keep] for z in self.noises], self.seed, [self.indices[k] for k in keep])

    def tail(self, n: int) -> list[torch.Tensor]:
        """``n`` more noises per image (for the steps :func:`refine_tail` adds), from a second stream."""
        gens = [torch.Generator().manual_seed(_image_seed(self.seed, i) + 1) for i in self.indices]
        shape = self.x_T.shape[1:]
        per_image = [torch.randn(n, *shape, generator=g) for g in gens]
        return [torch.stack([p[k] for p in per_image]) for k in range(n)]


def _image_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index) * 2


def draw(seed: int, indices: Sequence[int] | int, steps: int = 50, size: int = 64, channels: int = 3) -> Draw:
    """x_T and the noise of ``steps`` DDPM steps for images ``indices`` (or ``range(n)``) of ``seed``
    (``channels`` x ``size`` x ``size``: 3 x 64 x 64 for the pixel DDPM, 4 x 16 x 16 for the latent model)."""
    indices = list(range(indices)) if isinstance(indices, int) else [int(i) for i in indices]
    if not indices or min(indices) < 0:
        raise ValueError(f"indices must be a positive count or non-negative image indices, got {indices}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x_T, noises = [], []
    for i in indices:
        g = torch.Generator().manual_seed(_image_seed(seed, i))
        x_T.append(torch.randn(channels, size, size, generator=g))
        noises.append(torch.randn(steps, channels, size, size, generator=g))
    stacked = torch.stack(noises, dim=1)  # (steps, B, 3, H, W)
    return Draw(torch.stack(x_T), list(stacked), seed, indices)


@dataclass
class SyntheticEdit:
    original: torch.Tensor
    """The unguided sample (B, 3, H, W)."""
    edited: torch.Tensor
    """The same x_T and noise, guided (clamped to [-1, 1] under ``clip_sample``)."""
    guided: GuidedOutput
    """The guided run (losses, nudge norms, trajectory if asked)."""
    seconds: float
    """Wall time of the guided run."""


@dataclass(frozen=True)
class FromSource:
    """A loss that needs the unguided x_0 (the regularisers of eqs. 17-18): ``build(original) -> loss``."""

    build: Callable[[torch.Tensor], LossFn]


def generate(denoiser: Denoiser, alphas_cumprod: torch.Tensor, scheduler, noise: Draw, steps: int = 50,
             eta: float = 1.0, clip_sample: bool = True) -> torch.Tensor:
    """The unguided samples of ``noise`` (what :func:`synthetic_edit` edits)."""
    if len(noise.noises) != steps:
        raise ValueError(f"the draw holds noise for {len(noise.noises)} steps, not {steps}")
    grid = diffusers_grid(scheduler, steps)
    return sample(denoiser, noise.x_T, grid, alphas_cumprod, eta=eta, noises=noise.noises, clip_x0=clip_sample).x0


def synthetic_edit(denoiser: Denoiser, alphas_cumprod: torch.Tensor, scheduler, loss_fn: LossFn | FromSource,
                   cfg: GradientGuidanceConfig, noise: Draw,
                   mask: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None,
                   original: torch.Tensor | None = None, return_trajectory: bool = False,
                   progress: bool = False) -> SyntheticEdit:
    """Generate from ``noise`` twice: once unguided (or take ``original``, made by :func:`generate`
    from the same draw and config), once under Algorithm 1. ``loss_fn`` may be a
    :class:`FromSource`; ``mask`` a tensor or ``original -> mask`` (eq. 16 on the source)."""
    if not isinstance(noise, Draw):
        raise TypeError(f"noise must be a Draw (see gradient_guidance.draw), got {type(noise).__name__}")
    if original is None:
        original = generate(denoiser, alphas_cumprod, scheduler, noise, cfg.steps, cfg.eta, cfg.clip_sample)
    elif original.shape != noise.x_T.shape:
        raise ValueError(f"original must match the draw's x_T {tuple(noise.x_T.shape)}, got {tuple(original.shape)}")
    if isinstance(loss_fn, FromSource):
        loss_fn = loss_fn.build(original)
    m = mask(original) if callable(mask) else mask
    grid = diffusers_grid(scheduler, cfg.steps)
    noises = list(noise.noises)
    if cfg.extra_steps:
        t2 = cfg.steps if cfg.t2 is None else cfg.t2
        n_tail = len(reverse_pairs(refine_tail(grid, t2, cfg.extra_steps))) - t2
        noises = noises[:t2] + noise.tail(n_tail)
    start = time.perf_counter()
    guided = guided_sample(denoiser, noise.x_T, grid, alphas_cumprod, loss_fn, cfg.guidance(), mask=m, eta=cfg.eta,
                           noises=noises, clip_x0=cfg.clip_sample, return_trajectory=return_trajectory,
                           progress=progress)
    edited = guided.x0.clamp(-1, 1) if cfg.clip_sample else guided.x0  # latents are not in [-1, 1]
    return SyntheticEdit(original, edited, guided, time.perf_counter() - start)


def latent_denoiser(pipe, prompts: Sequence[str], guidance_scale: float = 4.0) -> LatentDenoiser:
    """eps of a Stable Diffusion pipeline's UNet for ``prompts`` (one per image), with
    classifier-free guidance of ``guidance_scale``: the denoiser of guidance on chapter 08's model."""
    cond, uncond = pipe.encode_prompt(list(check_prompts(prompts)), pipe.device, 1, guidance_scale > 1)
    return LatentDenoiser(pipe.unet, cond, uncond, guidance_scale, pipe.scheduler)


def through_decoder(loss_fn: LossFn, vae: torch.nn.Module) -> LossFn:
    """``loss_fn`` of the decoded P_t: guidance on a latent model sees the image through the VAE
    decoder (the thesis's LDM and SD experiments)."""
    scale = vae.config.scaling_factor
    return lambda z0: loss_fn(vae.decode(z0 / scale).sample)


# ----------------------------------------------------------------------------------------
# Real images (§4.5): DDIM inversion vs edit-friendly DDPM inversion + eq. 19
# ----------------------------------------------------------------------------------------
@dataclass
class RealEdit:
    reconstruction: torch.Tensor
    """Regenerated without guidance."""
    edited: torch.Tensor
    x_T: torch.Tensor
    """The inverted top latent (for the appendix-B Gaussianity check)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """``invert``, ``reconstruct`` and ``edit`` wall times."""


def real_edit_ddim(denoiser: Denoiser, alphas_cumprod: torch.Tensor, images: torch.Tensor, loss_fn: LossFn,
                   strength: float, steps: int = 1000, t1: int = 0, t2: int | None = None,
                   mask: torch.Tensor | None = None, progress: bool = False) -> RealEdit:
    """DDIM-invert ``images`` over ``steps`` steps (eq. 7; the thesis: 1000), then regenerate with
    eta = 0 and ``clip_sample`` off, unguided and under Algorithm 1's nudge on steps [t1, t2)."""
    check_images(images, "images")
    grid = even_grid(len(alphas_cumprod) - 1, steps)
    clock = time.perf_counter()
    inv = ddim_invert(denoiser, images, grid, alphas_cumprod, progress=progress)
    seconds = {"invert": time.perf_counter() - clock}
    clock = time.perf_counter()
    recon = guided_sample(denoiser, inv.x_t, grid, alphas_cumprod, loss_fn, Guidance(0.0, "nudge", 0, 0)).x0
    seconds["reconstruct"] = time.perf_counter() - clock
    clock = time.perf_counter()
    edited = guided_sample(denoiser, inv.x_t, grid, alphas_cumprod, loss_fn, Guidance(strength, "nudge", t1, t2),
                           mask=mask, progress=progress).x0
    seconds["edit"] = time.perf_counter() - clock
    return RealEdit(recon, edited.clamp(-1, 1), inv.x_t, seconds)


def real_edit_ddpm(denoiser: Denoiser, alphas_cumprod: torch.Tensor, images: torch.Tensor, loss_fn: LossFn,
                   strength: float, steps: int = 100, skip: int = 0, t1: int = 0, t2: int | None = None,
                   mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   progress: bool = False) -> RealEdit:
    """Edit-friendly DDPM inversion over ``steps`` steps (eqs. 8-9; the thesis: 100), then replay
    from T_skip = ``skip`` with the z_t nudged by eq. 19 on the replayed steps [t1, t2) (indices
    counted from the first replayed step)."""
    check_images(images, "images")
    grid = even_grid(len(alphas_cumprod) - 1, steps)
    clock = time.perf_counter()
    inv = edit_friendly_invert(denoiser, images, grid, alphas_cumprod, generator=generator, progress=progress)
    seconds = {"invert": time.perf_counter() - clock}
    replay_grid = inv.grid[:len(inv.grid) - skip]
    zs, sigmas, start = inv.zs[skip:], inv.sigmas[skip:], inv.xs[skip]
    clock = time.perf_counter()
    recon = guided_sample(denoiser, start, replay_grid, alphas_cumprod, loss_fn, Guidance(0.0, "z_nudge", 0, 0),
                          noises=zs, sigmas=sigmas).x0
    seconds["reconstruct"] = time.perf_counter() - clock
    clock = time.perf_counter()
    edited = guided_sample(denoiser, start, replay_grid, alphas_cumprod, loss_fn,
                           Guidance(strength, "z_nudge", t1, t2), mask=mask, noises=zs, sigmas=sigmas,
                           progress=progress).x0
    seconds["edit"] = time.perf_counter() - clock
    return RealEdit(recon, edited.clamp(-1, 1), start, seconds)


__all__ = [
    "DIRECTIONS", "VARIANTS", "as_loss", "colour_loss", "rgb_loss", "segmentation_score", "segmentation_loss",
    "parser_mask", "classifier_logits", "attribute_score", "attribute_loss", "log_odds", "regularised",
    "GradientGuidanceConfig", "Draw", "draw", "SyntheticEdit", "FromSource", "generate", "synthetic_edit",
    "latent_denoiser", "through_decoder", "RealEdit",
    "real_edit_ddim", "real_edit_ddpm",
]
