"""Loading weights into a Backbone: our own checkpoints, official DINO / timm / torchvision state dicts.

Our checkpoint: a ``.pt`` dict with ``backbone`` = ``Backbone.state_dict()`` -> loaded strictly.
Anything else is read as an external state dict in the layout of the wrapped timm model (DINO's official
``dino_deitsmall16_pretrain.pth`` / ``dino_resnet50_pretrain.pth`` have exactly timm's ViT / ResNet keys):
wrappers ``teacher`` / ``student`` / ``state_dict`` / ``model`` are unwrapped, prefixes ``module.`` and
``backbone.`` stripped, classifier / DINO-head keys dropped, then loaded into ``backbone.model``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

import torch

from rtsseg.errors import DataError

OFFLINE_FIX = ("pretrained weights need internet (e.g. run on Colab). Offline, download the file elsewhere and "
               "pass its path: build_backbone(name, weights='/path/to/file.pth') -- either our checkpoint "
               "(a dict with 'backbone') or an official DINO / timm state dict")

_WRAPPERS = ("teacher", "student", "state_dict", "model")
_PREFIXES = ("module.", "backbone.")
_DROPPED = re.compile(r"^(head\.|fc\.|head_dist\.)")  # classifier / DINO projection head, not part of a Backbone


class WeightsError(DataError):
    """Weights cannot be downloaded, read, or do not fit the backbone."""


def download_failed(tag: str, err: BaseException) -> WeightsError:
    """The error to raise when a pretrained download fails (no network)."""
    return WeightsError(tag, f"cannot download pretrained weights ({type(err).__name__}: {err})", OFFLINE_FIX)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load(path, weights_only=True)`` on CPU, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(path, "weights file not found", "pass an existing .pt/.pth file, or weights=None|'imagenet'|'dino'")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- any unpickling failure means the file is unusable
        raise WeightsError(path, f"cannot read checkpoint ({type(err).__name__}: {err})",
                           "re-save it with torch.save(dict_of_tensors, path)") from err
    if not isinstance(ckpt, Mapping):
        raise WeightsError(path, f"checkpoint is a {type(ckpt).__name__}, not a dict", "save a state dict")
    return dict(ckpt)


def unwrap_state_dict(ckpt: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Official-checkpoint layout -> plain timm keys (DINO ``teacher``/``backbone.`` wrappers removed)."""
    sd: Mapping = ckpt
    for key in _WRAPPERS:
        if key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
            break
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        if not _DROPPED.match(k):
            out[k] = v
    return out


def load_backbone_checkpoint(backbone: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load ``path`` into ``backbone``: our ``{'backbone': state_dict}`` strictly, else an external state dict."""
    ckpt = read_checkpoint(path)
    if "backbone" in ckpt and isinstance(ckpt["backbone"], Mapping):
        _load_strict(backbone, ckpt["backbone"], path)
    else:
        load_external(backbone, unwrap_state_dict(ckpt), path)


def _load_strict(module: torch.nn.Module, sd: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise WeightsError(path, f"checkpoint does not fit backbone {getattr(module, 'name', '')!r}: {err}",
                           "build the backbone with the same name and kwargs as the run that saved it") from err


def load_external(backbone: torch.nn.Module, sd: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Load a timm-layout state dict into ``backbone.model``.

    ViT: timm's ``checkpoint_filter_fn`` resamples ``pos_embed`` to the model's grid. BoTNet: a ResNet-50
    state dict fits except the replaced ``layer4.*.conv2`` (ResNet key dropped, MHSA keys keep their init).
    Every other missing or unexpected key is an error naming the file.
    """
    model = backbone.model
    family = getattr(backbone, "family", "")
    if family == "vit":
        from timm.models.vision_transformer import checkpoint_filter_fn
        sd = checkpoint_filter_fn(sd, model)
    allowed_missing: re.Pattern | None = None
    if family == "botnet":
        sd = {k: v for k, v in sd.items() if not re.match(r"^layer4\.\d+\.conv2\.weight$", k)}
        allowed_missing = re.compile(r"^layer4\.\d+\.conv2\.")
    own = model.state_dict()
    bad_shape = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if bad_shape:
        raise WeightsError(path, f"tensor shapes differ for {bad_shape[:5]}", "use weights made for this backbone")
    result = model.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not (allowed_missing and allowed_missing.match(k))]
    if missing or result.unexpected_keys:
        raise WeightsError(path, f"state dict does not fit {getattr(backbone, 'name', '')!r}: missing "
                           f"{missing[:5]} (of {len(missing)}), unexpected {result.unexpected_keys[:5]} "
                           f"(of {len(result.unexpected_keys)})", "use weights made for this backbone")
