"""Chapter 05 under the ``full`` profile: the shipped AttributeNet recipe on real catalogue photos.

    python -m fashionlab.experiments.ch05_attrnet_full [--out FILE] [--source DIR] [--pretrained FILE]

Chapter: "Taming a ViT for multi-attribute guidance" (``notebooks/05_attribute_classifier.py``).
The tiny chapter ships ``garments-attrnet``: the CLIP image tower fine-tuned end to end (``clip`` /
``e2e``, no augmentation, :class:`~fashionlab.train.attrnet.AttrNetTrainConfig`'s 600 steps of 64) on
2,000 labelled images, scored on 1,000 held-out ones. Here the same recipe runs on the ``full``
CLIP (open_clip ``ViT-B-16-quickgelu``, OpenAI's weights) and on the real catalogue
``ashraq/fashion-product-images-small``, predicting its five labelled columns
(:data:`~fashionlab.data.catalog.CATALOG_ATTRIBUTES`): a short GPU run (minutes on Colab's T4).

Beside each accuracy it reports the majority-class rate of the held-out split, the score a
classifier that ignores the image gets. Our CI runs this only on random-weight twins
(:mod:`fashionlab.zoo.twins`), so no real accuracy of it is quoted anywhere in the book.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from .. import config
from ..data.catalog import CatalogLabels, catalog_labels, load_hub_catalog
from ..eval.classifiers import evaluate_attrnet
from ..models.attrnet import AttributeNet
from ..models.clip import FULL_MODELS
from ..train.attrnet import N_TEST, N_TRAIN, AttrNetTrainConfig, train_attrnet

STRATEGY = "e2e"
"""The shipped ``garments-attrnet`` variant's strategy (``clip`` init, no augmentation)."""
RESULTS_FILE = "05_attrnet_full.json"


def majority_rate(data: CatalogLabels) -> dict[str, float]:
    """Per attribute, the share of labelled rows that carry its most common class."""
    out = {}
    for k, a in enumerate(data.names):
        labels = data.attributes[:, k]
        labels = labels[labels >= 0]
        out[a] = round(float(torch.bincount(labels).max()) / max(len(labels), 1), 4)
    return out


def build_catalog_attrnet(num_classes: dict[str, int], clip_name: str = "garments-clip-s",
                          pretrained: str | None = None, heads: int = 4, seed: int = 0,
                          device: str | torch.device | None = None) -> AttributeNet:
    """An AttributeNet on the ``full`` image tower of zoo CLIP ``clip_name`` (``pretrained``: a local
    weights file, else the hub), with one head per catalogue column of ``num_classes``."""
    from ..zoo.loaders import load_clip

    visual = load_clip(clip_name, "full", device, pretrained=pretrained).model.visual
    with config.seeded(seed):
        return AttributeNet(visual.train(), heads=heads, attributes=tuple(num_classes), backbone_init="clip",
                            num_classes=dict(num_classes))


def full_image_size(clip_name: str = "garments-clip-s") -> int:
    """The input size of zoo CLIP ``clip_name``'s ``full`` image tower (224 for both)."""
    import open_clip

    size = open_clip.get_model_config(FULL_MODELS[clip_name][0])["vision_cfg"]["image_size"]
    return int(size if isinstance(size, int) else size[0])


def split_catalogue(n_train: int = N_TRAIN, n_test: int = N_TEST, source: str | Path | None = None,
                    size: int = 224, seed: int = 0, min_count: int = 20) -> tuple[CatalogLabels, CatalogLabels]:
    """The first ``n_train + n_test`` rows of the real catalogue in an order shuffled by ``seed``,
    split into a training and a held-out set; classes (values with >= ``min_count`` training rows)
    come from the training rows only."""
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    frame = load_hub_catalog(source=source)
    if len(frame) < n_train + n_test:
        raise ValueError(f"the catalogue has {len(frame)} rows, fewer than n_train + n_test = {n_train + n_test}")
    order = torch.randperm(len(frame), generator=torch.Generator().manual_seed(seed))[:n_train + n_test].tolist()
    train_rows, test_rows = frame.iloc[order[:n_train]], frame.iloc[order[n_train:]]
    train = catalog_labels(train_rows, size, min_count=min_count)
    return train, catalog_labels(test_rows, size, classes=train.classes)


def run_full(n_train: int = N_TRAIN, n_test: int = N_TEST, cfg: AttrNetTrainConfig | None = None,
             source: str | Path | None = None, pretrained: str | None = None, seed: int = 0, min_count: int = 20,
             device: str | torch.device | None = None, progress: bool = True) -> tuple[AttributeNet, dict]:
    """Train and score the catalogue AttributeNet (module docstring); returns (model, a JSON-ready
    result). ``full`` profile only (:func:`~fashionlab.data.catalog.load_hub_catalog` checks)."""
    cfg = cfg or AttrNetTrainConfig(bf16=True)
    device = config.get_device(device)
    train, test = split_catalogue(n_train, n_test, source, full_image_size(), seed, min_count)
    model = build_catalog_attrnet(train.num_classes, pretrained=pretrained, seed=seed, device=device)
    run = train_attrnet(model, STRATEGY, train, cfg, seed=seed, progress=progress)
    result = evaluate_attrnet(model, test)
    result.update(majority=majority_rate(test), classes={a: list(c) for a, c in train.classes.items()},
                  config=asdict(cfg), strategy=STRATEGY, n_train=len(train), seed=seed, **run.record())
    return model, result


def main(argv: list[str] | None = None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=config.results_dir() / RESULTS_FILE, help="results JSON")
    parser.add_argument("--source", type=Path, default=None,
                        help="a local copy of the catalogue in the hub layout (data/train-*.parquet)")
    parser.add_argument("--pretrained", default=None, help="a local open_clip weights file (default: the hub)")
    parser.add_argument("--n-train", type=int, default=N_TRAIN)
    parser.add_argument("--n-test", type=int, default=N_TEST)
    parser.add_argument("--steps", type=int, default=AttrNetTrainConfig.steps)
    args = parser.parse_args(argv)
    config.use_profile("full")
    cfg = replace(AttrNetTrainConfig(bf16=True), steps=args.steps)
    _, result = run_full(args.n_train, args.n_test, cfg, args.source, args.pretrained)
    config.write_json_atomic(result, args.out)
    print(f"mean held-out accuracy {result['mean_accuracy']:.3f} "
          f"(majority class {sum(result['majority'].values()) / len(result['majority']):.3f}); wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
