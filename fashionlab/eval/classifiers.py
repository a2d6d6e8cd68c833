"""Held-out scores of the book's classifiers: the oracle and the category ViT (accuracy and
ECE per head), the part parser (IoU per part), and AttributeNet (accuracy, and how much of each
attribute's attention falls inside that attribute's region).

Chapters: "How we measure an edit" (04) and "Taming a ViT for multi-attribute guidance" (05);
the zoo's export records these numbers for every shipped classifier.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.catalog import CatalogLabels
from ..data.garments import ATTRIBUTES, EXTRAS, PARTS, RenderCache, region_mask
from ..data.transforms import noise_and_blur, to_model_input
from ..metrics import expected_calibration_error
from ..models.attrnet import AttributeNet


@torch.no_grad()
def evaluate_oracle(model: torch.nn.Module, cache: RenderCache, batch_size: int = 250,
                    generator: torch.Generator | None = None, noise_max: float = 0.0, blur_max: float = 0.0) -> dict:
    """Held-out accuracy and ECE per attribute head of ``model`` (applicable images only) and for the
    style; ``mean_accuracy`` averages the attribute heads."""
    model.eval()
    logits: dict[str, list] = {}
    for start in range(0, len(cache), batch_size):
        images = to_model_input(cache.images[start:start + batch_size])
        if noise_max or blur_max:
            images = noise_and_blur(images, generator or torch.Generator().manual_seed(0), noise_max, blur_max)
        for name, value in model(images).items():
            logits.setdefault(name, []).append(value.float())
    out: dict = {"accuracy": {}, "ece": {}}
    for name in [n for n in ATTRIBUTES + ("style",) if n in logits]:  # the heads the model has
        probs = torch.cat(logits[name]).softmax(dim=1)
        labels = cache.styles if name == "style" else cache.attributes[:, ATTRIBUTES.index(name)]
        keep = labels >= 0
        out["accuracy"][name] = round(float((probs[keep].argmax(1) == labels[keep]).float().mean()), 4)
        out["ece"][name] = round(expected_calibration_error(probs[keep], labels[keep]), 4)
    out["mean_accuracy"] = round(float(np.mean([v for a, v in out["accuracy"].items() if a != "style"])), 4)
    return out


@torch.no_grad()
def evaluate_extras(model: torch.nn.Module, cache: RenderCache, batch_size: int = 250) -> dict:
    """Held-out accuracy of each absent/present head of the extras judge, its recall on the
    renders that carry the extra, and their mean."""
    model.eval()
    logits: dict[str, list] = {e: [] for e in EXTRAS}
    for start in range(0, len(cache), batch_size):
        for name, value in model(to_model_input(cache.images[start:start + batch_size])).items():
            logits[name].append(value.float())
    out: dict = {"accuracy": {}, "recall": {}}
    for k, extra in enumerate(EXTRAS):
        pred, truth = torch.cat(logits[extra]).argmax(1), cache.extras[:, k]
        out["accuracy"][extra] = round(float((pred == truth).float().mean()), 4)
        out["recall"][extra] = round(float((pred[truth == 1] == 1).float().mean()), 4)
    out["mean_accuracy"] = round(float(np.mean(list(out["accuracy"].values()))), 4)
    return out


@torch.no_grad()
def evaluate_parser(model: torch.nn.Module, cache: RenderCache, batch_size: int = 250) -> dict:
    """Held-out IoU per part label and their mean (mIoU)."""
    model.eval()
    inter = torch.zeros(len(PARTS))
    union = torch.zeros(len(PARTS))
    for start in range(0, len(cache), batch_size):
        pred = model(to_model_input(cache.images[start:start + batch_size])).argmax(dim=1)
        truth = cache.parts[start:start + batch_size].long()
        for k in range(len(PARTS)):
            inter[k] += ((pred == k) & (truth == k)).sum()
            union[k] += ((pred == k) | (truth == k)).sum()
    iou = inter / union.clamp(min=1)
    return {"iou": {name: round(float(v), 4) for name, v in zip(PARTS, iou)}, "miou": round(float(iou.mean()), 4)}


@torch.no_grad()
def evaluate_attrnet(model: AttributeNet, cache: RenderCache | CatalogLabels, batch_size: int = 250) -> dict:
    """Held-out accuracy per attribute (where it applies) and their mean; and, for Garments renders
    (which have part maps), per attribute the share of its attention map inside the attribute's
    ground-truth region (the part map's region of :func:`~fashionlab.data.garments.region_mask`, as
    the fraction of each patch it covers) beside the share a uniform map would put there. A
    catalogue split (:class:`~fashionlab.data.catalog.CatalogLabels`) has no regions: accuracy only."""
    names = getattr(cache, "names", ATTRIBUTES)
    regions = hasattr(cache, "parts")
    model.eval()
    preds = {a: [] for a in model.attributes}
    mass = {a: [] for a in model.attributes}
    uniform = {a: [] for a in model.attributes}
    for start in range(0, len(cache), batch_size):
        sl = slice(start, start + batch_size)
        logits, maps = model(model.preprocess(to_model_input(cache.images[sl])))
        for a in model.attributes:
            preds[a].append(logits[a].argmax(1))
            if regions:
                grid = maps[a].shape[-1]
                region = F.adaptive_avg_pool2d(region_mask(cache.parts[sl], a).float().unsqueeze(1), grid).squeeze(1)
                mass[a].append((maps[a] * region).sum(dim=(1, 2)))
                uniform[a].append(region.mean(dim=(1, 2)))
    out: dict = {"accuracy": {}}
    if regions:
        out.update(attention_in_region={}, uniform_in_region={})
    for a in model.attributes:
        truth = cache.attributes[:, names.index(a)]
        keep = truth >= 0
        out["accuracy"][a] = round(float((torch.cat(preds[a])[keep] == truth[keep]).float().mean()), 4)
        if regions:
            out["attention_in_region"][a] = round(float(torch.cat(mass[a])[keep].mean()), 4)
            out["uniform_in_region"][a] = round(float(torch.cat(uniform[a])[keep].mean()), 4)
    out["mean_accuracy"] = round(sum(out["accuracy"].values()) / len(out["accuracy"]), 4)
    out["n_heldout"] = len(cache)
    return out
