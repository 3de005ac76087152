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
# # 7. Summary and compute budget
#
# The compute each step of this profile took, read from the executed notebooks themselves (papermill records
# each cell's duration), and the headline tables that the steps wrote under `runs/<profile>/results/`.

# %% tags=["parameters"]
profile = "cpu"

# %%
import pandas as pd

from rtsseg.profiles import STEPS
from rtsseg.report import RunRecord, compute_budget, notebook_params, read_results

params = notebook_params(globals(), "08_findings")
record = RunRecord("08_findings", params)

# %% [markdown]
# ## Compute budget

# %%
budget = compute_budget(profile, [s.name for s in STEPS if s.name != "08_findings"])
budget

# %% [markdown]
# ## Headline results
#
# Each table below is the one its chapter computed (mean ± standard deviation over seeds where several ran).

# %%
for name, table in read_results(profile).items():
    print(f"\n== {name} ==")
    display(table)

# %%
record.finish()
