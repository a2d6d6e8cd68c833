import numpy as np
import pandas as pd
import pytest

from fashionlab.data import catalog as C
from fashionlab.data import garments


def test_catalog_columns_and_missing_rate():
    frame = C.make_catalog(1500, seed=0)
    assert tuple(frame.columns) == C.COLUMNS
    assert frame["id"].is_unique
    rows_missing = frame[list(C.COLUMNS)].isna().any(axis=1).mean()
    assert 0.02 < rows_missing < 0.04, rows_missing
    assert not frame[["id", "articleType", "productDisplayName"]].isna().any().any()
    assert set(frame["masterCategory"]) == {"Apparel"}
    assert set(frame["articleType"]) == set(C.ARTICLE_TYPE.values())


def test_catalog_correlations_point_the_right_way():
    frame = C.make_catalog(3000, seed=1)
    specs = [garments.spec_for(1, i) for i in range(len(frame))]
    frame["fabric"] = [s.fabric for s in specs]
    frame["sleeve"] = [s.sleeve for s in specs]
    winter_knit = (frame[frame.fabric == "knit"].season == "Winter").mean()
    winter_cotton = (frame[frame.fabric == "cotton"].season == "Winter").mean()
    assert winter_knit > winter_cotton + 0.15
    summer_sleeveless = (frame[frame.sleeve == "sleeveless"].season == "Summer").mean()
    summer_long = (frame[frame.sleeve == "long"].season == "Summer").mean()
    assert summer_sleeveless > summer_long + 0.2
    formal_shirt = (frame[frame.articleType == "Shirts"].usage == "Formal").mean()
    formal_tee = (frame[frame.articleType == "Tshirts"].usage == "Formal").mean()
    assert formal_shirt > formal_tee + 0.3
    assert set(frame[frame.articleType.isin(["Dresses", "Skirts"])].gender.dropna()) <= {"Women", "Girls"}


def test_kaggle_folder_round_trip(tmp_path):
    written = C.write_kaggle_folder(tmp_path / "fashion", n=12, seed=3, size=64)
    assert (tmp_path / "fashion" / "styles.csv").is_file()
    assert len(list((tmp_path / "fashion" / "images").glob("*.jpg"))) == 12
    read = C.read_styles(tmp_path / "fashion" / "styles.csv")
    pd.testing.assert_frame_equal(read, written, check_dtype=False)
    ds = C.KaggleFolderDataset(tmp_path / "fashion", size=32)
    item = ds[0]
    assert item.image.shape == (3, 32, 32) and -1 <= item.image.min() and item.image.max() <= 1
    assert item.row["id"] == written["id"][0]
    assert item.caption == C.caption_from_row(written.iloc[0]) and item.caption.startswith("an image of a ")


def test_reader_skips_malformed_lines_and_missing_images(tmp_path):
    C.write_kaggle_folder(tmp_path, n=5, seed=0, size=32)
    text = (tmp_path / "styles.csv").read_text().splitlines()
    text.insert(2, "99999,Men,Apparel,Topwear,Tshirts,Red,Summer,2012,Casual,Brand, Red, Tee, With, Commas")
    (tmp_path / "styles.csv").write_text("\n".join(text) + "\n")
    frame = C.read_styles(tmp_path / "styles.csv")
    assert 99999 not in set(frame["id"])
    (tmp_path / "images" / f"{frame['id'][0]}.jpg").unlink()
    assert len(C.KaggleFolderDataset(tmp_path)) == 4


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="styles.csv not found"):
        C.read_styles(tmp_path / "styles.csv")
    (tmp_path / "styles.csv").write_text("id,name\n1,x\n")
    with pytest.raises(ValueError, match="lacks the Kaggle columns"):
        C.read_styles(tmp_path / "styles.csv")
    with pytest.raises(ValueError, match="n must be a positive int"):
        C.make_catalog(0)


PAPER_FID_ROWS = [  # paper 002, Fig. 5: the three test rows and the prompts it printed for them
    ({"year": 2011, "usage": "Casual", "season": "Fall", "baseColour": "White", "gender": "Men",
      "articleType": "Sweaters"}, "an image of a 2011 Casual Fall White Men's Sweater"),
    ({"year": 2012, "usage": "Casual", "season": "Summer", "baseColour": "Grey", "gender": "Women",
      "articleType": "Dresses"}, "an image of a 2012 Casual Summer Grey Women's Dress"),
    ({"year": 2011, "usage": "Sports", "season": "Fall", "baseColour": "White", "gender": "Men",
      "articleType": "Tshirts"}, "an image of a 2011 Sports Fall White Men's T-Shirt"),
]


@pytest.mark.parametrize("row, prompt", PAPER_FID_ROWS)
def test_caption_from_row_rebuilds_the_papers_fid_prompts(row, prompt):
    assert C.caption_from_row(row) == prompt
    assert C.caption_from_row(pd.Series(row)) == prompt  # rows of a DataFrame too


def test_caption_from_row_skips_missing_fields_and_refuses_a_missing_article():
    row = {"gender": "Women", "baseColour": np.nan, "articleType": "Dresses", "season": "Summer",
           "usage": None, "year": pd.NA}
    assert C.caption_from_row(row) == "an image of a Summer Women's Dress"
    assert C.caption_from_row({**row, "gender": "None"}) == "an image of a Summer Dress"
    with pytest.raises(ValueError, match="no articleType"):
        C.caption_from_row({**row, "articleType": "None"})  # the paper's "Women's None"


def test_hub_catalog_refuses_under_tiny(tiny_profile):
    with pytest.raises(RuntimeError, match="'full' profile"):
        C.load_hub_catalog()


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of the test's own (huggingface_hub reads the constant per call)."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.network_probe
def test_hub_catalog_fails_fast_offline(full_profile, hf_cache):
    with pytest.raises(RuntimeError, match="cannot be reached"):
        C.load_hub_catalog()


def _assert_catalogue(loaded: pd.DataFrame, written: pd.DataFrame, n: int) -> None:
    assert len(loaded) == n
    assert list(loaded.columns) == [*C.COLUMNS, "image"]
    assert str(loaded["year"].dtype) == "Int64"
    pd.testing.assert_frame_equal(loaded[list(C.COLUMNS)], written.iloc[:n][list(C.COLUMNS)].reset_index(drop=True),
                                  check_dtype=False)
    assert all(img.mode == "RGB" and img.size == (32, 32) for img in loaded["image"])


def test_hub_catalog_reads_a_parquet_twin_from_a_folder(tmp_path, full_profile):
    written = C.write_hub_layout(tmp_path / "twin", 60, seed=1, size=32)
    assert written["year"].isna().any()  # seed 1 has a missing year: the float NaN must come back as <NA>
    table = pd.read_parquet(tmp_path / "twin" / "data" / "train-00000-of-00001.parquet")
    assert str(table["year"].dtype) == "float64" and set(table["image"][0]) == {"bytes", "path"}  # the hub's types
    _assert_catalogue(C.load_hub_catalog(source=tmp_path / "twin"), written, 60)
    _assert_catalogue(C.load_hub_catalog(source=tmp_path / "twin", limit=7), written, 7)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        C.load_hub_catalog(source=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no parquet files"):
        C.load_hub_catalog(source=tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        C.load_hub_catalog(split="test", source=tmp_path / "twin")
    with pytest.raises(ValueError, match="limit must be a positive int"):
        C.load_hub_catalog(source=tmp_path / "twin", limit=0)


def test_hub_catalog_loads_offline_from_the_hugging_face_cache(tmp_path, full_profile, hf_cache, monkeypatch):
    """A copy already in the cache loads with the hub unreachable (the probe is made to fail)."""
    from fashionlab import config

    revision = "0" * 40
    repo = hf_cache / ("datasets--" + C.HUB_DATASET.replace("/", "--"))
    written = C.write_hub_layout(repo / "snapshots" / revision, 12, seed=4, size=32)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(config, "hub_reachable", lambda url=None: False)
    _assert_catalogue(C.load_hub_catalog(), written, 12)


def test_article_types_are_singularised_in_display_names():
    assert C.singular("Dresses") == "Dress"
    assert C.singular("Tshirts") == "Tshirt"
    assert C.singular("Trousers") == "Trousers"
    frame = C.make_catalog(300, seed=1)
    dresses = frame[frame.articleType == "Dresses"].productDisplayName
    assert len(dresses) > 0 and dresses.str.endswith(" Dress").all(), dresses.head().tolist()
    assert not frame.productDisplayName.str.contains("Dresse$").any()
