"""Chapter 09's method (thesis 003): each guidance function moves its own score the asked way on the
shipped DDPM, the mask keeps guidance inside it, the regularisers and the draws behave, and bad
input fails clearly."""

from __future__ import annotations

import pytest
import torch

from fashionlab import metrics
from fashionlab.diffusion.core import PixelDenoiser
from fashionlab.experiments import ch09_gradient_guidance as ch09
from fashionlab.methods import gradient_guidance as gg
from fashionlab.zoo import loaders

STEPS = 20


@pytest.fixture(scope="module")
def ddpm():
    pipe = loaders.load("garments-ddpm-64")
    return PixelDenoiser(pipe.unet, pipe.scheduler), pipe.alphas_cumprod, pipe.scheduler


@pytest.fixture(scope="module")
def judges():
    models = {n: loaders.load(n).requires_grad_(False) for n in ("garments-parser", "garments-attrnet")}
    return models["garments-parser"], models["garments-attrnet"]


@pytest.fixture(scope="module")
def sources(ddpm):
    noise = gg.draw(5, 2, STEPS)
    return noise, gg.generate(*ddpm, noise, STEPS)


def edit(ddpm, sources, loss, strength, t2=STEPS - 2, mask=None, **kw):
    noise, original = sources
    cfg = gg.GradientGuidanceConfig(strength, STEPS, 0, t2, **kw)
    return gg.synthetic_edit(*ddpm, loss, cfg, noise, mask=mask, original=original)


def moved(score, out) -> torch.Tensor:
    with torch.no_grad():
        return score(out.edited) - score(out.original)


@pytest.mark.parametrize("direction", ["raise", "lower"])
def test_colour_guidance_moves_the_channel_its_way(ddpm, sources, direction):
    target = 0.8 if direction == "raise" else -0.8  # towards bright or dark red
    change = moved(lambda x: x[:, 0].mean(dim=(1, 2)), edit(ddpm, sources, gg.colour_loss(0, target), 1000.0))
    assert (change > 0.02).all() if direction == "raise" else (change < -0.02).all(), change


@pytest.mark.parametrize("direction", ["raise", "lower"])
def test_segmentation_guidance_grows_or_shrinks_its_part(ddpm, sources, judges, direction):
    parser, _ = judges
    score = gg.segmentation_score(parser, ["torso", "sleeves"])
    change = moved(score, edit(ddpm, sources, gg.segmentation_loss(parser, ["torso", "sleeves"], direction), 3e3))
    assert (change > 0.005).all() if direction == "raise" else (change < -0.005).all(), change


@pytest.mark.parametrize("variant", gg.VARIANTS)
@pytest.mark.parametrize("direction", ["raise", "lower"])
def test_attribute_guidance_moves_its_logit(ddpm, sources, judges, direction, variant):
    _, attrnet = judges
    score = gg.attribute_score(attrnet, "pattern", "striped", variant)
    change = moved(score, edit(ddpm, sources, gg.attribute_loss(attrnet, "pattern", "striped", direction, variant), 1.0))
    assert (change > 1.0).all() if direction == "raise" else (change < -1.0).all(), change


def test_mask_keeps_the_change_inside(ddpm, sources, judges):
    """eq. 16: on the last step alone nothing outside the mask moves at all; over the whole range the
    masked edit moves the outside less than the unmasked one does."""
    parser, _ = judges
    noise, original = sources
    mask = gg.parser_mask(parser, original, ["torso", "sleeves", "neck", "lower", "detail"])
    assert 0.05 < mask.mean() < 0.8
    loss = gg.colour_loss(2, 0.8)
    last = gg.GradientGuidanceConfig(3000.0, STEPS, STEPS - 1, STEPS)
    out = gg.synthetic_edit(*ddpm, loss, last, noise, mask=mask, original=original)
    outside = (1 - mask).bool().expand_as(original)
    assert torch.equal(out.edited[outside], original[outside])
    assert (out.edited[~outside] - original[~outside]).abs().max() > 0.01
    masked = edit(ddpm, sources, loss, 1000.0, mask=lambda x0: gg.parser_mask(parser, x0, ["torso", "sleeves"]))
    unmasked = edit(ddpm, sources, loss, 1000.0)
    garment = gg.parser_mask(parser, original, ["torso", "sleeves"]).bool().expand_as(original)
    assert ((masked.edited - original)[~garment].abs().mean()
            < 0.5 * (unmasked.edited - original)[~garment].abs().mean())


def test_zero_strength_is_the_unguided_sample_and_draws_are_per_image(ddpm, sources):
    noise, original = sources
    out = gg.synthetic_edit(*ddpm, gg.colour_loss(0, 0.8), gg.GradientGuidanceConfig(0.0, STEPS), noise)
    assert torch.equal(out.edited, original.clamp(-1, 1))
    alone = gg.generate(*ddpm, gg.draw(5, [1], STEPS), STEPS)
    torch.testing.assert_close(alone[0], original[1], atol=1e-4, rtol=0)
    assert torch.equal(noise.subset([1]).x_T, gg.draw(5, [1], STEPS).x_T)


def test_extra_steps_refine_the_unguided_tail(ddpm, sources):
    out = edit(ddpm, sources, gg.colour_loss(0, 0.8), 300.0, t2=10, extra_steps=5)
    assert len(out.guided.grid) == STEPS + 1 + 5
    assert len(out.guided.nudges) == 10 and torch.isfinite(out.edited).all()


def test_regularisers_are_eqs_17_and_18():
    weights = torch.tensor([1.0, -2.0])

    def score(x):
        return (x.mean(dim=(2, 3)) * torch.tensor([1.0, 0.0, 0.0])).sum(1) * weights[0]

    source = torch.full((2, 3, 8, 8), 0.5)
    base = lambda x: torch.zeros(x.shape[0])  # noqa: E731
    hold = gg.regularised(base, score, source, "hold", weight=2.0)
    flip = gg.regularised(base, score, source, "flip", weight=2.0)
    torch.testing.assert_close(hold(source), torch.zeros(2))
    torch.testing.assert_close(flip(source), torch.full((2,), 2.0 * (2 * 0.5) ** 2))
    other = torch.zeros_like(source)
    torch.testing.assert_close(hold(other), torch.full((2,), 2.0 * 0.25))
    vector = gg.regularised(base, lambda x: x.mean(dim=(2, 3)), source, "hold")
    torch.testing.assert_close(vector(other), torch.full((2,), 3 * 0.25))
    with pytest.raises(ValueError, match="flip"):
        gg.regularised(base, lambda x: x.mean(dim=(2, 3)), source, "flip")
    with pytest.raises(ValueError, match="built for 2"):
        hold(other[:1])


def test_real_image_paths(ddpm):
    """Edit-friendly inversion with lambda = 0 gives the input back; DDIM inversion only approximately."""
    images = ch09.real_sources(2)
    denoiser, alphas_cumprod, _ = ddpm
    loss = gg.colour_loss(0, 0.8)
    ddpm_out = gg.real_edit_ddpm(denoiser, alphas_cumprod, images, loss, 0.0, steps=10,
                                 generator=torch.Generator().manual_seed(0))
    assert metrics.psnr(ddpm_out.reconstruction, images).min() > 50
    assert torch.equal(ddpm_out.edited, ddpm_out.reconstruction.clamp(-1, 1))
    skipped = gg.real_edit_ddpm(denoiser, alphas_cumprod, images, loss, 0.0, steps=10, skip=8,
                                generator=torch.Generator().manual_seed(0))
    assert metrics.psnr(skipped.reconstruction, images).min() > 50
    ddim_out = gg.real_edit_ddim(denoiser, alphas_cumprod, images, loss, 0.0, steps=10)
    assert 10 < metrics.psnr(ddim_out.reconstruction, images).mean() < 50
    edited = gg.real_edit_ddpm(denoiser, alphas_cumprod, images, gg.colour_loss(0, 1.0), 3000.0, steps=10,
                               generator=torch.Generator().manual_seed(0))
    assert (edited.edited[:, 0] - edited.reconstruction[:, 0]).mean() > 0.01


def test_segmentation_score_sums_parts_and_subtracts_minus():
    class FixedParser(torch.nn.Module):
        def forward(self, x):  # all mass on part 1 (torso) left, part 2 (sleeves) right
            logits = torch.full((x.shape[0], 6, 4, 4), -30.0)
            logits[:, 1, :, :2] = 30.0
            logits[:, 2, :, 2:] = 30.0
            return logits

    parser, x = FixedParser(), torch.zeros(2, 3, 4, 4)
    torch.testing.assert_close(gg.segmentation_score(parser, "torso")(x), torch.full((2,), 0.5))
    torch.testing.assert_close(gg.segmentation_score(parser, ["torso", "sleeves"])(x), torch.ones(2))
    torch.testing.assert_close(gg.segmentation_score(parser, "torso", minus="sleeves")(x), torch.zeros(2))
    torch.testing.assert_close(gg.segmentation_loss(parser, "torso", "lower")(x), torch.full((2,), 0.5))
    torch.testing.assert_close(gg.segmentation_loss(parser, "torso", "raise")(x), torch.full((2,), -0.5))


def test_chapter_runs_tiny_only(full_profile):
    with pytest.raises(ValueError, match="tiny"):
        ch09.load_models()


def test_bad_input_fails_clearly(judges):
    parser, attrnet = judges
    with pytest.raises(ValueError, match="t1 < t2"):
        gg.GradientGuidanceConfig(1.0, steps=50, t1=30, t2=20)
    with pytest.raises(ValueError, match="mode"):
        gg.GradientGuidanceConfig(1.0, mode="z_nudge")
    with pytest.raises(ValueError, match="direction"):
        gg.attribute_loss(attrnet, "pattern", "striped", direction="up")
    with pytest.raises(ValueError, match="value must be one of"):
        gg.attribute_loss(attrnet, "pattern", "tartan")
    with pytest.raises(ValueError, match="attribute must be one of"):
        gg.attribute_score(attrnet, "hemline", "long")
    with pytest.raises(ValueError, match="variant"):
        gg.attribute_score(attrnet, "pattern", "striped", variant="softmax")
    with pytest.raises(ValueError, match="parser parts"):
        gg.segmentation_loss(parser, ["sleeve"])
    with pytest.raises(ValueError, match="overlap"):
        gg.segmentation_score(parser, ["neck"], minus=["neck"])
    with pytest.raises(ValueError, match="target must be three values"):
        gg.rgb_loss((1.0, 0.0))
    with pytest.raises(ValueError, match="target must be in"):
        gg.colour_loss(0, 0.9 * 255)
    with pytest.raises(TypeError, match="Draw"):
        gg.synthetic_edit(None, None, None, gg.colour_loss(0, 0.5), gg.GradientGuidanceConfig(1.0),
                          torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="indices"):
        gg.draw(0, 0)


def test_metrics_of_the_chapter():
    src = torch.tensor([[0, 1], [0, 2], [1, 2]])
    ed = torch.tensor([[0, 2], [1, 2], [1, 0]])
    torch.testing.assert_close(metrics.unchanged_share(src, ed), torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    valid = torch.tensor([[True, False], [True, False], [True, False]])
    assert torch.isnan(metrics.unchanged_share(src, ed, valid)[1])
    white = metrics.noise_statistics(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert abs(white["std"] - 1) < 0.05 and abs(white["excess_kurtosis"]) < 0.2
    assert abs(white["neighbour_correlation"]) < 0.05
    smooth = torch.nn.functional.avg_pool2d(torch.randn(4, 3, 34, 34, generator=torch.Generator().manual_seed(0)),
                                            3, stride=1)
    assert metrics.noise_statistics(smooth)["neighbour_correlation"] > 0.5


def test_grid_choice_and_equal_effect_rules():
    def rec(t1, t2, lam, success, clean, distance):
        return {"t1": t1, "t2": t2, "strength": lam, "seconds": 1.0,
                "rows": [{"success": s, "clean": c, "distance": d, "guide_change": 1.0, "l2": 0.0}
                         for s, c, d in zip(success, clean, distance)]}

    grid = {"records": {"a": rec(0, 48, 1.0, [True, True], [True, False], [0.2, 0.9]),
                        "b": rec(0, 25, 3.0, [True, True], [True, True], [0.5, 0.5]),
                        "c": rec(25, 48, 0.3, [True, True], [True, True], [0.3, 0.4])}}
    assert ch09.choose_setting(grid) == (25, 48, 0.3)
    cal = ch09.calibration(grid)
    assert cal["broken"] == 0.9 and cal["n_successful"] == 5
    steps = {"steps": [25], "records": {
        f"s{lam}": {"steps": 25, "strength": lam, "rows": [{"red_rise": rise}]}
        for lam, rise in ((100.0, 0.05), (1000.0, 0.25), (10000.0, 0.5))}}
    assert ch09.equal_effect_strength(steps, 0.15) == {25: pytest.approx(10 ** 2.5)}
    assert ch09.equal_effect_strength(steps, 0.9) == {25: None}


def test_shipped_results_match_the_code():
    """The committed results were made with the module's settings, and the tables, the universal
    comparison and the regularisers ran at the setting the shipped grid chooses."""
    from dataclasses import asdict

    grid = ch09.read_results("grid")
    assert grid["strengths"] == list(ch09.GRID_STRENGTHS) and grid["ranges"] == [list(r) for r in ch09.GRID_RANGES]
    assert len(grid["records"]) == len(ch09.GRID_STRENGTHS) * len(ch09.GRID_RANGES)
    chosen = asdict(ch09.table_config())
    for part in ("tables", "universal", "regulariser"):
        assert ch09.read_results(part)["config"] == chosen, part
    tables = ch09.read_results("tables")
    assert len(ch09.table_rows(tables)) == ch09.N_TABLE >= 100
    assert ch09.read_results("steps")["strengths"] == list(ch09.STEP_STRENGTHS)
    assert ch09.read_results("regulariser")["weights"] == list(ch09.REG_WEIGHTS)
    assert {r["method"] for r in ch09.read_results("real")["records"].values()} == {"DDIM", "DDPM"}


def test_latent_denoiser_speaks_eps_for_a_v_model_and_checks_its_prompts():
    """The latent model predicts v; the denoiser hands the engine eps, so P_t is diffusers' own x0."""
    from fashionlab.diffusion.core import alpha_bar_at, predict_x0

    pipe = loaders.load("garments-sd-base")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    denoiser = gg.latent_denoiser(pipe, ["a red shirt", "a blue dress"], guidance_scale=1.0)
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    t = 500
    with torch.no_grad():
        v = pipe.unet(x, torch.tensor([t, t]), encoder_hidden_states=denoiser.text_embeddings).sample
        a = alpha_bar_at(pipe.scheduler.alphas_cumprod, t)
        torch.testing.assert_close(predict_x0(x, denoiser(x, t), a), a.sqrt() * x - (1 - a).sqrt() * v,
                                   atol=1e-4, rtol=1e-4)
        with pytest.raises(ValueError, match="one per latent"):
            denoiser(torch.randn(3, 4, 16, 16), t)
    decoded = gg.through_decoder(lambda img: img.mean(dim=(1, 2, 3)), pipe.vae)(x)
    assert decoded.shape == (2,)
