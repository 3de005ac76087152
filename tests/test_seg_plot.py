"""Prediction figures: palette colouring and the image | label | prediction grid."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rtsseg.seg.plot import CAMVID_PALETTE, colorize, plot_paired_differences, plot_predictions  # noqa: E402


def test_colorize_maps_ids_and_void():
    mask = torch.tensor([[0, 3], [10, 255]])
    rgb = colorize(mask, CAMVID_PALETTE)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [128, 128, 128]  # Sky
    assert rgb[0, 1].tolist() == [128, 64, 128]  # Road
    assert rgb[1, 0].tolist() == [0, 128, 192]  # Bicyclist
    assert rgb[1, 1].tolist() == [0, 0, 0]  # void


def test_plot_predictions_grid(tmp_path):
    names = [f"c{i}" for i in range(11)]
    images = torch.randint(0, 256, (2, 3, 12, 16), dtype=torch.uint8)  # network resolution
    masks = torch.randint(0, 11, (2, 24, 32))  # label resolution
    masks[0, :2] = 255
    preds = torch.randint(0, 11, (2, 24, 32))
    fig = plot_predictions(images, masks, preds, names, CAMVID_PALETTE)
    assert len(fig.axes) == 6
    assert len(fig.legends[0].get_texts()) == 12  # 11 classes + void
    fig.savefig(tmp_path / "pred.png")
    assert (tmp_path / "pred.png").stat().st_size > 0
    with pytest.raises(ValueError):
        plot_predictions(images, masks[:1], preds, names, CAMVID_PALETTE)
    with pytest.raises(ValueError, match="palette"):
        plot_predictions(images, masks, preds, names + ["extra"], CAMVID_PALETTE)


def test_plot_paired_differences_draws_each_cell_with_its_own_interval():
    import pandas as pd
    from scipy import stats

    vals = [0.01, 0.03, -0.01]  # cell vit / random
    other = [0.05, 0.02, 0.04]  # cell vit / dino
    diffs = pd.DataFrame({"comparison": ["a − c"] * 6 + ["b − c"], "backbone": ["vit"] * 6 + ["botnet"],
                          "init": ["random"] * 3 + ["dino"] * 3 + ["dino"], "difference": vals + other + [0.05]})
    fig = plot_paired_differences(diffs)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["vit / random", "vit / dino", "botnet / dino"]
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {"random", "dino"}
    assert {t.get_text().strip() for t in ax.texts} == {"a − c", "b − c"}
    # one interval bar per cell with >= 2 seeds (none for the single-seed cell): mean ± t(0.975, 2)·sd/√3, points
    bars = [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
    assert len(bars) == 2
    for bar, v in zip(bars, (vals, other)):
        (x0, _), (x1, _) = bar.get_segments()[0]
        m, sd = 100 * sum(v) / 3, 100 * pd.Series(v).std()
        half = stats.t.ppf(0.975, 2) * sd / 3 ** 0.5
        assert abs(min(x0, x1) - (m - half)) < 1e-6 and abs(max(x0, x1) - (m + half)) < 1e-6
    # no mean over all pairs of a row: the black marks sit at the cell means only
    marks = sorted(round(float(line.get_xdata()[0]), 6) for line in ax.lines
                   if line.get_marker() == "|" and line.get_color() == "black")
    assert marks == sorted(round(100 * sum(v) / len(v), 6) for v in (vals, other, [0.05]))
    with pytest.raises(ValueError, match="no pairs"):
        plot_paired_differences(diffs.iloc[:0])
