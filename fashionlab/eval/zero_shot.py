"""Zero-shot classification and retrieval with a CLIP, with prompt ensembles.

Chapter: "CLIP for garments" (``notebooks/03_clip_for_garments.py``); the zoo's CLIP export
records this table for every shipped CLIP.
"""

from __future__ import annotations

import torch

from ..data.garments import (ATTRIBUTES, COLLARED, SCHEMA, SLEEVED, STYLES, GarmentSpec, RenderCache, caption,
                             default_spec, render_cache)
from ..data.transforms import to_model_input
from ..models.clip import CLIPBundle, encode_text


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


@torch.no_grad()
def image_features(bundle: CLIPBundle, images_u8: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Unit CLIP image embeddings (N, D) of uint8 renders (N, H, W, 3), in batches."""
    device = next(bundle.model.parameters()).device
    feats = [bundle.model.encode_image(bundle.pixels(to_model_input(images_u8[i:i + batch_size])).to(device))
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
