"""DINO (self-distillation with no labels, Caron et al. 2021) method pieces, after facebookresearch/dino.

    DINOHead          3-layer MLP (GELU) -> bottleneck -> L2 normalisation -> weight-normalised linear layer
    MultiCropWrapper  backbone over the crops grouped by resolution, then the head on all embeddings
    DINOLoss          cross-entropy teacher -> student over all (teacher crop, other student crop) pairs,
                      teacher centering (momentum 0.9, all-reduced under DDP) and sharpening (temperature
                      warm-up), student temperature 0.1; also the collapse monitors of the paper's Fig. 7
    ema_update        teacher <- m * teacher + (1 - m) * student (parameters only, as the official code)
    clip_gradients, cancel_gradients_last_layer, get_params_groups   the official training helpers

Head output width. The official head has K = 65536 prototypes for ViT-S/B on ImageNet (1.28 M images,
1000 classes). Its last layer (bottleneck 256 x K = 16.8 M weights) would be 6x our 2.7 M-parameter
vit_small64 and would dominate a step's FLOPs and memory on 20,000 Tiny-ImageNet images. We scale K with
the backbone width, :func:`default_out_dim` = 16 x the next power of two of ``embed_dim``: 4096 for
dim 192 (vit_small64), 8192 for dim 384 (ViT-S), 16384 for 768. K stays 20-40x above the 200 classes
(the paper's ablation, Table 9 of the arXiv version, shows K from 4096 to 65536 within ~1 k-NN point on
ImageNet), the last layer stays under half the backbone's size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations


def default_out_dim(embed_dim: int) -> int:
    """Number of DINO prototypes K for a backbone of width ``embed_dim`` (see the module docstring)."""
    if embed_dim <= 0:
        raise ValueError(f"embed_dim must be positive, got {embed_dim}")
    return 16 * 2 ** math.ceil(math.log2(embed_dim))


def _trunc_normal_init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class DINOHead(nn.Module):
    """``x [B, in_dim] -> logits [B, out_dim]``.

    MLP ``in_dim -> hidden -> hidden -> bottleneck`` (GELU between, optional BatchNorm), then the
    bottleneck is L2-normalised and fed to a weight-normalised linear layer without bias. With
    ``norm_last_layer`` its gain g is fixed to 1 (rows of unit norm: logits are cosines), which the
    official code recommends for stability with ViTs.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        use_bn: bool = False,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"DINOHead nlayers must be >= 1, got {nlayers}")
        if nlayers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
            for _ in range(nlayers - 2):
                layers += [nn.BatchNorm1d(hidden_dim)] if use_bn else []
                layers += [nn.GELU(), nn.Linear(hidden_dim, hidden_dim)]
            layers += [nn.BatchNorm1d(hidden_dim)] if use_bn else []
            layers += [nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim)]
            self.mlp = nn.Sequential(*layers)
        self.apply(_trunc_normal_init)
        # weight_norm(dim=0): W = g * V / ||V||_row; original0 = g [out, 1], original1 = V [out, bottleneck]
        self.last_layer = parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False), dim=0)
        with torch.no_grad():
            self.last_layer.parametrizations.weight.original0.fill_(1.0)
        if norm_last_layer:
            self.last_layer.parametrizations.weight.original0.requires_grad = False
        self.out_dim, self.norm_last_layer = out_dim, norm_last_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp(x)  # [B, bottleneck]
        x = F.normalize(x, dim=-1, p=2)
        return self.last_layer(x)  # [B, out_dim]


class MultiCropWrapper(nn.Module):
    """``crops: list of [B, 3, S_i, S_i]`` -> head output ``[sum_i B, out_dim]`` in crop order.

    Consecutive crops of the same resolution go through the backbone as one concatenated batch (one
    forward for the 2 global crops, one for the N local crops), then the head runs once on all
    embeddings. A single tensor is treated as one crop.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, crops: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if isinstance(crops, torch.Tensor):
            crops = [crops]
        sizes = torch.tensor([c.shape[-1] for c in crops])
        counts = torch.unique_consecutive(sizes, return_counts=True)[1]
        ends = torch.cumsum(counts, 0).tolist()
        start, feats = 0, []
        for end in ends:
            feats.append(self.backbone(torch.cat(list(crops[start:end]))))  # [(end-start) * B, D]
            start = end
        return self.head(torch.cat(feats))  # [n_crops * B, out_dim]


def teacher_temp_schedule(warmup_teacher_temp: float, teacher_temp: float, warmup_epochs: int, epochs: int) -> torch.Tensor:
    """Per-epoch teacher temperature: linear from ``warmup_teacher_temp`` to ``teacher_temp`` over
    ``warmup_epochs`` epochs (``linspace`` with that many points, as the official code), then constant.
    float64 [max(epochs, warmup_epochs)]."""
    warm = torch.linspace(warmup_teacher_temp, teacher_temp, warmup_epochs, dtype=torch.float64)
    rest = torch.full((max(epochs - warmup_epochs, 0),), teacher_temp, dtype=torch.float64)
    return torch.cat([warm, rest])


class DINOLoss(nn.Module):
    """DINO's loss: teacher crops (the 2 global ones) teach every *other* student crop.

    ``loss = mean over pairs (t, s), s != t, of mean_b  -sum_k P_t[b, k] log P_s[b, k]`` with
    ``P_t = softmax((teacher - center) / tau_t)``, ``P_s = softmax(student / tau_s)``. The centre is an
    EMA (``center_momentum``) of the teacher outputs' batch mean; under DDP the batch mean is
    all-reduced, so every rank keeps the same centre, equal to the single-process one on the global batch.
    The loss itself is per-rank (mean over the local batch); DDP's gradient averaging makes the
    gradient the global-batch one, as in the official code.

    Call ``loss(student_output [n_crops * B, K], teacher_output [2 * B, K], epoch)``; the outputs are
    laid out crop-major (as :class:`MultiCropWrapper` returns them). After the call ``last_stats``
    holds the collapse monitors of the paper's Fig. 7 (detached 0-dim tensors, not read back: the training step
    does not wait for the device; ``teacher_temp`` a float): ``teacher_entropy`` (mean
    entropy of P_t, nats; log K = uniform collapse, 0 = one-hot collapse) and ``kl`` (mean
    KL(P_t || P_s) over the same pairs as the loss; 0 = the student matches, e.g. a collapsed teacher).
    """

    def __init__(
        self,
        out_dim: int,
        ncrops: int,
        warmup_teacher_temp: float = 0.04,
        teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: int = 0,
        nepochs: int = 100,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if ncrops < 2:
            raise ValueError(f"DINOLoss needs at least the 2 global crops, got ncrops={ncrops}")
        self.out_dim, self.ncrops = out_dim, ncrops
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.teacher_temps = teacher_temp_schedule(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, nepochs)
        self.last_stats: dict[str, torch.Tensor | float] = {}

    def teacher_temp_at(self, epoch: int) -> float:
        return float(self.teacher_temps[min(epoch, len(self.teacher_temps) - 1)])

    def forward(self, student_output: torch.Tensor, teacher_output: torch.Tensor, epoch: int) -> torch.Tensor:
        n_teacher = 2
        if student_output.shape[0] % self.ncrops or teacher_output.shape[0] % n_teacher:
            raise ValueError(
                f"DINOLoss: student rows {student_output.shape[0]} not a multiple of ncrops={self.ncrops} or teacher "
                f"rows {teacher_output.shape[0]} not a multiple of 2 (pass the crops crop-major)"
            )
        student_output, teacher_output = student_output.float(), teacher_output.float()  # fp32 softmax under autocast
        student_logp = F.log_softmax(student_output / self.student_temp, dim=-1).chunk(self.ncrops)  # ncrops x [B, K]
        temp = self.teacher_temp_at(epoch)
        teacher_p = F.softmax((teacher_output - self.center) / temp, dim=-1).detach().chunk(n_teacher)  # 2 x [B, K]
        total, n_terms = student_output.new_zeros(()), 0
        for iq, q in enumerate(teacher_p):
            for v, logp in enumerate(student_logp):
                if v == iq:
                    continue  # same view: no self-prediction
                total = total + torch.sum(-q * logp, dim=-1).mean()
                n_terms += 1
        loss = total / n_terms
        with torch.no_grad():
            p = torch.cat(teacher_p)  # [2B, K]
            entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean()
            # every teacher crop is paired with ncrops - 1 student crops, so the pair-mean of H(P_t) is its mean
            self.last_stats = {"teacher_entropy": entropy, "kl": loss.detach() - entropy, "teacher_temp": temp}
        self.update_center(teacher_output)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        """center <- m * center + (1 - m) * mean of the teacher outputs over the global batch."""
        batch_center = teacher_output.detach().float().sum(dim=0, keepdim=True)  # [1, K]
        n = batch_center.new_full((1,), teacher_output.shape[0])  # filled on the device: no host-to-device copy
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(batch_center)
            dist.all_reduce(n)
        batch_center = batch_center / n
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))


@torch.no_grad()
def ema_update(student: nn.Module, teacher: nn.Module, momentum: float) -> None:
    """Teacher parameters <- ``momentum`` * teacher + (1 - ``momentum``) * student (buffers untouched, as
    the official code: BatchNorm statistics of the teacher come from its own forwards)."""
    s_params = [p.detach() for p in student.parameters()]
    t_params = list(teacher.parameters())
    if len(s_params) != len(t_params):
        raise ValueError(f"ema_update: student has {len(s_params)} parameters, teacher {len(t_params)}")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, s_params, alpha=1 - momentum)


@torch.no_grad()
def clip_gradients(model: nn.Module, clip: float) -> torch.Tensor:
    """Official DINO clipping: each parameter's gradient is scaled to norm <= ``clip`` on its own
    (not the global norm of ``clip_grad_norm_``). Returns the per-parameter norms before clipping, float
    [parameters with a gradient] on their device: multi-tensor ops and no read-back, so the step does not wait
    for the device (the official loop's ``if clip_coef < 1`` would)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    norms = torch.stack(torch._foreach_norm(grads))  # [n]
    coef = clip / (norms + 1e-6)  # [n]
    coef = torch.where(coef < 1, coef, torch.ones_like(coef))  # the official branch: gradients within clip untouched
    torch._foreach_mul_(grads, list(coef.unbind()))
    return norms


def cancel_gradients_last_layer(epoch: float, model: nn.Module, freeze_last_layer: float) -> None:
    """Drop the head's last-layer gradients during the first ``freeze_last_layer`` epochs (official trick
    against early instability: the prototypes move only once the features have started to). ``epoch`` may
    be fractional (step / steps per epoch) for runs shorter than a few epochs."""
    if epoch >= freeze_last_layer:
        return
    for name, p in model.named_parameters():
        if "last_layer" in name:
            p.grad = None


def get_params_groups(model: nn.Module) -> list[dict]:
    """AdamW groups as the official code: weight decay on weights, none on biases and 1-d parameters (norms).

    The first group is the regularised one (its weight decay follows the schedule)."""
    regularized, not_regularized = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (not_regularized if name.endswith(".bias") or p.ndim == 1 else regularized).append(p)
    return [{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}]
