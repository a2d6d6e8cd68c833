# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: mystnb,tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (fashionlab)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # DiffusionCLIP on garments
#
# Chapter 06 steered a *frozen* diffusion model with a classifier's gradient at every step.
# DiffusionCLIP ({cite:t}`kim2022diffusionclip`, paper 001) does the opposite: it **fine-tunes the model itself** so that
# its deterministic DDIM generation from an inverted image moves the image along a text direction
# in CLIP space. After a minute of fine-tuning per text pair, an edit is just an inversion with the
# original model and a generation with the fine-tuned one, and the edit can reach targets the model
# never saw (a sketch, a pocket), because CLIP, not the training data, says what the target looks like.
#
# **Learning goals.** After this chapter you can
# 1. write DiffusionCLIP's objective (directional CLIP loss + L1 identity) and its two memory modes;
# 2. fine-tune a DDPM towards a text pair and edit with it, in and out of the training domain;
# 3. compare model fine-tuning with optimising the latent, and say why one fails out of domain;
# 4. combine fine-tuned models' noise predictions (eq. 14) and translate between unseen domains (§3.2).
#
# **The paper's claims we test** (the 2021 preprint in `../shared/papers`, which has no result
# tables; its equations are numbered as there): (S_inv, S_gen) = (40, 6) suffices for fine-tuning
# and (40, 40) reconstructs almost perfectly (§3.1, §4.3); model fine-tuning beats latent
# optimisation (Fig. 9); fine-tuning takes 1-8 minutes (on an RTX 6000); noise combination edits
# several attributes in one pass; unseen-domain translation needs no extra data (§3.2).
#
# **How this chapter deviates, and why.** 64-px garments and our own 4.3M-parameter v-prediction
# DDPM instead of 256-px faces and a 113M-parameter ε-model; our tiny CLIP (`garments-clip-s`)
# guides, and a *different* CLIP (`garments-clip-b`) scores, so that no model grades itself. Each
# garment's text pair is worded on its own category ("a plain dress" → "a striped dress"), since one
# noun does not fit every garment as "face" fits every face. The learning rate is our own sweep's
# (section 3), not the paper's 1e-6 (which was tuned for a 26× larger model). The fine-tuning runs
# in batches of 4 (their code: 1) through the book's one training loop.

# %% tags=["remove-cell"]
# On Colab only (inert anywhere else): install this book's package at the version this notebook was
# written with. This chapter runs in the "tiny" profile only (book/setup.md says why).
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    REPOSITORY, REF = "https://github.com/fashionlab/fashionlab", "main"  # the tag v0.1.0 once it is released
    PACKAGE = os.environ.get("FASHIONLAB_INSTALL", f"fashionlab @ git+{REPOSITORY}@{REF}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", PACKAGE], check=True)

# %%
import time
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from fashionlab import config, zoo
from fashionlab.data import garments, transforms
from fashionlab.diffusion import core, inversion
from fashionlab.eval import edits
from fashionlab.eval.claims import Claim, claims_table
from fashionlab.experiments import ch07_diffusionclip
from fashionlab.methods import diffusionclip
from fashionlab.metrics import psnr
from fashionlab.viz import glue, image_grid
from fashionlab.zoo.recipes import RECIPES

torch.set_grad_enabled(False)
pd.set_option("display.max_colwidth", None)  # the claims table's sentences in full
device = config.get_device()
print("profile:", config.get_profile(), "| device:", device.type)
ddpm = zoo.load("garments-ddpm-64", device=device)
base = core.PixelDenoiser(ddpm.unet, ddpm.scheduler)
alphas_cumprod = ddpm.alphas_cumprod
guide_clip = zoo.load("garments-clip-s", device=device)
oracle, judge = zoo.load("garments-oracle", device=device), zoo.load("garments-extras-judge", device=device)
RESULTS = {part: ch07_diffusionclip.read_results(part) for part in ("sweep", "table", "depth", "memory")}

# %% [markdown]
# ## 1. The method
#
# An image $x_0$ is inverted by deterministic DDIM (eq. 12, ε evaluated at the lower $t$, as their
# code does) to the *return step* $t_0$, not all the way to $T$. From that latent, $S_\text{gen}$
# DDIM steps of the model being fine-tuned produce $\hat x_0(\theta)$, and all UNet weights $\theta$
# minimise (eqs. 10-11)
#
# $$\mathcal L = \lambda_\text{CLIP}\,\mathcal L_\text{direction}(\hat x_0(\theta), t_\text{tar}; x_0, t_\text{ref})
#   + \lambda_{L1}\,\lVert x_0 - \hat x_0(\theta)\rVert_1, \qquad
#   \mathcal L_\text{direction} = 1 - \cos(\Delta I, \Delta T),$$
#
# with $\Delta I = E_I(\hat x_0) - E_I(x_0)$ and $\Delta T$ the template-averaged direction from the
# reference text to the target text (eq. 9). Their code minimises $-\log\frac{1+\cos}{2}$ instead of
# $1-\cos$ and weights CLIP by 3; the paper gives $\lambda_{L1} = 0.3$. We use both of those.
# Two ways to get the gradient:
# - **the whole chain** (their Fig. 3): back-propagate through all $S_\text{gen}$ UNet calls, which
#   share their weights like a recurrent network; memory grows with $S_\text{gen}$;
# - **per step** (their "GPU-efficient" code): at every step, the loss on that step's $P_t$,
#   backward, an optimiser step, then detach $x$; memory is one step's.
#
# The edits of this chapter and the text pairs they are trained with:

# %%
pair_rows = {name: {"attribute": e.attribute, "value": e.value,
                    **{f"pair on a {c}": f"{e.text_pair(c).source} -> {e.text_pair(c).target}"
                       for c in ("t-shirt", "skirt")}}
             for name, e in diffusionclip.GARMENT_EDITS.items() if name in ch07_diffusionclip.EDITS}
pd.DataFrame(pair_rows).T

# %% [markdown]
# `striped` stays inside the DDPM's domain (it has seen striped garments); `sketch` (a render style)
# and `pocket` (a detail extra) do not: the DDPM was trained on photo-style garments without
# extras (chapter 01), so only CLIP knows them. The oracle grades the sketch style with its style
# head; pockets are graded by `garments-extras-judge`, a small separate classifier trained for this
# chapter (the oracle has no extras head, and retraining it would move chapter 04's numbers):

# %%
judge_card = zoo.model_card("garments-extras-judge")
print({k: judge_card["metrics"][k] for k in ("accuracy", "recall", "mean_accuracy")},
      f"| {judge_card['parameters']:,} parameters, {judge_card['training_minutes']:.1f} min of training")

# %% [markdown]
# ## 2. Inversion and reconstruction at the return step (Fig. 8a)
#
# Chapter 02 measured DDIM round trips from $t_0 = 500$. DiffusionCLIP fine-tunes with
# $(S_\text{inv}, S_\text{gen}) = (40, 6)$ and edits with (40, 40); its Fig. 8(a) adds $S_\text{gen}
# = 200$ at $t_0 = 600$. The same here, on 8 held-out garments:

# %% mystnb={"figure": {"caption": "DDIM reconstructions from the return step t0 = 600 with 6, 40 and 200 generation steps.", "name": "fig-ch07-reconstruction"}, "image": {"alt": "Four rows of four garments: the sources and three reconstructions, the 6-step one visibly blurrier."}}
held = garments.render_batch([garments.spec_for(740, i) for i in range(8)]).to(device)
x_600 = inversion.ddim_invert(base, held, core.diffusionclip_grid(600, 40)[1:], alphas_cumprod).x_t
recon = {s_gen: inversion.ddim_generate(base, x_600, core.diffusionclip_grid(600, s_gen), alphas_cumprod).clamp(-1, 1)
         for s_gen in (6, 40, 200)}
recon_psnr = {s_gen: float(psnr(x, held).mean()) for s_gen, x in recon.items()}
print("t0 = 600, S_inv = 40: PSNR (dB) for S_gen =", {k: round(v, 1) for k, v in recon_psnr.items()})
fig = image_grid(list(held[:4].cpu()) + [x for s in (6, 40, 200) for x in recon[s][:4].cpu()], ncols=4,
                 row_labels=["source", "S_gen 6", "S_gen 40", "S_gen 200"], cell=1.2)
plt.show()
for s_gen, value in recon_psnr.items():
    glue(f"ch07_psnr_{s_gen}", f"{value:.1f}", display=False)

# %% [markdown]
# Six generation steps lose detail ({glue:text}`ch07_psnr_6` dB: patterns blur) and 40 keep most of
# it ({glue:text}`ch07_psnr_40` dB), as the paper says; but 200 steps still add a few dB
# ({glue:text}`ch07_psnr_200` dB), so on our garments (40, 40) is good, not yet "indistinguishable".
# Fine-tuning at (40, 6) trains the model on slightly blurred reconstructions, which the identity
# loss compares with the sharp source.
#
# ## 3. Fine-tuning, live
#
# A short run of each mode: the `striped` edit on 12 garments, one pass in batches of 4, at the
# learning rate the sweep below chose for it. The loss is printed only as a plot: a fine-tuning run
# is a chaotic computation whose last digits differ between CPUs.

# %% mystnb={"figure": {"caption": "The objective of the live fine-tuning runs, one per gradient mode, over one pass of 12 garments.", "name": "fig-ch07-live-finetune"}, "image": {"alt": "Two short lines of the objective against batch number, one per mode."}}
recipe = RECIPES["garments-dclip-striped"]
live_tasks = edits.tasks_for(recipe.train_seed, 12, "pattern", "striped")
live_images = garments.render_batch([t.source for t in live_tasks]).to(device)
live_pairs = [diffusionclip.GARMENT_EDITS["striped"].text_pair(t.source.category) for t in live_tasks]
live_cfg = replace(recipe.train, epochs=1)
live_latents = diffusionclip.invert_latents(base, alphas_cumprod, live_images, live_cfg)
runs, seconds = {}, {}
for mode in diffusionclip.MODES:
    start = time.perf_counter()
    runs[mode] = diffusionclip.finetune(ddpm.unet, ddpm.scheduler, guide_clip, live_images, live_pairs,
                                        replace(live_cfg, mode=mode), latents=live_latents)
    seconds[mode] = time.perf_counter() - start
fig, ax = plt.subplots(figsize=(5, 2.6))
for mode, run in runs.items():
    ax.plot(range(1, len(run.losses) + 1), run.losses, "o-", label=f"{mode} ({run.steps} optimiser steps)")
ax.set(xlabel="batch", ylabel="objective", title="fine-tuning 'striped', one pass over 12 garments")
ax.legend()
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
print({mode: f"{s:.0f} s" for mode, s in seconds.items()})

# %% [markdown]
# The per-step mode takes $S_\text{gen}$ optimiser steps per batch, each on that step's $P_t$, where
# the whole-chain mode takes one on the final $\hat x_0$. What it saves is memory: autograd keeps one
# step's activations instead of six. We can count exactly what autograd saves for the backward pass
# of one batch in each mode (a property of the graph, the same on every machine); the peak resident
# memory of whole fine-tuning runs, measured in fresh processes, is in section 8.

# %%
def saved_megabytes(mode: str) -> float:
    """MB of tensors autograd keeps for one batch's backward pass (per-step: the largest single step)."""
    sizes = [0]

    def pack(t):
        sizes[-1] += t.numel() * t.element_size()
        return t

    x_T, grid = live_latents[:4], core.diffusionclip_grid(recipe.train.depth, recipe.train.gen_steps)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if mode == "chain":
            core.sample_with_grad(base, x_T, grid, alphas_cumprod).x0.sum().backward()
        else:
            core.sample_with_grad(base, x_T, grid, alphas_cumprod,
                                  on_step=lambda i, t, step: (step.x0_pred.sum().backward(), sizes.append(0)))
    return max(sizes) / 2**20


graph_mb = {mode: saved_megabytes(mode) for mode in diffusionclip.MODES}
ddpm.unet.zero_grad(set_to_none=True)
print({mode: f"{mb:.0f} MB" for mode, mb in graph_mb.items()},
      f"| per-step / chain = {graph_mb['per_step'] / graph_mb['chain']:.2f}")
glue("ch07_graph_ratio", f"{graph_mb['per_step'] / graph_mb['chain']:.2f}", display=False)

# %% [markdown]
# ## 4. The learning rate, and the shipped fine-tunes
#
# Their rates (paper: 1e-6 ×1.2 every 50 iterations; code: 2e-6 ×1.3 per pass) were tuned for a
# 113M-parameter ε-model. On ours they barely move the weights, so `python -m
# fashionlab.experiments.ch07_diffusionclip sweep` fine-tuned each edit at three rates (50 garments
# of seed 700, two passes) and graded it on 24 garments of seed 710. The rule: the smallest rate
# whose held-out success reaches 0.7; the recipes in `fashionlab/zoo/recipes.py` use it.

# %%
sweep = pd.DataFrame(RESULTS["sweep"]["runs"]).T.set_index(["edit", "lr"])
chosen = {name: ch07_diffusionclip.choose_lr(RESULTS["sweep"], name) for name in ch07_diffusionclip.EDITS}
print("chosen:", {name: f"{lr:g}" for name, lr in chosen.items()})
sweep[["success", "consistency", "l2_outside", "mean_abs_change", "seconds"]].astype(float).round(3)

# %% [markdown]
# The trade-off is DiffusionCLIP's own: a higher rate makes the edit and also drifts the rest (the
# colour, the background), which consistency and the L2 outside the edit region catch. The pocket
# is the hard case: a small detail that the tiny CLIP's "with a pocket" direction hardly separates
# from a garment without one. The three shipped fine-tunes (fp16 deltas over `garments-ddpm-64`):

# %%
cards = {name: zoo.model_card(f"garments-dclip-{name}") for name in ch07_diffusionclip.EDITS}
pd.DataFrame({name: {"learning rate": f"{RECIPES[f'garments-dclip-{name}'].train.learning_rate:g}",
                     "fine-tune (min)": card["training_minutes"], "optimiser steps": card["training_steps"],
                     "held-out success": card["metrics"]["success"],
                     "consistency": card["metrics"]["consistency"], "delta (MB)": round(card["bytes"] / 2**20, 1)}
              for name, card in cards.items()}).T

# %% [markdown]
# ## 5. How deep to go: the return step $t_0$ (Fig. 8b)
#
# The paper fine-tunes with $t_0$ chosen per attribute: 300 suffices for colour, shape needs 500-700,
# because the coarse layout of an image is decided early in generation (at high noise) and colour
# late. `python -m fashionlab.experiments.ch07_diffusionclip depth` fine-tuned a colour edit
# (`blue`) and a shape edit (`long-sleeve`) at each $t_0$ (the striped recipe's other settings and
# its rate, 50 garments of seed 700) and graded each on 24 held-out garments of seed 710 with the
# oracle:

# %% mystnb={"figure": {"caption": "Held-out success of a colour edit and a shape edit against the return step t0.", "name": "fig-ch07-depth"}, "image": {"alt": "Two lines of success against t0, one for the blue edit and one for the long-sleeve edit."}}
depth = pd.DataFrame(RESULTS["depth"]["runs"]).T
depth_success = depth.pivot(index="depth", columns="edit", values="success").astype(float)
fig, ax = plt.subplots(figsize=(4.5, 2.6))
for name in depth_success.columns:
    ax.plot(depth_success.index, depth_success[name], "o-", label=name)
ax.set(xlabel="$t_0$", ylabel="held-out success", ylim=(-0.05, 1.05), xticks=list(depth_success.index),
       title=f"Fig. 8(b) on garments (lr {RESULTS['depth']['lr']:g})")
ax.legend()
plt.show()

# %%
for (t0, name), value in depth_success.stack().items():
    glue(f"ch07_depth_{name.replace('-', '_')}_{t0}", f"{value:.2f}", display=False)
depth.set_index(["edit", "depth"])[["success", "consistency", "l2_outside", "mean_abs_change"]].astype(float).round(3)

# %% [markdown]
# The shape edit behaves as the paper says, and more sharply: long sleeves appear on
# {glue:text}`ch07_depth_long_sleeve_300` and {glue:text}`ch07_depth_long_sleeve_500` of the held-out
# garments from $t_0$ = 300 and 500, and on {glue:text}`ch07_depth_long_sleeve_700` from 700. Below
# that depth the sleeve length is already fixed in $x_{t_0}$ and no fine-tuned model can grow it
# back; at 700 it can, at a price in consistency (the garment's other attributes drift). The colour
# edit is flat in depth ({glue:text}`ch07_depth_blue_300` / {glue:text}`ch07_depth_blue_500` /
# {glue:text}`ch07_depth_blue_700`), so 300 suffices, as claimed, but it is weak at every depth: at
# the in-domain rate the sweep chose for stripes, the tiny CLIP's "blue" direction recolours about a
# third of the garments. The colour edit's rate was not tuned (exercise 2).

# %% [markdown]
# ## 6. Editing in and out of the domain, and the latent-optimisation baseline (Fig. 9)
#
# Each edit: invert with the original model (40 steps to $t_0 = 400$), generate with the
# fine-tuned one (40 steps). The baseline keeps the model and optimises the inverted latent with
# the *global* CLIP loss to the target text (their code: Adam, lr 2e-2; 20 steps here).

# %% mystnb={"figure": {"caption": "Edits by the three fine-tuned models, and the latent-optimisation baseline, on six held-out garments.", "name": "fig-ch07-edits"}, "image": {"alt": "Five rows of six garments: the sources, their striped, sketch and pocket versions, and the baseline's attempt at a sketch."}}
show = [garments.spec_for(740, i) for i in range(8, 14)]
x_show = garments.render_batch(show).to(device)
latents_show = diffusionclip.invert_latents(base, alphas_cumprod, x_show, recipe.train)
tuned = {name: zoo.load(f"garments-dclip-{name}", device=device) for name in ch07_diffusionclip.EDITS}
edited_show = {name: diffusionclip.edit(base, core.PixelDenoiser(m.unet, m.scheduler), alphas_cumprod, x_show,
                                        recipe.train, latents=latents_show) for name, m in tuned.items()}
targets = [diffusionclip.GARMENT_EDITS["sketch"].text_pair(s.category).target for s in show]
latent_sketch = diffusionclip.latent_optimisation(base, alphas_cumprod, guide_clip, x_show, targets, recipe.train,
                                                  iterations=ch07_diffusionclip.LATENT_ITERATIONS,
                                                  latents=latents_show).edited
rows = [x_show] + [edited_show[name] for name in ch07_diffusionclip.EDITS] + [latent_sketch]
fig = image_grid([x.cpu() for r in rows for x in r], ncols=len(show), cell=1.1,
                 row_labels=["source", "-> striped", "-> sketch", "-> pocket", "latent opt.\n-> sketch"])
plt.show()

# %% [markdown]
# The fine-tuned models change what they were tuned for, and more: the striped model draws stripes
# and darkens the colour; the sketch model lightens the garment, flattens its shading and warms the
# background towards the sketch renders the DDPM never saw. The pocket model turns most garments
# green and dark; a pocket rarely appears (the tiny CLIP's "with a pocket" direction evidently
# carries colour with it). Optimising the latent of the *unchanged* model cannot leave its domain:
# every latent decodes to a photo-style garment, so the sketch target only changes pattern and colour.
#
# ## 7. The table
#
# `python -m fashionlab.experiments.ch07_diffusionclip table`: 36 garments of seed 720 per edit
# (108 in all), never used for a choice; DiffusionCLIP with the shipped models, latent
# optimisation, and chapter 06's guided edit where its classifier has a head (the pattern). CLIP
# scores are cosine × 100 with the target caption, by the CLIP that guided (`-s`) and by one that
# did not (`-b`).

# %%
table = RESULTS["table"]
summary = edits.summarise_edits(table)
shown = edits.table_with_ci(summary, ("success", "consistency", "l2_outside"))
clip_cols = {}
for entry in table["batches"].values():
    row = clip_cols.setdefault((entry["method"], entry["attribute"]), {"guide": [], "independent": []})
    row["guide"] += entry["clip_score_guide"]
    row["independent"] += entry["clip_score_independent"]
shown["CLIP score (guide, -s)"] = [f"{np.mean(clip_cols[k]['guide']):.1f}" for k in shown.index]
shown["CLIP score (judge, -b)"] = [f"{np.mean(clip_cols[k]['independent']):.1f}" for k in shown.index]
shown

# %%
by_edit = {}
for (label, attribute), row in summary.iterrows():
    method, edit_name = label.split("|")
    by_edit.setdefault(edit_name, {})[method] = row
dc_vs_lo = {name: (rows["DiffusionCLIP"].success, rows["latent optimisation"].success) for name, rows in by_edit.items()}
print({name: f"DiffusionCLIP {a:.2f} vs latent {b:.2f}" for name, (a, b) in dc_vs_lo.items()})
self_flattery = {key: np.mean(v["guide"]) - np.mean(v["independent"]) for key, v in clip_cols.items()}
print("guide's CLIP score minus the independent one:", {k[0]: round(float(v), 1) for k, v in self_flattery.items()})
for name, (a, b) in dc_vs_lo.items():
    glue(f"ch07_dc_{name}", f"{a:.2f}", display=False)
    glue(f"ch07_lo_{name}", f"{b:.2f}", display=False)
glue("ch07_ge_striped", f"{by_edit['striped']['guided edit (ch. 06)'].success:.2f}", display=False)
glue("ch07_flatter_lo_sketch", f"{self_flattery[('latent optimisation|sketch', 'style')]:.1f}", display=False)
glue("ch07_flatter_dc_sketch", f"{self_flattery[('DiffusionCLIP|sketch', 'style')]:+.1f}", display=False)

# %% [markdown]
# Out of the domain, fine-tuning edits where latent optimisation cannot: `sketch` succeeds for
# {glue:text}`ch07_dc_sketch` of the garments against {glue:text}`ch07_lo_sketch` for the
# optimised latent, `pocket` for {glue:text}`ch07_dc_pocket` against {glue:text}`ch07_lo_pocket`.
# In the domain it is the other way round: optimising the latent makes the garment striped for
# {glue:text}`ch07_lo_striped` of them against {glue:text}`ch07_dc_striped` for the fine-tuned
# model (chapter 06's guided edit: {glue:text}`ch07_ge_striped`). The unchanged DDPM can draw
# stripes, and the global loss pushes each garment straight at its caption, where the fine-tuned
# model has learnt one average edit from 50 garments. That is the paper's Fig. 9 in two halves: its
# claim holds where it matters, outside the model's domain, and not inside it on garments.
#
# The two CLIP-score columns show why a CLIP must not grade its own edits. Latent optimisation
# maximises the guide's score directly: on the sketch target the guide scores its results
# {glue:text}`ch07_flatter_lo_sketch` points above what the independent CLIP gives them, although
# the oracle finds almost no sketch among them; DiffusionCLIP's sketches score about the same with
# both ({glue:text}`ch07_flatter_dc_sketch`). Seconds per edit are wall-clock on the 2-core CPU,
# in batches of 12.
#
# ## 8. Memory of the two modes
#
# `python -m fashionlab.experiments.ch07_diffusionclip memory` fine-tunes one batch of 4 garments
# in each mode and each $S_\text{gen}$, every run in a fresh process, and records the peak resident
# memory above the loaded models.

# %% mystnb={"figure": {"caption": "Peak memory of one fine-tuning batch in each gradient mode, against the number of generation steps.", "name": "fig-ch07-memory"}, "image": {"alt": "Two lines of peak memory in megabytes against the number of generation steps, one per gradient mode."}}
memory = pd.DataFrame(RESULTS["memory"]["rows"]).T
memory_table = memory.pivot(index="gen_steps", columns="mode", values="training_mb").astype(float)
fig, ax = plt.subplots(figsize=(5, 2.8))
for mode in diffusionclip.MODES:
    ax.plot(memory_table.index, memory_table[mode], "o-", label=mode)
ax.set(xlabel="S_gen", ylabel="peak RSS above the loaded models (MB)", title="one fine-tuning batch of 4")
ax.legend()
plt.show()
ratio_6 = memory_table.loc[6, "per_step"] / memory_table.loc[6, "chain"]
growth = {mode: memory_table[mode].iloc[-1] / memory_table[mode].iloc[0] for mode in diffusionclip.MODES}
print(f"per-step / chain at S_gen = 6: {ratio_6:.2f}; growth from S_gen {memory_table.index[0]} to "
      f"{memory_table.index[-1]}:", {k: round(float(v), 1) for k, v in growth.items()})
glue("ch07_mem_ratio", f"{ratio_6:.2f}", display=False)

# %% [markdown]
# ## 9. Several fine-tuned models at once: noise combination (eq. 14)
#
# $\epsilon = \sum_i \gamma_i(t)\,\epsilon_{\theta_i}(x_t, t)$ with $\sum_i \gamma_i = 1$. The paper
# observes that different edits happen at different steps, so the weights may depend on $t$. Here
# the sketch model leads at high noise (where the style of the whole image is decided) and the
# striped model at low noise (where patterns are drawn). One demonstration on 6 garments, in
# float64 so that the oracle's verdicts are the same on every CPU:

# %% mystnb={"figure": {"caption": "The time-dependent weights of the noise combination: the sketch model leads at high noise, the striped model at low noise.", "name": "fig-ch07-gammas"}, "image": {"alt": "Two lines over t from 0 to 400 that cross: the sketch weight rises with t, the striped weight falls."}}
def gammas(t: int) -> tuple[float, float]:
    """(gamma_striped, gamma_sketch): sketch first, stripes last."""
    w = float(np.clip((t - 100) / 300, 0, 1))
    return 1 - w, w


grid_t = np.arange(0, 400)
fig, ax = plt.subplots(figsize=(4.5, 2.2))
ax.plot(grid_t, [gammas(t)[0] for t in grid_t], label="striped")
ax.plot(grid_t, [gammas(t)[1] for t in grid_t], label="sketch")
ax.set(xlabel="t", ylabel=r"$\gamma_i(t)$", title="time-dependent weights")
ax.legend()
plt.show()

# %% mystnb={"figure": {"caption": "Striped only, sketch only and the time-dependent combination of both models, on six garments.", "name": "fig-ch07-combined"}, "image": {"alt": "Four rows of six garments: the sources, the striped model's edits, the sketch model's edits and the combination's."}}
models64 = {name: zoo.load(f"garments-dclip-{name}", device=device).unet.double() for name in ("striped", "sketch")}
base64 = core.PixelDenoiser(zoo.load("garments-ddpm-64", device=device).unet.double(), ddpm.scheduler)
den64 = {name: core.PixelDenoiser(unet, ddpm.scheduler) for name, unet in models64.items()}
x64 = x_show.double()
lat64 = diffusionclip.invert_latents(base64, alphas_cumprod, x64, recipe.train)
combos = {"striped only": den64["striped"], "sketch only": den64["sketch"],
          "combined": diffusionclip.mixed([den64["striped"], den64["sketch"]], gammas)}
combined = {k: diffusionclip.edit(base64, d, alphas_cumprod, x64, recipe.train, latents=lat64).float()
            for k, d in combos.items()}
verdict = {}
for name, images in combined.items():
    logits = oracle(images)
    striped_ok = logits["pattern"].argmax(1) == garments.SCHEMA["pattern"].index("striped")
    sketch_ok = logits["style"].argmax(1) == garments.STYLES.index("sketch")
    verdict[name] = {"striped": int(striped_ok.sum()), "sketch": int(sketch_ok.sum()),
                     "both": int((striped_ok & sketch_ok).sum())}
fig = image_grid([x.cpu() for r in [x_show] + list(combined.values()) for x in r], ncols=len(show), cell=1.1,
                 row_labels=["source"] + list(combined))
plt.show()

# %%
glue("ch07_both_combined", str(verdict["combined"]["both"]), display=False)
glue("ch07_sketch_combined", str(verdict["combined"]["sketch"]), display=False)
glue("ch07_sketch_alone", str(verdict["sketch only"]["sketch"]), display=False)
pd.DataFrame(verdict).T.rename_axis(f"of {len(show)} garments")

# %% [markdown]
# Here the combination does **not** do what eq. 14 promises: it makes both edits on
# {glue:text}`ch07_both_combined` of the 6 garments, and the sketch, which the sketch model alone
# makes on {glue:text}`ch07_sketch_alone`, survives on {glue:text}`ch07_sketch_combined`. Mixed
# noise predictions from two separately fine-tuned models partly cancel: the result stays close to
# the source with faint stripes. The weights matter (exercise 4), and our schedule was a guess,
# not tuned; the paper shows the combination on faces, with models fine-tuned from one base at the
# same $t_0$, as ours are.

# %% [markdown]
# ## 10. Translation between unseen domains (§3.2)
#
# A *cartoon* render is outside the DDPM's domain, and so is a sketch. DiffusionCLIP bridges them
# through the domain it knows: noise the cartoon to $t_s = 500$ with the stochastic forward process
# (where its flat colours and outlines are blurred but the garment's shape survives), generate a
# photo-style garment with the original model, invert that, and generate with the sketch model.

# %% mystnb={"figure": {"caption": "Translation between unseen domains: cartoons bridged through the photo domain, then edited into sketches.", "name": "fig-ch07-translation"}, "image": {"alt": "Three rows of four garments: cartoons, photo-style bridges and pencil sketches."}}
cartoons = [garments.spec_for(741, i).edit(style="cartoon") for i in range(4)]
x_cartoon = garments.render_batch(cartoons).to(device)
bridge, translated = diffusionclip.translate(base, core.PixelDenoiser(tuned["sketch"].unet, ddpm.scheduler),
                                             alphas_cumprod, x_cartoon, t_s=500, cfg=recipe.train,
                                             generator=torch.Generator().manual_seed(0))
fig = image_grid([x.cpu() for r in (x_cartoon, bridge, translated) for x in r], ncols=4, cell=1.2,
                 row_labels=["cartoon", "photo (bridge)", "-> sketch"])
plt.show()

# %% [markdown]
# The paper's other example is a stroke painting turned into an image. Ours: a colour-block drawing
# of a garment (`transforms.colour_blocks`: a 16 × 16 silhouette in the garment's one mean
# colour, the kind of sketch a designer dashes off) translated to a *striped* garment by the striped
# fine-tune. Flat drawings are nearer the photo domain than cartoons, so a shallower $t_s = 400$
# keeps more of them: on these 8 drawings the bridge alone keeps the category of
# {glue:text}`ch07_bridge_kept_400` / {glue:text}`ch07_bridge_kept_500` /
# {glue:text}`ch07_bridge_kept_600` from $t_s$ = 400 / 500 / 600 (computed below; we chose 400 by
# looking at these same drawings, so they are not a held-out test of that choice). The oracle grades
# each step against the garment the drawing was made from:

# %% mystnb={"figure": {"caption": "Stroke-like colour-block drawings bridged into photo-style garments, then given stripes.", "name": "fig-ch07-drawings"}, "image": {"alt": "Three rows of eight images: blocky drawings, photo-style garments of similar shape and colour, and their striped versions."}}
drawn_specs = [garments.spec_for(742, i) for i in range(8)]
drawn = garments.render_batch(drawn_specs).to(device)
blocks = transforms.colour_blocks(drawn, garments.BACKGROUNDS["photo"], cells=16)
truth = {key: torch.tensor([garments.SCHEMA[key].index(getattr(spec, key)) for spec in drawn_specs])
         for key in ("category", "colour")}
bridge_kept = {}
for t_s in (400, 500, 600):
    bridged = diffusionclip.bridge(base, alphas_cumprod, blocks, t_s=t_s, generator=torch.Generator().manual_seed(0))
    bridge_kept[t_s] = int((oracle(bridged)["category"].argmax(1).cpu() == truth["category"]).sum())
    glue(f"ch07_bridge_kept_{t_s}", str(bridge_kept[t_s]), display=False)
print("t_s -> drawings whose bridge keeps the category (of 8):", bridge_kept)
stroke_bridge, to_striped = diffusionclip.translate(
    base, core.PixelDenoiser(tuned["striped"].unet, ddpm.scheduler), alphas_cumprod, blocks, t_s=400,
    cfg=RECIPES["garments-dclip-striped"].train, generator=torch.Generator().manual_seed(0))
fig = image_grid([x.cpu() for r in (blocks, stroke_bridge, to_striped) for x in r], ncols=8, cell=1.1,
                 row_labels=["drawing", "photo (bridge)", "-> striped"])
plt.show()

# %%
graded = {"bridge": oracle(stroke_bridge), "translated": oracle(to_striped)}
stroke = {name: {"category kept": int((g["category"].argmax(1).cpu() == truth["category"]).sum()),
                 "colour kept": int((g["colour"].argmax(1).cpu() == truth["colour"]).sum()),
                 "striped": int((g["pattern"].argmax(1) == garments.SCHEMA["pattern"].index("striped")).sum())}
          for name, g in graded.items()}
for name, row in stroke.items():
    for key, value in row.items():
        glue(f"ch07_stroke_{name}_{key.split()[0]}", str(value), display=False)
pd.DataFrame(stroke).T.rename_axis("of 8 drawings")

# %% [markdown]
# No cartoon, drawing or sketch was needed to train anything: the DDPM knows only photos, CLIP
# knows the words. The bridge keeps the garment's category and rough colour, not its details, which
# is what the paper's stroke-to-image results show too: a translation, not a reconstruction. From
# the drawings, {glue:text}`ch07_stroke_translated_striped` of 8 end striped, and the translated
# garment is still the drawn category on {glue:text}`ch07_stroke_translated_category` of 8.
#
# ## Claims vs what we measured

# %%
minutes = {name: card["training_minutes"] for name, card in cards.items()}
n_params = sum(p.numel() for p in ddpm.unet.parameters())
dc_out = [dc_vs_lo[name][0] > dc_vs_lo[name][1] for name in ("sketch", "pocket")]
claims_table([
    Claim("001 §4.3, Fig. 8(a)", "(S_inv, S_gen) = (40, 40) reconstructs almost perfectly; (40, 6) loses detail "
          "(read as chapter 02 reads it: (40, 40) >= 30 dB, and 40 steps >= 1 dB above 6)",
          f"t0 = 600: {recon_psnr[6]:.1f} / {recon_psnr[40]:.1f} dB for S_gen 6 / 40 (200 steps: "
          f"{recon_psnr[200]:.1f} dB)", [recon_psnr[40] >= 30, recon_psnr[40] - recon_psnr[6] >= 1]),
    Claim("001 §4.3, Fig. 8(b)", "t0 = 300 suffices for colour; shape edits need 500-700 (read: colour at 300 "
          ">= 0.8 x its best; shape at 300 below its best at 500 / 700; and the colour edit works, success >= 0.5)",
          "success at t0 300 / 500 / 700: " + "; ".join(
              f"{name} " + " / ".join(f"{v:.2f}" for v in depth_success[name]) for name in depth_success.columns),
          [depth_success["blue"][300] >= 0.8 * depth_success["blue"].max(),
           depth_success["long-sleeve"][300] < depth_success["long-sleeve"][[500, 700]].max(),
           depth_success["blue"].max() >= 0.5]),
    Claim("001 §3.1", "fine-tuning takes 1-8 min per text pair (RTX 6000)",
          ", ".join(f"{k} {v:.1f} min" for k, v in minutes.items()) + f" on 2 CPU cores, for a "
          f"{n_params / 1e6:.1f}M-parameter DDPM at 64 px, not the paper's 256-px models on a GPU",
          None, comparable=False),
    *[Claim(f"001 {where}", claim, "not tested here: the book trains no GAN, and a GAN editor on garments would be "
            "a model of our own making, not the baseline the paper ran", None)
      for where, claim in (("§4.1, Fig. 5", "the GAN inversions of StyleCLIP (e4e) and StyleGAN-NADA (ReStyle "
                                             "with pSp) fail to reconstruct the original image, while DDIM "
                                             "inversion reconstructs it almost perfectly"),
                           ("§4.1, Fig. 5", "DiffusionCLIP is comparable to StyleCLIP and StyleGAN-NADA in the "
                                            "domain, and to StyleGAN-NADA out of it"))],
    Claim("001 Fig. 9", "model fine-tuning beats latent optimisation, out of the domain above all "
          "(read: higher success on sketch and on pocket)",
          "success, fine-tuned vs latent: " + "; ".join(f"{k} {a:.2f} vs {b:.2f}" for k, (a, b) in dc_vs_lo.items())
          + " (in the domain, on striped, latent optimisation wins)", dc_out),
    Claim("001 §3.2, eq. 14", "noise combination edits several attributes in one pass (read: the combination "
          "makes both edits on more garments than either model alone)",
          f"both edits on {verdict['combined']['both']} of {len(show)} garments; striped only "
          f"{verdict['striped only']['both']}, sketch only {verdict['sketch only']['both']}",
          verdict["combined"]["both"] > max(verdict["striped only"]["both"], verdict["sketch only"]["both"])),
    Claim("001 §3.2", "translation between unseen domains needs no extra data (read: from colour-block drawings, "
          "with no drawing in any training set, at least 6 of 8 end striped and keep their category)",
          f"striped {stroke['translated']['striped']} of 8, category kept {stroke['translated']['category kept']} of 8 "
          f"(cartoon -> sketch shown, not graded)",
          [stroke["translated"]["striped"] >= 6, stroke["translated"]["category kept"] >= 6]),
    Claim("this book (goal)", "<= 2 min of fine-tuning per text pair on the 2-core CPU",
          ", ".join(f"{k} {v:.1f} min" for k, v in minutes.items()), max(minutes.values()) <= 2, "goal"),
    Claim("this book (goal)", "per-step peak memory <= 0.5 x the whole chain's at S_gen = 6",
          f"peak RSS ratio {ratio_6:.2f}; autograd graph ratio {graph_mb['per_step'] / graph_mb['chain']:.2f}",
          ratio_6 <= 0.5, "goal"),
])

# %% [markdown]
# ## Exercises
#
# Solutions are folded; a teacher can strip every `:::{admonition}` block with the class `dropdown`.
#
# **1.** Fine-tune `striped` with the L1 weight at 0 and at 3. Which of consistency and success moves,
# and does the sketch edit need the L1 term at all?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# from fashionlab.metrics import OraclePerceptual
#
# train_tasks = edits.tasks_for(recipe.train_seed, 24, "pattern", "striped")
# x_train = garments.render_batch([t.source for t in train_tasks]).to(device)
# pairs = [diffusionclip.GARMENT_EDITS["striped"].text_pair(t.source.category) for t in train_tasks]
# heldout = edits.render_tasks(edits.tasks_for(710, 12, "pattern", "striped"))
# for l1 in (0.0, recipe.train.l1_weight, 3.0):
#     run = diffusionclip.finetune(ddpm.unet, ddpm.scheduler, guide_clip, x_train, pairs, replace(recipe.train, l1_weight=l1))
#     out = diffusionclip.edit(base, core.PixelDenoiser(run.unet, ddpm.scheduler), alphas_cumprod,
#                              heldout.images.to(device), recipe.train)
#     scores = edits.score_edits(heldout, out.cpu(), oracle, OraclePerceptual(oracle), judge)
#     print(l1, {k: round(float(v.float().mean()), 3) for k, v in scores.items() if k in ("success", "consistency")})
# ```
# L1 ties the generated image to the
# source pixel by pixel: without it the model is free to change anything CLIP likes, so consistency
# falls; with a large weight the edit itself is held back, so success falls. A sketch changes every
# pixel's appearance by definition, so the L1 term fights it directly -- try the sketch edit at
# `l1_weight=0` to see whether the garment's identity survives without it.
# :::
#
# **2.** The colour edit of section 5 was weak at every depth at the striped rate (4e-5). Sweep its rate
# as section 4 did (`run_sweep` with `blue` added to the edits) and rerun the depth study at the
# rate you pick: does its curve stay flat in $t_0$ once the edit works?
#
# :::{admonition} Solution
# :class: dropdown
# `run_sweep` fine-tunes every name in `ch07_diffusionclip.EDITS`; add `blue` for one run and write
# to a new file:
# ```python
# from pathlib import Path
#
# ch07_diffusionclip.EDITS = (*ch07_diffusionclip.EDITS, "blue")
# sweep = ch07_diffusionclip.run_sweep(Path("07_sweep_blue.json"))
# lr_blue = ch07_diffusionclip.choose_lr(sweep, "blue")
# ```
# (The sweep fine-tunes each edit at every rate: tens of minutes on two cores.) Then rerun the
# depth part at `lr_blue`. The paper's claim is that colour needs only a shallow $t_0$ because
# colour is decided late in generation; if it holds, success at 300 should already match 500-700
# once the rate lets the edit happen at all.
# :::
#
# **3.** Switch the loss form from the code's $-\log\frac{1+\cos}{2}$ to the paper's $1-\cos$. How do
# their gradients differ when the edit is far from the target?
#
# :::{admonition} Solution
# :class: dropdown
# With $c = \cos$: $\frac{d}{dc}(1 - c) = -1$ everywhere, while
# $\frac{d}{dc}\left(-\log\frac{1+c}{2}\right) = -\frac{1}{1+c}$, which is $-\tfrac12$ at $c = 1$, $-1$ at
# $c = 0$ and grows without bound as $c \to -1$. The log form pushes hardest when the image's
# direction points *away* from the text's and gently once they agree; $1-\cos$ pushes equally
# everywhere. Train with `replace(recipe.train, loss_form="1-cos")` and compare the loss curves:
# near the start ($c$ small) the two gradients are of the same size, so the difference shows mostly
# in how the runs settle. Note that the learning rate the sweep chose was chosen for the log form.
# :::
#
# **4.** Replace the time-dependent $\gamma(t)$ of section 9 by constants (0.5, 0.5). What breaks?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# constant = diffusionclip.mixed([den64["striped"], den64["sketch"]], (0.5, 0.5))
# flat = diffusionclip.edit(base64, constant, alphas_cumprod, x64, recipe.train, latents=lat64).float()
# logits = oracle(flat)
# print("striped", int((logits["pattern"].argmax(1) == garments.SCHEMA["pattern"].index("striped")).sum()),
#       "sketch", int((logits["style"].argmax(1) == garments.STYLES.index("sketch")).sum()))
# ```
# At every step each model now gets half the say. At high noise, where the style of the whole image
# is decided, half of the sketch model's push is diluted by a model that wants a photo; at low noise,
# where stripes are drawn, the sketch model dilutes the stripes. Expect fewer images with both
# attributes than with the scheduled weights, and count them with the oracle as section 9 does.
# :::
#
# **5.** Under the `full` profile on a GPU, reproduce the paper's setting: fine-tune
# `google/ddpm-celebahq-256` with open_clip ViT-B-16 from "face" to "angry face" (the same
# `diffusionclip.finetune`, with `TextPair("face", "angry face")` for every image).
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# config.use_profile("full")
# ddpm = zoo.load("garments-ddpm-64")        # google/ddpm-celebahq-256 under full
# clip = zoo.load("garments-clip-s")         # ViT-B-16-quickgelu, OpenAI weights
# x_T = torch.randn(8, 3, 256, 256, generator=torch.Generator().manual_seed(0)).to(ddpm.unet.device)
# faces = core.sample(core.PixelDenoiser(ddpm.unet, ddpm.scheduler), x_T, core.even_grid(999, 50),
#                     ddpm.alphas_cumprod).x0.clamp(-1, 1)   # or real CelebA-HQ images you have the right to use
# cfg = diffusionclip.DiffusionCLIPConfig(depth=500, learning_rate=2e-6, batch_size=4)
# run = diffusionclip.finetune(ddpm.unet, ddpm.scheduler, clip, faces,
#                              [diffusionclip.TextPair("face", "angry face")] * len(faces), cfg)
# ```
# The paper's face edits also use an ID loss (ArcFace), which this book does not ship: without it
# expect identity to drift more than in the paper's figures. `python -m fashionlab.smoke --profile
# full --chapters 07` checks this path in one step before you spend GPU time on it.
# :::
