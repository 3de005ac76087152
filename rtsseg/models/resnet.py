"""ResNet backbones from timm: ResNet-50 and a narrow ResNet for 64 px images.

``forward_features`` returns layer4's output [B, C, h, w]; the pooled embedding is its global average.
The small variant has total stride 8 -- a 3x3 stride-2 stem without max-pool and layer3 at stride 1 -- so
layer4 of a 64 px image is 8x8, the grid BoTNet's attention needs (``botnet_small`` is built from it); its
layer4 keeps ResNet-50's stride-2 first block, so BoTNet's attention-then-2x2-pooling block is exercised.
"""

from __future__ import annotations

import timm
import torch
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from rtsseg.models.backbone import Backbone


class ResNetBackbone(Backbone):
    """Wraps a timm ``ResNet`` (``num_classes=0``).

    No attention: ``attention_layers()`` is [] (inherited), so ``record_attention``, ``attention`` and
    ``token_grid`` raise "has no attention layers" (BoTNet, a subclass, adds them). Stages: layer1..layer4.
    """

    family = "resnet"
    memory_format = torch.channels_last  # oneDNN / cuDNN convolutions run NHWC natively (BoTNet inherits)

    def __init__(self, name: str, model: ResNet) -> None:
        super().__init__(name, model.num_features)
        self.model = model

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)  # [B, C, H/stride, W/stride]

    def stage_layers(self, blocks: list[int] | None = None) -> list[str]:
        """layer1..layer3 (layer4 is ``forward_features``); ``blocks`` is ignored."""
        return ["model.layer1", "model.layer2", "model.layer3"]


def create_resnet50(name: str = "resnet50", pretrained_tag: str | None = None, **kwargs) -> ResNetBackbone:
    """timm ResNet-50 (v1.5, torchvision layout); ``pretrained_tag`` e.g. "tv_in1k" (torchvision weights)."""
    full = f"resnet50.{pretrained_tag}" if pretrained_tag else "resnet50"
    model = timm.create_model(full, pretrained=pretrained_tag is not None, num_classes=0, **kwargs)
    return ResNetBackbone(name, model)


def small_resnet_model(layers: tuple[int, ...] = (1, 1, 1, 2), channels: tuple[int, ...] = (16, 32, 64, 128),
                       **kwargs) -> ResNet:
    """Narrow bottleneck ResNet of total stride 8: stem 3x3 stride 2, no max-pool, stage strides (1, 2, 1, 2).

    Output channels are ``4 * channels[-1]``; at 64 px layer1..4 are 32, 16, 16, 8 px (layer4's first
    block sees 16x16).
    """
    model = ResNet(block=Bottleneck, layers=layers, channels=channels, num_classes=0, **kwargs)
    stem_width = model.bn1.num_features  # timm's plain stem: 64
    model.conv1 = nn.Conv2d(3, stem_width, kernel_size=3, stride=2, padding=1, bias=False)  # [B,64,H/2,W/2]
    model.maxpool = nn.Identity()
    first = model.layer3[0]  # layer3 at stride 1 (no dilation): layer3 stays at H/4
    first.conv2.stride = (1, 1)
    if first.downsample is not None:
        first.downsample[0].stride = (1, 1)
    return model


def create_resnet_small(name: str = "resnet_small", **kwargs) -> ResNetBackbone:
    """Small ResNet for the CPU profile (about 0.8 M parameters with the defaults; botnet_small 0.6 M).

    Widths (16, 32, 64, 128) keep a Barlow Twins step (2 views x 64 images, 64 px) near 1.4 s on 2 CPU cores,
    on par with vit_small64 and swin_small64; the 2x wider variant took 3.2 s.
    """
    return ResNetBackbone(name, small_resnet_model(**kwargs))
