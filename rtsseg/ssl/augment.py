"""Barlow Twins augmentations on whole batches of tensors (any device), with the official parameters.

Per view, in the official order: RandomResizedCrop(scale (0.08, 1), ratio (3/4, 4/3)) + horizontal flip
-> ColorJitter(0.4, 0.4, 0.2, 0.1) with p 0.8 -> grayscale p 0.2 -> Gaussian blur σ ~ U[0.1, 2.0] with
p 1.0 (view 1) / 0.1 (view 2) -> solarisation p 0.0 (view 1) / 0.2 (view 2) -> normalisation.

Deviations from the per-image PIL pipeline of facebookresearch/barlowtwins, by design:
- crop, resize and flip are one ``F.grid_sample`` per batch with a per-sample affine grid, **bilinear**
  (the paper uses bicubic) and without antialiasing (matters only when shrinking a large crop);
- the four jitter operations are applied in a random order drawn **per batch and view** (torchvision
  draws one per image); the factors and the p = 0.8 decision are per sample; hue is shifted in HSV as
  torchvision does;
- the blur is Lindeberg's discrete Gaussian (variance exactly σ², also below one pixel), reflect padding,
  renormalised; PIL's ``GaussianBlur(radius=σ)`` is a
  box-filter approximation. The σ range (0.1, 2.0) is the official one *for 224 px images*; it is scaled by
  ``image_size / blur_sigma_size`` (default 224), so the blur removes the same share of the image's
  frequencies at any size (2 px at 64 px would be 7 px at 224 px). The kernel radius is ``ceil(3 σ_max) + 1``
  of the applied range (never truncating before 3 σ; the extra tap keeps sub-pixel σ exact to ~1 %): 7 taps
  at 64 px, 15 at 224 px;
- solarisation inverts values >= 128/255 (PIL's threshold 128 on uint8).

All random numbers come from one CPU ``torch.Generator`` (per-sample parameters only, a few floats per
image) and are then moved to the images' device, so results are reproducible on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from rtsseg.models.backbone import IMAGENET_MEAN, IMAGENET_STD

_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL and torchvision


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64) * (hi - lo) + lo  # [n] (CPU)


def _bernoulli(n: int, p: float, g: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=g) < p  # [n] bool (CPU); p = 0 -> all False, p = 1 -> all True


def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    attempts: int = 10,
) -> torch.Tensor:
    """Per-sample RandomResizedCrop boxes with torchvision's rule, vectorised over the batch.

    Up to ``attempts`` draws of (area fraction, log aspect ratio); the first that fits wins, else the
    central crop with the aspect clamped to ``ratio``. Returns float64 [n, 4] = (top, left, h, w) pixels.
    """
    area = float(height * width)
    target = area * _uniform(n * attempts, *scale, generator).view(n, attempts)  # [n, A]
    log_r = _uniform(n * attempts, math.log(ratio[0]), math.log(ratio[1]), generator).view(n, attempts)
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect))  # [n, A]
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # [n, A]
    first = ok.to(torch.int64).argmax(dim=1, keepdim=True)  # [n, 1] first fitting attempt (0 if none)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)  # [n]
    u_top, u_left = _uniform(n, 0, 1, generator), _uniform(n, 0, 1, generator)
    top = torch.floor(u_top * (height - h + 1)).clamp(max=height - h)
    left = torch.floor(u_left * (width - w + 1)).clamp(max=width - w)
    # fallback: central crop, aspect ratio clamped into `ratio`
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    none_ok = ~ok.any(dim=1)
    h = torch.where(none_ok, float(fh), h)
    w = torch.where(none_ok, float(fw), w)
    top = torch.where(none_ok, float((height - fh) // 2), top)
    left = torch.where(none_ok, float((width - fw) // 2), left)
    return torch.stack([top, left, h, w], dim=1)


def resized_crop_flip(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int) -> torch.Tensor:
    """Crop ``boxes`` (top, left, h, w) [B, 4], resize to ``size`` (bilinear) and mirror where ``flip`` [B].

    x: float [B, C, H, W] -> [B, C, size, size]; one ``grid_sample`` (align_corners=False pixel geometry).
    """
    b, c, height, width = x.shape
    boxes = boxes.to(device=x.device, dtype=torch.float32)
    top, left, h, w = boxes.unbind(1)
    sx, sy = w / width, h / height  # half-extent in normalised coordinates
    cx, cy = (2 * left + w) / width - 1, (2 * top + h) / height - 1
    sx = torch.where(flip.to(x.device), -sx, sx)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, cx], 1), torch.stack([zero, sy, cy], 1)], 1)  # [B, 2, 3]
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)  # [B, size, size, 2]
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """[n, 3, H, W] -> luma [n, 1, H, W]."""
    r, g, b = x.unbind(1)
    return (_GRAY[0] * r + _GRAY[1] * g + _GRAY[2] * b).unsqueeze(1)


def _per_sample(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return f.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * _per_sample(f, x)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    mean = to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)  # [n, 1, 1, 1]
    f = _per_sample(f, x)
    return (f * x + (1 - f) * mean).clamp_(0, 1)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = _per_sample(f, x)
    return (f * x + (1 - f) * to_grayscale(x)).clamp_(0, 1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """[n, 3, H, W] in [0, 1] -> HSV [n, 3, H, W], hue in [0, 1)."""
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    delta = maxc - minc
    gray = delta == 0
    safe_delta = torch.where(gray, torch.ones_like(delta), delta)
    s = delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    rc, gc, bc = (maxc - r) / safe_delta, (maxc - g) / safe_delta, (maxc - b) / safe_delta
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(gray, torch.zeros_like(h), h)
    h = torch.remainder(h / 6.0, 1.0)
    return torch.stack([h, s, maxc], dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV [n, 3, H, W] -> RGB [n, 3, H, W]."""
    h, s, v = x.unbind(1)
    h6 = h * 6.0
    sector = torch.floor(h6)
    frac = h6 - sector
    sector = sector.to(torch.int64).remainder(6)  # [n, H, W]
    p, q, t = v * (1 - s), v * (1 - s * frac), v * (1 - s * (1 - frac))
    # rows: sector 0..5; for each, (r, g, b) picks among (v, t, p, q)
    r = torch.stack([v, q, p, p, t, v], dim=1)
    g = torch.stack([t, v, v, q, p, p], dim=1)
    b = torch.stack([p, p, t, v, v, q], dim=1)
    idx = sector.unsqueeze(1)  # [n, 1, H, W]
    return torch.cat([r.gather(1, idx), g.gather(1, idx), b.gather(1, idx)], dim=1)


def adjust_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + f.to(device=x.device, dtype=x.dtype).view(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], dim=1)).clamp_(0, 1)


def discrete_gaussian_kernel(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Lindeberg's discrete Gaussian T(k; t) = exp(-t) I_k(t), t = σ², for k = -radius..radius, renormalised.

    Unlike the sampled exp(-k²/2σ²), its variance is exactly σ² for every σ (before the truncation at
    ``radius``), also below one pixel, where a sampled Gaussian is nearly the identity (σ = 0.29 px
    sampled applies ~0.07 px). That matters once σ is scaled down to small images. sigma [n] -> float64
    [n, 2 radius + 1]; I_k by its power series (t <= ~20 here, 60 terms are exact to float64).
    """
    t = sigma.double().clamp_min(1e-6).pow(2).view(-1, 1, 1)  # [n, 1, 1]
    order = torch.arange(-radius, radius + 1, dtype=torch.float64).abs().view(1, -1, 1)  # [1, k, 1]
    j = torch.arange(60, dtype=torch.float64).view(1, 1, -1)  # series index [1, 1, J]
    log_terms = (2 * j + order) * torch.log(t / 2) - torch.lgamma(j + 1) - torch.lgamma(j + order + 1)
    kernel = torch.exp(log_terms - t).sum(dim=2)  # [n, k] = exp(-t) I_|k|(t)
    return kernel / kernel.sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int, kernel: str = "sampled") -> torch.Tensor:
    """Separable Gaussian blur with one σ per sample. x [n, C, H, W], sigma [n] -> [n, C, H, W].

    kernel "sampled": exp(-k²/2σ²) renormalised (torchvision's); "discrete": :func:`discrete_gaussian_kernel`
    (exact variance σ², used by :class:`BarlowTwinsAugment`).
    """
    n, c, height, width = x.shape
    radius = kernel_size // 2
    if kernel == "discrete":
        weights = discrete_gaussian_kernel(sigma, radius).to(device=x.device, dtype=x.dtype)  # [n, k]
    elif kernel == "sampled":
        pos = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)  # [k]
        weights = torch.exp(-0.5 * (pos / sigma.to(device=x.device, dtype=x.dtype).view(-1, 1)) ** 2)  # [n, k]
        weights = weights / weights.sum(dim=1, keepdim=True)
    else:
        raise ValueError(f"kernel must be 'sampled' or 'discrete', got {kernel!r}")
    kernel = weights.repeat_interleave(c, dim=0)  # [n*C, k]
    y = x.reshape(1, n * c, height, width)
    y = F.pad(y, (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, height, width)


def solarize(x: torch.Tensor, threshold: float = 128 / 255) -> torch.Tensor:
    return torch.where(x >= threshold, 1.0 - x, x)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


class BarlowTwinsAugment:
    """``aug(x uint8|float [B, 3, H, W]) -> (view1, view2)``, each float32 [B, 3, S, S] normalised.

    uint8 inputs are scaled by 1/255, float inputs must already be in [0, 1]. ``blur_p``,
    ``solarize_p`` are (view 1, view 2) pairs. ``blur_sigma`` is the σ range for ``blur_sigma_size`` px images
    (None: for ``image_size``); ``applied_blur_sigma`` is the range in pixels of the output views. ``generator`` (CPU) makes the draws reproducible; a
    ``generator`` passed to ``__call__`` overrides it for that call.
    """

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_p: tuple[float, float] = (1.0, 0.1),
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        blur_kernel_size: int | None = None,
        blur_sigma_size: int | None = 224,
        solarize_p: tuple[float, float] = (0.0, 0.2),
        generator: torch.Generator | None = None,
    ) -> None:
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.image_size = int(image_size)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.scale, self.ratio, self.flip_p = scale, ratio, flip_p
        self.jitter, self.jitter_p, self.grayscale_p = jitter, jitter_p, grayscale_p
        self.blur_p, self.blur_sigma, self.solarize_p = blur_p, blur_sigma, solarize_p
        # σ range as applied at this image size: blur_sigma refers to blur_sigma_size px (None: to image_size)
        factor = 1.0 if blur_sigma_size is None else self.image_size / float(blur_sigma_size)
        self.applied_blur_sigma = (blur_sigma[0] * factor, blur_sigma[1] * factor)
        # radius ceil(3 σ_max) + 1: at least 3 σ, and one more tap so sub-pixel σ keep their tails
        need = 2 * (math.ceil(3 * self.applied_blur_sigma[1]) + 1) + 1
        k = blur_kernel_size or max(3, need)
        if k % 2 == 0:
            raise ValueError(f"blur_kernel_size must be odd, got {k}")
        if k < need:
            raise ValueError(f"blur_kernel_size {k} is below 2 (ceil(3 σ_max) + 1) + 1 (σ_max "
                             f"{self.applied_blur_sigma[1]:.2f} px at {self.image_size} px needs >= {need}); "
                             "pass a larger odd blur_kernel_size or None")
        self.blur_kernel_size = k
        self.generator = generator

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(x.shape)}")
        g = generator if generator is not None else self.generator
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        v1 = self.view(x, self.blur_p[0], self.solarize_p[0], g)
        v2 = self.view(x, self.blur_p[1], self.solarize_p[1], g)
        return v1, v2

    def view(
        self, x: torch.Tensor, blur_p: float, solarize_p: float, g: torch.Generator | None = None, normalize: bool = True
    ) -> torch.Tensor:
        """One augmented view of float images in [0, 1]: [B, 3, H, W] -> [B, 3, S, S]."""
        b, _, height, width = x.shape
        dev = x.device
        boxes = sample_crop_boxes(b, height, width, self.scale, self.ratio, g)
        flip = _bernoulli(b, self.flip_p, g)
        y = resized_crop_flip(x, boxes, flip, self.image_size).clamp_(0, 1)  # [B, 3, S, S]
        y = self._color_jitter(y, g)
        gray = _bernoulli(b, self.grayscale_p, g)
        if gray.any():
            y = torch.where(gray.to(dev).view(-1, 1, 1, 1), to_grayscale(y).expand(-1, 3, -1, -1), y)
        blur = _bernoulli(b, blur_p, g)
        sigma = _uniform(b, *self.applied_blur_sigma, g)
        if blur.all():
            y = gaussian_blur(y, sigma, self.blur_kernel_size, kernel="discrete")
        elif blur.any():
            idx = blur.nonzero().squeeze(1)
            y[idx.to(dev)] = gaussian_blur(y[idx.to(dev)], sigma[idx], self.blur_kernel_size,
                                           kernel="discrete")
        sol = _bernoulli(b, solarize_p, g)
        if sol.any():
            y = torch.where(sol.to(dev).view(-1, 1, 1, 1), solarize(y), y)
        return self.normalize(y) if normalize else y

    def _color_jitter(self, y: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """ColorJitter with probability ``jitter_p`` per sample; the samples left out get identity factors
        (brightness, contrast, saturation 1: exact; hue 0: an HSV round trip, ~1e-7 rounding)."""
        b = y.shape[0]
        bri, con, sat, hue = self.jitter
        apply = _bernoulli(b, self.jitter_p, g).to(torch.float64)  # [B]
        factors = [
            1 + apply * (_uniform(b, 1 - bri, 1 + bri, g) - 1),
            1 + apply * (_uniform(b, 1 - con, 1 + con, g) - 1),
            1 + apply * (_uniform(b, 1 - sat, 1 + sat, g) - 1),
            apply * _uniform(b, -hue, hue, g),
        ]
        order = torch.randperm(4, generator=g).tolist()  # one random order per batch and view
        if not apply.any():
            return y
        for op_index in order:
            y = _JITTER_OPS[op_index](y, factors[op_index])
        return y

    def normalize(self, y: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=y.device, dtype=y.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=y.device, dtype=y.dtype).view(1, 3, 1, 1)
        return (y - mean) / std

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`: x * std + mean, clamped to [0, 1]."""
        mean = torch.tensor(self.mean, device=y.device, dtype=y.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=y.device, dtype=y.dtype).view(1, 3, 1, 1)
        return (y * std + mean).clamp(0, 1)
