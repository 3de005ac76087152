# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8. Findings and limitations
#
# Every headline result of chapters 2–7 in one table, in chapter order ({numref}`tbl-findings`): the mean over
# seeds with its 95 % confidence interval (Student t over the seeds that ran; a single seed has no interval),
# beside the published figure that sets the scale where one exists. Then what this run cost
# ({numref}`tbl-budget`) and what its results cannot say.

# %% tags=["parameters"]
profile = "cpu"

# %%
from IPython.display import Markdown, display

from rtsseg.book import anchor_notes, budget_table, findings_table, glue_result, glue_table
from rtsseg.report import RunRecord, notebook_params, read_results

params = notebook_params(globals(), "08_findings")
record = RunRecord("08_findings", params)

# %%
results = read_results(profile)
findings = findings_table(results)
glue_table("tbl_findings", findings)
glue_result("n_results", len(results), "d")

# %% [markdown]
# ## Results
#
# ```{glue:figure} tbl_findings
# :name: tbl-findings
#
# The {glue:text}`n_results` result tables the chapters saved, in chapter order. Values in % or points as each
# chapter reports them; "mean [low, high]" is the 95 % interval over seeds, "(n=1)" a single seed.
# The published anchors are measured at full scale (ImageNet, 224 px, hundreds of GPU-epochs):
# they show the gap, they are not comparable numbers.
# ```
#
# Published anchors:

# %%
display(Markdown(anchor_notes(results)))

# %% [markdown]
# ## Compute budget
#
# Each chapter's own run record, read from its executed notebook: wall time, seeds, commit, machine and torch
# version. The total is their sum: {glue:text}`budget_total_min` minutes for the {glue:text}`budget_profile`
# profile.

# %%
budget = budget_table(profile)
glue_table("tbl_budget", budget)
glue_result("budget_total_min", budget.loc["total", "wall time (min)"], ".0f")
glue_result("budget_profile", profile)

# %% [markdown]
# ```{glue:figure} tbl_budget
# :name: tbl-budget
#
# Compute budget of this edition: one row per executed chapter (wall time of the whole notebook, the seeds it
# ran, the commit it ran from, the machine and torch version).
# ```
#
# ## Limitations
#
# - **Scale.** The `smoke` and `cpu` profiles train backbones of a few million parameters at 64 px on
#   Tiny-ImageNet for minutes; the published methods train for hundreds of GPU-epochs at 224 px on ImageNet.
#   A null result here says the effect is not visible at this scale, not that it does not exist.
# - **Seeds.** Intervals come from the few seeds each chapter ran; with two seeds a 95 % interval is wide,
#   and a single seed has none.
# - **Ground truth.** Attention is scored against Tiny-ImageNet *boxes* and CamVid *thing* masks, coarser than
#   the VOC12 object masks of DINO's Jaccard, so only the ordering of initialisations compares with the paper.
# - **Segmentation data.** CamVid (a few hundred road scenes) stands in for COCO-Stuff, the proposal's target,
#   which the `gpu` profile runs.
#
# ## Run record

# %%
record.finish()
