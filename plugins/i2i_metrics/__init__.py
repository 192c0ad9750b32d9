"""Built-in metrics (PSNR, SSIM, LPIPS, FID, KID, IS, masked L1) and ``i2i eval translate``.

One implementation each, on well-kept libraries: torchmetrics for PSNR/SSIM/FID/KID/IS (with
torch-fidelity's TF-ported Inception, so FID figures compare with papers), the LPIPS authors' own
``lpips`` package for LPIPS. Build them with :func:`i2i.metrics.create`.
"""

from __future__ import annotations

import i2i

# the metric modules import torch: they are imported by the factories, on first use, so that
# `i2i --help` and a torch-free serving install load this plugin without torch.


def _lazy(module: str, attr: str):
    """A factory that imports ``module`` only when the metric is built."""

    def build(**kwargs):
        import importlib

        return getattr(importlib.import_module(f"i2i_metrics.{module}"), attr)(**kwargs)

    build.__name__ = attr
    return build


@i2i.hookimpl
def register_metrics(register) -> None:
    register("psnr", _lazy("pixel", "psnr"), kind="paired", higher_is_better=True, unit="dB",
             description="PSNR on RGB (per image, then mean); crop_border=, max_db=")
    register("psnr_y", _lazy("pixel", "psnr_y"), kind="paired", higher_is_better=True, unit="dB",
             description="PSNR on BT.601 luma Y in [16, 235] (the SR papers'); crop_border=")
    register("ssim", _lazy("pixel", "ssim"), kind="paired", higher_is_better=True,
             description="SSIM (Wang 2004: 11x11 Gaussian, sigma 1.5, valid windows) on RGB; crop_border=")
    register("ssim_y", _lazy("pixel", "ssim_y"), kind="paired", higher_is_better=True,
             description="SSIM on BT.601 luma Y (the SR papers'); crop_border=")
    register("lpips", _lazy("perceptual", "LPIPS"), kind="paired", higher_is_better=False,
             description="LPIPS v0.1, AlexNet (Zhang 2018; lpips package); weights=FILE: local AlexNet weights (else fetched once)")
    register("fid", _lazy("distribution", "FID"), kind="distribution", higher_is_better=False,
             description="Frechet Inception Distance (TF Inception, 2048-d); biased up on small sets; weights=FILE: local Inception weights (else fetched once)")
    register("kid", _lazy("distribution", "KID"), kind="distribution", higher_is_better=False,
             description="Kernel Inception Distance (unbiased cubic-kernel MMD^2): for small sets; weights=FILE: local Inception weights (else fetched once)")
    register("is", _lazy("distribution", "InceptionScore"), kind="distribution", higher_is_better=True,
             description="Inception Score of the generated images (no reference needed); weights=FILE: local Inception weights (else fetched once)")
    register("masked_l1", _lazy("pixel", "masked_l1"), kind="masked", higher_is_better=False,
             description="mean |output - target| inside the hole (mask = 1), in [0, 1] units")


@i2i.hookimpl
def register_commands(cli) -> None:
    from .translate_eval import eval_translate

    cli.commands["eval"].add_command(eval_translate, "translate")
