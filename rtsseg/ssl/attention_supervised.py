"""The attention-supervised positive control: the supervised baseline (:mod:`rtsseg.ssl.supervised`) plus a loss
that pulls the backbone's attention into the object box.

The training step records the backbone's attention maps with gradient (``rtsseg.attention.capture.
AttentionRecorder``, ``attn_layer``) and adds ``attn_loss_weight * box_attention_loss(maps, boxes, image_size,
attn_loss_heads)`` (``rtsseg.attention.supervision``: -log of the attention mass inside the box) over the images
whose augmented box is non-empty; ``attn_loss_kind="contrastive"`` (or ``"both"``) uses (adds) the contrastive form,
which asks each map to fall in its own image's box more than in the batch's other boxes, a loss no
image-independent map can satisfy (the centre blob that -log(mass) alone teaches on centred boxes). Same config (:class:`~rtsseg.ssl.supervised.SupervisedConfig` with
``attn_loss_weight > 0``), same data, same run machinery; its run parent is the caller's
(``rtsseg.experiments.attention_supervised_dir``).

    rtsseg pretrain supervised --attn-loss-weight 1.0 --backbone vit_small64 --run-parent runs/control
"""

from __future__ import annotations

import torch

from rtsseg.ssl.method import register_method
from rtsseg.ssl.supervised import CODE_MODULES, SupervisedMethod

#: the attention modules whose source shapes the control's result (not all of rtsseg.attention)
ATTENTION_CODE = ("rtsseg.ssl.attention_supervised", "rtsseg.attention.capture", "rtsseg.attention.supervision")


def _attention_parts():
    """The attention-supervision API (rtsseg.attention.capture / .supervision), imported on use only."""
    from rtsseg.attention.capture import AttentionRecorder
    from rtsseg.attention.supervision import box_attention_loss, contrastive_box_attention_loss

    return AttentionRecorder, box_attention_loss, contrastive_box_attention_loss


@register_method("attention-supervised")
class AttentionSupervisedMethod(SupervisedMethod):
    """Attention-supervised control: cross-entropy + attn_loss_weight x -log(attention mass in the box)"""

    code_modules = CODE_MODULES + ATTENTION_CODE

    def __init__(self, cfg, data=None, val_data=None) -> None:
        if cfg.attn_loss_weight <= 0:
            raise ValueError(f"the attention-supervised control needs attn_loss_weight > 0, got {cfg.attn_loss_weight}"
                             " (attn_loss_weight = 0 is the supervised baseline)")
        super().__init__(cfg, data, val_data)
        self.recorder_cls, self.mass_loss, self.contrastive_loss = _attention_parts()

    def box_loss(self, maps, boxes, image_size, heads):
        """``attn_loss_kind``: "mass" (-log mass in the box), "contrastive" (own box against the batch's other boxes:
        no image-independent map can satisfy it, rtsseg.attention.supervision) or "both" (their sum)."""
        kind = self.cfg.attn_loss_kind
        loss = maps.sum() * 0.0
        if kind in ("mass", "both"):
            loss = loss + self.mass_loss(maps, boxes, image_size, heads)
        if kind in ("contrastive", "both"):
            loss = loss + self.contrastive_loss(maps, boxes, image_size, heads)
        return loss

    def forward_loss(self, model, x, y, boxes):
        """(logits, cross-entropy, attention loss) with the maps recorded during the one forward."""
        import torch.nn.functional as F

        recorder = self.recorder_cls(self.backbone, layer=self.cfg.attn_layer)
        with recorder:
            logits = model(x)  # [B,classes]
        maps = recorder.maps  # [B,heads,h,w], each map sums to 1, with gradient
        ok = torch.isfinite(boxes).all(1).to(maps.device)  # images whose box survived the crop
        attn = (self.box_loss(maps[ok].float(), boxes.to(maps.device)[ok], self.cfg.image_size,
                              self.cfg.attn_loss_heads) if ok.any() else maps.sum() * 0.0)
        return logits, F.cross_entropy(logits.float(), y), attn


__all__ = ["AttentionSupervisedMethod", "ATTENTION_CODE"]
