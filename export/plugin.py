"""Hooks of the export package: the commands ``i2i export`` and ``i2i serve``.

Heavy imports (torch, onnx, fastapi) happen inside the commands, so ``i2i --help`` stays fast and
``i2i serve`` never imports torch.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Callable

import click

import i2i
from i2i.errors import I2IError


def _parse_hw(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX*,]\s*(\d+))?\s*", text)
    if not m:
        raise I2IError(f"--static takes HxW (e.g. 256x256), got {text!r}")
    h = int(m.group(1))
    return h, int(m.group(2) or h)


def _default_output(source: Path | str, fp16: bool) -> Path:
    """runs/facades/checkpoints/step_100/weights.safetensors -> facades.onnx; zoo name -> name.onnx."""
    p = Path(source)
    stem = p.stem
    if p.name == "weights.safetensors":
        parts = p.parts
        stem = parts[-4] if len(parts) >= 4 and parts[-3] == "checkpoints" else p.parent.name
    return Path(stem + ("_fp16" if fp16 else "") + ".onnx")


def _has_ema(weights_file: Path, net: str) -> bool:
    from safetensors import safe_open

    with safe_open(str(weights_file), framework="pt") as f:
        return any(k.startswith(f"ema.{net}.") for k in f.keys())


def _label(meta) -> str:  # noqa: ANN001 - GeneratorMeta, imported lazily
    zoo = (meta.info or {}).get("zoo")
    return f"{zoo} [{meta.name}]" if zoo else meta.name


def _exit_on_sigterm(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with SIGTERM raising SystemExit (status 143, as the signal would give), so its
    ``finally`` blocks run: a killed export removes its temporary folders, as on Ctrl-C. The handler
    before it is put back afterwards (a process running commands in turn, such as a test, keeps its own)."""
    import functools
    import signal
    import threading

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
            return command(*args, **kwargs)
        before = signal.signal(signal.SIGTERM, terminate)
        try:
            return command(*args, **kwargs)
        finally:
            signal.signal(signal.SIGTERM, before)

    return run


@click.command("export")
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path))
@click.option("--model", "model_name", metavar="NAME", help="A pretrained model from the zoo (`i2i list models`) instead of a checkpoint.")
@click.option("--weights", type=click.Path(path_type=Path), help="With --model: a local weights file instead of downloading; alone: a published weights file to export.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Output .onnx (default: <run name>.onnx here).")
@click.option("--opset", default=18, show_default=True, type=click.IntRange(13, 23), help="ONNX opset.")
@click.option("--fp16", is_flag=True, help="Store and run the network in float16 (inputs/outputs stay float32).")
@click.option("--static", "static", metavar="HxW", help="Fix height and width (batch stays dynamic), e.g. 256x256.")
@click.option("--net", default=None, help="Which generator of the checkpoint (G, G_A, G_B ...); default: the main one.")
@click.option("--no-ema", is_flag=True, help="Export the raw weights even when the checkpoint has EMA weights.")
@click.option("--tolerance", type=float, default=None, help="Max |onnxruntime - PyTorch| accepted (default 1e-3, 5e-2 with --fp16, times the value range).")
@click.option("--no-verify", is_flag=True, help="Skip the onnxruntime-vs-PyTorch check.")
@click.option("--exporter", type=click.Choice(["auto", "torchscript", "dynamo"]), default="auto", show_default=True,
              help="torch.onnx exporter; auto = TorchScript (fast here), dynamo if it fails.")
@click.option("--optimize", type=click.Choice(["cpu"]), default=None,
              help="Rewrite the graph for onnxruntime's CPU provider (Winograd 3x3 convolutions, the narrow "
                   "last layer on 2x2 output blocks, transposed convolutions by phase; float32, opset >= 18): "
                   "for serving on CPUs; GPUs should get the plain file.")
@_exit_on_sigterm
def export_cmd(
    checkpoint: Path | None, model_name: str | None, weights: Path | None, output: Path | None, opset: int,
    fp16: bool, static: str | None, net: str | None, no_ema: bool, tolerance: float | None, no_verify: bool, exporter: str,
    optimize: str | None,
) -> None:
    """Export a generator to ONNX (CHECKPOINT: a run folder, checkpoint folder or weights file).

    The file carries its own metadata (architecture, normalisation, size multiple, extra inputs),
    passes onnx.checker, and is compared with PyTorch in onnxruntime at a second batch size and
    image size; the command fails when they differ past the tolerance.
    """
    from i2i.checkpoint import WEIGHTS, read_meta, resolve
    from i2i.loader import load, weights_alone

    from .exporter import check_shape, default_tolerance, export_onnx, publish, verify_onnx

    if model_name is None:  # a weights file alone is the model, as in `i2i translate --weights FILE`
        alone, weights = weights_alone(checkpoint, weights)
        checkpoint = None if alone is None else Path(alone)
    if (checkpoint is None) == (model_name is None):
        raise I2IError("give either a CHECKPOINT (run folder, checkpoint folder or weights file) or --model NAME")
    static_hw = _parse_hw(static)
    used_ema = False
    source: Path | str
    if model_name is not None:
        source = model_name
    else:
        if weights is not None:
            raise I2IError("--weights goes with --model; a checkpoint already holds its weights")
        source = checkpoint  # type: ignore[assignment]
        if not Path(source).exists():
            raise I2IError(f"checkpoint {source} does not exist; pass a run folder, checkpoint folder or weights file")
        if Path(source).is_dir() or Path(source).name == WEIGHTS:
            source = resolve(source)  # names the default output after the run
            net = net or read_meta(source).get("main", "G")
            used_ema = not no_ema and _has_ema(source, net)
    if str(source).lower().endswith(".onnx"):
        raise I2IError(f"{source} is already an ONNX file")
    generator = load(source, weights=weights, device="cpu", net=net, ema=not no_ema)
    module, meta = generator.module, generator.meta
    module = module.cpu().float().eval()
    final = Path(output or _default_output(source, fp16))
    # An earlier file at the target stays until the new one has passed the check against PyTorch: the
    # new one is written under a hidden folder beside it (same name, so its .data reference holds).
    earlier = final.exists() or final.with_name(final.name + ".data").exists()
    out = final.parent / f".{final.name}.new" / final.name if earlier else final
    try:
        path = export_onnx(module, meta, out, opset=opset, static_hw=static_hw, fp16=fp16, exporter=exporter,
                           optimize=optimize)
    finally:
        if out != final and out.parent.is_dir() and not any(out.parent.iterdir()):
            out.parent.rmdir()  # the export failed before writing: nothing to inspect
    size = path.stat().st_size + sum(f.stat().st_size for f in path.parent.glob(path.name + ".data"))
    from .runtime import read_meta as read_onnx_meta

    info = read_onnx_meta(path).info["onnx"]
    axes = "batch" + ("" if static_hw else ", height, width")
    click.echo(
        f"exported {_label(meta)} ({meta.method or 'imported'} {meta.net}{', EMA weights' if used_ema else ''}) -> {final} "
        f"({size / 1e6:.1f} MB, opset {opset}, {'float16' if fp16 else 'float32'}, dynamic {axes}"
        f"{f', {static_hw[0]}x{static_hw[1]}' if static_hw else ''}, {info['exporter']} exporter)"
        + ("; the earlier file stays until the check below passes" if path != final and not no_verify else "")
    )
    if info.get("optimize"):
        click.echo(f"optimized for onnxruntime's CPU: {info['optimize']['convs_rewritten']} convolution(s) rewritten")
    click.echo("onnx.checker: ok")
    if not no_verify:
        tol = tolerance if tolerance is not None else default_tolerance(meta, fp16)
        kept = f" (the earlier {final} is as it was)" if path != final else ""
        try:
            diff = verify_onnx(path, module, meta)
        except I2IError as exc:
            raise type(exc)(f"{exc}; {path} is left for inspection{kept}") from None
        batch, (h, w) = check_shape(read_onnx_meta(path))
        click.echo(f"onnxruntime vs PyTorch (batch {batch}, {h}x{w}): max |diff| = {diff:.3g} (tolerance {tol:.3g})")
        if diff > tol:
            raise I2IError(
                f"onnxruntime differs from PyTorch by {diff:.3g}, past the tolerance {tol:.3g}; {path} is left for "
                f"inspection{kept} - raise --tolerance if this is expected (e.g. with --fp16)"
            )
    if path != final:
        publish(path, final)
        path.parent.rmdir()


@click.command("serve")
@click.argument("source", required=False, metavar="[SOURCE]")
@click.option("--model", "model_name", metavar="NAME", help="What to serve, instead of SOURCE: a zoo name (`i2i list models`), "
              "an .onnx file, a .pth/.safetensors weights file or a run/checkpoint folder.")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), help="With a zoo name: a local weights file instead of downloading; alone: a published weights file to serve.")
@click.option("--net", default=None, help="Which generator of a checkpoint (G_B for CycleGAN's B->A); default: the main one.")
@click.option("--no-ema", is_flag=True, help="Use a checkpoint's raw weights even when it has EMA weights.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; anything but loopback exposes the model to the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N, or tensorrt (.onnx files).")
@click.option("--threads", default=0, show_default=True, type=click.IntRange(min=0), help="onnxruntime intra-op threads (0: its default).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Inference threads (one is best on CPU).")
@click.option("--max-body-mb", default=32.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Largest request body.")
@click.option("--max-pixels", default=4096 * 4096, show_default=True, type=click.IntRange(min=1), help="Largest input image (width x height).")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Seconds per request, queueing included.")
@click.option("--max-queue", default=64, show_default=True, type=click.IntRange(min=1), help="Requests in progress before 503.")
@click.option("--tile", default=0, show_default=True, type=click.IntRange(min=0), help="Translate images larger than this in tiles (0: whole).")
def serve_cmd(source: str | None, model_name: str | None, weights: Path | None, net: str | None, no_ema: bool, host: str,
              port: int, device: str, threads: int, workers: int, max_body_mb: float, max_pixels: int, timeout: float,
              max_queue: int, tile: int) -> None:
    """Serve a generator over HTTP: POST /v1/translate, GET /v1/model, GET /healthz, and a page at /.

    SOURCE (or --model NAME): a zoo name, an .onnx file (served without torch), a .pth/.safetensors
    weights file, or a run/checkpoint folder - anything `i2i translate --model` takes.
    """
    from i2i.loader import load, parse_device, weights_alone

    from .server import Limits, is_loopback, serve

    if model_name is None:  # a weights file alone is the model, as in `i2i translate --weights FILE`
        source, weights = weights_alone(source, weights)

    if source is not None and model_name is not None:
        raise I2IError(f"give SOURCE ({source}) or --model NAME ({model_name}), not both")
    if source is None and model_name is None:
        raise I2IError("name the generator to serve: SOURCE (`i2i serve model.onnx`, a run folder, a weights file) "
                       "or --model NAME (`i2i serve --model cyclegan_horse2zebra`)")
    what: str = source or model_name  # type: ignore[assignment]
    parse_device(device)  # an unknown device fails in one line, before anything is opened
    limits = Limits(max_body_bytes=int(max_body_mb * 1024 * 1024), max_pixels=max_pixels, timeout_s=timeout, max_queue=max_queue)
    # opened before anything says it is serving: a bad source fails first, in one line
    generator = load(what, weights=weights, device=device, net=net, ema=not no_ema, threads=threads)
    if not is_loopback(host):
        warnings.warn(f"i2i serve: binding to {host} makes the model reachable from other machines, without authentication", UserWarning, stacklevel=1)
    serve(what, host=host, port=port, generator=generator, limits=limits, workers=workers, tile=tile)


@i2i.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(export_cmd, "export")
    cli.add_command(serve_cmd, "serve")
