"""`i2i serve` over real HTTP on 127.0.0.1: valid, corrupt, huge, wrong-type and empty requests, concurrency,
and any source i2i.load opens (an .onnx file, a checkpoint, a zoo name) through `create_app` and `i2i serve`.

Keep-alive behaviour after bad requests, and byte-identity with `i2i translate`: test_serve_faults.py.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

import i2i
from i2i.registry import generators
from i2i.testing import build, generator_meta
from i2i_export.exporter import export_onnx
from i2i_export.server import Limits, create_app, is_loopback, serve_in_thread
from images import import_blocker, png, rgb

MAX_BODY = 256 * 1024
MAX_PIXELS = 1024 * 1024
statuses: list[int] = []  # every status code this module saw: none may be 5xx




def post(client: httpx.Client, url: str, **kw) -> httpx.Response:
    r = client.post(url, **kw)
    statuses.append(r.status_code)
    return r


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("serve")
    out = {}
    for name in ("unet_128", "deepfill_v2"):
        spec = generators().get(name)
        out[name] = export_onnx(build(spec).eval(), generator_meta(spec), d / f"{name}.onnx")
    return out


@pytest.fixture(scope="module")
def server(models: dict[str, Path]) -> Iterator[str]:
    app = create_app(models["unet_128"], device="cpu", limits=Limits(max_body_bytes=MAX_BODY, max_pixels=MAX_PIXELS, timeout_s=60))
    with serve_in_thread(app, port=0) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def test_get_endpoints(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["providers"] == ["CPUExecutionProvider"]
    info = client.get("/v1/model").json()
    assert info["meta"]["name"] == "unet_128" and info["meta"]["size_multiple"] == 128
    assert info["device"] == "cpu" and info["providers"] == ["CPUExecutionProvider"]
    assert info["limits"]["max_pixels"] == MAX_PIXELS and info["tile"] == 0
    assert info["tiling"] == info["meta"]["tiling"] == "local" and info["can_tile"] is True
    assert info["source"] == "unet_128.onnx"  # the file's name, not where it lives on the server
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<input type="file" id="image"' in page.text and "/v1/translate" in page.text


def test_valid_image_raw_and_multipart(client: httpx.Client, models: dict[str, Path]) -> None:
    image = rgb(100, 70)
    want = i2i.load(models["unet_128"], device="cpu").translate(image)
    r = post(client, "/v1/translate", content=png(image), headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert float(r.headers["x-inference-ms"]) > 0 and r.headers["x-providers"] == "CPUExecutionProvider"
    got = np.asarray(Image.open(io.BytesIO(r.content)))
    assert np.array_equal(got, want)  # PNG is lossless: exactly the runtime's pixels
    r = post(client, "/v1/translate", files={"image": ("x.png", png(image), "image/png")})
    assert r.status_code == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))), want)
    r = post(client, "/v1/translate?format=jpeg", content=png(image), headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (70, 100)
    r = post(client, "/v1/translate", content=png(image), headers={"content-type": "image/png", "accept": "image/webp"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"


def test_corrupt_images_are_422(client: httpx.Client) -> None:
    data = png(rgb(64, 64))
    for body in (b"definitely not an image" * 20, data[: len(data) // 2]):
        r = post(client, "/v1/translate", content=body, headers={"content-type": "image/png"})
        assert r.status_code == 422, r.text
        assert "image" in r.json()["error"]


def test_huge_body_and_huge_image_are_413(client: httpx.Client) -> None:
    big = np.random.default_rng(0).bytes(MAX_BODY + 1)
    r = post(client, "/v1/translate", content=big, headers={"content-type": "image/png"})
    assert r.status_code == 413 and f"at most {MAX_BODY}" in r.json()["error"]
    # a small body that decodes to too many pixels (a decompression bomb): refused before decoding
    bomb = png(np.zeros((1500, 1500, 3), np.uint8))
    assert len(bomb) < MAX_BODY
    r = post(client, "/v1/translate", content=bomb, headers={"content-type": "image/png"})
    assert r.status_code == 413 and "1500x1500" in r.json()["error"]


def test_wrong_content_type_is_415_and_empty_body_422(client: httpx.Client) -> None:
    for ctype in ("text/plain", "application/json"):
        r = post(client, "/v1/translate", content=b"{}", headers={"content-type": ctype})
        assert r.status_code == 415 and ctype in r.json()["error"]
    r = post(client, "/v1/translate", content=b"", headers={"content-type": "image/png"})
    assert r.status_code == 422 and "empty" in r.json()["error"]
    r = post(client, "/v1/translate", files={"other": ("x.png", png(rgb(8, 8)), "image/png")})
    assert r.status_code == 422 and "'image'" in r.json()["error"]
    r = post(client, "/v1/translate?format=gif", content=png(rgb(8, 8)), headers={"content-type": "image/png"})
    assert r.status_code == 422


def test_sixteen_concurrent_clients(server: str, models: dict[str, Path]) -> None:
    gen = i2i.load(models["unet_128"], device="cpu")
    images = [rgb(64 + 8 * (i % 4), 96, seed=i) for i in range(16)]
    want = [gen(im) for im in images]

    def one(i: int) -> tuple[int, np.ndarray | None]:
        with httpx.Client(base_url=server, timeout=60) as c:
            r = post(c, "/v1/translate", content=png(images[i]), headers={"content-type": "image/png"})
            return r.status_code, (np.asarray(Image.open(io.BytesIO(r.content))) if r.status_code == 200 else None)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert [code for code, _ in results] == [200] * 16
    for (_, got), exp in zip(results, want):
        assert np.array_equal(got, exp)  # each client got its own image back


def test_inpainting_server_needs_a_matching_mask(models: dict[str, Path]) -> None:
    app = create_app(models["deepfill_v2"], device="cpu")
    image = rgb(40, 48)
    mask = np.zeros((40, 48), np.uint8)
    mask[8:24, 8:24] = 255
    with serve_in_thread(app, port=0) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = post(c, "/v1/translate", files={"image": ("i.png", png(image), "image/png"), "mask": ("m.png", png(mask), "image/png")})
        assert r.status_code == 200
        out = np.asarray(Image.open(io.BytesIO(r.content)))
        assert out.shape == image.shape and np.array_equal(out[mask == 0], image[mask == 0])
        r = post(c, "/v1/translate", content=png(image), headers={"content-type": "image/png"})
        assert r.status_code == 422 and "'mask'" in r.json()["error"]
        r = post(c, "/v1/translate", files={"image": ("i.png", png(image), "image/png"), "mask": ("m.png", png(mask[:20]), "image/png")})
        assert r.status_code == 422 and "mask is 48x20" in r.json()["error"]


def test_queue_bound_and_timeout(models: dict[str, Path]) -> None:
    # Overload answers are deliberate 503/504s with a clear message, never a hang or a crash.
    body = png(rgb(256, 256))
    app = create_app(models["unet_128"], device="cpu", limits=Limits(max_queue=1))
    # Hold the first request inside inference until the second has been answered, so the two
    # overlap however fast or loaded the machine is.
    translator, release = app.state.translator, threading.Event()
    infer = translator._infer
    translator._infer = lambda *args: (release.wait(20), infer(*args))[1]
    with serve_in_thread(app, port=0) as url:
        def one() -> httpx.Response:
            return httpx.post(url + "/v1/translate", content=body, headers={"content-type": "image/png"}, timeout=60)

        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(one)
            deadline = time.monotonic() + 30
            while translator.pending == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            busy = one()
            release.set()
            assert first.result().status_code == 200
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1" and "server busy" in busy.json()["error"]
    app = create_app(models["unet_128"], device="cpu", limits=Limits(timeout_s=0.001))
    with serve_in_thread(app, port=0) as url:
        r = httpx.post(url + "/v1/translate", content=body, headers={"content-type": "image/png"}, timeout=60)
    assert r.status_code in (408, 504), r.text  # the body or the work outlived the 1 ms deadline
    assert "0.001 s" in r.json()["error"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command(models: dict[str, Path]) -> None:
    port = free_port()
    # only the export plugin: `i2i serve` needs no torch-based plugin, and starts in ~1 s instead of ~9 s
    blocked = "i2i_pix2pix,i2i_losses,i2i_cyclegan,i2i_srgan,i2i_inpaint,i2i_datasets"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "I2I_BLOCK_PLUGINS": blocked}
    # ... and with torch made unimportable, as on a serving machine without it
    script = import_blocker("torch", "torchvision") + (
        "from i2i.cli import main\n"
        f"sys.argv = ['i2i', 'serve', {str(models['unet_128'])!r}, '--port', '{port}']\n"
        "main()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "i2i serve did not start"
                time.sleep(0.2)
        assert r.json()["model"] == "unet_128"
        r = httpx.post(f"http://127.0.0.1:{port}/v1/translate", content=png(rgb(30, 40)), headers={"content-type": "image/png"}, timeout=60)
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (40, 30)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert f"serving {models['unet_128']} on http://127.0.0.1:{port}/" in output
    assert "model unet_128 (imported) running on CPUExecutionProvider" in output
    assert "PluginWarning" not in output and "Traceback" not in output


@pytest.mark.parametrize("args, says", [
    (["{tmp}/missing.onnx"], "does not exist"),
    (["{tmp}/weights.safetensors"], "does not exist"),
    (["{tmp}/corrupt.onnx"], "not an ONNX model this onnxruntime can run"),
    ([], "name the generator to serve"),
    (["{tmp}/corrupt.onnx", "--model", "cyclegan_h2z"], "not both"),
    (["{tmp}/corrupt.onnx", "--device", "gpu"], "unknown device 'gpu'"),
    (["{tmp}/x.pth", "--device", "tensorrt"], "tensorrt is for .onnx models"),
    (["--model", "no_such_model_anywhere"], "no_such_model_anywhere"),
])
def test_serve_command_errors(tmp_path: Path, args: list[str], says: str) -> None:
    from click.testing import CliRunner

    from i2i.cli import cli

    (tmp_path / "corrupt.onnx").write_bytes(b"not a model")
    res = CliRunner().invoke(cli, ["serve", *(a.format(tmp=tmp_path) for a in args)])
    assert res.exit_code != 0 and says in res.output, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1  # one line
    assert "serving" not in res.output  # nothing claims to serve a model that did not load


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")


def test_serve_command_hands_its_options_to_i2i_load(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from click.testing import CliRunner

    import i2i.loader
    from i2i.cli import cli

    seen: list[tuple[str, dict]] = []
    real = i2i.loader.load

    def load(source: str, **kw: object) -> i2i.Generator:
        seen.append((source, kw))
        return real(models["unet_128"], device="cpu")

    served: list[dict] = []
    monkeypatch.setattr(i2i.loader, "load", load)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(kw))
    runner = CliRunner()
    res = runner.invoke(cli, ["serve", "runs/facades", "--net", "G_B", "--no-ema", "--device", "cuda:1", "--threads", "3", "--port", "9"])
    assert res.exit_code == 0, res.output
    assert seen[-1] == ("runs/facades", {"weights": None, "device": "cuda:1", "net": "G_B", "ema": False, "threads": 3})
    res = runner.invoke(cli, ["serve", "--model", "cyclegan_h2z", "--weights", "h2z.pth", "--port", "9"])
    assert res.exit_code == 0, res.output
    source, kw = seen[-1]
    assert source == "cyclegan_h2z" and str(kw["weights"]) == "h2z.pth" and kw["device"] == "auto" and kw["ema"] is True
    assert served[-1]["port"] == 9 and "serving cyclegan_h2z on http://127.0.0.1:9/" in res.output


def test_a_zoo_name_is_served_by_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`i2i serve --model NAME --weights FILE`: a PyTorch generator, opened before anything says it serves."""
    import torch
    import uvicorn
    from click.testing import CliRunner

    from i2i import plugins
    from i2i.cli import cli
    from i2i.imageio import decode_image, encode_image
    from i2i.registry import ModelSpec, models as zoo

    spec = generators().get("unet_128")
    torch.save(build(spec).eval().state_dict(), tmp_path / "w.pth")
    zoo().add(ModelSpec("serve_test_unet", "unet_128", "http://127.0.0.1:9/never.pth", plugin="test",
                        generator_kwargs=dict(spec.test_kwargs)))
    apps: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    try:
        res = CliRunner().invoke(cli, ["serve", "--model", "serve_test_unet", "--weights", str(tmp_path / "w.pth"),
                                       "--device", "cpu", "--port", "8123"])
        assert res.exit_code == 0, res.output
        lines = res.output.splitlines()
        assert lines[-2] == "model unet_128 (imported) running on cpu"
        assert lines[-1].startswith("serving serve_test_unet on http://127.0.0.1:8123/")
        image = rgb(36, 20)
        want = encode_image(i2i.load("serve_test_unet", weights=tmp_path / "w.pth", device="cpu")(image))
    finally:
        plugins.reset()  # forget the test entry
    with serve_in_thread(apps[0], port=0) as url, httpx.Client(base_url=url, timeout=60) as c:
        info = c.get("/v1/model").json()
        assert info["meta"]["info"]["zoo"] == "serve_test_unet" and info["device"] == "cpu" and info["providers"] == []
        r = post(c, "/v1/translate", content=png(image), headers={"content-type": "image/png"})
        assert r.status_code == 200 and r.headers["x-providers"] == "cpu"
        assert r.content == want and decode_image(r.content).shape == (36, 20, 3)


def test_a_checkpoint_file_is_served(models: dict[str, Path], tmp_path: Path) -> None:
    from i2i.checkpoint import save_generator
    from i2i.imageio import encode_image

    spec = generators().get("unet_128")
    path = save_generator(tmp_path / "unet.safetensors", build(spec).eval(), generator_meta(spec))
    image = rgb(50, 30)
    want = encode_image(i2i.load(path, device="cpu").translate(image))
    with serve_in_thread(create_app(path, device="cpu"), port=0) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/v1/model").json()["source"] == "unet.safetensors"
        r = post(c, "/v1/translate", content=png(image), headers={"content-type": "image/png"})
        assert r.status_code == 200 and r.content == want


def test_tiles_are_refused_at_start_for_a_model_that_cannot_tile(models: dict[str, Path]) -> None:
    from i2i.errors import I2IError

    g = i2i.load(models["unet_128"], device="cpu")
    g.meta.tiling = "whole_image"  # as InstanceNorm generators say
    with pytest.raises(I2IError, match="whole-image statistics.*--tile cannot be used"):
        create_app(models["unet_128"], generator=g, tile=64)
    app = create_app(models["unet_128"], generator=g)  # whole images are fine
    assert app.state.translator.tile == 0


def test_multipart_parts_are_closed_once_read() -> None:
    """Each uploaded part is a spooled temporary file (on disk past 1 MB): closed by the request, not left
    to the garbage collector, which would keep file descriptors open under load."""
    import asyncio
    import warnings

    from starlette.requests import Request

    from i2i_export.server import _parts

    image, mask = png(rgb(8, 8)), png(np.zeros((8, 8), np.uint8))
    body = b"".join(b"--b\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s.png\"\r\n"
                    b"Content-Type: image/png\r\n\r\n%s\r\n" % (name, name, data)
                    for name, data in ((b"image", image), (b"mask", mask))) + b"--b--\r\n"
    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", b"multipart/form-data; boundary=b")]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        got = asyncio.run(_parts(Request(scope), body, Limits()))
    assert got == (image, mask)
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_no_5xx_was_seen() -> None:
    assert statuses and not [s for s in statuses if s >= 500]  # runs last: every request this module sent through post()


def test_video_bodies_are_recognised_without_a_decoder() -> None:
    """The sniff behind the 415 for a clip sent as octet-stream or a form part (docs/video.md): the
    first bytes of each container, and images (HEIC/AVIF share MP4's ftyp box) are not videos."""
    from i2i_export.server import video_kind

    ts = (b"\x47" + b"\x00" * 187) * 3
    cases = {
        b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00": "mp4/mov",
        b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00": "mp4/mov",
        b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01": "mkv/webm",
        b"RIFF\x00\x10\x00\x00AVI LIST": "avi",
        ts: "mpeg-ts",
        (b"\x00\x00\x00\x00" + ts[:188]) * 3: "mpeg-ts",  # M2TS: a time code before each packet
        b"GIF89a" + b"\x00" * 182 + b"G" + b"\x00" * 200: None,  # a GIF's 'G' (0x47) is not one sync byte
        b"FLV\x01\x05": "flv",
        b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00": None,
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00": None,
        png(rgb(8, 8)): None,
        b"\xff\xd8\xff\xe0\x00\x10JFIF": None,
        b"": None,
    }
    for data, kind in cases.items():
        assert video_kind(data) == kind, data[:16]
