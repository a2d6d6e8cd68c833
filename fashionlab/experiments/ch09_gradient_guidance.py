"""The precomputed results of chapter 09 (``notebooks/09_gradient_guidance.py``): gradient guidance
with small guidance functions (thesis 003). Each part runs with ``python -m``, resumes where an
interrupted run stopped, and writes one JSON file to :func:`fashionlab.config.results_dir`:

================  ===========  ==================================================================
part              garments     what
================  ===========  ==================================================================
``grid``          seed 901     Fig. 15: [t1, t2] x lambda for the attribute edit, 10 sources
``tables``        seed 902     Tables 1-2: 120 edits at the setting :func:`choose_setting` picks
                               from the grid, judged by the oracle and by the guide itself
``steps``         seed 903     Fig. 6: the lambda a colour edit needs at 25 / 50 / 100 steps
``universal``     seed 901     universal guidance (eq. 13) beside Algorithm 1 at matched effect
``regulariser``   seed 906     Fig. 13: eqs. 17-18, the attribute edit holding / flipping colour
``segmentation``  seed 904     §3.3.2: grow sleeves, neckline, detail over ranges and lambdas
``real``          seed 905     §4.5: renders edited after DDIM (1000 steps) and edit-friendly
                               DDPM (100 steps, T_skip 0 and 95) inversion
``latent``        seed 907     the thesis's LDM/SD runs on chapter 08's latent model: colour,
                               attribute and segmentation guidance through the VAE decoder
================  ===========  ==================================================================

The attribute edit throughout is ``pattern -> striped`` raised on ``garments-attrnet``'s logit
(the thesis's "age" on a binary CelebA classifier): its sources are generated garments the oracle
does not already call striped and that show one clean garment. Usage:
``python -m fashionlab.experiments.ch09_gradient_guidance grid``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from tqdm.auto import tqdm

from .. import config
from ..config import write_json_atomic
from ..data.garments import ATTRIBUTES, BACKGROUNDS, SCHEMA, TOPS, applicable, render_cache
from ..data.transforms import to_tensor
from ..diffusion.core import PixelDenoiser
from ..methods import gradient_guidance as gg
from ..metrics import OraclePerceptual, foreground_mask, noise_statistics, psnr, single_region_rate
from ..zoo import loaders
from . import read_results_file, results_file, start_results_file

if TYPE_CHECKING:
    import pandas as pd

PARTS: tuple[str, ...] = ("grid", "tables", "steps", "universal", "regulariser", "segmentation", "real", "latent")
GRID_SEED, TABLE_SEED, STEPS_SEED, SEG_SEED, REAL_SEED, REG_SEED, LATENT_SEED = 901, 902, 903, 904, 905, 906, 907
EDIT: tuple[str, str] = ("pattern", "striped")
"""The attribute edit of the grid, the tables, the regulariser and the real images."""
STEPS = 50
GRID_RANGES: tuple[tuple[int, int], ...] = ((0, 48), (0, 25), (25, 48), (40, 48))
"""[t1, t2) as step indices of the 50-step process; (0, 48) is the thesis's [0, 95] of 100 steps."""
GRID_STRENGTHS: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
N_GRID, N_TABLE, N_STEPS, N_REG, N_SEG, N_REAL = 10, 120, 6, 20, 8, 6
BATCH = 10
STEP_COUNTS: tuple[int, ...] = (25, 50, 100)
STEP_STRENGTHS: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
COLOUR_TARGET = (0, 0.8)
"""Red channel towards 0.8 in [-1, 1] (the thesis's w = 0.9 in [0, 1])."""
STEPS_EFFECT = 0.15
"""The equal effect of the steps part: the mean rise of the red channel on the garment."""
UNIVERSAL_STRENGTHS: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0)
REG_WEIGHTS: tuple[float, ...] = (0.01, 0.1)
"""Weights of the eq. 17-18 penalty. The thesis's weight 1 suits a binary logit of a few units; our
penalty is on 8 logits (hold) or a log-odds (flip) that move by 10 or more, and at weight 1 it blew
every edit up (a first run: no clean edit of 20)."""
SEG_EDITS: dict[str, tuple[str, ...]] = {"sleeves": ("sleeves",), "neckline": ("neck",), "detail": ("detail",)}
"""Garment uses of segmentation guidance: lengthen sleeves, open a neckline, grow a pocket-like detail."""
SEG_SETTINGS: tuple[tuple[int, int, int], ...] = ((0, 48, 0), (10, 40, 10))
"""(t1, t2, extra steps): the thesis's range, and a mid range with 10 unguided steps added after it."""
SEG_STRENGTHS: tuple[float, ...] = (1e3, 1e4, 1e5)
DDIM_STEPS, DDPM_STEPS = 1000, 100
DDIM_STRENGTHS: tuple[float, ...] = (0.02, 0.1)
DDPM_SETTINGS: tuple[tuple[int, int, int | None, float], ...] = (
    (0, 0, 80, 0.3), (0, 0, 80, 1.0), (0, 0, 80, 3.0), (95, 0, None, 1.0), (95, 0, None, 10.0), (95, 0, None, 50.0))
"""(T_skip, t1, t2, lambda) of the edit-friendly edits: the thesis's Fig. 18 rows (T_skip 95 with
lambda 1 and 50; T_skip 0 with [0, 80)) and neighbours."""
BACKGROUND = BACKGROUNDS["photo"]
N_LATENT = 6
LATENT_GUIDANCE = 4.0
"""Classifier-free guidance scale of the latent model (chapter 08's grading setting)."""
LATENT_SETTINGS: dict[str, tuple[float, ...]] = {"colour": (300.0, 3000.0), "attribute": (0.3, 3.0)}


@dataclass
class Models:
    denoiser: PixelDenoiser
    alphas_cumprod: torch.Tensor
    scheduler: object
    attrnet: torch.nn.Module
    """The guide."""
    parser: torch.nn.Module
    oracle: torch.nn.Module
    """The judge."""
    extras: torch.nn.Module
    """The extras judge (pocket / logo / belt)."""
    perceptual: torch.nn.Module
    """The oracle's LPIPS analogue (grades, never guides)."""


def load_models(device: str | torch.device | None = None) -> Models:
    """The models of chapter 09 from the zoo, frozen. The chapter runs ``tiny`` only: the thesis's
    own setting needs a CelebA DDPM, a face parser and a CelebA attribute classifier, and guiding a
    face model with garment functions would be meaningless."""
    if config.get_profile() != "tiny":
        raise ValueError("chapter 09 runs under the 'tiny' profile only (its guidance functions are garment models "
                         "that fit only the garment DDPM); use_profile('tiny') first")
    device = config.get_device(device)
    ddpm = loaders.load("garments-ddpm-64", device=device)
    models = [loaders.load(n, device=device) for n in ("garments-attrnet", "garments-parser", "garments-oracle",
                                                        "garments-extras-judge")]
    for m in models:
        m.eval().requires_grad_(False)
    return Models(PixelDenoiser(ddpm.unet, ddpm.scheduler), ddpm.alphas_cumprod, ddpm.scheduler, *models,
                  OraclePerceptual(models[2]))


def results_path(part: str) -> Path:
    return results_file("09", part, PARTS)


def read_results(part: str) -> dict:
    return read_results_file(results_path(part), "ch09_gradient_guidance", part)


def _r(x: float, digits: int = 4) -> float:
    return round(float(x), digits)


# ----------------------------------------------------------------------------------------
# Sources and scores
# ----------------------------------------------------------------------------------------
def is_clean(images: torch.Tensor) -> torch.Tensor:
    """(B,) bool: one garment on a clean background (the single-region check of chapter 08)."""
    return single_region_rate(images, BACKGROUND)[1]


@torch.no_grad()
def pick_sources(models: Models, seed: int, n: int, steps: int = STEPS, exclude: tuple[str, str] | None = EDIT,
                 categories: tuple[str, ...] | None = None) -> tuple[gg.Draw, torch.Tensor]:
    """The first ``n`` generated garments of ``seed`` that are clean, not already ``exclude`` by the
    oracle and (if given) of ``categories``: their draw and their unguided images."""
    kept_draws, kept_images, start = [], [], 0
    while sum(len(d.indices) for d in kept_draws) < n:
        noise = gg.draw(seed, range(start, start + BATCH), steps)
        images = gg.generate(models.denoiser, models.alphas_cumprod, models.scheduler, noise, steps)
        logits = models.oracle(images)
        ok = is_clean(images)
        if exclude is not None:
            ok &= logits[exclude[0]].argmax(1) != SCHEMA[exclude[0]].index(exclude[1])
        if categories is not None:
            cats = torch.tensor([SCHEMA["category"].index(c) for c in categories])
            ok &= torch.isin(logits["category"].argmax(1), cats)
        keep = ok.nonzero().flatten().tolist()[: n - sum(len(d.indices) for d in kept_draws)]
        if keep:
            kept_draws.append(noise.subset(keep))
            kept_images.append(images[keep])
        start += BATCH
        if start > 50 * n + 100:
            raise RuntimeError(f"found only {sum(len(d.indices) for d in kept_draws)} of {n} sources in {start} draws")
    noise = gg.Draw(torch.cat([d.x_T for d in kept_draws]),
                    [torch.cat([d.noises[k] for d in kept_draws]) for k in range(steps)], seed,
                    [i for d in kept_draws for i in d.indices])
    return noise, torch.cat(kept_images)


def _logits(model: torch.nn.Module, images: torch.Tensor) -> dict[str, list[list[float]]]:
    with torch.no_grad():
        out = gg.classifier_logits(model, images)
    return {a: [[_r(v, 3) for v in row] for row in out[a].tolist()] for a in ATTRIBUTES}


@torch.no_grad()
def score_edits(models: Models, original: torch.Tensor, edited: torch.Tensor, full: bool = False) -> list[dict]:
    """Per image: oracle success of :data:`EDIT`, the guide's score change, clean, perceptual
    distance and L2 to the source; ``full`` adds both judges' logits on source and edit."""
    attribute, value = EDIT
    k = SCHEMA[attribute].index(value)
    success = models.oracle(edited)[attribute].argmax(1) == k
    guide_before = gg.classifier_logits(models.attrnet, original)[attribute][:, k]
    guide_after = gg.classifier_logits(models.attrnet, edited)[attribute][:, k]
    clean, distance = is_clean(edited), models.perceptual(original, edited)
    l2 = (edited - original).pow(2).mean(dim=(1, 2, 3))
    rows = [{"success": bool(success[i]), "guide_change": _r(guide_after[i] - guide_before[i], 3),
             "clean": bool(clean[i]), "distance": _r(distance[i]), "l2": _r(l2[i])} for i in range(len(edited))]
    if full:
        judged = {"oracle": (_logits(models.oracle, original), _logits(models.oracle, edited)),
                  "guide": (_logits(models.attrnet, original), _logits(models.attrnet, edited))}
        for i, row in enumerate(rows):
            for judge, (src, ed) in judged.items():
                row[judge] = {"source": {a: src[a][i] for a in ATTRIBUTES}, "edited": {a: ed[a][i] for a in ATTRIBUTES}}
    return rows


def edit_loss(models: Models, direction: str = "raise") -> gg.LossFn:
    return gg.attribute_loss(models.attrnet, *EDIT, direction=direction)


def _run_setting(models: Models, noise: gg.Draw, originals: torch.Tensor, loss: gg.LossFn | gg.FromSource,
                 cfg: gg.GradientGuidanceConfig, mask=None, full: bool = False) -> tuple[list[dict], float]:
    rows, seconds = [], 0.0
    for lo in range(0, len(noise.indices), BATCH):
        keep = list(range(lo, min(lo + BATCH, len(noise.indices))))
        m = None if mask is None else (mask[keep] if isinstance(mask, torch.Tensor) else mask)
        edit = gg.synthetic_edit(models.denoiser, models.alphas_cumprod, models.scheduler, loss, cfg,
                                 noise.subset(keep), mask=m, original=originals[keep])
        rows += score_edits(models, originals[keep], edit.edited, full)
        seconds += edit.seconds
    return rows, seconds


def _record(out: Path, data: dict, name: str, rows: list[dict], seconds: float, **extra) -> None:
    data["records"][name] = {"rows": rows, "seconds": _r(seconds, 2), **extra}
    write_json_atomic(data, out)


# ----------------------------------------------------------------------------------------
# Parts
# ----------------------------------------------------------------------------------------
def grid_name(t1: int, t2: int, strength: float) -> str:
    return f"[{t1},{t2})|lambda={strength:g}"


def run_grid(out: Path, models: Models, progress: bool = True) -> dict:
    """Fig. 15: every range of :data:`GRID_RANGES` x lambda of :data:`GRID_STRENGTHS` on 10 sources."""
    data = start_results_file(out, {"seed": GRID_SEED, "n": N_GRID, "edit": list(EDIT), "steps": STEPS,
                        "ranges": [list(r) for r in GRID_RANGES], "strengths": list(GRID_STRENGTHS)})
    noise, originals = pick_sources(models, GRID_SEED, N_GRID)
    for (t1, t2) in tqdm(GRID_RANGES, desc="grid", disable=not progress):
        for strength in GRID_STRENGTHS:
            name = grid_name(t1, t2, strength)
            if name in data["records"]:
                continue
            cfg = gg.GradientGuidanceConfig(strength, STEPS, t1, t2)
            rows, seconds = _run_setting(models, noise, originals, edit_loss(models), cfg)
            _record(out, data, name, rows, seconds, t1=t1, t2=t2, strength=strength)
    return data


def records_table(data: dict, means: dict[str, str | Callable[["pd.DataFrame"], "pd.Series"]],
                  meta: Callable[[dict], dict] | None = None) -> "pd.DataFrame":
    """One row per record of a results part: its name, ``meta(record)``'s columns, the mean over its
    edits of each ``means`` entry (column name -> a field of the per-edit rows, or a function of the
    rows' DataFrame giving one value per edit) and the seconds per edit."""
    import pandas as pd

    rows = []
    for name, rec in data["records"].items():
        r = pd.DataFrame(rec["rows"])
        row = {"name": name, **(meta(rec) if meta else {})}
        row.update({column: (field(r) if callable(field) else r[field]).astype(float).mean()
                    for column, field in means.items()})
        row["seconds_per_image"] = rec["seconds"] / len(r)
        rows.append(row)
    return pd.DataFrame(rows)


def range_label(rec: dict) -> str:
    """``[t1,t2)+extra``: a record's guided range and the unguided steps added after it."""
    return f"[{rec['t1']},{rec['t2']})+{rec.get('extra', 0)}"


def grid_summary(data: dict) -> "pd.DataFrame":
    """One row per setting: success (oracle), clean, success and clean, mean distance, guide change, seconds."""
    table = records_table(data, {"success": "success", "clean": "clean", "good": lambda r: r.success & r.clean,
                                 "distance": "distance", "guide_change": "guide_change"},
                          lambda rec: {"t1": rec["t1"], "t2": rec["t2"], "lambda": rec["strength"]})
    return table.rename(columns={"name": "setting"}).sort_values(["t1", "t2", "lambda"], ignore_index=True)


def choose_setting(data: dict) -> tuple[int, int, float]:
    """The rule, fixed before the grid ran: the highest share of edits that are both successful
    (oracle) and clean; ties go to the smaller mean perceptual distance."""
    table = grid_summary(data).sort_values(["good", "distance"], ascending=[False, True])
    best = table.iloc[0]
    return int(best.t1), int(best.t2), float(best["lambda"])


def calibration(data: dict) -> dict[str, float]:
    """The thesis's "successful edits sit near LPIPS 0.4, noisy ones above" in our distance: the
    median distance of successful clean edits, of failed clean ones, and of broken (not clean) ones."""
    import pandas as pd

    rows = pd.concat([pd.DataFrame(rec["rows"]) for rec in data["records"].values()])
    good = rows[rows.success & rows.clean].distance
    failed = rows[~rows.success & rows.clean].distance
    broken = rows[~rows.clean].distance
    return {"successful": float(good.median()) if len(good) else float("nan"),
            "failed": float(failed.median()) if len(failed) else float("nan"),
            "broken": float(broken.median()) if len(broken) else float("nan"),
            "n_successful": int(len(good)), "n_failed": int(len(failed)), "n_broken": int(len(broken))}


def table_config() -> gg.GradientGuidanceConfig:
    """Algorithm 1 as the tables run it: the setting :func:`choose_setting` picks from the shipped grid."""
    t1, t2, strength = choose_setting(read_results("grid"))
    return gg.GradientGuidanceConfig(strength, STEPS, t1, t2)


def training_association(n: int = 4000) -> dict[str, float]:
    """Cramér's V between ``pattern == striped`` and every other attribute on the DDPM's own
    training renders (Garments seed 0, in-domain): the correlations the thesis says an edit drags along."""
    cache = render_cache(0, n, domain="in", progress=False)
    attribute, value = EDIT
    target = (cache.attributes[:, ATTRIBUTES.index(attribute)] == SCHEMA[attribute].index(value)).long()
    out = {}
    for a in ATTRIBUTES:
        if a == attribute:
            continue
        col = cache.attributes[:, ATTRIBUTES.index(a)]
        valid = col >= 0
        x, y = target[valid], col[valid]
        table = torch.zeros(2, len(SCHEMA[a]), dtype=torch.float64)
        table.index_put_((x, y), torch.ones(len(x), dtype=torch.float64), accumulate=True)
        table = table[:, table.sum(0) > 0]
        expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / table.sum()
        chi2 = ((table - expected).pow(2) / expected).sum()
        out[a] = _r((chi2 / (table.sum() * (min(table.shape) - 1))).sqrt())
    return out


def run_tables(out: Path, models: Models, progress: bool = True) -> dict:
    """Tables 1-2: :data:`N_TABLE` edits at :func:`table_config`, both judges' logits kept."""
    cfg = table_config()
    data = start_results_file(out, {"seed": TABLE_SEED, "n": N_TABLE, "edit": list(EDIT), "config": asdict(cfg)})
    if "association" not in data:
        data["association"] = training_association()
        write_json_atomic(data, out)
    noise, originals = pick_sources(models, TABLE_SEED, N_TABLE)
    for lo in tqdm(range(0, N_TABLE, BATCH), desc="tables", disable=not progress):
        name = f"batch {lo // BATCH}"
        if name in data["records"]:
            continue
        keep = list(range(lo, min(lo + BATCH, N_TABLE)))
        rows, seconds = _run_setting(models, noise.subset(keep), originals[keep], edit_loss(models), cfg, full=True)
        _record(out, data, name, rows, seconds)
    return data


def table_rows(data: dict) -> list[dict]:
    return [row for name in sorted(data["records"], key=lambda n: int(n.split()[-1]))
            for row in data["records"][name]["rows"]]


def _predictions(rows: list[dict], judge: str, which: str) -> torch.Tensor:
    return torch.tensor([[int(torch.tensor(r[judge][which][a]).argmax()) for a in ATTRIBUTES] for r in rows])


def _applicable(rows: list[dict], judge: str) -> torch.Tensor:
    """(B, A) bool: the attribute applies to the source's category (and collar) as the judge reads them."""
    pred = _predictions(rows, judge, "source")
    out = []
    for p in pred.tolist():
        category, collar = SCHEMA["category"][p[0]], SCHEMA["collar"][p[ATTRIBUTES.index("collar")]]
        out.append([applicable(a, category, collar) for a in ATTRIBUTES])
    return torch.tensor(out)


def table1(data: dict, judge: str) -> "pd.DataFrame":
    """Per attribute, the share of edits whose ``judge``-predicted class did not change, with a
    bootstrap CI over edits (the thesis's Table 1; ``judge`` is ``"oracle"`` or ``"guide"``)."""
    import pandas as pd

    from ..metrics import bootstrap_ci, unchanged_share

    rows = table_rows(data)
    src, ed, valid = _predictions(rows, judge, "source"), _predictions(rows, judge, "edited"), _applicable(rows, judge)
    g = config.make_generator(0)
    out = []
    for k, a in enumerate(ATTRIBUTES):
        v = valid[:, k]
        if not v.any():
            continue
        same = (src[v, k] == ed[v, k]).double()
        value, low, high = bootstrap_ci(lambda s: s.mean(), same, rounds=1000, generator=g)
        out.append({"attribute": a, "unchanged": value, "low": low, "high": high, "n": int(v.sum())})
    table = pd.DataFrame(out)
    check = unchanged_share(src, ed, valid)
    assert all(abs(check[ATTRIBUTES.index(a)].item() - u) < 1e-9 for a, u in zip(table.attribute, table.unchanged))
    return table


def table2(data: dict, judge: str) -> "pd.DataFrame":
    """Per attribute value, the mean change of its logit from source to edit with a bootstrap CI
    (the thesis's Table 2), sorted by the mean change, largest rise first."""
    import pandas as pd

    from ..metrics import mean_ci

    rows = table_rows(data)
    g = config.make_generator(0)
    out = []
    for a in ATTRIBUTES:
        before = torch.tensor([r[judge]["source"][a] for r in rows])
        after = torch.tensor([r[judge]["edited"][a] for r in rows])
        for c, value in enumerate(SCHEMA[a]):
            mean, low, high = mean_ci(after[:, c] - before[:, c], generator=g)
            out.append({"attribute": a, "value": value, "change": mean, "low": low, "high": high})
    return pd.DataFrame(out).sort_values("change", ascending=False, ignore_index=True)


def run_steps(out: Path, models: Models, progress: bool = True) -> dict:
    """Fig. 6: the colour edit (red -> 0.8, whole image, every step) at each step count and lambda;
    the effect is the mean rise of the red channel on the source's garment pixels."""
    data = start_results_file(out, {"seed": STEPS_SEED, "n": N_STEPS, "steps": list(STEP_COUNTS),
                        "strengths": list(STEP_STRENGTHS), "target": list(COLOUR_TARGET)})
    loss = gg.colour_loss(*COLOUR_TARGET)
    for steps in tqdm(STEP_COUNTS, desc="steps", disable=not progress):
        noise = gg.draw(STEPS_SEED, N_STEPS, steps)
        originals = gg.generate(models.denoiser, models.alphas_cumprod, models.scheduler, noise, steps)
        garment = foreground_mask(originals, BACKGROUND).float()
        for strength in STEP_STRENGTHS:
            name = f"steps={steps}|lambda={strength:g}"
            if name in data["records"]:
                continue
            cfg = gg.GradientGuidanceConfig(strength, steps)
            edit = gg.synthetic_edit(models.denoiser, models.alphas_cumprod, models.scheduler, loss, cfg, noise,
                                     original=originals)
            rise = ((edit.edited[:, 0] - originals[:, 0]) * garment).sum((1, 2)) / garment.sum((1, 2)).clamp(min=1)
            rows = [{"red_rise": _r(v), "clean": bool(c)} for v, c in zip(rise.tolist(), is_clean(edit.edited).tolist())]
            _record(out, data, name, rows, edit.seconds, steps=steps, strength=strength)
    return data


def equal_effect_strength(data: dict, effect: float = STEPS_EFFECT) -> dict[int, float | None]:
    """Per step count, the lambda at which the mean red rise first reaches ``effect``
    (log-linear interpolation between the bracketing lambdas; None if no two lambdas bracket it)."""
    import math

    out = {}
    for steps in data["steps"]:
        pts = sorted((rec["strength"], sum(r["red_rise"] for r in rec["rows"]) / len(rec["rows"]))
                     for rec in data["records"].values() if rec["steps"] == steps)
        out[steps] = None
        for (l0, e0), (l1, e1) in zip(pts, pts[1:]):
            if e0 < effect <= e1:
                w = (effect - e0) / (e1 - e0)
                out[steps] = math.exp(math.log(l0) + w * (math.log(l1) - math.log(l0)))
                break
    return out


def run_universal(out: Path, models: Models, progress: bool = True) -> dict:
    """Universal guidance (eq. 13) on the grid's sources and the tables' range, for each lambda of
    :data:`UNIVERSAL_STRENGTHS`; Algorithm 1 at the tables' setting beside it."""
    cfg = table_config()
    data = start_results_file(out, {"seed": GRID_SEED, "n": N_GRID, "config": asdict(cfg), "strengths": list(UNIVERSAL_STRENGTHS)})
    noise, originals = pick_sources(models, GRID_SEED, N_GRID)
    settings = [("algorithm 1", cfg)] + [(f"universal|lambda={s:g}", gg.GradientGuidanceConfig(
        s, STEPS, cfg.t1, cfg.t2, mode="universal")) for s in UNIVERSAL_STRENGTHS]
    for name, c in tqdm(settings, desc="universal", disable=not progress):
        if name in data["records"]:
            continue
        rows, seconds = _run_setting(models, noise, originals, edit_loss(models), c)
        _record(out, data, name, rows, seconds, mode=c.mode, strength=c.strength)
    return data


@torch.no_grad()
def _colour_logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return gg.classifier_logits(model, images)["colour"]


def run_regulariser(out: Path, models: Models, progress: bool = True) -> dict:
    """Fig. 13: the attribute edit alone, holding the colour logits (eq. 17) and flipping the
    log-odds of red (eq. 18, entangling "striped" with "red"); the colour change is judged by the oracle."""
    cfg = table_config()
    data = start_results_file(out, {"seed": REG_SEED, "n": N_REG, "config": asdict(cfg), "weights": list(REG_WEIGHTS)})
    noise, originals = pick_sources(models, REG_SEED, N_REG)
    base = edit_loss(models)
    colour = (lambda x: gg.classifier_logits(models.attrnet, x)["colour"])
    red = gg.log_odds(models.attrnet, "colour", "red")
    losses = {"edit alone": base}
    for w in REG_WEIGHTS:
        losses[f"hold colour (eq. 17)|w={w:g}"] = gg.FromSource(
            lambda src, w=w: gg.regularised(base, colour, src, "hold", w))
        losses[f"flip red (eq. 18)|w={w:g}"] = gg.FromSource(lambda src, w=w: gg.regularised(base, red, src, "flip", w))
    for name, loss in tqdm(losses.items(), desc="regulariser", disable=not progress):
        if name in data["records"]:
            continue
        rows, seconds = [], 0.0
        for lo in range(0, N_REG, BATCH):
            keep = list(range(lo, min(lo + BATCH, N_REG)))
            edit = gg.synthetic_edit(models.denoiser, models.alphas_cumprod, models.scheduler, loss, cfg,
                                     noise.subset(keep), original=originals[keep])
            scored = score_edits(models, originals[keep], edit.edited)
            before, after = _colour_logits(models.oracle, originals[keep]), _colour_logits(models.oracle, edit.edited)
            for row, b, a in zip(scored, before, after):
                row["colour_kept"] = bool(b.argmax() == a.argmax())
                row["colour_logit_change"] = _r((a - b).norm())
                row["red"] = bool(a.argmax() == SCHEMA["colour"].index("red"))
                row["red_before"] = bool(b.argmax() == SCHEMA["colour"].index("red"))
            rows += scored
            seconds += edit.seconds
        _record(out, data, name, rows, seconds, weight=float(name.split("w=")[1]) if "w=" in name else 0.0)
    return data


@torch.no_grad()
def _part_share(parser: torch.nn.Module, images: torch.Tensor, parts: tuple[str, ...]) -> torch.Tensor:
    from ..data.garments import PARTS

    idx = torch.tensor([PARTS.index(p) for p in parts])
    return torch.isin(parser(images).argmax(1), idx).float().mean(dim=(1, 2))


def run_segmentation(out: Path, models: Models, progress: bool = True) -> dict:
    """§3.3.2 on garments: grow each part of :data:`SEG_EDITS` on 8 generated tops, for every range
    of :data:`SEG_SETTINGS` and lambda of :data:`SEG_STRENGTHS`, masked to the part and its
    neighbours (eq. 16) or not; scored by the parser's argmax area, the oracle's sleeve length and
    the extras judge's pocket."""
    data = start_results_file(out, {"seed": SEG_SEED, "n": N_SEG, "edits": {k: list(v) for k, v in SEG_EDITS.items()},
                        "settings": [list(s) for s in SEG_SETTINGS], "strengths": list(SEG_STRENGTHS)})
    noise, originals = pick_sources(models, SEG_SEED, N_SEG, exclude=None, categories=TOPS)
    for edit_name, parts in tqdm(SEG_EDITS.items(), desc="segmentation", disable=not progress):
        loss = gg.segmentation_loss(models.parser, parts)
        before = _part_share(models.parser, originals, parts)
        for t1, t2, extra in SEG_SETTINGS:
            for strength in SEG_STRENGTHS:
                name = f"{edit_name}|[{t1},{t2})+{extra}|lambda={strength:g}"
                if name in data["records"]:
                    continue
                cfg = gg.GradientGuidanceConfig(strength, STEPS, t1, t2, extra_steps=extra)
                edit = gg.synthetic_edit(models.denoiser, models.alphas_cumprod, models.scheduler, loss, cfg, noise,
                                         original=originals)
                after = _part_share(models.parser, edit.edited, parts)
                sleeve_b = models.oracle(originals)["sleeve"].argmax(1)
                sleeve_a = models.oracle(edit.edited)["sleeve"].argmax(1)
                pocket_b = models.extras(originals)["pocket"].argmax(1)
                pocket_a = models.extras(edit.edited)["pocket"].argmax(1)
                clean, dist = is_clean(edit.edited), models.perceptual(originals, edit.edited)
                rows = [{"area_change": _r(after[i] - before[i]), "clean": bool(clean[i]), "distance": _r(dist[i]),
                         "sleeve_longer": bool(sleeve_a[i] > sleeve_b[i]), "pocket_added": bool(pocket_a[i] > pocket_b[i])}
                        for i in range(N_SEG)]
                _record(out, data, name, rows, edit.seconds, edit=edit_name, t1=t1, t2=t2, extra=extra,
                        strength=strength)
    return data


def real_sources(n: int = N_REAL) -> torch.Tensor:
    """The first ``n`` in-domain renders of :data:`REAL_SEED` that are not striped: the "real" images
    (renders the DDPM never saw)."""
    cache = render_cache(REAL_SEED, 4 * n, domain="in", progress=False)
    k = ATTRIBUTES.index(EDIT[0])
    keep = (cache.attributes[:, k] != SCHEMA[EDIT[0]].index(EDIT[1])).nonzero().flatten()[:n]
    return torch.stack([to_tensor(image) for image in cache.images[keep].numpy()])


def run_real(out: Path, models: Models, progress: bool = True) -> dict:
    """§4.5: edit renders after DDIM inversion (1000 steps) and edit-friendly DDPM inversion (100
    steps); reconstruction, success, preservation, cleanliness and time per method and lambda, and
    the appendix-B statistics of each inverted x_T."""
    data = start_results_file(out, {"seed": REAL_SEED, "n": N_REAL, "edit": list(EDIT), "ddim_steps": DDIM_STEPS,
                        "ddim_strengths": list(DDIM_STRENGTHS), "ddpm_steps": DDPM_STEPS,
                        "ddpm_settings": [list(s) for s in DDPM_SETTINGS]})
    images = real_sources()
    loss = edit_loss(models)

    def rows_of(result: gg.RealEdit) -> list[dict]:
        rows = score_edits(models, images, result.edited)
        recon = psnr(result.reconstruction.clamp(-1, 1), images)
        for row, p in zip(rows, recon.tolist()):
            row["reconstruction_psnr"] = _r(p, 2)
        return rows

    for strength in tqdm(DDIM_STRENGTHS, desc="DDIM edits", disable=not progress):
        name = f"DDIM {DDIM_STEPS}|lambda={strength:g}"
        if name in data["records"]:
            continue
        result = gg.real_edit_ddim(models.denoiser, models.alphas_cumprod, images, loss, strength, DDIM_STEPS,
                                   progress=progress)
        _record(out, data, name, rows_of(result), result.seconds["edit"], timing=result.seconds,
                x_T=noise_statistics(result.x_T), method="DDIM", strength=strength, skip=None)
    for skip, t1, t2, strength in tqdm(DDPM_SETTINGS, desc="DDPM edits", disable=not progress):
        name = f"DDPM {DDPM_STEPS}|T_skip={skip}|[{t1},{t2})|lambda={strength:g}"
        if name in data["records"]:
            continue
        result = gg.real_edit_ddpm(models.denoiser, models.alphas_cumprod, images, loss, strength, DDPM_STEPS, skip,
                                   t1, t2, generator=config.make_generator(REAL_SEED))
        _record(out, data, name, rows_of(result), result.seconds["edit"], timing=result.seconds,
                x_T=noise_statistics(result.x_T), method="DDPM", strength=strength, skip=skip)
    if "gaussian" not in data:
        data["gaussian"] = noise_statistics(torch.randn(N_REAL, 3, 64, 64, generator=config.make_generator(0)))
        write_json_atomic(data, out)
    return data


def latent_prompts(n: int = N_LATENT) -> list[str]:
    """Captions (chapter 08's generic format) of the first ``n`` in-domain tops of :data:`LATENT_SEED`
    that are not striped: the latent model's "sources"."""
    from ..data.garments import caption, spec_for

    out, index = [], 0
    while len(out) < n:
        spec = spec_for(LATENT_SEED, index, "in")
        if spec.category in TOPS and spec.pattern != EDIT[1]:
            out.append(caption(spec, 0))
        index += 1
    return out


def run_latent(out: Path, models: Models, progress: bool = True) -> dict:
    """Algorithm 1 on ``garments-sd-base`` (50 steps, eta = 1, no clipping: latents are not images),
    the loss taken on the VAE-decoded P_t: the colour and attribute edits over lambdas, and the
    segmentation edit "sleeves" over the pixel model's ranges and lambdas, on 6 prompted tops."""
    data = start_results_file(out, {"seed": LATENT_SEED, "n": N_LATENT, "guidance_scale": LATENT_GUIDANCE,
                        "settings": {k: list(v) for k, v in LATENT_SETTINGS.items()},
                        "seg_settings": [list(x) for x in SEG_SETTINGS], "seg_strengths": list(SEG_STRENGTHS)})
    pipe = loaders.load("garments-sd-base", device=next(models.oracle.parameters()).device)
    pipe.unet.requires_grad_(False)
    pipe.vae.requires_grad_(False)
    prompts = latent_prompts(N_LATENT)
    denoiser = gg.latent_denoiser(pipe, prompts, LATENT_GUIDANCE)
    ac = pipe.scheduler.alphas_cumprod
    noise = gg.draw(LATENT_SEED, N_LATENT, STEPS, size=pipe.unet.config.sample_size,
                    channels=pipe.unet.config.in_channels)
    scale = pipe.vae.config.scaling_factor

    def decode(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return pipe.vae.decode(z / scale).sample.clamp(-1, 1)

    latents = gg.generate(denoiser, ac, pipe.scheduler, noise, STEPS, clip_sample=False)
    originals = decode(latents)
    data["prompts"] = prompts
    red_loss = gg.colour_loss(*COLOUR_TARGET)
    runs = [("colour", s, 0, 48, 0, red_loss) for s in LATENT_SETTINGS["colour"]]
    runs += [("attribute", s, 0, 48, 0, edit_loss(models)) for s in LATENT_SETTINGS["attribute"]]
    seg = gg.segmentation_loss(models.parser, SEG_EDITS["sleeves"])
    runs += [("sleeves", s, t1, t2, extra, seg) for t1, t2, extra in SEG_SETTINGS for s in SEG_STRENGTHS]
    garment = foreground_mask(originals, BACKGROUND).float()
    area_before = _part_share(models.parser, originals, SEG_EDITS["sleeves"])
    for kind, strength, t1, t2, extra, loss in tqdm(runs, desc="latent", disable=not progress):
        name = f"{kind}|[{t1},{t2})+{extra}|lambda={strength:g}"
        if name in data["records"]:
            continue
        cfg = gg.GradientGuidanceConfig(strength, STEPS, t1, t2, clip_sample=False, extra_steps=extra)
        edit = gg.synthetic_edit(denoiser, ac, pipe.scheduler, gg.through_decoder(loss, pipe.vae), cfg, noise,
                                 original=latents)
        images = decode(edit.edited)
        rows = score_edits(models, originals, images)
        rise = ((images[:, 0] - originals[:, 0]) * garment).sum((1, 2)) / garment.sum((1, 2)).clamp(min=1)
        area = _part_share(models.parser, images, SEG_EDITS["sleeves"]) - area_before
        for row, r, a in zip(rows, rise.tolist(), area.tolist()):
            row["red_rise"], row["area_change"] = _r(r), _r(a)
        _record(out, data, name, rows, edit.seconds, kind=kind, strength=strength, t1=t1, t2=t2, extra=extra)
    return data


RUNNERS: dict[str, Callable] = {"grid": run_grid, "tables": run_tables, "steps": run_steps, "universal": run_universal,
                                "regulariser": run_regulariser, "segmentation": run_segmentation, "real": run_real,
                                "latent": run_latent}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Precompute chapter 09's results (resumable).")
    parser.add_argument("parts", nargs="+", choices=PARTS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = load_models()
    for part in args.parts:
        clock = time.perf_counter()
        RUNNERS[part](results_path(part), loaded)
        print(f"{part}: {time.perf_counter() - clock:.0f} s", flush=True)
