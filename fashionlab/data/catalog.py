"""A product-catalog view of Garments, in the format of Kaggle's "Fashion Product Images (small)".

Chapter: "Garments" (``notebooks/01_garments.py``); used by the Stable Diffusion + LoRA chapter
(paper 002), whose captions come from these catalog columns.

Columns (as in the Kaggle ``styles.csv``)::

    id, gender, masterCategory, subCategory, articleType, baseColour, season, year, usage,
    productDisplayName

The metadata is drawn from each garment's spec with plausible correlations (season <-> sleeve,
fabric and colour; usage <-> category; year <-> pattern trends), and about 3 % of rows miss a
value (baseColour, season, year or usage), as rows of the real file do. :func:`write_kaggle_folder` writes ``styles.csv`` + ``images/{id}.jpg``;
:class:`KaggleFolderDataset` reads that layout back (real or ours), and :func:`load_hub_catalog`
reads the hub copy under the ``full`` profile.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .. import config
from .garments import GarmentSpec, render, spec_for
from .transforms import to_tensor

COLUMNS: tuple[str, ...] = ("id", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
                            "season", "year", "usage", "productDisplayName")
NULLABLE: tuple[str, ...] = ("baseColour", "season", "year", "usage")  # where the real file has gaps
MISSING_RATE = 0.03  # share of rows with one missing value
HUB_DATASET = "ashraq/fashion-product-images-small"

ARTICLE_TYPE = {"t-shirt": "Tshirts", "shirt": "Shirts", "sweater": "Sweaters", "jacket": "Jackets",
                "dress": "Dresses", "skirt": "Skirts", "trousers": "Trousers", "shorts": "Shorts"}
SUB_CATEGORY = {"t-shirt": "Topwear", "shirt": "Topwear", "sweater": "Topwear", "jacket": "Topwear",
                "dress": "Dress", "skirt": "Bottomwear", "trousers": "Bottomwear", "shorts": "Bottomwear"}
PLURALE_TANTUM = ("Trousers", "Shorts")  # no singular form


def singular(article_type: str) -> str:
    """The singular of a catalogue ``articleType``: "Dresses" -> "Dress", "Tshirts" -> "Tshirt";
    "Trousers" and "Shorts" stay as they are."""
    if article_type in PLURALE_TANTUM:
        return article_type
    if article_type.endswith("sses"):
        return article_type[:-2]
    if article_type.endswith("s"):
        return article_type[:-1]
    return article_type


SEASONS = ("Summer", "Spring", "Fall", "Winter")
USAGES = ("Casual", "Formal", "Sports", "Party")
YEARS = tuple(range(2010, 2019))
BRANDS = ("Loomwise", "Northstitch", "Velvet Row", "Basics & Co", "Kite", "Urban Thread")

# P(usage | category), rows in USAGES order.
_USAGE_PRIOR = {
    "t-shirt": (0.6, 0.02, 0.35, 0.03), "shirt": (0.4, 0.55, 0.0, 0.05), "sweater": (0.75, 0.15, 0.05, 0.05),
    "jacket": (0.55, 0.35, 0.1, 0.0), "dress": (0.45, 0.1, 0.0, 0.45), "skirt": (0.6, 0.2, 0.05, 0.15),
    "trousers": (0.5, 0.4, 0.1, 0.0), "shorts": (0.6, 0.0, 0.4, 0.0),
}
# Season log-odds contributions, columns in SEASONS order.
_SEASON_SLEEVE = {"sleeveless": (1.2, 0.4, -0.6, -1.5), "short": (0.9, 0.3, -0.3, -1.0),
                  "elbow": (0.0, 0.4, 0.4, -0.3), "long": (-1.0, 0.0, 0.6, 1.0)}
_SEASON_FABRIC = {"cotton": (0.5, 0.3, 0.0, -0.5), "denim": (0.0, 0.2, 0.4, 0.0),
                  "knit": (-1.2, -0.2, 0.6, 1.4), "leather": (-1.0, 0.0, 0.8, 0.9)}
_SEASON_COLOUR = {"yellow": (0.6, 0.3, -0.3, -0.5), "orange": (0.2, -0.2, 0.8, -0.2), "pink": (0.3, 0.6, -0.3, -0.3),
                  "purple": (-0.2, 0.0, 0.3, 0.4), "blue": (0.0, 0.0, 0.0, 0.3), "red": (-0.2, 0.0, 0.2, 0.5)}
# Year trends: pattern popularity rises (+) or falls (-) over the years.
_PATTERN_TREND = {"plain": 0.0, "striped": -0.15, "checked": 0.0, "polka-dot": -0.25, "gradient": 0.35}


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def catalog_row(spec: GarmentSpec, item_id: int, rng: np.random.Generator) -> dict:
    """One ``styles.csv`` row for ``spec`` (``rng`` drives the metadata draws)."""
    cat = spec.category
    if cat in ("dress", "skirt"):
        gender = ("Women", "Girls")[int(rng.random() < 0.12)]
    else:
        gender = ("Men", "Women", "Unisex", "Boys", "Girls")[int(rng.choice(5, p=[0.45, 0.35, 0.08, 0.06, 0.06]))]
    logits = np.zeros(4)
    if spec.sleeve is not None:
        logits += _SEASON_SLEEVE[spec.sleeve]
    if cat == "shorts":
        logits += (1.2, 0.3, -0.6, -1.5)
    logits += _SEASON_FABRIC[spec.fabric]
    logits += _SEASON_COLOUR.get(spec.colour, (0.0, 0.0, 0.0, 0.0))
    season = SEASONS[int(rng.choice(4, p=_softmax(logits)))]
    usage = USAGES[int(rng.choice(4, p=np.asarray(_USAGE_PRIOR[cat]) / sum(_USAGE_PRIOR[cat])))]
    trend = _PATTERN_TREND[spec.pattern] * (np.arange(len(YEARS)) - len(YEARS) / 2)
    year = YEARS[int(rng.choice(len(YEARS), p=_softmax(trend)))]
    brand = BRANDS[int(rng.integers(len(BRANDS)))]
    words = [brand, gender, spec.colour.capitalize()]
    if spec.pattern != "plain":
        words.append(spec.pattern.capitalize())
    if spec.sleeve is not None and spec.sleeve != "long":
        words.append({"sleeveless": "Sleeveless", "short": "Short-Sleeve", "elbow": "Elbow-Sleeve"}[spec.sleeve])
    if spec.fabric != "cotton":
        words.append(spec.fabric.capitalize())
    words.append(singular(ARTICLE_TYPE[cat]))
    row = {
        "id": item_id, "gender": gender, "masterCategory": "Apparel", "subCategory": SUB_CATEGORY[cat],
        "articleType": ARTICLE_TYPE[cat], "baseColour": spec.colour.capitalize(), "season": season,
        "year": year, "usage": usage, "productDisplayName": " ".join(words),
    }
    if rng.random() < MISSING_RATE:  # about 3 % of rows miss one value, as in the real file
        row[NULLABLE[int(rng.integers(len(NULLABLE)))]] = None
    return row


def make_catalog(n: int, seed: int = 0, domain: str = "in", first_id: int = 10000) -> pd.DataFrame:
    """A catalog DataFrame of ``n`` Garments items; item ``i`` has spec ``spec_for(seed, i, domain)``.

    Its ``id`` column starts at ``first_id``; ``year`` is a nullable integer column.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 7])  # metadata stream, independent of the spec stream
        rows.append(catalog_row(spec_for(seed, i, domain), first_id + i, rng))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["year"] = frame["year"].astype("Int64")
    return frame


def write_kaggle_folder(folder: str | Path, n: int, seed: int = 0, domain: str = "in", size: int = 64,
                        first_id: int = 10000) -> pd.DataFrame:
    """Write ``folder/styles.csv`` and ``folder/images/{id}.jpg`` in the Kaggle layout; return the table."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    frame = make_catalog(n, seed, domain, first_id)
    for i, item_id in enumerate(frame["id"]):
        image = render(spec_for(seed, i, domain), size).image
        Image.fromarray(image).save(folder / "images" / f"{item_id}.jpg", quality=95)
    frame.to_csv(folder / "styles.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    return frame


def read_styles(path: str | Path) -> pd.DataFrame:
    """Read a Kaggle ``styles.csv``. The real file has a few malformed lines (unquoted commas in
    ``productDisplayName``); like the usual loaders we skip them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"styles.csv not found at {path}")
    frame = pd.read_csv(path, on_bad_lines="skip")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks the Kaggle columns {missing}; got {list(frame.columns)}")
    frame["year"] = frame["year"].astype("Int64")
    return frame


CAPTION_FIELDS: tuple[str, ...] = ("year", "usage", "season", "baseColour", "gender")
"""The columns paper 002's captions name before the article type, in its order."""
_CAPTION_ARTICLE = {"Tshirts": "T-Shirt"}
"""Where the paper's captions spell a singular article type otherwise than :func:`singular`."""


def _present(value: object) -> bool:
    return not (value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))
                or (isinstance(value, str) and value.strip() in ("", "None", "NA")))


def caption_from_row(row: dict | pd.Series) -> str:
    """Paper 002's caption of a catalog row: "an image of a {year} {usage} {season} {baseColour}
    {gender}'s {articleType}", e.g. "an image of a 2011 Casual Fall White Men's Sweater".

    Missing fields are skipped (the paper's "Women's None" came from writing a missing articleType
    as "None"); the article type is singular ("Tshirts" -> "T-Shirt", "Dresses" -> "Dress"). A row
    without an article type raises ``ValueError``: a caption without the garment would teach
    nothing."""
    article = row["articleType"] if "articleType" in row else None
    if not _present(article):
        raise ValueError(f"row {row.get('id', '?')} has no articleType, so it has no caption")
    words = [str(row[c]) for c in CAPTION_FIELDS[:-1] if c in row and _present(row[c])]
    gender = row["gender"] if "gender" in row else None
    if _present(gender):
        words.append(f"{gender}'s")
    words.append(_CAPTION_ARTICLE.get(str(article), singular(str(article))))
    return "an image of a " + " ".join(words)


@dataclass(frozen=True)
class CatalogItem:
    image: torch.Tensor  # (3, size, size) in [-1, 1]
    row: dict
    caption: str


class KaggleFolderDataset(torch.utils.data.Dataset):
    """Images and rows of a Kaggle-layout folder; images are padded to square and resized to ``size``.

    Rows whose image file is missing are dropped (the real download lacks a few).
    """

    def __init__(self, folder: str | Path, size: int = 64) -> None:
        self.folder = Path(folder)
        self.size = size
        frame = read_styles(self.folder / "styles.csv")
        exists = [(self.folder / "images" / f"{int(i)}.jpg").is_file() for i in frame["id"]]
        self.frame = frame[np.asarray(exists, bool)].reset_index(drop=True)
        if len(self.frame) == 0:
            raise ValueError(f"no images found under {self.folder / 'images'} for the ids in styles.csv")

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index: int) -> CatalogItem:
        row = self.frame.iloc[index].to_dict()
        image = Image.open(self.folder / "images" / f"{int(row['id'])}.jpg").convert("RGB")
        return CatalogItem(to_tensor(np.asarray(square(image, self.size))), row, caption_from_row(row))


def square(image: Image.Image, size: int) -> Image.Image:
    """Pad ``image`` to a square with its corner colour, then resize to ``size``."""
    w, h = image.size
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), image.getpixel((0, 0)))
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas.resize((size, size), Image.Resampling.BICUBIC)


HUB_SPLITS: tuple[str, ...] = ("train",)
"""The splits of :data:`HUB_DATASET` (it has one)."""


def _hub_pattern(split: str) -> str:
    """The hub repository's parquet files of ``split``."""
    return f"data/{split}-*.parquet"


def _hub_parquet_files(folder: Path, split: str) -> list[Path]:
    return sorted(folder.glob(_hub_pattern(split)))


def _cached_hub_snapshot(split: str) -> Path | None:
    """The local Hugging Face cache's snapshot of :data:`HUB_DATASET` if it holds ``split``'s files."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        local = Path(snapshot_download(HUB_DATASET, repo_type="dataset", local_files_only=True,
                                       allow_patterns=[_hub_pattern(split)]))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None
    return local if _hub_parquet_files(local, split) else None


def load_hub_catalog(split: str = "train", source: str | Path | None = None, limit: int | None = None) -> pd.DataFrame:
    """The hub copy (:data:`HUB_DATASET`, parquet) as a DataFrame with the :data:`COLUMNS` (``year``
    a nullable integer) and an ``image`` column of PIL images.

    ``full`` profile only. ``source`` is a local folder in the hub layout (``data/train-*.parquet``),
    for example a pre-downloaded copy or the twin :func:`write_hub_layout` writes; otherwise the files
    come from the local Hugging Face cache, else the hub (offline and uncached, this fails at once
    with an actionable message). ``limit`` keeps the first rows only (decoding every image of the
    44k-row catalogue takes a while).
    """
    if config.get_profile() != "full":
        raise RuntimeError("load_hub_catalog is for the 'full' profile; under 'tiny' use make_catalog() "
                           "or write_kaggle_folder() / KaggleFolderDataset")
    if split not in HUB_SPLITS:
        raise ValueError(f"split must be one of {HUB_SPLITS}, got {split!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    if source is not None:
        local = Path(source)
        if not local.is_dir():
            raise FileNotFoundError(f"source folder {local} does not exist")
    else:
        local = _cached_hub_snapshot(split)
        if local is None:
            config.require_hub(f"The dataset {HUB_DATASET}")
            from huggingface_hub import snapshot_download  # only reached online

            local = Path(snapshot_download(HUB_DATASET, repo_type="dataset",
                                           allow_patterns=[_hub_pattern(split)]))
    files = _hub_parquet_files(local, split)
    if not files:
        raise FileNotFoundError(f"no parquet files {_hub_pattern(split)} under {local}")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    missing = [c for c in (*COLUMNS, "image") if c not in frame.columns]
    if missing:
        raise ValueError(f"{files[0]} lacks the catalogue columns {missing}; got {list(frame.columns)}")
    if limit is not None:
        frame = frame.iloc[:limit].reset_index(drop=True)
    frame["year"] = frame["year"].astype("Int64")  # float with NaN in the parquet
    frame["image"] = [Image.open(io.BytesIO(cell["bytes"])).convert("RGB") for cell in frame["image"]]
    return frame


CATALOG_ATTRIBUTES: tuple[str, ...] = ("articleType", "baseColour", "gender", "season", "usage")
"""The catalogue columns the ``full`` profile's AttributeNet predicts (chapter 05 under ``full``)."""


@dataclass
class CatalogLabels:
    """Catalogue images with integer labels, shaped like a :class:`~fashionlab.data.garments.RenderCache`
    for :func:`~fashionlab.train.attrnet.train_attrnet` and
    :func:`~fashionlab.eval.classifiers.evaluate_attrnet`."""

    images: torch.Tensor
    """(N, size, size, 3) uint8 RGB, padded to square with the corner colour."""
    attributes: torch.Tensor
    """(N, len(names)) int64 class indices into ``classes[name]``; -1 where the value is missing or rare."""
    names: tuple[str, ...]
    classes: dict[str, tuple[str, ...]]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> dict[str, int]:
        return {a: len(self.classes[a]) for a in self.names}


def catalog_labels(frame: pd.DataFrame, size: int = 224, attributes: tuple[str, ...] = CATALOG_ATTRIBUTES,
                   classes: dict[str, tuple[str, ...]] | None = None, min_count: int = 20) -> CatalogLabels:
    """Square ``size``-pixel images and class labels of a catalogue frame with an ``image`` column
    (:func:`load_hub_catalog`). ``classes`` None: each attribute's classes are its values seen in at
    least ``min_count`` rows (the real ``articleType`` has a long tail of one-off types; those rows
    are masked, -1, for that attribute as missing values are). Pass the training split's ``classes``
    to label a held-out split the same way."""
    missing = [a for a in (*attributes, "image") if a not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the columns {missing}")
    if len(frame) == 0:
        raise ValueError("frame has no rows")
    if classes is None:
        classes = {}
        for a in attributes:
            counts = frame[a][[_present(v) for v in frame[a]]].astype(str).value_counts()
            classes[a] = tuple(sorted(counts[counts >= min_count].index))
    for a in attributes:
        if len(classes.get(a, ())) < 2:
            raise ValueError(f"attribute {a!r} has {len(classes.get(a, ()))} classes with >= {min_count} rows; "
                             "it needs at least 2 (more rows, or a lower min_count)")
    index = {a: {c: k for k, c in enumerate(classes[a])} for a in attributes}
    labels = torch.tensor([[index[a].get(str(v), -1) if _present(v) else -1 for a, v in zip(attributes, row)]
                           for row in frame[list(attributes)].itertuples(index=False)], dtype=torch.int64)
    return CatalogLabels(square_images(frame, size), labels, tuple(attributes), {a: tuple(classes[a]) for a in attributes})


def square_images(frame: pd.DataFrame, size: int) -> torch.Tensor:
    """The ``image`` column of a catalogue frame as (N, size, size, 3) uint8, each padded to a
    square with its corner colour (:func:`square`)."""
    return torch.from_numpy(np.stack([np.asarray(square(img.convert("RGB"), size)) for img in frame["image"]]))


def write_hub_layout(folder: str | Path, n: int, seed: int = 0, domain: str = "in", size: int = 64,
                     first_id: int = 10000) -> pd.DataFrame:
    """Write ``n`` Garments items as ``folder/data/train-00000-of-00001.parquet`` in the layout and
    column types of :data:`HUB_DATASET` (``year`` as float with NaN, ``image`` as a struct of JPEG
    ``bytes`` and ``path``): the offline twin the ``full`` path is tested with. Returns the table."""
    folder = Path(folder)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    frame = make_catalog(n, seed, domain, first_id)
    images = []
    for i, item_id in enumerate(frame["id"]):
        buffer = io.BytesIO()
        Image.fromarray(render(spec_for(seed, i, domain), size).image).save(buffer, format="JPEG", quality=95)
        images.append({"bytes": buffer.getvalue(), "path": f"{item_id}.jpg"})
    table = frame.astype({"year": "float64"})
    table["image"] = images
    table.to_parquet(folder / "data" / "train-00000-of-00001.parquet", index=False)
    return frame
