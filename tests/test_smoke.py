"""The ``full`` profile end to end on random-weight twins in the hub layouts: the twins' files, the
Stable Diffusion 1.4 and catalogue loaders on them, chapter 05's catalogue AttributeNet, and
``python -m fashionlab.smoke --profile full --twins`` over every chapter."""

import json
import re

import pandas as pd
import pytest
import torch

from fashionlab import config, smoke
from fashionlab.data import catalog as C
from fashionlab.zoo import loaders, twins


@pytest.fixture(scope="module")
def twin_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("twins")
    return folder, twins.ensure_all(folder)


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_twins_are_saved_in_the_hub_layouts(twin_dir):
    folder, paths = twin_dir
    assert set(paths) == set(smoke.ROLES)
    assert _files(paths["ddpm"]) == ["config.json", "diffusion_pytorch_model.bin", "scheduler_config.json"]
    sd_files = _files(paths["sd"])
    assert json.loads((paths["sd"] / "model_index.json").read_text()) == twins.SD14_MODEL_INDEX
    for part in ("unet", "vae"):
        assert {f"{part}/config.json", f"{part}/diffusion_pytorch_model.safetensors"} <= set(sd_files)
    assert {"text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/vocab.json",
            "tokenizer/merges.txt", "scheduler/scheduler_config.json",
            "feature_extractor/preprocessor_config.json"} <= set(sd_files)
    assert _files(paths["catalog"]) == ["data/train-00000-of-00001.parquet"]
    again = twins.ensure_all(folder)  # complete: reused, not rewritten
    assert again == paths
    with pytest.raises(ValueError, match="name must be one of"):
        twins.clip_twin(folder / "x.safetensors", "ViT-B-16")


def test_stable_diffusion_twin_loads_with_the_real_configs_and_generates(twin_dir, full_profile):
    from diffusers import DDIMScheduler

    from fashionlab.methods.text_to_image import generate

    pipe = loaders.load_sd("garments-sd-base", device="cpu", source=twin_dir[1]["sd"])
    assert pipe.safety_checker is None and isinstance(pipe.scheduler, DDIMScheduler)
    for key, value in twins.SD14_SCHEDULER.items():
        if key != "skip_prk_steps":  # a PNDM setting; DDIM keeps the schedule and offsets
            assert pipe.scheduler.config[key] == value, key
    assert pipe.tokenizer.model_max_length == 77 and pipe.tokenizer.pad_token == "<|endoftext|>"
    ids = pipe.tokenizer(["an image of a Summer Women's Dress"], padding="max_length", return_tensors="pt").input_ids
    assert ids.shape == (1, 77) and int(ids[0, 0]) == 49406  # OpenAI's start-of-text id, as SD 1.4's tokenizer
    images = generate(pipe, ["a", "b"], steps=2)
    assert images.shape == (2, 3, 32, 32) and not torch.equal(images[0], images[1])  # the text reaches the UNet
    with pytest.raises(FileNotFoundError, match="does not exist"):
        loaders.load_sd("garments-sd-base", device="cpu", source=twin_dir[0] / "missing")


def test_catalog_labels_keep_common_classes_and_mask_the_rest():
    from PIL import Image

    frame = pd.DataFrame({"articleType": ["Tshirts"] * 3 + ["Shirts"] * 2 + ["Capris"],
                          "baseColour": ["Blue", "Blue", None, "Red", "Red", "Red"],
                          "gender": ["Men", "Women"] * 3, "season": ["Summer"] * 6, "usage": ["Casual"] * 6,
                          "image": [Image.new("RGB", (30, 40), (200, 10, 10))] * 6})
    with pytest.raises(ValueError, match="'season' has 1 classes"):
        C.catalog_labels(frame, size=16, min_count=2)
    attributes = ("articleType", "baseColour", "gender")
    data = C.catalog_labels(frame, size=16, attributes=attributes, min_count=2)
    assert data.classes == {"articleType": ("Shirts", "Tshirts"), "baseColour": ("Blue", "Red"),
                            "gender": ("Men", "Women")}
    assert data.images.shape == (6, 16, 16, 3) and data.images.dtype == torch.uint8
    assert data.attributes[:, 0].tolist() == [1, 1, 1, 0, 0, -1]  # the one-off type is masked
    assert data.attributes[:, 1].tolist() == [0, 0, -1, 1, 1, 1]  # so is the missing colour
    held = C.catalog_labels(frame.iloc[3:], size=16, attributes=attributes, classes=data.classes)
    assert held.attributes[:, 0].tolist() == [0, 0, -1] and held.num_classes == data.num_classes
    with pytest.raises(ValueError, match="lacks the columns"):
        C.catalog_labels(frame.drop(columns="image"), attributes=attributes)


def test_attribute_net_checks_its_class_counts():
    from fashionlab.models.attrnet import AttributeNet
    from fashionlab.models.clip import create_clip

    visual = create_clip("garments-clip-s").model.visual
    net = AttributeNet(visual, attributes=("gender", "usage"), num_classes={"gender": 5, "usage": 3})
    assert net.heads["gender"].out_features == 5 and net.attributes == ("gender", "usage")
    with pytest.raises(ValueError, match="lacks the attributes"):
        AttributeNet(visual, attributes=("gender", "usage"), num_classes={"gender": 5})
    with pytest.raises(ValueError, match="at least 2 classes"):
        AttributeNet(visual, attributes=("gender",), num_classes={"gender": 1})


def test_majority_rate_is_the_most_common_labelled_share():
    from fashionlab.experiments.ch05_attrnet_full import majority_rate

    data = C.CatalogLabels(torch.zeros(5, 2, 2, 3, dtype=torch.uint8),
                           torch.tensor([[0, 1], [0, -1], [1, 1], [-1, 1], [0, 0]]), ("a", "b"),
                           {"a": ("x", "y"), "b": ("u", "v")})
    assert majority_rate(data) == {"a": 0.75, "b": 0.75}


def test_smoke_runs_every_chapter_on_the_twins(twin_dir, tiny_profile, capsys):
    """Every chapter's `full` path runs (or is refused as the chapter documents), and the CLI
    reports it; the profile is left as it was."""
    code = smoke.main(["--profile", "full", "--twins", str(twin_dir[0]), "--steps", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = {line[:2]: line for line in out.splitlines() if re.match(r"\d\d  ", line)}
    assert sorted(lines) == sorted(smoke.CHECKS)
    for chapter, (_, status) in smoke.CHECKS.items():
        assert lines[chapter][4:].startswith(status), lines[chapter]
    for chapter in ("06", "09", "10"):
        assert "refused" in lines[chapter]
    assert "LoRA r4" in lines["08"] and "saved ['pytorch_lora_weights.safetensors']" in lines["08"]
    assert "10 of 10 chapters passed" in out
    assert config.get_profile() == "tiny"


def test_smoke_reports_a_failing_chapter_and_rejects_bad_arguments(tmp_path, tiny_profile, capsys):
    results = smoke.run(["02"], smoke.Sources(ddpm=tmp_path / "missing"), echo=None)
    assert results[0].status == "FAILED" and "does not exist" in results[0].detail
    assert config.get_profile() == "tiny"
    with pytest.raises(ValueError, match="unknown chapters"):
        smoke.run(["11"])
    with pytest.raises(ValueError, match="unknown roles"):
        smoke.Sources.from_roles({"vae": tmp_path})
    for argv in (["--profile", "tiny"], ["--profile", "full", "--steps", "0"],
                 ["--profile", "full", "--chapters", "11", "--twins", str(tmp_path / "t")]):
        with pytest.raises(SystemExit) as exit_info:
            smoke.main(argv)
        assert exit_info.value.code == 2
    assert not (tmp_path / "t").exists()  # arguments are checked before any twin is written
