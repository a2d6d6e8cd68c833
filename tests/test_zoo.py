"""Model zoo: tiny files with sha256, full loaders against random-weight models, the training loop's resume."""

import json
from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from fashionlab.data import garments
from fashionlab.data import transforms
from fashionlab.diffusion import core
from fashionlab.metrics import psnr
from fashionlab.train import ddpm as ddpm_training
from fashionlab.train import loop
from fashionlab.zoo import export
from fashionlab.zoo import loaders
from fashionlab.zoo import recipes
from fashionlab.zoo import registry


def small_unet(out_channels: int = 3) -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(sample_size=16, in_channels=3, out_channels=out_channels, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=4, attention_head_dim=8)


@pytest.mark.parametrize("out_channels", [3, 6])
def test_full_loader_reads_the_hub_layout(tmp_path, full_profile, out_channels):
    """The 'full' code path on a random model of the same class and layout as the hub checkpoint:
    google/ddpm-celebahq-256 is flat (config.json, diffusion_pytorch_model.bin and
    scheduler_config.json at its root; diffusers' own examples load it with no subfolder)."""
    unet = small_unet(out_channels)
    unet.save_pretrained(tmp_path, safe_serialization=False)
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "diffusion_pytorch_model.bin", "scheduler_config.json"}
    assert registry.entry("garments-ddpm-64").full_subfolders is None
    model = loaders.load_pixel_ddpm("garments-ddpm-64", source=tmp_path, device="cpu")
    assert model.profile == "full" and model.image_size == 16
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        eps = core.PixelDenoiser(model.unet, model.scheduler)(x, 10)
        ref = unet.eval()(x, torch.tensor([10])).sample[:, :3]
    assert eps.shape == x.shape
    torch.testing.assert_close(eps, ref)


@pytest.mark.network_probe
def test_full_load_fails_fast_offline(full_profile):
    import time

    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="use the offline 'tiny' profile|Use the offline 'tiny' profile"):
        loaders.load_pixel_ddpm("garments-ddpm-64", device="cpu")
    assert time.perf_counter() - start < 5.0


def _export_small(tmp_path: Path) -> tuple[Path, Path, UNet2DModel]:
    unet = small_unet()
    weights_dir, manifest = tmp_path / "weights", tmp_path / "MANIFEST.json"
    cfg = {"unet": dict(unet.config), "scheduler": {"num_train_timesteps": 1000}}
    cfg["unet"] = {k: v for k, v in cfg["unet"].items() if not k.startswith("_")}
    export.export_weights("garments-ddpm-64", unet, cfg, {"recipe": "test"}, weights_dir, manifest)
    return weights_dir, manifest, unet


def test_tiny_export_and_load_round_trip(tmp_path, tiny_profile):
    weights_dir, manifest, unet = _export_small(tmp_path)
    entry = json.loads(manifest.read_text())["models"]["garments-ddpm-64"]
    assert entry["sha256"] == registry.sha256_of(weights_dir / "garments-ddpm-64.safetensors")
    model = loaders.load_pixel_ddpm(device="cpu", weights_dir=weights_dir, manifest_path=manifest)
    for p, q in zip(model.unet.parameters(), unet.parameters()):
        assert p.dtype == torch.float32
        torch.testing.assert_close(p, q.half().float())


def test_corrupt_or_missing_weights_give_clear_errors(tmp_path, tiny_profile):
    weights_dir, manifest, _ = _export_small(tmp_path)
    path = weights_dir / "garments-ddpm-64.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch"):
        loaders.load_pixel_ddpm(device="cpu", weights_dir=weights_dir, manifest_path=manifest)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="missing file"):
        loaders.load_pixel_ddpm(device="cpu", weights_dir=weights_dir, manifest_path=manifest)
    with pytest.raises(FileNotFoundError, match="has not been trained and exported"):
        loaders.load_pixel_ddpm(device="cpu", weights_dir=weights_dir, manifest_path=tmp_path / "none.json")
    with pytest.raises(ValueError, match="unknown zoo model"):
        loaders.load_pixel_ddpm("garments-gan")


def _train(workdir: Path, max_steps: int, resume: bool) -> None:
    cfg = ddpm_training.DDPMTrainConfig(batch_size=4, learning_rate=1e-3, total_steps=10, warmup_steps=2, bf16=False,
                          checkpoint_minutes=1e9, log_every=1)
    sampler = recipes.garments_batch_sampler(seed=0, size=16, data_size=1000, domain="in")
    ddpm_training.train_ddpm(small_unet(), DDPMScheduler(num_train_timesteps=1000), sampler, cfg, workdir,
               max_steps=max_steps, resume=resume, progress=False)


def test_training_killed_and_resumed_equals_uninterrupted(tmp_path):
    _train(tmp_path / "straight", 3, resume=False)
    _train(tmp_path / "resumed", 1, resume=False)
    _train(tmp_path / "resumed", 2, resume=True)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for x, y in zip(a["ema"], b["ema"]):
        assert torch.equal(x, y)
    assert torch.equal(a["data_rng"], b["data_rng"]) and torch.equal(a["noise_rng"], b["noise_rng"])
    lines_a = (tmp_path / "straight" / "loss.csv").read_text().splitlines()
    lines_b = (tmp_path / "resumed" / "loss.csv").read_text().splitlines()
    assert [l.split(",")[:2] for l in lines_a] == [l.split(",")[:2] for l in lines_b]
    ema_model = ddpm_training.load_ema_weights(small_unet(), tmp_path / "straight")
    assert torch.equal(next(ema_model.parameters()).detach(), a["ema"][0])
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        _train(tmp_path / "empty", 1, resume=True)


def test_large_checkpoints_are_saved_in_parts_and_read_back(tmp_path):
    """A resume state over the part size is split (so it can be committed under GitHub's file limit),
    read back bit for bit, replaced cleanly by the next save, and refused when a part is damaged."""

    path = tmp_path / "checkpoint.pt"
    state = {"model": {"w": torch.randn(3000, generator=torch.Generator().manual_seed(0))}, "step": 7}
    loop.atomic_save(state, path, part_bytes=5000)
    parts = json.loads((tmp_path / "checkpoint.pt.parts.json").read_text())["parts"]
    assert not path.exists() and len(parts) >= 3 and loop.state_exists(path)
    assert all((tmp_path / name).stat().st_size <= 5000 for name in parts)
    back = loop.load_state(path)
    assert back["step"] == 7 and torch.equal(back["model"]["w"], state["model"]["w"])
    state["step"] = 8
    loop.atomic_save(state, path, part_bytes=5000)  # the next save replaces every old part
    assert loop.load_state(path)["step"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        json.loads((tmp_path / "checkpoint.pt.parts.json").read_text())["parts"] + ["checkpoint.pt.parts.json"])
    loop.atomic_save({"step": 9}, path)  # small again: one file, no parts left behind
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"] and loop.load_state(path)["step"] == 9
    loop.atomic_save(state, path, part_bytes=5000)
    first = tmp_path / json.loads((tmp_path / "checkpoint.pt.parts.json").read_text())["parts"][0]
    first.write_bytes(first.read_bytes()[:-1] + b"x")
    with pytest.raises(ValueError, match="do not match their sha256"):
        loop.load_state(path)


def test_checkpoints_load_without_running_pickled_code(tmp_path):
    """load_state reads with weights_only=True: tensors and plain containers (optimiser states, RNG
    states, numpy's bit-generator dicts) load; a pickled class is refused instead of being run."""
    import numpy as np

    path = tmp_path / "checkpoint.pt"
    rng = np.random.default_rng([0, 2])
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))])
    plain = {"step": 3, "rng": torch.get_rng_state(), "caption_rng": rng.bit_generator.state,
             "optimizer": optimizer.state_dict(), "config": {"lr": 1e-3, "betas": (0.9, 0.99), "name": None}}
    loop.atomic_save(plain, path)
    back = loop.load_state(path)
    assert back["caption_rng"] == rng.bit_generator.state and back["config"]["betas"] == (0.9, 0.99)
    loop.atomic_save({"step": 4, "where": Path("elsewhere")}, path)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        loop.load_state(path)


def test_recipe_smoke_run(tmp_path):
    """The real garments-ddpm-64 recipe, run from the command line for two steps (the full run is hours)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "fashionlab.zoo", "train", "garments-ddpm-64", "--max-steps", "2",
           "--workdir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "step 2," in done.stdout
    assert (tmp_path / "checkpoint.pt").is_file()
    assert len((tmp_path / "loss.csv").read_text().splitlines()) == 2  # header + the final row
    with pytest.raises(ValueError, match="unknown recipe"):
        recipes.get_recipe("garments-gan")


def test_quality_check_runs_every_sampler_from_the_same_noise():
    """evaluate_pixel_ddpm on a random 16-px UNet: one rate per sampler, a real-garments.render rate of 1,
    and clipped ancestral samples inside [-1, 1]."""
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    samplers = {"ddim4": (4, 0.0, False), "ddpm4_clip": (4, 1.0, True), "ddim4_again": (4, 0.0, False)}
    metrics, samples = recipes.evaluate_pixel_ddpm(small_unet().eval(), scheduler, n_samples=4, n_roundtrip=2,
                                                    roundtrip_steps=4, batch_size=2, samplers=samplers,
                                                    progress=False)
    assert set(samples) == set(samplers)
    assert torch.equal(samples["ddim4"], samples["ddim4_again"])  # same x_T, deterministic
    assert not torch.equal(samples["ddim4"], samples["ddpm4_clip"])
    assert metrics["single_region_rate_real_renders"] == 1.0
    assert {f"single_region_rate_{k}" for k in samplers} <= set(metrics)
    # the round trip is S_inv = S_gen = roundtrip_steps from t0 = 999 on held-out garments of seed 1
    from fashionlab.diffusion import core, inversion

    unet = small_unet().eval()
    denoiser = core.PixelDenoiser(unet, scheduler)
    held = garments.render_batch([garments.spec_for(1, i, "in") for i in range(2)], 16)
    grid = core.diffusionclip_grid(999, 4)
    with torch.no_grad():
        x_T = inversion.ddim_invert(denoiser, held, grid[1:], scheduler.alphas_cumprod).x_t
        rec = inversion.ddim_generate(denoiser, x_T, grid, scheduler.alphas_cumprod)
    assert metrics["ddim_roundtrip_psnr_db"] == pytest.approx(float(psnr(rec.clamp(-1, 1), held).mean()), abs=0.01)


class _OracleV(torch.nn.Module):
    """Predicts the exact v = (sqrt(a) x_t - c) / sqrt(1 - a) for data that is the constant image c."""

    def __init__(self, c: float, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.c, self.a = c, alphas_cumprod
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # something for the optimiser

    def forward(self, x, t):
        from types import SimpleNamespace

        a = self.a[t].view(-1, 1, 1, 1)
        return SimpleNamespace(sample=(a.sqrt() * x - self.c) / (1 - a).sqrt() + 0 * self.dummy)


@pytest.mark.parametrize("prediction_type,zero_loss", [("v_prediction", True), ("epsilon", False)])
def test_training_target_follows_the_prediction_type(tmp_path, prediction_type, zero_loss):
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type)
    cfg = ddpm_training.DDPMTrainConfig(batch_size=4, total_steps=1, warmup_steps=0, bf16=False, checkpoint_minutes=1e9, log_every=1)
    result = ddpm_training.train_ddpm(_OracleV(0.3, scheduler.alphas_cumprod), scheduler,
                        lambda g, b: torch.full((b, 3, 8, 8), 0.3), cfg, tmp_path, progress=False)
    assert (result.final_loss < 1e-8) == zero_loss


def test_shipped_models_verify_and_load(tiny_profile):
    """Every model in the manifest matches its sha256 and loads (the CLI's ``verify``)."""
    results = loaders.verify_all()
    assert {"garments-ddpm-64", "garments-oracle", "garments-parser", "garments-clip-s",
            "garments-vit-sup-s"} <= set(results)
    assert all(status == "ok" for status in results.values()), results


def test_shipped_category_vit_knows_categories(tiny_profile):
    """garments-vit-sup-s (chapter 05's "ImageNet" backbone) names the category and garments.render style
    of renders from a seed it never saw."""

    net = loaders.load_evaluator("garments-vit-sup-s", "cpu")
    cache = garments.render_cache(seed=777, n=60, domain="all", progress=False)
    with torch.no_grad():
        logits = net(transforms.to_model_input(cache.images))
    category = (logits["category"].argmax(1) == cache.attributes[:, garments.ATTRIBUTES.index("category")]).float().mean()
    style = (logits["style"].argmax(1) == cache.styles).float().mean()
    assert category >= 0.8 and style >= 0.9, (float(category), float(style))


def test_verify_fails_on_a_missing_or_empty_manifest(tmp_path, tiny_profile, capsys, monkeypatch):
    """A missing manifest means the package data did not install: verify must not report success."""
    from fashionlab.zoo.__main__ import main

    with pytest.raises(FileNotFoundError, match="manifest"):
        loaders.verify_all(tmp_path, tmp_path / "MANIFEST.json")
    (tmp_path / "MANIFEST.json").write_text('{"models": {}}')
    with pytest.raises(FileNotFoundError, match="lists no models"):
        loaders.verify_all(tmp_path, tmp_path / "MANIFEST.json")
    monkeypatch.setattr(registry, "MANIFEST_PATH", tmp_path / "gone.json")
    assert main(["verify"]) == 1
    assert "manifest" in capsys.readouterr().err


def test_one_entry_point_loads_every_kind_and_cards_describe_them(tiny_profile):
    from fashionlab import zoo
    from fashionlab.models.clip import CLIPBundle

    assert isinstance(zoo.load("garments-ddpm-64", device="cpu"), loaders.PixelDDPM)
    assert isinstance(zoo.load("garments-clip-s", device="cpu"), CLIPBundle)
    oracle = zoo.load("garments-oracle", device="cpu")
    assert isinstance(oracle, torch.nn.Module) and not oracle.training
    assert set(loaders.LOADERS) == {entry.kind for entry in registry.REGISTRY.values()}
    card = zoo.model_card("garments-ddpm-64")
    assert card["shipped"] and card["kind"] == "pixel-ddpm" and card["full"] == "google/ddpm-celebahq-256"
    assert card["sha256"] == registry.read_manifest()["models"]["garments-ddpm-64"]["sha256"]
    assert card["loss_log"] is not None and card["loss_log"].is_file()
    assert zoo.model_card("garments-oracle")["loss_log"] is None  # the evaluators ship no loss curve
    with pytest.raises(ValueError, match="unknown zoo model 'garments-nope'"):
        zoo.load("garments-nope")
    with pytest.raises(ValueError, match="unknown zoo model"):
        zoo.model_card("garments-nope")
    with pytest.raises(ValueError, match="profile must be one of"):
        zoo.load("garments-oracle", profile="huge")


def test_apply_delta_reproduces_the_finetuned_unet():
    import copy

    from tests.test_diffusion_engine import tiny_unet

    base, tuned = tiny_unet(seed=0), tiny_unet(seed=1)
    delta = {k: v - base.state_dict()[k] for k, v in tuned.state_dict().items() if v.is_floating_point()}
    rebuilt = loaders.apply_delta(copy.deepcopy(base), delta)
    for key, value in tuned.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[key], value)
    with pytest.raises(ValueError, match="another model"):
        loaders.apply_delta(copy.deepcopy(base), {"nope": torch.zeros(1)})


@pytest.mark.parametrize("name", [n for n, e in registry.REGISTRY.items() if e.kind == "pixel-ddpm-delta"])
def test_shipped_finetunes_reproduce_their_recorded_output(name, tiny_profile):
    """Base + shipped fp16 delta gives the output recorded at export (chapter 07's fine-tunes)."""
    record = registry.read_manifest()["models"].get(name)
    if record is None:
        pytest.fail(f"{name} is registered but not shipped")
    model = loaders.load(name, device="cpu")
    fingerprint = recipes.output_fingerprint(model.unet)
    recorded = record["metrics"]["fingerprint"]
    assert fingerprint["mean"] == pytest.approx(recorded["mean"], abs=1e-5)
    assert fingerprint["abs_mean"] == pytest.approx(recorded["abs_mean"], rel=1e-4)
    assert fingerprint["first"] == pytest.approx(recorded["first"], abs=1e-4)
    base = loaders.load(registry.entry(name).base, device="cpu")
    assert recipes.output_fingerprint(base.unet)["mean"] != pytest.approx(recorded["mean"], abs=1e-6)
    with pytest.raises(ValueError, match="fine-tune the full base yourself"):
        loaders.load(name, profile="full")


@pytest.mark.parametrize("name", ["garments-dclip-striped", "garments-zip-blue", "garments-asyrp-pocket",
                                  "garments-attrnet"])
@pytest.mark.parametrize("flags", [["--minutes", "5"], ["--max-steps", "10"], ["--resume"]])
def test_short_recipes_refuse_the_flags_they_cannot_honour(name, flags, capsys):
    from fashionlab.zoo.__main__ import main

    assert main(["train", name, *flags]) == 2  # before any training starts
    err = capsys.readouterr().err
    assert err.startswith("error: recipe") and "short run" in err and flags[0].lstrip("-").replace("-", "_") in err


@pytest.mark.parametrize("flags, named", [(["--minutes", "nan"], "minutes"), (["--minutes", "-1"], "minutes"),
                                          (["--max-steps", "0"], "max_steps")])
def test_long_recipes_refuse_bad_budgets(flags, named, capsys):
    from fashionlab.zoo.__main__ import main

    assert main(["train", "garments-ddpm-64", *flags]) == 2
    assert f"error: {named} must be" in capsys.readouterr().err
