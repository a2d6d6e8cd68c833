"""Chapter 05's grid: every (init, strategy, augmentation, backbone, seed) of paper 000's Tables 2-4,
trained, evaluated and written to ``config.results_dir() / "05_attrnet_tables.json"``; resumable.

    python -m fashionlab.experiments.ch05_attrnet_grid [OUT] [--clip garments-clip-s]

Chapter: "Taming a ViT for multi-attribute guidance" (``notebooks/05_attribute_classifier.py``),
which reads the shipped file, summarises it with :func:`summarise_runs` and reruns one variant live.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from tqdm.auto import tqdm

from .. import config
from ..config import write_json_atomic
from ..data.garments import RenderCache, render_cache
from ..eval.classifiers import evaluate_attrnet
from ..models.attrnet import AttributeNet
from ..train.attrnet import (N_TEST, N_TRAIN, TEST_SEED, TRAIN_SEED, VAL_SEED, AttrNetTrainConfig, Variant,
                             table_variants)
from ..zoo.recipes import train_variant
from . import read_results_file

RESULTS_FILE = "05_attrnet_tables.json"


def read_tables(path: str | Path | None = None) -> dict:
    """The grid's results file (default: the shipped one in :func:`fashionlab.config.results_dir`)."""
    path = Path(path) if path is not None else config.results_dir() / RESULTS_FILE
    return read_results_file(path, "ch05_attrnet_grid", "")


def run_variant(variant: Variant, train: RenderCache, test: RenderCache, cfg: AttrNetTrainConfig,
                validation: RenderCache | None = None, progress: bool = False) -> tuple[AttributeNet, dict]:
    """Build, fine-tune and evaluate one variant; returns (model, a JSON-ready result). The mean
    accuracy on ``validation`` (if given) is what chooses the shipped variant; the test set
    only reports."""
    model, run = train_variant(variant, train, cfg, progress=progress)
    result = evaluate_attrnet(model, test)
    if validation is not None:
        result["validation_mean_accuracy"] = evaluate_attrnet(model, validation)["mean_accuracy"]
    result.update(variant=asdict(variant), **run.record())
    return model, result


def summarise_runs(runs: dict[str, dict], variants: list[Variant], field: str = "accuracy"
                   ) -> tuple["pd.DataFrame", "pd.DataFrame", "pd.Series"]:
    """Mean and standard deviation over seeds of ``field`` (``accuracy``, ``attention_in_region``
    or ``uniform_in_region``) per attribute, one row per variant without its seed (labelled
    ``init / strategy [+aug] [clip]``), with an ``average`` column; and the number of seeds per
    row. ``runs`` is :func:`run_tables`'s ``"runs"``; variants missing from it are skipped."""
    import pandas as pd

    groups: dict[str, list[dict]] = {}
    for v in variants:
        if v.key not in runs:
            continue
        label = f"{v.init} / {v.strategy}" + (" +aug" if v.augment else "") + f" [{v.clip_name.rsplit('-', 1)[-1]}]"
        values = dict(runs[v.key][field])
        values["average"] = sum(values.values()) / len(values)
        groups.setdefault(label, []).append(values)
    if not groups:
        raise ValueError("none of the variants has a run yet")
    frames = {label: pd.DataFrame(rows) for label, rows in groups.items()}
    mean = pd.DataFrame({label: f.mean() for label, f in frames.items()}).T
    std = pd.DataFrame({label: f.std(ddof=1) for label, f in frames.items()}).T  # NaN for a single seed
    return mean, std, pd.Series({label: len(f) for label, f in frames.items()}, name="seeds")


def best_variant(runs: dict[str, dict], variants: list[Variant]) -> tuple[Variant, float]:
    """The table row with the highest validation accuracy averaged over its seeds (the test set
    plays no part), as that row's seed-0 variant, and that average. Rows with a missing seed do
    not compete."""
    rows: dict[Variant, list[float]] = {}
    expected: dict[Variant, int] = {}
    for v in variants:
        row = replace(v, seed=0)
        expected[row] = expected.get(row, 0) + 1
        if v.key in runs:
            rows.setdefault(row, []).append(runs[v.key]["validation_mean_accuracy"])
    complete = {row: sum(vals) / len(vals) for row, vals in rows.items() if len(vals) == expected[row]}
    if not complete:
        raise ValueError("no table row has all of its seeds yet")
    best = max(complete, key=complete.get)
    return best, complete[best]


def run_tables(out: str | Path, variants: list[Variant] | None = None, cfg: AttrNetTrainConfig | None = None,
               n_train: int = N_TRAIN, n_test: int = N_TEST, progress: bool = True) -> dict:
    """Run every variant not yet in the JSON file ``out`` (so an interrupted grid resumes where it
    stopped), writing after each run. Returns the file's content."""
    out = Path(out)
    done = json.loads(out.read_text()) if out.is_file() else {"config": None, "runs": {}}
    cfg = cfg or AttrNetTrainConfig(bf16=True)
    if done["config"] not in (None, asdict(cfg)):
        raise ValueError(f"{out} was made with another config ({done['config']}); use a new file")
    done["config"] = asdict(cfg)
    done["data"] = {"train": f"Garments seed {TRAIN_SEED}, {n_train} in-domain renders",
                    "validation": f"Garments seed {VAL_SEED}, {n_test} in-domain renders",
                    "test": f"Garments seed {TEST_SEED}, {n_test} in-domain renders"}
    train = render_cache(TRAIN_SEED, n_train, domain="in", progress=False)
    validation = render_cache(VAL_SEED, n_test, domain="in", progress=False)
    test = render_cache(TEST_SEED, n_test, domain="in", progress=False)
    todo = [v for v in (variants or table_variants()) if v.key not in done["runs"]]
    for variant in tqdm(todo, desc="attrnet variants", disable=not progress):
        _, result = run_variant(variant, train, test, cfg, validation)
        done["runs"][variant.key] = result
        write_json_atomic(done, out)
    return done


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run chapter 05's variant grid (resumable).")
    parser.add_argument("out", nargs="?", default=str(config.results_dir() / RESULTS_FILE))
    parser.add_argument("--clip", action="append", choices=("garments-clip-s", "garments-clip-b"),
                        help="only the variants built on this CLIP (repeatable; default: all)")
    args = parser.parse_args()
    chosen = [v for v in table_variants() if args.clip is None or v.clip_name in args.clip]
    run_tables(args.out, chosen)
