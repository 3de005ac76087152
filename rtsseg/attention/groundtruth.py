"""Ground-truth sets for the attention chapter: images at the network's input size, ground-truth regions at
the label's own resolution (never resized), and for Tiny-ImageNet the boxes in input pixels (for the
attention-supervision loss).

- Tiny-ImageNet val boxes: filled boxes at the 64 px label resolution; images with a known box, evenly spaced
  over the split. The boxes cover half of the image on average, so a uniform map's 60 %-mass mask already
  scores a Jaccard of ~35; the **small-box subset** (boxes under 30 % of the image) is where chance is low.
- CamVid val *things* (pole, sign, car, pedestrian, bicyclist): the centre square crop, the image resized to
  the input size, the label cropped only; crops with fewer than ``min_fraction`` things pixels are left out
  (and counted).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rtsseg.attention.masks import box_mask, class_mask


@dataclass
class GroundTruthSet:
    """images uint8 [N, 3, S, S] (network input size); gts bool [N, H, W] (label resolution); boxes float
    [N, 4] x0, y0, x1, y1 inclusive pixels of the S px input (None for CamVid); index: positions in the
    source split; left_out: images dropped by the set's rule."""

    name: str
    images: torch.Tensor
    gts: torch.Tensor
    index: torch.Tensor
    boxes: torch.Tensor | None = None
    left_out: int = 0

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def gt_area(self) -> float:
        """Mean share of the image covered by the ground truth."""
        return float(self.gts.float().mean())

    def subset(self, keep: torch.Tensor, name: str | None = None) -> "GroundTruthSet":
        keep = torch.as_tensor(keep)
        return GroundTruthSet(name or self.name, self.images[keep], self.gts[keep], self.index[keep],
                              None if self.boxes is None else self.boxes[keep],
                              self.left_out + (len(self) - int(keep.sum() if keep.dtype == torch.bool else len(keep))))


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> uint8 [N, 3, size, size] (bilinear, antialiased); unchanged at that size."""
    if images.shape[-2:] == (size, size):
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def scale_boxes(boxes: torch.Tensor, from_size: int, to_size: int) -> torch.Tensor:
    """Inclusive pixel boxes x0, y0, x1, y1 from a ``from_size`` to a ``to_size`` square image: the pixel
    interval [x0, x1 + 1) scales to [x0 s, (x1 + 1) s), i.e. x1' = (x1 + 1) s - 1."""
    s = to_size / from_size
    out = boxes.clone().float()
    out[:, :2] = boxes[:, :2] * s
    out[:, 2:] = (boxes[:, 2:] + 1) * s - 1
    return out


def box_area_fraction(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Share of a ``size`` px square image covered by inclusive pixel boxes [N, 4] -> [N]."""
    w = (boxes[:, 2].clamp(max=size - 1) - boxes[:, 0].clamp(min=0) + 1).clamp(min=0)
    h = (boxes[:, 3].clamp(max=size - 1) - boxes[:, 1].clamp(min=0) + 1).clamp(min=0)
    return w * h / size**2


def evenly_spaced(candidates: torch.Tensor, n: int) -> torch.Tensor:
    """Up to ``n`` of the candidate indices, evenly spaced (deterministic, spread over the split)."""
    if len(candidates) == 0:
        return candidates
    return candidates[torch.linspace(0, len(candidates) - 1, min(n, len(candidates))).long()]


def tiny_imagenet_boxes(images: torch.Tensor, boxes: torch.Tensor, n_images: int, image_size: int,
                        max_area: float | None = None, name: str | None = None) -> GroundTruthSet:
    """Tiny-ImageNet val images uint8 [N, 3, 64, 64] and boxes [N, 4] (NaN: unknown) -> the box set.

    Keeps images with a known box (and, with ``max_area``, a box covering less than that share of the image),
    then ``n_images`` of them evenly spaced. gts are the filled boxes at 64 px; ``boxes`` are scaled to
    ``image_size``."""
    label_size = images.shape[-1]
    known = ~boxes.isnan().any(dim=1)
    ok = known.clone()
    if max_area is not None:
        ok &= torch.nan_to_num(box_area_fraction(torch.nan_to_num(boxes), label_size), nan=1.0) < max_area
    idx = evenly_spaced(ok.nonzero().flatten(), n_images)
    gts = torch.stack([box_mask(b, (label_size, label_size)) for b in boxes[idx]]) if len(idx) else \
        torch.zeros(0, label_size, label_size, dtype=torch.bool)
    default = "Tiny-ImageNet boxes" if max_area is None else f"Tiny-ImageNet boxes < {max_area:.0%}"
    return GroundTruthSet(name or default, resize_images(images[idx], image_size), gts, idx,
                          scale_boxes(boxes[idx], label_size, image_size), left_out=int((~ok).sum()))


def camvid_things(dataset, n_images: int, image_size: int, min_fraction: float = 0.01,
                  things: list[int] | None = None, name: str = "CamVid things") -> GroundTruthSet:
    """The first ``n_images`` items ``(image uint8 [3, H, W], labels int64 [H, W])`` of a CamVid split ->
    centre square crops: image resized to ``image_size``, things mask (``camvid.THINGS`` by default) at the
    crop's own resolution. Crops with fewer than ``min_fraction`` things pixels are left out and counted."""
    from rtsseg.data import camvid  # data layer: lower than attention

    ids = camvid.THINGS if things is None else things
    imgs, gts, index, left_out = [], [], [], 0
    for i in range(min(n_images, len(dataset))):
        image, labels = dataset[i]
        img, lab = center_square(image, labels, image_size)
        mask = class_mask(lab, ids)
        if mask.float().mean() < min_fraction:
            left_out += 1
            continue
        imgs.append(img)
        gts.append(mask)
        index.append(i)
    if not imgs:
        raise ValueError(f"no CamVid crop has >= {min_fraction:.0%} things pixels among the first {n_images}; "
                         "lower min_fraction or pass more images")
    return GroundTruthSet(name, torch.stack(imgs), torch.stack(gts), torch.tensor(index), None, left_out)


def center_square(image: torch.Tensor, mask: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre square crop of image uint8 [3,H,W] and mask [H,W] (same size); the image is resized to
    ``size`` (bilinear, antialiased), the mask keeps its own resolution (the crop only)."""
    h, w = mask.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = image[:, top : top + side, left : left + side]
    return resize_images(img[None], size)[0], mask[top : top + side, left : left + side]
