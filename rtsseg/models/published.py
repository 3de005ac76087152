"""Published self-supervised weights as extra initialisations: DINO ViT-S/16 and ViT-S/8, Barlow Twins ResNet-50.

Why: the book's own pretraining (chapters 2-3) runs at 64 px on a small budget; the published checkpoints
(ImageNet-1k, hundreds of GPU-days) show what the same architectures reach when pretraining is not the limit.

- DINO ViT-S/16, ViT-S/8 (Caron et al. 2021): the registry's ``dino`` tags (timm ``vit_small_patch16_224.dino``,
  ``vit_small_patch8_224.dino``), or a local copy of the official ``dino_deitsmall{16,8}_pretrain.pth`` (timm's
  ViT keys; ``pos_embed`` resampled to the backbone's grid, e.g. ``vit_s8_64``).
- Barlow Twins ResNet-50 (Zbontar et al. 2021): torch hub ``facebookresearch/barlowtwins:main`` ``resnet50`` loads
  :data:`BARLOW_TWINS_RESNET50_URL`, a torchvision ResNet-50 state dict without ``fc`` (torchvision's key
  names, which are timm's). Loaded into ``resnet50`` whole, and into ``botnet50`` as the proposal's first step
  says ("use the pretrained ResNet-50 weights ... then modify the bottleneck layers"): every weight whose name
  and shape match goes in, layer4's MHSA (which replaced the 3x3 convolutions) keeps its initialisation.

Every loader returns a :class:`LoadReport` (the keys loaded, the state dict's keys skipped and why, the
backbone's keys left at their initialisation) and logs its counts: a half-loaded network is visible.
Nothing read from a weights file selects code: the backbone is built by name from the registry first.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch

from rtsseg.models.backbone import Backbone
from rtsseg.models.weights import WeightsError, download_failed, read_checkpoint, unwrap_state_dict

log = logging.getLogger(__name__)

BARLOW_TWINS_HUB = "facebookresearch/barlowtwins:main"
BARLOW_TWINS_RESNET50_URL = (
    "https://dl.fbaipublicfiles.com/barlowtwins/ep1000_bs2048_lrw0.2_lrb0.0048_lambd0.0051/resnet50.pth"
)


@dataclass(frozen=True)
class Published:
    """One published checkpoint: which backbones of the registry take it and where it comes from."""

    method: str  # "dino" | "barlow twins"
    backbones: tuple[str, ...]
    source: str  # the registry's weights tag ("dino") or a URL
    paper: str


#: Published initialisation name -> what it is. ``dino`` goes through ``build_backbone(name, "dino")``.
PUBLISHED: dict[str, Published] = {
    "dino": Published("dino", ("vit_s16", "vit_s8", "vit_s8_64"), "dino", "Caron et al. 2021 (DINO)"),
    "barlow twins": Published("barlow twins", ("resnet50", "botnet50"), BARLOW_TWINS_RESNET50_URL,
                              "Zbontar et al. 2021 (Barlow Twins), torch hub " + BARLOW_TWINS_HUB),
}


@dataclass
class LoadReport:
    """What a published state dict did to a backbone (keys of ``backbone.model``)."""

    source: str
    loaded: list[str] = field(default_factory=list)  # name and shape matched: copied
    skipped: dict[str, str] = field(default_factory=dict)  # state-dict key -> why ("no such key", "shape ...")
    kept_init: list[str] = field(default_factory=list)  # backbone keys the state dict did not provide

    def summary(self) -> str:
        return (f"{self.source}: {len(self.loaded)} tensors loaded, {len(self.skipped)} skipped"
                f"{' (e.g. ' + ', '.join(list(self.skipped)[:3]) + ')' if self.skipped else ''}, "
                f"{len(self.kept_init)} kept at init"
                f"{' (e.g. ' + ', '.join(self.kept_init[:3]) + ')' if self.kept_init else ''}")


def load_matching(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str,
                  min_loaded: float = 0.5) -> LoadReport:
    """Copy every tensor of ``state_dict`` whose name and shape match one of ``module``'s; the rest is reported.

    Refuses (``WeightsError``) a state dict that fills less than ``min_loaded`` of the module's tensors: that is
    a checkpoint of another architecture (or another key layout), not a partial transfer."""
    own = module.state_dict()
    report = LoadReport(source)
    matched = {}
    for key, value in state_dict.items():
        if key not in own:
            report.skipped[key] = "no such key in the backbone"
        elif own[key].shape != value.shape:
            report.skipped[key] = f"shape {tuple(value.shape)} != backbone {tuple(own[key].shape)}"
        else:
            matched[key] = value
    report.loaded = sorted(matched)
    report.kept_init = sorted(k for k in own if k not in matched)
    if len(matched) < min_loaded * len(own):
        raise WeightsError(source, f"only {len(matched)} of {len(own)} tensors match by name and shape "
                           f"(skipped e.g. {list(report.skipped)[:3]})", "use weights made for this backbone")
    module.load_state_dict(matched, strict=False)
    log.info(report.summary())
    return report


def barlow_twins_state_dict(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The official Barlow Twins ResNet-50 state dict: ``path`` (a local ``resnet50.pth``), else downloaded from
    :data:`BARLOW_TWINS_RESNET50_URL` (what ``torch.hub.load(BARLOW_TWINS_HUB, "resnet50")`` loads; cached
    by torch hub). Wrappers and ``module.`` prefixes are removed, ``fc`` dropped."""
    if path is not None:
        return unwrap_state_dict(read_checkpoint(path))
    try:
        sd = torch.hub.load_state_dict_from_url(BARLOW_TWINS_RESNET50_URL, map_location="cpu", weights_only=True)
    except OSError as err:  # no network
        raise download_failed(f"barlow twins resnet50 ({BARLOW_TWINS_RESNET50_URL})", err) from err
    return unwrap_state_dict(sd)


def load_barlow_twins(backbone: Backbone, path: str | os.PathLike | None = None) -> LoadReport:
    """Load the official Barlow Twins ResNet-50 into ``backbone.model`` (``resnet50`` whole; ``botnet50``: all but
    the replaced layer4 3x3 convolutions, whose MHSA stays at init). Returns the :class:`LoadReport`."""
    source = str(path) if path is not None else BARLOW_TWINS_RESNET50_URL
    return load_matching(backbone.model, barlow_twins_state_dict(path), source)


def _load_dino_file(backbone: Backbone, path: str | os.PathLike) -> LoadReport:
    """A local official DINO ViT file (timm keys) into a ViT backbone; ``pos_embed`` resampled to its grid."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    sd = checkpoint_filter_fn(unwrap_state_dict(read_checkpoint(path)), backbone.model)
    return load_matching(backbone.model, sd, str(path), min_loaded=0.99)


def published_backbone(init: str, name: str, path: str | os.PathLike | None = None,
                       **kwargs) -> tuple[Backbone, LoadReport]:
    """``(backbone, report)``: registry backbone ``name`` (kwargs: e.g. ``img_size``) with the published ``init``
    (a key of :data:`PUBLISHED`), from ``path`` when given (offline), else downloaded from the official source."""
    from rtsseg.models.registry import build_backbone

    if init not in PUBLISHED:
        raise KeyError(f"unknown published initialisation {init!r}; known: {sorted(PUBLISHED)}")
    spec = PUBLISHED[init]
    if name not in spec.backbones:
        raise ValueError(f"published {init!r} weights exist for {list(spec.backbones)}, not {name!r}")
    if init == "barlow twins":
        backbone = build_backbone(name, None, **kwargs)
        return backbone, load_barlow_twins(backbone, path)
    if path is not None:
        backbone = build_backbone(name, None, **kwargs)
        return backbone, _load_dino_file(backbone, path)
    backbone = build_backbone(name, "dino", **kwargs)  # timm's tag: loaded and checked by timm itself
    report = LoadReport(f"timm {name} dino", loaded=sorted(backbone.model.state_dict()))
    log.info(report.summary())
    return backbone, report


__all__ = ["PUBLISHED", "Published", "LoadReport", "load_matching", "barlow_twins_state_dict", "load_barlow_twins",
           "published_backbone", "BARLOW_TWINS_HUB", "BARLOW_TWINS_RESNET50_URL"]
