"""mIoU done right: one confusion matrix over the whole split, ignore label dropped, at label resolution.

IoU_c = TP_c / (TP_c + FP_c + FN_c); the mean runs over classes present in the ground truth or the
predictions of the split (classes absent from both have an undefined IoU and are left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def confusion_matrix(
    pred: torch.Tensor,  # [...] int, predicted class ids
    target: torch.Tensor,  # [...] int, same shape; ``ignore_index`` marks void pixels
    num_classes: int,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Return ``[num_classes, num_classes]`` int64 counts, rows = ground truth, columns = prediction."""
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(pred.shape)} and label {tuple(target.shape)} differ: "
            "upsample logits to the label's own resolution before the argmax"
        )
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).long()
    keep = target != ignore_index
    target, pred = target[keep], pred[keep]
    bad = (target < 0) | (target >= num_classes)
    if bad.any():
        raise ValueError(f"label ids {sorted(set(target[bad].tolist()))[:10]} outside [0, {num_classes})")
    if ((pred < 0) | (pred >= num_classes)).any():
        raise ValueError(f"predicted ids outside [0, {num_classes})")
    return torch.bincount(target * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


@dataclass
class SegScores:
    miou: float  # mean IoU over present classes, in [0, 1]
    pixel_accuracy: float  # correctly classified non-void pixels / non-void pixels
    iou: list[float]  # per class; NaN for classes absent from labels and predictions


def scores_from_confusion(cm: torch.Tensor) -> SegScores:
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp  # TP + FP + FN
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    present = union > 0
    miou = iou[present].mean().item() if present.any() else float("nan")
    total = cm.sum().item()
    acc = (tp.sum() / total).item() if total > 0 else float("nan")
    return SegScores(miou=miou, pixel_accuracy=acc, iou=iou.tolist())


class ConfusionMeter:
    """Accumulates a confusion matrix over batches; ``scores()`` gives mIoU for the whole split."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: ``pred`` and ``target`` int ``[...]`` of one shape (counted on ``pred``'s device)."""
        cm = confusion_matrix(pred, target.to(pred.device), self.num_classes, self.ignore_index)
        self.cm += cm.cpu()

    def scores(self) -> SegScores:
        return scores_from_confusion(self.cm)


def subset_miou(iou: "list[float]", classes: "list[int]") -> float:
    """Mean IoU over ``classes`` (e.g. ``rtsseg.data.camvid.THINGS``) of a per-class IoU list, classes absent
    from the split (NaN) left out; NaN when none is present. Why beside mIoU: CamVid's thing classes (pole,
    sign, car, pedestrian, bicyclist) are small and can all sit at 0 while the stuff classes carry the mIoU."""
    vals = [float(iou[c]) for c in classes if not math.isnan(float(iou[c]))]
    return sum(vals) / len(vals) if vals else float("nan")


#: Class weightings of the decoders' cross-entropy (``rtsseg.seg.train.train_decoder``'s ``class_weights``).
CLASS_WEIGHTINGS = ("none", "median_frequency")


def median_frequency_weights(masks, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """Median frequency balancing (Eigen & Fergus 2015; SegNet's loss on CamVid, Badrinarayanan et al. 2017):
    ``w_c = median_c(f_c) / f_c`` with ``f_c`` = pixels of class c / pixels of the images (void left out) in which
    c appears, the median over the classes that appear. Why: CamVid's things (pole, sign, pedestrian,
    bicyclist) are 1-2 % of the pixels, and an unweighted loss leaves them at IoU 0. ``masks``: label maps
    ``[H, W]`` (uint8/int64, ``ignore_index`` = void). Returns float32 ``[num_classes]``; a class absent from
    every mask gets weight 1 (it has no pixel in the loss). A label outside ``0..num_classes-1`` other than void
    is an error naming it."""
    pixels = torch.zeros(num_classes, dtype=torch.float64)
    image_pixels = torch.zeros(num_classes, dtype=torch.float64)
    for m in masks:
        m = torch.as_tensor(m).long().flatten()
        m = m[m != ignore_index]
        if m.numel() and (int(m.min()) < 0 or int(m.max()) >= num_classes):
            raise ValueError(f"a mask holds label {int(m.max()) if int(m.max()) >= num_classes else int(m.min())}, "
                             f"outside 0..{num_classes - 1} and not void ({ignore_index}). Fix: check num_classes "
                             "and the data set's label mapping")
        counts = torch.bincount(m, minlength=num_classes).double()
        pixels += counts
        image_pixels += (counts > 0).double() * m.numel()
    present = pixels > 0
    freq = torch.where(present, pixels / image_pixels.clamp_min(1), torch.ones_like(pixels))
    weights = torch.ones(num_classes, dtype=torch.float64)
    if present.any():
        weights[present] = torch.quantile(freq[present], 0.5) / freq[present]  # the mean of the middle two when even
    return weights.float()

