"""Embeddings, linear probe on frozen features, and t-SNE."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from fakes import FakeBackbone  # noqa: E402

from rtsseg.analysis.embeddings import extract_embeddings, linear_probe_accuracy, plot_tsne, tsne_2d  # noqa: E402


def test_extract_embeddings_matches_manual_and_uses_eval_mode():
    torch.manual_seed(0)
    bb = FakeBackbone(embed_dim=6, stride=4, dropout=0.5).train()
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    emb = extract_embeddings(bb, images, batch_size=4, progress=False)
    assert emb.shape == (10, 6) and emb.dtype == torch.float32
    bb.eval()
    with torch.no_grad():
        expected = bb(bb.normalize(images))
    assert torch.allclose(emb, expected, atol=1e-5)
    bb.train()
    extract_embeddings(bb, images, progress=False)
    assert bb.training  # mode restored


def test_extract_embeddings_resizes():
    bb = FakeBackbone(embed_dim=6, stride=4)
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    seen = []
    bb.proj.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    extract_embeddings(bb, images, progress=False, input_size=32)
    assert seen == [(32, 32)]
    with pytest.raises(ValueError):
        extract_embeddings(bb, torch.zeros(3, 16, 16, dtype=torch.uint8), progress=False)


def gaussian_classes(n: int, num_classes: int, dim: int, seed: int, sep: float):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(99)) * sep
    y = torch.randint(0, num_classes, (n,), generator=g)
    return means[y] + torch.randn(n, dim, generator=g), y


def test_linear_probe_on_separable_data():
    tx, ty = gaussian_classes(300, 4, 10, seed=0, sep=3.0)
    vx, vy = gaussian_classes(200, 4, 10, seed=1, sep=3.0)
    acc = linear_probe_accuracy(tx, ty, vx, vy, num_classes=4, epochs=50)
    assert acc > 0.95
    assert acc == linear_probe_accuracy(tx, ty, vx, vy, num_classes=4, epochs=50)  # deterministic
    # labels unrelated to the features: chance level
    shuffled = vy[torch.randperm(len(vy), generator=torch.Generator().manual_seed(0))]
    assert linear_probe_accuracy(tx, ty, vx, shuffled, num_classes=4, epochs=50) < 0.5


def test_linear_probe_is_scale_invariant():
    tx, ty = gaussian_classes(200, 3, 8, seed=0, sep=1.0)
    vx, vy = gaussian_classes(200, 3, 8, seed=1, sep=1.0)
    a = linear_probe_accuracy(tx, ty, vx, vy, 3, epochs=30)
    b = linear_probe_accuracy(1000 * tx + 5, ty, 1000 * vx + 5, vy, 3, epochs=30)  # standardised away
    assert a == pytest.approx(b, abs=0.02)


def test_linear_probe_rejects_bad_labels():
    with pytest.raises(ValueError):
        linear_probe_accuracy(torch.randn(5, 2), torch.tensor([0, 1, 2, 3, 4]), torch.randn(2, 2),
                              torch.tensor([0, 1]), num_classes=3)


def test_tsne_shape_determinism_and_plot(tmp_path):
    x, y = gaussian_classes(50, 3, 12, seed=0, sep=4.0)
    a, b = tsne_2d(x, seed=0, perplexity=10), tsne_2d(x, seed=0, perplexity=10)
    assert a.shape == (50, 2) and np.isfinite(a).all()
    assert np.allclose(a, b)
    with pytest.raises(ValueError, match="perplexity"):
        tsne_2d(x[:20], perplexity=30)
    fig = plot_tsne(a, y, ["a", "b", "c"], title="t-SNE")
    fig.savefig(tmp_path / "tsne.png")
    assert len(fig.axes[0].collections) == 3
