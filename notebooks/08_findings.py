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
# The headline answers of chapters 2–7 in one table, in chapter order: each value with its 95 % interval (the
# method and the number of units it resamples beside it), the null it is tested against, the verdict that
# follows from the interval ("above" / "below" the null when the whole interval lies on that side, "no
# measurable difference" when it contains it) and the smallest effect the design could have detected. Every
# saved result of every chapter can be downloaded below. Then what this run cost ({numref}`tbl-budget`) and
# what its results cannot say.

# %% tags=["parameters"]
profile = "cpu"

# %%
from IPython.display import Markdown, display

from rtsseg.book import anchor_notes, budget_table
from rtsseg.findings import export_results, findings_markdown, read_findings
from rtsseg.glue import glue_result, glue_table
from rtsseg.profiles import executed_notebook
from rtsseg.report import RunRecord, notebook_params, read_results

params = notebook_params(globals(), "08_findings")
record = RunRecord("08_findings", params)

# %%
display(Markdown(findings_markdown(read_findings(profile))))
downloads = export_results(profile, executed_notebook(profile, "08_findings").parent / "results")

# %% [markdown]
# **Download every result**: {download}`all saved results (JSON) <results/results.json>` and
# {download}`the findings above (CSV) <results/findings.csv>`, numbers only (mean, interval bounds, n, method).
# The published anchors below are measured at full scale (ImageNet, 224 px, hundreds of GPU-epochs): they show
# the gap, they are not comparable numbers.
#
# Published anchors:

# %%
display(Markdown(anchor_notes(read_results(profile))))

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
# Compute budget of this edition: one row per executed chapter (wall time of the whole notebook; for a training
# chapter the time its runs took to train, which its wall time does not hold when it loaded runs finished under
# the same identity; the seeds it ran, the commit it ran from, the machine and torch version).
# ```
#
# ## Limitations
#
# - **Scale.** The `smoke` and `cpu` profiles train backbones of a few million parameters at 64 px on
#   Tiny-ImageNet for minutes; the published methods train for hundreds of GPU-epochs at 224 px on ImageNet.
#   A null result here says the effect is not visible at this scale, not that it does not exist.
# - **Seeds.** Intervals come from the few seeds each chapter ran (the run records name them); with few seeds
#   a 95 % interval is wide, and a backbone run with a single seed has an interval over images only.
# - **Ground truth.** Attention is scored against Tiny-ImageNet *boxes* and CamVid *thing* masks, coarser than
#   the VOC12 object masks of DINO's Jaccard, so only the ordering of initialisations compares with the paper.
# - **Segmentation data.** CamVid (a few hundred road scenes) stands in for COCO-Stuff, the proposal's target,
#   which the `gpu` profile runs.
#
# ## Run record

# %%
record.finish()
