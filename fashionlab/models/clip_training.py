"""Contrastive training and zero-shot evaluation of the tiny garment CLIPs.

Chapter: "CLIP for garments"; zoo recipes ``garments-clip-s`` and ``garments-clip-b``.

The CLIP objective (Radford et al., 2021): for a batch of N image-caption pairs with unit
embeddings I_i, T_j and a learned temperature, the symmetric cross-entropy of the N x N logits
``exp(logit_scale) * I @ T.T`` against the diagonal (``open_clip.ClipLoss``).

Our CLIP must know *more* than the diffusion model: it sees every render style and every detail
extra (the ``all`` domain) and captions with every template and with random attribute subsets,
so that "a striped dress" matches a long caption's image too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.garments import (ATTRIBUTES, CAPTION_TEMPLATES, COLLARED, SCHEMA, SLEEVED, STYLES, GarmentSpec,
                             RenderCache, caption, render_cache)
from ..training import fit, load_checkpoint, make_accelerator, warmup_cosine
from .clip import CLIPBundle, create_clip, encode_text
from .supervised_training import to_model_input


@dataclass(frozen=True)
class CLIPTrainConfig:
    """Hyperparameters of :func:`train_clip`."""

    batch_size: int = 128
    """Pairs per step; the contrastive task has batch_size - 1 negatives per positive."""
    learning_rate: float = 5e-4
    """Peak AdamW learning rate (CLIP's ViT-B used 5e-4)."""
    weight_decay: float = 0.2
    """AdamW weight decay (CLIP: 0.2)."""
    warmup_steps: int = 200
    total_steps: int = 4000
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    bf16: bool = True
    checkpoint_minutes: float = 10.0
    log_every: int = 25
    seed: int = 0
    data_seed: int = 10
    """Garments seed of the training images (evaluation uses other seeds)."""
    cache_size: int = 60000
    """Pre-rendered training images (all styles and extras); captions are drawn fresh every step."""
    full_caption_prob: float = 0.5
    """Share of captions naming every attribute; the rest name a random subset of 1-3 (plus the category)."""


def random_caption(spec: GarmentSpec, rng: np.random.Generator, full_caption_prob: float = 0.5) -> str:
    """A training caption: a random template, and with probability 1 - ``full_caption_prob`` only a
    random subset of 1-3 applicable attributes (the category is always named)."""
    template = int(rng.integers(len(CAPTION_TEMPLATES)))
    if rng.random() < full_caption_prob:
        return caption(spec, template)
    named = [a for a in ATTRIBUTES if a != "category" and getattr(spec, a) is not None]
    k = int(rng.integers(1, 4))
    subset = tuple(rng.choice(named, size=min(k, len(named)), replace=False).tolist())
    return caption(spec, template, ("category",) + subset)


def _to_pixels(images_u8: torch.Tensor, bundle: CLIPBundle) -> torch.Tensor:
    """uint8 (B, H, W, 3) renders -> CLIP-normalised pixels, through the same preprocessing the losses use."""
    return bundle.pixels(to_model_input(images_u8))


def train_clip(name: str, cfg: CLIPTrainConfig, workdir: str | Path, minutes: float | None = None,
               max_steps: int | None = None, resume: bool = False, progress: bool = True,
               cache: RenderCache | None = None) -> tuple[int, float]:
    """Train tiny CLIP ``name`` contrastively; checkpoints (model, optimiser, schedule, step, RNG
    states) go to ``workdir/checkpoint.pt`` and the loss to ``workdir/loss.csv``. Returns
    (steps in all, minutes in all)."""
    import open_clip

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)  # parameter initialisation inside open_clip
    bundle = create_clip(name)
    model = bundle.model
    accelerator = make_accelerator(cfg.bf16)
    decay, no_decay = [], []
    for pname, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "logit_scale" in pname or "embedding" in pname else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate, betas=(0.9, 0.98),
                                  eps=1e-6)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup_steps, cfg.total_steps,
                                                                          cfg.min_lr_ratio))
    batch_gen = torch.Generator().manual_seed(cfg.seed + 1)
    caption_rng = np.random.default_rng([cfg.seed, 2])
    config = {**asdict(cfg), "name": name}
    step, minutes_before = 0, 0.0
    if resume:
        state = load_checkpoint(workdir / "checkpoint.pt", config, model, optimizer, schedule)
        batch_gen.set_state(state["batch_rng"])
        caption_rng.bit_generator.state = state["caption_rng"]
        step, minutes_before = state["step"], state["minutes"]
    cache = cache if cache is not None else render_cache(cfg.data_seed, cfg.cache_size, bundle.image_size,
                                                         progress=progress, on_disk=True)
    images, specs = cache.images, cache.specs
    model, optimizer = accelerator.prepare(model, optimizer)
    loss_fn = open_clip.ClipLoss()
    last_scale = [0.0]

    def compute_loss() -> torch.Tensor:
        idx = torch.randint(0, len(specs), (cfg.batch_size,), generator=batch_gen)
        pixels = _to_pixels(images[idx], bundle).to(accelerator.device)
        texts = [random_caption(specs[i], caption_rng, cfg.full_caption_prob) for i in idx.tolist()]
        tokens = bundle.tokenizer(texts).to(accelerator.device)
        with accelerator.autocast():
            image_f, text_f, scale = model(pixels, tokens)[:3]  # unit features and exp(logit_scale)
        last_scale[0] = scale.item()
        return loss_fn(image_f.float(), text_f.float(), scale.float())

    def clamp_temperature(step_done: int) -> None:
        with torch.no_grad():  # CLIP clamps the logit scale at 100
            accelerator.unwrap_model(model).logit_scale.clamp_(0, np.log(100))

    result = fit(model=model, optimizer=optimizer, schedule=schedule, accelerator=accelerator,
                 compute_loss=compute_loss, workdir=workdir, config=config, total_steps=cfg.total_steps,
                 batch_size=cfg.batch_size, grad_clip=cfg.grad_clip, log_every=cfg.log_every,
                 checkpoint_minutes=cfg.checkpoint_minutes, step=step, minutes_before=minutes_before,
                 extra_state=lambda: {"batch_rng": batch_gen.get_state(),
                                      "caption_rng": caption_rng.bit_generator.state},
                 after_step=clamp_temperature, log_columns=("logit_scale",),
                 log_values=lambda: [f"{last_scale[0]:.2f}"], minutes=minutes, max_steps=max_steps,
                 fresh_log=not resume, progress=progress, desc=name)
    return result.steps, result.minutes


# ----------------------------------------------------------------------------------------
# Zero-shot evaluation with prompt ensembles
# ----------------------------------------------------------------------------------------
def _phrase(attribute: str, value: str, category: str) -> str:
    """A caption-like phrase naming ``value`` of ``attribute`` on a garment of ``category``."""
    spec = default_spec(category).edit(**{attribute: value})
    return caption(spec, 0, (attribute,))


def class_prompts(attribute: str) -> dict[str, list[str]]:
    """Prompt ensemble per class: the class named on every category it applies to (and, for the
    render style, in each style's own words)."""
    if attribute == "style":
        words = {"photo": "a photo of", "sketch": "a sketch of", "cartoon": "a cartoon of"}
        return {s: [f"{words[s]} {caption(default_spec(c), 0, ('category',))}" for c in SCHEMA["category"]]
                for s in STYLES}
    if attribute == "category":
        return {c: [caption(default_spec(c), t, ("category",)) for t in (0, 1)]
                for c in SCHEMA["category"]}
    categories = {"sleeve": SLEEVED, "collar": COLLARED, "neckline": ("t-shirt", "dress")}.get(attribute, SCHEMA["category"])
    return {v: [_phrase(attribute, v, c) for c in categories] for v in SCHEMA[attribute]}


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


@torch.no_grad()
def image_features(bundle: CLIPBundle, images_u8: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Unit CLIP image embeddings (N, D) of uint8 renders (N, H, W, 3), in batches."""
    device = next(bundle.model.parameters()).device
    feats = [bundle.model.encode_image(_to_pixels(images_u8[i:i + batch_size], bundle).to(device))
             for i in range(0, len(images_u8), batch_size)]
    return torch.nn.functional.normalize(torch.cat(feats), dim=-1).cpu()


@torch.no_grad()
def class_embeddings(bundle: CLIPBundle, attribute: str, ensemble: bool = True) -> tuple[list[str], torch.Tensor]:
    """(classes, unit class embeddings (C, D)) for zero-shot classification of ``attribute`` (or
    ``"style"``): the normalised mean of the prompt ensemble of :func:`class_prompts`, or only its
    first prompt when ``ensemble`` is False."""
    prompts = class_prompts(attribute)
    classes = list(prompts)
    rows = [encode_text(bundle, prompts[c] if ensemble else prompts[c][:1]).mean(0) for c in classes]
    return classes, torch.nn.functional.normalize(torch.stack(rows), dim=-1).cpu()


def labels_of(specs: list[GarmentSpec], attribute: str) -> list[str | None]:
    """The value of ``attribute`` (or ``"style"``) per spec, None where it does not apply."""
    return [getattr(s, attribute) for s in specs]


def retrieval_recall(image_f: torch.Tensor, text_f: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Recall@k of paired embeddings (pair i is row i of both), image->text and text->image: the
    share of queries whose true partner is among the k most similar of the other modality."""
    if image_f.shape != text_f.shape:
        raise ValueError(f"image_f and text_f must have the same shape, got {tuple(image_f.shape)} "
                         f"and {tuple(text_f.shape)}")
    sim = image_f @ text_f.T
    target = torch.arange(len(sim))
    out = {}
    for direction, matrix in (("image_to_text", sim), ("text_to_image", sim.T)):
        ranks = (matrix > matrix[target, target][:, None]).sum(dim=1)  # how many beat the true partner
        for k in ks:
            out[f"{direction}_R@{k}"] = round(float((ranks < k).float().mean()), 4)
    return out


@torch.no_grad()
def zero_shot_table(bundle: CLIPBundle, seed: int = 100, n: int = 1000, batch_size: int = 250,
                    cache: RenderCache | None = None, ensemble: bool = True) -> dict:
    """Held-out zero-shot accuracy per attribute (and render style), overall and per style, plus
    image->text and text->image recall@1/@5 on full captions. Returns a dict of plain numbers."""
    cache = cache if cache is not None else render_cache(seed, n, bundle.image_size, progress=False)
    specs = cache.specs
    image_f = image_features(bundle, cache.images, batch_size)
    results: dict = {"accuracy": {}, "accuracy_by_style": {}}
    for attribute in ATTRIBUTES + ("style",):
        classes, class_f = class_embeddings(bundle, attribute, ensemble)
        labels = labels_of(specs, attribute)
        keep = [i for i, v in enumerate(labels) if v is not None]
        pred = (image_f[keep] @ class_f.T).argmax(dim=1)
        truth = torch.tensor([classes.index(labels[i]) for i in keep])
        correct = (pred == truth).float()
        results["accuracy"][attribute] = round(float(correct.mean()), 4)
        results["accuracy_by_style"][attribute] = {
            style: round(float(correct[[k for k, i in enumerate(keep) if specs[i].style == style]].mean()), 4)
            for style in STYLES}
    texts = [caption(s, 0) for s in specs]
    text_f = torch.cat([encode_text(bundle, texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]).cpu()
    results.update(retrieval_recall(image_f, text_f))
    results["n_heldout"] = len(specs)
    results["heldout_seed"] = seed
    return results
