"""The mode-collapse monitor: how varied are the generated images, next to the real ones?

``diversity`` = mean pairwise L2 distance between the last ``size`` generated images divided by
the same for their real counterparts (the target images of the same batches), both average-pooled
to ``side`` x ``side`` first (the global layout, not pixel noise, is what collapse takes away).
About 1 when the generator's outputs vary as much as the data; near 0 when it maps every input to
(nearly) the same image. A ring buffer over the last steps makes it work at batch size 1.
Everything stays on the device; the value is read with the losses at log intervals. The idea is
the "minibatch diversity" statistic of Salimans et al. 2016 (Improved techniques for training
GANs) and the LPIPS-distance diversity score of Zhu et al. 2017 (BicycleGAN), with L2 for cost.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class DiversityMonitor:
    """Collects generated/real pairs every step (:meth:`add`); :meth:`value` is a device scalar."""

    def __init__(self, threshold: float = 0.2, patience: int = 5, size: int = 16, side: int = 32) -> None:
        self.threshold, self.patience, self.size, self.side = threshold, patience, size, side
        self.fake: torch.Tensor | None = None
        self.real: torch.Tensor | None = None
        self.low = 0  # consecutive log intervals below the threshold
        self.off = False

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x.detach().float(), self.side).flatten(1)[: self.size]

    @torch.no_grad()
    def add(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        """``fake``, ``real``: [N, C, H, W] batches of generated and real images (same value range)."""
        if self.off:
            return
        f, r = self._pool(fake), self._pool(real)
        if f.shape != r.shape:  # not comparable (e.g. other channels): no monitor for this method
            self.off = True
            return
        self.fake = f if self.fake is None else torch.cat([f, self.fake])[: self.size]
        self.real = r if self.real is None else torch.cat([r, self.real])[: self.size]

    @torch.no_grad()
    def collect(self, method: Any, batch: dict[str, Any], out: dict[str, torch.Tensor]) -> None:
        """:meth:`add` the pair ``method.diversity_images(batch, out)`` names; a method whose sample
        grid has no output/target pair (the default reads its columns) gets no monitor."""
        if self.off:
            return
        try:
            fake, real = method.diversity_images(batch, out)
        except (NotImplementedError, IndexError):
            self.off = True
            return
        self.add(fake, real)

    @torch.no_grad()
    def value(self) -> torch.Tensor | None:
        """fake/real mean pairwise distance (a 0-d device tensor), or None with fewer than 2 images."""
        if self.fake is None or self.real is None or self.fake.shape[0] < 2:
            return None
        return torch.pdist(self.fake).mean() / torch.pdist(self.real).mean().clamp_min(1e-12)

    def state_dict(self) -> dict[str, Any]:
        """The ring buffer, the low-interval count and whether it is off: saved in the checkpoint so a
        resumed run logs the same ``diversity`` and warns at the same step as an uninterrupted one."""
        return {"fake": None if self.fake is None else self.fake.detach().cpu(),
                "real": None if self.real is None else self.real.detach().cpu(), "low": self.low, "off": self.off}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.fake = None if state.get("fake") is None else state["fake"].to(device)
        self.real = None if state.get("real") is None else state["real"].to(device)
        self.low, self.off = int(state.get("low", 0)), bool(state.get("off", False))

    def check(self, value: float | None, step: int) -> str | None:
        """A warning once ``value`` stayed below the threshold for ``patience`` log intervals in a row
        (said once per such stretch), else None."""
        if value is None or self.threshold <= 0:
            return None
        self.low = self.low + 1 if value < self.threshold else 0
        if self.low != self.patience:
            return None
        return (f"i2i: warning: step {step}: diversity {value:.3f} (the spread of the generated images over that of the "
                f"real ones) has stayed below diversity_threshold={self.threshold} for {self.patience} log intervals: "
                f"the generator may be collapsing to a few outputs (docs/training.md: mode collapse)")


__all__ = ["DiversityMonitor"]
