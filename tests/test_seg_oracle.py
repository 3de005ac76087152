"""Oracle attention: hand-computed on a toy mask, rows summing to 1, mass falling with the SNR, store layouts."""

from __future__ import annotations

import math

import pytest
import torch

from rtsseg.seg.oracle import (
    degrade,
    head_classes,
    oracle_affinity,
    oracle_maps,
    oracle_store,
    same_class_mass,
    token_classes,
)
from rtsseg.seg.train import OutputStore

V = 255
# 2x3 grid, one pixel per token: token classes 0, 0, 1 / 2, void, 1
TOY = torch.tensor([[[0, 0, 1], [2, V, 1]]])


def test_toy_affinity_by_hand():
    a = oracle_affinity(TOY, (2, 3), heads=2, num_classes=3)
    h, t = 1 / 2, 1.0
    expected = torch.tensor([
        [h, h, 0, 0, 0, 0],  # token 0 (class 0): tokens 0, 1
        [h, h, 0, 0, 0, 0],
        [0, 0, h, 0, 0, h],  # token 2 (class 1): tokens 2, 5
        [0, 0, 0, t, 0, 0],  # token 3 (class 2): itself, the only class-2 token
        [0, 0, 0, 0, t, 0],  # token 4 (void): itself only
        [0, 0, h, 0, 0, h],
    ])
    assert a.shape == (1, 2, 6, 6) and a.dtype == torch.float32
    torch.testing.assert_close(a[0, 0], expected)
    torch.testing.assert_close(a[0, 1], expected)  # the same for every head


def test_toy_maps_by_hand():
    assert head_classes(2, 3) == [[0, 2], [1]]
    m = oracle_maps(TOY, (2, 3), heads=2, num_classes=3)
    third = 1 / 3
    torch.testing.assert_close(m[0, 0], torch.tensor([[third, third, 0], [third, 0, 0]]))  # classes 0 and 2
    torch.testing.assert_close(m[0, 1], torch.tensor([[0, 0, 0.5], [0, 0, 0.5]]))  # class 1
    # a head whose classes are absent is uniform
    m = oracle_maps(torch.zeros(1, 2, 3, dtype=torch.long), (2, 3), heads=2, num_classes=3)
    torch.testing.assert_close(m[0, 1], torch.full((2, 3), 1 / 6))


def test_majority_non_void_class_of_a_cell():
    # 2x2-pixel cells on a 1x2 grid: cell 0 = three void pixels and one class-2 pixel -> class 2 (void is no
    # class); cell 1 = 1, 1, 0, void -> class 1
    masks = torch.tensor([[[V, V, 1, 1], [V, 2, 0, V]]])
    assert token_classes(masks, (1, 2), 3).tolist() == [[2, 1]]
    assert token_classes(torch.full((1, 2, 2), V), (1, 1), 3).tolist() == [[-1]]


def _blocks(b: int = 3, size: int = 8) -> torch.Tensor:
    """Masks [b, 4*size, 4*size] of four class quadrants (one void stripe), 4x4 pixels per token."""
    m = torch.zeros(b, 4 * size, 4 * size, dtype=torch.long)
    half = 2 * size
    m[:, :half, half:] = 1
    m[:, half:, :half] = 2
    m[:, half:, half:] = 3
    m[1, :, :4] = V
    if b > 2:
        m[2, :half, :half] = 4
    return m


def test_rows_sum_to_one_and_clean_mass_is_one():
    masks = _blocks()
    a = oracle_affinity(masks, (8, 8), heads=3, num_classes=5)
    assert a.shape == (3, 3, 64, 64)
    torch.testing.assert_close(a.sum(-1), torch.ones(3, 3, 64))
    assert same_class_mass(a, masks, (8, 8), 5) == pytest.approx(1.0)
    m = oracle_maps(masks, (8, 8), heads=3, num_classes=5)
    assert m.shape == (3, 3, 8, 8)
    torch.testing.assert_close(m.flatten(2).sum(-1), torch.ones(3, 3))
    # uniform attention puts each query's class share on its class: 1/4 for quadrants (independent check)
    uniform = torch.full((1, 1, 64, 64), 1 / 64)
    assert same_class_mass(uniform, masks[:1], (8, 8), 5) == pytest.approx(0.25)


def test_mass_falls_with_snr():
    masks = _blocks()
    a = oracle_affinity(masks, (8, 8), heads=2, num_classes=5)
    masses = []
    for snr in (math.inf, 60.0, 20.0, 5.0, 0.0):
        d = degrade(a, snr, torch.Generator().manual_seed(1), grid=(8, 8))
        assert d.shape == a.shape
        torch.testing.assert_close(d.sum(-1), torch.ones(3, 2, 64))
        masses.append(same_class_mass(d, masks, (8, 8), 5))
    assert masses[0] == pytest.approx(1.0)
    assert all(x > y for x, y in zip(masses, masses[1:])), masses
    assert masses[-1] == pytest.approx(0.25, abs=0.03)  # snr 0: near uniform, the class share
    maps = oracle_maps(masks, (8, 8), heads=2, num_classes=5)
    noisy = degrade(maps, 5.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(noisy.flatten(2).sum(-1), torch.ones(3, 2))
    with pytest.raises(ValueError, match="grid"):
        degrade(a, 5.0, grid=(4, 4))
    with pytest.raises(ValueError, match="snr"):
        degrade(a, -1.0, grid=(8, 8))


def test_oracle_store_keeps_stages_and_layouts():
    masks = _blocks(2).to(torch.uint8)
    store = OutputStore(stages=[[torch.randn(4, 8, 8).half()] for _ in range(2)],
                        affinity=[torch.rand(3, 64, 64).half() for _ in range(2)],
                        maps=[torch.rand(3, 8, 8) for _ in range(2)], masks=list(masks), identity={"x": 1})
    clean = oracle_store(store, 5)
    assert clean.stages is store.stages and clean.masks is store.masks
    assert clean.identity == {"x": 1, "oracle": {"snr": math.inf, "seed": 0, "blur_sigma": 1.0}}
    assert clean.affinity[0].shape == (3, 64, 64) and clean.affinity[0].dtype == torch.float16
    assert clean.maps[0].shape == (3, 8, 8) and clean.maps[0].dtype == torch.float32
    torch.testing.assert_close(clean.affinity[1].float(), oracle_affinity(masks[1:].long(), (8, 8), 3, 5)[0],
                               atol=1e-3, rtol=0)
    noisy = oracle_store(store, 5, snr=5.0, seed=3)
    again = oracle_store(store, 5, snr=5.0, seed=3)
    torch.testing.assert_close(noisy.maps[0], again.maps[0])  # reproducible from its seed
    assert same_class_mass(torch.stack(noisy.affinity).float(), masks.long(), (8, 8), 5) < 0.9


def test_counted_fractions_equal_pooled_fractions():
    from rtsseg.seg.decoders import token_class_fractions
    from rtsseg.seg.oracle import class_fractions

    g = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 4, (2, 24, 36), generator=g)
    masks[masks == 3] = V
    for grid in ((4, 6), (5, 7)):  # divides the mask (counting) / does not (pooling fallback)
        torch.testing.assert_close(class_fractions(masks, 3, grid), token_class_fractions(masks, 3, grid))


def test_oracle_ceiling_script_help():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "oracle_ceiling.py"
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--snrs" in proc.stdout and "oracle" in proc.stdout
