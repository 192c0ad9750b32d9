"""``i2i eval translate``: how good is a translator on a test split?

The model (any source :func:`i2i.load` opens: zoo name, run folder, checkpoint, weights file, .onnx)
translates the test inputs; the outputs are measured against the target domain:

- distribution metrics (FID, KID; IS on request) between all outputs and all target images;
- paired metrics (PSNR, SSIM, LPIPS) when every input has its own target: A|B pair files
  (pix2pix's aligned layout: facades) or ``--target`` files with the same names.

Layouts of ``--data`` (a folder or a catalogue name), looked up under ``--split`` (default ``test``):
``testA/`` + ``testB/`` (CycleGAN's unaligned layout: ``--direction`` picks the input side),
``test/`` of A|B pair files, or a folder of images with ``--target DIR``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import click
import numpy as np

from i2i.errors import I2IError

#: images per metric update (bounds memory: the outputs are not all kept)
CHUNK = 16


@dataclass
class TestSet:
    """What to translate and what to compare with."""

    inputs: list[Path]
    targets: list[Path]
    #: "pairs" (A|B files: input and target halves of one file), "named" (targets[i] is inputs[i]'s
    #: target) or "unpaired" (targets are a reference set)
    pairing: str
    #: the input half of A|B files: "left" (AtoB) or "right" (BtoA)
    input_side: str = "left"
    description: str = ""


def _images(folder: Path) -> list[Path]:
    from i2i.imageio import list_images

    return list_images(folder)


def find_test_set(root: Path, split: str, direction: str | None, target: Path | None, model_side: str | None,
                  max_images: int = 0) -> TestSet:
    """The test inputs and targets under ``root`` (see the module docstring); I2IError when none."""
    side = model_side or ("right" if direction == "BtoA" else "left")
    if direction and model_side and side != ("right" if direction == "BtoA" else "left"):
        raise I2IError(f"--direction {direction} disagrees with the model, which was trained on the "
                       f"{model_side} half of A|B files as input; leave --direction out")

    def cap(paths: list[Path]) -> list[Path]:
        return paths[:max_images] if max_images else paths

    if target is not None:
        inputs, refs = cap(_images(root)), _images(target)
        by_stem = {p.stem: p for p in refs}
        if inputs and all(p.stem in by_stem for p in inputs):
            return TestSet(inputs, [by_stem[p.stem] for p in inputs], "named",
                           description=f"{root} -> {target} (paired by file name)")
        return TestSet(inputs, refs, "unpaired", description=f"{root} -> {target} (unpaired)")
    a, b = root / f"{split}A", root / f"{split}B"
    if a.is_dir() and b.is_dir():
        src, ref = (b, a) if direction == "BtoA" else (a, b)
        return TestSet(cap(_images(src)), _images(ref), "unpaired",
                       description=f"{src.name} -> {ref.name} of {root.name} (unpaired: FID/KID only)")
    folder = root / split if (root / split).is_dir() else root
    files = cap(_images(folder))
    if not files:
        from i2i.video import list_videos

        videos = list_videos(folder) if folder.is_dir() else []
        held = (f" (it holds {len(videos)} video{'s' * (len(videos) > 1)}: eval scores images; translate a clip "
                f"with `i2i translate`, or give its frames as images)") if videos else ""
        raise I2IError(f"no test images in {folder}{held}: expected {split}A/ and {split}B/, {split}/ of A|B pair "
                       f"files, or a folder with --target DIR")
    from i2i.data.datasets import side_by_side
    from i2i.imageio import decode_image

    h, w = decode_image(files[0]).shape[:2]
    if not side_by_side(w, h):  # the training rule (pix2pix), so what trains as pairs is measured as pairs
        raise I2IError(f"{folder} holds single images ({w}x{h}), not A|B pairs: pass --target DIR with the "
                       f"target domain's images")
    halves = "right -> left" if side == "right" else "left -> right"
    return TestSet(files, files, "pairs", input_side=side, description=f"{folder} A|B pairs ({halves} half)")


def _split_pair(image: np.ndarray, input_side: str) -> tuple[np.ndarray, np.ndarray]:
    half = image.shape[1] // 2
    left, right = image[:, :half], image[:, half: 2 * half]
    return (left, right) if input_side == "left" else (right, left)


#: the input side of each generator of a two-direction method (G_A: A -> B, G_B: B -> A)
NET_DIRECTIONS = {"cyclegan": {"G_A": "AtoB", "G_B": "BtoA"}}


def net_direction(method: str | None, net: str | None, direction: str | None) -> str | None:
    """The direction a generator translates in: a CycleGAN's G_B is BtoA, its G_A AtoB (given or not);
    an explicit ``--direction`` that contradicts the generator is a one-line I2IError."""
    implied = NET_DIRECTIONS.get(method or "", {}).get(net or "")
    if implied is None:
        return direction
    if direction is not None and direction != implied:
        raise I2IError(f"--net {net} translates {implied[0]} -> {implied[-1]} ({implied}), but --direction is "
                       f"{direction}: drop --direction, or pick the other generator with --net")
    return implied


def metric_list(names: str) -> list[str]:
    """The metric names of a comma-separated ``--metrics`` value (``auto`` kept); none is an I2IError."""
    chosen = list(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
    if not chosen:
        raise I2IError(f"--metrics {names!r} names no metric: give e.g. --metrics fid,kid, or leave --metrics out "
                       f"(auto); `i2i list metrics` shows them")
    return chosen


def choose_metrics(names: str, pairing: str) -> list[str]:
    """``auto``: FID and KID, plus PSNR, SSIM and LPIPS when there are pairs; else the list given
    (paired metrics asked of unpaired data are an error)."""
    from i2i.metrics import spec

    if names.strip() == "auto":
        chosen = ["fid", "kid"] + (["psnr", "ssim", "lpips"] if pairing != "unpaired" else [])
    else:
        chosen = metric_list(names)
    for name in chosen:
        kind = spec(name).kind
        if kind == "masked":
            raise I2IError(f"{name} needs hole masks: use `i2i eval inpaint`")
        if kind == "paired" and pairing == "unpaired":
            raise I2IError(f"{name} compares each output with its own target, but this test set has no pairs "
                           f"(use fid, kid or is; pairs come from A|B files or --target files of the same names)")
    return chosen


@dataclass
class Result:
    values: dict[str, float] = field(default_factory=dict)
    images: int = 0
    #: target images read: the reference set of the distribution metrics, else the paired targets
    references: int = 0
    #: targets compared one to one with their outputs
    paired_references: int = 0
    #: metric -> the feature network's weights it measured with (file and sha256 prefix)
    weights: dict[str, str] = field(default_factory=dict)
    seconds_translate: float = 0.0
    seconds_metrics: float = 0.0


def evaluate(translate: Callable[[np.ndarray], np.ndarray], test: TestSet, metrics: list[str], device: str = "cpu",
             metric_kwargs: dict[str, dict[str, Any]] | None = None, save_dir: Path | None = None,
             log: Callable[[str], None] | None = None) -> Result:
    """Translate every input of ``test`` and measure ``metrics`` (names of :func:`i2i.metrics.create`)."""
    from i2i.imageio import read_image, write_image
    from i2i.metrics import create, images_to_tensor, spec

    built = {n: create(n, device=device, **(metric_kwargs or {}).get(n, {})) for n in metrics}
    distribution = [n for n in metrics if spec(n).kind == "distribution"]
    paired = [n for n in metrics if spec(n).kind == "paired"]
    result = Result()
    result.weights = {n: str(getattr(m, "weights_record")) for n, m in built.items()
                      if getattr(m, "weights_record", None)}
    outs: list[np.ndarray] = []
    tgts: list[np.ndarray] = []

    def flush() -> None:
        if not outs:
            return
        t0 = time.perf_counter()
        out_t = images_to_tensor(outs)
        for n in distribution:
            built[n].update(out_t)
        if paired:
            shapes = {o.shape for o in outs} | {t.shape for t in tgts}
            if len(shapes) > 1:
                raise I2IError(f"outputs and targets differ in size ({', '.join(sorted(str(s[1::-1]) for s in shapes))}); "
                               f"paired metrics need equal sizes")
            tgt_t = images_to_tensor(tgts)
            for n in paired:
                built[n].update(out_t, tgt_t)
        result.seconds_metrics += time.perf_counter() - t0
        outs.clear()
        tgts.clear()

    for i, path in enumerate(test.inputs):
        image = read_image(path, 3)
        target = None
        if test.pairing == "pairs":
            image, target = _split_pair(image, test.input_side)
        elif test.pairing == "named":
            target = read_image(test.targets[i], 3)
        t0 = time.perf_counter()
        out = translate(np.ascontiguousarray(image))
        result.seconds_translate += time.perf_counter() - t0
        out = np.repeat(out, 3, axis=2) if out.ndim == 3 and out.shape[2] == 1 else out[..., :3]
        if save_dir is not None:
            write_image(Path(save_dir) / f"{path.stem}.png", out)
        outs.append(out)
        if target is not None:
            tgts.append(target)
            result.paired_references += 1
        result.images += 1
        if len(outs) >= CHUNK:
            flush()
        if log and ((i + 1) % 50 == 0 or i + 1 == len(test.inputs)):
            log(f"i2i: translated {i + 1}/{len(test.inputs)}")
    flush()
    if distribution:  # the target domain, as the reference set
        t0 = time.perf_counter()
        for chunk in _chunks(test.targets, CHUNK):
            images = [read_image(p, 3) for p in chunk]
            if test.pairing == "pairs":
                images = [np.ascontiguousarray(_split_pair(im, test.input_side)[1]) for im in images]
            ref = images_to_tensor(images) if len({im.shape for im in images}) == 1 else None
            for n in distribution:
                if ref is not None:
                    built[n].update(None, ref)
                else:  # mixed sizes: one by one (Inception resizes each to 299x299)
                    for im in images:
                        built[n].update(None, images_to_tensor([im]))
            result.references += len(images)
        result.seconds_metrics += time.perf_counter() - t0
    result.references = max(result.references, result.paired_references)
    t0 = time.perf_counter()
    for n in metrics:
        result.values[n] = built[n].compute()
    result.seconds_metrics += time.perf_counter() - t0
    return result


def _chunks(items: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start: start + size]


def _json_value(v: float) -> float | None:
    return v if math.isfinite(v) else None  # strict JSON: no Infinity/NaN


def _fmt(name: str, v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if name.startswith("psnr"):
        return f"{v:.2f}"
    if name in ("fid", "is"):
        return f"{v:.2f}"
    return f"{v:.4f}"


@click.command("translate", context_settings={"show_default": True})
@click.argument("source")
@click.option("--data", required=True, help="Folder or catalogue name (`i2i list datasets`) holding the test split.")
@click.option("--split", default="test", help="Sub-folder(s) to evaluate: SPLIT/ (A|B pairs) or SPLITA/ + SPLITB/.")
@click.option("--direction", type=click.Choice(["AtoB", "BtoA"]), default=None,
              help="Which side is the input (default: the model's own for A|B pairs, else AtoB).")
@click.option("--target", "target", type=click.Path(exists=True, file_okay=False),
              help="Folder of target-domain images (pairs when the names match --data's).")
@click.option("--metrics", "metric_names", default="auto",
              help="Comma-separated metric names (`i2i list metrics`); auto: fid,kid (+ psnr,ssim,lpips with pairs).")
@click.option("--max-images", type=click.IntRange(min=0), default=0, help="Evaluate only the first N inputs (0: all).")
@click.option("--feature-weights", type=click.Path(exists=True, dir_okay=False),
              help="Local Inception weights for FID/KID/IS (else $I2I_FID_WEIGHTS, else downloaded once).")
@click.option("--lpips-weights", type=click.Path(exists=True, dir_okay=False),
              help="Local AlexNet weights for LPIPS (else $I2I_LPIPS_WEIGHTS, else downloaded once).")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False),
              help="Local weights file for a zoo SOURCE (instead of its download), as in `i2i translate`.")
@click.option("--net", help="Which generator of a checkpoint (default: the main one; a CycleGAN run's G_B with --direction BtoA; --net G_B implies BtoA).")
@click.option("--device", default="auto", help="auto, cpu, cuda, cuda:N (the model; metrics run in PyTorch).")
@click.option("--save-dir", type=click.Path(file_okay=False), help="Also write every translated image to DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def eval_translate(source: str, data: str, split: str, direction: str | None, target: str | None, metric_names: str,
                   max_images: int, feature_weights: str | None, lpips_weights: str | None, weights: str | None,
                   net: str | None, device: str, save_dir: str | None, as_json: bool) -> None:
    """FID/KID of a translator's outputs against the target domain, and PSNR/SSIM/LPIPS when pairs exist.

    FID and KID: lower is better. FID is biased upward on small sets (compare only at equal sizes);
    KID is unbiased, read it for a test set of a few hundred images or fewer.

    \b
    i2i eval translate runs/pix2pix_facades --data facades
    i2i eval translate cyclegan_h2z --data horse2zebra --feature-weights weights-inception-2015-12-05-6726825d.pth
    """
    from i2i.data.catalogue import resolve_data
    from i2i.loader import load

    metric_list(metric_names)  # an empty list is refused before any work
    g = load(source, weights=weights, device=device, net=net)  # the source first: a mistyped run fetches no dataset
    if net is None and direction == "BtoA" and g.meta.method == "cyclegan" and g.meta.net == "G_A":
        g = load(source, weights=weights, device=device, net="G_B")  # a CycleGAN checkpoint holds both directions
    direction = net_direction(g.meta.method, g.meta.net, direction)
    root = resolve_data(data)
    pairs = g.meta.info.get("ab_pairs") or {}
    model_side = pairs.get("input") if pairs else None
    test = find_test_set(root, split, direction, Path(target) if target else None, model_side, max_images)
    chosen = choose_metrics(metric_names, test.pairing)
    kwargs: dict[str, dict[str, Any]] = {}
    for n in chosen:
        if n in ("fid", "kid", "is") and feature_weights:
            kwargs[n] = {"weights": feature_weights}
        if n == "lpips" and lpips_weights:
            kwargs[n] = {"weights": lpips_weights}
    metric_device = "cuda" if str(g.device).startswith(("cuda", "tensorrt")) else "cpu"  # beside the model
    from .weights import flags_offered

    with flags_offered():  # a missing weights file's message names --feature-weights/--lpips-weights
        result = evaluate(lambda im: g.translate(im, whole=True), test, chosen, device=metric_device,
                          metric_kwargs=kwargs, save_dir=Path(save_dir) if save_dir else None,
                          log=lambda m: click.echo(m, err=True))
    from i2i.metrics import spec

    if as_json:
        doc = {
            "source": source, "model": g.meta.name, "net": g.meta.net, "data": str(root), "test_set": test.description,
            "pairing": test.pairing, "images": result.images, "references": result.references,
            "metrics": {n: {"value": _json_value(v), "higher_is_better": spec(n).higher_is_better}
                        for n, v in result.values.items()},
            "feature_weights": result.weights,
            "seconds": {"translate": round(result.seconds_translate, 2), "metrics": round(result.seconds_metrics, 2)},
        }
        click.echo(json.dumps(doc, indent=2))
        return
    from i2i.cli import table_text

    click.echo(f"{source} [{g.meta.name}] on {test.description}: {result.images} outputs, "
               f"{result.references} references")
    rows = [(n, _fmt(n, v), "higher" if spec(n).higher_is_better else "lower", spec(n).kind)
            for n, v in result.values.items()]
    click.echo(table_text(("metric", "value", "better", "kind"), rows, right=[1]))
    click.echo(f"translate {result.seconds_translate:.1f} s, metrics {result.seconds_metrics:.1f} s")
    for what in dict.fromkeys(result.weights.values()):  # which feature network the figures come from
        users = ", ".join(n for n, w in result.weights.items() if w == what)
        click.echo(f"{users} features: {what}")


__all__ = ["TestSet", "find_test_set", "choose_metrics", "evaluate", "eval_translate", "Result"]
