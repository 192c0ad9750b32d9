"""`i2i serve` over real HTTP on 127.0.0.1: valid, corrupt, huge, wrong-type and empty requests, concurrency."""

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

from i2i.registry import generators
from i2i.testing import build, generator_meta
from i2i_export.exporter import export_onnx
from i2i_export.runtime import OnnxGenerator
from i2i_export.server import Limits, create_app, is_loopback, serve_in_thread

MAX_BODY = 256 * 1024
MAX_PIXELS = 1024 * 1024
statuses: list[int] = []  # every status code this module saw: none may be 5xx


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


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
    assert info["device"] == "cpu" and info["limits"]["max_pixels"] == MAX_PIXELS
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<input type="file" id="image"' in page.text and "/v1/translate" in page.text


def test_valid_image_raw_and_multipart(client: httpx.Client, models: dict[str, Path]) -> None:
    image = rgb(100, 70)
    want = OnnxGenerator(models["unet_128"], device="cpu").translate(image)
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
    gen = OnnxGenerator(models["unet_128"], device="cpu")
    images = [rgb(64 + 8 * (i % 4), 96, seed=i) for i in range(16)]
    want = [gen.translate(im) for im in images]

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


def test_no_5xx_was_seen() -> None:
    assert statuses and not [s for s in statuses if s >= 500]


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
    script = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
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


def test_serve_command_errors(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from i2i.cli import cli

    res = CliRunner().invoke(cli, ["serve", str(tmp_path / "missing.onnx")])
    assert res.exit_code != 0 and "does not exist" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["serve", str(tmp_path / "weights.safetensors")])
    assert res.exit_code != 0 and "export a checkpoint first" in res.output
    (tmp_path / "corrupt.onnx").write_bytes(b"not a model")
    res = CliRunner().invoke(cli, ["serve", str(tmp_path / "corrupt.onnx")])
    assert res.exit_code != 0 and "not a readable ONNX model" in res.output
    assert "serving" not in res.output  # nothing claims to serve a model that did not load
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")


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
