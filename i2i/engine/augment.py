"""DiffAugment: differentiable augmentation of everything the discriminator sees (Zhao et al. 2020).

"Differentiable Augmentation for Data-Efficient GAN Training" (NeurIPS 2020; reference code
github.com/mit-han-lab/data-efficient-gans, ``DiffAugment_pytorch.py``) augments the real *and* the
generated images with the same policy, in the discriminator step *and* in the generator step, with
ops the generator's gradient flows through. Augmenting reals only (or D only) lets the generator
learn the augmented distribution or leaves D and G out of step; the paper shows both fail.

What "identically" means, read from the reference code: ``D(DiffAugment(reals, policy))`` and
``D(DiffAugment(fakes, policy))`` are two calls, each drawing its own random parameters per image.
Reals and fakes go through the *same transformations drawn from the same distributions*, not
through the same draws. :class:`DiffAugment` follows it: every call draws fresh per-sample
parameters. Where a caller needs one draw for two batches (feature matching compares the
discriminator's features of a real and a fake image position by position), it stacks them along
the channels and augments once (:meth:`DiffAugment.pair`).

The policies (the reference's, on images in [-1, 1]):

- ``color``: brightness ``x + U(-0.5, 0.5)``; saturation ``(x - mean_c) * U(0, 2) + mean_c`` (the
  mean over an image's channels, per pixel); contrast ``(x - mean) * U(0.5, 1.5) + mean`` (the mean
  over the whole image). Not clamped, as in the reference (clamping would cut the generator's
  gradient at bright and dark pixels).
- ``translation``: shifts of up to 1/8 of the height and width, zero padding. kornia's
  ``RandomTranslate`` with nearest sampling (whole-pixel shifts, as the reference's gather).
- ``cutout``: one square of half the side set to zero. kornia's ``RandomErasing`` with area 1/4 and
  aspect 1; the reference lets the square hang over the border, kornia keeps it inside the image.

Built on :mod:`kornia.augmentation` (its parameter generators, per-sample batching and replay):
kornia's own colour ops clamp to [0, 1] and its saturation works in HSV, so the three colour ops
are small kornia ``IntensityAugmentationBase2D`` subclasses with the reference's formulas.

Discriminator inputs often stack several images and masks (pix2pix: input A and output B, 6
channels; inpainting: image and mask, 4). A *layout* says which channels are which: a tuple of
ints, a positive ``n`` for an image of ``n`` channels and a negative ``-n`` for ``n`` channels that
are not colours (a mask). Colour ops change images only, each image on its own channel mean; the
geometric ops move every channel of a sample together, so a pair stays aligned and a mask keeps
covering its hole. One sample's colour factors are shared by all its images.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import I2IError

#: the policies and, for the docs and errors, what each does
POLICIES = {
    "color": "brightness, saturation and contrast",
    "translation": "shifts of up to 1/8 of the side, zero padding",
    "cutout": "a zeroed square of half the side",
}


def parse_policy(policy: str, key: str = "diffaugment") -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> its ops in that order; unknown names are a one-line error."""
    items = [p.strip() for p in policy.split(",")] if policy.strip() else []
    if "" in items:
        raise I2IError(f"{key}={policy!r} has an empty item; give policy names separated by single commas, "
                       f"e.g. color,translation,cutout")
    names = tuple(items)
    for n in names:
        if n not in POLICIES:
            from ..errors import did_you_mean

            raise I2IError(f"{key}={policy!r}: unknown policy {n!r}{did_you_mean(n, POLICIES)}; choose from "
                           f"{', '.join(POLICIES)} (comma-separated, e.g. color,translation,cutout)")
    if len(set(names)) != len(names):
        raise I2IError(f"{key}={policy!r} names a policy twice")
    return names


def _image_mask(layout: Sequence[int], channels: int, device: torch.device) -> list[tuple[int, int]]:
    """(start, stop) of every image's channels; checks the layout covers the tensor's channels."""
    total = sum(abs(n) for n in layout)
    if total != channels:
        raise I2IError(f"DiffAugment layout {tuple(layout)} describes {total} channels, the input has {channels}")
    spans, start = [], 0
    for n in layout:
        if n > 0:
            spans.append((start, start + n))
        start += abs(n)
    return spans


@functools.lru_cache(maxsize=None)
def _colour_classes() -> tuple[type, type, type]:
    """The reference's three colour ops as kornia augmentations (p=1, per-sample factors drawn by
    kornia's generator), made once on first use so that importing this module does not import kornia.
    Each changes the images of its ``layout`` (set by :class:`DiffAugment` per call), never masks."""
    from kornia.augmentation import IntensityAugmentationBase2D
    from kornia.augmentation import random_generator as rg

    class Colour(IntensityAugmentationBase2D):  # type: ignore[misc]
        low: float
        high: float
        key: str

        def __init__(self) -> None:
            super().__init__(p=1.0, same_on_batch=False, keepdim=False)
            self._param_generator = rg.PlainUniformGenerator(
                (torch.tensor([self.low, self.high]), self.key, None, None))
            self.layout: tuple[int, ...] = ()

        def apply_transform(self, input: torch.Tensor, params: dict[str, torch.Tensor], flags: dict[str, Any],
                            transform: torch.Tensor | None = None) -> torch.Tensor:
            f = params[self.key].to(input.device, input.dtype).view(-1, 1, 1, 1)
            parts, last = [], 0
            for a, b in _image_mask(self.layout or (input.shape[1],), input.shape[1], input.device):
                parts += [input[:, last:a], self.op(input[:, a:b], f)]
                last = b
            parts.append(input[:, last:])
            return torch.cat(parts, dim=1)

        def op(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
            raise NotImplementedError

    class Brightness(Colour):
        low, high, key = -0.5, 0.5, "brightness"

        def op(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
            return x + f

    class Saturation(Colour):
        low, high, key = 0.0, 2.0, "saturation"

        def op(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
            mean = x.mean(dim=1, keepdim=True)  # per pixel, over this image's channels
            return (x - mean) * f + mean

    class Contrast(Colour):
        low, high, key = 0.5, 1.5, "contrast"

        def op(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)  # over the whole image
            return (x - mean) * f + mean

    return Brightness, Saturation, Contrast


class DiffAugment(nn.Module):
    """``DiffAugment("color,translation,cutout")(x, layout)``: x ``(N, C, H, W)`` float in
    ``value_range``; returns the same shape, differentiable in x.

    The reference works on images in [-1, 1] (its brightness shift, and its zero padding and cutout
    fill, which are mid-grey there); images in another ``value_range`` are mapped to [-1, 1] and back
    around the ops, so a [0, 1] discriminator input gets the same augmentation, not a black border.
    Every call draws new parameters per sample (as the reference). ``layout`` (see the module
    docstring) says which channels are images; None: all channels are one image.
    """

    def __init__(self, policy: str, translation_ratio: float = 0.125, cutout_ratio: float = 0.5,
                 value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        import kornia.augmentation as K

        self.policy = parse_policy(policy)
        lo, hi = float(value_range[0]), float(value_range[1])
        self.mid, self.half = (lo + hi) / 2, (hi - lo) / 2
        ops: list[nn.Module] = []
        self._colour: list[nn.Module] = []
        for name in self.policy:
            if name == "color":
                self._colour = [cls() for cls in _colour_classes()]
                ops += self._colour
            elif name == "translation":
                r = translation_ratio
                ops.append(K.RandomTranslate(translate_x=(-r, r), translate_y=(-r, r), resample="nearest",
                                             padding_mode="zeros", p=1.0))
            else:  # cutout: a square of cutout_ratio of the side, i.e. cutout_ratio^2 of the area
                a = cutout_ratio**2
                ops.append(K.RandomErasing(scale=(a, a), ratio=(1.0, 1.0), value=0.0, p=1.0))
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, layout: Sequence[int] | None = None) -> torch.Tensor:
        if not self.ops:
            return x
        layout = tuple(layout) if layout else (x.shape[1],)
        _image_mask(layout, x.shape[1], x.device)  # a layout that does not fit is an error here
        for op in self._colour:
            op.layout = layout
        dtype = x.dtype
        y = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # kornia's warps want fp32
        unit = (self.mid, self.half) == (0.0, 1.0)
        if not unit:
            y = (y - self.mid) / self.half
        for op in self.ops:
            y = op(y)
        if not unit:
            y = y * self.half + self.mid
        return y.to(dtype)

    def pair(self, a: torch.Tensor, b: torch.Tensor, layout: Sequence[int] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``a`` and ``b`` (same shape) through one draw: sample i of both gets the same shift,
        cutout and colour factors (stacked along the channels, augmented once, split)."""
        layout = tuple(layout) if layout else (a.shape[1],)
        y = self(torch.cat([a, b], dim=1), layout + layout)
        return y[:, : a.shape[1]], y[:, a.shape[1]:]

    def extra_repr(self) -> str:
        return ",".join(self.policy)


__all__ = ["DiffAugment", "POLICIES", "parse_policy"]
