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


def test_plot_paired_differences_marks_mean_and_interval():
    import pandas as pd
    from scipy import stats

    vals = [0.01, 0.03, -0.01, 0.02]
    diffs = pd.DataFrame({"comparison": ["a − c"] * 4 + ["b − c"] * 2, "init": ["random", "dino"] * 3,
                          "difference": vals + [0.05, 0.05]})
    fig = plot_paired_differences(diffs)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a − c", "b − c"]
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {"random", "dino"}
    # the interval bar of the first row: mean ± t(0.975, 3)·sd/√4, in points
    bars = [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
    (x0, _), (x1, _) = bars[0].get_segments()[0]
    m, sd = 100 * sum(vals) / 4, 100 * pd.Series(vals).std()
    half = stats.t.ppf(0.975, 3) * sd / 2
    assert abs(min(x0, x1) - (m - half)) < 1e-6 and abs(max(x0, x1) - (m + half)) < 1e-6
    with pytest.raises(ValueError, match="no pairs"):
        plot_paired_differences(diffs.iloc[:0])
