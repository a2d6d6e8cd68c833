"""Paper 000's Procedure 1 and the Blended-Diffusion baseline, on random-weight models."""

import pytest
import torch
from diffusers import DDPMScheduler

from fashionlab import losses
from fashionlab import metrics
from fashionlab.data import garments
from fashionlab.diffusion import core
from fashionlab.methods import blended_diffusion
from fashionlab.methods import guided_edit
from fashionlab.models import clip
from fashionlab.models.attrnet import AttributeNet
from tests.test_diffusion_engine import tiny_unet


@pytest.fixture(scope="module")
def alphas_cumprod() -> torch.Tensor:
    return DDPMScheduler(num_train_timesteps=1000).alphas_cumprod


@pytest.fixture(scope="module")
def denoiser():
    return core.PixelDenoiser(tiny_unet())


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return AttributeNet(clip.create_clip("garments-clip-s").model.visual).eval()


def images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_zero_strength_without_background_is_sdedit(denoiser, alphas_cumprod, classifier):
    """lambda = 0 and no background loss: noise X to level k, then plain DDPM sampling (SDEdit)."""
    x = images()
    cfg = guided_edit.GuidedEditConfig(depth=300, steps=6, strength=0.0, background=False, views=2)
    out = guided_edit.guided_edit(denoiser, alphas_cumprod, classifier, x, {"pattern": "striped"}, cfg,
                         generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    grid = core.even_grid(300, 6)
    x_k = core.noise_to(x, alphas_cumprod[300], torch.randn(x.shape, generator=g))
    ref = core.sample(denoiser, x_k, grid, alphas_cumprod, eta=1.0, generator=g).x0.clamp(-1, 1)
    assert out.grid == grid
    torch.testing.assert_close(out.x_k, x_k)
    torch.testing.assert_close(out.edited, ref, atol=1e-6, rtol=0)
    # and guidance does change the result
    guided = guided_edit.guided_edit(denoiser, alphas_cumprod, classifier, x, {"pattern": "striped"},
                            guided_edit.GuidedEditConfig(depth=300, steps=6, strength=1e4, views=2),
                            generator=torch.Generator().manual_seed(5))
    assert (guided.edited - ref).abs().max() > 1e-3


@pytest.mark.parametrize("targets, categories, match", [
    ({}, None, "non-empty dict"),
    ({"hemline": "short"}, None, "target attribute must be one of"),
    ({"pattern": "tartan"}, None, "target value for 'pattern'"),
    ({"neckline": "v-neck"}, ["t-shirt", "trousers"], "does not apply to image 1, a trousers"),
    ({"sleeve": "long"}, ["skirt", "dress"], "does not apply to image 0, a skirt"),
])
def test_bad_targets_fail_early(targets, categories, match, denoiser, alphas_cumprod, classifier):
    with pytest.raises(ValueError, match=match):
        guided_edit.guided_edit(denoiser, alphas_cumprod, classifier, images(), targets, categories=categories)


def test_bad_arguments_fail_early(denoiser, alphas_cumprod, classifier):
    with pytest.raises(ValueError, match="depth"):
        guided_edit.guided_edit(denoiser, alphas_cumprod, classifier, images(), {"colour": "red"}, guided_edit.GuidedEditConfig(depth=0))
    with pytest.raises(ValueError, match="in \\[-1, 1\\]"):
        guided_edit.guided_edit(denoiser, alphas_cumprod, classifier, images() * 3, {"colour": "red"})
    with pytest.raises(ValueError, match="strength"):
        guided_edit.GuidedEditConfig(strength=-1)
    with pytest.raises(ValueError, match="eta"):
        guided_edit.GuidedEditConfig(eta=0)
    shared = guided_edit.check_targets({"colour": "red", "sleeve": "long"}, categories=["dress", "shirt"], n_images=2)
    assert shared["colour"].tolist() == [garments.SCHEMA["colour"].index("red")] * 2
    assert shared["sleeve"].tolist() == [garments.SCHEMA["sleeve"].index("long")] * 2
    per_image = guided_edit.check_targets([{"colour": "red"}, {"colour": "blue"}])
    assert per_image["colour"].tolist() == [garments.SCHEMA["colour"].index("red"), garments.SCHEMA["colour"].index("blue")]
    mixed = guided_edit.check_targets([{"colour": "red"}, {"pattern": "striped", "colour": "blue"}])
    assert mixed["colour"].tolist() == [garments.SCHEMA["colour"].index("red"), garments.SCHEMA["colour"].index("blue")]
    assert mixed["pattern"].tolist() == [-1, garments.SCHEMA["pattern"].index("striped")]
    with pytest.raises(ValueError, match="one per image \\(3\\)"):
        guided_edit.check_targets([{"colour": "red"}, {"colour": "blue"}], n_images=3)


def test_bad_images_fail_early_naming_the_argument(denoiser, alphas_cumprod, classifier):
    """As a user would get them wrong: a NaN image, the wrong size, uint8 pixels."""
    nan = images()
    nan[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="images contains NaN"):
        guided_edit.guided_edit(denoiser, alphas_cumprod, classifier, nan, {"colour": "red"})
    with pytest.raises(ValueError, match="images must have a height and width divisible by 2 .*trained at 16x16"):
        guided_edit.guided_edit(denoiser, alphas_cumprod, classifier, images()[..., :15, :15], {"colour": "red"})
    with pytest.raises(TypeError, match="images must be a float tensor"):
        guided_edit.guided_edit(denoiser, alphas_cumprod, classifier, (images() * 127 + 128).to(torch.uint8), {"colour": "red"})


def test_absurd_strength_is_finite_or_names_strength(denoiser, alphas_cumprod, classifier):
    cfg = guided_edit.GuidedEditConfig(depth=400, steps=4, strength=1e9, views=2)
    try:
        out = guided_edit.guided_edit(denoiser, alphas_cumprod, classifier, images(), {"colour": "red"}, cfg,
                             generator=torch.Generator().manual_seed(0))
    except ValueError as err:
        assert "strength" in str(err)
    else:
        assert torch.isfinite(out.edited).all()


@pytest.mark.parametrize("strength", [1e2, 1e4, 1e6])
def test_huge_strength_stays_finite(strength, denoiser, alphas_cumprod, classifier):
    cfg = guided_edit.GuidedEditConfig(depth=400, steps=4, strength=strength, views=2, perceptual_weight=0)
    targets = [{"colour": "red", "pattern": "checked"}, {"colour": "blue", "pattern": "striped"}]  # one per image
    out = guided_edit.guided_edit(denoiser, alphas_cumprod, classifier, images(), targets, cfg,
                         generator=torch.Generator().manual_seed(0), return_trajectory=True)
    assert torch.isfinite(out.edited).all()  # (the output is clamped: P_t, before it, is what can overflow)
    assert all(torch.isfinite(p).all() for p in out.x0_preds) and all(map(lambda v: v == v, out.losses))
    assert len(out.masks) == len(out.x0_preds) == 4
    assert all(m.shape == (2, 1, 16, 16) and m.min() >= 0 and m.max() <= 1 for m in out.masks)


def test_mixed_targets_edit_each_image_towards_its_own(denoiser, alphas_cumprod, classifier):
    """In a batch whose images name different attributes, each image's guidance (its attribute
    loss and its M-bar) is the one it would get beside an image with the same target."""
    x = images()
    cfg = guided_edit.GuidedEditConfig(depth=300, steps=4, strength=1e3, views=2, perceptual_weight=0)

    def edit(targets):
        return guided_edit.guided_edit(denoiser, alphas_cumprod, classifier, x, targets, cfg,
                              generator=torch.Generator().manual_seed(3), return_trajectory=True)

    mixed = edit([{"colour": "red"}, {"sleeve": "long"}])
    colour = edit({"colour": "red"})
    sleeve = edit({"sleeve": "long"})
    torch.testing.assert_close(mixed.edited[0], colour.edited[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed.edited[1], sleeve.edited[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed.masks[0][0], colour.masks[0][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(mixed.masks[0][1], sleeve.masks[0][1], atol=1e-6, rtol=0)
    assert (mixed.edited[0] - sleeve.edited[0]).abs().max() > 1e-3  # the target does matter


def test_attention_region_scales_to_one():
    maps = {"sleeve": torch.randn(3, 16).softmax(1).view(3, 4, 4),
            "colour": torch.full((3, 4, 4), 1 / 16)}
    region = guided_edit.attention_region(maps, ["sleeve", "colour"], (16, 16))
    assert region.shape == (3, 1, 16, 16)
    assert torch.allclose(region.amax(dim=(1, 2, 3)), torch.ones(3), atol=1e-5) and region.min() >= 0
    flat = guided_edit.attention_region({"colour": maps["colour"]}, ["colour"], (8, 8))
    assert torch.allclose(flat, torch.ones_like(flat))
    chosen = torch.tensor([[True, False], [False, True], [True, True]])
    per_image = guided_edit.attention_region(maps, ["sleeve", "colour"], (16, 16), chosen)
    torch.testing.assert_close(per_image[0], guided_edit.attention_region(maps, ["sleeve"], (16, 16))[0])
    torch.testing.assert_close(per_image[1], torch.ones(1, 16, 16))
    torch.testing.assert_close(per_image[2], region[2])
    with pytest.raises(ValueError, match="at least one attribute per image"):
        guided_edit.attention_region(maps, ["sleeve", "colour"], (16, 16), torch.tensor([[True, False], [False, False],
                                                                                [True, True]]))


def test_background_loss_weights_only_the_kept_pixels():
    source = torch.zeros(1, 3, 8, 8)
    edited = torch.zeros(1, 3, 8, 8, requires_grad=True)
    keep = torch.zeros(1, 1, 8, 8)
    keep[..., :4] = 1.0
    with torch.no_grad():
        moved = edited.clone()
        moved[..., :4] = 0.5
    assert losses.background_loss(moved, source, keep).item() == pytest.approx(3 * 0.25 * 32 / 64)
    loss = losses.background_loss(edited + 0.1, source, keep).sum()
    (grad,) = torch.autograd.grad(loss, edited)
    assert (grad[..., 4:] == 0).all() and (grad[..., :4] > 0).all()
    with pytest.raises(ValueError, match="keep must be"):
        losses.background_loss(moved, source, keep[:, :, :4])


def test_background_loss_perceptual_term_accepts_out_of_range_predictions():
    """P_t leaves [-1, 1] at high noise: the perceptual term sees it clipped, yet its gradient
    still reaches the out-of-range pixels (straight through)."""
    from fashionlab.models.oracle import GarmentOracle

    torch.manual_seed(0)
    pd = metrics.OraclePerceptual(GarmentOracle(widths=(8, 8, 8, 8)).eval())
    source = torch.rand(2, 3, 32, 32) * 2 - 1
    edited = (source * 1.5).requires_grad_()  # about a third of the pixels outside [-1, 1]
    keep = torch.ones(2, 1, 32, 32)
    loss = losses.background_loss(edited, source, keep, pd, mse_weight=0.0, perceptual_weight=1.0)
    assert torch.isfinite(loss).all() and (loss > 0).all()
    (grad,) = torch.autograd.grad(loss.sum(), edited)
    outside = edited.detach().abs() > 1
    assert grad[outside].abs().sum() > 0
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        pd.distance_map(edited.detach(), source)  # the metric itself still refuses such images


def test_spherical_distance():
    u = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    assert torch.allclose(losses.spherical_distance(u, u), torch.zeros(5), atol=1e-6)
    # the squared great-circle distance over 2: 2 (theta / 2)^2 with theta the angle
    v = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    theta = torch.arccos((u * v).sum(-1).clamp(-1, 1))
    assert torch.allclose(losses.spherical_distance(u, 3 * v), 2 * (theta / 2) ** 2, atol=1e-5)


def test_blended_keeps_the_background_exactly(denoiser, alphas_cumprod):
    torch.manual_seed(0)
    bundle = clip.create_clip("garments-clip-s")
    x = images()
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    cfg = blended_diffusion.BlendedConfig(depth=300, steps=4, views=2)
    out = blended_diffusion.blended_edit(denoiser, alphas_cumprod, bundle, x, "a striped dress", mask, cfg,
                          generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.edited * (1 - mask), x * (1 - mask))
    assert (out.edited - x).abs()[mask.expand_as(x) > 0].mean() > 0.05
    assert len(out.losses) == 4 and all(v == v for v in out.losses)
    with pytest.raises(ValueError, match="mask must be"):
        blended_diffusion.blended_edit(denoiser, alphas_cumprod, bundle, x, "a striped dress", mask[:1], cfg)
    with pytest.raises(ValueError, match="prompts must be"):
        blended_diffusion.blended_edit(denoiser, alphas_cumprod, bundle, x, ["a", "b", "c"], mask, cfg)


def test_chapter_06_refuses_to_guide_a_face_model_with_a_garment_classifier(full_profile):
    from fashionlab.experiments import ch06_guided_edit

    with pytest.raises(ValueError, match="face model"):
        ch06_guided_edit.load_edit_models("cpu")
