"""Counted training FLOPs per image of one step of DINO or Barlow Twins: the equal-FLOPs budget of chapter 3."""

from __future__ import annotations

import torch

from rtsseg.ssl.dino import DINOLoss
from rtsseg.ssl.dino_augment import DinoMultiCrop


def step_flops(
    backbone: str = "vit_small64",
    method: str = "dino",
    image_size: int = 64,
    batch_size: int = 8,
    n_local_crops: int = 6,
    local_size: int | None = None,
    out_dim: int | None = None,
    projector_dims: tuple[int, ...] = (1024, 1024, 1024),
) -> dict:
    """Counted (not timed) FLOPs of one training step per image, with :class:`torch.utils.flop_counter.FlopCounterMode`.

    ``method="dino"``: teacher forward on the 2 global crops + student forward and backward on all 2 + N
    crops (the EMA and optimiser updates, elementwise, are not counted; neither are they for Barlow Twins).
    ``method="barlow_twins"``: forward and backward of backbone + projector on the 2 views.
    Returns ``{"flops_per_image", "forward_flops_per_image", "method", ...}`` (fp32, CPU; counts matmuls
    and convolutions, which is what the counter covers).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from rtsseg.models import build_backbone

    torch.manual_seed(0)
    x = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    if method == "dino":
        from rtsseg.ssl.dino_train import DinoConfig, build_models, crop_spec

        cfg = DinoConfig(backbone=backbone, image_size=image_size, n_local_crops=n_local_crops, local_size=local_size,
                         out_dim=out_dim)
        student, teacher = build_models(cfg)
        aug = DinoMultiCrop(crop_spec(cfg, getattr(student.backbone, "patch_size", 8)))
        crops = aug(x, g)
        loss_fn = DINOLoss(student.head.out_dim, aug.ncrops)
        with FlopCounterMode(display=False) as fwd:
            with torch.no_grad():
                t = teacher(crops[:2])
            s = student(crops)
        forward = fwd.get_total_flops()
        with FlopCounterMode(display=False) as bwd:
            loss_fn(s, t, 0).backward()
        extra = {"n_crops": aug.ncrops, "local_size": aug.spec.local_size, "out_dim": student.head.out_dim}
    elif method == "barlow_twins":
        from rtsseg.ssl.augment import BarlowTwinsAugment
        from rtsseg.ssl.model import BarlowTwins

        model = BarlowTwins(build_backbone(backbone), tuple(projector_dims))
        v1, v2 = BarlowTwinsAugment(image_size)(x, g)
        with FlopCounterMode(display=False) as fwd:
            out = model(v1, v2)
        forward = fwd.get_total_flops()
        with FlopCounterMode(display=False) as bwd:
            out["loss"].backward()
        extra = {"projector_dims": list(projector_dims)}
    else:
        raise ValueError(f"method must be 'dino' or 'barlow_twins', got {method!r}")
    total = forward + bwd.get_total_flops()
    return {"method": method, "backbone": backbone, "image_size": image_size, "flops_per_image": total / batch_size,
            "forward_flops_per_image": forward / batch_size, **extra}


def equal_flops_epochs(reference_epochs: float, reference_flops: float, flops: float) -> float:
    """Epochs of a method costing ``flops`` per image-step that match ``reference_epochs`` of a method costing
    ``reference_flops`` (same images per epoch): the equal-FLOPs budget."""
    return reference_epochs * reference_flops / flops



__all__ = ["step_flops", "equal_flops_epochs"]
