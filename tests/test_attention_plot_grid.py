"""The comparison grid: one shared colour scale with a colour bar, rows = initialisations, readable fonts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from rtsseg.attention.plot import plot_attention_grid  # noqa: E402


def test_grid_shares_one_colour_scale():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    maps = {name: torch.rand(8, 4, 4) for name in ["random", "supervised", "barlow twins"]}
    gts = torch.zeros(8, 16, 16, dtype=torch.bool)
    gts[:, 4:12, 4:12] = True
    fig = plot_attention_grid(images, maps, gts, title="t")
    shown = [im for ax in fig.axes for im in ax.get_images()][8:]  # after the image row
    assert len(shown) == 24
    assert len({im.get_clim() for im in shown}) == 1  # one colour scale
    assert len(fig.axes) == 4 * 8 + 1  # + the colour bar
    labels = [fig.axes[r * 8].get_ylabel() for r in range(4)]
    assert labels == ["image", "random", "supervised", "barlow twins"]
    assert min(t.get_fontsize() for t in [fig.axes[8].yaxis.label, fig.axes[-1].yaxis.label]) >= 10
    with pytest.raises(ValueError, match="10 pt"):
        plot_attention_grid(images, maps, fontsize=8)
    with pytest.raises(ValueError, match="must be"):
        plot_attention_grid(images, {"x": torch.rand(7, 4, 4)})


def test_head_masks_and_head_excess_figures_draw_something():
    import numpy as np

    from rtsseg.attention.plot import plot_head_excess, plot_head_masks
    from rtsseg.glue import drawn_artists

    img = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
    maps = {"random": torch.rand(3, 8, 8).softmax(-1), "dino": torch.rand(2, 8, 8).softmax(-1)}
    fig = plot_head_masks(img, maps, gt=torch.zeros(64, 64, dtype=torch.bool).index_fill_(0, torch.arange(10, 30), True))
    assert len(fig.axes) == 2 * 4 and drawn_artists(fig) > 0
    fig2 = plot_head_excess({"random": np.zeros((2, 3)), "dino": np.ones((1, 3)) * 0.1}, reference=0.3)
    assert drawn_artists(fig2) >= 2
    with pytest.raises(ValueError, match="no maps"):
        plot_head_masks(img, {})
