"""The latent text-to-image model of chapter 08: the converted text tower and tokenizer, the
training losses with resume, and the pipeline assembled from zoo parts (random weights, tiny sizes)."""

import dataclasses
import json

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from fashionlab import config
from fashionlab.methods.text_to_image import generate
from fashionlab.models import sd
from fashionlab.models.clip import create_clip
from fashionlab.train import latent
from fashionlab.zoo import export, loaders
from fashionlab.zoo.recipes import SD_SCHEDULE

PROMPTS = ["a red t-shirt", "A SKETCH of a pair of striped trousers with a pocket, loose-fit, denim!!",
           "dress: blue, polka-dot"]


@pytest.fixture(scope="module")
def clip():
    with config.seeded(0):
        return create_clip("garments-clip-s")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return sd.clip_tokenizer(tmp_path_factory.mktemp("tok"), 32)


def test_tokenizer_matches_open_clip_up_to_end_of_text(clip, tokenizer):
    ids = tokenizer(PROMPTS, padding="max_length", max_length=32, truncation=True, return_tensors="pt").input_ids
    ref = clip.tokenizer(PROMPTS)
    eot = tokenizer.eos_token_id
    assert eot == 49407 and ids.shape == ref.shape
    for ours, theirs in zip(ids, ref):
        end = int((theirs == eot).nonzero()[0])
        assert torch.equal(ours[:end + 1], theirs[:end + 1])
        assert (ours[end + 1:] == eot).all()  # padded with end-of-text, as Stable Diffusion 1.x pads


def test_converted_text_tower_gives_the_open_clip_features(clip, tokenizer):
    tokens = clip.tokenizer(PROMPTS)
    ids = tokenizer(PROMPTS, padding="max_length", max_length=32, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        ours = sd.text_encoder_from_clip(clip.model, with_projection=True)(ids).text_embeds
        theirs = clip.model.encode_text(tokens)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
        # the hidden states Stable Diffusion's UNet reads: open_clip's ln_final output (same up to end of text)
        model = clip.model
        x = model.transformer(model.token_embedding(tokens) + model.positional_embedding, attn_mask=model.attn_mask)
        states = sd.text_encoder_from_clip(model)(ids).last_hidden_state
        torch.testing.assert_close(states[0, :7], model.ln_final(x)[0, :7], atol=1e-5, rtol=1e-4)


def test_text_tower_conversion_refuses_other_activations(clip):
    import copy

    other = copy.deepcopy(clip.model)
    for block in other.transformer.resblocks:
        block.mlp.gelu = torch.nn.SiLU()
    with pytest.raises(ValueError, match="nn.GELU"):
        sd.text_encoder_from_clip(other)


def small_vae() -> AutoencoderKL:
    with config.seeded(0):
        return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=32, layers_per_block=1,
                             down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                             block_out_channels=(8, 8, 8), norm_num_groups=4)


UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=64, attention_head_dim=8, norm_num_groups=8)


def test_vae_and_ldm_training_write_resumable_checkpoints(tmp_path, clip, tokenizer):
    images = lambda g, b: torch.rand(b, 3, 32, 32, generator=g) * 2 - 1  # noqa: E731
    cfg = latent.VAETrainConfig(batch_size=2, total_steps=3, warmup_steps=0, bf16=False, log_every=1)
    steps, _ = latent.train_vae(small_vae(), images, cfg, tmp_path / "vae", max_steps=2, progress=False)
    assert steps == 2
    steps, _ = latent.train_vae(small_vae(), images, cfg, tmp_path / "vae", resume=True, progress=False)
    assert steps == 3 and "l1" in (tmp_path / "vae" / "loss.csv").read_text().splitlines()[0]
    from diffusers import DDPMScheduler

    with config.seeded(0):
        unet = UNet2DConditionModel(**UNET)
    captioned = lambda g, b: (images(g, b), ["a red dress"] * b)  # noqa: E731
    lcfg = latent.LDMTrainConfig(batch_size=2, total_steps=2, warmup_steps=0, bf16=False, log_every=1)
    steps, _ = latent.train_ldm(unet, DDPMScheduler(**SD_SCHEDULE), small_vae(), tokenizer,
                                sd.text_encoder_from_clip(clip.model), captioned, lcfg, tmp_path / "ldm", progress=False)
    state = torch.load(tmp_path / "ldm" / "checkpoint.pt", weights_only=False)
    assert steps == 2 and len(state["ema"]) == len(list(unet.parameters()))


class _ExactV(torch.nn.Module):
    """A 'UNet' that knows the clean latent and returns the exact v (or eps) target."""

    def __init__(self, z0, alphas_cumprod, v: bool):
        super().__init__()
        self.z0, self.abar, self.v = z0, alphas_cumprod, v

    def forward(self, z_t, t, encoder_hidden_states):
        a = self.abar[t].view(-1, 1, 1, 1)
        eps = (z_t - a.sqrt() * self.z0) / (1 - a).sqrt()
        out = a.sqrt() * eps - (1 - a).sqrt() * self.z0 if self.v else eps
        return type("Out", (), {"sample": out})()


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_ldm_loss_targets_follow_the_prediction_type(prediction_type):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(**{**SD_SCHEDULE, "prediction_type": prediction_type})
    z0 = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(0)
    right = latent.ldm_loss(_ExactV(z0, scheduler.alphas_cumprod, prediction_type == "v_prediction"), scheduler, z0,
                            None, g)
    wrong = latent.ldm_loss(_ExactV(z0, scheduler.alphas_cumprod, prediction_type != "v_prediction"), scheduler, z0,
                            None, torch.Generator().manual_seed(0))
    assert float(right) < 1e-8 < float(wrong)


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory, clip):
    """A weights folder holding random garments-vae, garments-clip-s and garments-sd-base."""
    root = tmp_path_factory.mktemp("zoo")
    weights_dir, manifest = root / "weights", root / "MANIFEST.json"
    vae = small_vae()
    vae_cfg = {k: v for k, v in vae.config.items() if not k.startswith("_")}
    export.export_weights("garments-vae", vae, {"vae": {**vae_cfg, "scaling_factor": 0.5}}, {}, weights_dir, manifest)
    export.export_weights("garments-clip-s", clip.model, {"open_clip_model": "garments-clip-s"}, {}, weights_dir,
                          manifest)
    with config.seeded(0):
        unet = UNet2DConditionModel(**UNET)
    cfg = {"unet": UNET, "scheduler": SD_SCHEDULE, "text": "garments-clip-s", "vae": "garments-vae"}
    export.export_weights("garments-sd-base", unet, cfg, {}, weights_dir, manifest)
    return weights_dir, manifest


def test_tiny_pipeline_assembles_generates_and_round_trips(tmp_path, tiny_zoo, tiny_profile):
    from diffusers import StableDiffusionPipeline

    weights_dir, manifest = tiny_zoo
    pipe = loaders.load("garments-sd-base", device="cpu", weights_dir=weights_dir, manifest_path=manifest)
    assert isinstance(pipe, StableDiffusionPipeline) and isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.vae.config.scaling_factor == 0.5 and pipe.vae_scale_factor == 4
    images = generate(pipe, PROMPTS[:2], seed=3, steps=3, guidance=3.0)
    assert images.shape == (2, 3, 32, 32) and (images[0] - images[1]).abs().mean() > 1e-3  # prompts matter
    # an image depends on its prompt and seed, not on the batch it came in
    torch.testing.assert_close(generate(pipe, PROMPTS[1], seed=4, steps=3, guidance=3.0), images[1:], atol=1e-5, rtol=0)
    # save_pretrained writes the hub layout; the full profile's loader reads it back to the same images
    pipe.save_pretrained(tmp_path / "pipe")
    again = loaders.load_sd("garments-sd-base", profile="full", device="cpu", source=tmp_path / "pipe")
    torch.testing.assert_close(generate(again, PROMPTS[:2], seed=3, steps=3, guidance=3.0), images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"prompts": []}, "non-empty list"), ({"prompts": ["  "]}, "empty or blank"), ({"steps": 0}, "steps must be"),
    ({"guidance": 0.5}, "guidance must be"), ({"seed": -1}, "seed must be")])
def test_generate_rejects_bad_arguments(kwargs, match, tiny_zoo, tiny_profile):
    weights_dir, manifest = tiny_zoo
    pipe = loaders.load("garments-sd-base", device="cpu", weights_dir=weights_dir, manifest_path=manifest)
    with pytest.raises((ValueError, TypeError), match=match):
        generate(pipe, **{"prompts": "a dress", **kwargs})


def test_vae_loader_checks_its_kind(tiny_zoo, tiny_profile):
    with pytest.raises(ValueError, match="not a vae"):
        loaders.load_vae("garments-oracle")


def _catalog_split(pipe, n: int, seed: int):
    from fashionlab.data import catalog, garments
    from fashionlab.methods import lora

    rows = catalog.make_catalog(n, seed=seed)
    images = garments.render_batch([garments.spec_for(seed, i) for i in range(n)], size=32)
    return lora.encode_split(pipe, images, [catalog.caption_from_row(r) for _, r in rows.iterrows()])


def test_lora_trains_saves_and_loads_back_exactly(tmp_path, tiny_zoo, tiny_profile):
    """Loaded adapter = in-memory adapter; disabled = base; the trainable count is the LoRA matrices'."""
    from fashionlab.methods import lora

    weights_dir, manifest = tiny_zoo
    load = lambda: loaders.load("garments-sd-base", device="cpu", weights_dir=weights_dir,  # noqa: E731
                                manifest_path=manifest)
    pipe, base = load(), load()
    prompt = "an image of a 2011 Casual Fall White Men's Sweater"
    before = generate(base, prompt, steps=3)
    train, val = _catalog_split(pipe, 6, 3), _catalog_split(pipe, 3, 4)
    cfg = lora.LoRAConfig(rank=2, alpha=4.0, learning_rate=1e-2, batch_size=4, epochs=2, save_epochs=(1, 2), bf16=False)
    run = lora.train_lora(pipe, train, cfg, tmp_path, validation=val, progress=False)
    expected = sum(m.in_features * 2 + 2 * m.out_features for name, m in base.unet.named_modules()
                   if isinstance(m, torch.nn.Linear) and name.endswith(lora.TARGET_MODULES))
    assert run.trainable_parameters == expected
    assert run.steps == 4 and set(run.validation) == {0, 1, 2} and set(run.saved) == {1, 2}
    tuned = generate(pipe, prompt, steps=3)
    assert (tuned - before).abs().max() > 1e-3  # the adapter changed the model
    base.load_lora_weights(run.saved[2], adapter_name="catalog")
    torch.testing.assert_close(generate(base, prompt, steps=3), tuned, atol=1e-5, rtol=0)
    base.disable_lora()
    torch.testing.assert_close(generate(base, prompt, steps=3), before, atol=1e-6, rtol=0)
    base.enable_lora()
    base.set_adapters(["catalog"], adapter_weights=[0.0])
    torch.testing.assert_close(generate(base, prompt, steps=3), before, atol=1e-5, rtol=0)
    # a run is repeatable: A's initialisation and every draw come from cfg.seed
    again = lora.train_lora(load(), train, cfg, validation=val, progress=False)
    assert again.losses == run.losses and again.validation == run.validation
    # gradient checkpointing (the full run's memory saver) recomputes activations: the same training
    checkpointed = load()
    ckpt = lora.train_lora(checkpointed, train, dataclasses.replace(cfg, gradient_checkpointing=True), progress=False)
    assert checkpointed.unet.is_gradient_checkpointing and not pipe.unet.is_gradient_checkpointing
    assert ckpt.losses == pytest.approx(run.losses, rel=1e-5, abs=1e-6)


def test_validation_loss_is_the_same_draw_every_call(tiny_zoo, tiny_profile):
    from diffusers import DDPMScheduler

    from fashionlab.methods import lora

    weights_dir, manifest = tiny_zoo
    pipe = loaders.load("garments-sd-base", device="cpu", weights_dir=weights_dir, manifest_path=manifest)
    val = _catalog_split(pipe, 5, 4)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    assert lora.validation_loss(pipe.unet, scheduler, val) == lora.validation_loss(pipe.unet, scheduler, val)


@pytest.mark.parametrize("kwargs, match", [({"rank": 0}, "rank must be"), ({"alpha": -1.0}, "alpha must be"),
                                           ({"learning_rate": 0}, "learning_rate must be"),
                                           ({"epochs": 0}, "epochs must be an int >= 1"), ({"save_epochs": (30,)}, "save_epochs")])
def test_lora_config_rejects_bad_settings(kwargs, match):
    from fashionlab.methods import lora

    with pytest.raises(ValueError, match=match):
        lora.LoRAConfig(**kwargs)


def test_command_line_generates_a_png_with_and_without_lora(tmp_path, tiny_zoo, tiny_profile, monkeypatch, capsys):
    from PIL import Image

    from fashionlab.__main__ import main
    from fashionlab.methods import lora
    from fashionlab.zoo import registry

    weights_dir, manifest = tiny_zoo
    monkeypatch.setattr(registry, "WEIGHTS_DIR", weights_dir)
    monkeypatch.setattr(registry, "MANIFEST_PATH", manifest)
    assert main(["generate", "a red dress", "--steps", "2", "--out", str(tmp_path / "a.png")]) == 0
    assert Image.open(tmp_path / "a.png").size == (32, 32)
    pipe = loaders.load("garments-sd-base", device="cpu")
    lora.add_lora(pipe.unet, lora.LoRAConfig(rank=2))
    path = lora.save_lora(pipe.unet, tmp_path / "adapter")
    assert main(["generate", "a red dress", "--steps", "2", "--lora", str(path), "--out", str(tmp_path / "b.png")]) == 0
    assert "LoRA" in capsys.readouterr().out
    assert main(["generate", " ", "--out", str(tmp_path / "c.png")]) == 2
    assert main(["generate", "a dress", "--lora", str(tmp_path / "nope")]) == 2
    assert main(["generate", "a dress", "--out", str(tmp_path / "c.jpg")]) == 2
    err = capsys.readouterr().err
    assert "prompt is empty" in err and "nor an existing path" in err and "garments-sd-lora-catalog" in err and ".png" in err
    assert main(["generate", "a dress", "--lora", "garments-sd-lora-catalog", "--profile", "full"]) == 1
    assert "tiny" in capsys.readouterr().err  # a zoo adapter is for the tiny base; no hub is probed
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    assert main(["generate", "a dress", "--steps", "2", "--lora", str(corrupt), "--out", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err
    assert "could not be read as a diffusers LoRA adapter" in err and "Traceback" not in err
    assert not (tmp_path / "d.png").exists()


@pytest.mark.parametrize("bad, named", [
    (["--steps", "0"], "--steps"), (["--steps", "100000"], "--steps"), (["--steps", "2.5"], "--steps"),
    (["--seed", "-2"], "--seed"), (["--guidance", "0.5"], "--guidance"), (["--guidance", "nan"], "--guidance"),
    (["--guidance", "inf"], "--guidance"), (["--lora-scale=-1e9"], "--lora-scale"),
    (["--lora-scale", "nan"], "--lora-scale")])
def test_command_line_refuses_bad_numbers_with_one_clear_line(bad, named, capsys):
    from fashionlab.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["generate", "a dress", *bad])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    value = bad[-1].split("=", 1)[-1]
    assert f"argument {named}: must be" in last and f"got {value!r}" in last, last


def test_ch08_runs_resume_and_grade_every_saved_epoch(tmp_path, tiny_zoo, tiny_profile):
    from fashionlab.experiments import ch08_lora
    from fashionlab.methods import lora

    weights_dir, manifest = tiny_zoo
    load = lambda: loaders.load("garments-sd-base", device="cpu", weights_dir=weights_dir,  # noqa: E731
                                manifest_path=manifest)
    configs = {"tiny": lora.LoRAConfig(rank=2, batch_size=3, epochs=2, save_epochs=(1, 2), bf16=False)}
    out = tmp_path / "08_runs.json"
    done = ch08_lora.run_runs(out, load_pipe=load, n_train=6, n_eval=6, configs=configs,
                              adapters_dir=tmp_path / "adapters", progress=False)
    assert set(done["runs"]) == {"base", "tiny"}
    run = done["runs"]["tiny"]
    assert run["steps"] == 4 and set(run["grades"]) == {"1", "2"} and set(run["validation_loss"]) == {"0", "1", "2"}
    assert set(run["grades"]["1"]) == {"val"} and set(run["grades"]["2"]) == {"val", "test"}
    for metric in ("fid", "kid"):  # jackknife intervals: centred on their estimate, of positive width
        value, low, high = run["grades"]["2"]["test"][metric]
        assert low < value < high and value - low == pytest.approx(high - value, rel=1e-3, abs=2e-3)
    stamp = out.stat().st_mtime_ns
    ch08_lora.run_runs(out, load_pipe=load, n_train=6, n_eval=6, configs=configs, adapters_dir=tmp_path / "adapters",
                       progress=False)
    assert out.stat().st_mtime_ns == stamp  # resumed: nothing left to run, nothing rewritten

    # regrading from the saved adapters reproduces the grades the runs wrote, and keeps the rest
    written = json.loads(out.read_text())
    regraded = ch08_lora.run_regrade(out, load_pipe=load, adapters_dir=tmp_path / "adapters")
    assert regraded["regraded"] == ["base", "tiny"] and regraded["runs"] == written["runs"]
    with pytest.raises(FileNotFoundError, match="saved adapters"):
        ch08_lora.run_regrade(out, load_pipe=load, adapters_dir=tmp_path / "elsewhere")

    # ship the chosen run's adapters to the zoo; the sd-lora loader puts them on the base, active
    assert ch08_lora.choose(done)[0] == "tiny"
    entries = ch08_lora.ship(done, tmp_path / "adapters", weights_dir, manifest,
                             shipped={2: "garments-sd-lora-catalog", 1: "garments-sd-lora-catalog-e1"})
    assert entries["garments-sd-lora-catalog"]["metrics"]["test"] == run["grades"]["2"]["test"]
    assert entries["garments-sd-lora-catalog-e1"]["training_steps"] == 2
    pipe = loaders.load("garments-sd-lora-catalog", device="cpu", weights_dir=weights_dir, manifest_path=manifest)
    assert pipe.get_active_adapters() == ["garments-sd-lora-catalog"]
    trained = load()
    trained.load_lora_weights(str(tmp_path / "adapters" / "tiny" / "epoch-2"), adapter_name="mine")
    shipped = {k.replace("garments-sd-lora-catalog", "x"): v for k, v in pipe.unet.state_dict().items() if "lora" in k}
    mine = {k.replace("mine", "x"): v for k, v in trained.unet.state_dict().items() if "lora" in k}
    assert shipped.keys() == mine.keys() and len(shipped) > 0
    for key, value in mine.items():  # the same adapter, rounded to fp16
        torch.testing.assert_close(shipped[key], value.half().float(), atol=0, rtol=0)
    pipe.disable_lora()
    torch.testing.assert_close(generate(pipe, PROMPTS[:1], seed=0, steps=2), generate(load(), PROMPTS[:1], seed=0, steps=2),
                               atol=0, rtol=0)
    with pytest.raises(ValueError, match="tiny"):
        loaders.load("garments-sd-lora-catalog", profile="full", weights_dir=weights_dir, manifest_path=manifest)

    # the compare part grades base and adapter on the same test rows, and FID on 3-image triplets
    record = ch08_lora.run_compare(tmp_path / "compare.json", load_base=load, n_eval=6, n_triplets=4,
                                   load_lora=lambda: loaders.load("garments-sd-lora-catalog", device="cpu",
                                                                  weights_dir=weights_dir, manifest_path=manifest))
    assert set(record["models"]) == {"base, catalog captions", "base, its own captions", "LoRA, catalog captions"}
    for row in record["models"].values():
        value, low, high = row["category_accuracy"]
        assert 0 <= low <= value <= high <= 1 and set(row) >= {"single_garment_rate", "kid", "fid"}
    assert len(record["fid3"]["base, catalog captions"]) == 4
    # one number per quantity: the base model's test grade is the same in both files
    base = record["models"]["base, catalog captions"]
    assert {k: base[k] for k in ("fid", "kid")} == done["runs"]["base"]["grades"]["0"]["test"]


def test_ch08_bench_runs_both_trainers_on_the_same_rows(tmp_path, tiny_zoo, tiny_profile):
    from fashionlab.experiments import ch08_lora

    weights_dir, manifest = tiny_zoo
    load = lambda: loaders.load("garments-sd-base", device="cpu", weights_dir=weights_dir,  # noqa: E731
                                manifest_path=manifest)
    record = ch08_lora.run_bench(tmp_path / "bench.json", load_pipe=load, rows=6, epochs=2, window=2, progress=False)
    assert record["steps"] == 4 and len(record["ours"]["window_losses"]) == len(record["reference"]["window_losses"]) == 2
    assert record["agree"] == (record["max_window_gap"] <= record["tolerance"]) and record["time_ratio"] > 0
    stored = json.loads((tmp_path / "bench.json").read_text())
    assert stored["ours"] == record["ours"] and stored["agree"] == record["agree"]
    assert ch08_lora.window_means([1.0, 3.0, 5.0, 7.0, 9.0], 2) == [2.0, 6.0]


def test_ch08_sweep_is_one_factor_at_a_time():
    from fashionlab.experiments import ch08_lora

    configs = ch08_lora.sweep_configs(seeds=(0,), repeat_seeds=(1,))
    assert len(configs) == 10  # base + 3 other ranks + 2 other batches + 3 other rates; base at seed 1
    assert list(configs.values())[-1].batch_size == 1  # the slowest run last
    assert sum(cfg.seed == 1 for cfg in configs.values()) == 1
    for cfg in configs.values():
        changed = [f for f in ch08_lora.FACTORS if getattr(cfg, f) != getattr(ch08_lora.BASE, f)]
        assert len(changed) <= 1


def test_full_vae_loader_reads_the_stable_diffusion_layout(tmp_path, full_profile):
    vae = small_vae()
    vae.save_pretrained(tmp_path / "vae")
    loaded = loaders.load_vae("garments-vae", source=tmp_path, device="cpu")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x).latent_dist.mean, vae.encode(x).latent_dist.mean)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        loaders.load_vae("garments-vae", source=tmp_path / "missing", device="cpu")


def test_prompt_box_generates_switches_the_adapter_and_reports_errors(tiny_zoo, tiny_profile):
    import matplotlib

    from fashionlab.methods import lora
    from fashionlab.widgets import prompt_box, prompt_figure

    matplotlib.use("Agg")
    weights_dir, manifest = tiny_zoo
    load = lambda: loaders.load("garments-sd-base", device="cpu", weights_dir=weights_dir,  # noqa: E731
                                manifest_path=manifest)
    base = load()
    box = prompt_box(base, n=2)
    text, (seed, steps), (_, switch), run = box.children[0], box.children[1].children, box.children[2].children, \
        box.children[3]
    assert switch.disabled and not switch.value  # no adapter to switch
    steps.value, seed.value = 2, 5
    run.click()
    assert box.state["images"].shape == (2, 3, 32, 32) and box.state["message"] == ""
    torch.testing.assert_close(box.state["images"][1:], generate(base, text.value, seed=6, steps=2), atol=1e-5, rtol=0)
    text.value = "  "
    run.click()
    assert box.state["images"] is None and "empty" in box.state["message"]
    with pytest.raises(ValueError, match="no LoRA adapter"):
        prompt_figure(base, "a dress", lora=True)

    adapted = load()
    lora.add_lora(adapted.unet, lora.LoRAConfig(rank=2))
    with torch.no_grad():  # B starts at zero; make the adapter do something
        for name, p in adapted.unet.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    on, _ = prompt_figure(adapted, "a dress", steps=2, n=1, lora=True)
    off, _ = prompt_figure(adapted, "a dress", steps=2, n=1, lora=False)
    torch.testing.assert_close(off, generate(base, "a dress", seed=0, steps=2), atol=1e-6, rtol=0)
    assert (on - off).abs().max() > 1e-3
    torch.testing.assert_close(prompt_figure(adapted, "a dress", steps=2, n=1)[0], on, atol=0, rtol=0)  # left on


def test_mixed_precision_falls_back_to_fp16_on_a_gpu_without_bf16():
    from fashionlab.train.loop import mixed_precision_for

    assert mixed_precision_for(True, on_gpu=True, bf16_supported=False) == "fp16"  # a Colab T4
    assert mixed_precision_for(True, on_gpu=True, bf16_supported=True) == "bf16"
    assert mixed_precision_for(True, on_gpu=False, bf16_supported=False) == "no"
    assert mixed_precision_for(False, on_gpu=True, bf16_supported=True) == "no"
