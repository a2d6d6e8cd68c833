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
# # Taming a ViT for multi-attribute guidance
#
# Paper 000 ({cite:t}`kong2023fashion`) edits garments with the gradient of a classifier, so the classifier is
# half of the method. It must recognise eight attributes at once from a few thousand labelled
# photos, and it must say *where* it looks, because its attention becomes the edit region of the
# next chapter. The paper's answer is a pretrained ViT, kept frozen, with a learned
# **attention-pooling** head: one query token per attribute that cross-attends to the ViT's patch
# tokens (CoCa's attentional pooler), and one linear classifier per query. It claims three things
# (§4.1, Tables 2–4):
#
# 1. with scarce labels, training only the pooler (`attnpool`) beats fine-tuning more of the ViT;
# 2. CLIP pretraining beats ImageNet pretraining;
# 3. a bigger ViT is better;
#
# and shows, as pictures (Fig. 6), that each query attends to its attribute's region. Garments
# has part maps, so this chapter also *measures* the last claim.
#
# **Learning goals.** After this chapter you can
# 1. build an attention-pooling head and read its per-attribute attention maps;
# 2. train it with the masked multi-attribute cross-entropy (eq. 6), where `-1` means "does not
#    apply";
# 3. compare fine-tuning strategies and initialisations fairly: same data, same budget, several
#    seeds;
# 4. measure how much of an attention map falls inside the region an attribute lives in.
#
# **How this chapter deviates from the paper.** Garments instead of Shopping100k; 64-px images and
# ViTs of 6–8 blocks instead of 224-px ViT-L/14; our own pretraining (a tiny CLIP and a
# category-only "ImageNet" ViT, both on Garments renders) instead of OpenAI CLIP and ImageNet-21k;
# no *gender* attribute (Garments has none), but *colour*, which Shopping100k also labels. The
# grid below is {glue:text}`ch05_n_runs` runs of {glue:text}`ch05_mean_minutes` minutes each on
# average ({glue:text}`ch05_total_hours` hours of training in all, from 17 s for a frozen backbone to
# {glue:text}`ch05_max_minutes` minutes end to end); the notebook shows them from
# the shipped results file `05_attrnet_tables.json` (package data, in `fashionlab.config.results_dir()`)
# and trains one variant live.
#
# **Profiles.** The notebook runs `tiny`. The same recipe under `full` -- the shipped variant, CLIP
# initialisation fine-tuned end to end, on OpenAI's ViT-B-16 and the real catalogue's `articleType`,
# `baseColour`, `gender`, `season` and `usage` -- is one command on a GPU runtime,
# `python -m fashionlab.experiments.ch05_attrnet_full`, which reports each accuracy beside the
# majority-class rate. Our CI runs it only on random-weight twins, so the book quotes no number of it.

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
from fashionlab.data import garments, transforms
from fashionlab.eval.classifiers import evaluate_attrnet
from fashionlab.eval.claims import Claim, claims_table
from fashionlab.experiments import ch05_attrnet_grid
from fashionlab.models.attrnet import apply_strategy
from fashionlab.train import attrnet as attrnet_training
from fashionlab.viz import glue, heatmap, image_grid
from fashionlab.zoo.loaders import build_attrnet
from fashionlab.zoo.recipes import RECIPES

torch.set_grad_enabled(False)
pd.set_option("display.max_colwidth", None)  # the claims table's sentences in full
device = config.get_device()
print("profile:", config.get_profile(), "| device:", device.type)
TABLES = ch05_attrnet_grid.read_tables()
train_minutes = [run["train_seconds"] / 60 for run in TABLES["runs"].values()]
glue("ch05_n_runs", str(len(train_minutes)), display=False)
glue("ch05_mean_minutes", f"{np.mean(train_minutes):.1f}", display=False)
glue("ch05_total_hours", f"{np.sum(train_minutes) / 60:.1f}", display=False)
glue("ch05_max_minutes", f"{np.max(train_minutes):.1f}", display=False)

# %% [markdown]
# ## 1. A small labelled set
#
# Shopping100k has about 100,000 images, but a few thousand per attribute value, and many labels
# are missing. We fix the budget at **2,000 labelled photos** (Garments seed 30, photo style, no
# detail extras: the domain the diffusion model of chapter 02 knows), choose among variants on
# 1,000 validation garments (seed 31) and report on 1,000 held-out ones (seed 32). An attribute
# that does not apply (a neckline on trousers, a collar on a t-shirt) has the label −1 and is
# masked out of the loss:
#
# $$\mathcal L_{cls} = -\sum_{i=1}^{|A|} \log\frac{\exp x^{(i)}_{y^{(i)}}}{\sum_{j=1}^{C^{(i)}} \exp x^{(i)}_j}\;
#   \mathbb 1\big(y^{(i)} \neq -1\big). \qquad (6)$$
#
# The last column is the floor every classifier must clear: the held-out accuracy of always
# answering the training set's most frequent value.

# %%
train = garments.render_cache(attrnet_training.TRAIN_SEED, attrnet_training.N_TRAIN, domain="in", progress=False)
test = garments.render_cache(attrnet_training.TEST_SEED, attrnet_training.N_TEST, domain="in", progress=False)


def majority_accuracy(k: int) -> float:
    """Held-out accuracy of always predicting the most frequent training value of attribute k."""
    labels = train.attributes[:, k]
    majority = int(torch.bincount(labels[labels >= 0]).argmax())
    truth = test.attributes[:, k]
    return float((truth[truth >= 0] == majority).float().mean())


labelled = pd.DataFrame({
    "classes": {a: garments.NUM_CLASSES[a] for a in garments.ATTRIBUTES},
    "labelled images": {a: int((train.attributes[:, k] >= 0).sum()) for k, a in enumerate(garments.ATTRIBUTES)},
    "images per class (mean)": {a: round(float((train.attributes[:, k] >= 0).sum()) / garments.NUM_CLASSES[a])
                                for k, a in enumerate(garments.ATTRIBUTES)},
    "majority-class accuracy": {a: round(majority_accuracy(k), 3) for k, a in enumerate(garments.ATTRIBUTES)},
})
labelled

# %% [markdown]
# ## 2. Three backbones of one shape
#
# All Table 2 and 3 variants share one ViT shape: the image tower of `garments-clip-s` (64 px,
# 8-px patches, so an 8 × 8 grid of patch tokens; 6 blocks of width 192). They differ in what it
# learned first:
#
# | init | analogue of | what the backbone learned |
# |---|---|---|
# | `random` | random init | nothing |
# | `supervised` | ImageNet pretraining | `garments-vit-sup-s`: the same ViT trained on *category and render style labels only*, on the same 60,000 renders, with the same steps and batch as the CLIP |
# | `clip` | CLIP pretraining | the image tower of `garments-clip-s`, trained on captions that name every attribute |
#
# The supervised backbone is a fair ImageNet analogue because, like an ImageNet model, it was
# trained to say *what object* is shown, with a closed label set, and never saw words for colour,
# pattern, sleeve or neckline. The CLIP saw those words. Both saw the same pixels for the same
# compute; only the supervision differs, which is exactly the comparison 000 makes (at a scale
# where, unlike 000, the data are held equal). Table 4 adds `garments-clip-b`, a wider and deeper
# CLIP trained on the same data with the same recipe.

# %%
cards = {name: zoo.model_card(name) for name in ("garments-vit-sup-s", "garments-clip-s", "garments-clip-b")}
pretraining = pd.DataFrame({
    name: {"training minutes": card["training_minutes"], "steps x batch":
           f"{card['training_steps']} x {card['batch_size']}", "parameters": card["parameters"]}
    for name, card in cards.items()}).T
pretraining

# %% [markdown]
# Fine-tuning strategies choose what trains. The pooler and heads always do; `lastK` also
# unfreezes the last K transformer blocks; `e2e` trains everything (the backbone at a tenth of
# the head's learning rate, as usual for fine-tuning).

# %%
net = build_attrnet("clip", seed=0)
params = {}
for strategy in ("attnpool", "last2", "last4", "e2e"):
    trainable = apply_strategy(net, strategy)
    params[strategy] = sum(p.numel() for p in trainable)
print("trainable parameters:", params)
logits, maps = net(net.preprocess(transforms.to_model_input(train.images[:1])))
print("attention map per attribute:", tuple(maps["sleeve"].shape), "| sums to",
      round(float(maps["sleeve"].sum()), 4))

# %% [markdown]
# ## 3. A live run
#
# The `clip / attnpool` variant, trained here for 600 steps of 64 images in fp32. With the
# backbone frozen and no augmentation, the patch tokens of the 2,000 images are computed once, so
# the run is fast. The tables below come from the same code (`fashionlab.experiments.ch05_attrnet_grid.run_tables`), run once for every
# variant and three seeds, in bf16 (`python -m fashionlab.experiments.ch05_attrnet_grid`); their numbers
# therefore differ from this fp32 run in the last digit or two.

# %%
start = time.perf_counter()
with torch.enable_grad():
    live = build_attrnet("clip", seed=0)
    run = attrnet_training.train_attrnet(live, "attnpool", train, attrnet_training.AttrNetTrainConfig())
live_result = evaluate_attrnet(live, test)
live_seconds = time.perf_counter() - start

# %%
# NBVAL_IGNORE_OUTPUT
print(f"train + evaluate: {live_seconds:.0f} s")

# %% mystnb={"figure": {"caption": "The masked multi-attribute cross-entropy of the live attention-pooling run.", "name": "fig-ch05-live-loss"}, "image": {"alt": "A falling loss curve on a log scale over 600 steps."}}
grid_seed0 = TABLES["runs"][attrnet_training.Variant("clip", "attnpool").key]
print(f"held-out mean accuracy: live {live_result['mean_accuracy']:.3f}, table (bf16, seed 0) "
      f"{grid_seed0['mean_accuracy']:.3f}")
fig, ax = plt.subplots(figsize=(4.5, 2.6))
ax.plot(np.arange(1, len(run.losses) + 1) * 25, run.losses)
ax.set(xlabel="step", ylabel="masked CE (eq. 6), summed over attributes", yscale="log")
plt.show()

# %% [markdown]
# ## 4. Table 2: initialisation × fine-tuning strategy
#
# Mean held-out accuracy over three seeds (the seed sets the pooler's initialisation and the
# batches), ± the standard deviation between seeds.

# %%
variants = attrnet_training.table_variants()
mean, std, seeds = ch05_attrnet_grid.summarise_runs(TABLES["runs"], variants)


def show(rows: list[str], frame_mean: pd.DataFrame = mean, frame_std: pd.DataFrame = std) -> pd.DataFrame:
    """'mean ± std' cells for the given rows."""
    cells = frame_mean.loc[rows].map(lambda v: f"{v:.3f}") + " ± " + frame_std.loc[rows].map(lambda v: f"{v:.3f}")
    return cells


table2_rows = ["random / e2e [s]"] + [f"{i} / {s} [s]" for i in ("supervised", "clip")
                                       for s in ("attnpool", "last2", "last4", "e2e")]
clip_gains = [mean.loc[f"clip / {st} [s]", "average"] - mean.loc[f"supervised / {st} [s]", "average"]
              for st in ("attnpool", "last2", "last4", "e2e")]
neckline = {row: f"{mean.loc[row, 'neckline']:.2f} ± {std.loc[row, 'neckline']:.2f}"
            for row in ("random / e2e [s]", "supervised / attnpool [s]")}
for key, value in {
        "ch05_max_sd": f"{std.loc[table2_rows, 'average'].max():.3f}",
        "ch05_clip_gain_lo": f"{min(clip_gains):.2f}", "ch05_clip_gain_hi": f"{max(clip_gains):.2f}",
        "ch05_random_over_last4": f"{mean.loc['random / e2e [s]', 'average'] - mean.loc['supervised / last4 [s]', 'average']:.2f}",
        "ch05_random_neckline": neckline["random / e2e [s]"], "ch05_sup_neckline": neckline["supervised / attnpool [s]"],
        "ch05_backbone_m": f"{zoo.model_card('garments-vit-sup-s')['parameters'] / 1e6:.1f}",
        "ch05_fabric_mean": f"{mean['fabric'].mean():.2f}", "ch05_fabric_lo": f"{mean['fabric'].min():.2f}",
        "ch05_fabric_hi": f"{mean['fabric'].max():.2f}",
        "ch05_fabric_floor": f"{majority_accuracy(garments.ATTRIBUTES.index('fabric')):.2f}"}.items():
    glue(key, value, display=False)
show(table2_rows)

# %% [markdown]
# The paper's averages (ViT-L/14, 24 blocks; Shopping100k, with gender instead of colour), for
# the shape of the curve rather than the level:

# %%
paper_table2 = pd.DataFrame(
    [("random", "end-to-end", 51.0), ("ImageNet", "attnpool", 80.3), ("ImageNet", "last2", 67.6),
     ("ImageNet", "last4", 62.0), ("ImageNet", "last6", 61.5), ("CLIP", "attnpool", 81.5),
     ("CLIP", "last6", 81.0), ("CLIP", "last12", 80.6), ("CLIP", "last18", 77.8), ("CLIP", "last24 (= e2e)", 62.3)],
    columns=["init", "trained", "average accuracy (%)"])
paper_table2.set_index(["init", "trained"]).T

# %% mystnb={"figure": {"caption": "Mean held-out accuracy of each initialisation and fine-tuning strategy, over three seeds.", "name": "fig-ch05-table2"}, "image": {"alt": "A bar chart with error bars: a grey bar for the random backbone, blue bars for the supervised backbone and orange bars for the CLIP backbone under four strategies."}}
fig, ax = plt.subplots(figsize=(7, 2.8))
ax.bar(range(len(table2_rows)), mean.loc[table2_rows, "average"], yerr=std.loc[table2_rows, "average"],
       color=["grey"] + ["C0"] * 4 + ["C1"] * 4, capsize=3)
ax.set_xticks(range(len(table2_rows)), [r.replace(" [s]", "") for r in table2_rows], rotation=30, ha="right")
ax.set(ylabel="mean accuracy (8 attributes)", ylim=(0.5, 1.0), title="Table 2 analogue (3 seeds, ± s.d.)")
plt.tight_layout()
plt.show()

# %% [markdown]
# **What Table 2 shows.** The seed spread is small (s.d. of the average {glue:text}`ch05_max_sd` at most), so three
# things are clear:
#
# 1. **Training more of the ViT helps, for both inits**: attnpool < last2 ≤ last4 < e2e. This
#    *refutes* the paper's first claim at our scale, where the paper finds the opposite, and
#    sharply (the paper reports CLIP e2e 62.3 against attnpool 81.5).
# 2. **CLIP beats supervised at every strategy**, by {glue:text}`ch05_clip_gain_lo` to
#    {glue:text}`ch05_clip_gain_hi`. The gain sits in neckline,
#    pattern, sleeve, fit and collar, the attributes a category-only backbone had no reason to
#    encode. The supervised backbone wins clearly only on category, the task it was trained on.
# 3. **A category-trained backbone can be worse than none.** Random init trained end to end is
#    above every frozen or partly frozen supervised variant (over last4 by {glue:text}`ch05_random_over_last4`,
#    within the seed spread) and level with supervised e2e. Its neckline accuracy
#    ({glue:text}`ch05_random_neckline`) is above supervised attnpool's ({glue:text}`ch05_sup_neckline`):
#    the category features threw that information away. In the paper random init is far behind
#    (the paper reports 51.0): ViT-L from scratch on a
#    few thousand photos is hopeless, a 6-block ViT on 2,000 clean renders is not.
#
# Why does the paper's first claim not transfer? The paper's backbone has about 300 M parameters
# and its fine-tuning set is small *and* different from what the backbone saw, so unfreezing
# blocks lets it overfit and forget. Ours has {glue:text}`ch05_backbone_m` M, was pretrained on the very distribution it
# is fine-tuned on (there is nothing else to forget), and is fine-tuned with a backbone learning
# rate ten times below the head's. The 2,000 labelled garments, with up to eight labels each, are
# then enough to improve the whole network rather than damage it. A frozen backbone helps when
# the labelled data are scarce *relative to the model*, and ours are not.
#
# **Fabric stays near {glue:text}`ch05_fabric_mean` for every variant** (from {glue:text}`ch05_fabric_lo`
# to {glue:text}`ch05_fabric_hi`; the majority floor in the first table is {glue:text}`ch05_fabric_floor`).
# The paper's fabric column is also its lowest (the paper reports 57–68 %). The confusion matrix of
# the shipped classifier (section 7) shows what that means: leather, darker and with a sheen, is recognised
# almost always, and cotton, denim and knit are guessed among at about chance. Their textures
# (fibre noise, twill diagonals, knit ribs) are fine patterns close to the pixel grid of a 64-px
# render, which the 8-px patches average away.

# %% [markdown]
# ## 5. Table 3: random augmentation, frozen backbone
#
# Label-preserving augmentation (rotation, shift, scale, brightness, contrast; never a hue shift,
# which would change the colour label), with only the pooler trained:

# %%
show([f"{i} / attnpool [s]" for i in ("supervised", "clip")] + [f"{i} / attnpool +aug [s]" for i in ("supervised", "clip")])

# %% [markdown]
# The paper finds that augmentation hurts the ImageNet backbone (80.3 → 78.4) and helps CLIP a
# little (80.9 → 81.5). Here it **hurts both, CLIP more**, and neckline most. The half that
# transfers is the ImageNet one; the CLIP half is refuted. A likely reason is that Garments renders
# are centred, upright and evenly lit in training *and* test, so augmentation only teaches
# invariances the held-out set never asks for, while moving small regions (the neckline spans a
# patch or two) across the 8 × 8 grid the frozen features were tuned to. Shopping100k photos vary
# in exactly the ways augmentation simulates. The paper's own hypothesis — too few trainable
# parameters to absorb strong augmentation — would predict the same sign for both inits here.

# %% [markdown]
# ## 6. Table 4: a bigger CLIP
#
# `garments-clip-b` (8 blocks of width 256) against `-s` (6 of width 192), trained on the same
# renders and captions with the same steps, batch and schedule. The paper reports (ViT-B/32, B/16,
# L/14, attnpool) 79.2, 80.0, 80.9.

# %% [markdown]
# First the two CLIPs themselves, as the zoo's export measured them on 1,000 held-out renders of
# every style (chapter 03): zero-shot attribute accuracy and retrieval.

# %%
clip_metrics = pd.DataFrame({
    name: {**{f"zero-shot {a}": cards[name]["metrics"]["accuracy"][a] for a in garments.ATTRIBUTES},
           "image-to-text R@1": cards[name]["metrics"]["image_to_text_R@1"],
           "text-to-image R@1": cards[name]["metrics"]["text_to_image_R@1"],
           "final contrastive loss": cards[name]["final_loss"]}
    for name in ("garments-clip-s", "garments-clip-b")}).T
clip_metrics.round(3)

# %% [markdown]
# Then each as the backbone of the attribute classifier:

# %%
table4_rows = ["clip / attnpool [s]", "clip / attnpool [b]", "clip / e2e [s]", "clip / e2e [b]"]


def e2e_minutes(clip_name: str) -> float:
    """Mean training minutes over the seeds of the `clip / e2e` row on ``clip_name``."""
    return float(np.mean([TABLES["runs"][v.key]["train_seconds"] / 60 for v in variants
                          if (v.init, v.strategy, v.augment, v.clip_name) == ("clip", "e2e", False, clip_name)]))


gain_attnpool = mean.loc["clip / attnpool [b]", "average"] - mean.loc["clip / attnpool [s]", "average"]
gain_e2e = mean.loc["clip / e2e [b]", "average"] - mean.loc["clip / e2e [s]", "average"]
glue("ch05_b_gain_attnpool", f"{gain_attnpool:+.3f}", display=False)
glue("ch05_s_std_attnpool", f"{std.loc['clip / attnpool [s]', 'average']:.3f}", display=False)
glue("ch05_b_gain_e2e", f"{gain_e2e:+.3f}", display=False)
glue("ch05_b_gain_e2e_sd", f"{gain_e2e / std.loc['clip / e2e [s]', 'average']:.0f}", display=False)
glue("ch05_b_wins_e2e", str(int((mean.loc["clip / e2e [b]", list(garments.ATTRIBUTES)]
                                 > mean.loc["clip / e2e [s]", list(garments.ATTRIBUTES)]).sum())), display=False)
glue("ch05_b_e2e_minutes", f"{e2e_minutes('garments-clip-b'):.1f}", display=False)
glue("ch05_s_e2e_minutes", f"{e2e_minutes('garments-clip-s'):.1f}", display=False)
show(table4_rows)

# %% mystnb={"figure": {"caption": "Per-attribute accuracy with the smaller (-s, light) and the bigger (-b, dark) CLIP backbone.", "name": "fig-ch05-table4"}, "image": {"alt": "Grouped bars per attribute with error bars, a light and a dark bar for each of two variants."}}
fig, ax = plt.subplots(figsize=(7, 2.8))
attrs = list(garments.ATTRIBUTES)
for k, row in enumerate(table4_rows):
    ax.bar(np.arange(len(attrs)) + (k - 1.5) * 0.2, mean.loc[row, attrs], width=0.2, yerr=std.loc[row, attrs],
           capsize=2, label=row, color=f"C{k // 2}", alpha=1.0 if k % 2 else 0.5)
ax.set_xticks(range(len(attrs)), attrs)
ax.set(ylabel="held-out accuracy", ylim=(0.3, 1.02), title="Table 4 analogue: -s (light) vs -b (dark), 3 seeds")
ax.legend(fontsize=7, ncol=2, loc="lower left")
plt.tight_layout()
plt.show()

# %% [markdown]
# **In the paper's setting, the pooler on a frozen backbone, bigger is not clearly better here**:
# `-b` gains {glue:text}`ch05_b_gain_attnpool` on average, less than a seed's standard deviation
# ({glue:text}`ch05_s_std_attnpool`); it wins some attributes and loses others. **End to end it is
# better**: {glue:text}`ch05_b_gain_e2e`, about {glue:text}`ch05_b_gain_e2e_sd` standard deviations,
# and ahead on {glue:text}`ch05_b_wins_e2e` of the eight attributes. The bigger CLIP is also the better
# CLIP on its own terms (lower contrastive loss, higher retrieval; chapter 03), though not on every
# zero-shot attribute. A bigger backbone pays off here once the labelled data can reshape it. It also
# costs: the `-b` e2e runs took {glue:text}`ch05_b_e2e_minutes` minutes on average against
# {glue:text}`ch05_s_e2e_minutes` for `-s`, and a guided edit of chapter 06 runs the classifier's
# backbone on every view of every step, so it slows in proportion (chapter 06 times the edit with the
# `-s` classifier it ships).

# %% [markdown]
# ## 7. The classifier we ship
#
# `garments-attrnet`, the classifier chapter 06 guides with, is chosen by *validation* accuracy
# averaged over a row's three seeds, and retrained from seed 0 by the zoo recipe; the held-out set
# plays no part in the choice.

# %%
best, best_validation = ch05_attrnet_grid.best_variant(TABLES["runs"], variants)
best_s, best_s_validation = ch05_attrnet_grid.best_variant(TABLES["runs"], [v for v in variants if v.clip_name == "garments-clip-s"])
shipped = RECIPES["garments-attrnet"].variant
print(f"best row on validation, all rows:   {best.init} / {best.strategy} [{best.clip_name}] ({best_validation:.3f})")
print(f"best row on validation, -s rows:    {best_s.init} / {best_s.strategy} [{best_s.clip_name}] "
      f"({best_s_validation:.3f})")
print(f"shipped garments-attrnet:           {shipped.init} / {shipped.strategy} [{shipped.clip_name}]")
glue("ch05_b_validation_gain", f"{best_validation - best_s_validation:.3f}", display=False)

# %% [markdown]
# **The shipped classifier is not the grid's best row.** `garments-clip-b` finished training after
# chapter 06 had been measured with the best `-s` row, and its e2e row is now ahead on validation
# by {glue:text}`ch05_b_validation_gain`. Swapping the classifier means rerunning chapter 06's sweep
# and tables (over an hour of edits on two cores), so this book ships the `-s` classifier until that rerun is done, and says
# so here. Section 9 gives a reason not to assume the swap helps: the `-b` e2e collar query
# looks *away* from the collar. The shipped classifier on the held-out garments:

# %%
shipped_metrics = zoo.model_card("garments-attrnet")["metrics"]
pd.DataFrame({"held-out accuracy": shipped_metrics["accuracy"]}).T.assign(mean=shipped_metrics["mean_accuracy"])

# %% [markdown]
# Its fabric confusions on the held-out garments (rows: truth, columns: prediction):

# %%
attrnet = zoo.load("garments-attrnet", device=device)
fabric_k = garments.ATTRIBUTES.index("fabric")
predicted = torch.cat([attrnet(attrnet_training.model_pixels(attrnet, test.images[i:i + 250]).to(device))[0]["fabric"].argmax(1).cpu()
                       for i in range(0, len(test), 250)])
names = list(garments.SCHEMA["fabric"])
pd.crosstab(pd.Categorical([names[i] for i in test.attributes[:, fabric_k]], names),
            pd.Categorical([names[i] for i in predicted], names), rownames=["truth"], colnames=["predicted"])

# %% [markdown]
# ## 8. Where each attribute looks (Fig. 6)
#
# `garments-attrnet` on four held-out garments: one map per attribute query, over the image
# (8 × 8 patches, upsampled).

# %% mystnb={"figure": {"caption": "Where each attribute query of garments-attrnet looks: one attention map per attribute over four held-out garments.", "name": "fig-ch05-attention"}, "image": {"alt": "Four rows of nine panels: a held-out garment followed by eight attention heat maps overlaid on it, one per attribute query."}}
sample = test.images[:4]
logits, maps = attrnet(attrnet_training.model_pixels(attrnet, sample).to(device))
cells = []
for i in range(4):
    cells.append(sample[i].numpy())
    for a in garments.ATTRIBUTES:
        up = torch.nn.functional.interpolate(maps[a][i][None, None].cpu(), size=(64, 64), mode="bilinear")[0, 0]
        overlay = 0.45 * sample[i].numpy() + 0.55 * heatmap(up)
        cells.append(overlay.round().astype(np.uint8))
image_grid(cells, ncols=1 + len(garments.ATTRIBUTES), titles=(["image"] + list(garments.ATTRIBUTES)) * 4, cell=1.0)
plt.show()

# %% [markdown]
# The sleeve query looks at the shoulders and sides (on the background beside a sleeveless
# garment: the *absence* of a sleeve is evidence too), the collar and neckline queries at the
# neck, fit at the garment's edges, category at the hem. Not every map is where a reader would
# draw it: on some garments the colour query spreads over the background around the garment,
# as chapter 06 finds the pattern query doing late in an edit. Section 9 measures this over
# 1,000 garments instead of judging four.

# %% [markdown]
# ## 9. Beyond the paper: attention mass inside the right region
#
# For each attribute, the share of its attention map inside the attribute's ground-truth region
# (sleeves for `sleeve`, the neck area for `neckline` and `collar`, the whole garment for
# `colour`, ...; `garments.region_mask`), against the share a uniform map would put there (the region's
# area). A ratio above 1 means the query looks where the attribute is.

# %%
att_mean, att_std, _ = ch05_attrnet_grid.summarise_runs(TABLES["runs"], variants, "attention_in_region")
uni_mean, _, _ = ch05_attrnet_grid.summarise_runs(TABLES["runs"], variants, "uniform_in_region")
map_rows = table2_rows + table4_rows[1::2]
mass = att_mean.loc[map_rows].drop(columns="average")
# the uniform share depends only on the held-out garments, so it is one row for every variant
mass.loc["uniform map"] = uni_mean.loc[map_rows].drop(columns="average").iloc[0]
mass.round(3)

# %% [markdown]
# The same as a ratio to the uniform share:

# %%
ratio = (att_mean / uni_mean).drop(columns="average")
ratio.loc[map_rows].round(2)

# %% mystnb={"figure": {"caption": "Attention mass inside the attribute's region relative to a uniform map, for the three local attributes.", "name": "fig-ch05-attention-ratio"}, "image": {"alt": "Grouped bars on a log scale for sleeve, neckline and collar per variant, with a dashed line at 1 (a uniform map)."}}
local = ["sleeve", "neckline", "collar"]  # the attributes that live in a small region
fig, ax = plt.subplots(figsize=(7, 2.8))
for k, attribute in enumerate(local):
    ax.bar(np.arange(len(map_rows)) + (k - 1) * 0.27, ratio.loc[map_rows, attribute], width=0.27, label=attribute)
ax.axhline(1.0, color="grey", lw=0.8, ls="--")
ax.set_xticks(range(len(map_rows)), [r.replace(" [s]", "") for r in map_rows], rotation=30, ha="right")
ax.set(ylabel="attention mass in region / uniform", yscale="log", title="above the dashed line: the query looks there")
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
plt.tight_layout()
plt.show()

# %% [markdown]
# Those are means over three seeds. Seed by seed, a run *fails* the test when one of its three
# local queries puts less mass in its region than a uniform map (ratio below 1):

# %%
s_variants = [v for v in variants if v.clip_name.endswith("-s")]
per_run = pd.DataFrame({v.key: {a: TABLES["runs"][v.key]["attention_in_region"][a]
                                / TABLES["runs"][v.key]["uniform_in_region"][a] for a in local}
                        for v in s_variants if v.key in TABLES["runs"]}).T
failing = per_run[(per_run < 1).any(axis=1)]
s_means = ratio.loc[[r for r in ratio.index if r.endswith("[s]")], local]
glue("ch05_runs_s", str(len(per_run)), display=False)
glue("ch05_runs_failing", str(len(failing)), display=False)
glue("ch05_ratio_lo", f"{s_means.min().min():.1f}", display=False)
glue("ch05_ratio_hi", f"{s_means.max().max():.1f}", display=False)
for attribute in ("neckline", "collar"):
    glue(f"ch05_{attribute}_frozen", f"{ratio.loc['clip / attnpool [s]', attribute]:.1f}", display=False)
    glue(f"ch05_{attribute}_e2e", f"{ratio.loc['clip / e2e [s]', attribute]:.1f}", display=False)
glue("ch05_b_collar_attnpool", f"{ratio.loc['clip / attnpool [b]', 'collar']:.2f}", display=False)
glue("ch05_b_collar_e2e", f"{ratio.loc['clip / e2e [b]', 'collar']:.2f}", display=False)
glue("ch05_b_collar_acc", f"{mean.loc['clip / e2e [b]', 'collar']:.2f}", display=False)
print(f"{len(failing)} of {len(per_run)} runs on the -s backbone have a local query below uniform:")
failing.round(2)

# %% [markdown]
# **On the `-s` backbone, every variant's sleeve, neckline and collar queries put more mass in
# their region than a uniform map would, averaged over seeds**: from {glue:text}`ch05_ratio_lo` to
# {glue:text}`ch05_ratio_hi` times. Seed by seed it is not so clean: {glue:text}`ch05_runs_failing`
# of the {glue:text}`ch05_runs_s` runs have a query below uniform (the table above), and the shipped
# classifier, `clip / e2e [s]` seed 0, is one of them. So the Fig. 6 claim holds for the averages
# and *partly* for single models. Three details:
#
# - Fine-tuning end to end *lowers* the localisation of the `-s` CLIP queries for neckline and
#   collar (ratio {glue:text}`ch05_neckline_frozen` and {glue:text}`ch05_collar_frozen` with the
#   pooler alone, {glue:text}`ch05_neckline_e2e` and {glue:text}`ch05_collar_e2e` e2e) while it raises
#   their accuracy. The e2e backbone can move neckline evidence into tokens outside the neck.
# - On the `-b` backbone the collar query fails the test: {glue:text}`ch05_b_collar_attnpool` times
#   uniform with the pooler alone, and {glue:text}`ch05_b_collar_e2e` end to end, although that
#   variant has the best collar accuracy of the grid ({glue:text}`ch05_b_collar_acc`). Its collar evidence sits in tokens away from the collar,
#   which a deeper, wider backbone can afford to do. The most accurate classifier is not the
#   best-localised one, and that matters for chapter 06, whose edit region *is* this map.
# - These ratios are measured on clean renders. Chapter 06 guides on the diffusion model's
#   noisy estimates $\hat X_0$, and there it finds that late in an edit the *pattern* query
#   sits on the background: a map that is right on clean images need not stay right along a
#   trajectory.

# %% [markdown]
# ## Claims vs what we measured

# %%
avg = mean["average"]
sd = std["average"]
s_rows = [r for r in ratio.index if r.endswith("[s]")]
claims_table([
    Claim("000 Table 2", "attnpool beats e2e at low data (CLIP init)",
          f"{avg['clip / attnpool [s]']:.3f} vs {avg['clip / e2e [s]']:.3f}",
          avg["clip / attnpool [s]"] > avg["clip / e2e [s]"]),
    Claim("000 Table 2", "attnpool beats e2e at low data (ImageNet-like init)",
          f"{avg['supervised / attnpool [s]']:.3f} vs {avg['supervised / e2e [s]']:.3f}",
          avg["supervised / attnpool [s]"] > avg["supervised / e2e [s]"]),
    Claim("000 Table 2", "CLIP pretraining beats ImageNet pretraining (attnpool)",
          f"{avg['clip / attnpool [s]']:.3f} vs {avg['supervised / attnpool [s]']:.3f}",
          avg["clip / attnpool [s]"] > avg["supervised / attnpool [s]"]),
    Claim("000 Table 2", "pretraining beats random init (read: the best pretrained row and the supervised "
          "attnpool row both beat random e2e)",
          f"best pretrained {avg.drop('random / e2e [s]').max():.3f} vs random {avg['random / e2e [s]']:.3f}; "
          f"supervised attnpool {avg['supervised / attnpool [s]']:.3f}",
          [avg.drop("random / e2e [s]").max() > avg["random / e2e [s]"],
           avg["supervised / attnpool [s]"] > avg["random / e2e [s]"]]),
    Claim("000 Table 3", "augmentation helps CLIP, hurts ImageNet (attnpool)",
          f"CLIP {avg['clip / attnpool +aug [s]'] - avg['clip / attnpool [s]']:+.3f}, supervised "
          f"{avg['supervised / attnpool +aug [s]'] - avg['supervised / attnpool [s]']:+.3f}",
          [avg["clip / attnpool +aug [s]"] > avg["clip / attnpool [s]"],
           avg["supervised / attnpool +aug [s]"] < avg["supervised / attnpool [s]"]]),
    Claim("000 Table 4", "bigger is better (attnpool, the paper's setting; read: gain above one s.d. of -s)",
          f"-b {avg['clip / attnpool [b]']:.3f} vs -s {avg['clip / attnpool [s]']:.3f} "
          f"(s.d. {sd['clip / attnpool [s]']:.3f})",
          avg["clip / attnpool [b]"] - avg["clip / attnpool [s]"] > sd["clip / attnpool [s]"]),
    Claim("000 Table 4", "bigger is better (e2e; read: gain above one s.d. of -s)",
          f"-b {avg['clip / e2e [b]']:.3f} vs -s {avg['clip / e2e [s]']:.3f} (s.d. {sd['clip / e2e [s]']:.3f})",
          avg["clip / e2e [b]"] - avg["clip / e2e [s]"] > sd["clip / e2e [s]"]),
    Claim("000 Fig. 6", "each query attends to its attribute's region (read: sleeve, neckline and collar above a "
          "uniform map, for the seed means of every -s row and for every single -s run)",
          f"seed means {s_means.min().min():.2f} to {s_means.max().max():.2f} times uniform; {len(failing)} of "
          f"{len(per_run)} runs have a query below uniform; collar {ratio.loc['clip / e2e [b]', 'collar']:.2f} for "
          "clip / e2e [b]", [bool((s_means > 1).all().all()), len(failing) == 0]),
    Claim("this book (goal)", "garments-attrnet mean held-out accuracy >= 0.95",
          f"{shipped_metrics['mean_accuracy']:.3f} (fabric {shipped_metrics['accuracy']['fabric']:.2f})",
          shipped_metrics["mean_accuracy"] >= 0.95, "goal"),
])

# %% [markdown]
# ## Exercises
#
# Solutions are folded; a teacher can strip every `:::{admonition}` block with the class `dropdown`.
#
# **1.** Halve the labelled set to 1,000 garments, or cut it to 200, and rerun `clip / attnpool` and
# `clip / e2e`. At what budget does the frozen backbone start to win, as the paper's
# low-data argument predicts?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# rows = {}
# for n in (200, 1000, 2000):
#     subset = garments.render_cache(attrnet_training.TRAIN_SEED, n, domain="in", progress=False)
#     for strategy in ("attnpool", "e2e"):
#         model = build_attrnet("clip", "garments-clip-s", seed=0)
#         with torch.enable_grad():
#             attrnet_training.train_attrnet(model, strategy, subset, attrnet_training.AttrNetTrainConfig())
#         rows[(n, strategy)] = evaluate_attrnet(model, test)["mean_accuracy"]
# pd.Series(rows).unstack()
# ```
# Fine-tuning end to end has many more parameters to fit; with few labels it overfits them, while a
# frozen pretrained backbone cannot. The crossing point, if there is one in this range, is the
# budget the exercise asks for. One seed per cell is noisy: repeat with `seed=1, 2` before you
# believe a difference of a point or two (the grid's seed spread above shows how large it is).
# :::
#
# **2.** Replace the attention pooler by a linear probe on the ViT's pooled embedding. Which
# attributes suffer most, and does that match where their regions are?
#
# :::{admonition} Solution
# :class: dropdown
# Train one linear head per attribute on the frozen CLIP image embedding, with the same masked loss:
# ```python
# from fashionlab.losses import masked_attribute_ce
#
# clip_s = zoo.load("garments-clip-s", device=device)
# embed = lambda images: clip_s.model.encode_image(clip_s.pixels(transforms.to_model_input(images).to(device)))
# f_train = torch.cat([embed(train.images[i:i + 250]) for i in range(0, len(train), 250)]).float()
# f_test = torch.cat([embed(test.images[i:i + 250]) for i in range(0, len(test), 250)]).float()
# heads = torch.nn.ModuleDict({a: torch.nn.Linear(f_train.shape[1], garments.NUM_CLASSES[a]) for a in garments.ATTRIBUTES})
# opt = torch.optim.AdamW(heads.parameters(), lr=1e-2)
# with torch.enable_grad():
#     for _ in range(600):
#         idx = torch.randint(0, len(train), (64,))
#         loss = masked_attribute_ce({a: h(f_train[idx]) for a, h in heads.items()}, train.attributes[idx],
#                                    garments.ATTRIBUTES)
#         opt.zero_grad(); loss.backward(); opt.step()
# for k, a in enumerate(garments.ATTRIBUTES):
#     keep = test.attributes[:, k] >= 0
#     print(a, round(float((heads[a](f_test[keep]).argmax(1) == test.attributes[keep, k]).float().mean()), 3))
# ```
# The pooled embedding is one vector for the whole image, dominated by what covers most pixels
# (category, colour). Attributes that live in a small region -- neckline, collar, sleeve -- have the
# least weight in it, so expect them to lose most, which is the case for per-attribute queries.
# :::
#
# **3.** Train `random / attnpool`. How much of the attention-mass ratio comes from pretraining?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# model = build_attrnet("random", "garments-clip-s", seed=0)
# with torch.enable_grad():
#     attrnet_training.train_attrnet(model, "attnpool", train, attrnet_training.AttrNetTrainConfig())
# scores = evaluate_attrnet(model, test)
# ratio_random = {a: scores["attention_in_region"][a] / scores["uniform_in_region"][a] for a in ("sleeve", "neckline", "collar")}
# ```
# Compare with the `clip / attnpool` rows of section 9. With a frozen *random* backbone the patch
# tokens carry position and colour but no learnt notion of parts, so the queries can only find a
# region where raw pixel statistics differ. The part of the ratio that disappears is what
# pretraining contributed.
# :::
#
# **4.** Evaluate `garments-attrnet` on sketches and cartoons (`domain="all"`). Which attributes
# survive the change of style, and why might CLIP pretraining matter there?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# mixed = garments.render_cache(attrnet_training.TEST_SEED, 1500, domain="all", progress=False)
# attrnet = zoo.load("garments-attrnet", device=device)
# for k, style in enumerate(garments.STYLES):
#     keep = torch.nonzero(mixed.styles == k).flatten()
#     part = garments.RenderCache(mixed.images[keep], mixed.attributes[keep], mixed.styles[keep],
#                                 mixed.parts[keep], [mixed.specs[i] for i in keep])
#     print(style, evaluate_attrnet(attrnet, part)["accuracy"])
# ```
# Shape attributes (category, sleeve, fit) are drawn the same way in every style; colour changes
# with cartoon fills and vanishes in pencil sketches, and fabric texture is drawn differently.
# The classifier was fine-tuned on photos only; its CLIP backbone saw captions of all three styles
# while it was pretrained, which is the one source of style robustness it has.
# :::
#
# **5.** Render 200 garments at 128 px (`garments.render`) and downsample them. Is fabric hard because of
# the classifier or because 64 px erase the texture?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# specs = [garments.spec_for(attrnet_training.TEST_SEED, i, "in") for i in range(200)]
# big = torch.stack([torch.from_numpy(garments.render(s, 128).image) for s in specs]).permute(0, 3, 1, 2).float()
# small = torch.nn.functional.interpolate(big, size=64, mode="area").round().byte().permute(0, 2, 3, 1)
# native = torch.stack([torch.from_numpy(garments.render(s, 64).image) for s in specs])
# truth = torch.tensor([garments.SCHEMA["fabric"].index(s.fabric) for s in specs])
# for name, images in (("rendered at 64", native), ("128 -> 64", small)):
#     logits, _ = attrnet(attrnet_training.model_pixels(attrnet, images).to(device))
#     print(name, float((logits["fabric"].argmax(1).cpu() == truth).float().mean()))
# ```
# If the downsampled renders score like the native 64-px ones, the information is gone at 64 px
# and no classifier at that size can recover it; if they score better, the renderer's 64-px
# texture is the limit, not the classifier. The oracle, a different architecture, gives a second
# opinion on the same images.
# :::
