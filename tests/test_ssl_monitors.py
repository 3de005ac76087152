"""Monitors, plots and the command line of the pretraining run."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from fakes import FakeBackbone  # noqa: E402

from rtsseg.ssl.augment import BarlowTwinsAugment  # noqa: E402
from rtsseg.ssl.monitors import KNNMonitor, embedding_std, save_ccmatrix  # noqa: E402
from rtsseg.ssl.plot import plot_augmented_pairs, plot_ccmatrix, plot_history  # noqa: E402
from rtsseg.sampling import batch_indices, epoch_permutation  # noqa: E402
from rtsseg.configargs import config_from_args  # noqa: E402
from rtsseg.ssl.train import PretrainConfig, synthetic_dataset  # noqa: E402


def test_embedding_std_detects_collapse():
    assert embedding_std(torch.ones(32, 8) * 5) == pytest.approx(0.0, abs=1e-7)
    spread = embedding_std(torch.randn(4096, 64, generator=torch.Generator().manual_seed(0)))
    assert spread == pytest.approx(64**-0.5, rel=0.05)


def test_knn_monitor_on_separable_data():
    xt, yt = synthetic_dataset(40, 4, 16, seed=1)
    xv, yv = synthetic_dataset(20, 4, 16, seed=2)
    out = KNNMonitor(xt, yt, xv, yv, image_size=16, num_classes=4, k=5)(FakeBackbone(mean_colour=True))
    assert out["knn_acc"] > 0.9 and out["emb_std"] > 0
    with pytest.raises(ValueError):
        KNNMonitor(xt, yt[:3], xv, yv, 16)


def test_data_order_is_a_function_of_seed_and_epoch_and_shards_like_distributed_sampler():
    p0, p1 = epoch_permutation(20, 0, 0), epoch_permutation(20, 0, 1)
    assert torch.equal(p0, epoch_permutation(20, 0, 0)) and not torch.equal(p0, p1)
    global_batch = batch_indices(p0, 1, 8, 0, 1)
    shards = [batch_indices(p0, 1, 8, r, 2) for r in range(2)]
    assert sorted(torch.cat(shards).tolist()) == sorted(global_batch.tolist())
    assert torch.equal(shards[1], p0[1::2][4:8])  # DistributedSampler: rank r takes perm[r::W], then batches


def test_ccmatrix_snapshot(tmp_path):
    path = save_ccmatrix(torch.randn(100, 100), tmp_path / "c.pt", size=64)
    assert torch.load(path, weights_only=True).shape == (64, 64)


def test_plots_return_figures():
    df = pd.DataFrame({"epoch": [0, 1], "loss": [900.0, 500.0], "on_diag": [800.0, 400.0], "off_diag": [3e4, 2e4],
                       "emb_std": [0.02, 0.03], "knn_acc": [0.01, 0.05]})
    assert sum(ax.axison for ax in plot_history(df).axes) == 5  # five panels (the sixth slot holds the legend)
    fig = plot_history({0: df, 1: df}, title="x")
    assert sum(ax.axison for ax in fig.axes) == 5 and fig.get_figwidth() <= 8.0
    ax = plot_ccmatrix(torch.eye(8))
    assert ax.get_images()[0].get_array().shape == (8, 8)
    with pytest.raises(ValueError):
        plot_ccmatrix(torch.ones(2, 3))
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    fig = plot_augmented_pairs(images, BarlowTwinsAugment(32), seed=0)
    assert len(fig.axes) == 9


def test_cli_maps_every_config_field():
    cfg = config_from_args(
        PretrainConfig,
        ["--projector-dims", "64", "32", "--max-images-per-class", "none", "--no-progress", "--epochs", "3",
         "--blur-sigma", "0.1", "1.0", "--num-threads", "1", "--optimizer", "adamw", "--restart"],
        "test",
    )
    assert cfg.optimizer == "adamw" and cfg.restart is True
    assert cfg.projector_dims == (64, 32) and cfg.max_images_per_class is None and cfg.progress is False
    assert cfg.epochs == 3 and cfg.blur_sigma == (0.1, 1.0) and cfg.num_threads == 1 and cfg.lambd == 0.0051


def test_log_axis_only_where_the_values_span_a_decade():
    """A log axis over less than a decade holds no major tick and renders without tick labels (issue 24)."""
    import matplotlib.pyplot as plt

    from rtsseg.ssl.plot import log_axis_if_wide

    fig, (a, b) = plt.subplots(1, 2)
    assert not log_axis_if_wide(a, [[146.0, 140.0, 132.7]]) and a.get_yscale() == "linear"
    assert log_axis_if_wide(b, [[2609.0, 900.0], [120.0]]) and b.get_yscale() == "log"
    plt.close(fig)


def test_other_backbones_figure_has_whole_epoch_ticks_and_readable_loss_axis():
    import pandas as pd

    from rtsseg.ssl.chapter import plot_other_backbones

    h = pd.DataFrame({"epoch": [0, 1], "loss": [146.0, 132.0], "knn_acc": [0.01, 0.02]})
    fig = plot_other_backbones({("vit_small64", 0): h, ("swin_small64", 0): h}, "vit_small64",
                                 {"swin_small64": "adamw"})
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
