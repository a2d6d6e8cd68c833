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
# # Mask-free, classifier-guided attribute editing
#
# Paper 000 ({cite:t}`kong2023fashion`) edits a garment photo with an *unconditional* diffusion model and the
# gradient of the attribute classifier of chapter 05. It needs no mask: the classifier's attention
# map for the target attribute says where the edit may happen, and a background loss keeps the
# rest. This chapter implements Procedure 1 on the book's engine, compares it with the baseline
# it grew out of (Blended Diffusion: CLIP guidance inside a user mask), ablates it as the paper
# does (Fig. 8), and measures it with ground truth, which the paper could not.
#
# **Learning goals.** After this chapter you can
# 1. write classifier guidance as a mean shift of the reverse step, and say what λ and k do;
# 2. turn attention maps into a soft edit region and a background loss;
# 3. run the CLIP-guided baseline and say where it fails;
# 4. read an edit table: success, consistency, preservation and perceptual distance, with CIs.
#
# **Profiles.** This chapter runs `tiny` only. Under `full` the zoo's pixel DDPM is a 256-px *face*
# model, and guiding it with a garment classifier would be meaningless, so `load_edit_models`
# refuses it with that message.

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

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from fashionlab import config, zoo
from fashionlab.data import garments
from fashionlab.eval import edits
from fashionlab.eval.claims import Claim, claims_table
from fashionlab.experiments import ch06_guided_edit
from fashionlab.methods.guided_edit import guided_edit
from fashionlab.metrics import predicted_attributes
from fashionlab.viz import glue, heatmap, image_grid

torch.set_grad_enabled(False)
pd.set_option("display.max_colwidth", None)  # the claims table's sentences in full
device = config.get_device()
print("profile:", config.get_profile(), "| device:", device.type)
models = ch06_guided_edit.load_edit_models(device)  # the DDPM, garments-attrnet, the CLIP, 2 perceptual distances
denoiser, alphas_cumprod, attrnet = models.denoiser, models.alphas_cumprod, models.classifier
RESULTS = {part: ch06_guided_edit.read_results(part) for part in ch06_guided_edit.PARTS}

# %% [markdown]
# ## 1. Procedure 1
#
# Start from the source $X$ noised to level $k$, $X_k \sim \mathcal N(\sqrt{\bar\alpha_k}X, (1-\bar\alpha_k)I)$,
# and walk down to $t = 0$. At every step:
#
# 1. predict the clean image $P_t = \hat X_0$ (chapter 02);
# 2. make $N$ views of it with the extending augmentations (chapter 03); the first is $P_t$ itself;
# 3. $\nabla_{attr}$: the gradient of $\log p(A \mid \text{view})$ for the target attributes $A$,
#    averaged over views;
# 4. $\bar M$: the classifier's attention maps for $A$ on $P_t$, averaged;
# 5. $\nabla_{bckg} = -\nabla \mathcal L_{bckg}$ with
#    $\mathcal L_{bckg} = (1-\bar M)\odot\lVert P_t - X\rVert_2 + (1-\bar M)\odot pd(P_t, X)$ (eq. 7);
# 6. sample $X_{t-1} \sim \mathcal N(\mu_\theta(X_t) + \Sigma_t(\lambda\nabla_{attr} + \nabla_{bckg}), \Sigma_t)$.
#
# Two details the paper leaves open, and our choices:
# - the attention maps sum to 1 over the 64 patches, so $1-\bar M$ would be about 0.98
#   everywhere; we scale $\bar M$ so that its maximum is 1;
# - $pd$ is LPIPS in the paper. Our LPIPS analogue measures with the *category ViT* of chapter 05
#   (the "ImageNet" network), never with the oracle that grades the edits.
#
# Here is one edit, step by step: $P_t$ and $\bar M$ every 15 steps.

# %% mystnb={"figure": {"caption": "One guided edit (pattern to striped), every 15 steps: the predicted clean image P_t and the classifier's scaled attention mask.", "name": "fig-ch06-procedure"}, "image": {"alt": "Two rows of images over the steps of one edit: the predicted clean garment on top, heat maps of where the classifier attends below."}}
source_spec = garments.spec_for(600, 3, "in")
print("source:", garments.caption(source_spec, 0))
x = garments.render_batch([source_spec]).to(device)
cfg = ch06_guided_edit.TABLE_EDIT  # the paper's k and views; lambda and the background weights tuned on garments (section 5)
print(f"lambda {cfg.strength:g}, k {cfg.depth}, {cfg.steps} steps, {cfg.views} views, background weights "
      f"{cfg.mse_weight:g} (MSE) / {cfg.perceptual_weight:g} (perceptual)")
start = time.perf_counter()
out = guided_edit(denoiser, alphas_cumprod, attrnet, x, {"pattern": "striped"}, cfg, models.guide_perceptual,
                     [source_spec.category], torch.Generator().manual_seed(0), return_trajectory=True)
one_edit_seconds = time.perf_counter() - start
shipped_maps = zoo.model_card("garments-attrnet")["metrics"]
for attribute in ("neckline", "pattern"):
    glue(f"ch06_{attribute}_ratio", f"{shipped_maps['attention_in_region'][attribute] / shipped_maps['uniform_in_region'][attribute]:.2f}",
         display=False)
show = list(range(0, len(out.x0_preds), 15)) + [len(out.x0_preds) - 1]
cells = [out.x0_preds[i][0].cpu() for i in show] + [heatmap(out.masks[i][0, 0], vmax=1) for i in show]
image_grid(cells, ncols=len(show), titles=[f"t={out.grid[::-1][i]}" for i in show] * 2,
           row_labels=["P_t", "M-bar"], cell=1.1)
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
print(f"one edit, {cfg.steps} steps from k={cfg.depth}: {one_edit_seconds:.1f} s")

# %% [markdown]
# The stripes appear between t ≈ 500 and t ≈ 300, as soon as $P_t$ shows a garment at all. Look at
# $\bar M$, though: once the garment is drawn, the pattern query attends mostly to the *background*
# around it, and the garment itself is dark. The background loss weighs each pixel by $1-\bar M$,
# so it guards the garment more than the background, which is the reverse of what the paper's
# Fig. 6 shows. Our small ViT parks attention on empty patches, as larger ViTs are known to do
# with background tokens. Chapter 05 measured the same thing on clean garments: for the shipped
# classifier, the neckline query puts {glue:text}`ch06_neckline_ratio` times the uniform share of its
# attention inside the neckline region (less than a uniform map), and the pattern query
# {glue:text}`ch06_pattern_ratio` times (barely more). This is one reason the edits
# below leave a tint on the background.

# %% [markdown]
# ## 2. The baseline: Blended Diffusion, and where it fails (Fig. 1)
#
# Blended Diffusion needs a mask and a prompt. We give it the best possible mask, the
# ground-truth region of the edit, and the target's caption. Its CLIP loss sees the masked image,
# so the garment's shape, which a sleeve or neckline edit must change, is partly cut away, and it
# optimises CLIP's opinion, not the attribute.

# %% mystnb={"figure": {"caption": "The baseline, Blended Diffusion with the ground-truth mask and the target caption, on six edits, with the oracle's verdicts.", "name": "fig-ch06-blended"}, "image": {"alt": "Two rows of six garments: the sources, titled with their target edits, and Blended Diffusion's results titled ok or failed."}}
fig1_tasks = edits.render_tasks(edits.make_tasks(601, 1))
methods = ch06_guided_edit.edit_methods(denoiser, alphas_cumprod, attrnet, models.clip, models.guide_perceptual, cfg,
                                        ch06_guided_edit.TABLE_BLENDED)
blended = methods["Blended Diffusion"]
fig1 = blended(fig1_tasks, torch.Generator().manual_seed(0))
fig1_scores = edits.score_edits(fig1_tasks, fig1, models.oracle, models.judge_perceptual)
titles = [f"{t.attribute}->{t.value}" for t in fig1_tasks.tasks]
verdict = ["ok" if s else "failed" for s in fig1_scores["success"].tolist()]
image_grid([*fig1_tasks.images, *fig1.cpu()], ncols=len(titles),
           titles=titles + [f"oracle: {v}" for v in verdict], row_labels=["source", "Blended"], cell=1.2)
plt.show()

# %% [markdown]
# Inside a perfect mask, CLIP guidance repaints textures well. It leaves a sleeve or a neckline as
# it was, because the change it needs is a change of outline. Section 7 measures this on 204
# garments.

# %% [markdown]
# ## 3. Single-attribute edits: texture and shape
#
# The same six garments and targets with Procedure 1, and with Procedure 1 *without* the
# background loss (the ablation of Fig. 8). The second row is the ideal edit: the same garment
# re-rendered with the target value.

# %% mystnb={"figure": {"caption": "The same six edits with Procedure 1, with and without the background loss, beside the ideal edit.", "name": "fig-ch06-single-edits"}, "image": {"alt": "Four rows of six garments: the sources, the ideal re-renders, Procedure 1's edits and the edits without the background loss, the last two titled with the oracle's verdict and the change outside the region."}}
def one_by_one(method) -> torch.Tensor:
    """Each task on its own, from seed 0: the edit the editor below would make for it."""
    return torch.cat([method(edits.render_tasks([task]), torch.Generator().manual_seed(0)) for task in fig1_tasks.tasks])


ours = one_by_one(methods["ours"])
ablated = one_by_one(methods["ours, no background loss"])
ideal = garments.render_batch([t.target for t in fig1_tasks.tasks])


def verdicts(edited: torch.Tensor) -> list[str]:
    scores = edits.score_edits(fig1_tasks, edited, models.oracle, models.judge_perceptual)
    return [f"{'ok' if s else 'failed'}, MSE out {l:.3f}" for s, l in zip(scores["success"], scores["l2_outside"])]


image_grid([*fig1_tasks.images, *ideal, *ours.cpu(), *ablated.cpu()], ncols=len(titles),
           titles=titles + [""] * len(titles) + verdicts(ours) + verdicts(ablated),
           row_labels=["source", "ideal edit", "ours", "no bckg loss"], cell=1.3)
plt.show()

# %% [markdown]
# Without the background loss the DDPM is free to redraw the garment from k = 750, and it does:
# the right attribute often appears on a different garment. With the loss the garment keeps its
# outline, and what leaks is a faint tint and speckle on the background, where $\bar M$ is low but
# not zero.

# %% [markdown]
# ## 4. Several attributes at once (Fig. 5)

# %% mystnb={"figure": {"caption": "Two attributes at once: pattern and colour, then sleeve and colour, on two garments.", "name": "fig-ch06-multi"}, "image": {"alt": "Three rows of two garments: the sources, the edits towards striped and blue, and the edits towards long sleeves and green."}}
multi = [{"pattern": "striped", "colour": "blue"}, {"sleeve": "long", "colour": "green"}]
multi_src = [garments.spec_for(602, i, "in") for i in range(8)]
multi_src = [s for s in multi_src if s.sleeve is not None][:2]
xs = garments.render_batch(multi_src).to(device)
multi_out = [guided_edit(denoiser, alphas_cumprod, attrnet, xs, targets, cfg, models.guide_perceptual,
                            [s.category for s in multi_src], torch.Generator().manual_seed(1)).edited.cpu()
             for targets in multi]
image_grid([*xs.cpu(), *multi_out[0], *multi_out[1]], ncols=2,
           row_labels=["source", " + ".join(f"{a}={v}" for a, v in multi[0].items()),
                       " + ".join(f"{a}={v}" for a, v in multi[1].items())], cell=1.3)
plt.show()

# %% [markdown]
# Two targets at once work less well than one. The loss is the *sum* of the two cross-entropies
# (eq. 6, Procedure 1), so the guidance is about twice as strong as for one target at the same λ,
# and the edits drift towards the speckled, adversarial look that λ = 1000 gives in the sweep
# below. The attention region is the mean of two maps, so it also covers more of the garment.
# Lowering λ for multi-target edits is the first thing to try (exercise 5).

# %% [markdown]
# ## 5. Ablations (Fig. 8): the background loss and λ, and how we chose them
#
# Precomputed by `python -m fashionlab.experiments.ch06_guided_edit sweep`: 8 garments per edit
# type (pattern, colour, sleeve) of Garments seed 603, for every λ and every weighting of the
# background loss (Blended Diffusion's 1e4 / 1e3 for MSE / perceptual, two lighter ones, and
# none). These garments are the only ones any setting was chosen on.
#
# Success alone would pick the weakest background loss: with little to hold it, k = 750 lets the
# DDPM redraw the whole garment, and a redrawn garment often has the target value *and* a new
# neckline, fabric and colour. So the rule (`ch06_guided_edit.choose_setting`) maximises the **edit score**, the
# mean over edits of success × consistency (the edit happened *and* the other attributes
# stayed), over the settings with a background loss.

# %% mystnb={"figure": {"caption": "The tuning sweep over the guidance strength and the background weights; the dotted line marks the chosen strength.", "name": "fig-ch06-sweep"}, "image": {"alt": "Three panels of lines against lambda on a log axis, one line per background weighting: success, consistency and the error outside the region."}}
sweep = ch06_guided_edit.sweep_summary(RESULTS["sweep"])
chosen_strength, chosen_weights = ch06_guided_edit.choose_setting(RESULTS["sweep"])
chosen_key = (f"{chosen_weights[0]:g} / {chosen_weights[1]:g}", chosen_strength)
print(f"chosen: lambda {chosen_strength:g}, background weights {chosen_key[0]} (MSE / perceptual)")
assert (cfg.strength, cfg.mse_weight, cfg.perceptual_weight) == (chosen_strength, *chosen_weights), \
    "TABLE_EDIT must be the sweep's choice"
fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
for background in dict.fromkeys(sweep.index.get_level_values("background")):
    part = sweep.loc[background]
    x = part.index.to_numpy().copy()
    x[x == 0] = 10  # show lambda = 0 at the left edge of the log axis
    for ax, column in zip(axes, ("success", "consistency", "l2_outside")):
        ax.plot(x, part[column], marker="o", label=background)
for ax, label in zip(axes, ("success (oracle)", "consistency (oracle)", "MSE outside the GT region")):
    ax.set(xscale="log", xlabel=r"$\lambda$ (0 drawn at 10)", ylabel=label)
    ax.axvline(chosen_strength, color="grey", lw=0.6, ls=":")
axes[2].set_yscale("log")
axes[0].legend(title="MSE / pd weight", fontsize=7, title_fontsize=7)
plt.tight_layout()
plt.show()

# %%
glue("ch06_attrnet_m", f"{zoo.model_card('garments-attrnet')['parameters'] / 1e6:.1f}",
     display=False)
weightings = [w for w in dict.fromkeys(sweep.index.get_level_values("background")) if w != "none"]
falls = [w for w in weightings if sweep.loc[w, "success"].iloc[-1] < sweep.loc[w, "success"].max()]
glue("ch06_success_falls", str(len(falls)), display=False)
glue("ch06_n_weightings", str(len(weightings)), display=False)
print("success falls at the largest lambda for:", falls)
sweep.round(3)

# %% [markdown]
# What the sweep says:
# - **Blended Diffusion's weights (1e4 / 1e3) hold colour still.** At garment scale the
#   background term is so strong that even λ = 1000 rarely changes a colour: a colour edit must
#   change most of the garment, and with the attention map scaled to a maximum of 1, most of the
#   garment still counts as background.
# - **Without any background loss** the edit succeeds often but destroys the garment: low
#   consistency and a large MSE outside the region. That is the paper's Fig. 8 ablation.
# - **λ trades consistency away, but not always for success.** Consistency falls as λ grows for
#   every weighting, but success peaks and then *falls* at the largest λ for
#   {glue:text}`ch06_success_falls` of the {glue:text}`ch06_n_weightings` weightings with a background
#   loss: past the peak the guidance no longer makes the target, it makes noise. At λ = 1000 the
#   grids show adversarial blotches rather than new patterns.
#
# The paper's λ = 100 is in units of its own losses (a CLIP-ViT-L classifier on 256-px photos);
# ours is what the rule above picked for the book's {glue:text}`ch06_attrnet_m`M-parameter classifier on
# 64-px garments.

# %% [markdown]
# ## 6. Do better classifiers guide better? (Fig. 7)
#
# Paper 000 guides with classifiers of different accuracy and shows the better ones edit better.
# `python -m fashionlab.experiments.ch06_guided_edit classifiers` trains four variants of chapter
# 05 as its grid does (seed 0), and edits 8 garments per edit type of seed 604 with each (48
# edits per classifier, the chapter's settings otherwise):

# %% mystnb={"figure": {"caption": "Edit success against the guiding classifier's accuracy, for four classifiers, with 95 % intervals.", "name": "fig-ch06-classifiers"}, "image": {"alt": "Four labelled points with vertical error bars, accuracy on the horizontal axis and success on the vertical."}}
by_classifier = edits.summarise_edits(RESULTS["classifiers"], pooled=True).droplevel("edit")
by_classifier = by_classifier[["n", "success", "success_lo", "success_hi", "consistency", "l2_outside"]]
by_classifier.insert(0, "classifier accuracy (validation)", pd.Series(RESULTS["classifiers"]["accuracy"]))
by_classifier = by_classifier.sort_values("classifier accuracy (validation)")
fig, ax = plt.subplots(figsize=(4.2, 2.8))
ax.errorbar(by_classifier.iloc[:, 0], by_classifier.success, fmt="o", capsize=3,
            yerr=[by_classifier.success - by_classifier.success_lo, by_classifier.success_hi - by_classifier.success])
for name, row in by_classifier.iterrows():
    ax.annotate(name, (row.iloc[0], row.success), fontsize=7, xytext=(4, 4), textcoords="offset points")
ax.set(xlabel="classifier mean accuracy (validation)", ylabel="edit success (oracle)", ylim=(0, 1))
plt.tight_layout()
plt.show()

# %%
accuracy_column = by_classifier.iloc[:, 0]
glue("ch06_cls_acc_lo", f"{accuracy_column.min():.2f}", display=False)
glue("ch06_cls_acc_hi", f"{accuracy_column.max():.2f}", display=False)
glue("ch06_cls_halfwidth", f"{((by_classifier.success_hi - by_classifier.success_lo) / 2).mean():.2f}", display=False)
by_classifier.round(3)

# %% [markdown]
# Not at this scale. The four classifiers span {glue:text}`ch06_cls_acc_lo` to
# {glue:text}`ch06_cls_acc_hi` in accuracy, and their edit successes all lie inside each other's
# intervals (half-width about {glue:text}`ch06_cls_halfwidth` with 48 edits). Fig. 7's classifiers
# differ far more than ours do, from a linear probe to a fine-tuned ViT-L. Ours are all small ViTs
# on 2,000 labels, and the least accurate one (the "ImageNet" init with a frozen backbone) still
# guides as well as the best. What a guide needs may not be accuracy on clean photos at all, but
# useful gradients on the noisy, blurry $P_t$ of early steps. Exercise 4 asks you to measure that.

# %% [markdown]
# ## 7. The table
#
# `python -m fashionlab.experiments.ch06_guided_edit main`: 17 held-out garments per edit type
# (102 in all, Garments seed 610), three methods, 95 % bootstrap intervals. Then the same on
# seed 620 (`confirm`). Neither set was used for any choice; the settings came from seed 603
# (section 5).

# %%
def pooled(table: dict) -> pd.DataFrame:
    """One row per method over all its edits."""
    return edits.summarise_edits(table, pooled=True).droplevel("edit")


main = edits.summarise_edits(RESULTS["main"])
edits.table_with_ci(main)

# %% [markdown]
# Over all edit types (each method's 102 edits pooled), on the main set and on the confirmation set:

# %%
edits.table_with_ci(pooled(RESULTS["main"]))

# %%
confirm = edits.summarise_edits(RESULTS["confirm"])
edits.table_with_ci(pooled(RESULTS["confirm"]))

# %% [markdown]
# Does the confirmation set agree? For each method and edit type, is the main table's mean
# success inside the confirmation set's interval?

# %%
agree = (main.success >= confirm.success_lo) & (main.success <= confirm.success_hi)
print(f"main success inside the confirmation CI: {int(agree.sum())} of {len(agree)} rows; outside:")
for (method, edit) in agree[~agree].index:
    print(f"  {method}, {edit}: {main.loc[(method, edit), 'success']:.2f} (main) vs "
          f"{confirm.loc[(method, edit), 'success']:.2f} (confirm)")
ours_main, ours_confirm = pooled(RESULTS["main"]).loc["ours"], pooled(RESULTS["confirm"]).loc["ours"]
glue("ch06_cell_halfwidth", f"{((confirm.success_hi - confirm.success_lo) / 2).mean():.1f}", display=False)
glue("ch06_ours_main", f"{ours_main.success:.3f}", display=False)
glue("ch06_ours_confirm", f"{ours_confirm.success:.3f}", display=False)
glue("ch06_ours_confirm_lo", f"{ours_confirm.success_lo:.3f}", display=False)
glue("ch06_ours_confirm_hi", f"{ours_confirm.success_hi:.3f}", display=False)
agree.unstack("edit")

# %% [markdown]
# Not everywhere. With 17 garments per cell, an interval is about ±{glue:text}`ch06_cell_halfwidth` wide,
# and the cells listed
# above (main success outside the confirmation interval) disagree by more than that. Our pooled
# success on the main set ({glue:text}`ch06_ours_main`) against the confirmation set's
# ({glue:text}`ch06_ours_confirm` [{glue:text}`ch06_ours_confirm_lo`, {glue:text}`ch06_ours_confirm_hi`])
# tells the same story. The honest summary is that 17 garments per edit type are too few to rank
# methods per edit type. Both sets are held out and were made
# the same way, so the best estimate pools them: 34 garments per cell, 204 edits per method.

# %% mystnb={"figure": {"caption": "Success and consistency per edit type for Procedure 1, its ablation and Blended Diffusion, on both held-out sets pooled.", "name": "fig-ch06-per-type"}, "image": {"alt": "Two grouped bar charts with error bars, three bars per edit type."}}
both = {"batches": {f"{part}|{key}": entry for part in ("main", "confirm")
                    for key, entry in RESULTS[part]["batches"].items()}}
both_by_type = edits.summarise_edits(both)
ROWS = ("ours", "ours, no background loss", "Blended Diffusion")
fig, axes = plt.subplots(1, 2, figsize=(10, 2.9))
for ax, score in zip(axes, ("success", "consistency")):
    for k, method in enumerate(ROWS):
        part = both_by_type.loc[method].reindex(edits.EDIT_TYPES)
        x = np.arange(len(edits.EDIT_TYPES)) + (k - 1) * 0.27
        ax.bar(x, part[score], width=0.27, label=method,
               yerr=[part[score] - part[f"{score}_lo"], part[f"{score}_hi"] - part[score]], capsize=2)
    ax.set_xticks(range(len(edits.EDIT_TYPES)), edits.EDIT_TYPES)
    ax.set(ylabel=f"{score} (oracle)", ylim=(0, 1.05), title="both held-out sets, 34 garments per bar")
axes[0].axhline(0.8, color="grey", lw=0.6, ls=":")
axes[0].legend(fontsize=7, loc="upper right")
plt.tight_layout()
plt.show()

# %%
both_pooled = pooled(both)


def mean_of(method: str, edits: list[str], column: str = "success") -> float:
    """The mean of ``column`` over the given edit types, each type weighted equally."""
    return float(both_by_type.loc[(method, edits), column].mean())


for method, prefix in (("ours", "ours"), ("Blended Diffusion", "blended")):
    glue(f"ch06_{prefix}_success", f"{both_pooled.loc[method, 'success']:.2f}", display=False)
    for edit in ("sleeve", "neckline", "pattern", "fabric", "colour"):
        glue(f"ch06_{prefix}_{edit}", f"{mean_of(method, [edit]):.2f}", display=False)
glue("ch06_blended_shape_consistency", f"{mean_of('Blended Diffusion', ['sleeve', 'neckline'], 'consistency'):.2f}",
     display=False)
glue("ch06_texture_outside", f"{mean_of('ours', ['pattern', 'fabric', 'colour'], 'l2_outside'):.3f}", display=False)
glue("ch06_shape_outside", f"{mean_of('ours', ['sleeve', 'neckline'], 'l2_outside'):.3f}", display=False)
glue("ch06_ablation_outside", f"{both_pooled.loc['ours, no background loss', 'l2_outside']:.2f}", display=False)
glue("ch06_ours_consistency", f"{both_pooled.loc['ours', 'consistency']:.2f}", display=False)
glue("ch06_ablation_consistency", f"{both_pooled.loc['ours, no background loss', 'consistency']:.2f}", display=False)
glue("ch06_seconds_per_edit", f"{both_pooled.loc['ours', 'seconds_per_edit']:.1f}", display=False)
edits.table_with_ci(both_pooled)

# %% [markdown]
# Reading the two sets together:
# - **Pooled over all edits the two methods are level.** Procedure 1 succeeds on
#   {glue:text}`ch06_ours_success` of the edits and Blended Diffusion on {glue:text}`ch06_blended_success`,
#   with overlapping intervals. Which one wins depends on what is edited.
# - **Shape edits favour Procedure 1.** Sleeve {glue:text}`ch06_ours_sleeve` against
#   {glue:text}`ch06_blended_sleeve`, neckline {glue:text}`ch06_ours_neckline` against
#   {glue:text}`ch06_blended_neckline`. On both the baseline's consistency is near 1
#   ({glue:text}`ch06_blended_shape_consistency`), that is, it barely changes anything. A 64-px CLIP
#   that sees only the masked pixels does not see a sleeve's length; our classifier was trained on
#   exactly that label. This is the paper's Fig. 1 argument, and here it is measured.
# - **Texture edits favour the baseline or tie.** Pattern {glue:text}`ch06_ours_pattern` against
#   {glue:text}`ch06_blended_pattern`, fabric {glue:text}`ch06_ours_fabric` against
#   {glue:text}`ch06_blended_fabric`, colour {glue:text}`ch06_ours_colour` against
#   {glue:text}`ch06_blended_colour`. CLIP inside a *perfect* mask is a strong baseline for repainting
#   a surface. The claims table below checks the 0.8 the book aimed for on colour and pattern.
# - **Preservation.** Blended Diffusion's MSE outside the region is 0 by construction: it pastes
#   the source back outside its mask, and the mask is the ground truth. Procedure 1 has no mask,
#   and its attention region leaks. The MSE outside is {glue:text}`ch06_texture_outside` for texture
#   edits and {glue:text}`ch06_shape_outside` for sleeve and neckline, whose attention maps are the
#   least focused (chapter 05). Without the background loss the leak is {glue:text}`ch06_ablation_outside`
#   and consistency falls from {glue:text}`ch06_ours_consistency` to
#   {glue:text}`ch06_ablation_consistency`: the loss is what keeps the garment (Fig. 8).
# - **Time.** {glue:text}`ch06_seconds_per_edit` s per edit in batches of up to 16 on two CPU cores,
#   as the results file records it. One edit alone takes longer (the time printed in section 1,
#   measured on the machine that runs the notebook).
#
# So Procedure 1 does not beat the baseline on success at equal preservation. The comparison is
# also not between equals: the baseline was handed the region a user would have to draw, and
# Procedure 1 finds its own.

# %% [markdown]
# ## 8. Try it
#
# The editor below runs Procedure 1 on the garment, targets, λ and k you pick (one edit takes the
# time printed in section 1), starting from the chapter's settings. The static book cannot run it, so a
# pre-run example follows it.

# %%
# NBVAL_IGNORE_OUTPUT
from fashionlab.widgets import edit_figure, guided_editor  # noqa: E402

editor = guided_editor(denoiser, alphas_cumprod, attrnet, models.guide_perceptual, cfg=ch06_guided_edit.TABLE_EDIT)
editor

# %% [markdown]
# The pre-run example: garment 1 (an orange plain skirt), made checked and green at once, with the
# editor's defaults.
#
#
# An edit is a chaotic computation: fifty guided steps amplify rounding differences, and in fp32
# the same edit can come out with another pattern on another CPU (we saw this one read as
# "gradient" on one machine and "checked" on another). So this single demonstration runs in
# float64, at about twice the cost. Even then the edit is not bit-for-bit the same everywhere: the
# oracle's *confidence* in its reading moves by a few hundredths between CPU kernels, so we print
# only the reading, which we checked on three numeric set-ups. The tables above are rates over
# hundreds of edits, which such flips barely move.

# %% mystnb={"figure": {"caption": "What the interactive editor shows for one garment made checked and green.", "name": "fig-ch06-editor-example"}, "image": {"alt": "Three panels: the source garment, the classifier's scaled attention mask mid-way through the edit, and the edited garment."}}
import copy  # noqa: E402

# What the editor runs on "Edit" (`edit_figure`), here without the widget, on float64 copies of the models:
denoiser64 = copy.copy(denoiser)
denoiser64.unet = copy.deepcopy(denoiser.unet).double()
torch.set_default_dtype(torch.float64)  # the augmentations and noise draws inside the edit
try:
    example, _ = edit_figure(denoiser64, alphas_cumprod.double(), copy.deepcopy(attrnet).double(),
                             copy.deepcopy(models.guide_perceptual).double(), garments.spec_for(600, 1, "in"),
                             {"pattern": "checked", "colour": "green"}, ch06_guided_edit.TABLE_EDIT)
finally:
    torch.set_default_dtype(torch.float32)
plt.show()
example_logits = models.oracle(example.edited.float())
read = predicted_attributes(example_logits, garments.ATTRIBUTES)[0]
example_read = {a: garments.SCHEMA[a][int(read[garments.ATTRIBUTES.index(a)])] for a in ("pattern", "colour")}
print("the oracle reads the edit as:", example_read)
glue("ch06_example_pattern", example_read["pattern"], display=False)
glue("ch06_example_colour", example_read["colour"], display=False)

# %% [markdown]
# Asked for checked and green, the edit came out {glue:text}`ch06_example_pattern` and
# {glue:text}`ch06_example_colour` (as the oracle reads it): where one target is missed, it is the
# two-target trouble of section 4.

# %% [markdown]
# ## Claims vs what we measured

# %%
pool = pooled(both)  # both held-out sets, 204 edits per method
ours_row, ablation_row, blended_row = (pool.loc[m] for m in ROWS)
shape = both_by_type.loc[(slice(None), ["sleeve", "neckline"]), :].groupby(level="method").success.mean()
texture = both_by_type.loc[(slice(None), ["pattern", "colour", "fabric"]), :].groupby(level="method").success.mean()
by_accuracy = by_classifier.sort_values("classifier accuracy (validation)")
colour_success = both_by_type.loc[("ours", "colour"), "success"]
pattern_success = both_by_type.loc[("ours", "pattern"), "success"]
paper_setting = sweep.loc[("10000 / 1000", 100.0)]
claims_table([
    Claim("000 Fig. 1, 5", "mask-free guided editing beats CLIP-guided Blended Diffusion (read: pooled success "
          "interval of ours above the baseline's mean)",
          f"pooled success {ours_row.success:.3f} [{ours_row.success_lo:.2f}, {ours_row.success_hi:.2f}] vs "
          f"{blended_row.success:.3f} [{blended_row.success_lo:.2f}, {blended_row.success_hi:.2f}]. Shape edits "
          f"{shape['ours']:.2f} vs {shape['Blended Diffusion']:.2f}, texture edits {texture['ours']:.2f} vs "
          f"{texture['Blended Diffusion']:.2f}; MSE outside {ours_row.l2_outside:.4f} vs 0 (GT mask pasted back)",
          [ours_row.success_lo > blended_row.success, shape["ours"] > shape["Blended Diffusion"]]),
    Claim("000 Fig. 8", "the background loss preserves what should not change (read: lower MSE outside, higher "
          "consistency)",
          f"MSE outside {ours_row.l2_outside:.4f} with vs {ablation_row.l2_outside:.4f} without; consistency "
          f"{ours_row.consistency:.3f} vs {ablation_row.consistency:.3f}; success {ours_row.success:.3f} vs "
          f"{ablation_row.success:.3f}",
          [ours_row.l2_outside < ablation_row.l2_outside, ours_row.consistency > ablation_row.consistency]),
    Claim("000 Fig. 8", "a larger lambda edits more strongly (read: success rises with lambda up to the largest, "
          "for every weighting with a background loss)",
          f"{chosen_key[0]}: success at lambda " + " / ".join(f"{s:g}" for s in sweep.loc[chosen_key[0]].index) + ": "
          + " / ".join(f"{v:.2f}" for v in sweep.loc[chosen_key[0], "success"]) + "; consistency "
          + " / ".join(f"{v:.2f}" for v in sweep.loc[chosen_key[0], "consistency"])
          + f"; success falls at the largest lambda for {len(falls)} of {len(weightings)} weightings",
          [w not in falls for w in weightings]),
    Claim("000 Fig. 8", "lambda = 100 with Blended Diffusion's background weights edits (read: edit score at least "
          "that of the book's choice)",
          f"sweep (seed 603): success {paper_setting.success:.3f}, consistency {paper_setting.consistency:.3f}; the "
          f"book uses lambda {chosen_strength:g}, weights {chosen_key[0]} (success {sweep.loc[chosen_key, 'success']:.3f})",
          paper_setting.success * paper_setting.consistency >= sweep.loc[chosen_key, "success"]
          * sweep.loc[chosen_key, "consistency"]),
    Claim("000 Fig. 7", "a better classifier guides better (read: success rises with accuracy and the most accurate "
          "classifier's interval clears the least accurate's mean)",
          "accuracy -> success: " + "; ".join(f"{name} {row.iloc[0]:.3f} -> {row.success:.3f}"
                                              for name, row in by_accuracy.iterrows()),
          [bool(by_accuracy.success.is_monotonic_increasing),
           by_accuracy.success_lo.iloc[-1] > by_accuracy.success.iloc[0]]),
    Claim("this book (goal)", "success >= 0.8 for colour and pattern",
          f"both sets: colour {colour_success:.3f}, pattern {pattern_success:.3f}",
          [colour_success >= 0.8, pattern_success >= 0.8], "goal"),
    Claim("this book (goal)", "the confirmation set agrees within its CIs, for every (method, edit) row",
          f"{int(agree.sum())} of {len(agree)} (method, edit) rows; pooled ours {ours_main.success:.3f} "
          f"(main) vs {ours_confirm.success:.3f} (confirm)", bool(agree.all()), "goal"),
    Claim("this book (goal)", "<= 10 s per edit (64 px, 50 steps, 2-core CPU)",
          f"{ours_row.seconds_per_edit:.1f} s per edit in batches of up to 16; one edit alone: section 1",
          ours_row.seconds_per_edit <= 10, "goal"),
])

# %% [markdown]
# ## Exercises
#
# Solutions are folded; a teacher can strip every `:::{admonition}` block with the class `dropdown`.
#
# **1.** Replace the attention map by the ground-truth region in the background loss. How much of the
# gap to the ideal comes from the map?
#
# :::{admonition} Solution
# :class: dropdown
# `guided_edit` builds M-bar with `attention_region`; swap it for the task's region while one batch
# is edited:
# ```python
# import fashionlab.methods.guided_edit as GE
#
# batch = edits.render_tasks(edits.make_tasks(601, 4))  # 4 garments per edit type, held out
# truth = batch.regions[:, None].float().to(device)
# original = GE.attention_region
# GE.attention_region = lambda maps, attributes, size, chosen=None: truth
# try:
#     with_truth = ch06_guided_edit.edit_methods(denoiser, alphas_cumprod, attrnet, models.clip, models.guide_perceptual,
#                                                cfg, ch06_guided_edit.TABLE_BLENDED)["ours"](batch, torch.Generator().manual_seed(0))
# finally:
#     GE.attention_region = original
# with_map = methods["ours"](batch, torch.Generator().manual_seed(0))
# for name, out in (("attention map", with_map), ("ground truth", with_truth)):
#     scores = edits.score_edits(batch, out, models.oracle, models.judge_perceptual)
#     print(name, {k: round(float(v.float().mean()), 3) for k, v in scores.items() if k in ("success", "l2_outside")})
# ```
# The difference in MSE outside between the two rows is the part of the gap the map is responsible
# for; what remains with the true region comes from the DDPM's redrawing itself. (Check that
# `render_tasks` returns the regions at the images' size; the edits here use 64 px throughout.)
# :::
#
# **2.** Run Procedure 1 with k = 500 and k = 900. Which edit types need a deep start?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# from dataclasses import replace
#
# batch = edits.render_tasks(edits.make_tasks(601, 4))
# for depth in (500, 750, 900):
#     out = guided_edit(denoiser, alphas_cumprod, attrnet, batch.images.to(device),
#                       [{t.attribute: t.value} for t in batch.tasks], replace(cfg, depth=depth), models.guide_perceptual,
#                       [t.source.category for t in batch.tasks], torch.Generator().manual_seed(0)).edited
#     scores = edits.score_edits(batch, out.cpu(), models.oracle, models.judge_perceptual)
#     print(depth, pd.Series(scores["success"].float().numpy(), index=[t.attribute for t in batch.tasks])
#           .groupby(level=0).mean().round(2).to_dict())
# ```
# The depth decides which features are still undecided when guidance starts (chapter 02's $P_t$
# trajectory): colour and pattern are settled late and can be changed from a shallow start, while
# a new silhouette -- sleeves, neckline, category -- needs the coarse layout to be open again, so
# expect shape edits to gain most from k = 900, at a price in preservation.
# :::
#
# **3.** Guide with the oracle instead of the AttributeNet and grade with the oracle. Compare its
# success with the table's, and explain the difference (chapter 04).
#
# :::{admonition} Solution
# :class: dropdown
# The oracle has no attention maps, so guide without the background loss and compare with the
# table's "ours, no background loss" row; the editor needs an `AttributeNet`-like module, which a
# small wrapper gives:
# ```python
# class OracleGuide(torch.nn.Module):
#     attributes = garments.ATTRIBUTES
#
#     def __init__(self, oracle):
#         super().__init__()
#         self.oracle = oracle
#
#     def preprocess(self, images):
#         return images
#
#     def forward(self, images):
#         logits = self.oracle(images)
#         return logits, {a: torch.full((len(images), 8, 8), 1 / 64, device=images.device) for a in self.attributes}
#
# out = guided_edit(denoiser, alphas_cumprod, OracleGuide(models.oracle), batch.images.to(device),
#                   [{t.attribute: t.value} for t in batch.tasks], replace(cfg, background=False), None,
#                   [t.source.category for t in batch.tasks], torch.Generator().manual_seed(0)).edited
# ```
# Expect a much higher "success": the edit now optimises the very network that grades it, and
# chapter 04 showed how little pixel change flips a classifier. The number measures the attack,
# not the edit -- look at the images and at the independent judge's verdict to see how much of it
# is real.
# :::
#
# **4.** For each classifier of section 6, measure its accuracy on $P_t$ at t = 600, 400 and 200 of
# the edit trajectories rather than on clean photos. Does *that* accuracy predict edit success?
#
# :::{admonition} Solution
# :class: dropdown
# Run `guided_edit(..., return_trajectory=True)` on a held-out batch; `out.x0_preds[i]` is $P_t$ at
# step i and `out.grid[::-1][i]` its timestep. For each classifier (rebuild the four with
# `ch06_guided_edit`'s classifier recipe, as the `classifiers` part of the experiment does), score
# its prediction of the *source's* attributes on those $P_t$:
# ```python
# steps = {t: i for i, t in enumerate(out.grid[::-1])}
# for t in (600, 400, 200):
#     p_t = out.x0_preds[steps[min(steps, key=lambda s: abs(s - t))]].to(device)
#     logits, _ = classifier(classifier.preprocess(p_t))
#     ...  # accuracy against batch.tasks' source attributes, as evaluate_attrnet computes it
# ```
# Guidance acts through gradients on blurry $P_t$, not on clean photos. A classifier whose
# accuracy holds up on $P_t$ at t = 400-600 gives useful gradients early, where shape is decided;
# correlate those accuracies with section 6's success rates (four points: read the trend, not a
# p-value).
# :::
#
# **5.** Rerun the multi-attribute edits of section 4 with λ halved. Are they cleaner, and do both
# attributes still change?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# half = replace(cfg, strength=cfg.strength / 2)
# multi_half = [guided_edit(denoiser, alphas_cumprod, attrnet, xs, targets, half, models.guide_perceptual,
#                           [s.category for s in multi_src], torch.Generator().manual_seed(1)).edited.cpu()
#               for targets in multi]
# read = [predicted_attributes(models.oracle(x.to(device)), garments.ATTRIBUTES) for x in multi_half]
# ```
# The loss is the sum of two cross-entropies, so at a given λ each attribute gets about half the
# push a single edit gets; halving λ again weakens both, and the one that is harder to move (the
# shape change, usually) is the first to fail. Cleaner backgrounds at the price of fewer complete
# edits is the trade-off to look for in the oracle's readings.
# :::
