"""ZIP, the zero-shot inversion process (paper 004), with its baselines Asyrp (text-only h-space
edits, Kwon et al. 2022) and ILVR (low-pass reference conditioning, Choi et al. 2021).

Chapter: "ZIP: editing h-space from a reference image and a text" (``notebooks/10_zip.py``).

ZIP edits a real image by adding delta-h, encoded from a *reference image* by a small trained
attribute encoder E_A, to the UNet's bottleneck features h (h-space, :mod:`fashionlab.models.hspace`)
while it regenerates the image from its DDIM inversion. Only E_A trains, with the directional CLIP
loss between the edited and the unedited P_t (eq. 6); the diffusion model stays frozen.

==========================  ================================================================  =====================
code                        paper 004                                                         notes
==========================  ================================================================  =====================
``HSpaceDenoiser.pair``     eps_theta(x_t, t) and eps~_theta(x_t, t) from h and h + delta-h    decoder runs twice
``reverse_step`` (core)     eq. 5: sqrt(a_{t-1}) P_t(eps~) + D_t(eps) + sigma_t z               asymmetric
``change_coefficients``     Asyrp Thm. 1: a symmetric edit (eps~ in P_t *and* D_t) nearly cancels
``AttributeEncoder``        E_A: the UNet's encoder, frozen, with its last layers trainable    5 layers here (below)
``ZIPDelta``                delta-h_t = E_A(i_ref noised to t, t) - E(i_ref noised to t, t)    our reading (below)
``DeltaBlock``              Asyrp's f_t(h, t): 1x1 conv + time projection, GroupNorm, SiLU,    text-only baseline
                            1x1 conv
``ZIPConfig.window``        the edit interval: Alg. 1 edits for t > t_zip; Fig. 4 between      [t_lo, t_hi]
                            t = 600 and 300
``train``                   eq. 6: lambda_clip L_dir(P~_t, t_tar; P_t, t_src)                  per step, as Asyrp
                            + lambda_recon |P~_t - P_t|
``edit``                    Alg. 1 lines 4-11: DDIM inversion, then the asymmetric process      40 steps (Asyrp)
``ilvr_edit``               ILVR: x_{t-1} <- x_{t-1} - phi_N(x_{t-1}) + phi_N(y_{t-1})          N = 16 at 64 px
==========================  ================================================================  =====================

Our readings, which the chapter states:

* **E_A and delta-h.** The paper says E_A shares the Editing Generator's encoder and that "only the
  last five layers" train, but not how an encoder of h becomes a *change* of h. We take
  delta-h = E_A(ref) - E(ref): the trainable copy's output minus the frozen encoder's on the same
  input, so delta-h is exactly 0 before training and the edit starts from the identity. The
  trainable layers are the last down block and the middle block: on ``garments-ddpm-64`` that is
  resnet + attention (last down block) and resnet, attention, resnet (middle block), five layers,
  1.07M parameters. (``google/ddpm-celebahq-256`` also gives five: two resnets, then the middle block.)
* **The reference's noise level.** Whether E_A sees i_ref clean or noised to the current t is not
  in the paper. We noise it to t with a fixed noise draw (``reference_t="noised"``); the ablation
  encodes the clean reference at t = 0 for every step (``"clean"``).
* **Asyrp's DeltaBlock** ends in a zero-initialised convolution, for the same reason.
* **Weights of eq. 6.** ZIP gives none; we take Asyrp's: lambda_clip = 1 and
  lambda_recon = 3 cos(E_T(t_src), E_T(t_tar)) (the L1 weight of Asyrp's code).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.transforms import check_images
from ..config import check_number
from ..diffusion import core, inversion
from ..losses import directional_clip_loss
from ..models import hspace
from ..models.clip import CLIPBundle, encode_text
from .diffusionclip import GarmentEdit, TextPair, image_features, text_directions

REFERENCE_MODES: tuple[str, ...] = ("noised", "clean")


# ----------------------------------------------------------------------------------------
# eps and eps~ from one encoder pass
# ----------------------------------------------------------------------------------------
class HSpaceDenoiser:
    """A pixel UNet split at h-space: eps (h) and eps~ (h + delta-h) from one encoder pass and two
    decoder passes, both converted to eps whatever the model predicts (v here). Calling it without
    a delta is the plain denoiser (a :data:`~fashionlab.diffusion.core.Denoiser`)."""

    def __init__(self, unet: nn.Module, scheduler=None) -> None:
        hspace.check_splittable(unet)
        self.unet = unet
        self.channels = unet.config.in_channels
        self.prediction_type = "epsilon" if scheduler is None else scheduler.config.prediction_type
        if self.prediction_type not in core.PREDICTION_TYPES:
            raise ValueError(f"scheduler prediction_type must be one of {core.PREDICTION_TYPES}, "
                             f"got {self.prediction_type!r}")
        self.alphas_cumprod = None if scheduler is None else scheduler.alphas_cumprod

    def encode(self, x_t: torch.Tensor, t: int) -> hspace.HSpace:
        return hspace.encode(self.unet, x_t, t)

    def eps(self, space: hspace.HSpace, x_t: torch.Tensor, t: int, delta_h: torch.Tensor | None = None
            ) -> torch.Tensor:
        """eps from ``space`` (with ``delta_h`` added to h, if given)."""
        h = space.h if delta_h is None else space.h + delta_h
        out = hspace.decode(self.unet, h, space.skips, space.temb)[:, :self.channels]
        return core.eps_from_output(out, x_t, t, self.prediction_type, self.alphas_cumprod)

    def pair(self, x_t: torch.Tensor, t: int, delta_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps, eps~): the original prediction and the one from h + ``delta_h`` (same skips)."""
        space = self.encode(x_t, t)
        return self.eps(space, x_t, t), self.eps(space, x_t, t, delta_h)

    def __call__(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        return self.eps(self.encode(x_t, t), x_t, t)


def change_coefficients(alpha_bar_t: float | torch.Tensor, alpha_bar_prev: float | torch.Tensor
                        ) -> tuple[float, float]:
    """How much one DDIM step (eta 0) moves x_{t-1} per unit of eps~ - eps (Asyrp's Theorem 1):

    * symmetric (eps~ in P_t and D_t): sqrt(1 - a_prev) - sqrt(a_prev (1 - a_t) / a_t), nearly 0
      where a_prev is close to a_t: the edit cancels;
    * asymmetric (eq. 5, eps~ only in P_t): -sqrt(a_prev (1 - a_t) / a_t)."""
    a_t = float(alpha_bar_t)
    a_prev = float(alpha_bar_prev)
    asymmetric = -(a_prev * (1 - a_t) / a_t) ** 0.5
    return (1 - a_prev) ** 0.5 + asymmetric, asymmetric


# ----------------------------------------------------------------------------------------
# delta-h: ZIP's attribute encoder, Asyrp's DeltaBlock
# ----------------------------------------------------------------------------------------
class AttributeEncoder(nn.Module):
    """E_A: the frozen UNet's encoder with trainable copies of its last down block and middle block.

    ``forward(x, t)`` returns E_A(x, t) - E(x, t), the trainable copy's h minus the frozen
    encoder's, so a fresh encoder gives delta-h = 0. The UNet is held, not registered: the state
    dict holds only the trainable layers (``last_down``, ``mid``)."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        hspace.check_splittable(unet)
        object.__setattr__(self, "_unet", unet)
        self.last_down = copy.deepcopy(unet.down_blocks[-1]).requires_grad_(True)
        self.mid = copy.deepcopy(unet.mid_block).requires_grad_(True)
        if getattr(self.last_down, "downsamplers", None) is not None:
            raise ValueError("the UNet's last down block downsamples; the attribute encoder expects it not to")

    @property
    def unet(self) -> nn.Module:
        return self._unet

    def layer_names(self) -> list[str]:
        """The trainable layers, in order (the paper's "last five layers")."""
        names = []
        for i, resnet in enumerate(self.last_down.resnets):
            names.append(f"down_blocks[-1].resnets[{i}]")
            if getattr(self.last_down, "attentions", None) is not None:
                names.append(f"down_blocks[-1].attentions[{i}]")
        names.append("mid_block.resnets[0]")
        for i, _ in enumerate(self.mid.attentions):
            names += [f"mid_block.attentions[{i}]", f"mid_block.resnets[{i + 1}]"]
        return names

    def forward(self, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        unet = self.unet
        with torch.no_grad():
            sample = 2 * x_t - 1.0 if unet.config.center_input_sample else x_t
            temb = unet.time_embedding(unet.time_proj(hspace._timesteps(t, x_t.shape[0], x_t.device)).to(unet.dtype))
            sample = unet.conv_in(sample)
            for block in unet.down_blocks[:-1]:
                sample, _ = block(hidden_states=sample, temb=temb)
            frozen = unet.mid_block(unet.down_blocks[-1](hidden_states=sample, temb=temb)[0], temb)
        trained = self.mid(self.last_down(hidden_states=sample, temb=temb)[0], temb)
        return trained - frozen


class ZIPDelta(nn.Module):
    """delta-h_t for ZIP: the attribute encoder applied to one reference image (a buffer, shipped
    with the weights), noised to the step's level with a fixed noise draw (``"noised"``) or clean at
    t = 0 for every step (``"clean"``, the t-independent ablation)."""

    def __init__(self, encoder: AttributeEncoder, reference: torch.Tensor, alphas_cumprod: torch.Tensor,
                 reference_t: str = "noised", seed: int = 0) -> None:
        super().__init__()
        check_images(reference, "reference")
        if reference.shape[0] != 1:
            raise ValueError(f"reference must be one image (1, 3, H, W), got {tuple(reference.shape)}")
        if reference_t not in REFERENCE_MODES:
            raise ValueError(f"reference_t must be one of {REFERENCE_MODES}, got {reference_t!r}")
        self.encoder = encoder
        self.reference_t = reference_t
        self.seed = seed
        self.register_buffer("reference", reference.detach().clone().float())
        self.register_buffer("reference_noise", torch.randn(reference.shape, generator=torch.Generator().manual_seed(seed)))
        self.register_buffer("alphas_cumprod", alphas_cumprod.detach().clone().float(), persistent=False)

    def with_reference(self, reference: torch.Tensor | None = None, reference_t: str | None = None) -> "ZIPDelta":
        """The same trained encoder with another reference image (a user's own) and/or another
        reading of it (``"noised"`` / ``"clean"``); the noise draw comes from the same seed."""
        return ZIPDelta(self.encoder, self.reference if reference is None else reference, self.alphas_cumprod,
                        self.reference_t if reference_t is None else reference_t, self.seed)

    def reference_at(self, t: int) -> torch.Tensor:
        """The reference as E_A sees it at step t."""
        if self.reference_t == "clean":
            return self.reference
        return core.noise_to(self.reference, core.alpha_bar_at(self.alphas_cumprod, t), self.reference_noise)

    def forward(self, space: hspace.HSpace, t: int) -> torch.Tensor:
        level = 0 if self.reference_t == "clean" else int(t)
        delta = self.encoder(self.reference_at(t), level)
        return delta.expand(space.h.shape[0], -1, -1, -1)


class DeltaBlock(nn.Module):
    """Asyrp's f_t(h): 1x1 conv of h plus a projection of the time embedding, GroupNorm, SiLU and a
    zero-initialised 1x1 conv (so training starts from delta-h = 0). Text only: it sees h and t,
    never a reference."""

    def __init__(self, channels: int, temb_channels: int, groups: int = 8) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be a multiple of groups ({groups})")
        self.conv_in = nn.Conv2d(channels, channels, 1)
        self.temb_proj = nn.Linear(temb_channels, channels)
        self.norm = nn.GroupNorm(groups, channels)
        self.conv_out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @classmethod
    def for_unet(cls, unet: nn.Module) -> "DeltaBlock":
        hspace.check_splittable(unet)
        channels = unet.config.block_out_channels[-1]
        return cls(channels, unet.time_embedding.linear_2.out_features, unet.config.norm_num_groups)

    def forward(self, space: hspace.HSpace, t: int) -> torch.Tensor:
        x = self.conv_in(space.h) + self.temb_proj(F.silu(space.temb))[:, :, None, None]
        return self.conv_out(F.silu(self.norm(x)))


def trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZIPConfig:
    """Settings of :func:`train` and :func:`edit` (Asyrp's code where ZIP is silent)."""

    steps: int = 40
    """DDIM steps of the inversion and of the generation (Asyrp: 40)."""
    window: tuple[int, int] = (300, 600)
    """[t_lo, t_hi]: delta-h is added at the steps with t_lo <= t <= t_hi (Fig. 4: between 300 and
    600, the default; Alg. 1: t > t_zip, i.e. (t_zip, 999])."""
    clip_weight: float = 1.0
    recon_weight: float = 3.0
    """Times cos(E_T(source), E_T(target)), as Asyrp's code."""
    loss_form: str = "1-cos"
    """Eq. 3 (``"log"``: DiffusionCLIP's code's form)."""
    learning_rate: float = 2e-4
    epochs: int = 1
    batch_size: int = 4
    reference_t: str = "noised"
    scale: float = 1.0
    """delta-h is multiplied by this when editing (1: as trained)."""
    boost_below: int | None = None
    """Asyrp's quality boost: stochastic steps (eta = 1) for t below this (None: off)."""
    seed: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.window
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo < hi <= 999):
            raise ValueError(f"window must be (t_lo, t_hi) ints with 0 <= t_lo < t_hi <= 999, got {self.window}")
        check_number("steps", self.steps, 2, integer=True)
        check_number("clip_weight", self.clip_weight, 0)
        check_number("recon_weight", self.recon_weight, 0)
        check_number("scale", self.scale)
        check_number("seed", self.seed, 0, integer=True)
        if self.loss_form not in ("1-cos", "log"):
            raise ValueError(f"loss_form must be '1-cos' or 'log', got {self.loss_form!r}")
        check_number("learning_rate", self.learning_rate, 0, low_open=True)
        check_number("epochs", self.epochs, 1, integer=True)
        check_number("batch_size", self.batch_size, 1, integer=True)
        if self.reference_t not in REFERENCE_MODES:
            raise ValueError(f"reference_t must be one of {REFERENCE_MODES}, got {self.reference_t!r}")
        if self.boost_below is not None and not 0 < self.boost_below < 1000:
            raise ValueError(f"boost_below must be None or in [1, 999], got {self.boost_below}")

    def grid(self) -> list[int]:
        """The time grid (Asyrp's and DiffusionCLIP's: linspace(0, 999, steps), with -1 in front)."""
        return core.diffusionclip_grid(999, self.steps)

    def in_window(self, t: int) -> bool:
        return self.window[0] <= t <= self.window[1]


# ----------------------------------------------------------------------------------------
# Inversion, generation with delta-h, editing
# ----------------------------------------------------------------------------------------
@torch.no_grad()
def invert(denoiser: core.Denoiser, alphas_cumprod: torch.Tensor, images: torch.Tensor, cfg: ZIPConfig,
           batch_size: int = 16) -> torch.Tensor:
    """x_T of every image by DDIM inversion (Alg. 1 line 4)."""
    check_images(images, "images")
    grid = cfg.grid()[1:]
    return torch.cat([inversion.ddim_invert(denoiser, images[i:i + batch_size], grid, alphas_cumprod).x_t
                      for i in range(0, len(images), batch_size)])


@dataclass
class Generation:
    x0: torch.Tensor
    x0_preds: list[torch.Tensor] = field(default_factory=list)
    """P_t at every step (top first), if recorded: P~_t at edited steps."""
    eps_changes: list[torch.Tensor] = field(default_factory=list)
    """eps~ - eps at every step (zeros outside the window), if recorded."""
    timesteps: list[int] = field(default_factory=list)


@torch.no_grad()
def generate(model: HSpaceDenoiser, x_T: torch.Tensor, delta: nn.Module | None, cfg: ZIPConfig,
             symmetric: bool = False, generator: torch.Generator | None = None, record: bool = False) -> Generation:
    """Alg. 1 lines 6-11: the reverse process from ``x_T`` with eps~ (h + scale * delta-h) in P_t
    inside the window and the plain DDIM step outside it. ``symmetric=True`` puts eps~ in D_t as
    well (the cancelling variant of Asyrp's Theorem 1). ``delta=None`` is the plain DDIM
    reconstruction. ``cfg.boost_below`` turns on eta = 1 below that t (noise from ``generator``)."""
    alphas = model.alphas_cumprod
    out = Generation(x_T)
    x = x_T
    for t, t_prev in core.reverse_pairs(cfg.grid()):
        a_t, a_prev = core.alpha_bar_at(alphas, t), core.alpha_bar_at(alphas, t_prev)
        eta = 1.0 if cfg.boost_below is not None and t < cfg.boost_below else 0.0
        sigma = core.ddim_sigma(a_t, a_prev, eta)
        space = model.encode(x, t)
        eps = model.eps(space, x, t)
        edit_here = delta is not None and cfg.in_window(t)
        eps_tilde = model.eps(space, x, t, cfg.scale * delta(space, t)) if edit_here else eps
        step = core.reverse_step(x, eps_tilde, eps_tilde if symmetric else eps, a_t, a_prev, sigma,
                                 generator=generator)
        if record:
            out.x0_preds.append(step.x0_pred)
            out.eps_changes.append(eps_tilde - eps)
            out.timesteps.append(t)
        x = step.x_next
    out.x0 = x
    return out


@torch.no_grad()
def edit(model: HSpaceDenoiser, images: torch.Tensor, delta: nn.Module | None, cfg: ZIPConfig = ZIPConfig(),
         latents: torch.Tensor | None = None, batch_size: int = 16, generator: torch.Generator | None = None,
         progress: bool = False) -> torch.Tensor:
    """Edit ``images`` (B, 3, H, W) in [-1, 1]: DDIM inversion with the plain model (or ``latents``
    from :func:`invert`), then :func:`generate` with ``delta``. Returns images in [-1, 1]."""
    check_images(images, "images")
    if delta is not None:
        delta = delta.eval()
    latents = invert(model, model.alphas_cumprod, images, cfg, batch_size) if latents is None else latents
    if latents.shape != images.shape:
        raise ValueError(f"latents must match images {tuple(images.shape)}, got {tuple(latents.shape)}")
    out = [generate(model, latents[i:i + batch_size], delta, cfg, generator=generator).x0
           for i in tqdm(range(0, len(images), batch_size), desc="ZIP edit", disable=not progress)]
    return torch.cat(out).clamp(-1, 1)


# ----------------------------------------------------------------------------------------
# Training (eq. 6): only delta-h's module learns
# ----------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    delta: nn.Module
    losses: list[float]
    """Mean loss per batch (over its edited steps)."""
    seconds: float
    steps: int
    """Optimiser steps (one per edited timestep per batch, as Asyrp)."""


def recon_weight(clip_bundle: CLIPBundle, pair: TextPair, cfg: ZIPConfig) -> float:
    """lambda_recon = cfg.recon_weight * cos(E_T(source), E_T(target)) (Asyrp's code)."""
    with torch.no_grad():
        src, tgt = encode_text(clip_bundle, [pair.source, pair.target]).float()
    return cfg.recon_weight * float(F.cosine_similarity(src, tgt, dim=0))


Objective = Callable[[torch.Tensor, torch.Tensor, list[int]], torch.Tensor]
"""(P~_t, P_t, the batch's image indices) -> one loss per image (B,)."""


def eq6_objective(clip_bundle: CLIPBundle, pairs: Sequence[TextPair], cfg: ZIPConfig) -> Objective:
    """Eq. 6 for images with one text pair each: clip_weight * L_dir(P~_t, t_tar; P_t, t_src)
    + lambda_recon |P~_t - P_t| (mean over pixels), per image."""
    clip_bundle.model.requires_grad_(False)
    with torch.no_grad():
        directions = text_directions(clip_bundle, list(pairs))
        weights = torch.tensor([recon_weight(clip_bundle, p, cfg) for p in pairs])

    def objective(x0_tilde: torch.Tensor, x0_pred: torch.Tensor, idx: list[int]) -> torch.Tensor:
        with torch.no_grad():
            source_features = image_features(clip_bundle, x0_pred)
        clip = directional_clip_loss(image_features(clip_bundle, x0_tilde), source_features, directions[idx],
                                     form=cfg.loss_form)
        return cfg.clip_weight * clip + weights[idx] * (x0_tilde - x0_pred).abs().mean(dim=(1, 2, 3))

    return objective


def descend(model: HSpaceDenoiser, delta: nn.Module, x: torch.Tensor, idx: list[int], objective: Objective,
            optimizer: torch.optim.Optimizer | None, cfg: ZIPConfig, start: int = 999) -> list[float]:
    """One pass of the batch ``x`` (images ``idx``) down the grid from step ``start``: at every step
    in the window one optimiser step on the mean of ``objective(P~_t, P_t, idx)`` (as Asyrp: one step
    per timestep); the batch moves on along the asymmetric process (eq. 5). Steps below the window
    do not train and are skipped. ``optimizer=None`` only measures. Returns the loss at each edited
    step."""
    alphas = model.alphas_cumprod
    losses = []
    for t, t_prev in core.reverse_pairs(cfg.grid()):
        if t > start or t < cfg.window[0]:
            continue
        a_t, a_prev = core.alpha_bar_at(alphas, t), core.alpha_bar_at(alphas, t_prev)
        with torch.no_grad():
            space = model.encode(x, t)
            eps = model.eps(space, x, t)
            x0_pred = core.predict_x0(x, eps, a_t)
        if not cfg.in_window(t):
            x = core.reverse_step(x, eps, eps, a_t, a_prev).x_next
            continue
        with torch.set_grad_enabled(optimizer is not None):
            eps_tilde = model.eps(space, x, t, delta(space, t))
            loss = objective(core.predict_x0(x, eps_tilde, a_t), x0_pred, idx).mean()
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
        if optimizer is not None:
            optimizer.step()
        losses.append(loss.item())
        x = core.reverse_step(x, eps_tilde.detach(), eps, a_t, a_prev).x_next
    return losses


def _trainable(delta: nn.Module, model: HSpaceDenoiser) -> list[nn.Parameter]:
    model.unet.requires_grad_(False)
    params = [p for p in delta.parameters() if p.requires_grad]
    if not params:
        raise ValueError("delta has no trainable parameters")
    return params


def train(model: HSpaceDenoiser, delta: nn.Module, clip_bundle: CLIPBundle, images: torch.Tensor,
          pairs: Sequence[TextPair], cfg: ZIPConfig = ZIPConfig(), latents: torch.Tensor | None = None,
          progress: bool = False, objective: Objective | None = None) -> TrainResult:
    """Train ``delta`` (a :class:`ZIPDelta` or a :class:`DeltaBlock`) on ``images`` with one text
    pair per image: :func:`descend` with eq. 6 (:func:`eq6_objective`; ``objective`` replaces it)
    over shuffled batches of ``cfg.batch_size``, ``cfg.epochs`` times."""
    check_images(images, "images")
    if len(pairs) != len(images):
        raise ValueError(f"pairs must give one TextPair per image ({len(images)}), got {len(pairs)}")
    latents = invert(model, model.alphas_cumprod, images, cfg) if latents is None else latents
    start = time.perf_counter()
    objective = eq6_objective(clip_bundle, pairs, cfg) if objective is None else objective
    optimizer = torch.optim.Adam(_trainable(delta, model), lr=cfg.learning_rate)
    delta.train()
    order_gen = torch.Generator().manual_seed(cfg.seed)
    batches = [order[i:i + cfg.batch_size] for _ in range(cfg.epochs)
               for order in [torch.randperm(len(images), generator=order_gen).tolist()]
               for i in range(0, len(images), cfg.batch_size)]
    losses, n_steps = [], 0
    for idx in tqdm(batches, desc="training delta-h", disable=not progress):
        batch_losses = descend(model, delta, latents[idx], idx, objective, optimizer, cfg)
        n_steps += len(batch_losses)
        losses.append(sum(batch_losses) / len(batch_losses))
    delta.eval()
    return TrainResult(delta, losses, time.perf_counter() - start, n_steps)


@torch.no_grad()
def objective_value(model: HSpaceDenoiser, delta: nn.Module, images: torch.Tensor, objective: Objective,
                    cfg: ZIPConfig, latents: torch.Tensor | None = None, batch_size: int = 16) -> float:
    """The mean of ``objective`` over the edited steps of the asymmetric process with ``delta`` (no
    update): the loss :func:`train` lowers, measured on images it did not train on. A delta-h of 0
    gives eq. 6 exactly 1 (the directional term of no change)."""
    check_images(images, "images")
    latents = invert(model, model.alphas_cumprod, images, cfg) if latents is None else latents
    was_training = delta.training
    delta.eval()
    total, count = 0.0, 0
    for i in range(0, len(images), batch_size):
        idx = list(range(i, min(i + batch_size, len(images))))
        losses = descend(model, delta, latents[idx], idx, objective, None, cfg)
        total += sum(losses) * len(idx)
        count += len(losses) * len(idx)
    delta.train(was_training)
    return total / count


# ----------------------------------------------------------------------------------------
# The upper bound: delta-h optimised directly, per image
# ----------------------------------------------------------------------------------------
class FreeDelta(nn.Module):
    """delta-h as free parameters: one (B, C, h, w) tensor per edited timestep, image k of a fixed
    batch getting its own, or with B = 1 one shared by every image (a global direction, which is
    what ZIP's delta-h is: it depends on the reference and t, never on the image edited). No
    encoder, no reference: what h-space can express when delta-h is optimised directly (the bound
    a trained encoder can at best reach on these images)."""

    def __init__(self, h_shape: Sequence[int], timesteps: Sequence[int]) -> None:
        super().__init__()
        if len(h_shape) != 4:
            raise ValueError(f"h_shape must be (B, C, h, w), got {tuple(h_shape)}")
        self.index = {int(t): k for k, t in enumerate(timesteps)}
        if not self.index:
            raise ValueError("timesteps must name at least one edited step")
        self.h_shape = tuple(h_shape)
        # one parameter per step: an optimiser step at t leaves the other steps' delta-h (and their
        # Adam moments) alone, so each delta_t moves only when its own step is trained
        self.deltas = nn.ParameterList([nn.Parameter(torch.zeros(*h_shape)) for _ in self.index])

    def forward(self, space: hspace.HSpace, t: int) -> torch.Tensor:
        shared = self.h_shape[0] == 1
        if space.h.shape[1:] != self.h_shape[1:] or not (shared or space.h.shape[0] == self.h_shape[0]):
            raise ValueError(f"FreeDelta was made for h of shape {self.h_shape}, "
                             f"got {tuple(space.h.shape)}: edit the same batch it was optimised on")
        if int(t) not in self.index:
            raise ValueError(f"FreeDelta has no delta-h for t = {t}; it holds {sorted(self.index)}")
        delta = self.deltas[self.index[int(t)]]
        return delta.expand_as(space.h) if shared else delta

    def rms(self) -> float:
        """The root mean square of every delta-h_t."""
        with torch.no_grad():
            return float(torch.stack([d.pow(2).mean() for d in self.deltas]).mean().sqrt())


FREE_TARGETS: tuple[str, ...] = ("p_t", "x_0")
FREE_OPTIMISERS: tuple[str, ...] = ("normalised", "adam")


class NormalisedDescent(torch.optim.Optimizer):
    """Gradient descent with each parameter's step scaled to a root mean square of ``lr``: the step
    follows the gradient's direction, so coordinates the loss does not care about stay put. (Adam
    moves every coordinate by about ``lr`` per update whatever its gradient, which on a free delta-h
    of 6,000 numbers per garment adds a random walk of its own.)"""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                rms = p.grad.pow(2).mean().sqrt()
                if rms > 0:
                    p.add_(p.grad / rms, alpha=-group["lr"])


def fit_free_delta(model: HSpaceDenoiser, images: torch.Tensor, objective: Objective, cfg: ZIPConfig,
                   passes: int, learning_rate: float, target: str = "p_t", shared: bool = False,
                   optimiser: str = "normalised", latents: torch.Tensor | None = None,
                   progress: bool = False) -> TrainResult:
    """Optimise a :class:`FreeDelta` for ``images`` (one batch; each image its own delta-h, or one
    for all with ``shared``) with ``objective``, ``passes`` times from the top of the window (the
    steps above it are the plain DDIM process, computed once):

    * ``target="p_t"``: on P~_t against P_t at every edited step, one optimiser step per timestep
      (:func:`descend`, as training does);
    * ``target="x_0"``: on the finished edit x~_0 against the plain reconstruction x_0, back through
      the whole reverse process, one optimiser step per pass (what h-space can express at all).

    ``losses`` holds the mean loss of each pass; every delta_t gets ``passes`` updates either way."""
    check_images(images, "images")
    check_number("passes", passes, 1, integer=True)
    check_number("learning_rate", learning_rate, 0, low_open=True)
    if target not in FREE_TARGETS:
        raise ValueError(f"target must be one of {FREE_TARGETS}, got {target!r}")
    if optimiser not in FREE_OPTIMISERS:
        raise ValueError(f"optimiser must be one of {FREE_OPTIMISERS}, got {optimiser!r}")
    alphas = model.alphas_cumprod
    latents = invert(model, alphas, images, cfg) if latents is None else latents
    start = time.perf_counter()
    edited = [t for t, _ in core.reverse_pairs(cfg.grid()) if cfg.in_window(t)]
    if not edited:
        raise ValueError(f"the window {cfg.window} holds no step of the {cfg.steps}-step grid")
    with torch.no_grad():
        space = model.encode(latents, edited[0])
    delta = FreeDelta((1, *space.h.shape[1:]) if shared else space.h.shape, edited)
    x = latents
    with torch.no_grad():  # down to the window's top with the plain model
        for t, t_prev in core.reverse_pairs(cfg.grid()):
            if t <= edited[0]:
                break
            eps = model(x, t)
            x = core.reverse_step(x, eps, eps, core.alpha_bar_at(alphas, t), core.alpha_bar_at(alphas, t_prev)).x_next
    optimizer = (torch.optim.Adam(_trainable(delta, model), lr=learning_rate) if optimiser == "adam"
                 else NormalisedDescent(_trainable(delta, model), lr=learning_rate))
    idx = list(range(len(images)))
    reconstruction = generate(model, latents, None, cfg).x0 if target == "x_0" else None
    losses = []
    for _ in tqdm(range(passes), desc="optimising delta-h", disable=not progress):
        if target == "p_t":
            step_losses = descend(model, delta, x, idx, objective, optimizer, cfg, start=edited[0])
            losses.append(sum(step_losses) / len(step_losses))
            continue
        with torch.enable_grad():
            x_t = x
            for t, t_prev in core.reverse_pairs(cfg.grid()):
                if t > edited[0]:
                    continue
                a_t, a_prev = core.alpha_bar_at(alphas, t), core.alpha_bar_at(alphas, t_prev)
                space = model.encode(x_t, t)
                eps = model.eps(space, x_t, t)
                eps_tilde = model.eps(space, x_t, t, delta(space, t)) if cfg.in_window(t) else eps
                x_t = core.reverse_step(x_t, eps_tilde, eps, a_t, a_prev).x_next
            loss = objective(x_t, reconstruction, idx).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
        losses.append(loss.item())
    delta.eval()
    return TrainResult(delta, losses, time.perf_counter() - start, passes * len(edited))


# ----------------------------------------------------------------------------------------
# ILVR (the image-guided baseline)
# ----------------------------------------------------------------------------------------
def low_pass(x: torch.Tensor, factor: int) -> torch.Tensor:
    """phi_N: downsample by ``factor`` and back (bicubic, antialiased), ILVR's low-pass filter."""
    if factor < 1 or x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(f"factor must be >= 1 and divide the image size {tuple(x.shape[-2:])}, got {factor}")
    small = F.interpolate(x, scale_factor=1 / factor, mode="bicubic", antialias=True, align_corners=False)
    return F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False)


@torch.no_grad()
def ilvr_edit(model: core.Denoiser, alphas_cumprod: torch.Tensor, images: torch.Tensor, reference: torch.Tensor,
              factor: int = 16, t_stop: int = 100, cfg: ZIPConfig = ZIPConfig(),
              latents: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """ILVR as an editor: DDIM inversion of ``images``, then DDIM generation in which, after every
    step that lands at t >= ``t_stop``, the low frequencies of x are replaced by those of the
    reference noised to that level: x <- x - phi_N(x) + phi_N(y_t), y_t ~ q(y_t | reference)
    (ILVR's eq. 8; the paper's "t = 100" read as the end of the conditioning). N = 64 at 256 px is
    ``factor`` = 16 at 64 px."""
    check_images(images, "images")
    check_images(reference, "reference")
    if reference.shape[0] not in (1, images.shape[0]) or reference.shape[1:] != images.shape[1:]:
        raise ValueError(f"reference must be one image or one per image, shaped like images {tuple(images.shape[1:])}")
    if not 0 <= t_stop < 1000:
        raise ValueError(f"t_stop must be in [0, 999], got {t_stop}")
    x = invert(model, alphas_cumprod, images, cfg) if latents is None else latents
    reference = reference.expand_as(images)
    target = low_pass(reference, factor)
    for t, t_prev in core.reverse_pairs(cfg.grid()):
        a_prev = core.alpha_bar_at(alphas_cumprod, t_prev)
        x = core.ddim_step(x, model(x, t), core.alpha_bar_at(alphas_cumprod, t), a_prev).x_next
        if t_prev >= t_stop:
            noise = torch.randn(images.shape, generator=generator)
            x = x - low_pass(x, factor) + core.noise_to(target, a_prev, low_pass(noise, factor))
    return x.clamp(-1, 1)


# ----------------------------------------------------------------------------------------
# The garment prompt table
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZIPEdit:
    """One row of the prompt table: the edit (attribute, value), the category whose text pair
    words it, the reference prompt for the visual generator, and whether the DDPM saw it."""

    name: str
    edit: GarmentEdit
    reference_prompt: str
    domain: str
    """``"in"``: an attribute the DDPM was trained on; ``"out"``: an extra it never saw."""

    def text_pair(self, category: str) -> TextPair:
        return self.edit.text_pair(category)


ZIP_EDITS: dict[str, ZIPEdit] = {e.name: e for e in (
    ZIPEdit("striped", GarmentEdit("pattern", "striped"), "a striped t-shirt", "in"),
    ZIPEdit("blue", GarmentEdit("colour", "blue"), "a blue t-shirt", "in"),
    ZIPEdit("long-sleeve", GarmentEdit("sleeve", "long"), "a long-sleeved t-shirt", "in"),
    ZIPEdit("pocket", GarmentEdit("extra", "pocket"), "a t-shirt with a pocket", "out"),
    ZIPEdit("logo", GarmentEdit("extra", "logo"), "a t-shirt with a logo", "out"),
    ZIPEdit("belt", GarmentEdit("extra", "belt"), "a dress with a belt", "out"),
)}
"""The chapter's edits: three in-domain attributes (pattern, colour, sleeve) and three extras the
pixel DDPM never saw (the text-to-image model of chapter 08 did)."""


@torch.no_grad()
def visual_reference(pipe, clip_bundle: CLIPBundle, prompt: str, candidates: int = 8, seed: int = 0,
                     size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The visual generator (Alg. 1 line 2): ``candidates`` images of ``prompt`` from a text-to-image
    pipeline (chapter 08's), of which the one the guiding CLIP matches best to the prompt is kept
    (the paper keeps its generator's one draw; we pick among a few without a human in the loop).
    ``size`` resizes to the editing model's resolution. Returns (reference (1, 3, H, W), the
    candidates' CLIP scores)."""
    from .text_to_image import generate as text_to_image

    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    images = text_to_image(pipe, [prompt] * candidates, seed=seed)
    if size is not None and images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    images = images.clamp(-1, 1)
    text = encode_text(clip_bundle, [prompt]).float()
    scores = 100 * (image_features(clip_bundle, images) * text).sum(dim=-1)
    best = int(scores.argmax())
    return images[best:best + 1], scores
