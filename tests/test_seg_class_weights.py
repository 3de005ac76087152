"""Median frequency balancing of the decoders' cross-entropy, against the formula computed independently."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rtsseg.seg.metrics import median_frequency_weights


def _reference(masks, num_classes, void=255):
    """Eigen & Fergus (2015), SegNet's CamVid loss: freq(c) = pixels of c / pixels of the images holding c;
    w_c = median(freq) / freq(c) over the classes present (numpy's median: the mean of the middle two)."""
    pixels, image_pixels = np.zeros(num_classes), np.zeros(num_classes)
    for m in masks:
        m = np.asarray(m).ravel()
        m = m[m != void]
        for c in range(num_classes):
            n = (m == c).sum()
            pixels[c] += n
            image_pixels[c] += m.size if n else 0
    present = pixels > 0
    freq = pixels[present] / image_pixels[present]
    w = np.ones(num_classes)
    w[present] = np.median(freq) / freq
    return w


def test_weights_match_the_formula_with_void_and_an_absent_class():
    g = torch.Generator().manual_seed(0)
    masks = []
    for _ in range(5):
        m = torch.randint(0, 3, (12, 16), generator=g)  # three large classes everywhere
        m[torch.rand(12, 16, generator=g) < 0.04] = 3  # a small one
        m[:2] = 255  # void rows
        masks.append(m.to(torch.uint8))
    masks[1][5:7, 5:7] = 4  # a class in one image only
    w = median_frequency_weights(masks, num_classes=6)  # class 5 never appears
    ref = _reference(masks, 6)
    assert w.dtype == torch.float32 and w.shape == (6,)
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-6)
    assert w[5] == 1.0 and w[3] > 5 * w[0]  # absent: neutral; the small class weighs much more


def test_one_class_or_all_void():
    assert torch.equal(median_frequency_weights([torch.zeros(4, 4, dtype=torch.uint8)], 2), torch.ones(2))
    assert torch.equal(median_frequency_weights([torch.full((4, 4), 255, dtype=torch.uint8)], 3), torch.ones(3))


def test_a_label_outside_the_classes_is_named():
    with pytest.raises(ValueError, match="label 7, outside 0..4 and not void.*Fix: check num_classes"):
        median_frequency_weights([torch.full((2, 2), 7)], 5)


def test_fit_decoder_refuses_an_unknown_weighting():
    from rtsseg.seg.experiment import fit_decoder

    with pytest.raises(ValueError, match="class_weighting 'inverse' is not one of .*Fix: the parameter"):
        fit_decoder("linear", {"fit": None, "holdout": None, "val": None}, 3, 0, [1e-3], 1, class_weighting="inverse")


def test_train_decoder_passes_the_weights_to_the_loss_and_its_identity(tmp_path, monkeypatch):
    from torch.nn import functional as F

    from rtsseg.models import build_backbone
    from rtsseg.rundir import latest_run
    from rtsseg.seg import train as segtrain
    from rtsseg.seg.decoders import make_decoder

    from test_seg_train import tiny_dataset

    bb = build_backbone("vit_small64", img_size=64, depth=2).eval()
    store = segtrain.compute_outputs(bb, tiny_dataset(3), batch_size=3)
    seen, real = [], F.cross_entropy
    monkeypatch.setattr(segtrain.F, "cross_entropy", lambda *a, **k: seen.append(k.get("weight")) or real(*a, **k))
    w = torch.tensor([0.5, 1.0, 4.0])
    dec = make_decoder("linear", store.in_dims, 3, store.num_heads)
    segtrain.train_decoder(dec, store, 3, epochs=1, batch_size=3, class_weights=w, run_parent=tmp_path / "w")
    assert seen and all(torch.equal(s, w) for s in seen)
    config = json.loads((latest_run(tmp_path / "w") / "config.json").read_text())["config"]
    assert config["class_weights"] == [0.5, 1.0, 4.0]  # a weighted run is another run than the unweighted one
    with pytest.raises(ValueError, match=r"class_weights has shape \(2,\), the decoder 3 classes"):
        segtrain.train_decoder(dec, store, 3, epochs=1, class_weights=torch.ones(2))
