"""Image-quality metrics: the plugin kind and the one way to build and run one.

The host knows no particular metric: plugins register them through ``register_metrics`` (the
built-ins live in the ``i2i_metrics`` plugin: PSNR, SSIM, LPIPS, FID, KID, IS, masked L1) and
everything that measures (``i2i eval``, validation during training) goes through :func:`create`::

    m = i2i.metrics.create("psnr_y", crop_border=4)
    m.update(output, target)          # float32 NxCxHxW RGB in [0, 1]
    value = m.compute()               # a float; spec("psnr_y").higher_is_better says which way is good

Note on the shape agreed for issue 18: :class:`MetricSpec` is defined beside the other kinds' specs
in :mod:`i2i.registry` (the registry builds every kind from its spec class) and re-exported here;
it also carries ``plugin`` (filled by the host) and ``unit``. ``create``, ``spec``,
``MetricSpec.kind/higher_is_better`` and ``update/compute/reset`` are as agreed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

from .errors import I2IError
from .registry import MetricSpec

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor

#: MetricSpec.kind values
KINDS = ("paired", "distribution", "masked")


class Metric(Protocol):
    """What a metric plugin's factory returns.

    ``output``/``target``: float32 NxCxHxW in [0, 1], RGB (C = 3; a grey image expanded to three
    channels, except where a metric documents its own grey rule); ``mask``: Nx1xHxW, 1 = hole.
    Distribution metrics (FID, KID) take generated images as ``output`` and real reference images as
    ``target``, in the same call or in separate calls (``update(None, real)``). ``compute`` does not
    reset: call ``reset`` before measuring another set.
    """

    def update(self, output: "Tensor | None", target: "Tensor | None" = None, mask: "Tensor | None" = None) -> None: ...

    def compute(self) -> float: ...

    def reset(self) -> None: ...


def spec(name: str) -> MetricSpec:
    """The registered metric ``name``; unknown names are an :class:`i2i.errors.UnknownNameError`
    listing close matches (``psnr-y`` -> ``psnr_y``)."""
    from .registry import metrics

    return metrics().get(name)


def names() -> list[str]:
    """Every registered metric name, sorted."""
    from .registry import metrics

    return metrics().names()


def torch_device(device: "str | torch.device" = "cpu") -> "torch.device":
    """``auto`` (CUDA when there is one, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or a
    ``torch.device`` -> ``torch.device``; anything else is an I2IError (read by :func:`i2i.loader.parse_device`)."""
    import torch

    if isinstance(device, torch.device):
        return device
    from .loader import parse_device

    kind, index = parse_device(str(device))
    if kind == "tensorrt":
        raise I2IError("metrics run in PyTorch: use --device auto, cpu or cuda[:N]")
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise I2IError(f"--device {device}: this machine has no CUDA device; use --device cpu")
    return torch.device(kind, index) if index is not None else torch.device(kind)


def create(name: str, device: "str | torch.device" = "cpu", **kwargs: Any) -> Metric:
    """Build metric ``name`` on ``device`` with the factory's ``kwargs`` (``crop_border=4``,
    ``weights="inception.pth"``, ...). Unknown names and unknown kwargs are one-line I2IErrors."""
    s = spec(name)
    try:
        return _Checked(name, s.factory(device=torch_device(device), **kwargs))
    except ModuleNotFoundError as exc:  # torchmetrics, lpips ... not installed: say which extra
        from .plugins import missing_extra

        hint = missing_extra(exc)
        if hint is None:
            raise
        raise I2IError(f"metric {name!r} {hint}") from None
    except TypeError as exc:  # an unknown keyword: say which metric and what it takes
        if "unexpected keyword" not in str(exc):
            raise
        bad = str(exc).rsplit("argument", 1)[-1].strip(" '\"")
        raise I2IError(f"metric {name!r} takes no option {bad!r}; `i2i list metrics` shows its options") from None


#: how far outside [0, 1] an input may stray (float rounding of a resize or a colour conversion)
RANGE_TOLERANCE = 1e-3


def check_input(name: str, role: str, x: Any) -> None:
    """One-line I2IError unless ``x`` (an update argument) is None or a floating tensor in [0, 1]."""
    if x is None:
        return
    import torch

    if not isinstance(x, torch.Tensor):
        raise I2IError(f"metric {name!r}: {role} must be a torch tensor (float NxCxHxW in [0, 1]), got "
                       f"{type(x).__name__}; i2i.metrics.images_to_tensor converts uint8 images")
    if not x.is_floating_point():
        raise I2IError(f"metric {name!r}: {role} is {str(x.dtype).replace('torch.', '')}, not float in [0, 1]: "
                       f"divide 8-bit images by 255 (i2i.metrics.images_to_tensor does)")
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            hint = "divide by 255" if hi > 2 else "map [-1, 1] outputs with (x + 1) / 2" if lo < -0.01 else "clamp to [0, 1]"
            raise I2IError(f"metric {name!r}: {role} values span [{lo:.4g}, {hi:.4g}], not [0, 1]: {hint}")


class _Checked:
    """A metric whose ``update`` refuses inputs that are not float in [0, 1] (a 0..255 tensor would
    otherwise score silently: PSNR -40 dB). A metric built on a caller's own feature network
    (``custom`` true: FID/KID/IS with ``features=``) takes whatever that network takes, unchecked."""

    def __init__(self, name: str, metric: Any) -> None:
        self._name, self._metric = name, metric
        self._check = not getattr(metric, "custom", False)

    def update(self, output: Any = None, target: Any = None, mask: Any = None) -> None:
        if self._check:
            check_input(self._name, "output", output)
            check_input(self._name, "target", target)
        if mask is None:
            return self._metric.update(output, target)
        return self._metric.update(output, target, mask)

    def compute(self) -> float:
        return self._metric.compute()

    def reset(self) -> None:
        return self._metric.reset()

    def __getattr__(self, attr: str) -> Any:  # the plugin's own attributes (feature weights, options)
        return getattr(self._metric, attr)


def images_to_tensor(images: "Sequence[np.ndarray] | np.ndarray", channels: int = 3,
                     dtype: "torch.dtype | None" = None) -> "Tensor":
    """uint8 HxWxC images (a list of equal size, or one NxHxWxC array) -> float NxCxHxW in [0, 1]
    (float32, or ``dtype``: float64 keeps 8-bit values exact to 1e-14 for PSNR to many decimals).

    Grey images (HxW or HxWx1) are expanded to ``channels`` (3) as the Metric contract asks;
    ``channels=0`` keeps them as they are (for a metric that scores grey on its own channel).
    """
    import numpy as np
    import torch

    arrays = [np.asarray(a) for a in (images if isinstance(images, (list, tuple)) else list(images))]
    out = []
    for a in arrays:
        a = a[..., None] if a.ndim == 2 else a
        if a.shape[2] == 4:  # RGBA: colour only
            a = a[..., :3]
        if channels and a.shape[2] == 1 and channels != 1:
            a = np.repeat(a, channels, axis=2)
        scale = 255.0 if a.dtype == np.uint8 else 1.0
        out.append(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).to(dtype or torch.float32) / scale)
    return torch.stack(out)


__all__ = ["check_input", "Metric", "MetricSpec", "KINDS", "create", "spec", "names", "torch_device", "images_to_tensor"]
