"""rtsseg.models: backbone registry (ResNet-50, BoTNet-50, Swin-T/S/B, ViT-S/16, ViT-S/8, small CPU variants).

    build_backbone(name, weights=None|"imagenet"|"dino"|path, **kwargs) -> Backbone
    list_backbones(profile=None) -> list[str]
"""

from rtsseg.models.backbone import IMAGENET_MEAN, IMAGENET_STD, Backbone
from rtsseg.models.registry import (build_backbone, list_backbones, pretrained_weights, register_backbone,
                                    register_command_line_backbone)
from rtsseg.models.weights import WeightsError

__all__ = ["Backbone", "build_backbone", "list_backbones", "pretrained_weights", "register_backbone",
           "register_command_line_backbone", "WeightsError",
           "IMAGENET_MEAN", "IMAGENET_STD"]
