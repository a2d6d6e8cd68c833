"""Zoo recipes: how each shipped ``tiny`` model is trained, runnable from the command line.

    python -m fashionlab.zoo train garments-ddpm-64 [--resume] [--minutes M]

Each recipe fixes the architecture, the data (Garments seed and domain) and the training
hyperparameters, so a model in ``weights/`` can be re-made from this file alone. Resume state
lives in ``config.training_dir() / <name>`` (``training/`` at the root of a checkout: model, EMA,
optimiser, step, RNG). Each ``export_*`` evaluates the trained model as shipped (fp16-rounded)
and ships it with :func:`fashionlab.zoo.export.ship`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .. import config
from ..data.garments import (BACKGROUNDS, EXTRAS, SCHEMA, STYLES, RenderCache, caption, render_batch, render_cache,
                             spec_for)
from ..data.transforms import reframe, to_uint8
from ..diffusion import core, inversion
from ..eval.classifiers import evaluate_attrnet, evaluate_extras, evaluate_oracle, evaluate_parser
from ..eval.edits import EditTask, render_tasks, score_edits, tasks_for
from ..eval.zero_shot import zero_shot_table
from ..methods.diffusionclip import GARMENT_EDITS, DiffusionCLIPConfig, finetune
from ..methods.diffusionclip import edit as diffusionclip_edit
from ..methods.text_to_image import generate
from ..methods.zip import (ZIP_EDITS, AttributeEncoder, DeltaBlock, HSpaceDenoiser, ZIPConfig, ZIPDelta,
                           visual_reference)
from ..methods.zip import edit as zip_edit
from ..methods.zip import train as zip_train
from ..metrics import OraclePerceptual, psnr, single_region_rate
from ..models.attrnet import AttributeNet, attrnet_for
from ..models.clip import create_clip
from ..models.sd import build_cond_unet, build_vae, clip_tokenizer, text_encoder_from_clip
from ..train.attrnet import (N_TEST, N_TRAIN, TEST_SEED, TRAIN_SEED, AttrNetRun, AttrNetTrainConfig, Variant,
                             train_attrnet)
from ..train.clip import CLIPTrainConfig, random_caption, train_clip
from ..train.ddpm import DDPMTrainConfig, load_ema_weights, train_ddpm
from ..train.latent import LDMTrainConfig, VAETrainConfig, train_ldm, train_vae
from ..train.loop import CSVLog, atomic_save, read_checkpoint
from ..train.supervised import LOSSES, SupervisedTrainConfig, train_supervised
from .export import json_config, round_to_fp16, ship, training_record
from .loaders import SD_TOKENIZER_DIR, SUPERVISED_BUILDERS, apply_delta, build_attrnet, load, sd_sampler


def _workdir(name: str, workdir: Path | None) -> Path:
    return Path(workdir) if workdir is not None else config.training_dir() / name


@dataclass(frozen=True)
class DDPMRecipe:
    """A pixel-space DDPM trained on Garments."""

    name: str
    unet: dict
    """``UNet2DModel`` keyword arguments."""
    scheduler: dict
    """``DDPMScheduler`` keyword arguments (the forward process the model is trained for)."""
    train: DDPMTrainConfig
    data_seed: int = 0
    """Garments seed of the training images; evaluation uses other seeds."""
    data_size: int = 1_000_000
    """Indices drawn from ``[0, data_size)``: effectively fresh renders every step."""
    domain: str = "in"
    """Only in-domain garments (photo style, no extras): the "unseen domains" stay unseen."""
    notes: str = field(default="")


GARMENTS_DDPM_64 = DDPMRecipe(
    name="garments-ddpm-64",
    unet=dict(
        sample_size=64,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 128, 128),
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=32,
    ),
    # v-prediction (Salimans & Ho, 2022). The first run of this recipe predicted eps and, after
    # 4,291 steps, was worse than the trivial predictor eps = x_t / sqrt(1 - abar_t) for t > 850: its
    # P_t there was garbage (mean squared error 1-19 against x0) and deterministic DDIM samples
    # drifted to dark or tinted backgrounds. With v the high-noise regime is easy (v ~ -x0) and the
    # engine recovers eps exactly (core.PixelDenoiser), so every method still works on eps.
    scheduler=dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                   prediction_type="v_prediction"),
    train=DDPMTrainConfig(batch_size=32, learning_rate=5e-4, total_steps=8000, warmup_steps=200),
    notes="4.3M-parameter UNet2DModel, self-attention at 8x8, v-prediction; about 27 images/s with bf16 on 2 cores.",
)

@dataclass(frozen=True)
class CLIPRecipe:
    """A tiny open_clip model trained contrastively on Garments of every style and extra."""

    name: str
    train: CLIPTrainConfig
    notes: str = ""


def _clip_recipes() -> dict[str, CLIPRecipe]:
    return {
        "garments-clip-s": CLIPRecipe("garments-clip-s", CLIPTrainConfig(),
                                      "6.1M-parameter CLIP (ViT 6x192 at 64 px, text 4x64), all styles and extras."),
        "garments-clip-b": CLIPRecipe("garments-clip-b", CLIPTrainConfig(),
                                      "14.0M-parameter CLIP (ViT 8x256 at 64 px, text 6x128), for 000's Table 4."),
    }


@dataclass(frozen=True)
class EvaluatorRecipe:
    """A supervised model trained on renders of every style: the oracle classifier, the part
    parser, or the category ViT that stands in for ImageNet pretraining (chapter 05)."""

    name: str
    kind: str
    """``"oracle"``, ``"parser"``, ``"category-vit"`` or ``"extras-judge"``."""
    model: dict
    """Keyword arguments of GarmentOracle / GarmentParser / CategoryViT."""
    train: SupervisedTrainConfig
    notes: str = ""


def _evaluator_recipes() -> dict[str, EvaluatorRecipe]:
    return {
        "garments-oracle": EvaluatorRecipe(
            "garments-oracle", "oracle", {"widths": (32, 64, 128, 192), "blocks_per_stage": 1},
            SupervisedTrainConfig(total_steps=2000),
            "Small ResNet, 8 attribute heads + style; noise and blur augmentation. 2000 steps x 128 "
            "(about 6 epochs of the 40k-render cache; 40 min on 2 cores)."),
        "garments-parser": EvaluatorRecipe(
            "garments-parser", "parser", {"widths": (32, 64, 96, 128)},
            SupervisedTrainConfig(learning_rate=2e-3, total_steps=1500, batch_size=64),
            "Small U-Net for the six part labels; noise and blur augmentation. 1500 steps x 64 (32 min)."),
        **{f"garments-vit-sup-{size}": EvaluatorRecipe(
            f"garments-vit-sup-{size}", "category-vit", {"clip_name": f"garments-clip-{size}"},
            # The same renders (seed 10, 60k), steps, batch and optimiser family as the CLIP recipe:
            # only the supervision differs (category + style labels instead of captions).
            SupervisedTrainConfig(batch_size=128, learning_rate=5e-4, weight_decay=0.05, warmup_steps=200,
                                  total_steps=4000, min_lr_ratio=0.05, data_seed=10, cache_size=60000,
                                  noise_max=0.0, blur_max=0.0),
            f"ViT of the garments-clip-{size} image tower trained on category + style labels only: the "
            "ImageNet-pretraining analogue of 000 Table 2 (same data and compute as the CLIP).")
           for size in ("s", "b")},
        "garments-extras-judge": EvaluatorRecipe(
            "garments-extras-judge", "extras-judge", {"widths": (16, 32, 64, 96)},
            SupervisedTrainConfig(total_steps=800, data_seed=21, cache_size=12000),
            "Small ResNet (16-96 channels), one absent/present head per extra; every style, noise and blur "
            "augmentation as the oracle's. 800 steps x 128 on 12,000 renders."),
    }


@dataclass(frozen=True)
class AttrNetRecipe:
    """The guidance classifier of chapter 06: one variant of chapter 05's grid, trained on the
    same labelled set (a few minutes, so no resume)."""

    name: str
    variant: Variant
    train: AttrNetTrainConfig
    n_train: int
    notes: str = ""


def _attrnet_recipes() -> dict[str, AttrNetRecipe]:
    return {"garments-attrnet": AttrNetRecipe(
        "garments-attrnet", Variant("clip", "e2e", augment=False, clip_name="garments-clip-s", seed=0),
        AttrNetTrainConfig(bf16=True), N_TRAIN,
        "AttributeNet on the garments-clip-s image tower, fine-tuned end to end on the 2,000 labelled photos of "
        "chapter 05: among the grid's rows on garments-clip-s, the one with the best validation accuracy over "
        "three seeds (best_variant). The garments-clip-b rows, run later, beat it (clip / e2e [b]: 0.895 vs "
        "0.875); chapter 06's results rest on this model, so swapping means rerunning them.")}


@dataclass(frozen=True)
class DiffusionCLIPRecipe:
    """A DiffusionCLIP fine-tune of a zoo DDPM towards one garment edit (chapter 07), shipped as an
    fp16 delta over its base."""

    name: str
    edit: str
    """A key of :data:`fashionlab.methods.diffusionclip.GARMENT_EDITS`."""
    train: DiffusionCLIPConfig
    base: str = "garments-ddpm-64"
    clip: str = "garments-clip-s"
    """The CLIP that guides (``garments-clip-b`` judges, so it must not guide)."""
    train_seed: int = 700
    """Garments seed of the training images (held-out evaluation: :data:`DCLIP_HELDOUT_SEED`)."""
    n_train: int = 50
    """Training garments (the paper: 50 images)."""
    notes: str = ""


DCLIP_HELDOUT_SEED = 710
DCLIP_TRAIN = DiffusionCLIPConfig(epochs=2, batch_size=4)
"""The shipped fine-tunes' settings: the code's t_0 = 400, S_inv = 40, S_gen = 6 (chain mode), loss weights
3 (CLIP, log form) and 0.3 (L1), lr x1.3 per pass, two passes; the learning rate per edit is
:data:`DCLIP_LRS`."""
DCLIP_LRS: dict[str, float] = {"striped": 4e-5, "sketch": 8e-5, "pocket": 8e-5}
"""Each edit's learning rate: what :func:`fashionlab.experiments.ch07_diffusionclip.choose_lr` picks from
the committed sweep (a test keeps the two in step)."""


def _diffusionclip_recipes() -> dict[str, DiffusionCLIPRecipe]:
    return {f"garments-dclip-{edit}": DiffusionCLIPRecipe(
        f"garments-dclip-{edit}", edit, replace(DCLIP_TRAIN, learning_rate=lr),
        notes=f"DiffusionCLIP fine-tune of garments-ddpm-64 towards '{edit}' on 50 garments of seed 700 "
              "(two passes, batch 4, chain mode); about a minute of fine-tuning on 2 cores.")
        for edit, lr in DCLIP_LRS.items()}


ZIP_TRAIN_SEED, ZIP_HELDOUT_SEED = 1000, 1010


@dataclass(frozen=True)
class ZIPRecipe:
    """A ZIP attribute encoder (``method="zip"``) or an Asyrp DeltaBlock (``"asyrp"``) trained on a
    zoo DDPM's h-space towards one garment edit (chapter 10); shipped alone (the base stays as it is)."""

    name: str
    edit: str
    """A key of :data:`fashionlab.methods.zip.ZIP_EDITS`."""
    method: str
    train: ZIPConfig
    base: str = "garments-ddpm-64"
    clip: str = "garments-clip-s"
    """The CLIP of the loss and of the reference choice (``garments-clip-b`` judges, so it must not)."""
    generator: str = "garments-sd-base"
    """ZIP's visual generator (chapter 08's text-to-image model)."""
    reference_candidates: int = 8
    train_seed: int = ZIP_TRAIN_SEED
    n_train: int = 96
    """Training garments (Asyrp and ZIP: about 100)."""
    notes: str = ""


ZIP_TRAIN = ZIPConfig(window=(300, 600), learning_rate=1e-3, epochs=1, batch_size=4)
"""The shipped encoders' settings: 40 steps, delta-h between t = 300 and 600 (the paper's Fig. 4;
chapter 10 measures that the garment CLIP cannot see most edits in P_t above t = 500), Asyrp's loss
weights, Adam; ``fashionlab.experiments.ch10_zip pilot`` chose the rate."""


def _zip_recipes() -> dict[str, ZIPRecipe]:
    return {f"garments-{method}-{edit}": ZIPRecipe(
        f"garments-{method}-{edit}", edit, method, ZIP_TRAIN,
        notes=(f"{'ZIP attribute encoder' if method == 'zip' else 'Asyrp DeltaBlock'} for '{edit}' on garments-ddpm-64's "
               f"h-space, trained on 96 garments of seed {ZIP_TRAIN_SEED} (one pass, batch 4, one Adam step per edited "
               "timestep); a few minutes on 2 cores."))
        for method in ("zip", "asyrp") for edit in ZIP_EDITS}


@dataclass(frozen=True)
class VAERecipe:
    """The autoencoder of the latent text-to-image model (chapter 08)."""

    name: str
    vae: dict
    """``AutoencoderKL`` keyword arguments."""
    train: VAETrainConfig
    data_seed: int = 800
    """Garments seed of the training renders (every style and extra, varied framing)."""
    notes: str = ""


GARMENTS_VAE = VAERecipe(
    name="garments-vae",
    vae=dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=64, layers_per_block=1,
             down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
             block_out_channels=(32, 64, 128), norm_num_groups=8),
    train=VAETrainConfig(),
    notes="KL autoencoder, 64 px -> 16 x 16 x 4 (factor 4 per side, 12x fewer numbers); L1 + 1e-6 KL, no "
          "perceptual or GAN loss (see fashionlab.train.latent).",
)


@dataclass(frozen=True)
class SDRecipe:
    """The conditional UNet of the latent text-to-image model (chapter 08), trained on latents of
    ``vae`` with captions encoded by ``text``'s frozen text tower."""

    name: str
    unet: dict
    """``UNet2DConditionModel`` keyword arguments."""
    scheduler: dict
    """``DDPMScheduler`` keyword arguments (Stable Diffusion's scaled-linear schedule)."""
    train: LDMTrainConfig
    vae: str = "garments-vae"
    text: str = "garments-clip-s"
    data_seed: int = 810
    notes: str = ""


SD_SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                   prediction_type="v_prediction", clip_sample=False)
"""Stable Diffusion 1.x's forward process (scaled-linear betas 0.00085 -> 0.012), with v-prediction as
in Stable Diffusion 2 (our eps-prediction pixel DDPM failed at high noise; chapter 02)."""

GARMENTS_SD_BASE = SDRecipe(
    name="garments-sd-base",
    unet=dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
              block_out_channels=(64, 128, 128),
              down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
              up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
              cross_attention_dim=64, attention_head_dim=(2, 4, 4), norm_num_groups=16),
    scheduler=SD_SCHEDULE,
    train=LDMTrainConfig(),
    notes="UNet2DConditionModel on 16 x 16 x 4 latents, cross-attention at 16 x 16 and 8 x 8 to the 64-wide "
          "text states of garments-clip-s; generic captions of every style and extra, varied framing, 10 % "
          "out-of-frame crops, 10 % empty captions; no catalog captions.",
)


RECIPES: dict[str, DDPMRecipe | CLIPRecipe | EvaluatorRecipe | AttrNetRecipe | DiffusionCLIPRecipe | VAERecipe
              | SDRecipe | ZIPRecipe] = {
    GARMENTS_DDPM_64.name: GARMENTS_DDPM_64, **_clip_recipes(), **_evaluator_recipes(), **_attrnet_recipes(),
    **_diffusionclip_recipes(), GARMENTS_VAE.name: GARMENTS_VAE, GARMENTS_SD_BASE.name: GARMENTS_SD_BASE,
    **_zip_recipes()}


def sd_parts(recipe: SDRecipe, seed: int | None = None) -> dict:
    """What training ``recipe`` needs: its freshly initialised UNet (from ``seed``, default the
    recipe's), its DDPM scheduler, the zoo's VAE, and the tokenizer and frozen text encoder converted
    from the zoo CLIP."""
    from diffusers import DDPMScheduler

    with config.seeded(recipe.train.seed if seed is None else seed):
        unet = build_cond_unet(**recipe.unet)
    clip = load(recipe.text, profile="tiny", device="cpu")
    return {"unet": unet, "scheduler": DDPMScheduler(**recipe.scheduler),
            "vae": load(recipe.vae, profile="tiny", device="cpu"),
            "tokenizer": clip_tokenizer(config.cache_dir() / SD_TOKENIZER_DIR / recipe.text,
                                        clip.model.positional_embedding.shape[0]),
            "text_encoder": text_encoder_from_clip(clip.model)}


def save_grid_png(images: torch.Tensor, path: Path, side: int = 8) -> None:
    """The first ``side`` x ``side`` of ``images`` (in [-1, 1]) as one PNG grid, row by row."""
    grid = to_uint8(images[:side * side])  # (N, H, W, 3)
    rows = [torch.from_numpy(grid[r * side:(r + 1) * side]).permute(1, 0, 2, 3).reshape(grid.shape[1], -1, 3)
            for r in range(side)]
    Image.fromarray(torch.cat(rows).numpy()).save(path)


def build_evaluator(recipe: EvaluatorRecipe) -> torch.nn.Module:
    with config.seeded(recipe.train.seed):  # parameter initialisation
        return SUPERVISED_BUILDERS[recipe.kind](**recipe.model)


def get_recipe(name: str) -> DDPMRecipe | CLIPRecipe | EvaluatorRecipe | AttrNetRecipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name]


def build_unet(recipe: DDPMRecipe, seed: int | None = None):
    """The recipe's ``UNet2DModel``, initialised from ``seed`` (default: the recipe's training seed)
    without touching the caller's global RNG."""
    from diffusers import UNet2DModel

    with config.seeded(recipe.train.seed if seed is None else seed):
        return UNet2DModel(**recipe.unet)


def build_scheduler(recipe: DDPMRecipe):
    from diffusers import DDPMScheduler

    return DDPMScheduler(**recipe.scheduler)


def garments_batch_sampler(seed: int, size: int, data_size: int, domain: str):
    """``sample(generator, B)`` -> (B, 3, size, size) renders of random Garments indices."""

    def sample(generator: torch.Generator, batch_size: int) -> torch.Tensor:
        indices = torch.randint(0, data_size, (batch_size,), generator=generator).tolist()
        return render_batch([spec_for(seed, i, domain) for i in indices], size)

    return sample


def framed_sampler(seed: int, size: int = 64, data_size: int = 1_000_000, captions: bool = False):
    """``sample(generator, B)`` -> renders of random Garments indices of every style and extra,
    reframed (:func:`~fashionlab.data.transforms.reframe`: zoom, shift, 10 % out-of-frame crops);
    with ``captions``, (images, generic captions drawn as the CLIP recipes draw them)."""

    def sample(generator: torch.Generator, batch_size: int):
        indices = torch.randint(0, data_size, (batch_size,), generator=generator).tolist()
        specs = [spec_for(seed, i, "all") for i in indices]
        images = reframe(render_batch(specs, size), generator)
        if not captions:
            return images
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        return images, [random_caption(spec, rng) for spec in specs]

    return sample


def check_run_flags(name: str, minutes: float | None = None, max_steps: int | None = None, resume: bool = False):
    """The recipe ``name``, after checking that it can honour ``minutes``, ``max_steps`` and ``resume``:
    the short recipes (DiffusionCLIP fine-tunes, ZIP / Asyrp editors, AttributeNet variants: minutes
    each) run whole in one go with no checkpoint, and refuse the three rather than ignore them."""
    recipe = get_recipe(name)
    if isinstance(recipe, (DiffusionCLIPRecipe, ZIPRecipe, AttrNetRecipe)):
        given = [flag for flag, value in (("minutes", minutes), ("max_steps", max_steps), ("resume", resume))
                 if value not in (None, False)]
        if given:
            raise ValueError(f"recipe {name!r} is a short run (minutes) with no checkpoint to stop at or resume "
                             f"from: {', '.join(given)} do not apply to it; run it without them")
    if minutes is not None:
        config.check_number("minutes", minutes, 0, low_open=True)
    if max_steps is not None:
        config.check_number("max_steps", max_steps, 1, integer=True)
    return recipe


def run_recipe(name: str, minutes: float | None = None, max_steps: int | None = None, resume: bool = False,
               workdir: Path | None = None, progress: bool = True):
    """Train recipe ``name``; returns (steps done in all, minutes in all, finished). ``minutes``,
    ``max_steps`` and ``resume`` apply to the long recipes, which checkpoint as they go; the short
    ones refuse them (:func:`check_run_flags`)."""
    recipe = check_run_flags(name, minutes, max_steps, resume)
    workdir = _workdir(name, workdir)
    if isinstance(recipe, VAERecipe):
        with config.seeded(recipe.train.seed):
            vae = build_vae(**recipe.vae)
        steps, minutes_done = train_vae(vae, framed_sampler(recipe.data_seed, recipe.vae["sample_size"]),
                                        recipe.train, workdir, minutes=minutes, max_steps=max_steps, resume=resume,
                                        progress=progress)
        return steps, minutes_done, steps >= recipe.train.total_steps
    if isinstance(recipe, SDRecipe):
        parts = sd_parts(recipe)
        steps, minutes_done = train_ldm(parts["unet"], parts["scheduler"], parts["vae"], parts["tokenizer"],
                                        parts["text_encoder"], framed_sampler(recipe.data_seed, captions=True),
                                        recipe.train, workdir, minutes=minutes, max_steps=max_steps, resume=resume,
                                        progress=progress)
        return steps, minutes_done, steps >= recipe.train.total_steps
    if isinstance(recipe, DiffusionCLIPRecipe):
        steps, minutes_done = train_diffusionclip_recipe(recipe, workdir, progress=progress)
        return steps, minutes_done, True
    if isinstance(recipe, ZIPRecipe):
        steps, minutes_done = train_zip_recipe(recipe, workdir, progress=progress)
        return steps, minutes_done, True
    if isinstance(recipe, AttrNetRecipe):
        steps, minutes_done = train_attrnet_recipe(recipe.variant, recipe.train, recipe.n_train, workdir,
                                                   progress=progress)
        return steps, minutes_done, True
    if isinstance(recipe, EvaluatorRecipe):
        cache = render_cache(recipe.train.data_seed, recipe.train.cache_size, progress=progress, on_disk=True)
        steps, minutes_done = train_supervised(build_evaluator(recipe), LOSSES[recipe.kind], cache, recipe.train,
                                               workdir, minutes=minutes, max_steps=max_steps, resume=resume,
                                               progress=progress)
        return steps, minutes_done, steps >= recipe.train.total_steps
    if isinstance(recipe, CLIPRecipe):
        steps, minutes_done = train_clip(name, recipe.train, workdir, minutes=minutes, max_steps=max_steps,
                                         resume=resume, progress=progress)
        return steps, minutes_done, steps >= recipe.train.total_steps
    sampler = garments_batch_sampler(recipe.data_seed, recipe.unet["sample_size"], recipe.data_size, recipe.domain)
    result = train_ddpm(build_unet(recipe), build_scheduler(recipe), sampler, recipe.train, workdir, minutes=minutes,
                        max_steps=max_steps, resume=resume, progress=progress)
    return result.steps, result.minutes, result.finished


# ----------------------------------------------------------------------------------------
# The attribute classifier: one variant of chapter 05's grid
# ----------------------------------------------------------------------------------------
def train_variant(variant: Variant, train: RenderCache, cfg: AttrNetTrainConfig, log_every: int = 25,
                  progress: bool = False) -> tuple[AttributeNet, AttrNetRun]:
    """Build ``variant``'s network and fine-tune it on ``train`` with ``cfg`` (augmentation as the
    variant says); the grid and the zoo recipe both train through here."""
    model = build_attrnet(variant.init, variant.clip_name, variant.seed)
    run = train_attrnet(model, variant.strategy, train, replace(cfg, augment=variant.augment), seed=variant.seed,
                        log_every=log_every, progress=progress)
    return model, run


def train_attrnet_recipe(variant: Variant, cfg: AttrNetTrainConfig, n_train: int, workdir: str | Path,
                 progress: bool = True) -> tuple[int, float]:
    """Train ``variant`` on the first ``n_train`` renders of the labelled set (seed
    :data:`TRAIN_SEED`, in-domain) and leave what the zoo's export reads in ``workdir``:
    ``checkpoint.pt`` (model, step, minutes, config) and ``loss.csv``. Returns (steps, minutes).
    Short enough (minutes) to need no resume."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    train = render_cache(TRAIN_SEED, n_train, domain="in", progress=progress)
    log_every = 25
    model, run = train_variant(variant, train, cfg, log_every=log_every, progress=progress)
    log = CSVLog(workdir / "loss.csv", ["step", "loss"], fresh=True)
    for k, value in enumerate(run.losses):
        log.write([(k + 1) * log_every, f"{value:.5f}"])
    log.close()
    atomic_save({"model": model.state_dict(), "step": cfg.steps, "minutes": run.seconds / 60,
                 "config": {**asdict(cfg), "variant": asdict(variant), "n_train": n_train}}, workdir / "checkpoint.pt")
    return cfg.steps, run.seconds / 60


SAMPLERS: dict[str, tuple[int, float, bool]] = {
    "ddim50": (50, 0.0, False),
    "ddpm50_clip": (50, 1.0, True),
}
"""The samplers the shipped-model check runs: name -> (steps, eta, clip P_t to [-1, 1]). DDIM
(eta 0) as diffusers runs it without clipping; the ancestral DDPM step (eta 1) with DDPM's own
x0 clipping. Each sampler's first 64 samples are saved as a grid beside the checkpoint."""


def evaluate_pixel_ddpm(unet, scheduler, n_samples: int = 256, n_roundtrip: int = 16, roundtrip_steps: int = 40,
                        heldout_seed: int = 1, seed: int = 0, batch_size: int = 64,
                        samplers: dict[str, tuple[int, float, bool]] | None = None,
                        progress: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """The shipped-model quality numbers: for every sampler of ``samplers`` (default
    :data:`SAMPLERS`), the share of ``n_samples`` samples that show one connected garment region
    (foreground = not the photo background colour); the same share for real renders; and the PSNR
    of a DDIM round trip (S_inv = S_gen = ``roundtrip_steps``, t0 = 999) on held-out garments.
    Every sampler starts from the same x_T. Returns (metrics, {sampler: samples})."""
    denoiser = core.PixelDenoiser(unet, scheduler)
    alphas_cumprod = scheduler.alphas_cumprod
    size = int(unet.config.sample_size)
    metrics: dict = {"n_samples": n_samples}
    samples: dict[str, torch.Tensor] = {}
    for name, (steps, eta, clip) in (samplers or SAMPLERS).items():
        generator = torch.Generator().manual_seed(seed)  # the same x_T (and z's) for every sampler
        grid = core.even_grid(999, steps)
        out = []
        for start in tqdm(range(0, n_samples, batch_size), desc=f"samples ({name})", disable=not progress):
            n = min(batch_size, n_samples - start)
            x_T = torch.randn(n, 3, size, size, generator=generator)
            with torch.no_grad():
                out.append(core.sample(denoiser, x_T, grid, alphas_cumprod, eta=eta, generator=generator,
                                       clip_x0=clip).x0.clamp(-1, 1))
        samples[name] = torch.cat(out)
        rate, _ = single_region_rate(samples[name], BACKGROUNDS["photo"])
        metrics[f"single_region_rate_{name}"] = round(rate, 4)
    real = render_batch([spec_for(heldout_seed, i, "in") for i in range(n_samples)], size)
    real_rate, _ = single_region_rate(real, BACKGROUNDS["photo"])
    metrics["single_region_rate_real_renders"] = round(real_rate, 4)
    metrics["samplers"] = {name: f"{steps} steps, eta {eta}, clip P_t {clip}"
                           for name, (steps, eta, clip) in (samplers or SAMPLERS).items()}
    held = real[:n_roundtrip]
    rt_grid = core.diffusionclip_grid(999, roundtrip_steps)
    with torch.no_grad():
        x_T = inversion.ddim_invert(denoiser, held, rt_grid[1:], alphas_cumprod).x_t
        rec = inversion.ddim_generate(denoiser, x_T, rt_grid, alphas_cumprod)
    metrics["ddim_roundtrip_psnr_db"] = round(float(psnr(rec.clamp(-1, 1), held).mean()), 2)
    metrics["roundtrip"] = f"S_inv=S_gen={roundtrip_steps}, t0=999, {n_roundtrip} held-out garments (seed {heldout_seed})"
    return metrics, samples


def export_evaluator(name: str, workdir: Path | None = None, heldout_seed: int = 200, n_heldout: int = 2000,
                     weights_dir: Path | None = None, manifest_path: Path | None = None, progress: bool = True) -> dict:
    """Evaluate a trained oracle, parser or category ViT on held-out renders (weights rounded to
    fp16 as shipped) and export it to the zoo with its metrics. Returns the manifest entry."""
    recipe = get_recipe(name)
    workdir = _workdir(name, workdir)
    state = read_checkpoint(workdir)
    model = build_evaluator(recipe)
    model.load_state_dict(state["model"])
    round_to_fp16(model)
    cache = render_cache(heldout_seed, n_heldout, progress=progress)
    if recipe.kind == "category-vit":
        metrics = evaluate_oracle(model, cache)
    elif recipe.kind == "extras-judge":
        metrics = evaluate_extras(model, cache)
    elif recipe.kind == "oracle":
        metrics = {"clean": evaluate_oracle(model, cache),
                   "noisy": evaluate_oracle(model, cache, noise_max=recipe.train.noise_max,
                                               blur_max=recipe.train.blur_max)}
    else:
        metrics = evaluate_parser(model, cache)
    metrics["heldout"] = f"{n_heldout} renders of Garments seed {heldout_seed}, all styles and extras"
    record = training_record(name, state, workdir, recipe.train.batch_size, recipe.train.data_seed,
                             f"Garments seed {recipe.train.data_seed}, all domains, {recipe.train.cache_size} renders")
    cfg = {"model": json_config(recipe.model)}
    return ship(name, model, cfg, {**record, "metrics": metrics}, workdir, weights_dir, manifest_path)


def export_clip(name: str, workdir: Path | None = None, heldout_seed: int = 100, n_heldout: int = 1000,
                weights_dir: Path | None = None, manifest_path: Path | None = None, progress: bool = True) -> dict:
    """Evaluate a trained tiny CLIP (weights rounded to fp16 as shipped) with the held-out
    zero-shot and retrieval table of :func:`~fashionlab.eval.zero_shot.zero_shot_table`, and
    export it to the zoo. Returns the manifest entry."""
    recipe = get_recipe(name)
    workdir = _workdir(name, workdir)
    state = read_checkpoint(workdir)
    bundle = create_clip(name)
    bundle.model.load_state_dict(state["model"])
    round_to_fp16(bundle.model)
    cache = render_cache(heldout_seed, n_heldout, bundle.image_size, progress=progress)
    metrics = zero_shot_table(bundle, seed=heldout_seed, n=n_heldout, cache=cache)
    metrics["heldout"] = f"{n_heldout} renders of Garments seed {heldout_seed}, all styles and extras"
    metrics["logit_scale"] = round(float(bundle.model.logit_scale.detach().exp()), 2)
    record = training_record(name, state, workdir, recipe.train.batch_size, recipe.train.data_seed,
                             f"Garments seed {recipe.train.data_seed}, all domains, {recipe.train.cache_size} renders "
                             "with fresh random captions")
    return ship(name, bundle.model, {"open_clip_model": name}, {**record, "metrics": metrics}, workdir,
                   weights_dir, manifest_path)


def export_attrnet(name: str, workdir: Path | None = None, weights_dir: Path | None = None,
                   manifest_path: Path | None = None, n_heldout: int | None = None, progress: bool = True) -> dict:
    """Evaluate a trained AttributeNet (fp16-rounded, as shipped) on the held-out set of chapter 05
    (accuracy and attention mass in region) and on renders of every style, and export it."""
    recipe = get_recipe(name)
    workdir = _workdir(name, workdir)
    state = read_checkpoint(workdir)
    model = attrnet_for(recipe.variant.clip_name)
    model.load_state_dict(state["model"])
    round_to_fp16(model)
    n = n_heldout or N_TEST
    metrics = evaluate_attrnet(model, render_cache(TEST_SEED, n, domain="in", progress=progress))
    metrics["heldout"] = f"{n} renders of Garments seed {TEST_SEED}, photo style, no extras"
    every_style = evaluate_attrnet(model, render_cache(TEST_SEED, n, domain="all", progress=progress))
    metrics["all_styles"] = {"accuracy": every_style["accuracy"], "mean_accuracy": every_style["mean_accuracy"]}
    record = training_record(name, state, workdir, recipe.train.batch_size, TRAIN_SEED,
                             f"{recipe.n_train} labelled in-domain renders of Garments seed {TRAIN_SEED}")
    record["variant"] = state["config"]["variant"]
    return ship(name, model, {"model": {"clip_name": recipe.variant.clip_name}}, {**record, "metrics": metrics},
                   workdir, weights_dir, manifest_path)


VAE_HELDOUT_SEED = 801


@torch.no_grad()
def evaluate_vae(vae, n_heldout: int = 512, heldout_seed: int = VAE_HELDOUT_SEED, batch_size: int = 64) -> dict:
    """Reconstruction PSNR (posterior mean, decoded, clamped) of ``n_heldout`` renders of every style
    and extra (seed ``heldout_seed``, not reframed): overall and per style."""
    specs = [spec_for(heldout_seed, i, "all") for i in range(n_heldout)]
    values = []
    for start in range(0, n_heldout, batch_size):
        images = render_batch(specs[start:start + batch_size])
        recon = vae.decode(vae.encode(images).latent_dist.mode()).sample.clamp(-1, 1)
        values.append(psnr(recon, images))
    values = torch.cat(values)
    styles = np.array([spec.style for spec in specs])
    return {"psnr_db": round(float(values.mean()), 2),
            "psnr_db_by_style": {style: round(float(values[torch.from_numpy(styles == style)].mean()), 2)
                                 for style in sorted(set(styles))},
            "heldout": f"{n_heldout} renders of Garments seed {heldout_seed}, every style and extra"}


@torch.no_grad()
def latent_scaling_factor(vae, seed: int, n: int = 1024, batch_size: int = 64) -> float:
    """1 / std of posterior samples on ``n`` training renders (reframed as in training): Stable
    Diffusion's ``scaling_factor`` (0.18215 for its VAE), which gives the latents unit variance."""
    sample = framed_sampler(seed)
    generator = torch.Generator().manual_seed(0)
    latents = torch.cat([vae.encode(sample(generator, batch_size)).latent_dist.sample(generator=generator)
                         for _ in range(max(1, n // batch_size))])
    return float(1.0 / latents.std())


def export_vae(name: str, workdir: Path | None = None, weights_dir: Path | None = None,
               manifest_path: Path | None = None) -> dict:
    """Ship a trained VAE (fp16) with its scaling factor in the config and its held-out PSNR; a
    grid of held-out renders over their reconstructions is saved beside the checkpoint."""
    recipe = get_recipe(name)
    workdir = _workdir(name, workdir)
    state = read_checkpoint(workdir)
    vae = build_vae(**recipe.vae)
    vae.load_state_dict(state["model"])
    vae = round_to_fp16(vae).eval()
    scaling = round(latent_scaling_factor(vae, recipe.data_seed), 5)
    metrics = {**evaluate_vae(vae), "scaling_factor": scaling}
    images = render_batch([spec_for(VAE_HELDOUT_SEED, i, "all") for i in range(16)])
    with torch.no_grad():
        recon = vae.decode(vae.encode(images).latent_dist.mode()).sample.clamp(-1, 1)
    rows = [torch.from_numpy(to_uint8(x)).permute(1, 0, 2, 3).reshape(64, -1, 3) for x in (images, recon)]
    Image.fromarray(torch.cat(rows).numpy()).save(workdir / "reconstructions.png")
    record = training_record(name, state, workdir, recipe.train.batch_size, recipe.data_seed,
                             f"Garments seed {recipe.data_seed}, every style and extra, reframed")
    record["metrics"] = metrics
    cfg = {"vae": {**json_config(recipe.vae), "scaling_factor": scaling}}
    return ship(name, vae, cfg, record, workdir, weights_dir, manifest_path)


SD_HELDOUT_SEED = 811


@torch.no_grad()
def evaluate_text_to_image(pipe, n: int = 128, seed: int = SD_HELDOUT_SEED, steps: int = 25, guidance: float = 4.0
                           ) -> tuple[dict, torch.Tensor]:
    """Grade a text-to-image pipeline on ``n`` generic held-out captions (template 1, which names the
    style; every style and extra): the oracle's accuracy on the category, colour and style the caption
    names, the extras judge's recall on the extras it names, and the single-garment rate of the
    photo-style prompts. Returns (metrics, images)."""
    specs = [spec_for(seed, i, "all") for i in range(n)]
    images = generate(pipe, [caption(spec, 1) for spec in specs], seed=0, steps=steps, guidance=guidance)
    oracle, judge = load("garments-oracle", device="cpu"), load("garments-extras-judge", device="cpu")
    logits, extras = oracle(images), judge(images)
    metrics: dict = {"n": n, "sampler": f"DDIM {steps} steps, guidance {guidance}",
                     "prompts": f"caption template 1 of Garments seed {seed}, every style and extra"}
    for key, values in (("category", SCHEMA["category"]), ("colour", SCHEMA["colour"]), ("style", STYLES)):
        truth = torch.tensor([values.index(getattr(spec, key)) for spec in specs])
        metrics[f"{key}_accuracy"] = round(float((logits[key].argmax(1) == truth).float().mean()), 4)
    named = [(i, k) for i, spec in enumerate(specs) for k, extra in enumerate(EXTRAS) if extra in spec.extras]
    hits = [int(extras[EXTRAS[k]][i].argmax()) == 1 for i, k in named]
    metrics["extras_recall"] = round(float(np.mean(hits)), 4) if hits else None
    photo = torch.tensor([spec.style == "photo" for spec in specs])
    metrics["single_region_rate_photo"] = round(single_region_rate(images[photo], BACKGROUNDS["photo"])[0], 4)
    return metrics, images


def export_sd(name: str, workdir: Path | None = None, weights_dir: Path | None = None,
              manifest_path: Path | None = None) -> dict:
    """Ship the EMA weights of a trained text-to-image UNet (fp16), graded as shipped in its
    assembled pipeline (:func:`evaluate_text_to_image`); a sample grid is saved beside the checkpoint."""
    from diffusers import StableDiffusionPipeline

    recipe = get_recipe(name)
    workdir = _workdir(name, workdir)
    state = read_checkpoint(workdir)
    parts = sd_parts(recipe)
    unet = round_to_fp16(load_ema_weights(parts["unet"], workdir, state).eval())
    pipe = StableDiffusionPipeline(vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
                                   unet=unet, scheduler=sd_sampler(recipe.scheduler), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    metrics, images = evaluate_text_to_image(pipe)
    save_grid_png(images, workdir / "samples.png")
    record = training_record(name, state, workdir, recipe.train.batch_size, recipe.data_seed,
                             f"Garments seed {recipe.data_seed}, every style and extra, reframed, generic captions")
    record.update(planned_steps=recipe.train.total_steps, metrics=metrics)
    cfg = {"unet": json_config(recipe.unet), "scheduler": recipe.scheduler, "text": recipe.text, "vae": recipe.vae}
    return ship(name, unet, cfg, record, workdir, weights_dir, manifest_path)


def export(name: str) -> dict:
    """Evaluate and ship any trained recipe (the CLI's ``export``); returns the manifest entry."""
    recipe = get_recipe(name)
    if isinstance(recipe, VAERecipe):
        return export_vae(name)
    if isinstance(recipe, SDRecipe):
        return export_sd(name)
    if isinstance(recipe, DiffusionCLIPRecipe):
        return export_diffusionclip(name)
    if isinstance(recipe, ZIPRecipe):
        return export_zip(name)
    if isinstance(recipe, AttrNetRecipe):
        return export_attrnet(name)
    if isinstance(recipe, EvaluatorRecipe):
        return export_evaluator(name)
    if isinstance(recipe, CLIPRecipe):
        return export_clip(name)
    return export_recipe(name)


def export_recipe(name: str, workdir: Path | None = None, weights_dir: Path | None = None,
                  manifest_path: Path | None = None, evaluate: bool = True, progress: bool = True) -> dict:
    """Export the EMA weights of a trained DDPM recipe to the zoo (fp16) with its metrics; also save
    a sample grid PNG beside the checkpoint. Returns the manifest entry."""
    recipe = get_recipe(name)
    workdir = _workdir(name, workdir)
    state = read_checkpoint(workdir)  # read once: the EMA weights and the training facts
    unet = round_to_fp16(load_ema_weights(build_unet(recipe), workdir, state).eval())  # evaluated as shipped
    scheduler = build_scheduler(recipe)
    metrics = {}
    if evaluate:
        metrics, samples = evaluate_pixel_ddpm(unet, scheduler, progress=progress)
        for sampler, images in samples.items():  # one 8 x 8 grid per sampler, same x_T
            save_grid_png(images, workdir / f"samples_{sampler}.png")
    record = training_record(name, state, workdir, recipe.train.batch_size, recipe.data_seed,
                             f"Garments seed {recipe.data_seed}, domain '{recipe.domain}', "
                             f"size {recipe.unet['sample_size']}")
    record.update(planned_steps=recipe.train.total_steps, metrics=metrics)
    cfg = {"unet": json_config(recipe.unet),
           "scheduler": recipe.scheduler}
    return ship(name, unet, cfg, record, workdir, weights_dir, manifest_path)


# ----------------------------------------------------------------------------------------
# DiffusionCLIP fine-tunes (chapter 07)
# ----------------------------------------------------------------------------------------
def diffusionclip_tasks(recipe: DiffusionCLIPRecipe, seed: int, n: int) -> list[EditTask]:
    """``n`` garments of ``seed`` that ``recipe``'s edit changes, as edit tasks."""
    edit = GARMENT_EDITS[recipe.edit]
    return tasks_for(seed, n, edit.attribute, edit.value)


def train_diffusionclip_recipe(recipe: DiffusionCLIPRecipe, workdir: str | Path, progress: bool = True
                               ) -> tuple[int, float]:
    """Fine-tune ``recipe``'s base on its training garments; leave ``checkpoint.pt`` (the fine-tuned
    UNet's state, steps, minutes, config) and ``loss.csv`` in ``workdir``. Minutes, so no resume."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ddpm = load(recipe.base, profile="tiny", device="cpu")
    clip = load(recipe.clip, profile="tiny", device="cpu")
    tasks = diffusionclip_tasks(recipe, recipe.train_seed, recipe.n_train)
    edit = GARMENT_EDITS[recipe.edit]
    images = render_batch([t.source for t in tasks])
    result = finetune(ddpm.unet, ddpm.scheduler, clip, images, [edit.text_pair(t.source.category) for t in tasks],
                      recipe.train, progress=progress)
    return _save_short_run(workdir, result.unet.state_dict(), result.losses, result.steps, result.seconds,
                           {**asdict(recipe.train), "edit": recipe.edit, "base": recipe.base, "clip": recipe.clip,
                            "train_seed": recipe.train_seed, "n_train": recipe.n_train})


def _save_short_run(workdir: Path, state: dict, losses: list[float], steps: int, seconds: float,
                    cfg: dict) -> tuple[int, float]:
    """A minutes-long run's record: ``loss.csv`` (one row per logged window, at its last step) and
    ``checkpoint.pt`` (the state, steps, minutes, config). Returns (steps, minutes)."""
    log = CSVLog(workdir / "loss.csv", ["step", "loss"], fresh=True)
    per_log = steps // max(1, len(losses))
    for k, value in enumerate(losses):
        log.write([(k + 1) * per_log, f"{value:.5f}"])
    log.close()
    atomic_save({"model": state, "step": steps, "minutes": seconds / 60, "config": cfg}, workdir / "checkpoint.pt")
    return steps, seconds / 60


FINGERPRINT_T, FINGERPRINT_SEED = 300, 0


@torch.no_grad()
def output_fingerprint(unet: torch.nn.Module) -> dict:
    """A recorded output of a UNet: statistics of its prediction on fixed noise at t = 300 (a test
    checks that base + shipped delta reproduces it)."""
    x = torch.randn(2, 3, unet.config.sample_size, unet.config.sample_size,
                    generator=torch.Generator().manual_seed(FINGERPRINT_SEED))
    out = unet(x, torch.full((2,), FINGERPRINT_T)).sample
    return {"t": FINGERPRINT_T, "input_seed": FINGERPRINT_SEED, "mean": round(float(out.mean()), 6),
            "abs_mean": round(float(out.abs().mean()), 6), "first": [round(float(v), 5) for v in out.flatten()[:4]]}


def export_diffusionclip(name: str, workdir: Path | None = None, weights_dir: Path | None = None,
                         manifest_path: Path | None = None, n_heldout: int = 32, progress: bool = True) -> dict:
    """Ship a trained DiffusionCLIP fine-tune as an fp16 delta over its base, after grading it *as
    shipped* (base + rounded delta) on ``n_heldout`` held-out garments with S_inv = S_gen = 40: the
    oracle's (or, for an extra, the extras judge's) success, and the mean |edit - source|."""
    recipe = get_recipe(name)
    workdir = _workdir(name, workdir)
    state = read_checkpoint(workdir)
    base = load(recipe.base, profile="tiny", device="cpu")
    base_state = {k: v.clone() for k, v in base.unet.state_dict().items()}
    delta = {k: state["model"][k].float() - v for k, v in base_state.items() if v.is_floating_point()}
    shipped = apply_delta(copy.deepcopy(base.unet), {k: v.half().float() for k, v in delta.items()}).eval()
    tasks = diffusionclip_tasks(recipe, DCLIP_HELDOUT_SEED, n_heldout)
    batch = render_tasks(tasks)
    edited = diffusionclip_edit(core.PixelDenoiser(base.unet, base.scheduler),
                                core.PixelDenoiser(shipped, base.scheduler), base.alphas_cumprod, batch.images,
                                recipe.train, progress=progress)
    oracle = load("garments-oracle", device="cpu")
    judge = load("garments-extras-judge", device="cpu") if GARMENT_EDITS[recipe.edit].attribute == "extra" else None
    scores = score_edits(batch, edited, oracle, OraclePerceptual(oracle), judge)
    metrics = {"success": round(float(scores["success"].mean()), 4),
               "consistency": round(float(scores["consistency"].mean()), 4),
               "mean_abs_change": round(float((edited - batch.images).abs().mean()), 4),
               "heldout": f"{n_heldout} garments of seed {DCLIP_HELDOUT_SEED} the edit changes; S_inv = S_gen = 40, "
                          f"t_0 = {recipe.train.depth}",
               "fingerprint": output_fingerprint(shipped)}
    record = training_record(name, state, workdir, recipe.train.batch_size, recipe.train_seed,
                             f"{recipe.n_train} in-domain garments of seed {recipe.train_seed} the edit changes")
    record.update(base=recipe.base, edit=recipe.edit, metrics=metrics)
    return ship(name, delta, {"base": recipe.base, "edit": recipe.edit, "config": asdict(recipe.train)}, record,
                workdir, weights_dir, manifest_path)


# ----------------------------------------------------------------------------------------
# ZIP attribute encoders and Asyrp DeltaBlocks (chapter 10)
# ----------------------------------------------------------------------------------------
def zip_tasks(recipe: ZIPRecipe, seed: int, n: int) -> list[EditTask]:
    """``n`` garments of ``seed`` that ``recipe``'s edit changes, as edit tasks."""
    edit = ZIP_EDITS[recipe.edit].edit
    return tasks_for(seed, n, edit.attribute, edit.value)


def build_zip_delta(recipe: ZIPRecipe, ddpm, reference: torch.Tensor | None = None) -> torch.nn.Module:
    """A fresh delta-h module for ``recipe`` over ``ddpm`` (ZIP: with ``reference``)."""
    if recipe.method == "zip":
        if reference is None:
            raise ValueError("a ZIP recipe needs its reference image")
        return ZIPDelta(AttributeEncoder(ddpm.unet), reference, ddpm.scheduler.alphas_cumprod,
                        reference_t=recipe.train.reference_t, seed=recipe.train.seed)
    if recipe.method == "asyrp":
        with config.seeded(recipe.train.seed):
            return DeltaBlock.for_unet(ddpm.unet)
    raise ValueError(f"method must be 'zip' or 'asyrp', got {recipe.method!r}")


def zip_reference(recipe: ZIPRecipe, clip=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The recipe's reference: the best of ``reference_candidates`` draws of its reference prompt by
    chapter 08's text-to-image model, as the guiding CLIP scores them."""
    pipe = load(recipe.generator, profile="tiny", device="cpu")
    clip = load(recipe.clip, profile="tiny", device="cpu") if clip is None else clip
    return visual_reference(pipe, clip, ZIP_EDITS[recipe.edit].reference_prompt, recipe.reference_candidates,
                            seed=recipe.train.seed, size=64)


def train_zip_recipe(recipe: ZIPRecipe, workdir: str | Path, progress: bool = True) -> tuple[int, float]:
    """Train ``recipe``'s delta-h module on its training garments; leave ``checkpoint.pt`` and
    ``loss.csv`` in ``workdir``. Minutes, so no resume."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ddpm = load(recipe.base, profile="tiny", device="cpu")
    clip = load(recipe.clip, profile="tiny", device="cpu")
    reference = zip_reference(recipe, clip)[0] if recipe.method == "zip" else None
    delta = build_zip_delta(recipe, ddpm, reference)
    tasks = zip_tasks(recipe, recipe.train_seed, recipe.n_train)
    edit = ZIP_EDITS[recipe.edit]
    images = render_batch([t.source for t in tasks])
    result = zip_train(HSpaceDenoiser(ddpm.unet, ddpm.scheduler), delta, clip, images,
                       [edit.text_pair(t.source.category) for t in tasks], recipe.train, progress=progress)
    return _save_short_run(workdir, result.delta.state_dict(), result.losses, result.steps, result.seconds,
                           {"method": recipe.method, "edit": recipe.edit, "base": recipe.base,
                            "config": asdict(recipe.train)})


def export_zip(name: str, workdir: Path | None = None, weights_dir: Path | None = None,
               manifest_path: Path | None = None, n_heldout: int = 24, progress: bool = True) -> dict:
    """Ship a trained delta-h module (fp16) after grading it *as shipped* on ``n_heldout`` garments of
    :data:`ZIP_HELDOUT_SEED`: the oracle's (an extra: the extras judge's) success and the mean
    |edit - source|, beside the plain reconstruction's."""
    recipe = get_recipe(name)
    workdir = _workdir(name, workdir)
    state = read_checkpoint(workdir)
    ddpm = load(recipe.base, profile="tiny", device="cpu")
    shipped_state = {k: v.half().float() if v.is_floating_point() else v for k, v in state["model"].items()}
    delta = build_zip_delta(recipe, ddpm, shipped_state.get("reference"))
    delta.load_state_dict(shipped_state, strict=True)
    model = HSpaceDenoiser(ddpm.unet, ddpm.scheduler)
    batch = render_tasks(zip_tasks(recipe, ZIP_HELDOUT_SEED, n_heldout))
    oracle = load("garments-oracle", device="cpu")
    judge = load("garments-extras-judge", device="cpu") if ZIP_EDITS[recipe.edit].edit.attribute == "extra" else None
    edited = zip_edit(model, batch.images, delta, recipe.train)
    scores = score_edits(batch, edited, oracle, OraclePerceptual(oracle), judge)
    plain = score_edits(batch, zip_edit(model, batch.images, None, recipe.train), oracle, OraclePerceptual(oracle), judge)
    metrics = {"success": round(float(scores["success"].mean()), 4),
               "success_without_delta": round(float(plain["success"].mean()), 4),
               "mean_abs_change": round(float((edited - batch.images).abs().mean()), 4),
               "heldout": f"{n_heldout} garments of seed {ZIP_HELDOUT_SEED} the edit changes; 40 DDIM steps"}
    record = training_record(name, state, workdir, recipe.train.batch_size, recipe.train_seed,
                             f"{recipe.n_train} in-domain garments of seed {recipe.train_seed} the edit changes")
    record.update(base=recipe.base, edit=recipe.edit, method=recipe.method, metrics=metrics)
    if recipe.method == "zip":
        record["reference_prompt"] = ZIP_EDITS[recipe.edit].reference_prompt
    return ship(name, shipped_state, {"base": recipe.base, "edit": recipe.edit, "method": recipe.method,
                                      "config": asdict(recipe.train)}, record, workdir, weights_dir, manifest_path)
