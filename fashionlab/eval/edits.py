"""Edit tasks with ground truth, their scores, and a resumable runner for the editing chapters'
quantitative tables (chapter 06 onwards, and the benchmark of chapter 11).

An :class:`EditTask` is one held-out garment, one edited attribute and a target value; the ideal
result is the same spec re-rendered with the target (``spec.edit``), so every score has ground
truth (chapter 04):

====================  ===================================================================
score                 meaning (per edited image)
====================  ===================================================================
``success``           the independent oracle predicts the target value
``consistency``       share of the other attributes (applicable before and after) the oracle
                      still predicts as the source's labels
``l2_outside``        mean squared change outside the edit's ground-truth region
``perceptual_outside`` the perceptual distance map, averaged outside that region
``perceptual``        the perceptual distance to the source, whole image
====================  ===================================================================
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import write_json_atomic
from ..data.garments import ATTRIBUTES, BOTTOMS, EXTRAS, SCHEMA, STYLES, GarmentSpec, edit_region, render, spec_for
from ..data.transforms import to_tensor
from ..metrics import attribute_consistency, mean_ci, predicted_attributes, preservation

EDIT_TYPES: tuple[str, ...] = ("pattern", "colour", "fabric", "sleeve", "neckline", "category")
"""Texture edits (pattern, colour, fabric) and shape edits (sleeve, neckline, category)."""
TASK_TYPES: tuple[str, ...] = ATTRIBUTES + ("style", "extra")
"""Every attribute an edit task may change: the schema's, the render style, and adding a detail extra
(the last two take a garment out of the DDPM's domain; the extras are graded by the extras judge)."""
SCORES: tuple[str, ...] = ("success", "consistency", "l2_outside", "perceptual_outside", "perceptual")


@dataclass(frozen=True)
class EditTask:
    """One garment (``seed``, ``index``), one attribute, one target value."""

    seed: int
    index: int
    attribute: str
    source: GarmentSpec
    target: GarmentSpec

    @property
    def value(self) -> str:
        if self.attribute == "extra":  # the extra the edit adds
            (added,) = set(self.target.extras) - set(self.source.extras)
            return added
        return getattr(self.target, self.attribute)

    @property
    def targets(self) -> dict[str, str]:
        return {self.attribute: self.value}


def _category_choices(category: str) -> list[str]:
    """Category edits stay within tops-and-dresses or within bottoms, so that the garment keeps its kind."""
    group = BOTTOMS if category in BOTTOMS else tuple(c for c in SCHEMA["category"] if c not in BOTTOMS)
    return [c for c in group if c != category]


def _alternatives(spec: GarmentSpec, attribute: str) -> list[str]:
    """The values ``attribute`` of ``spec`` could be edited to (empty if it does not apply)."""
    if attribute == "style":
        return [s for s in STYLES if s != spec.style]
    if attribute == "extra":
        return [e for e in EXTRAS if e not in spec.extras]
    current = getattr(spec, attribute)
    if current is None:
        return []
    return _category_choices(current) if attribute == "category" else [v for v in SCHEMA[attribute] if v != current]


def edited_spec(spec: GarmentSpec, attribute: str, value: str) -> GarmentSpec:
    """``spec`` with ``attribute`` set to ``value`` (for ``"extra"``: with that extra added)."""
    if attribute == "extra":
        return spec.edit(extras=tuple(e for e in EXTRAS if e in spec.extras or e == value))
    return spec.edit(**{attribute: value})


def tasks_for(seed: int, n: int, attribute: str, value: str, domain: str = "in") -> list[EditTask]:
    """``n`` tasks that all set ``attribute`` to ``value`` (a fine-tuned model's one edit), on the
    first garments of ``seed`` the edit changes."""
    if attribute not in TASK_TYPES:
        raise ValueError(f"attribute must be one of {TASK_TYPES}, got {attribute!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tasks, index = [], 0
    while len(tasks) < n:
        spec = spec_for(seed, index, domain)
        index += 1
        if value in _alternatives(spec, attribute):
            tasks.append(EditTask(seed, index - 1, attribute, spec, edited_spec(spec, attribute, value)))
        elif index > 100 * n:
            raise ValueError(f"no garment of seed {seed} (domain {domain!r}) can take {attribute}={value!r}")
    return tasks


def make_tasks(seed: int, n_per_type: int, edit_types: Sequence[str] = EDIT_TYPES, domain: str = "in",
               choice_seed: int = 0) -> list[EditTask]:
    """``n_per_type`` tasks per edit type on garments ``spec_for(seed, 0..)`` where the attribute
    applies; the target value is drawn uniformly among the other values (from ``choice_seed``)."""
    if n_per_type < 1:
        raise ValueError(f"n_per_type must be >= 1, got {n_per_type}")
    for attribute in edit_types:
        if attribute not in TASK_TYPES:
            raise ValueError(f"edit types must be one of {TASK_TYPES}, got {attribute!r}")
    rng = np.random.default_rng([seed, choice_seed])
    tasks = []
    for attribute in edit_types:
        found, index = 0, 0
        while found < n_per_type:
            spec = spec_for(seed, index, domain)
            index += 1
            choices = _alternatives(spec, attribute)
            if not choices:
                continue
            target = edited_spec(spec, attribute, choices[int(rng.integers(len(choices)))])
            tasks.append(EditTask(seed, index - 1, attribute, spec, target))
            found += 1
    return tasks


@dataclass
class TaskBatch:
    """Rendered sources, their part maps and the ground-truth edit regions of a list of tasks."""

    tasks: list[EditTask]
    images: torch.Tensor
    """(B, 3, H, W) in [-1, 1]."""
    regions: torch.Tensor
    """(B, H, W) bool: the edit's ground-truth region (source and ideal-edit part maps)."""
    source_labels: torch.Tensor
    """(B, A): the source's labels, -1 where an attribute does not apply before *or* after the edit."""


def render_tasks(tasks: Sequence[EditTask], size: int = 64) -> TaskBatch:
    images, regions, labels = [], [], []
    for task in tasks:
        src, tgt = render(task.source, size), render(task.target, size)
        images.append(to_tensor(src.image))
        regions.append(edit_region(src.parts, tgt.parts, task.attribute))
        vector = task.source.attribute_vector()
        vector[task.target.attribute_vector() < 0] = -1
        labels.append(torch.from_numpy(vector))
    return TaskBatch(list(tasks), torch.stack(images), torch.stack(regions), torch.stack(labels))


def _succeeded(task: EditTask, k: int, predicted: torch.Tensor, logits: dict, extras: dict | None) -> bool:
    """Whether edit ``k`` shows its target (the oracle's heads; the judge's for an extra)."""
    if task.attribute == "style":
        return int(logits["style"][k].argmax()) == STYLES.index(task.value)
    if task.attribute == "extra":
        return int(extras[task.value][k].argmax()) == 1
    return int(predicted[k, ATTRIBUTES.index(task.attribute)]) == SCHEMA[task.attribute].index(task.value)


@torch.no_grad()
def score_edits(batch: TaskBatch, edited: torch.Tensor, oracle: torch.nn.Module, perceptual: torch.nn.Module,
                judge: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Per-image scores (see the module table) of ``edited`` against the tasks of ``batch``. A style
    edit succeeds when the oracle's style head reads the target style; an ``extra`` edit when the
    extras ``judge`` (zoo ``garments-extras-judge``, required for them) sees the added extra."""
    if edited.shape != batch.images.shape:
        raise ValueError(f"edited must match the sources' shape {tuple(batch.images.shape)}, got {tuple(edited.shape)}")
    if judge is None and any(t.attribute == "extra" for t in batch.tasks):
        raise ValueError("extra edits need the extras judge: pass judge=zoo.load('garments-extras-judge')")
    device = next(oracle.parameters()).device
    logits = oracle(edited.to(device))
    predicted = predicted_attributes(logits, ATTRIBUTES).cpu()
    extras = None if judge is None else {k: v.cpu() for k, v in judge(edited.to(device)).items()}
    success = torch.tensor([_succeeded(t, k, predicted, logits, extras) for k, t in enumerate(batch.tasks)])
    consistency = torch.stack([attribute_consistency(predicted[k:k + 1], batch.source_labels[k:k + 1],
                                                     [t.attribute], ATTRIBUTES)[0] for k, t in enumerate(batch.tasks)])
    source, edited = batch.images.to(device), edited.to(device)
    kept = preservation(source, edited, batch.regions.to(device), perceptual)
    return {"success": success.float(), "consistency": consistency, "l2_outside": kept["l2_outside"].cpu(),
            "perceptual_outside": kept["perceptual_outside"].cpu(), "perceptual": perceptual(source, edited).cpu()}


EditMethod = Callable[[TaskBatch, torch.Generator], torch.Tensor]
"""(tasks, generator) -> edited images (B, 3, H, W) in [-1, 1]."""


def run_edit_table(out: str | Path, methods: dict[str, EditMethod], tasks: Sequence[EditTask],
                   oracle: torch.nn.Module, perceptual: torch.nn.Module, batch_size: int = 16, seed: int = 0,
                   progress: bool = True, judge: torch.nn.Module | None = None,
                   extra_scores: Callable[[TaskBatch, torch.Tensor], dict[str, torch.Tensor]] | None = None) -> dict:
    """Run every method on every task in batches of one edit type and score them, writing the
    per-image scores and seconds per batch to the JSON file ``out`` after each batch; an
    interrupted run resumes where it stopped. Batch k of a method draws from
    ``torch.Generator().manual_seed(seed + k)``. ``judge`` grades ``extra`` tasks (see
    :func:`score_edits`); ``extra_scores(batch, edited)`` adds per-image scores of the caller's own
    (a CLIP score) to each record. Returns the file's content."""
    out = Path(out)
    done = json.loads(out.read_text()) if out.is_file() else {}
    done.setdefault("batches", {})  # the file may hold the caller's own records beside the batches
    batches = []
    for attribute in dict.fromkeys(t.attribute for t in tasks):
        of_type = [t for t in tasks if t.attribute == attribute]
        batches += [of_type[i:i + batch_size] for i in range(0, len(of_type), batch_size)]
    todo = [(name, k) for name in methods for k in range(len(batches))
            if f"{name}|{k}" not in done["batches"]]
    rendered: dict[int, TaskBatch] = {}
    for name, k in tqdm(todo, desc="edit batches", disable=not progress):
        batch = rendered.setdefault(k, render_tasks(batches[k]))
        start = time.perf_counter()
        edited = methods[name](batch, torch.Generator().manual_seed(seed + k))
        seconds = time.perf_counter() - start
        scores = score_edits(batch, edited, oracle, perceptual, judge)
        if extra_scores is not None:
            scores.update(extra_scores(batch, edited))
        done["batches"][f"{name}|{k}"] = {
            "method": name, "attribute": batch.tasks[0].attribute, "seconds_per_edit": round(seconds / len(batch.tasks), 3),
            "tasks": [[t.seed, t.index, t.value] for t in batch.tasks],
            **{s: [round(float(v), 5) for v in value] for s, value in scores.items()}}
        write_json_atomic(done, out)
    return done


def format_ci(mean: float, low: float, high: float, digits: int = 3) -> str:
    """``"0.812 [0.745, 0.873]"``: a mean and its interval, as every table of the book prints them."""
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def table_with_ci(summary: "pd.DataFrame", scores: Sequence[str] = ("success", "consistency", "l2_outside", "perceptual"),
                  digits: int = 3) -> "pd.DataFrame":
    """A :func:`summarise_edits` frame for reading: ``n``, seconds per edit, and each of ``scores``
    as ``"mean [lo, hi]"`` (:func:`format_ci`)."""
    out = summary[["n", "seconds_per_edit"]].copy()
    out["n"] = out["n"].astype(int)
    out["seconds_per_edit"] = out["seconds_per_edit"].round(1)
    for s in scores:
        out[s] = [format_ci(m, lo, hi, digits) for m, lo, hi in zip(summary[s], summary[f"{s}_lo"], summary[f"{s}_hi"])]
    return out


def summarise_edits(table: dict, level: float = 0.95, pooled: bool = False) -> "pd.DataFrame":
    """One row per (method, edit type): the mean of every score with its bootstrap interval
    ("mean [lo, hi]" as numbers in columns ``<score>``, ``<score>_lo``, ``<score>_hi``), the number
    of edits, and seconds per edit. ``edit_score`` is the mean over edits of success x consistency:
    the edit happened *and* the other attributes stayed. ``pooled``: one row per method over all its
    edits (edit ``"all"``)."""
    import pandas as pd

    groups: dict[tuple[str, str], dict[str, list]] = {}
    for entry in table["batches"].values():
        key = (entry["method"], "all" if pooled else entry["attribute"])
        group = groups.setdefault(key, {s: [] for s in SCORES} | {"seconds": []})
        for s in SCORES:
            group[s] += entry[s]
        group["seconds"] += [entry["seconds_per_edit"]] * len(entry["success"])
    rows = {}
    for key, group in groups.items():
        row: dict[str, float] = {"n": len(group["success"]), "seconds_per_edit": float(np.mean(group["seconds"]))}
        group["edit_score"] = np.multiply(group["success"], group["consistency"]).tolist()
        for s in (*SCORES, "edit_score"):
            mean, lo, hi = mean_ci(torch.tensor(group[s]), level=level, generator=torch.Generator().manual_seed(0))
            row.update({s: mean, f"{s}_lo": lo, f"{s}_hi": hi})
        rows[key] = row
    return pd.DataFrame(rows).T.rename_axis(["method", "edit"])
