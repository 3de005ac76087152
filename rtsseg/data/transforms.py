"""Joint transforms of ``(image uint8 [3,H,W], mask int64 [H,W])`` pairs, and a collate for them.

Images resize bilinearly with antialiasing; masks by nearest neighbour (pixel-centre aligned), so
that no new label ids appear. Random transforms draw from an optional ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

Size = int | tuple[int, int]
Pair = tuple[torch.Tensor, torch.Tensor]


def _as_hw(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def output_size(height: int, width: int, size: Size) -> tuple[int, int]:
    """``size`` as ``(h, w)``: an int sets the shorter side and keeps the aspect ratio."""
    if not isinstance(size, int):
        return _as_hw(size)
    if height <= width:
        return size, max(1, round(width * size / height))
    return max(1, round(height * size / width)), size


def resize_image(image: torch.Tensor, size: Size) -> torch.Tensor:
    """Bilinear + antialias resize of ``uint8|float [...,3,H,W]``; dtype is kept."""
    h, w = output_size(image.shape[-2], image.shape[-1], size)
    return TF.resize(image, [h, w], interpolation=InterpolationMode.BILINEAR, antialias=True)


def resize_mask(mask: torch.Tensor, size: Size) -> torch.Tensor:
    """Nearest-neighbour resize of ``int [...,H,W]`` by index gathering (dtype and ids kept)."""
    height, width = mask.shape[-2:]
    h, w = output_size(height, width, size)
    rows = ((torch.arange(h) + 0.5) * (height / h)).long().clamp_(max=height - 1)  # [h]
    cols = ((torch.arange(w) + 0.5) * (width / w)).long().clamp_(max=width - 1)  # [w]
    return mask[..., rows[:, None], cols[None, :]]


class Compose:
    def __init__(self, transforms: Sequence[Callable[[torch.Tensor, torch.Tensor], Pair]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        for t in self.transforms:
            image, mask = t(image, mask)
        return image, mask

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class Resize:
    """Resize image and mask to ``size`` (int = shorter side, or ``(h, w)``)."""

    def __init__(self, size: Size) -> None:
        self.size = size

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        return resize_image(image, self.size), resize_mask(mask, self.size)

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class ImageOnlyResize:
    """Resize the image only; the mask keeps its own resolution (mIoU is scored at label resolution)."""

    def __init__(self, size: Size) -> None:
        self.size = size

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        return resize_image(image, self.size), mask

    def __repr__(self) -> str:
        return f"ImageOnlyResize({self.size})"


class RandomCrop:
    """Crop image and mask at one random place to ``size``; smaller inputs are first padded at the
    bottom/right (image with ``fill``, mask with ``ignore_index``, so padding is never scored)."""

    def __init__(self, size: Size, generator: torch.Generator | None = None, fill: int = 0,
                 ignore_index: int = 255) -> None:
        self.size = _as_hw(size)
        self.generator = generator
        self.fill = fill
        self.ignore_index = ignore_index

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        h, w = self.size
        height, width = mask.shape[-2:]
        pad_h, pad_w = max(0, h - height), max(0, w - width)
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), value=self.fill)
            mask = F.pad(mask, (0, pad_w, 0, pad_h), value=self.ignore_index)
            height, width = height + pad_h, width + pad_w
        top = int(torch.randint(0, height - h + 1, (1,), generator=self.generator))
        left = int(torch.randint(0, width - w + 1, (1,), generator=self.generator))
        return image[..., top:top + h, left:left + w], mask[..., top:top + h, left:left + w]

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class RandomHorizontalFlip:
    """Flip image and mask left-right together with probability ``p``."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        self.p = p
        self.generator = generator

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        if float(torch.rand(1, generator=self.generator)) < self.p:
            return image.flip(-1), mask.flip(-1)
        return image, mask

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def collate(batch: Sequence[tuple]) -> tuple:
    """Stack a list of equal-size items field by field: tensors -> ``[B,...]``, numbers -> ``[B]``.

    Items of different sizes raise ``ValueError`` (resize or crop first, or use ``batch_size=1``).
    """
    if not batch:
        raise ValueError("collate got an empty batch")
    fields = []
    for i, values in enumerate(zip(*batch)):
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"collate needs equal-size items, field {i} has shapes {sorted(shapes)}; "
                    "add Resize/RandomCrop (rtsseg.data.transforms) or use batch_size=1"
                )
            fields.append(torch.stack(values))
        else:
            fields.append(torch.tensor(values))
    return tuple(fields)
