"""The engine pieces the later chapters compose (issue: architecture), each against an
independent reference: the asymmetric step, sampling with gradients in its two modes, the mixed
denoiser, the split UNet, T_skip replay, the guidance pieces, and the one training loop."""

import pytest
import torch
from diffusers import DDPMScheduler

from fashionlab import config
from fashionlab.diffusion import core, guidance, inversion
from fashionlab.models import hspace
from fashionlab.train import loop
from tests.test_diffusion_engine import GaussianDenoiser, tiny_unet


@pytest.fixture(scope="module")
def alphas_cumprod() -> torch.Tensor:
    return DDPMScheduler(num_train_timesteps=1000).alphas_cumprod


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------------------
# The asymmetric reverse step
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_asymmetric_step_with_equal_eps_is_the_ddim_step(sigma):
    x_t, eps, z = randn(2, 3, 8, 8, seed=1), randn(2, 3, 8, 8, seed=2), randn(2, 3, 8, 8, seed=3)
    ours = core.reverse_step(x_t, eps, eps, 0.3, 0.6, sigma=sigma, noise=z)
    ref = core.ddim_step(x_t, eps, 0.3, 0.6, sigma=sigma, noise=z)
    assert torch.equal(ours.x_next, ref.x_next) and torch.equal(ours.x0_pred, ref.x0_pred)


def test_asymmetric_step_takes_p_t_from_one_eps_and_d_t_from_the_other():
    x_t, eps_x0, eps_dir = randn(1, 3, 4, 4, seed=1), randn(1, 3, 4, 4, seed=2), randn(1, 3, 4, 4, seed=3)
    out = core.reverse_step(x_t, eps_x0, eps_dir, 0.3, 0.6)
    by_hand = 0.6 ** 0.5 * (x_t - 0.7 ** 0.5 * eps_x0) / 0.3 ** 0.5 + 0.4 ** 0.5 * eps_dir
    torch.testing.assert_close(out.x_next, by_hand)
    torch.testing.assert_close(out.x0_pred, core.predict_x0(x_t, eps_x0, 0.3))


# ----------------------------------------------------------------------------------------
# Sampling with gradients: the whole chain and per step
# ----------------------------------------------------------------------------------------
def _weight_grad(unet, mode: str, grid, alphas_cumprod, x_T, target):
    unet.zero_grad(set_to_none=True)
    denoiser = core.PixelDenoiser(unet)
    losses = []
    if mode == "chain":
        out = core.sample_with_grad(denoiser, x_T, grid, alphas_cumprod)
        loss = (out.x0 - target).pow(2).mean()
        loss.backward()
        losses.append(loss.item())
    else:
        def on_step(i, t, step):
            loss = (step.x0_pred - target).pow(2).mean()
            loss.backward()
            return loss.item()

        out = core.sample_with_grad(denoiser, x_T, grid, alphas_cumprod, on_step=on_step)
        losses = out.step_results
    grads = torch.cat([p.grad.flatten() for p in unet.parameters() if p.grad is not None])
    return out.x0, losses, grads


def test_per_step_and_whole_chain_agree_on_a_one_step_grid(alphas_cumprod):
    unet = tiny_unet().train()
    x_T, target = randn(2, 3, 16, 16, seed=4), randn(2, 3, 16, 16, seed=5).clamp(-1, 1)
    grid = [-1, 600]  # one step to the clean image: x0 is P_t
    x0_chain, loss_chain, grad_chain = _weight_grad(unet, "chain", grid, alphas_cumprod, x_T, target)
    x0_step, loss_step, grad_step = _weight_grad(unet, "per_step", grid, alphas_cumprod, x_T, target)
    torch.testing.assert_close(x0_chain.detach(), x0_step)
    assert loss_chain == pytest.approx(loss_step, rel=1e-6)
    torch.testing.assert_close(grad_chain, grad_step)


def test_whole_chain_backpropagates_through_every_step_and_per_step_through_one(alphas_cumprod):
    unet = tiny_unet()
    denoiser = core.PixelDenoiser(unet)
    grid = core.even_grid(900, 3)
    x_T = randn(1, 3, 16, 16, seed=6).requires_grad_(True)
    out = core.sample_with_grad(denoiser, x_T, grid, alphas_cumprod)
    out.x0.sum().backward()
    assert x_T.grad is not None and x_T.grad.abs().sum() > 0  # the latent-optimisation baseline's gradient
    seen = []
    per_step = core.sample_with_grad(denoiser, x_T, grid, alphas_cumprod,
                                     on_step=lambda i, t, step: seen.append((i, t, step.x_next.requires_grad)))
    assert [(i, t) for i, t, _ in seen] == list(enumerate(reversed(grid[1:]))) and all(r for _, _, r in seen)
    assert not per_step.x0.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(per_step.x0, core.sample(denoiser, x_T.detach(), grid, alphas_cumprod).x0)


# ----------------------------------------------------------------------------------------
# The mixed denoiser (DiffusionCLIP's noise combination)
# ----------------------------------------------------------------------------------------
def test_mixed_denoiser_with_one_weight_at_one_is_that_model(alphas_cumprod):
    a, b = GaussianDenoiser(alphas_cumprod, 0.5), GaussianDenoiser(alphas_cumprod, 0.9)
    x = randn(2, 3, 8, 8, seed=7)
    assert torch.equal(core.MixedDenoiser([a, b], [0.0, 1.0])(x, 300), b(x, 300))
    assert torch.equal(core.MixedDenoiser([a, b], lambda t: (1.0, 0.0))(x, 300), a(x, 300))


def test_mixed_denoiser_weights_follow_the_timestep(alphas_cumprod):
    a, b = GaussianDenoiser(alphas_cumprod, 0.5), GaussianDenoiser(alphas_cumprod, 0.9)
    mixed = core.MixedDenoiser([a, b], lambda t: (t / 1000, 1 - t / 1000))
    x = randn(1, 3, 4, 4, seed=8)
    torch.testing.assert_close(mixed(x, 250), 0.25 * a(x, 250) + 0.75 * b(x, 250))
    with pytest.raises(ValueError, match="one gamma per denoiser"):
        core.MixedDenoiser([a, b], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        core.MixedDenoiser([], [])


# ----------------------------------------------------------------------------------------
# h-space: the UNet split at its bottleneck
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("out_channels", [3, 6])
def test_split_unet_equals_the_unet(out_channels):
    unet = tiny_unet(out_channels)
    x = randn(2, 3, 16, 16, seed=9)
    with torch.no_grad():
        ref = unet(x, torch.tensor([321, 321])).sample
        space = hspace.encode(unet, x, 321)
        ours = hspace.decode(unet, space.h, space.skips, space.temb)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert space.h.shape == (2, 16, 8, 8)


def test_delta_h_changes_the_output_and_zero_delta_does_not():
    unet = tiny_unet()
    x = randn(1, 3, 16, 16, seed=10)
    with torch.no_grad():
        plain = hspace.forward(unet, x, 100)
        h = hspace.encode(unet, x, 100).h
        assert torch.equal(hspace.forward(unet, x, 100, torch.zeros_like(h)), plain)
        assert (hspace.forward(unet, x, 100, randn(*h.shape, seed=11)) - plain).abs().max() > 1e-3


def test_split_refuses_what_it_cannot_split():
    with pytest.raises(ValueError, match="UNet2DModel"):
        hspace.encode(torch.nn.Linear(2, 2), torch.zeros(1, 3, 16, 16), 0)


# ----------------------------------------------------------------------------------------
# Edit-friendly replay from T_skip
# ----------------------------------------------------------------------------------------
def test_replay_from_step_zero_is_the_full_replay_and_any_skip_reconstructs(alphas_cumprod):
    den = core.PixelDenoiser(tiny_unet())
    x0 = randn(1, 3, 16, 16, seed=12).clamp(-1, 1)
    grid = core.even_grid(999, 10)
    inv = inversion.edit_friendly_invert(den, x0, grid, alphas_cumprod, generator=torch.Generator().manual_seed(0))
    full = inversion.ddpm_replay(den, inv, alphas_cumprod)
    assert torch.equal(inversion.ddpm_replay(den, inv, alphas_cumprod, skip=0), full)
    for skip in (3, 9):
        assert (inversion.ddpm_replay(den, inv, alphas_cumprod, skip=skip) - x0).abs().max() < 1e-4
    with pytest.raises(ValueError, match="T_skip"):
        inversion.ddpm_replay(den, inv, alphas_cumprod, skip=10)


# ----------------------------------------------------------------------------------------
# The guidance pieces
# ----------------------------------------------------------------------------------------
def test_guidance_pieces_by_hand():
    eps, grad, x = torch.tensor([0.5]), torch.tensor([2.0]), torch.tensor([1.0])
    alpha_bar_t, sigma = torch.tensor(0.36), torch.tensor(0.5)
    assert guidance.universal_eps(eps, grad, alpha_bar_t, 3.0).item() == pytest.approx(0.5 + 3 * 0.8 * 2)
    assert guidance.mean_shift(x, grad, sigma, 3.0).item() == pytest.approx(1 - 3 * 0.25 * 2)
    assert guidance.nudge(x, grad, alpha_bar_t, 3.0).item() == pytest.approx(1 - 3 * 2 * 0.36 ** 2)
    assert guidance.z_nudge(x, grad, alpha_bar_t, 3.0).item() == pytest.approx(1 - 3 * 2 * 0.36 ** 2)


def test_z_nudge_replays_exactly_at_zero_strength_and_moves_colour_otherwise(alphas_cumprod):
    den = GaussianDenoiser(alphas_cumprod)
    x0 = (randn(2, 3, 8, 8, seed=13) * 0.5).clamp(-1, 1)
    grid = core.even_grid(999, 20)
    inv = inversion.edit_friendly_invert(den, x0, grid, alphas_cumprod, generator=torch.Generator().manual_seed(1))
    loss = guidance.colour_loss(0, 1.0)

    def run(strength):
        return guidance.guided_sample(den, inv.x_T, grid, alphas_cumprod, loss, guidance.Guidance(strength, "z_nudge"),
                                      noises=inv.zs, sigmas=inv.sigmas).x0

    assert torch.equal(run(0.0), inversion.ddpm_replay(den, inv, alphas_cumprod))
    assert (run(30.0)[:, 0].mean() - x0[:, 0].mean()).item() > 0.1


# ----------------------------------------------------------------------------------------
# The one training loop
# ----------------------------------------------------------------------------------------
def test_fit_runs_a_step_function_that_owns_several_backward_passes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with config.seeded(0):
        model = torch.nn.Linear(3, 1)
    accelerator = loop.make_accelerator(bf16=False)
    optim = loop.OptimConfig(learning_rate=0.2, total_steps=40, warmup_steps=2)
    optimizer, schedule = loop.build_optimizer(model.parameters(), optim)
    model, optimizer = accelerator.prepare(model, optimizer)
    x = randn(16, 3, seed=14)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])

    def step_fn():  # a "trajectory" of two chunks, each with its own backward (gradients add up)
        total = 0.0
        for chunk in (slice(0, 8), slice(8, 16)):
            loss = (model(x[chunk]) - y[chunk]).pow(2).mean() / 2
            accelerator.backward(loss)
            total += loss.item()
        return total

    result = loop.fit(model=model, optimizer=optimizer, schedule=schedule, accelerator=accelerator, step_fn=step_fn,
                      total_steps=40, grad_clip=optim.grad_clip, log_every=10, batch_size=16, progress=False)
    assert result.steps == 40 and len(result.losses) == 4
    assert result.losses[-1] < 0.1 * result.losses[0]
    assert list(tmp_path.iterdir()) == []  # no workdir: nothing written anywhere


def test_seeded_leaves_the_global_rng_as_it_was():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with config.seeded(0):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected)
    with config.seeded(0):
        assert torch.equal(torch.rand(3), inside)
