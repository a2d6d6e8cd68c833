"""Tiny CLIP configs, CLIP losses, augmentations (no trained weights needed)."""

import open_clip
import pytest
import torch

from fashionlab import losses, metrics
from fashionlab.data import garments
from fashionlab.data import transforms
from fashionlab.eval import zero_shot
from fashionlab.models import clip
from fashionlab.train import clip as clip_training
from fashionlab.zoo import loaders
from fashionlab.zoo import recipes


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    return clip.create_clip("garments-clip-s")


def test_configs_register_offline():
    for name in clip.TINY_MODELS:
        assert name in open_clip.list_models()
    tok = open_clip.get_tokenizer("garments-clip-s")
    assert tok(["a red striped t-shirt"]).shape == (1, 32)


def test_encoders_and_patch_tokens(bundle):
    pixels = torch.randn(2, 3, 64, 64)
    pooled, tokens = clip.encode_image_tokens(bundle, pixels)
    assert pooled.shape == (2, 128) and tokens.shape == (2, 64, 192)  # 8x8 patches of width 192
    assert bundle.model.visual.output_tokens is False  # the switch is restored
    torch.testing.assert_close(pooled, bundle.model.encode_image(pixels))
    text = clip.encode_text(bundle, ["a red dress", "a blue skirt"])
    assert text.shape == (2, 128)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))


def test_one_pixel_pipeline_for_bundles_towers_and_classifiers(bundle):
    """CLIPBundle.pixels, visual_pixels and AttributeNet.preprocess agree: every CLIP consumer
    sees the same input for the same image, and the gradient reaches the image."""
    from fashionlab.models.attrnet import AttributeNet

    x = (torch.rand(2, 3, 48, 48) * 2 - 1).requires_grad_()
    pixels = bundle.pixels(x)
    assert pixels.shape == (2, 3, 64, 64)
    torch.testing.assert_close(pixels, clip.visual_pixels(bundle.model.visual, x))
    torch.testing.assert_close(pixels, AttributeNet(bundle.model.visual).preprocess(x))
    mean = torch.tensor(bundle.mean).view(1, 3, 1, 1)
    std = torch.tensor(bundle.std).view(1, 3, 1, 1)
    white = bundle.pixels(torch.ones(1, 3, 64, 64))
    torch.testing.assert_close(white, ((1 - mean) / std).expand_as(white))  # (x + 1) / 2, then (x - mean) / std
    pixels.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("bad,err", [([], ValueError), ([""], ValueError), (["  "], ValueError), ([3], TypeError),
                                     (None, ValueError)])
def test_bad_prompts(bundle, bad, err):
    with pytest.raises(err, match="prompt"):
        clip.encode_text(bundle, bad)


def test_directional_loss_extremes():
    direction = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0, 0.5]]), dim=-1)
    src = torch.tensor([[0.3, -0.1, 0.2]])
    for form in ("1-cos", "log"):
        parallel = losses.directional_clip_loss(src + 0.7 * direction, src, direction, form)
        opposed = losses.directional_clip_loss(src - 0.7 * direction, src, direction, form)
        orthogonal = losses.directional_clip_loss(src + torch.tensor([[2.0, -1.0, 0.0]]), src, direction, form)
        assert parallel.item() == pytest.approx(0.0, abs=1e-6)
        assert opposed.item() > orthogonal.item() > parallel.item()
    assert losses.directional_clip_loss(src - direction, src, direction).item() == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(ValueError, match="form must be"):
        losses.directional_clip_loss(src, src, direction, form="l2")


def test_clip_loss_gradient_reaches_pixels(bundle):
    images = torch.zeros(2, 3, 48, 48, requires_grad=True)
    pixels = transforms.clip_preprocess(images, bundle.image_size, bundle.mean, bundle.std)
    assert pixels.shape == (2, 3, 64, 64)
    text = clip.encode_text(bundle, "a red dress")
    loss = losses.global_clip_loss(bundle.model.encode_image(pixels), text).sum()
    loss.backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_text_direction_is_unit_and_antisymmetric(bundle):
    enc = lambda prompts: clip.encode_text(bundle, prompts)  # noqa: E731
    with torch.no_grad():
        d = losses.text_direction(enc, "a red dress", "a blue dress")
        back = losses.text_direction(enc, "a blue dress", "a red dress")
    assert d.shape == (1, 128)
    assert d.norm().item() == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(back, -d, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="target must be a non-empty string"):
        losses.text_direction(enc, "a red dress", "")


def test_extending_augmentations():
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    views = transforms.extending_augmentations(images, num_views=8, generator=torch.Generator().manual_seed(0))
    assert views.shape == (16, 3, 32, 32)
    assert torch.equal(views[:2], images)  # the first view is unaugmented
    assert not torch.allclose(views[2:4], images)
    again = transforms.extending_augmentations(images, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(views, again)
    views.sum().backward()
    assert images.grad.abs().sum() > 0
    ident = transforms.extending_augmentations(images, 4, generator=torch.Generator(), degrees=0, translate=0,
                                           perspective_p=0.0)
    torch.testing.assert_close(ident[2:4], images, atol=1e-5, rtol=1e-5)


def test_clip_score_is_100_cos():
    a = torch.tensor([[1.0, 0.0]])
    assert metrics.clip_score(a, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(100 / 2**0.5, rel=1e-5)


@pytest.mark.parametrize("name,arch,tokens", [("garments-clip-s", "ViT-B-16-quickgelu", 196),
                                               ("garments-clip-b", "ViT-B-32", 49)])
def test_full_loader_with_random_twins(tmp_path, full_profile, name, arch, tokens):
    """The 'full' path of each zoo CLIP on random weights saved to a local file: the guide is a
    QuickGELU ViT-B-16 (OpenAI's weights were trained with it), the judge a different model."""
    from open_clip.transformer import QuickGELU
    from safetensors.torch import save_file

    from fashionlab.models.clip import FULL_MODELS

    assert FULL_MODELS[name][0] == arch
    torch.manual_seed(0)
    model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=None)
    path = tmp_path / f"{arch}-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = loaders.load_clip(name, device="cpu", pretrained=str(path))
    assert loaded.profile == "full" and loaded.image_size == 224
    assert isinstance(loaded.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU) == arch.endswith("quickgelu")
    pooled, patch_tokens = clip.encode_image_tokens(loaded, torch.randn(1, 3, 224, 224))
    assert pooled.shape[0] == 1 and patch_tokens.shape[:2] == (1, tokens)
    with torch.no_grad():
        ref = model.eval().encode_image(torch.zeros(1, 3, 224, 224))
        torch.testing.assert_close(loaded.model.encode_image(torch.zeros(1, 3, 224, 224)), ref)
    with pytest.raises(ValueError, match="zoo CLIP models"):
        loaders.load_clip("ViT-B-16", device="cpu")


@pytest.mark.network_probe
def test_full_clip_fails_fast_offline(full_profile):
    with pytest.raises(RuntimeError, match="tiny"):
        loaders.load_clip(device="cpu")


def _clip_train(workdir, steps, resume, cache):

    cfg = clip_training.CLIPTrainConfig(batch_size=8, total_steps=10, warmup_steps=2, bf16=False, log_every=1, cache_size=32,
                             checkpoint_minutes=1e9)
    return clip_training.train_clip("garments-clip-s", cfg, workdir, max_steps=steps, resume=resume, progress=False, cache=cache)


def test_clip_training_resumes_exactly(tmp_path):

    cache = garments.render_cache(10, 32, progress=False)
    _clip_train(tmp_path / "straight", 3, False, cache)
    _clip_train(tmp_path / "resumed", 1, False, cache)
    steps, _ = _clip_train(tmp_path / "resumed", 2, True, cache)
    assert steps == 3
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["caption_rng"] == b["caption_rng"]


def test_export_and_tiny_load_round_trip(tmp_path, tiny_profile):
    """A trained checkpoint exports to fp16 safetensors with its held-out table; the tiny loader
    verifies the sha256 and gives back the same (fp16-rounded) model; a corrupt file is refused."""

    cache = garments.render_cache(10, 32, progress=False)
    _clip_train(tmp_path / "run", 2, False, cache)
    weights_dir, manifest = tmp_path / "weights", tmp_path / "MANIFEST.json"
    entry = recipes.export_clip("garments-clip-s", tmp_path / "run", n_heldout=24, weights_dir=weights_dir,
                                manifest_path=manifest, progress=False)
    assert entry["training_steps"] == 2 and entry["metrics"]["n_heldout"] == 24
    assert set(entry["metrics"]["accuracy"]) == set(G_ATTRS) | {"style"}
    loaded = loaders.load_clip("garments-clip-s", device="cpu", weights_dir=weights_dir, manifest_path=manifest)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, state[key].half().float(), msg=key)
    (weights_dir / "garments-clip-s.safetensors").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="checksum mismatch"):
        loaders.load_clip("garments-clip-s", device="cpu", weights_dir=weights_dir, manifest_path=manifest)


def test_random_captions_and_prompt_ensembles():
    import numpy as np


    rng = np.random.default_rng(0)
    for i in range(100):
        spec = garments.spec_for(0, i, "all")
        text = clip_training.random_caption(spec, rng)
        assert spec.category in text
    prompts = zero_shot.class_prompts("colour")
    assert list(prompts) == list(garments.SCHEMA["colour"]) and "a red t-shirt" in prompts["red"]
    assert all(len(v) == 3 for v in zero_shot.class_prompts("collar").values())
    styles = zero_shot.class_prompts("style")
    assert styles["sketch"][0] == "a sketch of a t-shirt"


def test_zero_shot_table_shape(bundle):

    table = zero_shot.zero_shot_table(bundle, seed=100, n=24, batch_size=12)
    assert set(table["accuracy"]) == set(G_ATTRS) | {"style"}
    assert 0.0 <= table["image_to_text_R@5"] <= 1.0 and table["n_heldout"] == 24


G_ATTRS = ("category", "sleeve", "neckline", "collar", "pattern", "colour", "fabric", "fit")


def test_retrieval_recall():

    f = torch.nn.functional.normalize(torch.randn(50, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    perfect = zero_shot.retrieval_recall(f, f)
    assert perfect == {"image_to_text_R@1": 1.0, "image_to_text_R@5": 1.0, "text_to_image_R@1": 1.0,
                       "text_to_image_R@5": 1.0}
    # Pair 0's text is moved far away from its image: image 0 misses at R@1, the others still hit.
    moved = f.clone()
    moved[0] = -f[0]
    r = zero_shot.retrieval_recall(f, moved, ks=(1,))
    assert r["image_to_text_R@1"] == pytest.approx(49 / 50) and r["text_to_image_R@1"] == pytest.approx(49 / 50)
    with pytest.raises(ValueError, match="same shape"):
        zero_shot.retrieval_recall(f, f[:10])


def test_shipped_clip_knows_garments(tiny_profile):
    """The shipped garments-clip-s loads (sha256-checked) and classifies fresh renders zero-shot
    far above chance: category and garments.render style on 60 garments of an unseen seed."""

    shipped = loaders.load_clip("garments-clip-s", device="cpu")
    table = zero_shot.zero_shot_table(shipped, seed=900, n=60, batch_size=30)
    assert table["accuracy"]["category"] >= 0.8  # chance: 1/8
    assert table["accuracy"]["style"] >= 0.9  # chance: 1/3
