"""`i2i serve` and client mistakes, and one inference path for every door.

- Every bad request (the whole corpus, in a row, on ONE keep-alive connection) is answered with a
  4xx and a JSON error, and the next good request on that same connection succeeds; an image the
  generator cannot take is a 422 with its reason; a bug of ours is a JSON 500 that also leaves the
  connection open.
- RGBA, LA, palette-with-transparency, 16-bit grey, CMYK and EXIF-rotated files give byte-identical
  PNGs through the server, through ``i2i.load(...).translate`` + ``encode_image``, and through
  ``i2i translate``.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import i2i
from i2i.artifact import META_KEY
from i2i.imageio import decode_image, encode_image
from i2i.registry import generators
from i2i.testing import build, generator_meta
from i2i_export.exporter import export_onnx
from i2i_export.server import Limits, create_app, serve_in_thread
from images import import_blocker, png, rgb

MAX_BODY = 64 * 1024
MAX_PIXELS = 64 * 64
STATIC = 32  # the inpainting model below takes images up to 32x32, and no larger




def hole_mask(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[h // 4 : h // 2, w // 4 : w // 2] = 255
    return m


def multipart(parts: dict[str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body with one file field per part, and its content type."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        b"--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s.png\"\r\nContent-Type: image/png\r\n\r\n%s\r\n"
        % (boundary.encode(), name.encode(), name.encode(), data)
        for name, data in parts.items()
    ) + b"--%s--\r\n" % boundary.encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Connection:
    """One HTTP/1.1 keep-alive connection that must stay the same socket from first to last request.

    http.client reconnects silently when the server closed the connection after saying so, so the
    socket is checked after every answer; a connection dropped without saying so fails the next
    request (ConnectionResetError, RemoteDisconnected).
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.conn.connect()
        self.sock = self.conn.sock
        self.local = self.sock.getsockname()
        self.requests = 0

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        data = r.read()
        self.requests += 1
        assert self.conn.sock is self.sock and self.sock.getsockname() == self.local, (
            f"request {self.requests} ({method} {path} -> {r.status}) did not keep the connection open")
        assert (r.getheader("connection") or "").lower() != "close"
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def close(self) -> None:
        self.conn.close()


def json_error(status: int, headers: dict[str, str], data: bytes) -> str:
    assert headers["content-type"] == "application/json", (status, data[:200])
    doc = json.loads(data)
    assert doc["status"] == status and isinstance(doc["error"], str) and doc["error"]
    return doc["error"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("faults")
    out = {}
    spec = generators().get("unet_128")
    out["unet"] = export_onnx(build(spec).eval(), generator_meta(spec), d / "unet.onnx")
    # an inpainting model exported at a fixed 32x32 whose metadata says it normalises over the whole
    # image: it can be neither tiled nor given a larger image, so the generator itself refuses those
    spec = generators().get("deepfill_v2")
    meta = generator_meta(spec)
    meta.tiling = "whole_image"
    out["inpaint"] = export_onnx(build(spec).eval(), meta, d / "inpaint.onnx", static_hw=(STATIC, STATIC))
    # an imported file whose metadata leaves out the size multiple its UNet needs (as third-party
    # files do): small images reach the network unpadded, and onnxruntime refuses them
    import onnx

    m = onnx.load(out["unet"])
    for prop in m.metadata_props:
        if prop.key == META_KEY:
            doc = json.loads(prop.value)
            doc["size_multiple"] = 1
            prop.value = json.dumps(doc)
    out["picky"] = d / "picky.onnx"
    onnx.save(m, out["picky"])
    return out


@pytest.fixture(scope="module")
def inpaint_url(models: dict[str, Path]) -> Iterator[str]:
    app = create_app(models["inpaint"], device="cpu", limits=Limits(max_body_bytes=MAX_BODY, max_pixels=MAX_PIXELS, timeout_s=60))
    with serve_in_thread(app, port=0) as url:
        yield url


def form(**parts: bytes) -> tuple[bytes, dict[str, str]]:
    body, ctype = multipart(parts)
    return body, {"content-type": ctype}


def test_every_bad_request_is_a_4xx_and_the_connection_keeps_serving(inpaint_url: str, models: dict[str, Path]) -> None:
    image, mask = rgb(24, 30), hole_mask(24, 30)
    good = form(image=png(image), mask=png(mask))
    want = encode_image(i2i.load(models["inpaint"], device="cpu").translate(image, mask))
    truncated = png(rgb(24, 30, seed=1))[:300]
    raw = {"content-type": "image/png"}
    corpus: list[tuple[str, int, str, str, str, tuple[bytes, dict[str, str]]]] = [
        # (what, status, in the message, method, path, (body, headers))
        ("empty body", 422, "empty", "POST", "/v1/translate", (b"", raw)),
        ("empty image part", 422, "cannot read the image: empty", "POST", "/v1/translate", form(image=b"", mask=png(mask))),
        ("garbage bytes", 422, "cannot read the image", "POST", "/v1/translate", (b"definitely not an image" * 20, raw)),
        ("truncated PNG", 422, "cannot read the image", "POST", "/v1/translate", form(image=truncated, mask=png(mask))),
        ("PNG past max_pixels", 413, "the image is 100x100", "POST", "/v1/translate",
         form(image=png(rgb(100, 100)), mask=png(hole_mask(100, 100)))),
        ("mask past max_pixels", 413, "the mask is 100x100", "POST", "/v1/translate",
         form(image=png(image), mask=png(hole_mask(100, 100)))),
        ("body past max_body_bytes", 413, f"at most {MAX_BODY}", "POST", "/v1/translate", (b"\0" * (MAX_BODY + 1), raw)),
        ("wrong content type", 415, "text/plain", "POST", "/v1/translate", (png(image), {"content-type": "text/plain"})),
        ("no content type", 415, "(none)", "POST", "/v1/translate", (png(image), {})),
        ("malformed multipart", 422, "multipart", "POST", "/v1/translate",
         (b"--nope\r\nthis is not multipart\r\n", {"content-type": "multipart/form-data; boundary=xyz"})),
        ("multipart without boundary", 422, "multipart", "POST", "/v1/translate", (good[0], {"content-type": "multipart/form-data"})),
        ("multipart without an image field", 422, "'image'", "POST", "/v1/translate", form(mask=png(mask))),
        ("image larger than the generator takes", 422, "fixed 32x32", "POST", "/v1/translate",
         form(image=png(rgb(40, 40)), mask=png(hole_mask(40, 40)))),
        ("bad format query", 422, "gif", "POST", "/v1/translate?format=gif", good),
        ("bad quality", 422, "quality", "POST", "/v1/translate?format=jpeg&quality=0", good),
        ("quality not a number", 422, "quality", "POST", "/v1/translate?quality=high", good),
        ("no mask for an inpainting model", 422, "'mask'", "POST", "/v1/translate", (png(image), raw)),
        ("mask of the wrong size", 422, "the mask is 30x20 but the image is 30x24", "POST", "/v1/translate",
         form(image=png(image), mask=png(hole_mask(20, 30)))),
        ("mask that is not an image", 422, "cannot read the mask", "POST", "/v1/translate", form(image=png(image), mask=b"nope")),
        ("mask with no hole", 422, "no hole", "POST", "/v1/translate", form(image=png(image), mask=png(np.zeros((24, 30), np.uint8)))),
        ("colour photo as the mask", 422, "colour", "POST", "/v1/translate", form(image=png(image), mask=png(image))),
        ("unknown path", 404, "Not Found", "POST", "/v2/translate", good),
        ("wrong method", 405, "Method Not Allowed", "GET", "/v1/translate", (b"", {})),
    ]
    c = Connection(inpaint_url)
    try:
        status, _, data = c.request("POST", "/v1/translate", *good)
        assert status == 200 and data == want
        for what, status_want, needle, method, path, (body, headers) in corpus:
            status, h, data = c.request(method, path, body, headers)
            assert status == status_want, f"{what}: {status} {data[:300]!r}"
            message = json_error(status, h, data)
            assert needle in message, f"{what}: {message}"
            status, h, data = c.request("POST", "/v1/translate", *good)
            assert status == 200 and h["content-type"] == "image/png", f"after {what}: {status} {data[:300]!r}"
            assert data == want, f"after {what}: another picture came back"
        assert c.requests == 2 * len(corpus) + 1
    finally:
        c.close()


def test_an_image_the_generator_cannot_take_is_422_not_500(models: dict[str, Path]) -> None:
    # the metadata of "picky" does not say that its UNet needs 128-multiples: a 2x2 image reaches
    # onnxruntime as it is, which refuses it - the client's image, so 422 with the reason
    app = create_app(models["picky"], device="cpu")
    with serve_in_thread(app, port=0) as url:
        c = Connection(url)
        try:
            status, h, data = c.request("POST", "/v1/translate", png(rgb(2, 2)), {"content-type": "image/png"})
            assert status == 422 and "cannot take a 2x2 input" in json_error(status, h, data)
            assert "\n" not in json.loads(data)["error"]  # one line
            status, _, data = c.request("POST", "/v1/translate", png(rgb(128, 128)), {"content-type": "image/png"})
            assert status == 200 and decode_image(data).shape == (128, 128, 3)
        finally:
            c.close()


def test_a_bug_is_a_json_500_and_the_connection_survives(models: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(models["unet"], device="cpu")
    tr = app.state.translator
    real, calls = tr._infer, []

    def buggy(*args):  # a bug of ours on the first request only
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("boom")
        return real(*args)

    tr._infer = buggy
    body = png(rgb(20, 20))
    with caplog.at_level(logging.ERROR, logger="i2i.serve"), serve_in_thread(app, port=0) as url:
        c = Connection(url)
        try:
            status, h, data = c.request("POST", "/v1/translate", body, {"content-type": "image/png"})
            assert status == 500 and "ZeroDivisionError" in json_error(status, h, data)
            status, _, data = c.request("POST", "/v1/translate", body, {"content-type": "image/png"})
            assert status == 200 and decode_image(data).shape == (20, 20, 3)
        finally:
            c.close()
    assert "boom" in caplog.text  # the traceback is in the server log


def _mask_files(d: Path) -> dict[str, Path]:
    """Masks as people make them: grey, grey with JPEG noise, strokes on a transparent layer (RGBA and
    LA), an opaque RGBA grey mask, and the mistakes (all zero, all hole, a colour photo, wrong size)."""
    h, w = 24, 30
    grey = hole_mask(h, w)
    strokes = np.zeros((h, w, 4), np.uint8)
    strokes[..., :3] = 200  # the colour under transparent pixels says nothing
    strokes[3:9, 4:20, 3] = 255
    la = np.stack([np.full((h, w), 255, np.uint8), grey], axis=2)
    opaque = np.concatenate([np.repeat(grey[..., None], 3, axis=2), np.full((h, w, 1), 255, np.uint8)], axis=2)
    photo = rgb(h, w)
    photo[: h // 2] = 0  # a dark region: as a grey mask it would mark some hole and some kept pixels
    files = {}
    for name, array in {"grey": grey, "strokes": strokes, "la": la, "opaque_rgba": opaque,
                        "all_zero": np.zeros((h, w), np.uint8), "all_hole": np.full((h, w), 9, np.uint8),
                        "colour": photo, "small": grey[:20]}.items():
        Image.fromarray(array).save(files.setdefault(name, d / f"{name}.png"))
    Image.fromarray(grey).save(files.setdefault("jpeg", d / "grey.jpg"), quality=70)
    return files


def test_uploaded_masks_mean_what_translate_mask_means(tmp_path: Path) -> None:
    # the server's mask reader is kept in step with i2i.translate.read_mask by hand: check they agree
    from i2i.errors import I2IError
    from i2i.translate import read_mask
    from i2i_export.server import ServeError, mask_from_upload

    for name, path in _mask_files(tmp_path).items():
        try:
            want = read_mask(str(path), (24, 30))
        except I2IError:
            want = None
        try:
            got = mask_from_upload(path.read_bytes(), (24, 30), MAX_PIXELS)
        except (I2IError, ServeError):
            got = None
        assert (got is None) == (want is None), f"{name}: the CLI {'refuses' if want is None else 'takes'} it, the server does not"
        if want is not None:
            assert got.dtype == np.float32 and np.array_equal(got, want), name
            assert 0 < got.sum() < got.size


# ------------------------------------------------------------------------------ one path, three doors


def _pictures(d: Path) -> dict[str, Path]:
    """Files in the modes that used to differ between `i2i translate` and `i2i serve`."""
    rng = np.random.default_rng(7)
    files = {}
    rgba = rng.integers(0, 256, (26, 34, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(files.setdefault("rgba", d / "rgba.png"))
    la = rng.integers(0, 256, (22, 18, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(files.setdefault("la", d / "la.png"))
    pal = Image.fromarray(rng.integers(0, 16, (20, 24), dtype=np.uint8), "P")
    pal.putpalette(rng.integers(0, 256, 16 * 3, dtype=np.uint8).tolist())
    pal.save(files.setdefault("palette", d / "palette.png"), transparency=3)
    grey16 = (np.linspace(0, 65535, 30 * 20).reshape(20, 30)).astype(np.uint16)
    Image.fromarray(grey16).save(files.setdefault("grey16", d / "grey16.png"))
    Image.fromarray(rgb(24, 28, seed=3)).convert("CMYK").save(files.setdefault("cmyk", d / "cmyk.jpg"), quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rgb(16, 40, seed=4)).save(files.setdefault("exif", d / "exif.jpg"), exif=exif, quality=95)
    return files


@pytest.fixture(scope="module")
def doors(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """Each picture's PNG through the server, the Python API and `i2i translate`."""
    from i2i.cli import cli

    d = tmp_path_factory.mktemp("doors")
    files = _pictures(d)
    g = i2i.load(models["unet"], device="cpu")
    api = {k: encode_image(g.translate(decode_image(p))) for k, p in files.items()}
    out = d / "out"
    res = CliRunner(env={"NO_ALBUMENTATIONS_UPDATE": "1"}).invoke(
        cli, ["translate", *map(str, files.values()), "--model", str(models["unet"]), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    cli_out = {k: (out / f"{p.stem}.png").read_bytes() for k, p in files.items()}
    served = {}
    with serve_in_thread(create_app(models["unet"], device="cpu"), port=0) as url:
        c = Connection(url)
        try:
            for k, p in files.items():
                status, h, data = c.request("POST", "/v1/translate", p.read_bytes(), {"content-type": "application/octet-stream"})
                assert status == 200 and h["content-type"] == "image/png", (k, data[:300])
                served[k] = data
        finally:
            c.close()
    return {"api": api, "cli": cli_out, "served": served, "files": files}  # type: ignore[dict-item]


@pytest.mark.parametrize("kind", ["rgba", "la", "palette", "grey16", "cmyk", "exif"])
def test_server_api_and_cli_write_the_same_png_bytes(doors: dict, kind: str) -> None:
    served, api, cli_out = doors["served"][kind], doors["api"][kind], doors["cli"][kind]
    assert served == api, f"{kind}: the server's PNG differs from encode_image(i2i.load(...).translate(...))"
    assert served == cli_out, f"{kind}: the server's PNG differs from the file `i2i translate` wrote"
    with Image.open(io.BytesIO(served)) as out, Image.open(doors["files"][kind]) as src:
        mode, size = out.mode, out.size
        src_size = src.size
    # alpha kept, grey in - grey out, palette transparency honoured, EXIF orientation applied
    want_mode = {"rgba": "RGBA", "la": "LA", "palette": "RGBA", "grey16": "L", "cmyk": "RGB", "exif": "RGB"}[kind]
    assert mode == want_mode
    assert size == (src_size[::-1] if kind == "exif" else src_size)
    if kind in ("rgba", "la"):  # scale 1: the alpha channel comes back as sent
        assert np.array_equal(decode_image(served)[..., -1], decode_image(doors["files"][kind])[..., -1])


def test_sixteen_bit_grey_is_not_white_through_the_server(doors: dict, models: dict[str, Path]) -> None:
    served = decode_image(doors["served"]["grey16"])
    cli_pixels = np.asarray(Image.open(io.BytesIO(doors["cli"]["grey16"])))
    assert np.array_equal(served[:, :, 0], cli_pixels)
    # the same picture in 8 bits (v / 257) translates to the same pixels; a white one does not
    grey16 = np.asarray(Image.open(doors["files"]["grey16"])).astype(np.float64)
    grey8 = np.rint(grey16 / 257).astype(np.uint8)
    assert grey8.min() == 0 and grey8.max() == 255
    g = i2i.load(models["unet"], device="cpu")
    assert np.array_equal(served, g.translate(grey8))
    assert not np.array_equal(served, g.translate(np.full_like(grey8, 255)))  # what the server used to see


# ------------------------------------------------------------------------------ torch-free serving


def test_create_app_on_onnx_never_imports_torch(models: dict[str, Path]) -> None:
    # A serving install has no torch: block every torch import, then build the app and translate.
    script = import_blocker("torch", "torchvision") + textwrap.dedent(f"""
        import sys
        import http.client, io
        import numpy as np
        from PIL import Image
        from i2i_export.server import create_app, serve_in_thread
        app = create_app({str(models['unet'])!r}, device="cpu")
        buf = io.BytesIO()
        Image.fromarray(np.full((20, 30, 4), 99, np.uint8)).save(buf, format="PNG")
        with serve_in_thread(app, port=0) as url:
            conn = http.client.HTTPConnection(url.split("//")[1], timeout=60)
            conn.request("POST", "/v1/translate", body=buf.getvalue(), headers={{"content-type": "image/png"}})
            r = conn.getresponse()
            out = Image.open(io.BytesIO(r.read()))
        assert "torch" not in sys.modules, "torch got imported"
        print("ok", r.status, out.mode, out.size)
    """)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["ok", "200", "RGBA", "(30,", "20)"]
