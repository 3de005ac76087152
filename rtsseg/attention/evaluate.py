"""Does attention find the object? Dataset-level scores of per-head 60 %-mass masks against ground truth.

Protocol (after DINO's Fig. 4 / Table 10): for every image and head, the smallest set of tokens holding 60 %
of the head's attention mass is nearest-upsampled to the label's own resolution and compared with the
ground-truth region by Jaccard. Per head, Jaccard is averaged over the images; the *best head* is the head
with the highest dataset mean (one head for the whole data set, not an oracle choice per image), and the
*mean over heads* averages the per-head means. ``mass_in_gt`` is the share of the head-mean attention map
that falls inside the ground truth (the ground truth's area share is its chance level).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from rtsseg.attention.capture import capture_attention
from rtsseg.attention.masks import head_scores


@dataclass
class AttentionScores:
    per_head_jaccard: list[float]  # dataset mean per head
    best_head: int
    best_head_jaccard: float
    mean_head_jaccard: float
    mass_in_gt: float  # mean share of the head-mean map inside the ground truth
    gt_area: float  # mean share of the image covered by the ground truth (chance level of mass_in_gt)
    images: int


@torch.no_grad()
def attention_scores(
    backbone: torch.nn.Module,
    images: torch.Tensor,  # uint8 [N,3,H,W], already at the network's input size
    gts: torch.Tensor,  # bool [N,Hg,Wg], ground-truth regions at the label's own resolution
    layer: str | int | None = None,
    batch_size: int = 64,
    mass: float = 0.6,
    progress: bool = True,
) -> AttentionScores:
    if images.shape[0] != gts.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {gts.shape[0]} ground-truth masks")
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    jac, inside = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="attention", disable=not progress):
        x = backbone.normalize(images[start : start + batch_size].to(device))  # [b,3,H,W]
        maps = capture_attention(backbone, x, layer).float().cpu()  # [b,heads,h,w]
        s = head_scores(maps, gts[start : start + batch_size], mass=mass)
        jac.append(s["jaccard"])  # [b,heads]
        inside.append(s["mass_in_gt"])  # [b]
    backbone.train(was_training)
    per_head = torch.cat(jac).nanmean(dim=0)  # [heads]
    best = int(per_head.argmax())
    return AttentionScores(
        per_head_jaccard=per_head.tolist(),
        best_head=best,
        best_head_jaccard=per_head[best].item(),
        mean_head_jaccard=per_head.mean().item(),
        mass_in_gt=torch.cat(inside).mean().item(),
        gt_area=gts.float().mean().item(),
        images=len(images),
    )


def center_square(image: torch.Tensor, mask: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre square crop of image uint8 [3,H,W] and mask [H,W] (same size); the image is resized to
    ``size`` (bilinear, antialiased), the mask keeps its own resolution (the crop only)."""
    h, w = mask.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = image[:, top : top + side, left : left + side]
    img = F.interpolate(img[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return img[0].round().clamp(0, 255).to(torch.uint8), mask[top : top + side, left : left + side]
