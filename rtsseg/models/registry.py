"""Backbone registry: ``build_backbone(name, weights)`` and ``list_backbones()``.

weights:
    None         random init (seed the caller's RNG first)
    "imagenet"   supervised ImageNet-1k weights through timm (online)
    "dino"       official DINO weights (online): timm ``.dino`` tags for ViT, DINO's ResNet-50 file
    <path>       our checkpoint ({'backbone': state_dict}) or an official DINO / timm state dict file
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import torch

from rtsseg.models.backbone import Backbone
from rtsseg.models.weights import WeightsError, download_failed, load_backbone_checkpoint, load_external, unwrap_state_dict

DINO_RESNET50_URL = "https://dl.fbaipublicfiles.com/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth"


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one named backbone: ``build(tag or None, **kwargs)`` and its pretrained tags."""

    build: Callable[..., Backbone]
    tags: dict[str, str] = field(default_factory=dict)  # weights name -> timm pretrained tag (or URL)
    profile: str = "gpu"  # "gpu" (full size) or "cpu" (small variant)


def _vit(timm_name: str, name: str) -> Callable[..., Backbone]:
    def build(tag: str | None, **kwargs) -> Backbone:
        from rtsseg.models.vit import create_vit
        if tag and tag.startswith("deit:"):  # DeiT-S weights: same ViT-S/16 architecture, supervised in1k
            return create_vit(name, "deit_small_patch16_224", tag.split(":", 1)[1], **kwargs)
        return create_vit(name, timm_name, tag, **kwargs)
    return build


def _vit64(timm_name: str, name: str) -> Callable[..., Backbone]:
    """A timm ViT built for 64 px input by default (its position embedding has the 64 px grid), so that the
    pretraining loop, which builds backbones without kwargs, and ``build_backbone(name, img_size=64)`` agree."""
    def build(tag: str | None, img_size: int = 64, **kwargs) -> Backbone:
        from rtsseg.models.vit import create_vit
        return create_vit(name, timm_name, tag, img_size=img_size, **kwargs)
    return build


def _swin(timm_name: str, name: str) -> Callable[..., Backbone]:
    def build(tag: str | None, **kwargs) -> Backbone:
        from rtsseg.models.swin import create_swin
        return create_swin(name, timm_name, tag, **kwargs)
    return build


def _resnet50(tag: str | None, img_size: int | None = None, **kwargs) -> Backbone:
    """ResNet-50; ``img_size`` is accepted and unused (a CNN takes any input size; the analysis chapters pass it
    to every backbone)."""
    from rtsseg.models.resnet import create_resnet50
    if tag == DINO_RESNET50_URL:
        return _with_url(create_resnet50("resnet50", None, **kwargs), tag)
    return create_resnet50("resnet50", tag, **kwargs)


def _botnet50(tag: str | None, **kwargs) -> Backbone:
    """BoTNet-50 from a ResNet-50 with the same weights (none, ImageNet or DINO); kwargs: img_size, num_heads."""
    from rtsseg.models.botnet import create_botnet50
    return create_botnet50("botnet50", _resnet50(tag), **kwargs)


def _with_url(backbone: Backbone, url: str) -> Backbone:
    """Download an official state dict (DINO ResNet-50) and load it into ``backbone.model``."""
    sd = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=False, weights_only=True)
    load_external(backbone, unwrap_state_dict(sd), url)
    return backbone


def _small(module: str, fn: str) -> Callable[..., Backbone]:
    def build(tag: str | None, **kwargs) -> Backbone:
        import importlib
        return getattr(importlib.import_module(f"rtsseg.models.{module}"), fn)(**kwargs)
    return build


_REGISTRY: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(_resnet50, {"imagenet": "tv_in1k", "dino": DINO_RESNET50_URL}),
    "botnet50": BackboneSpec(_botnet50, {"imagenet": "tv_in1k", "dino": DINO_RESNET50_URL}),
    "swin_t": BackboneSpec(_swin("swin_tiny_patch4_window7_224", "swin_t"), {"imagenet": "ms_in1k"}),
    "swin_s": BackboneSpec(_swin("swin_small_patch4_window7_224", "swin_s"), {"imagenet": "ms_in1k"}),
    "swin_b": BackboneSpec(_swin("swin_base_patch4_window7_224", "swin_b"), {"imagenet": "ms_in1k"}),
    "vit_s16": BackboneSpec(_vit("vit_small_patch16_224", "vit_s16"), {"imagenet": "deit:fb_in1k", "dino": "dino"}),
    "vit_s8": BackboneSpec(_vit("vit_small_patch8_224", "vit_s8"), {"dino": "dino"}),
    # ViT-S/8 at 64 px (8x8 patches + CLS): the main backbone of the gpu-short profile
    "vit_s8_64": BackboneSpec(_vit64("vit_small_patch8_224", "vit_s8_64"), {"dino": "dino"}),
    "resnet_small": BackboneSpec(_small("resnet", "create_resnet_small"), profile="cpu"),
    "botnet_small": BackboneSpec(_small("botnet", "create_botnet_small"), profile="cpu"),
    "swin_small64": BackboneSpec(_small("swin", "create_swin_small64"), profile="cpu"),
    "vit_small64": BackboneSpec(_small("vit", "create_vit_small64"), profile="cpu"),
}


def register_backbone(name: str, factory: Callable[..., torch.nn.Module], profile: str = "test") -> None:
    """Make ``factory(**kwargs)`` buildable as ``build_backbone(name)`` (test fakes, experiments; no pretrained
    weights). Tests register their fakes here; nothing in the package registers a test model."""
    _REGISTRY[name] = BackboneSpec(lambda tag, **kwargs: factory(**kwargs), profile=profile)


def register_command_line_backbone(name: str) -> str:
    """Make a ``"package.module:callable"`` factory named **on a command line** (``--backbone
    model_fakes:TinyBackbone``: subprocess and torchrun tests, experiments) buildable under that name; a plain
    name is returned unchanged. Only a command-line entry point calls this: a name read from a file (checkpoint,
    run config, index, notebook parameter) never imports anything, :func:`build_backbone` refuses every name
    that is not registered (issue: a checkpoint naming ``subprocess:run`` would otherwise run it)."""
    if ":" not in name or name in _REGISTRY:
        return name
    import importlib

    module, attr = name.split(":", 1)
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise KeyError(f"--backbone {name!r}: cannot import the factory ({err}). Fix: a registered name "
                       f"({', '.join(list_backbones())}) or an importable module:callable") from err
    register_backbone(name, factory)
    return name


def list_backbones(profile: str | None = None) -> list[str]:
    """Registered names; ``profile="cpu"`` gives the small variants, ``"gpu"`` the full-size ones, ``"test"`` the
    fakes registered by tests (left out of the default listing)."""
    return [n for n, s in _REGISTRY.items() if (s.profile != "test" if profile is None else s.profile == profile)]


def pretrained_weights(name: str) -> list[str]:
    """The online weight names ("imagenet", "dino") available for ``name``."""
    return list(_spec(name).tags)


def build_backbone(name: str, weights: str | os.PathLike | None = None, **kwargs) -> Backbone:
    """Build backbone ``name`` with ``weights`` (None | "imagenet" | "dino" | path); kwargs go to the model
    (e.g. ``img_size``). Offline, "imagenet"/"dino" raise ``WeightsError`` saying how to pass a local file."""
    spec = _spec(name)
    if weights is None:
        return spec.build(None, **kwargs)
    if weights in ("imagenet", "dino"):
        if weights not in spec.tags:
            raise ValueError(f"no {weights!r} weights for backbone {name!r}; available: {sorted(spec.tags) or 'none'} "
                             f"(or a checkpoint path)")
        tag = spec.tags[weights]
        try:
            return spec.build(tag, **kwargs)
        except OSError as err:  # no network: huggingface_hub / urllib errors are OSErrors
            raise download_failed(f"{name}:{weights} ({tag})", err) from err
    backbone = spec.build(None, **kwargs)
    load_backbone_checkpoint(backbone, weights)
    return backbone


def _spec(name: str) -> BackboneSpec:
    if not isinstance(name, str) or name not in _REGISTRY:
        hint = (" (a module:callable factory is imported only when a command line names it, never from a file)"
                if isinstance(name, str) and ":" in name else "")
        raise KeyError(f"unknown backbone {name!r}{hint}; known: {list_backbones()}")
    return _REGISTRY[name]


__all__ = ["build_backbone", "list_backbones", "register_backbone", "register_command_line_backbone", "pretrained_weights", "BackboneSpec", "WeightsError"]
