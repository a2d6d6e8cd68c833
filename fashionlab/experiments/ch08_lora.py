"""The precomputed results of chapter 08 (``notebooks/08_stable_diffusion_lora.py``): paper 002's
LoRA sweeps on catalog captions, graded by FID and KID on oracle features.

==========  ==============================================================================
part        what
==========  ==============================================================================
``runs``    one LoRA run per configuration of :func:`sweep_configs` and seed of :data:`SEEDS`
            (one factor at a time around the paper's rank 4, lr 5e-5, batch 3; 20 epochs on
            the :data:`N_TRAIN` training rows), and the base setting at :data:`REPEAT_SEEDS`:
            per-step losses, the fixed-draw validation loss per epoch, and FID / KID (with
            jackknife intervals) of :data:`N_EVAL` generated images against the real renders of the
            same rows, on the validation rows after epochs 1, 11 and 20 and on the test rows
            after epoch 20; the base model (no LoRA) is graded the same way
``bench``   our LoRA training (:func:`fashionlab.methods.lora.train_lora`) beside
            :func:`reference_lora_training`, the recipe of diffusers'
            ``train_text_to_image_lora.py`` written out plainly, on the same rows from the same
            seed: both loss curves (means over windows of :data:`BENCH_WINDOW` steps), their
            agreement, and seconds per step
``compare`` the base model against the shipped adapter on the :data:`N_EVAL` test rows: the
            oracle's accuracy on the category and colour the catalog caption names, the
            single-garment rate and KID / FID, with CIs; the base also in its own caption
            format (the fairer baseline); and FID on random prompt-matched triplets, as the
            paper computed it on 3 images, beside the 500-image numbers
==========  ==============================================================================

Data (a train / validation / test split at fixed seeds, as the paper's): catalog rows of seed
:data:`TRAIN_SEED` train, rows of :data:`VAL_SEED` choose, rows of :data:`TEST_SEED` report. The
selection rule, fixed before any run: the configuration with the best mean validation KID at
epoch 20 over its seeds is the chosen one; its test numbers are the ones reported.

Usage: ``python -m fashionlab.experiments.ch08_lora runs [--only NAME]``; resumable (each finished
run is written at once; an interrupted run restarts). ``... ch08_lora regrade`` grades the runs again
from the adapters they saved (after a change to :func:`grade`, without retraining). Then ``python -m fashionlab.experiments.ch08_lora
ship`` ships the chosen run's adapters after epochs 1, 11 and 20 to the zoo (:data:`SHIPPED`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import torch

from ..config import training_dir, write_json_atomic
from ..data import catalog
from ..data.garments import BACKGROUNDS, SCHEMA, caption, render_batch, spec_for
from ..methods import lora
from ..methods.text_to_image import generate
from ..metrics import (frechet_distance, jackknife_ci, mean_ci, mmd2_unbiased, oracle_features,
                       single_region_rate)
from ..zoo import loaders
from . import read_results_file, results_file

PARTS: tuple[str, ...] = ("runs", "bench", "compare")
TRAIN_SEED, VAL_SEED, TEST_SEED = 820, 821, 822
N_TRAIN = 850
"""Training rows: the paper's 850 images."""
N_EVAL = 500
"""Generated images per grading (and real renders they are compared with). KID is unbiased at any
size; FID is biased upward at small sizes, so FIDs are compared only at this one size."""
N_VALIDATION_LOSS = 100
"""Validation rows of the fixed-draw validation loss."""
SEEDS: tuple[int, ...] = (0,)
"""Seeds of the whole one-factor grid."""
REPEAT_SEEDS: tuple[int, ...] = (1,)
"""Further seeds of the base setting only: the seed-to-seed spread that a difference between two
settings must beat (the whole grid at two seeds does not fit one 2-CPU session)."""
EVAL_STEPS, EVAL_GUIDANCE = 10, 4.0
"""DDIM steps and guidance of the graded samples. 10 steps, not the pipeline's 25, pay for 500
images x 4 checkpoints x 11 models on 2 CPU cores; on 32 validation prompts, 10 and 20 steps from
the same seeds differ by 0.026 per pixel (mean absolute, in [-1, 1]) with the same garments."""
BASE = lora.LoRAConfig()
"""Paper 002's chosen setting: rank 4, lr 5e-5, batch 3, 20 epochs."""
FACTORS: dict[str, tuple] = {"rank": (2, 4, 6, 10), "batch_size": (1, 3, 6),
                             "learning_rate": (1e-6, 5e-5, 1e-4, 1e-3)}
"""The paper's one-factor-at-a-time grid (its Figs. 7-9). (rank 4, lr 1e-4) is also the setting of
diffusers' ``train_text_to_image_lora.py`` the paper started from."""


SHIPPED: dict[int, str] = {20: "garments-sd-lora-catalog", 1: "garments-sd-lora-catalog-e1",
                           11: "garments-sd-lora-catalog-e11"}
"""Zoo names of the chosen run's adapters, by epoch."""


def run_name(cfg: lora.LoRAConfig) -> str:
    return f"r{cfg.rank}-b{cfg.batch_size}-lr{cfg.learning_rate:g}-s{cfg.seed}"


def sweep_configs(seeds: tuple[int, ...] = SEEDS,
                  repeat_seeds: tuple[int, ...] = REPEAT_SEEDS) -> dict[str, lora.LoRAConfig]:
    """One configuration per value of each factor of :data:`FACTORS`, the others at :data:`BASE`,
    for each of ``seeds`` (the base setting once per seed), then :data:`BASE` at each of
    ``repeat_seeds``. The paper's setting comes first and batch size 1, the slowest run (three
    times the steps), last."""
    out: dict[str, lora.LoRAConfig] = {}
    for seed in seeds:
        for factor, values in FACTORS.items():
            for value in values:
                cfg = replace(BASE, seed=seed, **{factor: value})
                out[run_name(cfg)] = cfg
    for seed in repeat_seeds:
        cfg = replace(BASE, seed=seed)
        out[run_name(cfg)] = cfg
    def order(item: tuple[str, lora.LoRAConfig]) -> tuple[bool, bool, bool]:
        cfg = item[1]
        return cfg.batch_size == 1, cfg.seed not in seeds, cfg != replace(BASE, seed=cfg.seed)

    return dict(sorted(out.items(), key=order))


def catalog_split(seed: int, n: int, size: int = 64) -> tuple[torch.Tensor, list[str]]:
    """Renders and paper-002 captions of the first ``n`` catalog rows of ``seed``."""
    rows = catalog.make_catalog(n, seed=seed)
    images = render_batch([spec_for(seed, i) for i in range(n)], size)
    return images, [catalog.caption_from_row(row) for _, row in rows.iterrows()]


def grade(pipe, prompts: list[str], real_features: torch.Tensor, features: Callable, seed: int = 0) -> dict:
    """FID and KID of images generated for ``prompts`` against ``real_features``, each with a 95 %
    jackknife interval (:func:`grade_features`)."""
    fake = features(generate(pipe, prompts, seed=seed, steps=EVAL_STEPS, guidance=EVAL_GUIDANCE))
    return grade_features(fake, real_features)


def grade_features(fake: torch.Tensor, real_features: torch.Tensor) -> dict:
    """FID and KID (:func:`~fashionlab.metrics.mmd2_unbiased` on all rows) of two feature sets, each
    as [value, low, high] with a 95 % jackknife interval (the two sets independent)."""
    fid = jackknife_ci(frechet_distance, fake, real_features)
    kid = jackknife_ci(mmd2_unbiased, fake, real_features)
    return {"fid": [round(v, 3) for v in fid], "kid": [round(v, 5) for v in kid]}


def results_path(part: str) -> Path:
    return results_file("08", part, PARTS)


def read_results(part: str) -> dict:
    return read_results_file(results_path(part), "ch08_lora", part)


def grading_splits(features: Callable, size: int, n_eval: int = N_EVAL
                   ) -> tuple[dict[str, list[str]], dict[str, torch.Tensor], torch.Tensor]:
    """The graded splits: (prompts by split, real features by split, the validation renders)."""
    val_images, val_prompts = catalog_split(VAL_SEED, n_eval, size)
    test_images, test_prompts = catalog_split(TEST_SEED, n_eval, size)
    return ({"val": val_prompts, "test": test_prompts},
            {"val": features(val_images), "test": features(test_images)}, val_images)


def grade_base(pipe, prompts: dict[str, list[str]], real: dict[str, torch.Tensor], features: Callable) -> dict:
    """The base model's grades on every split."""
    return {split: grade(pipe, prompts[split], real[split], features) for split in real}


def grade_adapters(grader, saved: dict[int, Path], epochs: int, prompts: dict[str, list[str]],
                   real: dict[str, torch.Tensor], features: Callable) -> dict[str, dict]:
    """Grades of a run's saved adapters (``saved``: epoch -> folder), graded as a user loads them,
    on ``grader``, a fresh base pipeline: the validation split after every saved epoch, the test
    split after the last (``epochs``) only."""
    grades = {}
    for epoch, folder in sorted(saved.items()):
        grader.load_lora_weights(str(folder), adapter_name=f"epoch{epoch}")
        grader.set_adapters([f"epoch{epoch}"])
        splits = ("val", "test") if epoch == epochs else ("val",)
        grades[str(epoch)] = {split: grade(grader, prompts[split], real[split], features) for split in splits}
    return grades


def run_runs(out: Path, only: str | None = None, load_pipe: Callable | None = None, n_train: int = N_TRAIN,
             n_eval: int = N_EVAL, configs: dict[str, lora.LoRAConfig] | None = None,
             adapters_dir: Path | None = None, progress: bool = True) -> dict:
    """Every run of ``configs`` (default :func:`sweep_configs`) and the base model not yet in ``out``
    (or ``only`` the one named). Adapters are saved under ``adapters_dir`` (default
    ``training_dir() / "ch08_lora"``), one folder per run and epoch."""
    adapters_dir = Path(adapters_dir) if adapters_dir is not None else training_dir() / "ch08_lora"
    load_pipe = load_pipe or (lambda: loaders.load("garments-sd-base", profile="tiny", device="cpu"))
    done = json.loads(out.read_text()) if out.is_file() else {"runs": {}}
    features = oracle_features(loaders.load("garments-oracle", device="cpu"))
    pipe = load_pipe()
    size = pipe.vae_scale_factor * pipe.unet.config.sample_size
    train = lora.encode_split(pipe, *catalog_split(TRAIN_SEED, n_train, size))
    prompts, real, val_images = grading_splits(features, size, n_eval)
    validation = lora.encode_split(pipe, val_images[:N_VALIDATION_LOSS], prompts["val"][:N_VALIDATION_LOSS])
    done.update(n_train=n_train, n_eval=n_eval, seeds={"train": TRAIN_SEED, "val": VAL_SEED, "test": TEST_SEED},
                eval=f"DDIM {EVAL_STEPS} steps, guidance {EVAL_GUIDANCE}; oracle penultimate features")
    todo = {"base": None, **(sweep_configs() if configs is None else configs)}
    for name, cfg in todo.items():
        if name in done["runs"] or (only is not None and name != only):
            continue
        pipe = load_pipe()
        if cfg is None:
            record = {"grades": {"0": grade_base(pipe, prompts, real, features)}}
        else:
            workdir = adapters_dir / name
            run = lora.train_lora(pipe, train, cfg, workdir, validation=validation, progress=progress)
            grades = grade_adapters(load_pipe(), run.saved, cfg.epochs, prompts, real, features)
            record = {"config": asdict(cfg), "steps": run.steps, "seconds": round(run.seconds, 1),
                      "trainable_parameters": run.trainable_parameters,
                      "losses": [round(v, 5) for v in run.losses],
                      "validation_loss": {str(k): round(v, 5) for k, v in run.validation.items()}, "grades": grades}
        done["runs"][name] = record
        write_json_atomic(done, out)
    return done


def run_regrade(out: Path, load_pipe: Callable | None = None, adapters_dir: Path | None = None) -> dict:
    """Grade again, with the current :func:`grade`, every run of ``out`` from the adapters its
    training saved (under ``adapters_dir``, default ``training_dir() / "ch08_lora"``), and the base
    model: the ``runs`` file's grades without retraining (its losses and timings stay). Resumable:
    the runs already regraded are listed in the file's ``regraded`` key."""
    adapters_dir = Path(adapters_dir) if adapters_dir is not None else training_dir() / "ch08_lora"
    load_pipe = load_pipe or (lambda: loaders.load("garments-sd-base", profile="tiny", device="cpu"))
    if not out.is_file():
        raise FileNotFoundError(f"{out} is missing: there are no runs to regrade "
                                "(python -m fashionlab.experiments.ch08_lora runs)")
    done = json.loads(out.read_text())
    missing = [str(adapters_dir / name / f"epoch-{epoch}") for name, run in done["runs"].items() if name != "base"
               for epoch in run["grades"] if not (adapters_dir / name / f"epoch-{epoch}").is_dir()]
    if missing:
        raise FileNotFoundError(f"the saved adapters of {len(missing)} checkpoints are not on this machine, e.g. "
                                f"{missing[0]}: regrading needs the runs' own adapters (re-run them instead: "
                                "python -m fashionlab.experiments.ch08_lora runs)")
    features = oracle_features(loaders.load("garments-oracle", device="cpu"))
    pipe = load_pipe()
    prompts, real, _ = grading_splits(features, pipe.vae_scale_factor * pipe.unet.config.sample_size, done["n_eval"])
    regraded = done.setdefault("regraded", [])
    for name, run in done["runs"].items():
        if name in regraded:
            continue
        if name == "base":
            run["grades"] = {"0": grade_base(load_pipe(), prompts, real, features)}
        else:
            saved = {int(epoch): adapters_dir / name / f"epoch-{epoch}" for epoch in run["grades"]}
            run["grades"] = grade_adapters(load_pipe(), saved, run["config"]["epochs"], prompts, real, features)
        regraded.append(name)
        write_json_atomic(done, out)
    return done


def setting_of(name: str) -> str:
    """A run's setting: its name without the seed (``r4-b3-lr5e-05``)."""
    return name.rsplit("-s", 1)[0]


def choose(done: dict) -> tuple[str, dict[str, float]]:
    """The selection rule, fixed before the runs: the setting with the lowest mean validation KID
    after its last epoch (20) over its seeds. Returns (its run at the lowest seed, mean KID per
    setting)."""
    by_setting: dict[str, list[float]] = {}
    for name, run in done["runs"].items():
        if name != "base":
            final = run["grades"][str(run["config"]["epochs"])]
            by_setting.setdefault(setting_of(name), []).append(final["val"]["kid"][0])
    if not by_setting:
        raise ValueError("no LoRA run has finished yet: run `python -m fashionlab.experiments.ch08_lora runs` first")
    means = {k: sum(v) / len(v) for k, v in by_setting.items()}
    best = min(means, key=means.get)
    runs = sorted((done["runs"][n]["config"]["seed"], n) for n in done["runs"] if setting_of(n) == best)
    return runs[0][1], means


def ship(done: dict, adapters_dir: Path | None = None, weights_dir: Path | None = None,
         manifest_path: Path | None = None, shipped: dict[int, str] = SHIPPED) -> dict[str, dict]:
    """Ship the chosen run's adapters (:func:`choose`) after the epochs of ``shipped`` to the
    zoo as ``sd-lora`` models: fp16, with the rank and alpha metadata diffusers reads; each record
    carries the run's settings and its grades at that epoch. Returns the manifest entries."""
    from safetensors import safe_open

    from ..zoo.export import export_weights

    adapters_dir = Path(adapters_dir) if adapters_dir is not None else training_dir() / "ch08_lora"
    run_name_, _ = choose(done)
    run = done["runs"][run_name_]
    steps_per_epoch = run["steps"] // run["config"]["epochs"]
    kwargs = {k: v for k, v in (("weights_dir", weights_dir), ("manifest_path", manifest_path)) if v is not None}
    entries = {}
    for epoch, zoo_name in shipped.items():
        path = adapters_dir / run_name_ / f"epoch-{epoch}" / "pytorch_lora_weights.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the adapters of run {run_name_!r} are not on this machine "
                                    f"(re-run it: python -m fashionlab.experiments.ch08_lora runs --only {run_name_})")
        with safe_open(str(path), "pt") as handle:
            state = {k: handle.get_tensor(k) for k in handle.keys()}
            metadata = {k: v for k, v in (handle.metadata() or {}).items() if k != "format"}
        record = {"recipe": f"python -m fashionlab.experiments.ch08_lora runs ({run_name_}), then ship",
                  "data": f"{done['n_train']} catalog rows of seed {TRAIN_SEED}, paper 002 captions",
                  "data_seed": TRAIN_SEED, "run": run_name_, "epoch": epoch,
                  "training_minutes": round(run["seconds"] / 60 * epoch / run["config"]["epochs"], 1),
                  "training_steps": steps_per_epoch * epoch, "batch_size": run["config"]["batch_size"],
                  "metrics": {"eval": done["eval"], "n_eval": done["n_eval"], **run["grades"][str(epoch)]}}
        entries[zoo_name] = export_weights(zoo_name, state, run["config"], record, metadata=metadata, **kwargs)
    return entries


BENCH_ROWS, BENCH_EPOCHS, BENCH_WINDOW = 300, 6, 100
"""The bench trains on the first 300 training rows for 6 epochs (600 steps at batch 3) and compares
the loss curves in windows of 100 steps."""


def reference_lora_training(pipe, images: torch.Tensor, captions: list[str], cfg: lora.LoRAConfig,
                            progress: bool = True) -> tuple[list[float], float]:
    """LoRA training as diffusers' ``examples/text_to_image/train_text_to_image_lora.py`` does it,
    written out plainly as an independent reference for the bench: peft ``LoraConfig(r, lora_alpha=r,
    init_lora_weights="gaussian")`` on to_q/to_k/to_v/to_out.0; AdamW (0.9, 0.999, eps 1e-8, weight
    decay 1e-2) at a constant rate; every step encodes its pixels with the VAE (a posterior sample
    times the scaling factor) and its captions with the text encoder, draws t ~ U{0..T-1} and eps,
    and takes the MSE to the scheduler's target (eps or v), gradients clipped to norm 1; fp32 (the
    script's default precision). Returns (per-step losses, seconds)."""
    import time

    from tqdm.auto import tqdm

    from ..train.latent import encode_prompts

    unet, vae, scheduler = pipe.unet, pipe.vae, lora._training_scheduler(pipe.scheduler)
    unet.requires_grad_(False)
    unet.add_adapter(lora.lora_config(cfg))
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(0.9, 0.999), weight_decay=cfg.weight_decay,
                                  eps=1e-8)
    g = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    steps = cfg.epochs * -(-len(images) // cfg.batch_size)
    bar = tqdm(total=steps, desc="reference", disable=not progress)
    start = time.time()
    unet.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(images), generator=g)
        for first in range(0, len(images), cfg.batch_size):
            idx = order[first:first + cfg.batch_size]
            with torch.no_grad():
                latents = vae.encode(images[idx]).latent_dist.sample(g) * vae.config.scaling_factor
                states = encode_prompts(pipe.tokenizer, pipe.text_encoder, [captions[i] for i in idx])
            noise = torch.randn(latents.shape, generator=g)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (len(idx),), generator=g)
            noisy = scheduler.add_noise(latents, noise, t)
            target = (scheduler.get_velocity(latents, noise, t) if scheduler.config.prediction_type == "v_prediction"
                      else noise)
            pred = unet(noisy, t, encoder_hidden_states=states).sample
            loss = torch.nn.functional.mse_loss(pred.float(), target.float())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(float(loss))
            bar.update()
    bar.close()
    unet.eval()
    return losses, time.time() - start


def window_means(values: list[float], window: int) -> list[float]:
    """Means of consecutive ``window``-long slices (a last partial slice dropped)."""
    return [sum(values[i:i + window]) / window for i in range(0, len(values) - window + 1, window)]


def run_bench(out: Path, load_pipe: Callable | None = None, rows: int = BENCH_ROWS, epochs: int = BENCH_EPOCHS,
              window: int = BENCH_WINDOW, progress: bool = True) -> dict:
    """Our training and the reference, from the same seed on the same rows (module table)."""
    load_pipe = load_pipe or (lambda: loaders.load("garments-sd-base", profile="tiny", device="cpu"))
    pipe = load_pipe()
    size = pipe.vae_scale_factor * pipe.unet.config.sample_size
    images, captions = catalog_split(TRAIN_SEED, rows, size)
    cfg = replace(BASE, epochs=epochs, save_epochs=())
    ours = lora.train_lora(pipe, lora.encode_split(pipe, images, captions), cfg, log_every=1, progress=progress)
    ref_losses, ref_seconds = reference_lora_training(load_pipe(), images, captions, cfg, progress=progress)
    ours_w, ref_w = window_means(ours.losses, window), window_means(ref_losses, window)
    # the noise of a window mean, from the spread of single-step losses: the curves agree when every
    # window's gap is within 3 standard errors of a difference of two such means
    spread = torch.tensor(ref_losses).std().item()
    tolerance = 3 * spread * (2 / window) ** 0.5
    gaps = [abs(a - b) for a, b in zip(ours_w, ref_w)]
    record = {"rows": rows, "epochs": epochs, "steps": ours.steps, "window": window, "config": asdict(cfg),
              "ours": {"window_losses": [round(v, 4) for v in ours_w], "seconds_per_step": round(ours.seconds / ours.steps, 4),
                       "precision": "bf16 autocast" if cfg.bf16 else "fp32",
                       "what": "latents encoded once (posterior mean and std), a posterior sample per step"},
              "reference": {"window_losses": [round(v, 4) for v in ref_w],
                            "seconds_per_step": round(ref_seconds / len(ref_losses), 4), "precision": "fp32",
                            "what": "VAE and text encoder run on every step, as the example"},
              "max_window_gap": round(max(gaps), 4), "tolerance": round(tolerance, 4),
              "agree": max(gaps) <= tolerance,
              "time_ratio": round(ours.seconds / ref_seconds, 3)}
    write_json_atomic(record, out)
    return record


N_TRIPLETS = 1000
"""Random prompt-matched triplets of the 3-image FID study."""


def own_captions(seed: int, n: int) -> list[str]:
    """The base model's own caption format for the same rows (caption template 1, as its card's
    grades use): the fairer baseline's prompts."""
    return [caption(spec_for(seed, i), 1) for i in range(n)]


def run_compare(out: Path, load_base: Callable | None = None, load_lora: Callable | None = None,
                n_eval: int = N_EVAL, n_triplets: int = N_TRIPLETS) -> dict:
    """The ``compare`` part (module table). ``load_lora`` (default: the zoo's
    ``garments-sd-lora-catalog``) gives the adapted pipeline."""
    load_base = load_base or (lambda: loaders.load("garments-sd-base", profile="tiny", device="cpu"))
    load_lora = load_lora or (lambda: loaders.load(SHIPPED[BASE.epochs], profile="tiny", device="cpu"))
    oracle = loaders.load("garments-oracle", device="cpu")
    features = oracle_features(oracle)
    base = load_base()
    size = base.vae_scale_factor * base.unet.config.sample_size
    real, prompts = catalog_split(TEST_SEED, n_eval, size)
    specs = [spec_for(TEST_SEED, i) for i in range(n_eval)]
    truth = {key: torch.tensor([SCHEMA[key].index(getattr(spec, key)) for spec in specs]) for key in ("category", "colour")}
    real_features = features(real)
    models = {"base, catalog captions": (base, prompts), "base, its own captions": (base, own_captions(TEST_SEED, n_eval)),
              "LoRA, catalog captions": (load_lora(), prompts)}
    record: dict = {"n": n_eval, "eval": f"DDIM {EVAL_STEPS} steps, guidance {EVAL_GUIDANCE}",
                    "rows": f"the first {n_eval} catalog rows of seed {TEST_SEED}", "models": {}}
    fakes = {}
    for name, (pipe, texts) in models.items():
        images = generate(pipe, texts, seed=0, steps=EVAL_STEPS, guidance=EVAL_GUIDANCE)
        logits = oracle(images)
        g = torch.Generator().manual_seed(0)
        row = {f"{key}_accuracy": [round(v, 4) for v in mean_ci((logits[key].argmax(1) == truth[key]).double(),
                                                                generator=g)] for key in truth}
        _, single = single_region_rate(images, BACKGROUNDS["photo"])
        row["single_garment_rate"] = [round(v, 4) for v in mean_ci(single.double(), generator=g)]
        fakes[name] = features(images)
        row.update(grade_features(fakes[name], real_features))
        record["models"][name] = row
    g = torch.Generator().manual_seed(0)
    triplets = [torch.randperm(n_eval, generator=g)[:3] for _ in range(n_triplets)]
    fid3 = {name: [round(frechet_distance(fakes[name][t], real_features[t]), 2) for t in triplets]
            for name in ("base, catalog captions", "LoRA, catalog captions")}
    record["fid3"] = fid3
    write_json_atomic(record, out)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fashionlab.experiments.ch08_lora", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=PARTS + ("regrade", "ship"),
                        help="a results part to compute; 'regrade' (the runs' grades again from their saved "
                             "adapters); or 'ship' (the chosen run's adapters to the zoo)")
    parser.add_argument("--only", default=None, help="run only this configuration (a run name, or 'base')")
    args = parser.parse_args(argv)
    known = {"base", *sweep_configs()}
    if args.only is not None and args.only not in known:
        parser.error(f"--only must be one of {sorted(known)}")
    if args.part == "compare":
        record = run_compare(results_path("compare"))
        for name, row in record["models"].items():
            print(f"{name}: category {row['category_accuracy'][0]:.3f}, KID {row['kid'][0]:.4f}")
        return 0
    if args.part == "bench":
        record = run_bench(results_path("bench"))
        print(f"loss curves agree: {record['agree']} (largest window gap {record['max_window_gap']}, tolerance "
              f"{record['tolerance']}); time ratio ours / reference {record['time_ratio']}")
        return 0
    if args.part == "regrade":
        run_regrade(results_path("runs"))
        return 0
    if args.part == "ship":
        for zoo_name, entry in ship(read_results("runs")).items():
            print(f"shipped {zoo_name}: run {entry['run']}, epoch {entry['epoch']}, {entry['bytes'] / 1e3:.0f} kB")
        return 0
    run_runs(results_path(args.part), only=args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
