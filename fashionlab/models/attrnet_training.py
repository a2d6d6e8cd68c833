"""Building, training and evaluating AttributeNet variants (paper 000 §3.2, §4.4, Tables 2-4).

Chapter: "Taming a ViT for multi-attribute guidance" (``notebooks/05_attribute_classifier.py``).

Three initialisations of the same ViT (the image tower of ``garments-clip-s``, or of ``-b``):

=============  ==============================================================================
init           what the backbone has learned before the attribute task
=============  ==============================================================================
``random``     nothing
``supervised`` the analogue of ImageNet pretraining: :class:`CategoryViT`, the same ViT trained
               with *labels of a different task* -- garment category and render style only --
               on the same renders and with the same compute as the CLIP. Like an ImageNet
               model, it knows *what object* is shown, never the words for colour, pattern,
               sleeve or neckline
``clip``       the tiny CLIP's image tower, trained on captions that name every attribute
=============  ==============================================================================

Fine-tuning strategies come from :func:`~fashionlab.models.attrnet.apply_strategy`
(``attnpool``, ``lastK``, ``e2e``); the loss is the masked multi-attribute cross-entropy of eq. (6).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.garments import ATTRIBUTES, NUM_CLASSES, STYLES, RenderCache, region_mask
from ..losses import affine_theta, masked_attribute_ce
from ..training import make_accelerator, warmup_cosine, write_json_atomic
from .attrnet import AttributeNet, apply_strategy
from .clip import create_clip, visual_pixels
from .supervised_training import to_model_input

INITS: tuple[str, ...] = ("random", "supervised", "clip")
SUPERVISED_HEADS: dict[str, int] = {"category": NUM_CLASSES["category"], "style": len(STYLES)}


class CategoryViT(nn.Module):
    """A ViT of a tiny CLIP's image-tower shape with linear heads for garment category and render
    style on its pooled embedding: the "supervised" (ImageNet-like) pretraining of chapter 05.
    Takes images in [-1, 1] and applies the CLIP preprocessing itself, so its backbone sees exactly
    the pixels an AttributeNet built on it will see."""

    def __init__(self, clip_name: str = "garments-clip-s") -> None:
        super().__init__()
        bundle = create_clip(clip_name)
        self.clip_name = clip_name
        self.visual = bundle.model.visual
        self.heads = nn.ModuleDict({k: nn.Linear(self.visual.output_dim, n) for k, n in SUPERVISED_HEADS.items()})

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> the ViT's CLIP-normalised input (differentiable)."""
        return visual_pixels(self.visual, images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.visual(self.preprocess(images))
        return {name: head(pooled) for name, head in self.heads.items()}


def category_loss(model: nn.Module, images: torch.Tensor, batch: dict) -> torch.Tensor:
    """Cross-entropy on category and render style: the only labels the supervised pretraining sees."""
    logits = model(images)
    category = batch["attributes"][:, ATTRIBUTES.index("category")]
    return F.cross_entropy(logits["category"].float(), category) + F.cross_entropy(logits["style"].float(),
                                                                                   batch["styles"])


def build_attrnet(init: str, clip_name: str = "garments-clip-s", seed: int = 0, heads: int = 4) -> AttributeNet:
    """An AttributeNet on a fresh copy of the ``init`` backbone (see the module table); the pooler
    and heads are initialised from ``seed``. ``clip`` and ``supervised`` load shipped zoo weights."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the global RNG
        if init == "random":
            torch.manual_seed(seed + 1000)  # the backbone's own random draw, apart from the pooler's
            visual = create_clip(clip_name).model.visual
        elif init == "clip":
            from .clip import load_clip

            visual = copy.deepcopy(load_clip(clip_name, profile="tiny", device="cpu").model.visual)
        else:
            from ..zoo import registry

            visual = copy.deepcopy(registry.load_evaluator(supervised_name(clip_name), device="cpu").visual)
        torch.manual_seed(seed)
        return AttributeNet(visual.train(), heads=heads, backbone_init=init)


def supervised_name(clip_name: str) -> str:
    """The zoo name of the supervised backbone that matches ``clip_name`` (``garments-clip-s`` ->
    ``garments-vit-sup-s``)."""
    return "garments-vit-sup-" + clip_name.rsplit("-", 1)[-1]


# ----------------------------------------------------------------------------------------
# Label-preserving random augmentation (000 Table 3)
# ----------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttrNetTrainConfig:
    """Hyperparameters of :func:`train_attrnet` (the same for every variant of a table)."""

    steps: int = 600
    batch_size: int = 64
    learning_rate: float = 1e-3
    """Peak AdamW learning rate of the pooler and heads."""
    backbone_lr_ratio: float = 0.1
    """Unfrozen pretrained backbone blocks train at this fraction of it (1.0 for a random init)."""
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    augment: bool = False
    bf16: bool = False


def model_pixels(model: AttributeNet, images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 renders (B, H, W, 3) -> the CLIP-normalised input of ``model``."""
    return model.preprocess(to_model_input(images_u8))


@dataclass
class AttrNetRun:
    """What :func:`train_attrnet` returns: the losses every ``log_every`` steps and the wall-clock time."""

    losses: list[float]
    seconds: float
    trainable_parameters: int
    precision: str
    """The arithmetic the run actually used: ``"bf16"`` (autocast) or ``"fp32"``. A config asking for
    bf16 on a CPU without native bf16 trains in fp32, and results files record that."""


def train_attrnet(model: AttributeNet, strategy: str, cache: RenderCache, cfg: AttrNetTrainConfig, seed: int = 0,
                  log_every: int = 25, progress: bool = False) -> AttrNetRun:
    """Fine-tune ``model`` on the labelled renders of ``cache`` with ``strategy`` and the masked
    multi-attribute CE (000 eq. 6). Batches (and augmentations) come from ``seed``. With
    ``attnpool`` and no augmentation the frozen backbone's patch tokens are computed once."""
    from tqdm.auto import tqdm

    apply_strategy(model, strategy)
    head_params = list(model.pool.parameters()) + list(model.heads.parameters())
    head_ids = {id(p) for p in head_params}
    backbone_params = [p for p in model.backbone.parameters() if p.requires_grad and id(p) not in head_ids]
    ratio = 1.0 if model.backbone_init == "random" else cfg.backbone_lr_ratio
    groups = [{"params": head_params, "lr": cfg.learning_rate}]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": cfg.learning_rate * ratio})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio))
    accelerator = make_accelerator(cfg.bf16)
    gen = torch.Generator().manual_seed(seed)
    cached_tokens = None
    model.train()
    if strategy == "attnpool":
        model.backbone.eval()  # frozen: no dropout or norm statistics to update either way
        if not cfg.augment:
            with torch.no_grad():
                cached_tokens = torch.cat([model.patch_tokens(model_pixels(model, cache.images[i:i + 250]))
                                           for i in range(0, len(cache), 250)])
    start = time.perf_counter()
    losses, running = [], 0.0
    for step in tqdm(range(cfg.steps), desc=f"attrnet {strategy}", disable=not progress):
        idx = torch.randint(0, len(cache), (cfg.batch_size,), generator=gen)
        labels = cache.attributes[idx]
        with accelerator.autocast():
            if cached_tokens is not None:
                logits, _ = model.forward_tokens(cached_tokens[idx])
            else:
                images = to_model_input(cache.images[idx])
                if cfg.augment:
                    images = random_augment(images, gen)
                logits, _ = model(model.preprocess(images))
            loss = masked_attribute_ce(logits, labels, model.attributes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], cfg.grad_clip)
        optimizer.step()
        schedule.step()
        running += loss.item()
        if (step + 1) % log_every == 0:
            losses.append(running / log_every)
            running = 0.0
    model.eval()
    trainable = sum(p.numel() for g in groups for p in g["params"])
    precision = "bf16" if accelerator.mixed_precision == "bf16" else "fp32"
    return AttrNetRun(losses, time.perf_counter() - start, trainable, precision)


# ----------------------------------------------------------------------------------------
# Evaluation: accuracy, and where the attention looks
# ----------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_attrnet(model: AttributeNet, cache: RenderCache, batch_size: int = 250) -> dict:
    """Held-out accuracy per attribute (where it applies) and their mean; and, per attribute, the
    share of its attention map inside the attribute's ground-truth region (the part map's region
    of :func:`~fashionlab.data.garments.region_mask`, as the fraction of each patch it covers)
    beside the share a uniform map would put there."""
    model.eval()
    preds = {a: [] for a in model.attributes}
    mass = {a: [] for a in model.attributes}
    uniform = {a: [] for a in model.attributes}
    for start in range(0, len(cache), batch_size):
        sl = slice(start, start + batch_size)
        logits, maps = model(model_pixels(model, cache.images[sl]))
        parts = cache.parts[sl]
        for a in model.attributes:
            preds[a].append(logits[a].argmax(1))
            grid = maps[a].shape[-1]
            region = F.adaptive_avg_pool2d(region_mask(parts, a).float().unsqueeze(1), grid).squeeze(1)  # (B, g, g)
            mass[a].append((maps[a] * region).sum(dim=(1, 2)))
            uniform[a].append(region.mean(dim=(1, 2)))
    out: dict = {"accuracy": {}, "attention_in_region": {}, "uniform_in_region": {}}
    for k, a in enumerate(model.attributes):
        truth = cache.attributes[:, ATTRIBUTES.index(a)]
        keep = truth >= 0
        out["accuracy"][a] = round(float((torch.cat(preds[a])[keep] == truth[keep]).float().mean()), 4)
        out["attention_in_region"][a] = round(float(torch.cat(mass[a])[keep].mean()), 4)
        out["uniform_in_region"][a] = round(float(torch.cat(uniform[a])[keep].mean()), 4)
    out["mean_accuracy"] = round(sum(out["accuracy"].values()) / len(out["accuracy"]), 4)
    out["n_heldout"] = len(cache)
    return out



# ----------------------------------------------------------------------------------------
# The chapter's tables: one run per (init, strategy, augment, backbone, seed), resumable
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One row-and-seed of 000's Tables 2-4."""

    init: str
    strategy: str
    augment: bool = False
    clip_name: str = "garments-clip-s"
    seed: int = 0

    @property
    def key(self) -> str:
        return f"{self.init}|{self.strategy}|aug={int(self.augment)}|{self.clip_name}|seed={self.seed}"


def table_variants(seeds: tuple[int, ...] = (0, 1, 2)) -> list[Variant]:
    """Every run the chapter's tables need: Table 2 (inits x strategies, no augmentation), Table 3
    (augmentation on for the attnpool rows) and Table 4 (the ``-b`` CLIP, attnpool and e2e)."""
    rows = [("random", "e2e", False, "garments-clip-s")]
    rows += [(init, s, False, "garments-clip-s") for init in ("supervised", "clip")
             for s in ("attnpool", "last2", "last4", "e2e")]
    rows += [(init, "attnpool", True, "garments-clip-s") for init in ("supervised", "clip")]
    rows += [("clip", s, False, "garments-clip-b") for s in ("attnpool", "e2e")]
    return [Variant(i, s, a, c, seed) for i, s, a, c in rows for seed in seeds]


def train_variant(variant: Variant, train: RenderCache, cfg: AttrNetTrainConfig, log_every: int = 25,
                  progress: bool = False) -> tuple[AttributeNet, AttrNetRun]:
    """Build ``variant``'s network and fine-tune it on ``train`` with ``cfg`` (augmentation as the
    variant says); the grid and the zoo recipe both train through here."""
    model = build_attrnet(variant.init, variant.clip_name, variant.seed)
    run = train_attrnet(model, variant.strategy, train, replace(cfg, augment=variant.augment), seed=variant.seed,
                        log_every=log_every, progress=progress)
    return model, run


def run_variant(variant: Variant, train: RenderCache, test: RenderCache, cfg: AttrNetTrainConfig,
                validation: RenderCache | None = None, progress: bool = False) -> tuple[AttributeNet, dict]:
    """Build, fine-tune and evaluate one variant; returns (model, a JSON-ready result). The mean
    accuracy on ``validation`` (if given) is what chooses the shipped variant; the test set
    only reports."""
    model, run = train_variant(variant, train, cfg, progress=progress)
    result = evaluate_attrnet(model, test)
    if validation is not None:
        result["validation_mean_accuracy"] = evaluate_attrnet(model, validation)["mean_accuracy"]
    result.update(variant=asdict(variant), train_seconds=round(run.seconds, 1), losses=[round(v, 4) for v in run.losses],
                  trainable_parameters=run.trainable_parameters, precision=run.precision)
    return model, result


def summarise_runs(runs: dict[str, dict], variants: list[Variant], field: str = "accuracy"
                   ) -> tuple["pd.DataFrame", "pd.DataFrame", "pd.Series"]:
    """Mean and standard deviation over seeds of ``field`` (``accuracy``, ``attention_in_region``
    or ``uniform_in_region``) per attribute, one row per variant without its seed (labelled
    ``init / strategy [+aug] [clip]``), with an ``average`` column; and the number of seeds per
    row. ``runs`` is :func:`run_tables`'s ``"runs"``; variants missing from it are skipped."""
    import pandas as pd

    groups: dict[str, list[dict]] = {}
    for v in variants:
        if v.key not in runs:
            continue
        label = f"{v.init} / {v.strategy}" + (" +aug" if v.augment else "") + f" [{v.clip_name.rsplit('-', 1)[-1]}]"
        values = dict(runs[v.key][field])
        values["average"] = sum(values.values()) / len(values)
        groups.setdefault(label, []).append(values)
    if not groups:
        raise ValueError("none of the variants has a run yet")
    frames = {label: pd.DataFrame(rows) for label, rows in groups.items()}
    mean = pd.DataFrame({label: f.mean() for label, f in frames.items()}).T
    std = pd.DataFrame({label: f.std(ddof=1) for label, f in frames.items()}).T  # NaN for a single seed
    return mean, std, pd.Series({label: len(f) for label, f in frames.items()}, name="seeds")


def best_variant(runs: dict[str, dict], variants: list[Variant]) -> tuple[Variant, float]:
    """The table row with the highest validation accuracy averaged over its seeds (the test set
    plays no part), as that row's seed-0 variant, and that average. Rows with a missing seed do
    not compete."""
    rows: dict[Variant, list[float]] = {}
    expected: dict[Variant, int] = {}
    for v in variants:
        row = replace(v, seed=0)
        expected[row] = expected.get(row, 0) + 1
        if v.key in runs:
            rows.setdefault(row, []).append(runs[v.key]["validation_mean_accuracy"])
    complete = {row: sum(vals) / len(vals) for row, vals in rows.items() if len(vals) == expected[row]}
    if not complete:
        raise ValueError("no table row has all of its seeds yet")
    best = max(complete, key=complete.get)
    return best, complete[best]


TRAIN_SEED, N_TRAIN = 30, 2000
"""The low-data labelled set: 2,000 in-domain (photo, no extras) garments, like a few thousand
Shopping100k images per attribute value."""
VAL_SEED = 31
"""Validation garments of the same domain (as many as the test set): they choose the variant that
ships as garments-attrnet."""
TEST_SEED, N_TEST = 32, 1000
"""Held-out garments of the same domain; never used for any choice."""


def run_tables(out: str | Path, variants: list[Variant] | None = None, cfg: AttrNetTrainConfig | None = None,
               n_train: int = N_TRAIN, n_test: int = N_TEST, progress: bool = True) -> dict:
    """Run every variant not yet in the JSON file ``out`` (so an interrupted grid resumes where it
    stopped), writing after each run. Returns the file's content."""
    from tqdm.auto import tqdm

    from ..data.garments import render_cache

    out = Path(out)
    done = json.loads(out.read_text()) if out.is_file() else {"config": None, "runs": {}}
    cfg = cfg or AttrNetTrainConfig(bf16=True)
    if done["config"] not in (None, asdict(cfg)):
        raise ValueError(f"{out} was made with another config ({done['config']}); use a new file")
    done["config"] = asdict(cfg)
    done["data"] = {"train": f"Garments seed {TRAIN_SEED}, {n_train} in-domain renders",
                    "validation": f"Garments seed {VAL_SEED}, {n_test} in-domain renders",
                    "test": f"Garments seed {TEST_SEED}, {n_test} in-domain renders"}
    train = render_cache(TRAIN_SEED, n_train, domain="in", progress=False)
    validation = render_cache(VAL_SEED, n_test, domain="in", progress=False)
    test = render_cache(TEST_SEED, n_test, domain="in", progress=False)
    todo = [v for v in (variants or table_variants()) if v.key not in done["runs"]]
    for variant in tqdm(todo, desc="attrnet variants", disable=not progress):
        _, result = run_variant(variant, train, test, cfg, validation)
        done["runs"][variant.key] = result
        write_json_atomic(done, out)
    return done


def train_recipe(variant: Variant, cfg: AttrNetTrainConfig, n_train: int, workdir: str | Path,
                 progress: bool = True) -> tuple[int, float]:
    """Train ``variant`` on the first ``n_train`` renders of the labelled set (seed
    :data:`TRAIN_SEED`, in-domain) and leave what the zoo's export reads in ``workdir``:
    ``checkpoint.pt`` (model, step, minutes, config) and ``loss.csv``. Returns (steps, minutes).
    Short enough (minutes) to need no resume."""
    from ..data.garments import render_cache
    from ..training import CSVLog, atomic_save

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


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run chapter 05's variant grid (resumable).")
    parser.add_argument("out", nargs="?", default="notebooks/results/05_attrnet_tables.json")
    parser.add_argument("--clip", action="append", choices=("garments-clip-s", "garments-clip-b"),
                        help="only the variants built on this CLIP (repeatable; default: all)")
    args = parser.parse_args()
    chosen = [v for v in table_variants() if args.clip is None or v.clip_name in args.clip]
    run_tables(args.out, chosen)
