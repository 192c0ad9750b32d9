"""PSNR, SSIM (RGB and Y) and masked L1: the pixel metrics, in float64 torch.

The SR papers' conventions are kept (they are what ``i2i eval sr`` and BENCHMARKS.md report):

- Y channel: ITU-R BT.601 luma of MATLAB's ``rgb2ycbcr``, ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``
  for R, G, B in [0, 1], kept in float (as basicsr), measured with data range 255.
- ``crop_border`` pixels (the SR scale) are removed on every side before measuring.
- PSNR per image, then the mean over images (not the PSNR of the pooled MSE).
- SSIM: Wang et al. 2004 (IEEE TIP 13(4)): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
  over 'valid' windows only (MATLAB ``ssim_index`` and basicsr); on RGB the mean over the channels.
- A one-channel input (Nx1xHxW) is scored on its own channel without any Y conversion, as the papers'
  scripts do for greyscale images; expanding grey to RGB first would scale Y errors by 219/255.

Images are float NxCxHxW in [0, 1]; values are computed in float64 on the 0..255 scale.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor

from i2i.errors import I2IError

#: SSIM window side and sigma (Wang et al. 2004)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5


def to_y(x: Tensor) -> Tensor:
    """Float NxCxHxW in [0, 1] -> float64 Nx1xHxW on the 0..255 scale: BT.601 luma in [16, 235] for
    RGB, the channel itself (x 255) for one-channel images."""
    x = x.double()
    if x.shape[1] == 1:
        return x * 255.0
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def _prepare(output: Tensor | None, target: Tensor | None, crop_border: int, y: bool, name: str) -> tuple[Tensor, Tensor]:
    if output is None or target is None:
        raise I2IError(f"{name} is a paired metric: update(output, target) needs both images")
    if output.shape != target.shape:
        raise I2IError(f"{name}: output {tuple(output.shape)} and target {tuple(target.shape)} differ in shape")
    if output.dim() != 4:
        raise I2IError(f"{name} takes NxCxHxW batches, got shape {tuple(output.shape)}")
    a, b = (to_y(output), to_y(target)) if y else (output.double() * 255.0, target.double() * 255.0)
    if crop_border > 0:
        if min(a.shape[-2:]) <= 2 * crop_border:
            raise I2IError(f"{name}: a {a.shape[-1]}x{a.shape[-2]} image has nothing left after cropping {crop_border} px per side")
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
    return a, b


class _PerImageMean:
    """Per-image values, averaged by compute() (how the papers average over a test set)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def reset(self) -> None:
        self.values = []

    def compute(self) -> float:
        if not self.values:
            raise I2IError("the metric has seen no images yet")
        return float(sum(self.values) / len(self.values))


class PSNR(_PerImageMean):
    """Peak signal-to-noise ratio in dB, ``10 log10(255^2 / MSE)`` per image, then the mean.

    ``y``: on BT.601 luma; ``crop_border``: pixels removed per side; ``max_db``: cap per image
    (None: identical images score ``inf``, as basicsr; i2i eval inpaint caps at 100 dB).
    The formula is one float64 line here rather than torchmetrics' ``peak_signal_noise_ratio``,
    which turns the data range and ln(10) into float32 tensors (about 3e-6 dB off at 30 dB).
    """

    def __init__(self, device: torch.device | None = None, crop_border: int = 0, y: bool = False,
                 max_db: float | None = None) -> None:
        super().__init__()
        self.crop_border, self.y, self.max_db = int(crop_border), y, max_db

    def update(self, output: Tensor | None, target: Tensor | None = None, mask: Tensor | None = None) -> None:
        a, b = _prepare(output, target, self.crop_border, self.y, "psnr_y" if self.y else "psnr")
        for mse in ((a - b) ** 2).reshape(a.shape[0], -1).mean(-1).tolist():
            value = math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
            self.values.append(min(value, self.max_db) if self.max_db is not None else value)


def _gaussian(device: torch.device) -> Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


class SSIM(_PerImageMean):
    """Structural similarity (Wang et al. 2004, IEEE TIP 13(4)) per image, over 'valid' windows.

    Written here (a separable float64 Gaussian filter, 22 multiply-adds a pixel) rather than taken
    from torchmetrics' ``structural_similarity_index_measure``, which pads by reflection and averages
    the padded border windows too (not the papers' figure) and runs a full 11x11 float64 kernel,
    about 6x slower (13.5 s against 2.2 s for four 256x256 RGB pairs on the shared 2-core machine);
    the two agree to 1e-15 on the valid windows. Images need at least 11x11 pixels after ``crop_border``.
    """

    def __init__(self, device: torch.device | None = None, crop_border: int = 0, y: bool = False) -> None:
        super().__init__()
        self.crop_border, self.y = int(crop_border), y

    def update(self, output: Tensor | None, target: Tensor | None = None, mask: Tensor | None = None) -> None:
        import torch.nn.functional as F

        name = "ssim_y" if self.y else "ssim"
        a, b = _prepare(output, target, self.crop_border, self.y, name)
        if min(a.shape[-2:]) < SSIM_WINDOW:
            raise I2IError(f"{name} needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} after cropping, "
                           f"got {a.shape[-1]}x{a.shape[-2]}")
        c = a.shape[1]
        g = _gaussian(a.device)
        rows, cols = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
        stats = F.conv2d(F.conv2d(torch.cat([a, b, a * a, b * b, a * b]), rows, groups=c), cols, groups=c)
        mu_a, mu_b, aa, bb, ab = stats.split(a.shape[0])
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
        ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        self.values += ssim_map.reshape(ssim_map.shape[0], -1).mean(-1).tolist()


class MaskedL1(_PerImageMean):
    """Mean absolute error inside the hole (mask = 1), in [0, 1] units, per image then averaged.

    No library offers a masked L1; it is one line of torch. ``where="hole"`` (default) or ``"all"``
    (the whole image, ignoring the mask).
    """

    def __init__(self, device: torch.device | None = None, where: str = "hole") -> None:
        super().__init__()
        if where not in ("hole", "all"):
            raise I2IError(f"masked_l1: where must be 'hole' or 'all', got {where!r}")
        self.where = where

    def update(self, output: Tensor | None, target: Tensor | None = None, mask: Tensor | None = None) -> None:
        if output is None or target is None or (mask is None and self.where == "hole"):
            raise I2IError("masked_l1 needs update(output, target, mask) with mask Nx1xHxW, 1 = hole")
        err = (output.double() - target.double()).abs()
        for i in range(err.shape[0]):
            if self.where == "all":
                self.values.append(float(err[i].mean()))
                continue
            hole = (mask[i] > 0.5).expand_as(err[i])  # type: ignore[index]
            self.values.append(float(err[i][hole].mean()) if hole.any() else 0.0)


psnr = partial(PSNR, y=False)
psnr_y = partial(PSNR, y=True)
ssim = partial(SSIM, y=False)
ssim_y = partial(SSIM, y=True)
masked_l1 = MaskedL1
