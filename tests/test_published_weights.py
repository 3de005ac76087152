"""Published weights as extra initialisations, offline: the official layouts built locally, no download."""

from __future__ import annotations

import pytest
import torch
import torchvision

from rtsseg.models.published import PUBLISHED, load_matching, published_backbone
from rtsseg.models.registry import build_backbone
from rtsseg.models.weights import WeightsError


@pytest.fixture(scope="module")
def barlow_twins_file(tmp_path_factory):
    """A state dict in the layout of the official ``resnet50.pth`` (torch hub facebookresearch/barlowtwins:main):
    torchvision's ResNet-50 keys, no ``fc`` (its hubconf loads it with strict=False into a torchvision resnet50)."""
    torch.manual_seed(0)
    sd = {k: v for k, v in torchvision.models.resnet50().state_dict().items() if not k.startswith("fc.")}
    path = tmp_path_factory.mktemp("bt") / "resnet50.pth"
    torch.save(sd, path)
    return path, sd


def test_barlow_twins_resnet50_loads_whole(barlow_twins_file):
    path, sd = barlow_twins_file
    backbone, report = published_backbone("barlow twins", "resnet50", path)
    own = backbone.model.state_dict()
    assert report.skipped == {} and report.kept_init == [] and report.loaded == sorted(sd)
    assert all(torch.equal(own[k], v) for k, v in sd.items())


def test_barlow_twins_into_botnet50_keeps_the_attention_at_init(barlow_twins_file):
    path, sd = barlow_twins_file
    torch.manual_seed(1)
    init = build_backbone("botnet50").model.state_dict()
    torch.manual_seed(1)  # the same initialisation, then the published weights on top
    backbone, report = published_backbone("barlow twins", "botnet50", path)
    own = backbone.model.state_dict()
    replaced = {f"layer4.{i}.conv2.weight" for i in range(3)}  # ResNet-50's 3x3 convs that BoTNet replaces by MHSA
    assert set(report.skipped) == replaced and all("no such key" in why for why in report.skipped.values())
    assert report.loaded == sorted(set(sd) - replaced)
    assert all(torch.equal(own[k], sd[k]) for k in report.loaded)
    attention = [k for k in own if k not in sd]
    assert attention and report.kept_init == sorted(attention)
    assert all(k.startswith(tuple(f"layer4.{i}.conv2." for i in range(3))) for k in attention)
    assert all(torch.equal(own[k], init[k]) for k in attention)  # MHSA untouched: still its initialisation
    assert "layer4.0.conv2" in backbone.attention_layers()[0]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert backbone(x).shape == (1, 2048)


def test_dino_vit_file_is_resampled_to_the_64px_grid(tmp_path):
    import timm

    torch.manual_seed(0)
    sd = {k: v for k, v in timm.create_model("vit_small_patch8_224", num_classes=0).state_dict().items()}
    torch.save({"teacher": {f"backbone.{k}": v for k, v in sd.items()}}, tmp_path / "dino_deitsmall8_pretrain.pth")
    backbone, report = published_backbone("dino", "vit_s8_64", tmp_path / "dino_deitsmall8_pretrain.pth")
    own = backbone.model.state_dict()
    assert own["pos_embed"].shape[1] == 1 + 8 * 8 and sd["pos_embed"].shape[1] == 1 + 28 * 28
    assert report.skipped == {} and report.kept_init == []
    assert torch.equal(own["blocks.11.attn.qkv.weight"], sd["blocks.11.attn.qkv.weight"])
    assert torch.equal(own["pos_embed"][:, 0], sd["pos_embed"][:, 0])  # the CLS position is kept as is


def test_another_architecture_is_refused_and_names_are_checked(barlow_twins_file):
    path, sd = barlow_twins_file
    with pytest.raises(WeightsError, match="tensors match by name and shape"):
        load_matching(build_backbone("resnet_small").model, sd, str(path))
    with pytest.raises(ValueError, match="not 'vit_s16'"):
        published_backbone("barlow twins", "vit_s16", path)
    with pytest.raises(KeyError, match="known"):
        published_backbone("mocov3", "resnet50")
    assert set(PUBLISHED["dino"].backbones) >= {"vit_s16", "vit_s8"}
