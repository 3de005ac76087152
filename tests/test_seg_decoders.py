"""Decoders (shapes, the control's parameter count, propagation), affinity capture, attention supervision."""

from __future__ import annotations

import pytest
import torch

from rtsseg.seg.decoders import (
    DECODERS,
    MLPDecoder,
    attention_supervision_targets,
    build_decoder,
    count_parameters,
    make_decoder,
    matched_control,
    token_class_fractions,
)

IN_DIMS = [16, 24, 32]
HEADS = 3


def fake_outputs(b: int = 2, grid=(4, 6), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = grid
    stages = [torch.randn(b, 16, 4 * h, 4 * w, generator=g), torch.randn(b, 24, 2 * h, 2 * w, generator=g),
              torch.randn(b, 32, h, w, generator=g)]
    affinity = torch.rand(b, HEADS, h * w, h * w, generator=g).softmax(-1)
    maps = torch.rand(b, HEADS, h, w, generator=g)
    maps = maps / maps.sum((2, 3), keepdim=True)
    return stages, affinity, maps


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_shapes_and_rebuild(name):
    stages, affinity, maps = fake_outputs()
    dec = make_decoder(name, IN_DIMS, 5, HEADS, embed_dim=8, fuse_dim=8)
    out = dec(stages, affinity, maps)
    expected = (2, 5, 4, 6) if name == "linear" else (2, 5, 16, 24)  # last stage / finest stage grid
    assert out.shape == expected
    out.sum().backward()
    again = build_decoder(dec.config)
    again.load_state_dict(dec.state_dict())
    dec.eval(), again.eval()
    assert torch.allclose(dec(stages, affinity, maps), again(stages, affinity, maps))


@pytest.mark.parametrize("dims", [(16, 24, 32), (192, 192, 192, 192), (64, 128, 256, 512), (48, 96, 192)])
@pytest.mark.parametrize("heads", [4, 6])
def test_control_parameter_count_matches_attention_decoder(dims, heads):
    att = make_decoder("attn_all", list(dims), 11, heads)
    control = make_decoder("control", list(dims), 11, heads)
    assert not control.uses_attention
    assert abs(count_parameters(control) - count_parameters(att)) <= 0.01 * count_parameters(att)
    # the plain MLP decoder is NOT matched (the attention decoder really has more parameters)
    assert count_parameters(make_decoder("mlp", list(dims), 11, heads)) < count_parameters(att)


def test_matched_control_raises_when_impossible():
    att = make_decoder("attn_all", IN_DIMS, 5, HEADS)
    with pytest.raises(ValueError, match="no control"):
        matched_control(att, tolerance=0.0)


def test_propagation_with_identity_affinity_is_the_identity():
    stages, _, maps = fake_outputs()
    dec = MLPDecoder(IN_DIMS, 5, 8, 8, num_heads=HEADS, propagate=True, k=2).eval()
    plain = MLPDecoder(IN_DIMS, 5, 8, 8).eval()
    plain.load_state_dict({k: v for k, v in dec.state_dict().items() if k in plain.state_dict()})
    eye = torch.eye(24).expand(2, HEADS, 24, 24)
    assert torch.allclose(dec(stages, eye, maps), plain(stages))


def test_propagation_equals_reference_on_the_attention_grid():
    """Single grid (ViT-like): Z' = Z + σ(γ)(Ā^k Z − Z), computed by hand."""
    h, w = 3, 4
    g = torch.Generator().manual_seed(1)
    stages = [torch.randn(2, 6, h, w, generator=g)]
    affinity = torch.rand(2, 2, 12, 12, generator=g).softmax(-1)
    maps = torch.full((2, 2, h, w), 1 / 12)
    dec = MLPDecoder([6], 3, 4, 4, num_heads=2, propagate=True, k=3).eval()
    with torch.no_grad():
        dec.head_logits.copy_(torch.tensor([0.3, -0.2]))
        dec.strength.fill_(0.7)
    z = MLPDecoder([6], 3, 4, 4).eval()
    z.load_state_dict({k: v for k, v in dec.state_dict().items() if k in z.state_dict()})
    zz = z(stages).flatten(2).transpose(1, 2)  # [B, N, K]
    wts = torch.softmax(torch.tensor([0.3, -0.2]), 0)
    a = wts[0] * affinity[:, 0] + wts[1] * affinity[:, 1]
    ref = zz + torch.sigmoid(torch.tensor(0.7)) * (torch.linalg.matrix_power(a, 3) @ zz - zz)
    got = dec(stages, affinity, maps).flatten(2).transpose(1, 2)
    assert torch.allclose(got, ref, atol=1e-5)


def test_gate_starts_as_identity_and_maps_change_output():
    stages, affinity, maps = fake_outputs()
    gated = MLPDecoder(IN_DIMS, 5, 8, 8, num_heads=HEADS, gate=True).eval()
    plain = MLPDecoder(IN_DIMS, 5, 8, 8).eval()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if k in plain.state_dict()})
    assert torch.allclose(gated(stages, affinity, maps), plain(stages))
    with torch.no_grad():
        gated.gate_conv.weight.normal_()
    assert not torch.allclose(gated(stages, affinity, maps), plain(stages))


def test_attention_decoder_needs_its_inputs():
    stages, affinity, maps = fake_outputs()
    with pytest.raises(ValueError, match="maps"):
        make_decoder("attn_maps", IN_DIMS, 5, HEADS)(stages)
    with pytest.raises(ValueError, match="affinity"):
        make_decoder("attn_prop", IN_DIMS, 5, HEADS)(stages, None, maps)


def test_token_fractions_and_targets_by_hand():
    # 4x4 labels on a 2x2 token grid: top-left cell all class 1, top-right half 2 / half void,
    # bottom cells class 0
    masks = torch.tensor([[1, 1, 2, 255], [1, 1, 2, 255], [0, 0, 0, 0], [0, 0, 0, 0]])[None]
    fr = token_class_fractions(masks, 3, (2, 2))
    assert torch.allclose(fr[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.allclose(fr[0, :, 0, 1], torch.tensor([0.0, 0.0, 0.5]))
    targets, keep = attention_supervision_targets(fr, min_purity=0.5)
    assert keep.tolist() == [[True, False, True, True]]  # the half-void cell is not pure enough
    assert torch.allclose(targets[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # class-1 query -> class-1 mask
    assert torch.allclose(targets[0, 2], torch.tensor([[0.0, 0.0], [1.0, 1.0]]))  # class-0 query


def test_attention_loss_uses_the_supervision_api():
    import rtsseg.attention.supervision as sup
    from rtsseg.seg.decoders import attention_supervision_loss

    masks = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])[None]
    fr = token_class_fractions(masks, 2, (2, 2))
    good = torch.tensor([[1.0, 0, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 1 / 3, 1 / 3]])
    bad = torch.tensor([[0, 1 / 3, 1 / 3, 1 / 3], [1.0, 0, 0, 0], [1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    lg, lb = attention_supervision_loss(good[None], fr), attention_supervision_loss(bad[None], fr)
    assert lg < lb  # attention on the own class's tokens scores better
    targets, keep = attention_supervision_targets(fr)
    ref = sup.mask_attention_loss(good.reshape(1, 4, 2, 2)[keep][:, None], targets[keep])
    assert torch.allclose(lg, ref)


def test_registry_names_written_once_and_refuses_unknown_kinds():
    from rtsseg.seg.decoders import list_decoders, register_decoder

    assert DECODERS == tuple(list_decoders())
    assert set(DECODERS) == {"linear", "mlp", "control", "attn_maps", "attn_prop", "attn_gate", "attn_all"}
    with pytest.raises(ValueError, match="registered twice"):
        register_decoder("mlp", MLPDecoder)(lambda *a, **k: None)
    for bad in ({"kind": "os:system"}, {"kind": None}, {"in_dims": [4]}):
        with pytest.raises(ValueError, match="unknown decoder kind"):
            build_decoder(bad)
    with pytest.raises(ValueError, match="unknown decoder"):
        make_decoder("nope", IN_DIMS, 5, HEADS)
    # a file of the earlier format: kind "attention", its mechanisms in the config
    old = dict(make_decoder("attn_prop", IN_DIMS, 5, HEADS).config, kind="attention")
    rebuilt = build_decoder(old)
    assert rebuilt.propagate and not rebuilt.maps and not rebuilt.gate
