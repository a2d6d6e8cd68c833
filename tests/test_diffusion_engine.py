"""The shared diffusion engine: algebra, steps against diffusers, inversions, the guided loop."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel, UNet2DModel

from fashionlab.diffusion import core, guidance, inversion


def tiny_unet(out_channels: int = 3, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=out_channels, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=4, attention_head_dim=8)
    return unet.eval()


@pytest.fixture(scope="module")
def alphas_cumprod() -> torch.Tensor:
    return DDPMScheduler(num_train_timesteps=1000).alphas_cumprod


class GaussianDenoiser:
    """The exact eps for data x0 ~ N(0, s^2 I): eps*(x_t) = sqrt(1 - a) x_t / (a s^2 + 1 - a)."""

    def __init__(self, alphas_cumprod: torch.Tensor, scale: float = 0.5) -> None:
        self.a, self.s2 = alphas_cumprod, scale**2

    def __call__(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        a = self.a[t]
        return (1 - a).sqrt() * x_t / (a * self.s2 + 1 - a)


def test_predict_x0_and_direction_by_hand():
    x_t, eps = torch.tensor([0.8]), torch.tensor([0.3])
    a_t, a_prev, sigma = 0.36, 0.64, 0.2
    x0 = core.predict_x0(x_t, eps, a_t)
    assert x0.item() == pytest.approx((0.8 - 0.8 * 0.3) / 0.6)
    assert core.predict_eps(x_t, x0, a_t).item() == pytest.approx(0.3)
    assert core.direction(eps, a_prev, sigma).item() == pytest.approx(math.sqrt(1 - 0.64 - 0.04) * 0.3)
    step = core.ddim_step(x_t, eps, a_t, a_prev, sigma=sigma, noise=torch.tensor([1.5]))
    expected = 0.8 * x0.item() + math.sqrt(1 - 0.64 - 0.04) * 0.3 + 0.2 * 1.5
    assert step.x_next.item() == pytest.approx(expected, rel=1e-6)
    # eta = 1 gives the DDPM posterior std sqrt(beta_tilde)
    beta = 1 - a_t / a_prev
    assert core.ddim_sigma(a_t, a_prev, 1.0).item() == pytest.approx(math.sqrt((1 - a_prev) / (1 - a_t) * beta), rel=1e-6)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_diffusers(eta):
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    grid = core.diffusers_grid(scheduler, 20)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g)
    for t, t_prev in zip(reversed(grid[1:]), reversed(grid[:-1])):
        eps = torch.randn(x.shape, generator=g)
        z = torch.randn(x.shape, generator=g)
        ref = scheduler.step(eps, t, x, eta=eta, variance_noise=z).prev_sample
        ours = core.ddim_step(x, eps, core.alpha_bar_at(scheduler.alphas_cumprod, t),
                              core.alpha_bar_at(scheduler.alphas_cumprod, t_prev), eta, noise=z).x_next
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
        x = ref


def test_v_prediction_model_steps_like_diffusers():
    """A v-prediction UNet through PixelDenoiser gives the eps whose DDIM step equals diffusers'
    DDIMScheduler(prediction_type="v_prediction") stepping on the raw v output."""
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                              prediction_type="v_prediction")
    unet = tiny_unet()
    den = core.PixelDenoiser(unet, scheduler)
    assert den.prediction_type == "v_prediction"
    grid = core.diffusers_grid(scheduler, 10)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for t, t_prev in list(zip(reversed(grid[1:]), reversed(grid[:-1])))[:4]:
            v = unet(x, torch.full((2,), t)).sample
            ref = scheduler.step(v, t, x, eta=0.0).prev_sample
            ours = core.ddim_step(x, den(x, t), core.alpha_bar_at(scheduler.alphas_cumprod, t),
                                  core.alpha_bar_at(scheduler.alphas_cumprod, t_prev)).x_next
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
            x = ref
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        core.PixelDenoiser(unet, DDIMScheduler(prediction_type="sample"))


def test_grids():
    assert core.diffusionclip_grid(400, 5) == [-1, 0, 100, 200, 300, 400]
    assert core.diffusionclip_grid(500, 6) == [-1, 0, 100, 200, 300, 400, 500]
    scheduler = DDIMScheduler(num_train_timesteps=1000, steps_offset=1)
    assert core.diffusers_grid(scheduler, 10) == [-1, 1, 101, 201, 301, 401, 501, 601, 701, 801, 901]
    g = core.even_grid(999, 40)
    assert g[0] == -1 and g[-1] == 999 and len(g) == 41
    with pytest.raises(ValueError, match="strictly increasing"):
        core.sample(lambda x, t: x, torch.zeros(1, 3, 4, 4), [-1, 5, 5], DDPMScheduler().alphas_cumprod)
    with pytest.raises(ValueError, match="num_steps must be >= 2"):
        core.diffusionclip_grid(400, 1)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        core.ddim_sigma(0.5, 0.6, -1.0)


def test_ddim_eta0_is_deterministic(alphas_cumprod):
    den = core.PixelDenoiser(tiny_unet())
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    grid = core.even_grid(999, 10)
    a = core.sample(den, x, grid, alphas_cumprod, eta=0.0, generator=torch.Generator().manual_seed(5)).x0
    b = core.sample(den, x, grid, alphas_cumprod, eta=0.0, generator=torch.Generator().manual_seed(6)).x0
    assert torch.equal(a, b)
    c = core.sample(den, x, grid, alphas_cumprod, eta=1.0, generator=torch.Generator().manual_seed(5)).x0
    d = core.sample(den, x, grid, alphas_cumprod, eta=1.0, generator=torch.Generator().manual_seed(6)).x0
    assert not torch.equal(c, d)


def test_ddim_inversion_error_falls_with_steps(alphas_cumprod):
    den = GaussianDenoiser(alphas_cumprod)
    x0 = 0.5 * torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    errors = []
    for steps in (5, 10, 20, 40, 80):
        grid = core.even_grid(999, steps)
        x_T = inversion.ddim_invert(den, x0, grid, alphas_cumprod).x_t
        x_rec = inversion.ddim_generate(den, x_T, grid, alphas_cumprod)
        errors.append((x_rec - x0).abs().max().item())
    assert all(b < a for a, b in zip(errors[:-1], errors[1:])), errors
    assert errors[-1] < 0.25 * errors[0]


def test_edit_friendly_inversion_is_exact(alphas_cumprod):
    den = core.PixelDenoiser(tiny_unet())
    x0 = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    grid = core.even_grid(999, 25)
    inv = inversion.edit_friendly_invert(den, x0, grid, alphas_cumprod, generator=torch.Generator().manual_seed(3))
    assert len(inv.zs) == 25 and len(inv.sigmas) == 25
    rec = inversion.ddpm_replay(den, inv, alphas_cumprod)
    assert (rec - x0).abs().max().item() <= 1e-4
    with pytest.raises(ValueError, match="starts at -1"):
        inversion.edit_friendly_invert(den, x0, grid[1:], alphas_cumprod)


@pytest.mark.parametrize("mode,eta,through", [("universal", 0.0, True), ("nudge", 0.0, True),
                                              ("mean_shift", 1.0, False), ("universal", 1.0, False)])
def test_guided_loop_with_zero_strength_equals_unguided(alphas_cumprod, mode, eta, through):
    den = core.PixelDenoiser(tiny_unet())
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    grid = core.even_grid(999, 8)
    ref = core.sample(den, x, grid, alphas_cumprod, eta=eta, generator=torch.Generator().manual_seed(9)).x0
    out = guidance.guided_sample(den, x, grid, alphas_cumprod, guidance.colour_loss(0, 1.0),
                                 guidance.Guidance(0.0, mode, step_start=1, step_stop=6, through_unet=through), eta=eta,
                                 generator=torch.Generator().manual_seed(9))
    assert torch.equal(out.x0, ref)
    assert len(out.losses) == 5


@pytest.mark.parametrize("mode,eta", [("universal", 0.0), ("nudge", 0.0), ("mean_shift", 1.0)])
def test_colour_guidance_moves_the_mean_colour(alphas_cumprod, mode, eta):
    den = GaussianDenoiser(alphas_cumprod)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    grid = core.even_grid(999, 20)
    strength = {"universal": 30.0, "nudge": 30.0, "mean_shift": 300.0}[mode]
    base = core.sample(den, x, grid, alphas_cumprod, eta=eta, generator=torch.Generator().manual_seed(1)).x0
    for target, sign in ((1.0, 1), (-1.0, -1)):
        out = guidance.guided_sample(den, x, grid, alphas_cumprod, guidance.colour_loss(0, target),
                                     guidance.Guidance(strength, mode), eta=eta,
                                     generator=torch.Generator().manual_seed(1)).x0
        shift = (out[:, 0].mean() - base[:, 0].mean()).item()
        assert sign * shift > 0.1, (mode, target, shift)
        # other channels move much less than the guided one
        assert abs((out[:, 1].mean() - base[:, 1].mean()).item()) < abs(shift) / 3


def test_guidance_mask_keeps_gradient_inside(alphas_cumprod):
    den = GaussianDenoiser(alphas_cumprod)
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    grid = core.even_grid(999, 10)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1.0
    base = core.sample(den, x, grid, alphas_cumprod).x0
    out = guidance.guided_sample(den, x, grid, alphas_cumprod, guidance.colour_loss(0, 1.0), guidance.Guidance(30.0),
                                 mask=mask).x0
    # The Gaussian denoiser acts per pixel, so the unmasked half is untouched.
    torch.testing.assert_close(out[..., 4:], base[..., 4:])
    assert (out[..., :4] - base[..., :4]).abs().max() > 0.1


def test_guided_loop_bad_arguments(alphas_cumprod):
    den = GaussianDenoiser(alphas_cumprod)
    x = torch.zeros(1, 3, 8, 8)
    grid = core.even_grid(999, 10)
    loss = guidance.colour_loss(0, 0.0)
    with pytest.raises(ValueError, match="step_start=6, step_stop=3"):
        guidance.Guidance(1.0, step_start=6, step_stop=3)
    with pytest.raises(ValueError, match="step_start=0, step_stop=11"):
        guidance.guided_sample(den, x, grid, alphas_cumprod, loss, guidance.Guidance(1.0, step_stop=11))
    with pytest.raises(ValueError, match="mode must be one of"):
        guidance.Guidance(1.0, mode="classifier")
    with pytest.raises(ValueError, match="use eta > 0"):
        guidance.guided_sample(den, x, grid, alphas_cumprod, loss, guidance.Guidance(1.0, "mean_shift"))
    with pytest.raises(ValueError, match="pass noises"):
        guidance.guided_sample(den, x, grid, alphas_cumprod, loss, guidance.Guidance(1.0, "z_nudge"))
    with pytest.raises(ValueError, match="mask must match"):
        guidance.guided_sample(den, x, grid, alphas_cumprod, loss, guidance.Guidance(1.0), mask=torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="through_unet=True"):
        guidance.loss_gradient(loss, x, 500, den, alphas_cumprod[500], through_unet=False,
                               loss_input=lambda x0_pred, x_t, alpha_bar_t: x0_pred)
    with pytest.raises(ValueError, match="channel must be"):
        guidance.colour_loss(3, 0.0)


def test_extra_steps_refine_the_tail(alphas_cumprod):
    grid = core.even_grid(999, 10)
    refined = guidance.refine_tail(grid, step_stop=4, extra_steps=5)
    assert refined[-5:] == grid[-5:]  # the guided head is unchanged
    assert len(refined) == len(grid) + 5 and refined == sorted(set(refined))
    den = GaussianDenoiser(alphas_cumprod)
    out = guidance.guided_sample(den, torch.zeros(1, 3, 4, 4), grid, alphas_cumprod, guidance.colour_loss(0, 0.5),
                                 guidance.Guidance(1.0, step_stop=4, extra_steps=5))
    assert out.grid == refined


def test_learned_variance_unet_is_split():
    unet = tiny_unet(out_channels=6)
    den = core.PixelDenoiser(unet)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        full = unet(x, torch.tensor([10])).sample
        assert torch.equal(den(x, 10), full[:, :3])
    with pytest.raises(ValueError, match="out_channels"):
        core.PixelDenoiser(tiny_unet(out_channels=4))


def test_latent_denoiser_with_classifier_free_guidance():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                                norm_num_groups=4, cross_attention_dim=12, attention_head_dim=4).eval()
    cond, uncond = torch.randn(1, 5, 12), torch.randn(1, 5, 12)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        e_c = core.LatentDenoiser(unet, cond)(x, 50)
        e_u = core.LatentDenoiser(unet, uncond)(x, 50)
        e_g = core.LatentDenoiser(unet, cond, uncond, guidance_scale=3.0)(x, 50)
    assert e_c.shape == x.shape
    torch.testing.assert_close(e_g, e_u + 3.0 * (e_c - e_u), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="needs uncond_embeddings"):
        core.LatentDenoiser(unet, cond, guidance_scale=2.0)
