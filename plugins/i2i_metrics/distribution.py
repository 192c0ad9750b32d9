"""FID, KID and Inception Score on torchmetrics, with torch-fidelity's TF-ported Inception v3.

- FID (Heusel et al. 2017): ``|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` on the 2048-d
  pool features; torchmetrics accumulates sums in float64.
- KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over ``subsets`` random subsets of ``subset_size``
  (1000 and 100, as the paper); sets smaller than ``subset_size`` are measured whole, once (the
  larger of the two sets subsampled, seeded, to the size of the smaller, as torchmetrics' estimator
  takes equal sizes).
  Unlike FID it is unbiased, so it is the one to read on small test sets.
- IS (Salimans et al. 2016): ``exp(E KL(p(y|x) || p(y)))`` over ``splits`` (10) on the unbiased logits.

Images go in as uint8 (rounded from [0, 1]) and are resized to 299x299 with TensorFlow 1's bilinear
(no antialiasing), as the original TF code, pytorch-fid and torch-fidelity do, so figures compare
with papers. The Inception weights come from :func:`i2i_metrics.weights.weights_path`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from i2i.errors import I2IError

from .weights import describe, load_state, weights_path


class _SharedFeatures(nn.Module):
    """One Inception for every metric that asks for the same features on the same device and weights,
    remembering its last batch: FID and KID updated with the same images run the network once."""

    def __init__(self, net: nn.Module, num_features: int) -> None:
        super().__init__()
        self.net = net
        self.num_features = num_features
        self._last: tuple[tuple, bytes, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        key = (tuple(x.shape), x.dtype, x.device)
        data = x.cpu().numpy().tobytes()
        if self._last is not None and self._last[0] == key and self._last[1] == data:
            return self._last[2]
        out = self.net(x)
        self._last = (key, data, out)
        return out


#: (weights path, features, device) -> the shared network
_NETS: dict[tuple[str, str, str], _SharedFeatures] = {}


def inception(features: str, device: torch.device | None = None, weights: str | None = None) -> nn.Module:
    """torch-fidelity's Inception v3 (through torchmetrics' NoTrainInceptionV3) returning ``features``
    ("2048", "logits_unbiased", ...) for uint8 Nx3xHxW input; built once per weights file, features
    and device."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    path = weights_path("inception", weights)
    key = (str(path.resolve()), features, str(device or "cpu"))
    if key in _NETS:
        return _NETS[key]
    load_state(path, "Inception")  # weights_only=True first: torch-fidelity unpickles with weights_only=False
    try:
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=[features],
                                 feature_extractor_weights_path=str(path), antialias=False)
    except RuntimeError as exc:  # load_state_dict: missing or unexpected keys
        raise I2IError(f"{path} is not the FID Inception weights file ({' '.join(str(exc).split())[:160]})") from None
    shared = _SharedFeatures(net, 1008 if features.startswith("logits") else int(features)).to(device or "cpu")
    shared.weights_record = describe("inception", path)
    if len(_NETS) >= 4:  # a few at most: each holds 95 MB
        _NETS.pop(next(iter(_NETS)))
    _NETS[key] = shared
    return shared


def write_random_inception(path: str, seed: int = 0) -> None:
    """Save a randomly initialised Inception state_dict to ``path``: same layers and speed as the real
    one, meaningless figures. For benchmarks and tests on a machine that cannot download the weights."""
    from unittest import mock

    from torchmetrics.image.fid import NoTrainInceptionV3

    with mock.patch("torch.load", return_value={}), mock.patch.object(nn.Module, "load_state_dict", lambda *a, **k: None):
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path="-")
    gen = torch.Generator().manual_seed(seed)
    for layer in net.modules():  # He init: activations keep their scale through the 90-odd layers
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            fan_in = layer.weight[0].numel()
            with torch.no_grad():
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
    torch.save(net.state_dict(), path)


def random_inception_file(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """``folder/random_inception_<seed>.pth``, written by :func:`write_random_inception` the first time
    (atomically), reused after: one 95 MB file for every test module or benchmark of a run."""
    path = Path(folder) / f"random_inception_{seed}.pth"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.part")
        write_random_inception(str(tmp), seed)
        os.replace(tmp, path)
    return path


def _to_uint8(x: Tensor) -> Tensor:
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise I2IError(f"distribution metrics take Nx3xHxW images in [0, 1], got shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


class _Distribution:
    """Generated images as ``output``, real reference images as ``target`` (same call or separate ones).

    ``features``: a custom feature network (a module mapping a batch to NxD features; it is given
    the batch exactly as passed, not converted) instead of Inception: for a domain-specific network,
    or for tests on fixed feature arrays. ``keep_reference``: ``reset()`` keeps the reference set's
    features (validation against one fixed real set)."""

    def __init__(self, device: torch.device | None, features: nn.Module | None, feature_name: str,
                 weights: str | None) -> None:
        self.device = device or torch.device("cpu")
        self.custom = features is not None
        self.net = features if features is not None else inception(feature_name, self.device, weights)
        #: the feature network's weights (file, sha256 prefix; eval --json and the model card say it)
        self.weights_record = ("a custom feature network" if self.custom
                               else getattr(self.net, "weights_record", "random Inception (no weights file)"))

    def _input(self, x: Tensor) -> Tensor:
        return x.to(self.device) if self.custom else _to_uint8(x.to(self.device))

    def update(self, output: Tensor | None, target: Tensor | None = None, mask: Tensor | None = None) -> None:
        with torch.no_grad():
            if output is not None:
                self.m.update(self._input(output), real=False)
            if target is not None:
                self.m.update(self._input(target), real=True)

    def reset(self) -> None:
        self.m.reset()


class FID(_Distribution):
    """Frechet Inception Distance (lower is better; 0 for identical statistics). Needs at least two
    images on each side; biased upward on small sets (read KID there)."""

    def __init__(self, device: torch.device | None = None, weights: str | None = None, dims: int = 2048,
                 features: nn.Module | None = None, keep_reference: bool = False) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        super().__init__(device, features, str(dims), weights)
        self.m = FrechetInceptionDistance(feature=self.net, reset_real_features=not keep_reference).to(self.device)

    def compute(self) -> float:
        """torchmetrics' own FID from its accumulated float64 statistics (its matrix square root: a
        hand-written symmetric-eigh route measured ~2x faster at 2048-d, but the library's is the one
        people compare with, and a library beats our own code here)."""
        n_real, n_fake = int(self.m.real_features_num_samples), int(self.m.fake_features_num_samples)
        if n_real < 2 or n_fake < 2:
            raise I2IError(f"FID needs at least 2 generated and 2 reference images, got {n_fake} and {n_real}")
        return float(self.m.compute())


class KID(_Distribution):
    """Kernel Inception Distance: mean unbiased polynomial-kernel MMD^2 over subsets (lower is better)."""

    def __init__(self, device: torch.device | None = None, weights: str | None = None, subsets: int = 100,
                 subset_size: int = 1000, features: nn.Module | None = None, keep_reference: bool = False,
                 seed: int = 0) -> None:
        from torchmetrics.image.kid import KernelInceptionDistance

        super().__init__(device, features, "2048", weights)
        self.subsets, self.subset_size, self.seed = int(subsets), int(subset_size), seed
        with warnings.catch_warnings():  # "will save all extracted features in buffer": known, and small here
            warnings.simplefilter("ignore")
            self.m = KernelInceptionDistance(feature=self.net, subsets=self.subsets, subset_size=self.subset_size,
                                             reset_real_features=not keep_reference).to(self.device)

    def compute(self) -> float:
        n_real = sum(f.shape[0] for f in self.m.real_features)
        n_fake = sum(f.shape[0] for f in self.m.fake_features)
        if n_real < 2 or n_fake < 2:
            raise I2IError(f"KID needs at least 2 generated and 2 reference images, got {n_fake} and {n_real}")
        size = min(self.subset_size, n_real, n_fake)
        # a set smaller than subset_size is measured whole: every subset would be the same set
        self.m.subset_size, self.m.subsets = size, (self.subsets if size == self.subset_size else 1)
        with torch.random.fork_rng(devices=[]):  # the subsets are drawn from torch's RNG: fix them
            torch.manual_seed(self.seed)
            mean, _std = self.m.compute()
        return float(mean)


class InceptionScore(_Distribution):
    """Inception Score of the generated images (higher is better); reference images are ignored."""

    def __init__(self, device: torch.device | None = None, weights: str | None = None, splits: int = 10,
                 features: nn.Module | None = None, seed: int = 0) -> None:
        from torchmetrics.image.inception import InceptionScore as _IS

        super().__init__(device, features, "logits_unbiased", weights)
        self.splits, self.seed = int(splits), seed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.m = _IS(feature=self.net, splits=self.splits).to(self.device)

    def update(self, output: Tensor | None, target: Tensor | None = None, mask: Tensor | None = None) -> None:
        if output is not None:
            with torch.no_grad():
                self.m.update(self._input(output))

    def compute(self) -> float:
        n = sum(f.shape[0] for f in self.m.features)
        if n < 2:
            raise I2IError(f"the Inception Score needs at least 2 generated images, got {n}")
        self.m.splits = min(self.splits, n)
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's std() of one split: only the mean is returned
            torch.manual_seed(self.seed)
            mean, _std = self.m.compute()
        return float(mean)


