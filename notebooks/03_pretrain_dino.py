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
# DINO {cite}`caron2021dino` trains a student network to predict the output of a teacher network on other
# crops of the same image. The teacher is not trained: its weights are an exponential moving average of the
# student's (momentum 0.996 rising to 1 on a cosine). Both end in a head (3-layer MLP, bottleneck, L2
# normalisation, weight-normalised last layer of K prototypes); the teacher's output is *centred* (a running
# mean of its outputs is subtracted, momentum 0.9) and *sharpened* (temperature 0.04 vs 0.1 for the student),
# the two forces that keep it from collapsing to a uniform or a one-hot distribution. The teacher sees the 2
# global crops, the student those and N small local crops ("multi-crop"); the loss is the cross-entropy
# between teacher and student distributions over every pair of *different* crops.
#
# Our implementation (`rtsseg.ssl.dino`, the method `rtsseg.ssl.dino_train` of the one training engine
# `rtsseg.ssl.engine`) follows the official code (AdamW with lr and
# weight-decay schedules, per-parameter gradient clipping, last layer frozen at the start), on the same images,
# backbone and resolution as Barlow Twins (chapter 2), with two scalings for 64 px images and a 2.7 M-parameter
# backbone: K = 4096 prototypes instead of 65,536, local crops of 32 px instead of 96.
#
# **Budget.** A DINO step costs more than a Barlow Twins step (teacher forward, local crops). We compare the
# two methods at **equal training FLOPs** (counted with `torch.utils.flop_counter`, not timed): `epochs = None`
# below picks the number of DINO epochs whose FLOPs match Barlow Twins' `bt_epochs` on the same images.
#
# **At that budget.** DINO's recipe is made for 100+ ImageNet epochs. Two of its knobs are set from the run it
# gets here instead: the learning-rate and teacher-temperature warm-ups take the same *share* of the run as Barlow
# Twins' warm-up takes of its run (`warmup_epochs` and `warmup_teacher_temp_epochs` are given in Barlow Twins'
# `bt_epochs`, as chapter 2 sets them), and the teacher's momentum base is the largest (at most DINO's 0.996)
# whose cosine schedule leaves the EMA teacher at most 5 % of its random initial weights, $\prod_t m_t \le 0.05$
# (`rtsseg.ssl.dino_schedule`); with 0.996 a run of a few hundred steps would keep about half of its random init.

# %% tags=["parameters"]
profile = "cpu"
data_root = None  # None: $RTSSEG_DATA, else ../shared/data
data = "tinyimagenet"  # "synthetic": class-coloured noise (tests)
backbones = ["vit_small64"]
seeds = [0, 1, 2]
image_size = 64
epochs = None  # None: equal FLOPs with Barlow Twins' bt_epochs (rounded, at least 1)
bt_epochs = 2  # the Barlow Twins budget of chapter 2 for this backbone (same profile: its epochs of vit_small64)
bt_projector_dims = [1024, 1024, 1024]
batch_size = 64
max_images_per_class = None  # None: all train images of the subset, as in chapter 2
n_local_crops = 4
out_dim = None  # None: 16 x next power of two of the backbone width (4096 for vit_small64)
lr = 5e-4  # at batch 256, scaled linearly
min_lr = 1e-6
warmup_epochs = 0.5  # lr warm-up in Barlow Twins epochs (chapter 2's warmup_epochs of bt_epochs): the same share here
weight_decay = 0.04
weight_decay_end = 0.4
momentum_teacher = None  # None: from the run length (the teacher keeps at most 5 % of its init); a number fixes it
clip_grad = 3.0
freeze_last_layer = 0.1  # epochs
warmup_teacher_temp = 0.04
teacher_temp = 0.04
warmup_teacher_temp_epochs = 0  # in Barlow Twins epochs too: the same share of DINO's run
knn_train_per_class = 20
knn_val_per_class = 10
synthetic_images = 256
num_threads = 0  # 0: torch's default

# %%
import matplotlib.pyplot as plt
import torch

from rtsseg.config import data_root as resolve_data_root
from rtsseg.experiments import cache_dir, dino_dir
from rtsseg.findings import save_findings
from rtsseg.glue import figure_style, glue_figure, glue_result, glue_table
from rtsseg.report import RunRecord, notebook_params, read_results, save_results
from rtsseg.ssl import chapter as C
from rtsseg.ssl.dino_schedule import same_share
from rtsseg.ssl.dino_train import config_from_params, pretrain_dino

params = notebook_params(globals(), "03_pretrain_dino")
record = RunRecord("03_pretrain_dino", params)
figure_style()
root = resolve_data_root(data_root)
if num_threads:
    torch.set_num_threads(num_threads)

# %% [markdown]
# ## Cost of a training step: DINO vs Barlow Twins
#
# FLOPs per image of one training step (forward and backward; DINO adds the teacher's forward on the global
# crops), counted on the CPU in fp32. Matrix products and convolutions are counted; elementwise work (EMA,
# optimiser, augmentation) is not, for either method.

# %%
flops = C.dino_flops(backbones, image_size, bt_projector_dims, n_local_crops, out_dim, epochs, bt_epochs)
flops_table = C.flops_table(flops, bt_epochs)
save_results(profile, "dino_flops", flops_table)
glue_table("tbl_dino_flops", flops_table)

# %% [markdown]
# ```{glue:figure} tbl_dino_flops
# :name: tbl-dino-flops
#
# FLOPs per image of one training step of each method, and the DINO epochs whose total FLOPs match Barlow
# Twins' epochs of chapter 2.
# ```

# %% [markdown]
# ## Training runs
#
# One run per backbone and seed; a run resumes from its last checkpoint if interrupted and is not repeated
# when complete (its folder is named by its configuration and code). The k-NN monitor (k = 20, T = 0.07)
# scores the *teacher's* backbone, the network DINO evaluates and the one handed to the next chapters.

# %%
runs, teachers = {}, {}
for backbone in backbones:
    n_epochs = flops[backbone]["epochs"]
    for seed in seeds:
        cfg = config_from_params(
            params, backbone=backbone, seed=seed, epochs=n_epochs, data_root=str(root),
            cache_dir=str(cache_dir()), run_parent=str(dino_dir(profile, backbone, seed)),
            num_threads=num_threads or None,
            # the warm-ups at Barlow Twins' share of the run (given in bt_epochs)
            warmup_epochs=same_share(warmup_epochs, bt_epochs, n_epochs),
            warmup_teacher_temp_epochs=same_share(warmup_teacher_temp_epochs, bt_epochs, n_epochs),
        )
        runs[backbone, seed] = pretrain_dino(cfg)
        # what the run did: its steps, teacher momentum base, warm-up shares
        teachers[backbone, seed] = C.teacher_schedule(runs[backbone, seed], cfg.warmup_epochs,
                                                      cfg.warmup_teacher_temp_epochs, momentum_teacher)
        record.trained("dino", backbone, seed, runs[backbone, seed])  # chapters 5-7 analyse exactly this run
histories = C.read_histories(runs)
save_results(profile, "dino_history", C.history_table(histories))  # k-NN etc. per epoch, per run
C.show_run_folders(runs)  # whole folder names: chapters 5-7 load exactly these runs

# %% [markdown]
# ## k-NN accuracy, loss and collapse monitors per epoch
#
# Teacher entropy near log K with KL near 0 would be the uniform collapse (centering winning over
# sharpening), entropy near 0 with KL near 0 the one-hot collapse; a healthy run keeps the entropy between
# the two and a positive KL.

# %%
first, *further = C.dino_history_figures(histories, flops)
glue_figure("fig_dino_history", first)
plt.show()  # the further backbones' figures, if any

# %% [markdown]
# ```{glue:figure} fig_dino_history
# :name: fig-dino-history
#
# DINO training of the first backbone, per epoch and seed: the teacher backbone's k-NN top-1 on val (epoch 0:
# random init), the loss on fixed monitor crops, the teacher entropy (dashed: log K, the uniform collapse) and
# the KL between teacher and student. Further backbones, if any, follow below.
# ```
#
# ## Results

# %%
results, summaries = C.dino_table(histories, flops)
save_results(profile, "dino_knn", results)
glue_table("tbl_dino_knn", results)

# %% [markdown]
# ```{glue:figure} tbl_dino_knn
# :name: tbl-dino-knn
#
# DINO after the last epoch: the teacher backbone's k-NN top-1 on val before (random init) and after training,
# mean ± standard deviation over seeds, and the collapse monitors (teacher entropy against log K, KL
# teacher–student).
# ```

# %%
backbone = backbones[0]
finding = C.knn_gain_finding([histories[k] for k in C.keys_of(histories, backbone)], "pretrain.dino_knn_minus_random",
                             "03_pretrain_dino", f"DINO − random init ({backbone}), teacher k-NN top-1 on val")
save_findings(profile, "03_pretrain_dino", [finding])
for name, text in C.dino_result_texts(
        histories, backbone, flops[backbone], summaries[backbone], teachers[backbone, seeds[0]], bt_epochs,
        n_local_crops, warmup_epochs, read_results(profile).get("pretrain_knn"), finding).items():
    glue_result(name, text)

# %% [markdown]
# ## Result
#
# On {glue:text}`dino_backbone`, {glue:text}`dino_epochs` DINO epochs with {glue:text}`dino_n_local` local crops
# cost {glue:text}`dino_flops_ratio` × the FLOPs of {glue:text}`dino_bt_epochs` Barlow Twins epochs (a DINO step
# is {glue:text}`dino_step_ratio` × a Barlow Twins step). They move the teacher's k-NN top-1 on val from
# {glue:text}`dino_knn_before` % at random init to {glue:text}`dino_knn_after` % (mean ± standard deviation over
# {glue:text}`dino_n_seeds` seeds), {glue:text}`dino_knn_ratio` × the random init; paired by seed (a 95 % t
# interval over seeds): {glue:text}`dino_knn_minus_random`. Barlow Twins reached
# {glue:text}`dino_bt_knn_after` % on the same images and budget (chapter 2). The teacher entropy ended at
# {glue:text}`dino_entropy` nats of log K = {glue:text}`dino_log_k` ({glue:text}`dino_collapse`).
#
# The run had {glue:text}`dino_steps` steps: the teacher's momentum base {glue:text}`dino_momentum_base` left it
# $\prod_t m_t$ = {glue:text}`dino_teacher_retention` % of its random initial weights. The learning rate warmed up
# over {glue:text}`dino_warmup_share` % of the run (Barlow Twins: {glue:text}`dino_bt_warmup_share` % of its run),
# the teacher temperature over {glue:text}`dino_temp_warmup_share` %.
#
# {glue:text}`dino_budget_verdict`

# %%
record.finish()
