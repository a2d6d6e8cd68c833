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
# # Reproduction report
#
# Every chapter ends with a table of its paper's claims beside what the chapter measured, each with
# a verdict computed from the measurement. This page gathers those rows. It is generated, never typed:
# it reads the claims table each chapter's executed notebook shows
# (`fashionlab.eval.claims.reproduction_report`), so it changes when a chapter does.
#
# The verdicts: **reproduced** / **not reproduced** / **partly** for a paper's claim, **met** /
# **not met** / **partly met** for a goal this book set itself, **not tested here** where nothing in
# the book can test a claim, and **not comparable at this scale** where a chapter measured something
# the paper's number cannot be held against (a GPU timing beside a 2-core CPU one on a far smaller
# model). Only like-for-like rows count as reproduced or not. Each claim's "(read: ...)" says how
# the chapter turned the paper's words into a test; the chapters say where they deviate from the
# papers.

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
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from fashionlab.eval.claims import reproduction_report
from fashionlab.viz import glue

pd.set_option("display.max_colwidth", None)
pd.set_option("display.max_rows", None)  # every claim, not the first and last five
notebooks = Path("notebooks") if Path("notebooks").is_dir() else Path(".")
report = reproduction_report(notebooks)
counts = report.groupby(["chapter", "verdict"]).size().unstack(fill_value=0)
display(counts)
paper = report[report.verdict.isin(["reproduced", "not reproduced", "partly", "not tested here",
                                     "not comparable at this scale"])]
goals = report[report.verdict.isin(["met", "not met", "partly met"])]
glue("rep_n_claims", str(len(report)), display=False)
glue("rep_n_chapters", str(report.chapter.nunique()), display=False)
glue("rep_paper", str(len(paper)), display=False)
glue("rep_reproduced", str(int((paper.verdict == "reproduced").sum())), display=False)
glue("rep_not", str(int((paper.verdict == "not reproduced").sum())), display=False)
glue("rep_partly", str(int((paper.verdict == "partly").sum())), display=False)
glue("rep_untested", str(int(paper.verdict.isin(["not tested here", "not comparable at this scale"]).sum())),
     display=False)
glue("rep_goals", str(len(goals)), display=False)
glue("rep_met", str(int((goals.verdict == "met").sum())), display=False)

# %% [markdown]
# {glue:text}`rep_n_chapters` chapters state {glue:text}`rep_n_claims` claims. Of the
# {glue:text}`rep_paper` that are the papers', {glue:text}`rep_reproduced` are reproduced,
# {glue:text}`rep_partly` partly and {glue:text}`rep_not` not, and {glue:text}`rep_untested` are not
# tested here or not comparable at this scale; of the {glue:text}`rep_goals` goals the book set
# itself, {glue:text}`rep_met` are met.

# %% mystnb={"figure": {"caption": "The verdicts of every chapter's claims table, counted per chapter.", "name": "fig-report-verdicts"}, "image": {"alt": "Stacked horizontal bars, one per chapter, split by verdict from reproduced to not tested here."}}
order = ["reproduced", "partly", "not reproduced", "met", "partly met", "not met", "not tested here",
         "not comparable at this scale"]
colours = ["#2a9d8f", "#e9c46a", "#e76f51", "#8ab17d", "#f4a261", "#c1121f", "#adb5bd", "#6c757d"]
present = [v for v in order if v in counts.columns]
ax = counts[present].plot.barh(stacked=True, figsize=(7, 3.6), color=[colours[order.index(v)] for v in present])
ax.invert_yaxis(), ax.set_xlabel("claims"), ax.legend(fontsize=7, loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Every claim

# %%
report
