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
# # 3. DINO pretraining
#
# Placeholder while the DINO trainer (issue 13) is built: this step trains nothing yet.

# %% tags=["parameters"]
profile = "cpu"

# %%
from rtsseg.report import RunRecord, notebook_params

params = notebook_params(globals(), "03_pretrain_dino")
record = RunRecord("03_pretrain_dino", params)

# %%
record.finish()
