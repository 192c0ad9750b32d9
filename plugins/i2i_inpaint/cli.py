"""The ``i2i eval inpaint`` command (added to the ``eval`` group by the plugin's register_commands)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import click
import numpy as np

from i2i.errors import I2IError

from .files import DEFAULT_HOLDOUT, image_files, resize_crop_box, split_files
from .evaluate import BASIC, BUCKETS, METRICS, bucketed_masks, evaluate, format_table, generator_inpainter, opencv_inpainter, rows_to_json
from .masks import mask_from_spec


def load_eval_images(root: str | Path, size: int, holdout: int = DEFAULT_HOLDOUT, all_images: bool = False) -> tuple[list[Path], list[np.ndarray]]:
    """The held-aside images of ``root`` (or all of them), short side resized to ``size`` and
    centre-cropped square, exactly as the eval split of the training dataset does."""
    from PIL import Image

    from i2i.imageio import read_image

    files = image_files(root)
    if not all_images:
        files = split_files(files, holdout)[1]
        if not files:
            raise I2IError("--holdout 0 leaves no eval images; pass --all to evaluate every image")
    images = []
    for f in files:
        arr = read_image(f, channels=3)
        (nh, nw), (top, left) = resize_crop_box(arr.shape[0], arr.shape[1], size, size, None)
        img = Image.fromarray(arr).resize((nw, nh), Image.Resampling.BICUBIC).crop((left, top, left + size, top + size))
        images.append(np.asarray(img))
    return files, images


def _choose_metrics(names: str, feature_weights: str | None, lpips_weights: str | None) -> tuple[list[str], dict]:
    """The table's metrics (``auto``: the basic four, plus lpips/fid whose weights are at hand) and
    the weights files to give them."""
    from i2i_metrics.weights import at_hand

    chosen = [n.strip() for n in names.split(",") if n.strip()]
    if "auto" in chosen:
        chosen.remove("auto")
        chosen += [*BASIC, *(["lpips"] if at_hand("lpips_alex", lpips_weights) else []),
                   *(["fid"] if at_hand("inception", feature_weights) else [])]
    for n in chosen:
        if n not in METRICS:
            from i2i.errors import did_you_mean

            raise I2IError(f"--metrics: no metric {n!r} in i2i eval inpaint{did_you_mean(n, METRICS)}; "
                           f"choose from {', '.join(METRICS)}")
    kwargs = {"fid": {"weights": feature_weights} if feature_weights else {},
              "lpips": {"weights": lpips_weights} if lpips_weights else {}}
    return list(dict.fromkeys([*BASIC, *chosen])), kwargs


def _weights_used(metrics: list[str], kwargs: dict) -> dict[str, str]:
    """metric -> the feature weights file it measured with (name and sha256 prefix; published or not)."""
    from i2i_metrics.weights import describe, weights_path

    sources = {"lpips": "lpips_alex", "fid": "inception"}
    return {m: describe(src, weights_path(src, (kwargs.get(m) or {}).get("weights")))
            for m, src in sources.items() if m in metrics}


def _short(path: Path, root: str) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


@click.command("inpaint")
@click.option("--checkpoint", "-c", "checkpoint", default=None,
              help="Run folder, checkpoint, weights file, .onnx or zoo name (big-lama) of an inpainting model (omit: baselines only).")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False),
              help="Local weights file for a zoo --checkpoint (instead of its download), as in `i2i translate`.")
@click.option("--data", required=True, help="Folder of images; its held-aside split is evaluated.")
@click.option("--holdout", type=int, default=None,
              help=f"Eval images = the last N of the sorted files, as in training (default: the checkpoint's holdout, else {DEFAULT_HOLDOUT}).")
@click.option("--all", "all_images", is_flag=True, help="Evaluate every image of --data (e.g. a separate test folder).")
@click.option("--size", type=int, default=None, help="Image side (default: the checkpoint's crop_size, else 256).")
@click.option("--masks", default="free_form_eval", show_default=True,
              help="Mask generator spec or a folder of mask images (e.g. the NVIDIA irregular masks).")
@click.option("--per-image", default=1, show_default=True, help="Masks per image and hole-ratio bucket.")
@click.option("--seed", default=0, show_default=True, help="Seed of the fixed mask set.")
@click.option("--baseline", "baselines", type=click.Choice(["telea", "ns", "none"]), multiple=True, default=("telea",),
              show_default=True, help="OpenCV classical inpainting rows (repeat for several).")
@click.option("--metrics", "metric_names", default="auto", show_default=True,
              help="Comma-separated: l1, hole_l1, psnr, ssim (always), lpips, fid. auto: the four, plus lpips and fid "
                   "when their weights are at hand (flag, variable or cached); naming them fetches the weights once.")
@click.option("--feature-weights", type=click.Path(exists=True, dir_okay=False),
              help="Local Inception weights for FID (else $I2I_FID_WEIGHTS, else downloaded once).")
@click.option("--lpips-weights", type=click.Path(exists=True, dir_okay=False),
              help="Local AlexNet weights for LPIPS (else $I2I_LPIPS_WEIGHTS, else downloaded once).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def eval_inpaint(checkpoint: str | None, weights: str | None, data: str, holdout: int | None, all_images: bool, size: int | None, masks: str,
                 per_image: int, seed: int, baselines: tuple[str, ...], metric_names: str, feature_weights: str | None,
                 lpips_weights: str | None, device: str, as_json: bool) -> None:
    """L1, PSNR, SSIM, LPIPS and FID of filled images, per hole-ratio bucket (0-10% ... 50-60%).

    Every method fills the same images with the same seeded masks; metrics are over the whole
    composited image (known pixels kept), hole L1 over the hole only. LPIPS and FID per bucket as
    LaMa reports them (FID against the original images; biased upward on small sets).
    """
    metrics, metric_kwargs = _choose_metrics(metric_names, feature_weights, lpips_weights)
    if not Path(data).is_dir():
        raise I2IError(f"--data {data} is not a folder of images")
    if per_image < 1:
        raise I2IError("--per-image must be >= 1")
    if weights and not checkpoint:
        raise I2IError("--weights is the file of a zoo model: give its name too (-c big-lama --weights FILE)")
    methods = {}
    info: dict = {}
    if checkpoint:
        fill, info = generator_inpainter(checkpoint, device=device, weights=weights)
        cfg = info.get("config") or {}
        size = size or int(cfg.get("crop_size") or 0) or None
        holdout = cfg.get("holdout") if holdout is None else holdout
        methods[f"model ({info['generator']})"] = fill
    size = size or 256
    for b in dict.fromkeys(baselines):
        if b != "none":
            methods[f"opencv-{b}"] = opencv_inpainter(b)
    if not methods:
        raise I2IError("nothing to evaluate: pass --checkpoint and/or a --baseline")
    holdout = DEFAULT_HOLDOUT if holdout is None else int(holdout)
    files, images = load_eval_images(data, size, holdout, all_images)
    gen = mask_from_spec(masks, {"augment": False} if Path(masks).is_dir() else None)
    t0 = time.perf_counter()
    mask_sets = bucketed_masks(gen, (size, size), per_image * len(images), seed)
    from i2i_metrics.weights import flags_offered

    with flags_offered():  # a missing weights file's message names --feature-weights/--lpips-weights
        rows = evaluate(images, mask_sets, methods, metrics=metrics, metric_kwargs=metric_kwargs,
                        device="cuda" if device.startswith("cuda") else "cpu")
        used = _weights_used(metrics, metric_kwargs)
    elapsed = time.perf_counter() - t0
    left = [m for m in ("lpips", "fid") if m not in metrics]
    note = (f"{' and '.join(left)} not measured: their feature weights are not at hand; add --metrics "
            f"auto,{','.join(left)} to fetch them once, or give --lpips-weights/--feature-weights") if left else ""
    if as_json:
        click.echo(json.dumps({
            "data": str(data), "images": [str(f) for f in files], "size": size, "masks": masks, "seed": seed,
            "per_image": per_image, "buckets": [list(b) for b in BUCKETS], "checkpoint": checkpoint,
            "model": {k: info.get(k) for k in ("generator", "kwargs")} if checkpoint else None,
            "rows": rows_to_json(rows), "seconds": round(elapsed, 2), "machine": platform.machine(),
            "metrics": metrics, "not_measured": note or None, "feature_weights": used,
        }, indent=2, default=str))
        return
    held = "all images" if all_images else f"held-aside images (the last {holdout} by path)"
    click.echo(f"{len(images)} {held} at {size}x{size}: {', '.join(_short(f, data) for f in files)}")
    click.echo(f"masks {masks!r} (seed {seed}), {per_image} per image and bucket")
    click.echo(format_table(rows))
    for name, what in used.items():  # which feature network the figures come from
        click.echo(f"{name} features: {what}")
    if note:
        click.echo(f"i2i: {note}", err=True)
