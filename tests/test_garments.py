import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from fashionlab.data import garments, transforms


def _digest(seed: int, n: int, domain: str) -> str:
    h = hashlib.sha256()
    for i in range(n):
        r = garments.render(garments.spec_for(seed, i, domain), 64)
        h.update(r.image.tobytes())
        h.update(r.parts.tobytes())
    return h.hexdigest()


def test_same_pixels_in_two_processes():
    code = "from tests.test_garments import _digest; print(_digest(5, 12, 'all'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == _digest(5, 12, "all")


def test_spec_sampling_is_seeded():
    assert garments.spec_for(0, 3) == garments.spec_for(0, 3)
    assert garments.spec_for(0, 3) != garments.spec_for(1, 3)
    assert all(garments.spec_for(0, i, "in").in_domain for i in range(50))
    specs = [garments.spec_for(0, i, "all") for i in range(300)]
    assert {s.style for s in specs} == set(garments.STYLES)
    assert {e for s in specs for e in s.extras} == set(garments.EXTRAS)
    assert 0.2 < np.mean([not s.in_domain for s in specs]) < 0.8


@pytest.mark.parametrize("category", garments.SCHEMA["category"])
def test_applicability_rules(category):
    assert garments.applicable("sleeve", category) == (category in ("t-shirt", "shirt", "sweater", "jacket", "dress"))
    assert garments.applicable("collar", category) == (category in ("shirt", "sweater", "jacket"))
    for attr in ("pattern", "colour", "fabric", "fit", "category"):
        assert garments.applicable(attr, category)
    if category in ("shirt", "sweater", "jacket"):
        assert garments.applicable("neckline", category, "none")
        assert not garments.applicable("neckline", category, "hood")
    else:
        assert garments.applicable("neckline", category) == (category in ("t-shirt", "dress"))


def test_attribute_vector_marks_inapplicable_with_minus_one():
    spec = garments.GarmentSpec("trousers", pattern="striped", colour="blue")
    vec = spec.attribute_vector()
    assert vec.dtype == np.int64 and vec.shape == (8,)
    names = garments.ATTRIBUTES
    assert vec[names.index("sleeve")] == -1 and vec[names.index("neckline")] == -1 and vec[names.index("collar")] == -1
    assert vec[names.index("pattern")] == garments.SCHEMA["pattern"].index("striped")
    assert garments.spec_from_vector(vec) == spec
    for i in range(100):
        s = garments.spec_for(2, i, "all")
        v = s.attribute_vector()
        for name, value in zip(names, v):
            assert (value == -1) == (not garments.applicable(name, s.category, s.collar))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="neckline='v-neck' does not apply to a trousers"):
        garments.GarmentSpec("trousers", neckline="v-neck")
    with pytest.raises(ValueError, match="neckline='round' does not apply to a shirt with collar='hood'"):
        garments.GarmentSpec("shirt", sleeve="long", collar="hood", neckline="round")
    with pytest.raises(ValueError, match="sleeve is required for a dress"):
        garments.GarmentSpec("dress", neckline="round")
    with pytest.raises(ValueError, match="colour must be one of"):
        garments.GarmentSpec("skirt", colour="beige")
    with pytest.raises(ValueError, match="style must be one of"):
        garments.GarmentSpec("skirt", style="oil")
    with pytest.raises(ValueError, match="extras must be drawn from"):
        garments.GarmentSpec("skirt", extras=("zip",))
    with pytest.raises(TypeError, match="extras must be a tuple"):
        garments.GarmentSpec("skirt", extras=["belt"])
    with pytest.raises(ValueError, match="attribute must be one of"):
        garments.applicable("hemline", "skirt")
    with pytest.raises(ValueError, match="size must be an int"):
        garments.render(garments.GarmentSpec("skirt"), size=8)
    with pytest.raises(TypeError, match="spec must be a GarmentSpec"):
        garments.render({"category": "skirt"})
    with pytest.raises(ValueError, match="domain must be one of"):
        garments.GarmentsDataset(4, domain="out")
    with pytest.raises(ValueError, match="unknown GarmentSpec field"):
        garments.GarmentSpec("skirt").edit(hemline="long")
    with pytest.raises(ValueError, match="template must be in"):
        garments.caption(garments.GarmentSpec("skirt"), template=9)


def test_edit_keeps_applicability():
    tee = garments.GarmentSpec("t-shirt", sleeve="short", neckline="v-neck", colour="red")
    trousers = tee.edit(category="trousers")
    assert trousers.sleeve is None and trousers.neckline is None and trousers.colour == "red"
    hooded = garments.GarmentSpec("sweater", sleeve="long", collar="none", neckline="round").edit(collar="hood")
    assert hooded.neckline is None
    back = hooded.edit(collar="none")
    assert back.neckline == "round"


@pytest.mark.parametrize("domain", ["in", "all"])
def test_part_map_agrees_with_pixels(domain):
    for i in range(40):
        spec = garments.spec_for(11, i, domain)
        r = garments.render(spec, 64)
        background = np.array(garments.BACKGROUNDS[spec.style])
        is_bg = r.parts == garments.BACKGROUND
        # Away from the silhouette (one pixel), labels and colours must agree exactly.
        t = torch.from_numpy(is_bg).float()[None, None]
        interior_bg = (-torch.nn.functional.max_pool2d(-t, 3, 1, 1))[0, 0].numpy() > 0.5
        interior_fg = torch.nn.functional.max_pool2d(t, 3, 1, 1)[0, 0].numpy() < 0.5
        diff = np.abs(r.image.astype(int) - background).max(axis=-1)
        assert (diff[interior_bg] == 0).all(), f"item {i}: background-labelled pixels are not background"
        assert (diff[interior_fg] > 12).all(), f"item {i}: garment pixels look like background"
        assert interior_fg.sum() > 200


def test_part_labels_match_the_garment_type():
    tee = garments.render(garments.GarmentSpec("t-shirt", sleeve="long", neckline="v-neck"), 64)
    assert {garments.TORSO, garments.SLEEVES, garments.NECK} <= set(np.unique(tee.parts))
    assert garments.LOWER not in tee.parts and garments.DETAIL not in tee.parts
    sleeveless = garments.render(garments.GarmentSpec("t-shirt", sleeve="sleeveless", neckline="v-neck"), 64)
    assert garments.SLEEVES not in sleeveless.parts
    trousers = garments.render(garments.GarmentSpec("trousers", extras=("pocket", "belt")), 64)
    assert set(np.unique(trousers.parts)) == {garments.BACKGROUND, garments.LOWER, garments.DETAIL}
    long = (tee.parts == garments.SLEEVES).sum()
    short = (garments.render(garments.GarmentSpec("t-shirt", sleeve="short", neckline="v-neck"), 64).parts == garments.SLEEVES).sum()
    assert long > 2 * short > 0


def test_region_masks():
    r = garments.render(garments.GarmentSpec("t-shirt", sleeve="long", neckline="round"), 64)
    garment = r.parts > 0
    sleeve = garments.region_mask(r.parts, "sleeve").numpy()
    assert sleeve[r.parts == garments.SLEEVES].all() and not sleeve[r.parts == garments.TORSO].all()
    colour = garments.region_mask(r.parts, "colour").numpy()
    assert (colour == garment).all()
    category = garments.region_mask(r.parts, "category").numpy()
    assert category[garment].all() and category.sum() > garment.sum()
    neck = garments.region_mask(r.parts, "neckline").numpy()
    assert neck[r.parts == garments.NECK].all() and neck.sum() < garment.sum() / 3
    batch = garments.region_mask(np.stack([r.parts, r.parts]), "sleeve")
    assert batch.shape == (2, 64, 64)
    with pytest.raises(ValueError, match="attribute must be one of"):
        garments.region_mask(r.parts, "season")
    with pytest.raises(ValueError, match="parts must have shape"):
        garments.region_mask(r.parts[None, None], "sleeve")


def test_edit_region_covers_source_and_ideal_target():
    spec = garments.GarmentSpec("t-shirt", sleeve="short", neckline="round", colour="blue")
    src, tgt = garments.render(spec, 64), garments.render(spec.edit(sleeve="long"), 64)
    region = garments.edit_region(src.parts, tgt.parts, "sleeve")
    diff = np.abs(src.image.astype(int) - tgt.image.astype(int)).max(axis=2)
    changed = diff > 16  # beyond the soft silhouette shading, which reaches a few pixels into the torso
    assert changed.any() and region.numpy()[changed].all()  # every real change lies inside
    assert not garments.region_mask(src.parts, "sleeve").numpy()[changed].all()  # the source region alone misses some
    assert diff[~region.numpy()].max() <= 16  # outside: only the shading halo
    both = garments.edit_region(src.parts, tgt.parts, ("sleeve", "colour"))
    assert both.sum() > region.sum()
    with pytest.raises(ValueError, match="same shape"):
        garments.edit_region(src.parts, tgt.parts[:32], "sleeve")
    with pytest.raises(ValueError, match="at least one"):
        garments.edit_region(src.parts, tgt.parts, ())


def test_sizes_render():
    spec = garments.spec_for(0, 1, "all")
    for size in (32, 64, 128, 256):
        r = garments.render(spec, size)
        assert r.image.shape == (size, size, 3) and r.parts.shape == (size, size)


@pytest.mark.parametrize("template", range(len(garments.CAPTION_TEMPLATES)))
def test_captions_name_every_applicable_attribute_and_no_other(template):
    words_of = {n: {v: garments._word(n, v) for v in vals} for n, vals in garments.SCHEMA.items()}
    for i in range(200):
        spec = garments.spec_for(4, i, "all")
        text = garments.caption(spec, template)
        for name in garments.ATTRIBUTES:
            value = getattr(spec, name)
            if value is not None:
                assert words_of[name][value] in text, (name, value, text)
        if spec.collar is None:
            assert "collar" not in text and "hood" not in text
        if spec.sleeve is None:
            assert "sleeve" not in text
        if spec.neckline is None:
            assert "neck" not in text
        for extra in spec.extras:
            assert garments._EXTRA_WORDS[extra] in text


def test_caption_example_and_subsets():
    spec = garments.GarmentSpec("t-shirt", sleeve="short", neckline="v-neck", pattern="striped", colour="red", fit="slim")
    assert garments.caption(spec) == "a slim-fit red striped short-sleeve v-neck t-shirt in cotton"
    assert garments.caption(spec, 0, ("colour", "pattern")) == "a red striped t-shirt"
    assert garments.caption(garments.GarmentSpec("trousers", colour="blue"), 0, ("colour",)) == "a pair of blue trousers"
    assert garments.caption(spec, 1).startswith("a photo of a red striped t-shirt")


def test_dataset_items_and_collate():
    ds = garments.GarmentsDataset(8, seed=1, size=64, domain="all")
    item = ds[3]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["attributes"].shape == (8,) and item["parts"].shape == (64, 64)
    assert torch.equal(item["attributes"], torch.from_numpy(item["spec"].attribute_vector()))
    assert isinstance(item["caption"], str)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=garments.collate)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 64, 64) and len(batch["spec"]) == 4
    assert torch.equal(garments.GarmentsDataset(8, seed=1, domain="all")[3]["image"], item["image"])
    assert np.array_equal(transforms.to_uint8(item["image"]), garments.render(item["spec"], 64).image)
    with pytest.raises(IndexError):
        ds[8]


def test_render_cache_on_disk_is_reused_and_keyed(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHIONLAB_CACHE", str(tmp_path))
    first = garments.render_cache(5, 6, progress=False, on_disk=True)
    files = list(tmp_path.glob("renders-seed5-n6-64px-all-*.pt"))
    assert len(files) == 1
    again = garments.render_cache(5, 6, progress=False, on_disk=True)
    assert torch.equal(first.images, again.images) and torch.equal(first.parts, again.parts)
    assert again.specs == first.specs
    garments.render_cache(6, 6, progress=False, on_disk=True)  # another seed is another file
    assert len(list(tmp_path.glob("renders-*.pt"))) == 2
    # the file holds tensors and plain containers: a pickled class in its place is refused, not run
    torch.save({"images": first.images, "specs": first.specs}, files[0])
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        garments.render_cache(5, 6, progress=False, on_disk=True)
