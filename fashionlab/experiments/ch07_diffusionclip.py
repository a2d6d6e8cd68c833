"""The precomputed results of chapter 07 (``notebooks/07_diffusionclip.py``). Each part runs with
``python -m``, resumes where an interrupted run stopped, and writes one JSON file to
:func:`fashionlab.config.results_dir`:

==========  ======================  ===============================================================
part        garments (seed)         what
==========  ======================  ===============================================================
``sweep``   700 (train), 710        the learning rate of each shipped edit: fine-tune on 50 garments
            (held out)              at each rate of :data:`SWEEP_LRS`, grade on 24 held-out ones;
                                    :func:`choose_lr` picks the smallest rate with success >= 0.7
``table``   :data:`TABLE_SEED`      DiffusionCLIP (the shipped fine-tunes) vs latent optimisation on
                                    each shipped edit, and chapter 06's guided edit where its
                                    classifier has a head (the pattern); oracle / judge success,
                                    consistency, preservation, CLIP scores by the guide (``-s``) and
                                    by an independent CLIP (``-b``), seconds per edit
``depth``   700, 710                the return step t_0 of 300 / 500 / 700 for a colour edit and a
                                    shape edit (Fig. 8(b)), fine-tuned at :data:`DEPTH_LR`
``memory``  --                      peak resident memory of one fine-tuning step in each mode, each
                                    in its own subprocess, against S_gen
==========  ======================  ===============================================================

Usage: ``python -m fashionlab.experiments.ch07_diffusionclip table [--n-per-edit 36]``. Seed
:data:`TABLE_SEED` is never used for a choice (the recipes' settings came from seed 700's training
garments and seed 710's held-out ones).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..config import write_json_atomic
from ..diffusion.core import PixelDenoiser
from ..data.garments import render_batch
from ..eval.edits import TaskBatch, render_tasks, run_edit_table, score_edits, tasks_for
from ..methods import diffusionclip
from ..methods.guided_edit import guided_edit
from ..metrics import OraclePerceptual, ViTPerceptual
from ..models.clip import encode_text
from ..zoo import loaders
from ..zoo.recipes import DCLIP_HELDOUT_SEED, RECIPES, diffusionclip_tasks
from . import read_results_file, results_file
from .ch06_guided_edit import TABLE_EDIT

PARTS: tuple[str, ...] = ("sweep", "table", "depth", "memory")
DEPTHS: tuple[int, ...] = (300, 500, 700)
DEPTH_EDITS: tuple[str, ...] = ("blue", "long-sleeve")
DEPTH_LR = 4e-5
"""The in-domain rate the sweep chose for ``striped``; the depth study does not tune its own."""
SWEEP_LRS: tuple[float, ...] = (2e-5, 4e-5, 8e-5)
SWEEP_HELDOUT = 24
SUCCESS_BAR = 0.7
TABLE_SEED = 720
EDITS: tuple[str, ...] = ("striped", "sketch", "pocket")
LATENT_ITERATIONS = 20
"""Adam steps of the latent-optimisation baseline (lr 2e-2, their code)."""


def results_path(part: str) -> Path:
    return results_file("07", part, PARTS)


def read_results(part: str) -> dict:
    return read_results_file(results_path(part), "ch07_diffusionclip", part)


def run_sweep(out: Path, lrs: tuple[float, ...] = SWEEP_LRS, progress: bool = True) -> dict:
    """Fine-tune every shipped edit at every learning rate of ``lrs`` (the recipe's other settings,
    its 50 training garments of seed 700) and grade each on :data:`SWEEP_HELDOUT` garments of seed
    710 (S_inv = S_gen = 40): success, consistency, L2 outside the region, mean |change|, seconds."""
    done = json.loads(out.read_text()) if out.is_file() else {"lrs": list(lrs), "runs": {}}
    base = loaders.load("garments-ddpm-64", device="cpu")
    base_denoiser = PixelDenoiser(base.unet, base.scheduler)
    guide = loaders.load("garments-clip-s", device="cpu")
    oracle, judge = loaders.load("garments-oracle", device="cpu"), loaders.load("garments-extras-judge", device="cpu")
    for edit_name in EDITS:
        recipe = RECIPES[f"garments-dclip-{edit_name}"]
        edit = diffusionclip.GARMENT_EDITS[edit_name]
        todo = [lr for lr in lrs if f"{edit_name}|{lr:g}" not in done["runs"]]
        if not todo:
            continue
        train = diffusionclip_tasks(recipe, recipe.train_seed, recipe.n_train)
        held = render_tasks(diffusionclip_tasks(recipe, DCLIP_HELDOUT_SEED, SWEEP_HELDOUT))
        images = render_batch([t.source for t in train])
        pairs = [edit.text_pair(t.source.category) for t in train]
        latents = diffusionclip.invert_latents(base_denoiser, base.alphas_cumprod, images, recipe.train)
        held_latents = diffusionclip.invert_latents(base_denoiser, base.alphas_cumprod, held.images, recipe.train)
        for lr in todo:
            cfg = replace(recipe.train, learning_rate=lr)
            tuned = diffusionclip.finetune(base.unet, base.scheduler, guide, images, pairs, cfg, latents=latents,
                                           progress=progress)
            edited = diffusionclip.edit(base_denoiser, PixelDenoiser(tuned.unet, base.scheduler), base.alphas_cumprod,
                                        held.images, cfg, latents=held_latents)
            scores = score_edits(held, edited, oracle, OraclePerceptual(oracle), judge)
            done["runs"][f"{edit_name}|{lr:g}"] = {
                "edit": edit_name, "lr": lr, "seconds": round(tuned.seconds, 1),
                **{k: round(float(scores[k].mean()), 4) for k in ("success", "consistency", "l2_outside")},
                "mean_abs_change": round(float((edited - held.images).abs().mean()), 4)}
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(done, out)
    return done


def _finetune_and_grade(edit_name: str, cfg: diffusionclip.DiffusionCLIPConfig, models: dict,
                        n_train: int = 50, n_heldout: int = SWEEP_HELDOUT) -> dict:
    """Fine-tune ``edit_name`` with ``cfg`` on seed 700's garments and grade it on seed 710's."""
    base, guide = models["base"], models["guide"]
    base_denoiser = PixelDenoiser(base.unet, base.scheduler)
    edit = diffusionclip.GARMENT_EDITS[edit_name]
    train = tasks_for(700, n_train, edit.attribute, edit.value)
    held = render_tasks(tasks_for(DCLIP_HELDOUT_SEED, n_heldout, edit.attribute, edit.value))
    images = render_batch([t.source for t in train])
    tuned = diffusionclip.finetune(base.unet, base.scheduler, guide, images,
                                   [edit.text_pair(t.source.category) for t in train], cfg)
    edited = diffusionclip.edit(base_denoiser, PixelDenoiser(tuned.unet, base.scheduler), base.alphas_cumprod,
                                held.images, cfg)
    scores = score_edits(held, edited, models["oracle"], OraclePerceptual(models["oracle"]), models["judge"])
    return {"seconds": round(tuned.seconds, 1),
            **{k: round(float(scores[k].mean()), 4) for k in ("success", "consistency", "l2_outside")},
            "mean_abs_change": round(float((edited - held.images).abs().mean()), 4)}


def run_depth(out: Path) -> dict:
    """Fig. 8(b): a colour edit and a shape edit fine-tuned and tested at each t_0 of :data:`DEPTHS`."""
    done = json.loads(out.read_text()) if out.is_file() else {"lr": DEPTH_LR, "runs": {}}
    models = {"base": loaders.load("garments-ddpm-64", device="cpu"), "guide": loaders.load("garments-clip-s", device="cpu"),
              "oracle": loaders.load("garments-oracle", device="cpu"), "judge": None}
    base_cfg = RECIPES["garments-dclip-striped"].train
    for edit_name in DEPTH_EDITS:
        for depth in DEPTHS:
            key = f"{edit_name}|{depth}"
            if key in done["runs"]:
                continue
            cfg = replace(base_cfg, depth=depth, learning_rate=DEPTH_LR)
            done["runs"][key] = {"edit": edit_name, "depth": depth, **_finetune_and_grade(edit_name, cfg, models)}
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(done, out)
    return done


def choose_lr(sweep: dict, edit_name: str) -> float:
    """The rule that set each recipe's learning rate: the smallest swept rate whose held-out success
    reaches :data:`SUCCESS_BAR` (the largest rate if none does)."""
    runs = sorted((r for r in sweep["runs"].values() if r["edit"] == edit_name), key=lambda r: r["lr"])
    if not runs:
        raise ValueError(f"the sweep has no runs for {edit_name!r}")
    return next((r["lr"] for r in runs if r["success"] >= SUCCESS_BAR), runs[-1]["lr"])


def clip_scores(guide, judge):
    """``extra_scores`` for the edit table: the CLIP score (cosine x 100) of each edit with its
    target caption, by the guiding CLIP and by the independent one."""

    def scores(batch: TaskBatch, edited: torch.Tensor) -> dict[str, torch.Tensor]:
        edit = next(e for e in diffusionclip.GARMENT_EDITS.values()
                    if e.attribute == batch.tasks[0].attribute and e.value == batch.tasks[0].value)
        targets = [edit.text_pair(t.source.category).target for t in batch.tasks]
        out = {}
        for name, bundle in (("clip_score_guide", guide), ("clip_score_independent", judge)):
            with torch.no_grad():
                text = encode_text(bundle, targets).float()
                image = diffusionclip.image_features(bundle, edited)
            out[name] = 100 * (image * text).sum(dim=-1)
        return out

    return scores


def run_table(out: Path, n_per_edit: int, progress: bool = True) -> dict:
    """Every method on ``n_per_edit`` garments of :data:`TABLE_SEED` per shipped edit."""
    meta = {"seed": TABLE_SEED, "n_per_edit": n_per_edit, "edits": list(EDITS),
            "config": asdict(RECIPES[f"garments-dclip-{EDITS[0]}"].train), "latent_iterations": LATENT_ITERATIONS,
            "guided_edit": asdict(TABLE_EDIT)}
    if out.is_file():
        stored = json.loads(out.read_text())
        if {k: stored.get(k) for k in meta} != meta:
            raise ValueError(f"{out} was made with other settings; delete it or use another file")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic({**meta, "batches": {}}, out)
    base = loaders.load("garments-ddpm-64", device="cpu")
    base_denoiser = PixelDenoiser(base.unet, base.scheduler)
    guide, independent = loaders.load("garments-clip-s", device="cpu"), loaders.load("garments-clip-b", device="cpu")
    oracle, judge = loaders.load("garments-oracle", device="cpu"), loaders.load("garments-extras-judge", device="cpu")
    attrnet, sup = loaders.load("garments-attrnet", device="cpu"), loaders.load("garments-vit-sup-s", device="cpu")
    perceptual_guide = ViTPerceptual(sup.visual, sup.preprocess)
    done = json.loads(out.read_text())
    for edit_name in EDITS:
        recipe = RECIPES[f"garments-dclip-{edit_name}"]
        edit = diffusionclip.GARMENT_EDITS[edit_name]
        tuned = loaders.load(recipe.name, device="cpu")
        tuned_denoiser = PixelDenoiser(tuned.unet, tuned.scheduler)
        cfg = recipe.train

        def finetuned(batch, generator, tuned_denoiser=tuned_denoiser, cfg=cfg):
            return diffusionclip.edit(base_denoiser, tuned_denoiser, base.alphas_cumprod, batch.images, cfg)

        def latent(batch, generator, edit=edit, cfg=cfg):
            targets = [edit.text_pair(t.source.category).target for t in batch.tasks]
            return diffusionclip.latent_optimisation(base_denoiser, base.alphas_cumprod, guide, batch.images, targets,
                                                     cfg, iterations=LATENT_ITERATIONS).edited

        methods = {f"DiffusionCLIP|{edit_name}": finetuned, f"latent optimisation|{edit_name}": latent}
        if edit.attribute in attrnet.attributes:
            def guided(batch, generator):
                return guided_edit(base_denoiser, base.alphas_cumprod, attrnet, batch.images,
                                   [t.targets for t in batch.tasks], TABLE_EDIT, perceptual_guide,
                                   [t.source.category for t in batch.tasks], generator).edited

            methods[f"guided edit (ch. 06)|{edit_name}"] = guided
        done = run_edit_table(out, methods, diffusionclip_tasks(recipe, TABLE_SEED, n_per_edit), oracle,
                              OraclePerceptual(oracle), batch_size=12, progress=progress, judge=judge,
                              extra_scores=clip_scores(guide, independent))
    return done


_MEMORY_PROBE = """
import resource, sys, torch
from fashionlab import zoo
from fashionlab.data import garments
from fashionlab.methods import diffusionclip
mode, steps = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
ddpm, clip = zoo.load("garments-ddpm-64", device="cpu"), zoo.load("garments-clip-s", device="cpu")
x = garments.render_batch([garments.spec_for(700, i) for i in range(4)])
pairs = [diffusionclip.GARMENT_EDITS["striped"].text_pair(garments.spec_for(700, i).category) for i in range(4)]
cfg = diffusionclip.DiffusionCLIPConfig(gen_steps=steps, inv_steps=steps, mode=mode, batch_size=4, epochs=1)
latents = torch.zeros_like(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
diffusionclip.finetune(ddpm.unet, ddpm.scheduler, clip, x, pairs, cfg, latents=latents)
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_memory(out: Path, gen_steps: tuple[int, ...] = (2, 4, 6, 8, 12)) -> dict:
    """Peak resident memory (MB) of one fine-tuning batch (4 garments) in each mode and S_gen, each
    in a fresh subprocess: the peak before fine-tuning (models loaded) and after."""
    rows = {}
    for mode in diffusionclip.MODES:
        for steps in gen_steps:
            result = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, mode, str(steps)], capture_output=True,
                                    text=True, check=True)
            before, after = (int(v) / 1024 for v in result.stdout.split()[-2:])  # ru_maxrss is in KB on Linux
            rows[f"{mode}|{steps}"] = {"mode": mode, "gen_steps": steps, "loaded_mb": round(before, 1),
                                       "peak_mb": round(after, 1), "training_mb": round(after - before, 1)}
            write_json_atomic({"batch": 4, "rows": rows}, out)
    return {"batch": 4, "rows": rows}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Precompute chapter 07's results (resumable).")
    parser.add_argument("part", choices=PARTS)
    parser.add_argument("--n-per-edit", type=int, default=36, help="held-out garments per edit (table)")
    args = parser.parse_args()
    if args.part == "sweep":
        run_sweep(results_path("sweep"))
    elif args.part == "table":
        run_table(results_path("table"), args.n_per_edit)
    elif args.part == "depth":
        run_depth(results_path("depth"))
    else:
        run_memory(results_path("memory"))
