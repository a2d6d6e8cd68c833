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
# # Stable Diffusion and LoRA: a fashion synthesis assistant
#
# Paper 002 ({cite:t}`moturi2023fashionsd`) builds a "fashion synthesis assistant": type a prompt, get a garment. It
# takes Stable Diffusion as it comes (KerasCV's port of version 1.4) and fine-tunes it with LoRA on
# 850 catalog images of the Fashion Product Images dataset, captioned from their catalog columns
# ("an image of a 2011 Casual Fall White Men's Sweater"). It then varies LoRA's rank, the batch size
# and the learning rate one at a time and scores each run by FID.
#
# **Learning goals.** After this chapter you can
# 1. name Stable Diffusion's four parts (VAE, text encoder, UNet, scheduler), give each one's input
#    and output shapes, and say what classifier-free guidance does;
# 2. write LoRA's update $h = Wx + \frac{\alpha}{r}BAx$, count its parameters, and train, save, load
#    and switch an adapter with diffusers and peft;
# 3. read an FID honestly: on how many images, against what, with what interval;
# 4. use the tool: a prompt box and `python -m fashionlab generate`.
#
# **The model.** Stable Diffusion cannot be downloaded here, so the book trains its own, *as* a Stable
# Diffusion: the same diffusers classes, assembled as a `StableDiffusionPipeline`, at 64 px. Its VAE
# (`garments-vae`) and UNet (`garments-sd-base`) were trained on Garments renders of every style and
# extra, with varied framing and generic captions ("a sketch of a striped dress with a pocket"). Its
# text encoder is the text tower of chapter 03's `garments-clip-s`, converted to a transformers
# `CLIPTextModel` and frozen, as Stable Diffusion freezes OpenAI's. Under the `full` profile the same
# code loads Stable Diffusion 1.4.
#
# **Built to fail, and a fairer baseline.** The base model never saw a catalog caption. The paper's
# base model had not either, and its failure on them is the paper's motivation. Ours is built the
# same way, so it is *built* to fail on catalog captions; the chapter therefore also prompts the base
# in its own caption format, which is the fair comparison for what LoRA adds.
#
# **What this chapter tests.** The paper's claims, each with its own numbers, are checked in the
# table at the end: LoRA improves on the base model (the paper reports FID 478.6 → 284.6); rank 4, batch size 3 and
# learning rate 5e-5 are the best of the values tried (its Figs. 7-9); quality improves from epoch 1
# to 11 to 20 (its Fig. 10); the validation loss is too unstable to choose by (its Fig. 12); and,
# implicitly, that FID on 3 images can rank models, since the paper chose by it. Where we deviate:
# 64-px garments instead of 512-px product photos, our own tiny Stable Diffusion instead of 1.4, FID
# and KID on the oracle's features instead of Inception's, on 500 images instead of 3, and one seed
# of the whole grid plus a second seed of the paper's setting (the whole grid at two seeds does not
# fit a 2-core session).
#
# **Profiles.** This chapter runs tiny only as a whole. Under `full`, `zoo.load("garments-sd-base")`
# gives Stable Diffusion 1.4 and sections 1-3 and the tool work with it (section 3 trains an
# adapter on it live), but the sweep, the shipped adapters and their grades are of the tiny model.

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
import os
import tempfile
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from diffusers import UNet2DConditionModel
from diffusers.utils import logging as diffusers_logging

from fashionlab import config, zoo
from fashionlab.data import catalog, garments
from fashionlab.eval.claims import Claim, claims_table
from fashionlab.eval.edits import format_ci
from fashionlab.experiments import ch08_lora
from fashionlab.methods import lora
from fashionlab.methods.text_to_image import generate
from fashionlab.metrics import frechet_distance, oracle_features, psnr
from fashionlab.models import sd
from fashionlab.viz import glue, image_grid

torch.set_grad_enabled(False)
diffusers_logging.set_verbosity_error()  # LoRA loading warns that the text encoder has no adapter: by design
pd.set_option("display.max_colwidth", None)  # the claims table's sentences in full
device = config.get_device()
print("profile:", config.get_profile(), "| device:", device.type)
pipe = zoo.load("garments-sd-base", device=device)
print(type(pipe).__name__, "|", {name: type(part).__name__ for name, part in pipe.components.items()
                                 if part is not None})
runs_file = ch08_lora.read_results("runs")
runs = runs_file["runs"]
compare = ch08_lora.read_results("compare")
bench = ch08_lora.read_results("bench")
features = oracle_features(zoo.load("garments-oracle", device=device))

# %% [markdown]
# ## 1. The anatomy of a latent text-to-image model
#
# ### The VAE: pixels to latents and back
#
# Diffusion runs in the VAE's latent space: 64 × 64 × 3 numbers become 16 × 16 × 4 (12 × fewer),
# and the UNet's cost drops with them. The latents are multiplied by the VAE's `scaling_factor`
# (0.18215 in Stable Diffusion 1.x; ours, measured on its training renders, below) so that they have
# about unit variance, as the noise schedule assumes.

# %% mystnb={"figure": {"caption": "The VAE round trip: eight held-out renders and their reconstructions from 16 x 16 x 4 latents.", "name": "fig-ch08-vae"}, "image": {"alt": "Two rows of eight garments in several styles; the reconstructions are close to the renders and slightly softer."}}
held = garments.render_batch([garments.spec_for(830, i, "all") for i in range(8)]).to(device)
posterior = pipe.vae.encode(held).latent_dist
latents = posterior.mode() * pipe.vae.config.scaling_factor
recon = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample.clamp(-1, 1)
vae_card = zoo.model_card("garments-vae")
print(f"image {tuple(held.shape[1:])} -> latent {tuple(latents.shape[1:])} -> image {tuple(recon.shape[1:])}")
print(f"scaling factor {pipe.vae.config.scaling_factor:.4f}; latent std here {float(latents.std()):.2f}")
print(f"round-trip PSNR on these 8: {float(psnr(recon, held).mean()):.1f} dB; "
      f"on the 512 held-out renders of its card: {vae_card['metrics']['psnr_db']} dB "
      f"({vae_card['metrics']['psnr_db_by_style']})")
fig = image_grid(list(held.cpu()) + [x for x in recon.cpu()], ncols=8, cell=1.0, row_labels=["render", "VAE"])
plt.show()

# %% [markdown]
# ### The text encoder and its tokenizer
#
# Stable Diffusion 1.x conditions on the *last hidden states* of OpenAI's CLIP ViT-L/14 text tower
# (77 tokens × 768), not on its pooled embedding: every token position is a key the UNet's
# cross-attention can look up. Ours is `garments-clip-s`'s text tower (32 tokens × 64), converted
# to the same transformers class. The conversion is exact: the pooled, projected feature equals
# open_clip's `encode_text`.

# %%
clip_s = zoo.load("garments-clip-s", device=device)
prompt = "a sketch of a striped dress with a pocket"
ids = pipe.tokenizer(prompt, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                     return_tensors="pt").input_ids.to(device)
states = pipe.text_encoder(ids).last_hidden_state
print("tokens:", pipe.tokenizer.convert_ids_to_tokens(ids[0][:12].tolist()), "...")
print("input ids", tuple(ids.shape), "-> hidden states", tuple(states.shape))
with_projection = sd.text_encoder_from_clip(clip_s.model, with_projection=True).to(device)
gap = (with_projection(ids).text_embeds - clip_s.model.encode_text(clip_s.tokenizer([prompt]).to(device))).abs().max()
print(f"converted tower vs open_clip, pooled feature: max |difference| < 1e-5: {float(gap) < 1e-5}")

# %% [markdown]
# ### The UNet and the scheduler
#
# The UNet predicts, from a noisy latent $z_t$, the timestep and the text states, the quantity the
# scheduler was trained for: here $v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,z_0$
# (Stable Diffusion 2's choice; 1.x predicts $\epsilon$; chapter 02 shows why our tiny models
# predict $v$). The forward process is Stable Diffusion 1.x's "scaled linear" schedule,
# $\beta_t$ from 0.00085 to 0.012, whose last $\bar\alpha_T$ (printed below) never quite reaches pure noise.

# %%
unet = pipe.unet
n_params = sum(p.numel() for p in unet.parameters())
z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0)).to(device)
out = unet(z, torch.tensor([500, 500], device=device), encoder_hidden_states=states.expand(2, -1, -1)).sample
print(f"UNet2DConditionModel: {n_params / 1e6:.2f}M parameters; blocks {unet.config.down_block_types}")
print(f"z_t {tuple(z.shape)} + t + text states {tuple(states.expand(2, -1, -1).shape)} -> v {tuple(out.shape)}")
abar = pipe.scheduler.alphas_cumprod
print(f"prediction type: {pipe.scheduler.config.prediction_type}; alpha_bar at t = 0 / 500 / 999: "
      f"{abar[0]:.4f} / {abar[500]:.3f} / {abar[999]:.4f}")
glue("ch08_unet_params", f"{n_params / 1e6:.1f}M", display=False)

# %% [markdown]
# ### Classifier-free guidance
#
# The UNet was trained with 10 % of captions dropped to "" (Ho & Salimans, 2022), so it is both a
# conditional and an unconditional model. At sampling time the pipeline runs it on both and
# extrapolates: $\hat v = v_\varnothing + w\,(v_c - v_\varnothing)$. $w = 1$ is plain conditional
# sampling; larger $w$ follows the prompt harder, at the price of variety (and, far enough, of
# realism). The same seed and prompt at four scales:

# %% mystnb={"figure": {"caption": "Classifier-free guidance: the same seeds and prompts at four guidance scales.", "name": "fig-ch08-cfg"}, "image": {"alt": "Four rows of three generated garments for a red striped t-shirt, a sketch of a blue dress with a belt and a cartoon of yellow trousers, one row per guidance scale."}}
scales = (1.0, 2.0, 4.0, 7.5)
prompts = ["a photo of a red striped t-shirt", "a sketch of a blue dress with a belt",
           "a cartoon of a pair of yellow trousers"]
rows = [generate(pipe, prompts, seed=0, steps=25, guidance=w) for w in scales]
fig = image_grid([x for r in rows for x in r], ncols=len(prompts), cell=1.3,
                 row_labels=[f"w = {w:g}" for w in scales], titles=prompts + [""] * (len(rows) - 1) * len(prompts))
plt.show()

# %% [markdown]
# ## 2. What the base model knows, and where it fails
#
# Its card grades it on 128 held-out generic captions (every style and extra): the oracle's accuracy
# on the category, colour and style the caption names, the extras judge's recall on named extras,
# and how often a photo prompt gives one whole garment on a clean background.

# %%
base_card = zoo.model_card("garments-sd-base")
pd.Series({k: v for k, v in base_card["metrics"].items() if isinstance(v, (int, float))}).to_frame("garments-sd-base")

# %% [markdown]
# The paper's base model drew its Fig. 2 ("maroon strapless top") and Fig. 3 ("photograph of a 90s
# style top appropriate for winter") poorly: the words were ones its data had rarely paired with
# product shots. Garment versions of both, the paper's catalog caption of three test rows, and the
# *same* rows in the base model's own caption format:

# %% mystnb={"figure": {"caption": "Garment versions of the paper's failure prompts beside the real renders of three test rows.", "name": "fig-ch08-failures"}, "image": {"alt": "Two generated images for the failure prompts followed by three real garment renders."}}
rows = catalog.make_catalog(3, seed=822)
specs = [garments.spec_for(822, i) for i in range(3)]
failure_prompts = ["maroon strapless top", "photograph of a 90s style top appropriate for winter"]
catalog_prompts = [catalog.caption_from_row(r) for _, r in rows.iterrows()]
own_prompts = [garments.caption(s, 1) for s in specs]
shown = failure_prompts + catalog_prompts + own_prompts
images = generate(pipe, shown, seed=0)
real = garments.render_batch(specs)
fig = image_grid(list(images[:2]) + list(real), ncols=5, cell=1.5, titles=failure_prompts + ["test row"] * 3)
plt.show()

# %% mystnb={"figure": {"caption": "The base model on the same three test rows, prompted with the catalogue caption and with its own caption format.", "name": "fig-ch08-caption-formats"}, "image": {"alt": "Two rows of three generated garments for the same three catalogue rows, one row per caption format."}}
fig = image_grid(list(images[2:5]) + list(images[5:]), ncols=3, cell=1.5,
                 row_labels=["catalog caption", "own format"], titles=[f"row {k}" for k in range(3)] + [""] * 3)
plt.show()
for p in catalog_prompts + own_prompts:
    print(p)

# %% [markdown]
# How often these failures happen is measured on 500 test rows in section 7; the grid above is
# only what they look like.
#
# ## 3. LoRA
#
# LoRA (Hu et al., 2021) freezes a pretrained weight $W \in \mathbb{R}^{d \times k}$ and learns a
# low-rank change to it, $\Delta W = BA$ with $B \in \mathbb{R}^{d \times r}$,
# $A \in \mathbb{R}^{r \times k}$ and $r \ll \min(d, k)$:
#
# $$h = Wx + \frac{\alpha}{r} B A x .$$
#
# $A$ starts Gaussian and $B$ at zero, so training starts from the pretrained model exactly;
# $\alpha / r$ scales the update (diffusers' example and our default set $\alpha = r$, a scale of
# 1). Each adapted $d \times k$ matrix costs $r(d + k)$ trainable numbers instead of $dk$. In Stable
# Diffusion the adapted matrices are the attention projections `to_q`, `to_k`, `to_v` and
# `to_out.0` of every transformer block: self-attention over the image and cross-attention to the
# text states, which is where a caption's words meet the picture.

# %%
def lora_matrices(unet, rank: int) -> pd.DataFrame:
    """One row per adapted projection: its shape and r (d + k), the LoRA parameters it adds."""
    rows = [(name, m.out_features, m.in_features, rank * (m.in_features + m.out_features))
            for name, m in unet.named_modules()
            if isinstance(m, torch.nn.Linear) and name.endswith(lora.TARGET_MODULES)]
    return pd.DataFrame(rows, columns=["projection", "d (out)", "k (in)", "r (d + k)"])


ours = lora_matrices(pipe.unet, rank=4)
# Stable Diffusion 1.x's UNet, built on the meta device: its shapes without its 3.4 GB of weights
SD1_UNET = dict(sample_size=64, cross_attention_dim=768, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
with torch.device("meta"):
    sd1_unet = UNet2DConditionModel(**SD1_UNET)
sd1 = lora_matrices(sd1_unet, rank=4)
counts = pd.DataFrame({
    "UNet parameters": [sum(p.numel() for p in pipe.unet.parameters()), sum(p.numel() for p in sd1_unet.parameters())],
    "adapted matrices": [len(ours), len(sd1)],
    "LoRA parameters, r = 4": [int(ours["r (d + k)"].sum()), int(sd1["r (d + k)"].sum())]},
    index=["garments-sd-base", "Stable Diffusion 1.x"])
counts["LoRA share"] = (counts["LoRA parameters, r = 4"] / counts["UNet parameters"]).map(lambda v: f"{v:.2%}")
glue("ch08_lora_params", f"{int(ours['r (d + k)'].sum()):,}", display=False)
glue("ch08_lora_params_sd1", f"{int(sd1['r (d + k)'].sum()):,}", display=False)
print(ours.head(8).to_string(index=False))
counts

# %% [markdown]
# At rank 4 our adapter trains {glue:text}`ch08_lora_params` numbers, Stable Diffusion 1.x's
# {glue:text}`ch08_lora_params_sd1` (the count diffusers' example prints), under 1 % of either UNet.
# The adapter file is that small too, which is why a LoRA can be shared and switched like a
# plug-in.
#
# ### Train, save, load, switch
#
# A short run shows the whole life cycle with the library's calls: `lora.train_lora` adds the
# adapter with peft (`unet.add_adapter`) and trains it on encoded catalog rows through the book's
# training loop; `lora.save_lora` writes diffusers' LoRA format; a fresh pipeline loads it with
# `pipe.load_lora_weights`, and `set_adapters` / `disable_lora` switch it. (Forty-eight rows and two
# epochs at a high rate, so that the adapter visibly does something within seconds; the real runs
# follow.)

# %% mystnb={"figure": {"caption": "One prompt and seed with the base model, the demonstration adapter at half weight, and at full weight.", "name": "fig-ch08-adapter-switch"}, "image": {"alt": "Three generated garments from the same prompt and noise, at adapter weights 0, 0.5 and 1."}}
demo_pipe = zoo.load("garments-sd-base", device=device)
demo_images, demo_captions = ch08_lora.catalog_split(ch08_lora.TRAIN_SEED, 48)
demo_data = lora.encode_split(demo_pipe, demo_images, demo_captions)
demo_cfg = lora.LoRAConfig(epochs=2, learning_rate=1e-3, bf16=False, save_epochs=(2,))
workdir = tempfile.TemporaryDirectory()
with torch.enable_grad():
    demo = lora.train_lora(demo_pipe, demo_data, demo_cfg, workdir=workdir.name, progress=False)
print(f"trained {demo.trainable_parameters:,} LoRA parameters for {demo.steps} steps; saved: "
      f"{sorted(p.name for p in demo.saved[2].iterdir())}")

prompt = demo_captions[0]
in_memory = generate(demo_pipe, prompt, seed=0, steps=10)
fresh = zoo.load("garments-sd-base", device=device)
base_image = generate(fresh, prompt, seed=0, steps=10)
fresh.load_lora_weights(str(demo.saved[2]), adapter_name="demo")
loaded = generate(fresh, prompt, seed=0, steps=10)
fresh.set_adapters(["demo"], adapter_weights=[0.5])
half = generate(fresh, prompt, seed=0, steps=10)
fresh.disable_lora()
disabled = generate(fresh, prompt, seed=0, steps=10)
print("loaded adapter = in-memory adapter:", bool((loaded - in_memory).abs().max() < 1e-5))
print("disabled adapter = base model:     ", bool((disabled - base_image).abs().max() < 1e-5))
print("the adapter changes the image:     ", bool((loaded - base_image).abs().mean() > 1e-2))
fig = image_grid([base_image[0], half[0], loaded[0]], ncols=3, cell=1.6,
                 titles=["base", "adapter weight 0.5", "adapter weight 1"])
plt.show()
workdir.cleanup()

# %% [markdown]
# ## 4. The sweep: rank, batch size and learning rate (the paper's Figs. 7-9)
#
# The paper started from diffusers' example (rank 4, rate 1e-4), varied one factor at a time, and
# settled on rank 4, batch size 3 and rate 5e-5. We ran its grid around that setting: ranks 2 / 4 /
# 6 / 10, batch sizes 1 / 3 / 6 and rates 1e-6 / 5e-5 / 1e-4 / 1e-3, each for 20 epochs on 850
# catalog rows with the paper's captions (`python -m fashionlab.experiments.ch08_lora runs`; the
# results are committed, so this chapter reads them). Every adapter was saved after epochs 1, 11
# and 20, loaded onto a fresh base as a user would, and graded on 500 rows it never saw: FID and
# KID between 500 generated images and the 500 real renders of the same rows, on the oracle's
# features, with 95 % bootstrap intervals. The rule was fixed before any run: **the setting with the
# lowest validation KID after epoch 20 is chosen, and its test numbers are reported.**
#
# Two notes on reading the numbers. KID is unbiased at any sample size, so it is the one we choose
# by; FID is biased upward with few samples. Both bootstrap intervals sit *above* their estimates:
# resampling with replacement duplicates images, which both metrics read as lost variety, so read
# an interval's width, not its position. And a difference between two settings means little unless
# it beats the seed-to-seed spread, measured here on the paper's setting trained twice.

# %%
PAPER_FID = {"rank": {2: 387.3, 4: 325.4, 10: 422.0}, "batch_size": {1: 542.6, 3: 425.1, 6: 461.0},
             "learning_rate": {1e-4: 391.0, 1e-6: 370.4, 1e-3: 420.8}}
"""The paper's FIDs (on 3 images) of its Figs. 7, 8 and 9."""
PAPER_BASE_FID, PAPER_BEST_BY_EPOCH = 478.6, {1: 452.5, 11: 293.9, 20: 284.6}
FINAL = ch08_lora.BASE.epochs


def setting(factor: str, value, seed: int = 0) -> str:
    return ch08_lora.run_name(replace(ch08_lora.BASE, seed=seed, **{factor: value}))


def grade(name: str, epoch: int = FINAL, split: str = "val", metric: str = "kid") -> list[float]:
    return runs[name]["grades"]["0" if name == "base" else str(epoch)][split][metric]


paper_setting = [setting("rank", 4, seed=s) for s in ch08_lora.SEEDS + ch08_lora.REPEAT_SEEDS]
seed_kids = [grade(n)[0] for n in paper_setting]
seed_spread = max(seed_kids) - min(seed_kids)
chosen, mean_kid = ch08_lora.choose(runs_file)
rows = []
for factor, values in ch08_lora.FACTORS.items():
    for value in values:
        name = setting(factor, value)
        kid = grade(name)
        rows.append({"factor": factor, "value": f"{value:g}", "paper FID (3 images)": PAPER_FID[factor].get(value, ""),
                     "val FID (500)": round(grade(name, metric="fid")[0], 1), "val KID (500) [95 % CI]": format_ci(*kid, 2),
                     "chosen": "<-" if ch08_lora.setting_of(name) == ch08_lora.setting_of(chosen) else ""})
sweep = pd.DataFrame(rows)
base_kid = grade("base")
glue("ch08_seed_spread", f"{seed_spread:.2f}", display=False)
glue("ch08_chosen", chosen.rsplit("-s", 1)[0], display=False)
print(f"base model, no LoRA: val KID {format_ci(*base_kid, 2)}, val FID {grade('base', metric='fid')[0]:.1f} "
      f"(the paper: FID {PAPER_BASE_FID})")
print(f"the paper's setting at seeds {', '.join(n[-1] for n in paper_setting)}: val KID "
      f"{', '.join(f'{k:.2f}' for k in seed_kids)} -> seed spread {seed_spread:.2f}")
print(f"chosen by the rule: {chosen}")
sweep

# %% mystnb={"figure": {"caption": "The one-factor sweep: validation KID after 20 epochs for each rank, batch size and learning rate, with the base model and a second seed of the paper's setting.", "name": "fig-ch08-sweep"}, "image": {"alt": "Three panels of KID with 95 percent error bars against rank, batch size and learning rate, a dashed line for the base model and an orange square for the second seed."}}
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
for ax, (factor, values) in zip(axes, ch08_lora.FACTORS.items()):
    kids = np.array([grade(setting(factor, v)) for v in values])
    x = np.arange(len(values))
    ax.errorbar(x, kids[:, 0], yerr=[kids[:, 0] - kids[:, 1], kids[:, 2] - kids[:, 0]], fmt="o-", capsize=3,
                label="seed 0, 95 % CI")
    k = list(values).index(getattr(ch08_lora.BASE, factor))
    ax.plot([k] * (len(seed_kids) - 1), seed_kids[1:], "s", color="tab:orange", label="paper's setting, seed 1")
    ax.axhline(base_kid[0], color="grey", ls="--", lw=1, label="base model (no LoRA)")
    ax.set_xticks(x, [f"{v:g}" for v in values])
    ax.set_xlabel(factor.replace("_", " "))
axes[0].set_ylabel("validation KID after epoch 20 (oracle features)")
axes[0].legend(fontsize=7)
fig.suptitle("One factor at a time around rank 4, batch 3, lr 5e-5 (lower is better)", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# The chosen setting is {glue:text}`ch08_chosen`; the seed spread on the paper's setting is
# {glue:text}`ch08_seed_spread` KID units, so read the smaller steps of the curves above as ties.
# The verdicts on the paper's Figs. 7-9 are computed in the claims table.
#
# ### Equal epochs or equal steps?
#
# At a fixed number of epochs, batch size 1 takes three times the optimiser steps of batch size 3
# and batch size 6 half as many, so the paper's Fig. 8 mixes two things: the noise of a small batch
# and the number of updates. The fixed-draw validation loss, recorded after every epoch of every
# run, lets us compare at equal steps as well (batch 6 after 20 epochs has taken exactly as many
# steps as batch 3 after 10).

# %% mystnb={"figure": {"caption": "The fixed-draw validation loss of each batch size, by epoch and by optimiser step.", "name": "fig-ch08-batch"}, "image": {"alt": "Two panels with one validation-loss curve per batch size: against epoch on the left, against optimiser steps on a log axis on the right."}}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
batch_rows = []
for b in ch08_lora.FACTORS["batch_size"]:
    run = runs[setting("batch_size", b)]
    per_epoch = run["steps"] // run["config"]["epochs"]
    epochs = sorted(int(e) for e in run["validation_loss"])
    loss = [run["validation_loss"][str(e)] for e in epochs]
    axes[0].plot(epochs, loss, "o-", ms=3, label=f"batch {b}")
    axes[1].plot([e * per_epoch for e in epochs], loss, "o-", ms=3, label=f"batch {b}")
    batch_rows.append({"batch size": b, "steps per epoch": per_epoch, "val loss after 20 epochs": loss[-1]})
axes[0].set_xlabel("epoch")
axes[1].set_xlabel("optimiser steps")
axes[1].set_xscale("log")
axes[0].set_ylabel("fixed-draw validation loss")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
steps_b3 = runs[setting("batch_size", 3)]["steps"]
for row in batch_rows:  # the loss at the epoch whose step count is nearest to batch 3's 20 epochs
    run = runs[setting("batch_size", row["batch size"])]
    e = min(range(1, FINAL + 1), key=lambda k: abs(k * row["steps per epoch"] - steps_b3))
    row[f"val loss near {steps_b3} steps (epoch)"] = f"{run['validation_loss'][str(e)]:.4f} ({e})"
    row["val loss after 20 epochs"] = f"{row['val loss after 20 epochs']:.4f}"
pd.DataFrame(batch_rows).set_index("batch size")

# %% [markdown]
# ### Training and validation curves (the paper's Fig. 12)
#
# The paper found its validation loss "unstable", varying greatly, and put it down to its small
# validation set. A diffusion loss is an average over random timesteps and noise, and a validation
# loss that draws them afresh at every evaluation is mostly that draw's noise. Ours uses one fixed
# draw (the same noise, timesteps and posterior samples of 100 validation rows at every epoch), so
# a change in it is the model's.

# %% mystnb={"figure": {"caption": "Training and fixed-draw validation loss curves for several ranks and learning rates (the paper's Fig. 12).", "name": "fig-ch08-curves"}, "image": {"alt": "Two panels of loss against epoch: training losses on the left, validation losses on the right, one colour per setting in both."}}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for factor, values in (("rank", ch08_lora.FACTORS["rank"]), ("learning_rate", (1e-6, 1e-4, 1e-3))):
    for v in values:
        run = runs[setting(factor, v)]
        per_epoch = run["steps"] // run["config"]["epochs"]
        windows = np.array(run["losses"])  # means over 10-step windows
        per = len(windows) // run["config"]["epochs"]
        train_epochs = windows[:per * run["config"]["epochs"]].reshape(run["config"]["epochs"], per).mean(1)
        label = f"{'rank' if factor == 'rank' else 'lr'} {v:g}"
        line, = axes[0].plot(range(1, len(train_epochs) + 1), train_epochs, "-", label=label)
        epochs = sorted(int(e) for e in run["validation_loss"])
        axes[1].plot(epochs, [run["validation_loss"][str(e)] for e in epochs], "o-", ms=3, color=line.get_color(),
                     label=label)
axes[0].set_title("training loss (epoch means)", fontsize=9)
axes[1].set_title("fixed-draw validation loss (epoch 0 = base)", fontsize=9)
for ax in axes:
    ax.set_xlabel("epoch")
axes[1].legend(fontsize=7, ncol=2)
fig.tight_layout()
plt.show()
val_curve = np.array([runs[chosen]["validation_loss"][str(e)] for e in range(FINAL + 1)])
moves = np.sign(np.diff(val_curve))
against = float((moves == -np.sign(val_curve[-1] - val_curve[0])).mean())
glue("ch08_val_against", f"{against:.0%}", display=False)
trained = [n for n in runs if n != "base"]
glue("ch08_lowest_loss_run", min(trained, key=lambda n: runs[n]["validation_loss"][str(FINAL)]), display=False)
glue("ch08_worst_kid_run", max(trained, key=lambda n: grade(n)[0]), display=False)
print(f"chosen run: validation loss {val_curve[0]:.4f} (base) -> {val_curve[-1]:.4f} after 20 epochs; "
      f"{against:.0%} of epoch-to-epoch moves go against that direction")

# %% [markdown]
# With a fixed draw, {glue:text}`ch08_val_against` of the chosen run's epoch-to-epoch moves go
# against its overall direction: the curve is smooth. The paper's instability came from re-drawing
# the noise and timesteps at every evaluation, not from the size of its validation set. A smooth
# loss is still no guide to quality: the lowest validation loss after 20 epochs belongs to
# {glue:text}`ch08_lowest_loss_run`, the worst validation KID to {glue:text}`ch08_worst_kid_run`.
#
# ## 5. Early, mid and late (the paper's Figs. 10-11)
#
# The paper shows its best model after 1, 11 and 20 epochs on its three FID test prompts, with FIDs
# it reports as 452.5, 293.9 and 284.6, and a second model after epochs 2 and 10. We ship the chosen run's
# adapters after epochs 1, 11 and 20 in the zoo (`garments-sd-lora-catalog-e1`, `-e11` and
# `garments-sd-lora-catalog`), and every run was graded at those epochs:

# %%
epoch_rows = {}
for name in runs:
    if name == "base":
        continue
    epoch_rows[name] = {f"epoch {e}": format_ci(*grade(name, e), 2) for e in (1, 11, FINAL)}
epoch_table = pd.DataFrame(epoch_rows).T.rename_axis("run (validation KID [95 % CI])")
chosen_kids = [grade(chosen, e)[0] for e in (1, 11, FINAL)]
learning = [n for n, r in runs.items() if n != "base" and 5e-5 <= r["config"]["learning_rate"] <= 1e-4]
fid_by_epoch = {e: float(np.mean([grade(n, e, metric="fid")[0] for n in learning])) for e in (1, 11, FINAL)}
for e, v in fid_by_epoch.items():
    glue(f"ch08_fid_e{e}", f"{v:.1f}", display=False)
glue("ch08_base_fid", f"{grade('base', metric='fid')[0]:.1f}", display=False)
glue("ch08_n_learning", str(len(learning)), display=False)
epoch_table

# %% [markdown]
# Averaged over the {glue:text}`ch08_n_learning` runs at rates 5e-5 and 1e-4, the validation FID
# is {glue:text}`ch08_fid_e1` / {glue:text}`ch08_fid_e11` / {glue:text}`ch08_fid_e20` after epochs
# 1 / 11 / 20, against the base model's {glue:text}`ch08_base_fid`. KID, the metric we choose by,
# moves far less than its own interval.

# %% [markdown]
# The three prompts of our Fig. 10 are the first three test rows (the paper drew three at random);
# beside each picture, the FID of those three generated images against the three real ones, as the
# paper computed it, and the 500-image KID of the same adapter:

# %% mystnb={"figure": {"caption": "The first three test rows: the real renders, then the base model and the shipped adapter's saved epochs.", "name": "fig-ch08-stages"}, "image": {"alt": "Rows of three garments: real renders at the top, then generated images for the base model and each saved epoch."}}
shown_rows = catalog.make_catalog(3, seed=ch08_lora.TEST_SEED)
fid_prompts = [catalog.caption_from_row(r) for _, r in shown_rows.iterrows()]
real3 = garments.render_batch([garments.spec_for(ch08_lora.TEST_SEED, i) for i in range(3)]).to(device)
stages = {"base": pipe}
for epoch, zoo_name in sorted(ch08_lora.SHIPPED.items()):
    card = zoo.model_card(zoo_name)
    assert card["run"] == chosen and card["epoch"] == epoch, "the zoo's adapter is not the sweep's choice"
    stages[f"epoch {epoch}"] = zoo.load(zoo_name, device=device)
stage_images, stage_rows = [], []
for stage, stage_pipe in stages.items():
    images = generate(stage_pipe, fid_prompts, seed=0)
    fid3 = frechet_distance(features(images), features(real3))
    kid = grade("base") if stage == "base" else grade(chosen, int(stage.split()[1]))
    stage_images += list(images)
    stage_rows.append({"stage": stage, "FID on these 3": round(fid3), "val KID (500) [95 % CI]": format_ci(*kid, 2)})
fig = image_grid(list(real3) + stage_images, ncols=3, cell=1.3,
                 titles=[f"test row {k}" for k in range(3)] + [""] * len(stage_images), row_labels=["real"] + list(stages))
plt.show()

# %%
for k, p in enumerate(fid_prompts):
    print(f"test row {k}: {p}")
pd.DataFrame(stage_rows).set_index("stage")

# %% [markdown]
# ## 6. FID on three images
#
# The paper computed every FID on three generated images against three real ones: "a constrained
# number of images", in its own words. With three samples in a feature space of hundreds of
# dimensions the covariance has rank two, and the number mostly reflects *which* three. The paper's
# own figures show it: the paper reports the same configuration (rank 4, lr 5e-5, batch 3) at 325.4
# (Fig. 7), 425.1 (Fig. 8) and 284.6 (Fig. 10). We drew 1000 random triplets of test rows and
# computed the 3-image FID of the base model and of the shipped adapter on each, from the 500
# images per model of the `compare` part:

# %% mystnb={"figure": {"caption": "The 3-image FID of the base model and of the adapter over 1000 random triplets of test rows.", "name": "fig-ch08-fid3"}, "image": {"alt": "Two overlapping histograms of FID values with wide spreads."}}
fid3 = {k: np.array(v) for k, v in compare["fid3"].items()}
lora_wins = float((fid3["LoRA, catalog captions"] < fid3["base, catalog captions"]).mean())
kid_base, kid_lora = (compare["models"][k]["kid"] for k in ("base, catalog captions", "LoRA, catalog captions"))
fig, ax = plt.subplots(figsize=(6, 3))
bins = np.linspace(0, np.percentile(np.concatenate(list(fid3.values())), 99), 40)
for name, values in fid3.items():
    ax.hist(values, bins=bins, alpha=0.55, label=name.split(",")[0])
ax.set_xlabel("FID on 3 images (oracle features)")
ax.set_ylabel("triplets")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
glue("ch08_fid3_lora_wins", f"{lora_wins:.0%}", display=False)
for name, values in fid3.items():
    q = np.percentile(values, [5, 50, 95])
    print(f"{name}: 3-image FID median {q[1]:.0f}, 90 % of triplets between {q[0]:.0f} and {q[2]:.0f}")
print(f"500 images: KID base {format_ci(*kid_base, 2)}, LoRA {format_ci(*kid_lora, 2)}")
print(f"the 3-image FID ranks LoRA above the base on {lora_wins:.0%} of triplets")

# %% [markdown]
# On 500 images FID puts the base at {glue:text}`ch08_fid_base_cat` and the adapter at
# {glue:text}`ch08_fid_lora` (KID's intervals overlap, section 7); on three, the adapter wins only
# {glue:text}`ch08_fid3_lora_wins` of the draws. A choice between *two LoRA settings*, whose
# differences are far smaller than the base-to-LoRA gap, cannot be made this way.
#
# ## 7. Base against LoRA on catalog captions
#
# The `compare` part generated one image per test row (500) with the base model and with the shipped
# adapter, both from the row's catalog caption, and with the base from the same row in its *own*
# caption format: the fairer baseline, since the base was never taught the catalog format. The oracle
# reads each image's category and colour and compares them with the row's; the single-garment rate
# counts images with one garment, whole, on a clean background (the paper's "out of frame" and
# "not clothing at all" are its failures).

# %%
table = {}
for name, row in compare["models"].items():
    table[name] = {"category accuracy": format_ci(*row["category_accuracy"]),
                   "colour accuracy": format_ci(*row["colour_accuracy"]),
                   "single garment": format_ci(*row["single_garment_rate"]),
                   "KID [95 % CI]": format_ci(*row["kid"], 2), "FID": round(row["fid"][0], 1)}
m = compare["models"]
glue("ch08_cat_base", f"{m['base, catalog captions']['category_accuracy'][0]:.2f}", display=False)
glue("ch08_cat_own", f"{m['base, its own captions']['category_accuracy'][0]:.2f}", display=False)
glue("ch08_cat_lora", f"{m['LoRA, catalog captions']['category_accuracy'][0]:.2f}", display=False)
for key, name in (("base_cat", "base, catalog captions"), ("own", "base, its own captions"), ("lora", "LoRA, catalog captions")):
    glue(f"ch08_fid_{key}", f"{m[name]['fid'][0]:.1f}", display=False)
pd.DataFrame(table).T.rename_axis(f"{compare['n']} test rows, {compare['eval']}")

# %% mystnb={"figure": {"caption": "Six test rows: the real render, the base model from the catalogue caption and from its own format, and the adapter from the catalogue caption.", "name": "fig-ch08-fidelity"}, "image": {"alt": "Four rows of six garments comparing the real renders with three kinds of generated images."}}
rows8 = catalog.make_catalog(6, seed=ch08_lora.TEST_SEED)
prompts8 = [catalog.caption_from_row(r) for _, r in rows8.iterrows()]
own8 = ch08_lora.own_captions(ch08_lora.TEST_SEED, 6)
adapted = stages[f"epoch {FINAL}"]
grid = (list(garments.render_batch([garments.spec_for(ch08_lora.TEST_SEED, i) for i in range(6)]))
        + list(generate(pipe, prompts8, seed=0)) + list(generate(pipe, own8, seed=0)) + list(generate(adapted, prompts8, seed=0)))
fig = image_grid(grid, ncols=6, cell=1.2, row_labels=["real", "base, catalog", "base, own format", "LoRA, catalog"])
plt.show()
for k, (a, b) in enumerate(zip(prompts8, own8)):
    print(f"{k}: {a}  |  {b}")

# %% [markdown]
# The oracle finds the named category in {glue:text}`ch08_cat_base` of the base model's images from
# catalog captions and {glue:text}`ch08_cat_lora` with the adapter, and the adapter draws one whole
# garment far more often: the paper's base-model failures, and LoRA's cure for them, reproduce.
# KID does not see the difference (its intervals overlap; the claims table says so), while FID
# falls from {glue:text}`ch08_fid_base_cat` to {glue:text}`ch08_fid_lora`. The fairer baseline
# changes the story: prompted in its own caption format, the base model reaches a category accuracy
# of {glue:text}`ch08_cat_own` and an FID of {glue:text}`ch08_fid_own`. Most of what LoRA "adds" here
# is the caption format, which a user could also fix by rewording the prompt; what it teaches is the
# catalog's vocabulary (year, usage, season), which our renders do not depict.
#
# ## 8. Our LoRA training beside diffusers' example
#
# The paper started from diffusers' `train_text_to_image_lora.py`. `ch08_lora bench` trains the same
# adapter twice on the same 300 rows from the same seed: with `lora.train_lora` (latents encoded
# once; bf16 autocast) and with that script's recipe written out plainly
# (`ch08_lora.reference_lora_training`: the VAE and text encoder run on every step, fp32). The two
# draw their noise differently, so their loss curves agree only up to sampling noise; the check is
# that every 100-step window's gap stays within three standard errors of such a difference.

# %% mystnb={"figure": {"caption": "Our LoRA trainer beside the diffusers example recipe on the same rows and seed: mean loss per window of steps.", "name": "fig-ch08-bench"}, "image": {"alt": "Two curves of the windowed mean loss against training step, one per trainer."}}
fig, ax = plt.subplots(figsize=(6, 3))
for key, label in (("ours", "lora.train_lora"), ("reference", "diffusers example recipe")):
    w = bench[key]["window_losses"]
    ax.plot([(i + 1) * bench["window"] for i in range(len(w))], w, "o-", label=f"{label} ({bench[key]['precision']})")
ax.set_xlabel("step")
ax.set_ylabel(f"mean loss over {bench['window']} steps")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
print(f"largest window gap {bench['max_window_gap']:.4f} (tolerance {bench['tolerance']:.4f}): agree = {bench['agree']}")
print(f"seconds per step: ours {bench['ours']['seconds_per_step']:.3f}, reference "
      f"{bench['reference']['seconds_per_step']:.3f} (ratio {bench['time_ratio']:.2f})")

# %% [markdown]
# ## 9. The tool
#
# The paper's product is a prompt box. Ours takes a prompt, a seed, the number of DDIM steps, the
# guidance scale and whether the adapter is on; *Generate* draws four seeds. The static book cannot
# run it, so a pre-run example follows.

# %%
# NBVAL_IGNORE_OUTPUT
from fashionlab.widgets import prompt_box, prompt_figure  # noqa: E402

prompt_box(adapted)

# %% [markdown]
# The pre-run example: the box's default prompt, adapter off and on (what *Generate* runs,
# `prompt_figure`, called directly):

# %% mystnb={"figure": {"caption": "What the prompt box draws for its default prompt with the adapter off (the base model).", "name": "fig-ch08-prompt-off"}, "image": {"alt": "Four generated garments, seeds 0 to 3, for the prompt of a 2012 casual summer blue women's dress, under a title naming the prompt."}}
example = "an image of a 2012 Casual Summer Blue Women's Dress"
_, fig = prompt_figure(adapted, example, seed=0, lora=False)
fig.suptitle(f"LoRA off: {example}", fontsize=8, y=1.08)
plt.show()

# %% mystnb={"figure": {"caption": "The same prompt and seed with the catalogue adapter on.", "name": "fig-ch08-prompt-on"}, "image": {"alt": "Four generated garments, seeds 0 to 3, for the same prompt drawn with the adapter."}}
_, fig = prompt_figure(adapted, example, seed=0, lora=True)
fig.suptitle(f"LoRA on: {example}", fontsize=8, y=1.08)
plt.show()

# %% [markdown]
# The same from the command line, offline on the CPU (`--lora` takes a zoo adapter's name or a folder
# that `save_lora` wrote; under `--profile full` it draws with Stable Diffusion 1.4):
#
# ```
# python -m fashionlab generate "an image of a 2011 Casual Fall White Men's Sweater" --lora garments-sd-lora-catalog --out sweater.png
# ```

# %% mystnb={"figure": {"caption": "The image the command line wrote for a white men's sweater with the catalogue adapter.", "name": "fig-ch08-cli"}, "image": {"alt": "A single generated garment image."}}
from fashionlab.__main__ import main  # noqa: E402
from PIL import Image  # noqa: E402

here = os.getcwd()
with tempfile.TemporaryDirectory() as tmp:
    os.chdir(tmp)
    try:
        main(["generate", "an image of a 2011 Casual Fall White Men's Sweater", "--lora", "garments-sd-lora-catalog",
              "--out", "sweater.png"])
        sweater = np.asarray(Image.open("sweater.png"))
    finally:
        os.chdir(here)
fig = image_grid([sweater], ncols=1, cell=1.6)
plt.show()

# %% [markdown]
# ## 10. Claims vs what we measured

# %%
def argmin_and_margin(factor: str) -> tuple[float, float]:
    """The value of ``factor`` with the lowest validation KID after epoch 20, and its margin to the runner-up."""
    kids = {v: grade(setting(factor, v))[0] for v in ch08_lora.FACTORS[factor]}
    order = sorted(kids, key=kids.get)
    return order[0], kids[order[1]] - kids[order[0]]


def factor_kids(factor: str) -> str:
    return " / ".join(f"{v:g}: {grade(setting(factor, v))[0]:.2f}" for v in ch08_lora.FACTORS[factor])


best = {f: argmin_and_margin(f) for f in ch08_lora.FACTORS}
lr_kid = {v: grade(setting("learning_rate", v))[0] for v in ch08_lora.FACTORS["learning_rate"]}
test_base, test_lora = grade("base", split="test"), grade(chosen, split="test")
agree_rank = 1 - lora_wins if kid_lora[0] > kid_base[0] else lora_wins
cat, single = "category_accuracy", "single_garment_rate"
base_c, lora_c = m["base, catalog captions"], m["LoRA, catalog captions"]
claims_table([
    Claim("002 §3.3, Figs. 6, 10", "LoRA fine-tuning improves on the base model (FID 478.6 -> 284.6) (read: the "
          "chosen adapter's test KID below the base's, 95 % CIs disjoint)",
          f"test KID, 500 images: base {format_ci(*test_base, 2)}, {chosen} {format_ci(*test_lora, 2)}",
          test_lora[2] < test_base[1]),
    Claim("002 Figs. 2-3, 6", "the base model draws wrong kinds of clothing and garments out of frame on catalog "
          "prompts (read: lower category accuracy and single-garment rate than the adapter, CIs disjoint)",
          f"category {base_c[cat][0]:.2f} vs {lora_c[cat][0]:.2f}; single garment {base_c[single][0]:.2f} vs "
          f"{lora_c[single][0]:.2f} (base vs LoRA)",
          [base_c[cat][2] < lora_c[cat][1], base_c[single][2] < lora_c[single][1]]),
    Claim("002 Fig. 7", "rank 4 is the best of the ranks tried (FID 2: 387.3, 4: 325.4, 10: 422.0) (read: lowest "
          "validation KID after epoch 20, by more than the seed spread)",
          f"val KID {factor_kids('rank')}; seed spread {seed_spread:.2f}",
          [best["rank"][0] == 4, best["rank"][0] == 4 and best["rank"][1] > seed_spread]),
    Claim("002 Fig. 8", "batch size 3 is the best (FID 1: 542.6, 3: 425.1, 6: 461.0) (read: as above)",
          f"val KID {factor_kids('batch_size')}; seed spread {seed_spread:.2f}",
          [best["batch_size"][0] == 3, best["batch_size"][0] == 3 and best["batch_size"][1] > seed_spread]),
    Claim("002 §3.3, Fig. 9", "learning rate 5e-5 is the best, after more epochs (read: as above)",
          f"val KID {factor_kids('learning_rate')}; seed spread {seed_spread:.2f}",
          [best["learning_rate"][0] == 5e-5, best["learning_rate"][0] == 5e-5 and best["learning_rate"][1] > seed_spread]),
    Claim("002 Fig. 9", "lower learning rates score better at 20 epochs (FID 1e-6: 370.4 < 1e-4: 391.0 < 1e-3: "
          "420.8) (read: the same order of validation KID)",
          " < ".join(f"{v:g}" for v in sorted((1e-6, 1e-4, 1e-3), key=lr_kid.get)) + " (ascending KID)",
          [lr_kid[1e-6] < lr_kid[1e-4], lr_kid[1e-4] < lr_kid[1e-3]]),
    Claim("002 Fig. 10", "quality improves with training: FID 452.5 / 293.9 / 284.6 after epochs 1 / 11 / 20 "
          "(read: validation KID falls from epoch 1 to 11 to 20)",
          f"{chosen}: val KID " + " / ".join(f"{k:.2f}" for k in chosen_kids),
          [chosen_kids[0] > chosen_kids[1], chosen_kids[1] > chosen_kids[2]]),
    Claim("002 Fig. 12", "the validation loss is unstable, varies greatly (read: more than a third of the chosen "
          "run's epoch-to-epoch moves go against its overall direction)",
          f"{against:.0%} against, with a fixed noise / timestep draw on 100 validation rows", against > 1 / 3),
    Claim("002 §3.3 (method)", "FID on 3 test images ranks models (the paper chose by it) (read: the 3-image FID "
          "orders base and LoRA as the 500-image KID does on >= 90 % of random triplets)",
          f"{agree_rank:.0%} of {len(fid3['LoRA, catalog captions'])} triplets", agree_rank >= 0.9),
    Claim("this book (goal)", "our LoRA step agrees with diffusers' example recipe and is no slower (read: every "
          "100-step window within tolerance; time ratio <= 1.0)",
          f"largest gap {bench['max_window_gap']:.4f} (tolerance {bench['tolerance']:.4f}); time ratio "
          f"{bench['time_ratio']:.2f}", [bench["agree"], bench["time_ratio"] <= 1.0], "goal"),
])

# %% [markdown]
# ## Exercises
#
# Solutions are folded; a teacher can strip every `:::{admonition}` block with the class `dropdown`.
#
# **1.** The seed spread here comes from one setting at two seeds. Run two more seeds of the chosen
# setting and of its runner-up (`run_runs(..., configs=...)`): do the intervals still separate
# them?
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# from pathlib import Path
#
# def config_of(name: str) -> lora.LoRAConfig:
#     return lora.LoRAConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in runs[name]["config"].items()})
#
#
# kids = {name: grade(name)[0] for name in runs if name != "base" and runs[name]["config"]["seed"] == 0}
# first, second = sorted(kids, key=kids.get)[:2]  # the sweep's choice and its runner-up
# configs = {ch08_lora.run_name(replace(config_of(name), seed=s)): replace(config_of(name), seed=s)
#            for name in (first, second) for s in (2, 3)}
# more = ch08_lora.run_runs(Path("08_more_seeds.json"), configs=configs)
# ```
# Each run trains 20 epochs and grades 500 images at each saved epoch (about as long as the runs of
# the sweep). With four seeds per setting, compare the *spread across seeds* with the gap between
# the two settings' means; an interval from one run's bootstrap measures only the evaluation's
# sampling noise, not the training's. If the seed spread is as large as the gap, the sweep's choice
# is not resolved at this budget -- which is what two seeds of the paper's setting already
# suggested.
# :::
#
# **2.** Train an adapter with $\alpha = 2r$ instead of $\alpha = r$ at half the learning rate. Is it
# the same run? (Write out the update of $B$ under Adam, which is invariant to a gradient's scale.)
#
# :::{admonition} Solution
# :class: dropdown
# The adapter adds $\frac{\alpha}{r} BAx$. Doubling $\alpha$ doubles the gradient reaching $B$ and $A$.
# Under SGD that would double the step, and halving the rate would undo it. Adam divides the
# first moment by the square root of the second, so a constant factor on the gradient cancels:
# the *parameter* update is the same size with either $\alpha$, and halving the rate halves it.
# The effective change of the layer's output is $\frac{\alpha}{r}$ times the change of $BA$, so the
# $\alpha = 2r$ run at half the rate moves the output exactly as fast as the $\alpha = r$ run at
# the full rate -- the same run up to Adam's $\epsilon$ and weight decay (decoupled decay acts on
# the parameters and does not rescale). Check it:
# ```python
# demo_a = lora.LoRAConfig(epochs=1, learning_rate=1e-3, bf16=False, save_epochs=(1,))
# demo_b = replace(demo_a, alpha=2 * demo_a.rank, learning_rate=5e-4)
# runs_ab = [lora.train_lora(zoo.load("garments-sd-base", device=device), demo_data, c, progress=False)
#            for c in (demo_a, demo_b)]
# print([r.losses[-1] for r in runs_ab])
# ```
# The losses agree closely but not to the bit, for the reasons above.
# :::
#
# **3.** Adapt only the cross-attention projections (`attn2`) and count the parameters. What do you
# lose on the category accuracy of section 7, and on the single-garment rate?
#
# :::{admonition} Solution
# :class: dropdown
# peft matches `target_modules` against module names, so name the cross-attention ones:
# ```python
# cross = tuple(f"attn2.{m}" for m in lora.TARGET_MODULES)
# cfg_cross = replace(ch08_lora.BASE, target_modules=cross)
# probe = zoo.load("garments-sd-base", device=device)
# print("parameters:", lora.add_lora(probe.unet, cfg_cross), "vs", demo.trainable_parameters)
# ```
# Then train it with `ch08_lora.run_runs(Path("08_attn2.json"), configs={"attn2": cfg_cross})` and
# grade the final adapter with `recipes.evaluate_text_to_image` as section 7 does. Cross-attention
# is where the caption's words enter the UNet, so it carries the new caption format; what it cannot
# change is how the image attends to itself (self-attention, `attn1`), which shapes layout. Expect
# most of the caption-following to survive and the layout-related single-garment rate to be the
# more likely loss.
# :::
#
# **4.** Prompt the adapter in the base model's caption format ("a photo of a blue dress"). Has
# fine-tuning on catalog captions cost the model its old prompts? Measure it with
# `fashionlab.zoo.recipes.evaluate_text_to_image`.
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# from fashionlab.zoo.recipes import evaluate_text_to_image
#
# before, _ = evaluate_text_to_image(pipe, n=128)
# after, _ = evaluate_text_to_image(adapted, n=128)
# pd.DataFrame({"base": before, "LoRA": after})
# ```
# `evaluate_text_to_image` prompts with the base model's own caption format (template 1), so a drop
# from base to LoRA is forgetting. LoRA's low rank and the few epochs limit how far the model can
# move, but nothing in the loss protects the old prompts; `adapted.set_adapters([...],
# adapter_weights=[0.5])` is a cheap way to trade the two formats against each other.
# :::
#
# **5.** Under the `full` profile on a GPU, train an adapter on Stable Diffusion 1.5 with the paper's
# setting and the same 850 catalog rows rendered at 512 px; compare the FID on 3 and on 500 images.
#
# :::{admonition} Solution
# :class: dropdown
# ```python
# config.use_profile("full")
# sd15 = zoo.load("garments-sd-base", hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5")  # 1.4 by default
# images, captions = ch08_lora.catalog_split(ch08_lora.TRAIN_SEED, 850, size=512)
# data = lora.encode_split(sd15, images.to(sd15.device), captions)
# run = lora.train_lora(sd15, data, ch08_lora.BASE, workdir="lora-sd15")
# ```
# Grade with Inception features (`metrics.inception_features`) on 3 and on 500 generated images
# against renders of the same rows, as section 8 does with the oracle's. The 3-image FID will swing
# with *which* three rows you draw, as our histogram showed; the 500-image KID is the number to
# compare. `python -m fashionlab.smoke --profile full --chapters 08` checks the pipeline in one step
# first. (The catalogue rows are Garments renders; the real product photos are
# `catalog.load_hub_catalog()`.)
# :::
