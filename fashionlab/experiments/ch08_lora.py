"""The precomputed results of chapter 08 (``notebooks/08_stable_diffusion_lora.py``): paper 002's
LoRA sweeps on catalog captions, graded by FID and KID on oracle features.

==========  ==============================================================================
part        what
==========  ==============================================================================
``runs``    one LoRA run per configuration of :func:`sweep_configs` and seed of :data:`SEEDS`
            (one factor at a time around the paper's rank 4, lr 5e-5, batch 3; 20 epochs on
            the :data:`N_TRAIN` training rows): per-step losses, the fixed-draw validation loss
            per epoch, and FID / KID (with bootstrap CIs) of :data:`N_EVAL` generated images
            against the real renders of the same rows, on the validation and the test rows,
            after epochs 1, 11 and 20; the base model (no LoRA) is graded the same way
==========  ==============================================================================

Data (a train / validation / test split at fixed seeds, as the paper's): catalog rows of seed
:data:`TRAIN_SEED` train, rows of :data:`VAL_SEED` choose, rows of :data:`TEST_SEED` report. The
selection rule, fixed before any run: the configuration with the best mean validation KID at
epoch 20 over its seeds is the chosen one; its test numbers are the ones reported.

Usage: ``python -m fashionlab.experiments.ch08_lora runs [--only NAME]``; resumable (each finished
run is written at once; an interrupted run restarts).
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
from ..data.garments import render_batch, spec_for
from ..methods import lora
from ..methods.text_to_image import generate
from ..metrics import bootstrap_ci, frechet_distance, kernel_inception_distance, oracle_features
from ..zoo import loaders
from . import read_results_file, results_file

PARTS: tuple[str, ...] = ("runs",)
TRAIN_SEED, VAL_SEED, TEST_SEED = 820, 821, 822
N_TRAIN = 850
"""Training rows: the paper's 850 images."""
N_EVAL = 500
"""Generated images per grading (and real renders they are compared with)."""
N_VALIDATION_LOSS = 100
"""Validation rows of the fixed-draw validation loss."""
SEEDS: tuple[int, ...] = (0, 1)
EVAL_STEPS, EVAL_GUIDANCE = 20, 4.0
BASE = lora.LoRAConfig()
"""Paper 002's chosen setting: rank 4, lr 5e-5, batch 3, 20 epochs."""
FACTORS: dict[str, tuple] = {"rank": (2, 4, 6, 10), "batch_size": (1, 3, 6),
                             "learning_rate": (1e-6, 5e-5, 1e-4, 1e-3)}
"""The paper's one-factor-at-a-time grid (its Figs. 7-9). (rank 4, lr 1e-4) is also the setting of
diffusers' ``train_text_to_image_lora.py`` the paper started from."""


def run_name(cfg: lora.LoRAConfig) -> str:
    return f"r{cfg.rank}-b{cfg.batch_size}-lr{cfg.learning_rate:g}-s{cfg.seed}"


def sweep_configs(seeds: tuple[int, ...] = SEEDS) -> dict[str, lora.LoRAConfig]:
    """One configuration per value of each factor of :data:`FACTORS`, the others at :data:`BASE`,
    for each seed (the base setting once per seed)."""
    out: dict[str, lora.LoRAConfig] = {}
    for seed in seeds:
        for factor, values in FACTORS.items():
            for value in values:
                cfg = replace(BASE, seed=seed, **{factor: value})
                out[run_name(cfg)] = cfg
    return out


def catalog_split(seed: int, n: int, size: int = 64) -> tuple[torch.Tensor, list[str]]:
    """Renders and paper-002 captions of the first ``n`` catalog rows of ``seed``."""
    rows = catalog.make_catalog(n, seed=seed)
    images = render_batch([spec_for(seed, i) for i in range(n)], size)
    return images, [catalog.caption_from_row(row) for _, row in rows.iterrows()]


def grade(pipe, prompts: list[str], real_features: torch.Tensor, features: Callable, seed: int = 0,
          rounds: int = 100) -> dict:
    """FID and KID of images generated for ``prompts`` against ``real_features``, each with a 95 %
    bootstrap interval (both sets resampled)."""
    fake = features(generate(pipe, prompts, seed=seed, steps=EVAL_STEPS, guidance=EVAL_GUIDANCE))
    g = torch.Generator().manual_seed(0)
    fid = bootstrap_ci(frechet_distance, fake, real_features, rounds=rounds, generator=g)
    kid = bootstrap_ci(lambda a, b: kernel_inception_distance(a, b, subsets=5, subset_size=min(len(a), 200),
                                                              generator=torch.Generator().manual_seed(1)),
                       fake, real_features, rounds=rounds, generator=g)
    return {"fid": [round(v, 3) for v in fid], "kid": [round(v, 5) for v in kid]}


def results_path(part: str) -> Path:
    return results_file("08", part, PARTS)


def read_results(part: str) -> dict:
    return read_results_file(results_path(part), "ch08_lora", part)


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
    val_images, val_prompts = catalog_split(VAL_SEED, n_eval, size)
    test_images, test_prompts = catalog_split(TEST_SEED, n_eval, size)
    validation = lora.encode_split(pipe, val_images[:N_VALIDATION_LOSS], val_prompts[:N_VALIDATION_LOSS])
    real = {"val": features(val_images), "test": features(test_images)}
    prompts = {"val": val_prompts, "test": test_prompts}
    done.update(n_train=n_train, n_eval=n_eval, seeds={"train": TRAIN_SEED, "val": VAL_SEED, "test": TEST_SEED},
                eval=f"DDIM {EVAL_STEPS} steps, guidance {EVAL_GUIDANCE}; oracle penultimate features")
    todo = {"base": None, **(sweep_configs() if configs is None else configs)}
    for name, cfg in todo.items():
        if name in done["runs"] or (only is not None and name != only):
            continue
        pipe = load_pipe()
        if cfg is None:
            record = {"grades": {"0": {split: grade(pipe, prompts[split], real[split], features) for split in real}}}
        else:
            workdir = adapters_dir / name
            run = lora.train_lora(pipe, train, cfg, workdir, validation=validation, progress=progress)
            grades, grader = {}, load_pipe()  # graded as a user loads them: saved adapters on a fresh base
            for epoch, folder in sorted(run.saved.items()):
                grader.load_lora_weights(folder, adapter_name=f"epoch{epoch}")
                grader.set_adapters([f"epoch{epoch}"])
                grades[str(epoch)] = {split: grade(grader, prompts[split], real[split], features) for split in real}
            record = {"config": asdict(cfg), "steps": run.steps, "seconds": round(run.seconds, 1),
                      "trainable_parameters": run.trainable_parameters,
                      "losses": [round(v, 5) for v in run.losses],
                      "validation_loss": {str(k): round(v, 5) for k, v in run.validation.items()}, "grades": grades}
        done["runs"][name] = record
        write_json_atomic(done, out)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fashionlab.experiments.ch08_lora", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=PARTS)
    parser.add_argument("--only", default=None, help="run only this configuration (a run name, or 'base')")
    args = parser.parse_args(argv)
    known = {"base", *sweep_configs()}
    if args.only is not None and args.only not in known:
        parser.error(f"--only must be one of {sorted(known)}")
    run_runs(results_path(args.part), only=args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
