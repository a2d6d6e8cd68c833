"""DiffusionCLIP (methods/diffusionclip.py) on a tiny random UNet and a random tiny CLIP."""

import pytest
import torch
from diffusers import DDPMScheduler

from fashionlab import config
from fashionlab.data import garments
from fashionlab.diffusion import core
from fashionlab.methods import diffusionclip
from fashionlab.models.clip import create_clip
from tests.test_diffusion_engine import tiny_unet


@pytest.fixture(scope="module")
def scheduler():
    return DDPMScheduler(num_train_timesteps=1000)


@pytest.fixture(scope="module")
def bundle():
    with config.seeded(0):
        return create_clip("garments-clip-s")


def images(n=4, size=16):
    return garments.render_batch([garments.spec_for(7, i) for i in range(n)], size)


FAST = diffusionclip.DiffusionCLIPConfig(depth=300, inv_steps=4, gen_steps=3, test_gen_steps=4, learning_rate=1e-3,
                                         batch_size=2)


def test_bad_text_pairs_fail_clearly():
    with pytest.raises(ValueError, match="same text"):
        diffusionclip.TextPair("a t-shirt", "A  T-shirt")
    with pytest.raises(ValueError, match="non-empty"):
        diffusionclip.TextPair("", "a striped t-shirt")
    with pytest.raises(ValueError, match="non-empty"):
        diffusionclip.TextPair("a t-shirt", None)
    with pytest.raises(ValueError, match="value for pattern"):
        diffusionclip.GarmentEdit("pattern", "tartan")
    with pytest.raises(ValueError, match="attribute must be one of"):
        diffusionclip.GarmentEdit("mood", "happy")
    with pytest.raises(ValueError, match="does not apply"):
        diffusionclip.GARMENT_EDITS["long-sleeve"].text_pair("skirt")


def test_text_pairs_are_worded_on_the_garment():
    edits = diffusionclip.GARMENT_EDITS
    assert edits["striped"].text_pair("dress") == diffusionclip.TextPair("a plain dress", "a striped dress")
    assert edits["sketch"].text_pair("shirt") == diffusionclip.TextPair("a photo of a shirt", "a sketch of a shirt")
    assert edits["pocket"].text_pair("t-shirt") == diffusionclip.TextPair("a t-shirt", "a t-shirt with a pocket")
    assert edits["long-sleeve"].text_pair("t-shirt").target == "a long-sleeve t-shirt"
    spec = garments.default_spec("t-shirt").edit(pattern="striped")
    assert not edits["striped"].applies_to(spec) and edits["pocket"].applies_to(spec)
    assert edits["pocket"].apply(spec).extras == ("pocket",)


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="loss_form"):
        diffusionclip.DiffusionCLIPConfig(loss_form="l2")
    with pytest.raises(ValueError, match="mode must be one of"):
        diffusionclip.DiffusionCLIPConfig(mode="fast")
    with pytest.raises(ValueError, match="gen_steps must be in"):
        diffusionclip.DiffusionCLIPConfig(depth=30, inv_steps=10, test_gen_steps=10, gen_steps=40)


@pytest.mark.parametrize("mode", diffusionclip.MODES)
def test_finetune_changes_a_copy_and_lowers_the_loss(scheduler, bundle, mode):
    unet = tiny_unet()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    x = images()
    pairs = [diffusionclip.GARMENT_EDITS["striped"].text_pair(garments.spec_for(7, i).category) for i in range(4)]
    cfg = diffusionclip.DiffusionCLIPConfig(**{**FAST.__dict__, "mode": mode, "epochs": 3})
    result = diffusionclip.finetune(unet, scheduler, bundle, x, pairs, cfg)
    assert all(torch.equal(v, unet.state_dict()[k]) for k, v in before.items())  # the original is untouched
    assert any(not torch.equal(v, result.unet.state_dict()[k]) for k, v in before.items())
    calls = 1 if mode == "chain" else cfg.gen_steps
    assert result.steps == cfg.epochs * 2 * calls and len(result.losses) == cfg.epochs * 2
    assert all(v == v for v in result.losses) and not result.unet.training
    base = core.PixelDenoiser(unet, scheduler)
    edited = diffusionclip.edit(base, core.PixelDenoiser(result.unet, scheduler), scheduler.alphas_cumprod, x, cfg)
    recon = diffusionclip.edit(base, base, scheduler.alphas_cumprod, x, cfg)  # the same path, not fine-tuned
    assert edited.shape == x.shape
    # the fine-tuned weights, not only the final clamp, shape the output (measured: about 0.2)
    assert float((edited - recon).abs().mean()) > 0.01


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for the backward pass while ``fn`` runs (peak of the graph)."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


def test_per_step_mode_keeps_one_step_of_graph(scheduler):
    unet = tiny_unet()
    den = core.PixelDenoiser(unet, scheduler)
    grid = core.diffusionclip_grid(300, 6)
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    chain = saved_bytes(lambda: core.sample_with_grad(den, x_T, grid, scheduler.alphas_cumprod).x0.sum().backward())

    def on_step(i, t, step):
        step.x0_pred.sum().backward()

    def run():
        core.sample_with_grad(den, x_T, grid, scheduler.alphas_cumprod, on_step=on_step)

    per_step = saved_bytes(run) / 6  # the hook counts every step's graph; only one is alive at a time
    assert per_step < 0.5 * chain


def test_strength_mixing_interpolates_between_original_and_finetuned(scheduler):
    base, tuned = core.PixelDenoiser(tiny_unet(seed=0), scheduler), core.PixelDenoiser(tiny_unet(seed=1), scheduler)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(diffusionclip.mixed([tuned, base], [1.0, 0.0])(x, 200), tuned(x, 200))
        assert torch.equal(diffusionclip.mixed([tuned, base], [0.0, 1.0])(x, 200), base(x, 200))


def test_latent_optimisation_and_translation_run(scheduler, bundle):
    den = core.PixelDenoiser(tiny_unet(), scheduler)
    x = images(2)
    out = diffusionclip.latent_optimisation(den, scheduler.alphas_cumprod, bundle, x, "a striped t-shirt", FAST,
                                            iterations=3)
    assert out.edited.shape == x.shape and len(out.losses) == 3
    with pytest.raises(ValueError, match="targets must be"):
        diffusionclip.latent_optimisation(den, scheduler.alphas_cumprod, bundle, x, ["a", "b", "c"], FAST)
    bridge, translated = diffusionclip.translate(den, den, scheduler.alphas_cumprod, x, t_s=200, sde_steps=4, cfg=FAST,
                                                 generator=torch.Generator().manual_seed(0))
    assert bridge.shape == translated.shape == x.shape
    with pytest.raises(ValueError, match="t_s must be"):
        diffusionclip.translate(den, den, scheduler.alphas_cumprod, x, t_s=0)


def test_full_profile_path_the_papers_setting_on_random_twins(tmp_path, full_profile):
    """The chapter's `full` path, "face" -> "angry face" with a pixel DDPM in the hub layout of
    google/ddpm-celebahq-256 (flat: config.json, weights and scheduler_config.json at its root) and
    open_clip ViT-B-16-quickgelu: random-weight twins, one step."""
    from fashionlab.zoo import loaders, twins

    ddpm = loaders.load("garments-ddpm-64", device="cpu", source=twins.ddpm_twin(tmp_path / "ddpm"))
    bundle = loaders.load("garments-clip-s", device="cpu", pretrained=str(twins.clip_twin(tmp_path / "vit.safetensors")))
    assert ddpm.profile == bundle.profile == "full" and bundle.image_size == 224
    face = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cfg = diffusionclip.DiffusionCLIPConfig(depth=300, inv_steps=3, gen_steps=2, test_gen_steps=3, batch_size=1,
                                            learning_rate=1e-4)
    result = diffusionclip.finetune(ddpm.unet, ddpm.scheduler, bundle, face, [diffusionclip.TextPair("face", "angry face")],
                                    cfg)
    assert result.steps == 1 and result.losses[0] == result.losses[0]
    with pytest.raises(ValueError, match="fine-tune the full base yourself"):
        loaders.load("garments-dclip-striped")


def test_shipped_learning_rates_are_the_committed_sweeps_choice():
    from fashionlab.experiments import ch07_diffusionclip
    from fashionlab.zoo import recipes

    sweep = ch07_diffusionclip.read_results("sweep")
    for edit in ch07_diffusionclip.EDITS:
        assert recipes.RECIPES[f"garments-dclip-{edit}"].train.learning_rate == ch07_diffusionclip.choose_lr(sweep, edit)
