"""Backbone registry: the interface, small variants, weights loading (our checkpoints, DINO layout, offline)."""

from __future__ import annotations

import pytest
import torch

from rtsseg.attention import capture_attention
from rtsseg.models import Backbone, WeightsError, build_backbone, list_backbones
from rtsseg.models import vit as vit_module

SMALL = ["resnet_small", "botnet_small", "swin_small64", "vit_small64"]
FAMILY = {"resnet_small": "resnet", "botnet_small": "botnet", "swin_small64": "swin", "vit_small64": "vit"}


def _build(name: str, **kwargs) -> Backbone:
    torch.manual_seed(0)
    return build_backbone(name, **kwargs).eval()


def test_names() -> None:
    assert set(list_backbones()) == {"resnet50", "botnet50", "swin_t", "swin_s", "swin_b", "vit_s16", "vit_s8",
                                     "vit_s8_64", *SMALL}
    assert set(list_backbones("cpu")) == set(SMALL)
    with pytest.raises(KeyError, match="unknown backbone"):
        build_backbone("vit_huge")


@pytest.mark.parametrize("name", SMALL)
def test_small_variant_interface(name: str) -> None:
    b = _build(name)
    x = torch.randn(2, 3, 64, 64)
    feats = b.forward_features(x)
    assert b.family == FAMILY[name]
    assert feats.shape == (2, b.embed_dim, 8, 8)
    assert b(x).shape == (2, b.embed_dim)
    assert 0.5e6 < sum(p.numel() for p in b.parameters()) < 6e6
    if b.family == "resnet":
        assert b.attention_layers() == []
    else:  # the analysed (last) attention layer has >= 8x8 tokens at 64 px
        maps = capture_attention(b, x)
        assert maps.shape[-2] >= 8 and maps.shape[-1] >= 8


def test_vit_pooled_is_cls_and_others_average() -> None:
    vit, swin = _build("vit_small64"), _build("swin_small64")
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(vit(x), vit.model.forward_features(x)[:, 0])
    assert torch.allclose(swin(x), swin.forward_features(x).mean(dim=(2, 3)), atol=1e-6)


def test_normalize_uint8_and_float_agree() -> None:
    b = _build("vit_small64")
    u8 = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    a, c = b.normalize(u8), b.normalize(u8.float() / 255)
    assert torch.allclose(a, c)
    assert torch.allclose(a[:, 0], (u8[:, 0] / 255 - 0.485) / 0.229)
    assert torch.allclose(b.denormalize(a), u8.float() / 255, atol=1e-6)


@pytest.mark.parametrize("name", ["vit_small64", "botnet_small"])
def test_our_checkpoint_roundtrip(tmp_path, name: str) -> None:
    src = _build(name)
    path = tmp_path / "checkpoint.pt"
    torch.save({"backbone": src.state_dict(), "epoch": 3}, path)
    torch.manual_seed(1)  # a different init, so loading must do the work
    dst = build_backbone(name, weights=path).eval()
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(src(x), dst(x))


def test_our_checkpoint_mismatch_names_file(tmp_path) -> None:
    path = tmp_path / "swin.pt"
    torch.save({"backbone": _build("swin_small64").state_dict()}, path)
    with pytest.raises(WeightsError, match="swin.pt"):
        build_backbone("vit_small64", weights=path)
    with pytest.raises(WeightsError, match="not found"):
        build_backbone("vit_small64", weights=tmp_path / "missing.pt")


def _dino_like_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The official DINO ViT layout: timm/DeiT keys (cls_token, pos_embed, patch_embed.proj.weight, blocks.*)."""
    sd = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "norm.weight"} <= set(sd)
    return sd


@pytest.mark.parametrize("layout", ["plain", "teacher"])
def test_dino_checkpoint_layout(tmp_path, layout: str) -> None:
    b = _build("vit_small64")
    sd = _dino_like_state(b.model)
    if layout == "plain":  # dino_deitsmall16_pretrain.pth
        ckpt = sd
    else:  # full checkpoint: teacher/student with 'backbone.' prefixes and the DINO head
        ckpt = {"teacher": {**{f"backbone.{k}": v for k, v in sd.items()},
                            "head.mlp.0.weight": torch.randn(8, 192), "head.last_layer.weight_g": torch.randn(8, 1)},
                "student": {f"module.backbone.{k}": torch.zeros_like(v) for k, v in sd.items()}, "epoch": 100}
    path = tmp_path / "dino.pth"
    torch.save(ckpt, path)
    loaded = build_backbone("vit_small64", weights=path)
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_dino_checkpoint_resamples_pos_embed(tmp_path) -> None:
    """A 64 px checkpoint into a 96 px model: timm's filter resamples pos_embed (8x8 -> 12x12 grid)."""
    sd = _dino_like_state(_build("vit_small64").model)
    path = tmp_path / "dino.pth"
    torch.save(sd, path)
    b = build_backbone("vit_small64", weights=path, img_size=96)
    assert b.model.pos_embed.shape == (1, 1 + 144, 192)
    assert torch.equal(b.model.blocks[0].attn.qkv.weight, sd["blocks.0.attn.qkv.weight"])


def test_external_state_dict_mismatch_is_error(tmp_path) -> None:
    sd = _dino_like_state(_build("vit_small64").model)
    sd.pop("norm.weight")
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match="broken.pth"):
        build_backbone("vit_small64", weights=path)


def test_resnet_dino_layout_into_botnet(tmp_path) -> None:
    """DINO's ResNet-50 file has torchvision keys without fc; BoTNet keeps all but the replaced conv2."""
    res = _build("resnet_small")
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in res.model.state_dict().items()}
    path = tmp_path / "dino_resnet.pth"
    torch.save(sd, path)
    bot = build_backbone("botnet_small", weights=path)
    own = bot.model.state_dict()
    for k, v in sd.items():
        if ".conv2." in k and k.startswith("layer4"):
            assert k not in own
        else:
            assert torch.equal(own[k], v), k


def test_offline_download_error(monkeypatch) -> None:
    def no_network(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(vit_module.timm, "create_model", no_network)
    with pytest.raises(WeightsError, match="internet") as info:
        build_backbone("vit_s16", weights="dino")
    assert "weights=" in str(info.value)  # says how to pass a local file
    with pytest.raises(ValueError, match="no 'imagenet' weights"):
        build_backbone("vit_s8", weights="imagenet")
    with pytest.raises(ValueError, match="no 'dino' weights"):
        build_backbone("swin_small64", weights="dino")


@pytest.mark.slow
@pytest.mark.parametrize("name,grid", [("resnet50", (7, 7)), ("botnet50", (7, 7)), ("swin_t", (7, 7)),
                                       ("vit_s16", (14, 14)), ("vit_s8", (28, 28))])
def test_full_size_at_224(name: str, grid: tuple[int, int]) -> None:
    b = _build(name)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        feats = b.forward_features(x)
    assert feats.shape == (1, b.embed_dim, *grid)
    if b.family != "resnet":  # the last attention layer: ViT patch grid, Swin's single 7x7 window, BoTNet 7x7
        maps = capture_attention(b, x)
        assert maps.shape[-2:] == grid and torch.allclose(maps.sum((-2, -1)), torch.ones(()), atol=1e-5)


@pytest.mark.parametrize("name", ["vit_small64", "swin_small64", "botnet_small"])
def test_small_variants_take_camvid_shaped_inputs(name: str) -> None:
    """The segmentation probe feeds 96x128 inputs to backbones built (and pretrained) at 64 px."""
    b = build_backbone(name, img_size=64).eval()
    with torch.no_grad():
        assert b.forward_features(torch.randn(1, 3, 96, 128)).shape[-2:] == (12, 16)


def test_dynamic_swin_equals_fixed_size_swin_at_its_size() -> None:
    torch.manual_seed(0)
    dynamic = build_backbone("swin_small64").eval()
    torch.manual_seed(0)
    fixed = build_backbone("swin_small64", dynamic_img_size=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(dynamic(x), fixed(x), atol=1e-6)


def test_prepare_resizes_and_normalises_like_torchvision():
    """``Backbone.prepare`` (the one input path) against torchvision's resize + normalize."""
    import torchvision.transforms.v2.functional as TF

    from fakes import FakeBackbone

    bb = FakeBackbone()
    x = torch.randint(0, 256, (2, 3, 16, 24), dtype=torch.uint8)
    same = bb.prepare(x, (16, 24))
    assert torch.allclose(same, (x.float() / 255 - 0.5) / 0.25)  # no resize at the images' own size
    out = bb.prepare(x, 8)  # [2,3,8,8]
    ref = TF.resize(x.float() / 255, [8, 8], antialias=True).clamp(0, 1)
    assert out.shape == (2, 3, 8, 8) and torch.allclose(out, TF.normalize(ref, [0.5] * 3, [0.25] * 3), atol=1e-5)
    assert torch.allclose(bb.prepare(x.float() / 255, 8), out, atol=1e-6)  # float in [0, 1] accepted too


def test_vit_s8_64_is_built_for_64_px() -> None:
    """Pretraining builds it without kwargs; the analysis chapters with img_size=64: the state dicts agree."""
    a, b = _build("vit_s8_64"), _build("vit_s8_64", img_size=64)
    assert a.model.pos_embed.shape == (1, 65, 384) and a.patch_size == 8
    b.load_state_dict(a.state_dict())
    assert a.forward_features(torch.zeros(1, 3, 64, 64)).shape == (1, 384, 8, 8)
