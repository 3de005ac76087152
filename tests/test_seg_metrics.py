"""mIoU from one confusion matrix: hand-computed cases, ignore label, absent classes, shape checks."""

from __future__ import annotations

import math

import pytest
import torch

from rtsseg.seg.metrics import ConfusionMeter, confusion_matrix, scores_from_confusion

TARGET = torch.tensor([[0, 0, 1], [1, 2, 255]])
PRED = torch.tensor([[0, 1, 1], [1, 0, 2]])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(PRED, TARGET, num_classes=3)
    # rows = ground truth, columns = prediction; the void pixel (pred 2) is not counted
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_scores_by_hand():
    s = scores_from_confusion(confusion_matrix(PRED, TARGET, num_classes=3))
    # IoU_0 = 1 / (2 + 2 - 1), IoU_1 = 2 / (2 + 3 - 2), IoU_2 = 0 / (1 + 0 - 0)
    assert s.iou == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert s.miou == pytest.approx(1 / 3)
    assert s.pixel_accuracy == pytest.approx(3 / 5)


def test_ignore_label_excluded():
    # changing the prediction on the void pixel changes nothing
    pred = PRED.clone()
    pred[1, 2] = 0
    assert torch.equal(confusion_matrix(pred, TARGET, 3), confusion_matrix(PRED, TARGET, 3))
    # and a different ignore index is honoured
    cm = confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 7]), num_classes=2, ignore_index=7)
    assert cm.sum().item() == 1


def test_class_absent_from_both_is_left_out():
    s = scores_from_confusion(confusion_matrix(PRED, TARGET, num_classes=5))
    assert math.isnan(s.iou[3]) and math.isnan(s.iou[4])
    assert s.miou == pytest.approx(1 / 3)


def test_class_only_predicted_counts_as_zero():
    s = scores_from_confusion(confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 0]), num_classes=3))
    assert s.iou[1] == 0.0 and s.miou == pytest.approx((0.5 + 0.0) / 2)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="upsample"):
        confusion_matrix(torch.zeros(4, 4, dtype=torch.long), torch.zeros(8, 8, dtype=torch.long), 2)


def test_out_of_range_ids_raise():
    with pytest.raises(ValueError, match="label ids"):
        confusion_matrix(torch.tensor([0]), torch.tensor([5]), 3)
    with pytest.raises(ValueError, match="predicted"):
        confusion_matrix(torch.tensor([4]), torch.tensor([0]), 3)


def test_meter_is_one_matrix_over_the_split():
    meter = ConfusionMeter(num_classes=2)
    # image 1: 1 pixel of class 1, predicted right; image 2: 9 pixels of class 1, all predicted 0
    meter.update(torch.tensor([1, 0, 0, 0]), torch.tensor([1, 0, 0, 0]))
    meter.update(torch.zeros(9, dtype=torch.long), torch.ones(9, dtype=torch.long))
    s = meter.scores()
    # split-level: IoU_0 = 3 / (12 + 3 - 3) = 0.25, IoU_1 = 1 / 10; not the mean of per-image mIoUs
    assert s.iou == pytest.approx([0.25, 0.1])
    assert s.miou == pytest.approx(0.175)
    per_image = (1.0 + 0.0) / 2  # image 1 mIoU 1, image 2 mIoU 0
    assert s.miou != pytest.approx(per_image)


def test_subset_miou_skips_absent_classes():
    import math

    from rtsseg.seg.metrics import subset_miou

    iou = [0.9, 0.0, float("nan"), 0.5]
    assert subset_miou(iou, [1, 2, 3]) == 0.25  # (0.0 + 0.5) / 2: class 2 absent
    assert math.isnan(subset_miou(iou, [2]))
