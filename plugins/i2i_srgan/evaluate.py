"""``i2i eval sr``: PSNR / SSIM of SR models against a bicubic baseline, per image and mean.

The protocol of the SR papers: HR images modcropped to a multiple of the scale, LR made with
MATLAB's bicubic ``imresize(HR, 1/scale)`` (or read from an ``LR/`` folder), outputs rounded to
8 bits, ``scale`` pixels cropped from every border, PSNR/SSIM on the BT.601 Y channel (and on RGB).

A greyscale HR image (stored with one channel, as Set14's ``bridge``) is scored on that channel, as
the papers' MATLAB scripts do (``if size(im, 3) == 1``): its LR is made from it and the models run
on it (grey in, grey out), and no colour conversion touches it. Turning it into RGB and taking
Y = 16 + 219/255 g instead would scale every error by 219/255 and add 1.32 dB to its PSNR.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
import numpy as np

from i2i.errors import I2IError

from .imresize import downscale, imresize, modcrop
from .metrics import sr_metrics

METRICS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
HEADERS = {"psnr_y": "PSNR-Y", "ssim_y": "SSIM-Y", "psnr_rgb": "PSNR-RGB", "ssim_rgb": "SSIM-RGB"}

#: uint8 LR HxWx3 -> uint8 SR (H*s)x(W*s)x3
Upscaler = Callable[[np.ndarray], np.ndarray]


@dataclass
class Row:
    """One model's results."""

    name: str
    source: str
    images: list[dict[str, float | str]] = field(default_factory=list)
    seconds: float = 0.0

    def mean(self) -> dict[str, float]:
        return {k: float(np.mean([float(r[k]) for r in self.images])) for k in METRICS}


def evaluate(data: str | Path, scale: int, models: list[tuple[str, str, Upscaler]],
             lr_dir: str | None = None, save_dir: str | Path | None = None,
             log: Callable[[str], None] | None = None) -> list[Row]:
    """Bicubic plus every ``(name, source, upscaler)`` on the images of ``data``."""
    from i2i.imageio import decode_image, read_image, write_image

    from .data import find_pairs

    hr_files, lr_files = find_pairs(Path(data), scale, lr_dir)
    runs: list[tuple[str, str, Upscaler]] = [("bicubic", "MATLAB imresize", lambda lr: imresize(lr, scale=scale))]
    rows = [Row(name, source) for name, source, _ in runs + models]
    for i, path in enumerate(hr_files):
        channels = 1 if decode_image(path).shape[2] in (1, 2) else 3  # grey (with or without alpha) as stored
        hr = modcrop(read_image(path, channels), scale)
        lr = read_image(lr_files[i], channels) if lr_files else downscale(hr, scale)
        if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
            raise I2IError(f"LR {lr_files[i] if lr_files else path} is {lr.shape[1]}x{lr.shape[0]}; "
                           f"HR {path.name} x1/{scale} needs {hr.shape[1] // scale}x{hr.shape[0] // scale}")
        for row, (_, _, fn) in zip(rows, runs + models):
            start = time.perf_counter()
            sr = fn(lr)
            row.seconds += time.perf_counter() - start
            if sr.shape != hr.shape:
                raise I2IError(f"{row.name} turned a {lr.shape[1]}x{lr.shape[0]} image into {sr.shape[1]}x{sr.shape[0]}, "
                               f"expected {hr.shape[1]}x{hr.shape[0]}: is it an x{scale} model?")
            row.images.append({"image": path.stem, "kind": "grey" if channels == 1 else "colour",
                               **sr_metrics(sr, hr, crop_border=scale)})
            if save_dir:
                write_image(Path(save_dir) / _safe(row.name) / f"{path.stem}.png", sr)
        if log:
            log(f"i2i: {path.name} done ({i + 1}/{len(hr_files)})")
    return rows


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _check_scale(name: str, meta_scale: int, scale: int) -> None:
    if meta_scale != scale:
        raise I2IError(f"{name} is an x{meta_scale} model but --scale is {scale}; evaluate it with --scale {meta_scale}")


def load_models(models: tuple[str, ...], checkpoints: tuple[str, ...], weights: tuple[str, ...], scale: int,
                device: str, tile: int, overlap: int) -> list[tuple[str, str, Upscaler]]:
    """The command's model options as named upscalers, each opened by :func:`i2i.load`.

    As in ``i2i translate``, ``--weights FILE`` beside a single zoo ``--model NAME`` is that model's
    local weights. Otherwise each ``--weights [ZOO_NAME=]FILE`` is a model of its own (the
    architecture from ZOO_NAME, or recognised from the file's keys).
    """
    from i2i.loader import load

    opened: list[tuple[str, str, object]] = []
    paired = len(models) == 1 and len(weights) == 1 and "=" not in weights[0] and not _is_path(models[0])
    for name in models:
        source = f"--model {name}" + (f" --weights {weights[0]}" if paired else "")
        label = Path(name).stem if _is_path(name) else name
        opened.append((label, source, load(name, weights=weights[0] if paired else None, device=device)))
    for path in checkpoints:
        g = load(path, device=device)
        opened.append((_checkpoint_label(path, g.meta.name), f"--checkpoint {path}", g))
    for item in () if paired else weights:
        zoo, sep, file = item.partition("=")
        if not sep or Path(item).exists():  # a path that itself contains '=' is still a path
            zoo, file = "", item
        g = load(zoo, weights=file, device=device) if zoo else load(file, device=device)
        label = f"{zoo} ({Path(file).name})" if zoo else f"{Path(file).name} [{g.meta.name}]"
        opened.append((label, f"--weights {item}", g))
    out: list[tuple[str, str, Upscaler]] = []
    for label, source, g in opened:
        _check_scale(label, g.meta.scale, scale)  # type: ignore[attr-defined]
        if tile:
            g.check_tiling()  # type: ignore[attr-defined]
        out.append((label, source, lambda lr, g=g: g.translate(lr, tile=tile, overlap=overlap)))  # type: ignore[attr-defined]
    return out


def _checkpoint_label(path: str, generator: str) -> str:
    """A --checkpoint's row name: a run/checkpoint folder's name (an i2i weights.safetensors: its
    folder's); any other file by its own name, as --weights labels it (``span_x4.pth [spandrel]``)."""
    from i2i.checkpoint import WEIGHTS

    p = Path(path).resolve()
    if p.is_dir():
        return p.name
    if p.name == WEIGHTS:
        return p.parent.name
    return f"{p.name} [{generator}]"


def _is_path(name: str) -> bool:
    return Path(name).exists() or "/" in name or name.lower().endswith((".onnx", ".pth", ".pt", ".safetensors"))


def format_table(rows: list[Row], per_image: bool = True) -> str:
    """Per-image rows (when asked) then the means, one line per model and image."""
    lines: list[tuple[str, ...]] = [("model", "image", *(HEADERS[k] for k in METRICS), "seconds")]
    for row in rows:
        if per_image:
            for r in row.images:
                lines.append((row.name, str(r["image"]), *_fmt(r), ""))
        lines.append((row.name, "mean", *_fmt(row.mean()), f"{row.seconds:.2f}"))
    from i2i.cli import table_text

    return table_text(lines[0], lines[1:], right=range(2, len(lines[0])))


def _fmt(values: dict) -> tuple[str, ...]:
    return tuple(f"{float(values[k]):.2f}" if k.startswith("psnr") else f"{float(values[k]):.4f}" for k in METRICS)


@click.command(context_settings={"show_default": True})
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of HR images (LR made by MATLAB bicubic), or with HR/ and LR/ sub-folders.")
@click.option("--scale", type=int, default=4, help="Upscaling factor; also the border cropped before measuring.")
@click.option("--model", "models", multiple=True,
              help="Zoo name (`i2i list models`), .onnx file, weights file or run folder (repeatable).")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(exists=True),
              help="i2i run folder, checkpoint folder or weights file (repeatable).")
@click.option("--weights", "weights", multiple=True, metavar="[ZOO_NAME=]FILE",
              help="With one zoo --model: its local weights file (as in `i2i translate`). Otherwise a published "
                   "weights file to evaluate; the architecture is recognised from its keys, or taken from the zoo "
                   "entry ZOO_NAME (repeatable).")
@click.option("--lr-dir", type=click.Path(exists=True, file_okay=False), help="Folder of LR images matching the HR names.")
@click.option("--tile", type=int, default=0, help="Upscale in LR tiles of this side (0: whole image).")
@click.option("--overlap", type=int, default=32, help="LR context pixels around each tile.")
@click.option("--device", default="auto", help="auto, cpu, cuda, cuda:N (tensorrt for .onnx).")
@click.option("--save-dir", type=click.Path(file_okay=False), help="Also write every output image to DIR/MODEL/IMAGE.png.")
@click.option("--per-image/--mean-only", default=True, help="List every image, or only the means.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def eval_sr(data: str, scale: int, models: tuple[str, ...], checkpoints: tuple[str, ...], weights: tuple[str, ...],
            lr_dir: str | None, tile: int, overlap: int, device: str, save_dir: str | None, per_image: bool,
            as_json: bool) -> None:
    """PSNR/SSIM of super-resolution models on an HR image folder, with a bicubic baseline.

    Y = ITU-R BT.601 luma (as the papers; a greyscale image is scored on its own channel), border =
    scale pixels cropped, outputs rounded to 8 bits.

    \b
    i2i eval sr --data Set5 --scale 4 --model realesr-animevideov3
    i2i eval sr --data Set5 --weights netG_epoch_4_100.pth --weights realesr-animevideov3=realesr-animevideov3.pth
    """
    if scale < 1:
        raise I2IError(f"--scale must be at least 1, got {scale}")
    from .data import find_pairs

    lr_source = "given" if find_pairs(Path(data), scale, lr_dir)[1] else "MATLAB bicubic"
    upscalers = load_models(models, checkpoints, weights, scale, device, tile, overlap)
    rows = evaluate(data, scale, upscalers, lr_dir=lr_dir, save_dir=save_dir,
                    log=lambda msg: click.echo(msg, err=True))
    if as_json:
        doc = {
            "data": str(Path(data).resolve()), "scale": scale, "crop_border": scale,
            "y_channel": "ITU-R BT.601 (MATLAB rgb2ycbcr), float; grey images: their own channel", "lr": lr_source,
            "models": [{"name": r.name, "source": r.source, "mean": r.mean(), "seconds": r.seconds, "images": r.images} for r in rows],
        }
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{Path(data).name} x{scale}: {len(rows[0].images)} images, border {scale} px cropped, "
               f"Y = BT.601 luma (grey images: their own channel); LR = {lr_source}")
    click.echo(format_table(rows, per_image))
    sys.stdout.flush()


__all__ = ["evaluate", "load_models", "format_table", "eval_sr", "Row"]
