"""The precomputed results of chapter 10 (``notebooks/10_zip.py``): ZIP (paper 004) against Asyrp,
ILVR and DiffusionCLIP on garments. Each part runs with ``python -m``, resumes where an interrupted
run stopped, and writes one JSON file to :func:`fashionlab.config.results_dir`:

==========  =============================  ==========================================================
part        garments (seed)                what
==========  =============================  ==========================================================
``pilot``   1000 (train), 1010 (held out)  the learning rate: ZIP and Asyrp on one in-domain edit
                                           (blue) and one extra (pocket), 32 training garments, two
                                           passes, at each rate of :data:`PILOT_LRS`; graded on 16
                                           held-out garments. :func:`choose_lr` picks the rate.
``table``   :data:`TABLE_SEED`             every shipped edit by ZIP, Asyrp, ILVR and (striped,
                                           pocket) chapter 07's DiffusionCLIP, plus the plain DDIM
                                           reconstruction: oracle / judge success, consistency,
                                           preservation, CLIP scores (guide and independent), and
                                           per edit and method Inception Score (the oracle's
                                           category softmax), KID and FID against the ideal edits
``ablation`` :data:`TABLE_SEED`            ZIP's variants on every edit: the clean (t-independent)
                                           reference, and Algorithm 1's window t >= 500 (t_zip = 500)
==========  =============================  ==========================================================

The shipped encoders themselves come from the zoo: ``python -m fashionlab.zoo train garments-zip-<edit>``
then ``export`` (and ``garments-asyrp-<edit>``). Usage:
``python -m fashionlab.experiments.ch10_zip table``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import write_json_atomic
from ..data.garments import render_batch
from ..diffusion.core import PixelDenoiser
from ..eval.edits import TaskBatch, render_tasks, score_edits
from ..methods import diffusionclip
from ..methods import zip as Z
from ..metrics import (OraclePerceptual, bootstrap_ci, frechet_distance, inception_score, kernel_inception_distance,
                       oracle_features)
from ..models.clip import encode_text
from ..zoo import loaders
from ..zoo.recipes import RECIPES, ZIP_HELDOUT_SEED, ZIP_TRAIN_SEED, build_zip_delta, zip_reference, zip_tasks
from . import read_results_file, results_file, start_results_file

PARTS: tuple[str, ...] = ("pilot", "table", "ablation")
PILOT_LRS: tuple[float, ...] = (1e-4, 1e-3)
PILOT_EDITS: tuple[str, ...] = ("blue", "pocket")
PILOT_TRAIN, PILOT_HELDOUT = 32, 16
TABLE_SEED = 1020
TABLE_N = 32
DCLIP_EDITS: tuple[str, ...] = ("striped", "pocket")
"""The edits chapter 07 shipped DiffusionCLIP fine-tunes for."""
ILVR_FACTOR, ILVR_T_STOP = 16, 100


def results_path(part: str) -> Path:
    return results_file("10", part, PARTS)


def read_results(part: str) -> dict:
    return read_results_file(results_path(part), "ch10_zip", part)


def _r(value: float) -> float:
    return round(float(value), 5)


def _summary(scores: dict[str, torch.Tensor]) -> dict:
    return {k: _r(v.float().mean()) for k, v in scores.items()}


def run_pilot(out: Path, progress: bool = True) -> dict:
    """ZIP and Asyrp at each rate of :data:`PILOT_LRS` on :data:`PILOT_EDITS`."""
    meta = {"lrs": list(PILOT_LRS), "edits": list(PILOT_EDITS), "n_train": PILOT_TRAIN, "n_heldout": PILOT_HELDOUT,
            "train_seed": ZIP_TRAIN_SEED, "heldout_seed": ZIP_HELDOUT_SEED, "epochs": 2}
    data = start_results_file(out, meta, "runs")
    ddpm = loaders.load("garments-ddpm-64", device="cpu")
    model = Z.HSpaceDenoiser(ddpm.unet, ddpm.scheduler)
    clip = loaders.load("garments-clip-s", device="cpu")
    oracle, judge = loaders.load("garments-oracle", device="cpu"), loaders.load("garments-extras-judge", device="cpu")
    for edit_name in PILOT_EDITS:
        references = {}
        for method in ("zip", "asyrp"):
            recipe = RECIPES[f"garments-{method}-{edit_name}"]
            tasks = zip_tasks(recipe, ZIP_TRAIN_SEED, PILOT_TRAIN)
            images = render_batch([t.source for t in tasks])
            pairs = [recipe_edit(recipe).text_pair(t.source.category) for t in tasks]
            heldout = render_tasks(zip_tasks(recipe, ZIP_HELDOUT_SEED, PILOT_HELDOUT))
            latents = None
            for lr in PILOT_LRS:
                key = f"{method}|{edit_name}|{lr:g}"
                if key in data["runs"]:
                    continue
                if method == "zip" and edit_name not in references:
                    references[edit_name] = zip_reference(recipe, clip)[0]
                cfg = replace(recipe.train, learning_rate=lr, epochs=2)
                delta = build_zip_delta(replace(recipe, train=cfg), ddpm, references.get(edit_name))
                latents = Z.invert(model, ddpm.alphas_cumprod, images, cfg) if latents is None else latents
                result = Z.train(model, delta, clip, images, pairs, cfg, latents=latents, progress=progress)
                edited = Z.edit(model, heldout.images, delta, cfg)
                scores = score_edits(heldout, edited, oracle, OraclePerceptual(oracle), judge)
                data["runs"][key] = {"method": method, "edit": edit_name, "lr": lr, "losses": [_r(v) for v in result.losses],
                                     "train_seconds": round(result.seconds, 1), **_summary(scores)}
                write_json_atomic(data, out)
    return data


def recipe_edit(recipe) -> Z.ZIPEdit:
    return Z.ZIP_EDITS[recipe.edit]


def choose_lr(pilot: dict) -> float:
    """The rate with the highest mean success over the pilot's runs (both methods, both edits); ties
    go to the smaller mean perceptual change."""
    rates = sorted({r["lr"] for r in pilot["runs"].values()})
    if not rates:
        raise ValueError("the pilot has no runs")

    def key(lr):
        runs = [r for r in pilot["runs"].values() if r["lr"] == lr]
        return (-sum(r["success"] for r in runs) / len(runs), sum(r["perceptual"] for r in runs) / len(runs))

    return min(rates, key=key)


# ----------------------------------------------------------------------------------------
# The table (Tables 1-3 analogues)
# ----------------------------------------------------------------------------------------
def clip_scores(guide, independent, edit: Z.ZIPEdit) -> Callable[[TaskBatch, torch.Tensor], dict[str, torch.Tensor]]:
    """CLIP scores (cosine x 100) of each edit with its target caption, by the guide and by the
    independent CLIP."""

    def scores(batch: TaskBatch, edited: torch.Tensor) -> dict[str, torch.Tensor]:
        targets = [edit.text_pair(t.source.category).target for t in batch.tasks]
        out = {}
        for name, bundle in (("clip_score_guide", guide), ("clip_score_independent", independent)):
            with torch.no_grad():
                text = encode_text(bundle, targets).float()
                out[name] = 100 * (diffusionclip.image_features(bundle, edited) * text).sum(dim=-1)
        return out

    return scores


def distribution_scores(edited: torch.Tensor, ideal: torch.Tensor, oracle, seed: int = 0) -> dict:
    """IS of the oracle's category softmax over ``edited``; KID and FID of the oracle's features of
    ``edited`` against the ideal edits ``ideal``, each with a bootstrap interval over images."""
    features = oracle_features(oracle)
    fe, fi = features(edited).double(), features(ideal).double()
    with torch.no_grad():
        probs = F.softmax(oracle(edited)["category"].double(), dim=-1)
    gen = torch.Generator().manual_seed(seed)
    n = len(edited)

    def kid(a, b):
        return kernel_inception_distance(a, b, subsets=10, subset_size=min(len(a), len(b)) // 2,
                                         generator=torch.Generator().manual_seed(seed))

    score, lo, hi = bootstrap_ci(inception_score, probs, rounds=200, generator=gen)
    out = {"inception_score": _r(score), "inception_score_ci": [_r(lo), _r(hi)], "kid": _r(kid(fe, fi)),
           "fid": _r(frechet_distance(fe, fi))}
    # paired resampling: the same garments on both sides
    kids, fids = [], []
    for _ in range(100):
        idx = torch.randint(0, n, (n,), generator=gen)
        kids.append(kid(fe[idx], fi[idx]))
        fids.append(frechet_distance(fe[idx], fi[idx]))
    for name, values in (("kid", kids), ("fid", fids)):
        values = torch.tensor(values)
        out[f"{name}_ci"] = [_r(values.quantile(0.025)), _r(values.quantile(0.975))]
    return out


class SharedInversion:
    """The DDIM inversion of a batch, computed once and shared by every h-space method (they all
    invert with the same 40-step grid); the first method to use it pays for it."""

    def __init__(self, model: Z.HSpaceDenoiser, cfg: Z.ZIPConfig) -> None:
        self.model, self.cfg, self.latents, self.seconds = model, cfg, None, 0.0

    def __call__(self, batch: TaskBatch) -> torch.Tensor:
        if self.latents is None:
            start = time.perf_counter()
            self.latents = Z.invert(self.model, self.model.alphas_cumprod, batch.images, self.cfg)
            self.seconds = time.perf_counter() - start
        return self.latents


def _timed(method: Callable, inverted: SharedInversion) -> Callable:
    """``method`` whose recorded time includes the shared inversion it used (paid once, charged to each)."""

    def run(batch, generator):
        out = method(batch, generator)
        return out, inverted.seconds

    return run


def table_methods(edit_name: str, ddpm, model: Z.HSpaceDenoiser) -> dict[str, Callable]:
    """The methods of the table for one edit: ``batch, generator -> edited``."""
    zip_edit, asyrp = loaders.load(f"garments-zip-{edit_name}"), loaders.load(f"garments-asyrp-{edit_name}")
    reference = zip_edit.delta.reference
    inverted = SharedInversion(model, zip_edit.config)
    methods = {name: _timed(method, inverted) for name, method in {
        "DDIM reconstruction": lambda batch, g: Z.edit(model, batch.images, None, zip_edit.config,
                                                       latents=inverted(batch)),
        "ZIP": lambda batch, g: Z.edit(model, batch.images, zip_edit.delta, zip_edit.config, latents=inverted(batch)),
        "Asyrp": lambda batch, g: Z.edit(model, batch.images, asyrp.delta, asyrp.config, latents=inverted(batch)),
        "ILVR": lambda batch, g: Z.ilvr_edit(model, ddpm.alphas_cumprod, batch.images, reference, ILVR_FACTOR,
                                             ILVR_T_STOP, zip_edit.config, latents=inverted(batch), generator=g),
    }.items()}
    if edit_name in DCLIP_EDITS:
        tuned = loaders.load(f"garments-dclip-{edit_name}")
        cfg = RECIPES[f"garments-dclip-{edit_name}"].train
        tuned_denoiser = PixelDenoiser(tuned.unet, tuned.scheduler)
        base_denoiser = PixelDenoiser(ddpm.unet, ddpm.scheduler)
        methods["DiffusionCLIP (ch. 07)"] = lambda batch, g: diffusionclip.edit(base_denoiser, tuned_denoiser,
                                                                                 ddpm.alphas_cumprod, batch.images, cfg)
    return methods


def _run_records(out: Path, data: dict, edit_name: str, methods: dict[str, Callable], batch: TaskBatch,
                 ideal: torch.Tensor, models: dict, progress: bool) -> None:
    edit = Z.ZIP_EDITS[edit_name]
    judge = models["judge"] if edit.edit.attribute == "extra" else None
    first_user = [None]
    for name, method in tqdm(methods.items(), desc=edit_name, disable=not progress):
        key = f"{name}|{edit_name}"
        if key in data["records"]:
            continue
        start = time.perf_counter()
        edited = method(batch, torch.Generator().manual_seed(TABLE_SEED))
        seconds = time.perf_counter() - start
        if isinstance(edited, tuple):  # (edited, seconds of a shared inversion it used)
            edited, shared = edited
            if first_user[0] is None:
                first_user[0] = name  # its own time already includes the inversion it ran
            else:
                seconds += shared
        scores = score_edits(batch, edited, models["oracle"], OraclePerceptual(models["oracle"]), judge)
        scores.update(clip_scores(models["guide"], models["independent"], edit)(batch, edited))
        data["records"][key] = {"method": name, "edit": edit_name, "domain": edit.domain,
                                "seconds_per_edit": round(seconds / len(edited), 3),
                                **{s: [_r(v) for v in values] for s, values in scores.items()},
                                **distribution_scores(edited, ideal, models["oracle"])}
        write_json_atomic(data, out)


def _table_models() -> dict:
    return {"oracle": loaders.load("garments-oracle", device="cpu"),
            "judge": loaders.load("garments-extras-judge", device="cpu"),
            "guide": loaders.load("garments-clip-s", device="cpu"),
            "independent": loaders.load("garments-clip-b", device="cpu")}


def _table_batch(edit_name: str) -> tuple[TaskBatch, torch.Tensor]:
    recipe = RECIPES[f"garments-zip-{edit_name}"]
    tasks = zip_tasks(recipe, TABLE_SEED, TABLE_N)
    return render_tasks(tasks), render_batch([t.target for t in tasks])


def run_table(out: Path, progress: bool = True) -> dict:
    """Every method on :data:`TABLE_N` garments of :data:`TABLE_SEED` per shipped edit."""
    meta = {"seed": TABLE_SEED, "n_per_edit": TABLE_N, "edits": list(Z.ZIP_EDITS),
            "config": asdict(RECIPES["garments-zip-blue"].train), "ilvr": {"factor": ILVR_FACTOR, "t_stop": ILVR_T_STOP}}
    data = start_results_file(out, meta)
    ddpm = loaders.load("garments-ddpm-64", device="cpu")
    model = Z.HSpaceDenoiser(ddpm.unet, ddpm.scheduler)
    models = _table_models()
    for edit_name in Z.ZIP_EDITS:
        batch, ideal = _table_batch(edit_name)
        _run_records(out, data, edit_name, table_methods(edit_name, ddpm, model), batch, ideal, models, progress)
    return data


ABLATIONS: dict[str, dict] = {"clean reference (t-independent)": {"reference_t": "clean"},
                              "Alg. 1 window, t >= 500": {"window": (500, 999)}}


def run_ablation(out: Path, progress: bool = True) -> dict:
    """The shipped ZIP encoders with the settings of :data:`ABLATIONS` changed at edit time."""
    meta = {"seed": TABLE_SEED, "n_per_edit": TABLE_N, "edits": list(Z.ZIP_EDITS),
            "ablations": {k: {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()}
                          for k, v in ABLATIONS.items()}}
    data = start_results_file(out, meta)
    ddpm = loaders.load("garments-ddpm-64", device="cpu")
    model = Z.HSpaceDenoiser(ddpm.unet, ddpm.scheduler)
    models = _table_models()
    for edit_name in Z.ZIP_EDITS:
        shipped = loaders.load(f"garments-zip-{edit_name}")
        batch, ideal = _table_batch(edit_name)
        methods = {}
        inverted = SharedInversion(model, shipped.config)
        for label, change in ABLATIONS.items():
            cfg = replace(shipped.config, **change)
            delta = shipped.delta.with_reference(reference_t=cfg.reference_t)
            methods[f"ZIP, {label}"] = _timed(lambda batch, g, delta=delta, cfg=cfg: Z.edit(
                model, batch.images, delta, cfg, latents=inverted(batch)), inverted)
        _run_records(out, data, edit_name, methods, batch, ideal, models, progress)
    return data


# ----------------------------------------------------------------------------------------
# Reading the results
# ----------------------------------------------------------------------------------------
PER_IMAGE: tuple[str, ...] = ("success", "consistency", "perceptual", "clip_score_independent", "clip_score_guide")


def table_frame(data: dict, seed: int = 0) -> "pd.DataFrame":
    """One row per (edit, method) of a ``table`` or ``ablation`` file: the mean of each per-image
    score with its bootstrap interval (columns ``<score>``, ``<score>_lo``, ``<score>_hi``), and the
    distribution scores (IS, KID, FID) with theirs."""
    import pandas as pd

    from ..metrics import mean_ci

    rows = []
    for record in data["records"].values():
        row = {"edit": record["edit"], "domain": record["domain"], "method": record["method"],
               "n": len(record["success"]), "seconds_per_edit": record["seconds_per_edit"]}
        for score in PER_IMAGE:
            mean, lo, hi = mean_ci(torch.tensor(record[score]), generator=torch.Generator().manual_seed(seed))
            row.update({score: mean, f"{score}_lo": lo, f"{score}_hi": hi})
        for score in ("inception_score", "kid", "fid"):
            row.update({score: record[score], f"{score}_lo": record[f"{score}_ci"][0],
                        f"{score}_hi": record[f"{score}_ci"][1]})
        rows.append(row)
    return pd.DataFrame(rows)


def pilot_frame(pilot: dict) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame([{"method": r["method"], "edit": r["edit"], "lr": r["lr"], "success": r["success"],
                          "consistency": r["consistency"], "perceptual": r["perceptual"],
                          "first loss": r["losses"][0], "last loss": r["losses"][-1],
                          "train s": r["train_seconds"]} for r in pilot["runs"].values()])


RUNNERS: dict[str, Callable] = {"pilot": run_pilot, "table": run_table, "ablation": run_ablation}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Precompute chapter 10's results (resumable).")
    parser.add_argument("parts", nargs="+", choices=PARTS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    for part in args.parts:
        clock = time.perf_counter()
        RUNNERS[part](results_path(part))
        print(f"{part}: {time.perf_counter() - clock:.0f} s", flush=True)
