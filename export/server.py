"""HTTP serving of an exported generator: FastAPI + uvicorn over :class:`OnnxGenerator`. Torch-free.

Endpoints: ``POST /v1/translate`` (raw image bytes, or multipart with ``image`` and an optional
``mask``) -> PNG (JPEG/WebP with ``?format=jpeg`` or ``Accept: image/jpeg``); ``GET /v1/model``;
``GET /healthz``; ``GET /`` a small upload page.

Inference runs off the event loop: decoding and encoding in a small thread pool, the network in
its own pool (``workers``, default 1 - onnxruntime already spreads one call over every core, two
calls at once only fight over them). Requests wait in a bounded queue (503 past ``max_queue``),
each with a deadline (408 for a body that arrives too slowly, 504 for work that takes too long).
Errors are JSON ``{"error": ...}`` with 413 (body or pixels past the limits), 415 (not an image
content type) or 422 (empty, corrupt, wrong mask) - never a 500 for a client's mistake.
"""

# no `from __future__ import annotations`: FastAPI resolves the endpoints' annotations (Request,
# imported inside create_app) at runtime, so they must be real objects, not strings
import asyncio
import contextlib
import io
import ipaddress
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from i2i.errors import I2IError

from .runtime import OnnxGenerator

FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
RAW_TYPES = ("image/", "application/octet-stream")


class ServeError(Exception):
    """A request that cannot be served: HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Limits:
    max_body_bytes: int = 32 * 1024 * 1024
    #: width x height of the input (also guards against decompression bombs: checked before decoding)
    max_pixels: int = 4096 * 4096
    #: seconds for the whole request: reading the body, waiting in the queue, inference, encoding
    timeout_s: float = 60.0
    #: requests waiting or running at once; more get 503 and Retry-After
    max_queue: int = 64


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _decode(data: bytes, what: str, limits: Limits, mode: str) -> np.ndarray:
    """Image bytes -> uint8 array in ``mode`` ("RGB"/"L"); the pixel count is checked before decoding."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ServeError(422, f"the {what} is empty: send the image file's bytes")
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ServeError(422, f"the {what} is not an image Pillow can read (PNG, JPEG, WebP, BMP, TIFF ...)") from None
    except Image.DecompressionBombError as exc:  # Pillow's own guard, past ~179 Mpx
        raise ServeError(413, f"the {what} is too large: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - anything Pillow raises on garbage is the client's
        raise ServeError(422, f"the {what} could not be read: {type(exc).__name__}") from None
    w, h = im.size
    if w * h > limits.max_pixels:
        raise ServeError(413, f"the {what} is {w}x{h} = {w * h} pixels; this server accepts at most {limits.max_pixels}")
    try:
        im = ImageOps.exif_transpose(im)  # phone photos: honour the orientation tag
        return np.asarray(im.convert(mode))
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data shows up only when decoding
        raise ServeError(422, f"the {what} is corrupt or truncated ({type(exc).__name__}: {exc})") from None


def _encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
    from PIL import Image

    im = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, format="PNG", compress_level=1)  # level 1: ~6x faster than the default 6, ~15% larger
    elif fmt == "webp":
        im.save(buf, format="WEBP", quality=quality)
    else:
        im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class Translator:
    """The model, its pools and the queue bound: everything a request needs, shared by the app."""

    def __init__(self, generator: OnnxGenerator, limits: Limits, workers: int = 1, tile: int = 0) -> None:
        self.generator = generator
        self.limits = limits
        self.tile = tile
        self.infer_pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="i2i-infer")
        self.io_pool = ThreadPoolExecutor(max(2, workers), thread_name_prefix="i2i-io")
        self.pending = 0
        self._lock = threading.Lock()
        self.served = 0

    def admit(self) -> None:
        with self._lock:
            if self.pending >= self.limits.max_queue:
                raise ServeError(503, f"server busy: {self.pending} requests in progress; retry shortly")
            self.pending += 1

    def release(self) -> None:
        with self._lock:
            self.pending -= 1
            self.served += 1

    async def translate(self, data: bytes, mask: bytes | None, fmt: str, quality: int, deadline: float) -> tuple[bytes, dict[str, str]]:
        g = self.generator
        mode = "L" if g.meta.in_channels == 1 else "RGB"
        loop = asyncio.get_running_loop()

        async def within(fn: Any, pool: ThreadPoolExecutor, *args: Any) -> Any:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServeError(504, f"the request took longer than {self.limits.timeout_s:g} s")
            try:
                return await asyncio.wait_for(loop.run_in_executor(pool, fn, *args), left)
            except asyncio.TimeoutError:
                raise ServeError(504, f"the request took longer than {self.limits.timeout_s:g} s") from None

        image = await within(_decode, self.io_pool, data, "image", self.limits, mode)
        m = None
        if g.meta.extra_inputs:
            if mask is None:
                raise ServeError(422, "this model inpaints: send multipart form data with an 'image' and a 'mask' (white = hole)")
            m = await within(_decode, self.io_pool, mask, "mask", self.limits, "L")
            if m.shape[:2] != image.shape[:2]:
                raise ServeError(422, f"the mask is {m.shape[1]}x{m.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}")
        t0 = time.perf_counter()
        out = await within(self._infer, self.infer_pool, image, m)
        ms = (time.perf_counter() - t0) * 1000
        body = await within(_encode, self.io_pool, out, fmt, quality)
        return body, {"X-Inference-Ms": f"{ms:.1f}", "X-Providers": ",".join(g.providers)}

    def _infer(self, image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        try:
            return self.generator.translate(image, mask=mask, tile=self.tile)
        except I2IError as exc:  # e.g. a shape the model cannot take
            raise ServeError(422, str(exc)) from None

    def close(self) -> None:
        self.infer_pool.shutdown(wait=False, cancel_futures=True)
        self.io_pool.shutdown(wait=False, cancel_futures=True)


async def _read_body(request: Any, limits: Limits, deadline: float) -> bytes:
    """The body, refusing early (413) when it is or becomes larger than the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise ServeError(413, f"the body is {int(declared)} bytes; this server accepts at most {limits.max_body_bytes}")
    chunks: list[bytes] = []
    size = 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise ServeError(413, f"the body is larger than {limits.max_body_bytes} bytes, the limit of this server")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), max(deadline - time.monotonic(), 0.001))
    except asyncio.TimeoutError:
        raise ServeError(408, f"the body did not arrive within {limits.timeout_s:g} s") from None
    return b"".join(chunks)


def _pick_format(query: str | None, accept: str) -> str:
    if query:
        fmt = query.lower()
        if fmt not in FORMATS:
            raise ServeError(422, f"unknown format {query!r}; use png, jpeg or webp")
        return "jpeg" if fmt == "jpg" else fmt
    accept = accept.lower()
    if "image/png" not in accept:
        if "image/jpeg" in accept:
            return "jpeg"
        if "image/webp" in accept:
            return "webp"
    return "png"


def create_app(
    model_path: str | Path,
    *,
    device: str = "auto",
    limits: Limits | None = None,
    workers: int = 1,
    tile: int = 0,
    threads: int = 0,
    generator: OnnxGenerator | None = None,
) -> Any:
    """The ASGI app serving one .onnx model (loaded now, so a bad file fails before binding)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limits = limits or Limits()
    gen = generator or OnnxGenerator(model_path, device=device, threads=threads)
    tr = Translator(gen, limits, workers=workers, tile=tile)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        tr.close()

    app = FastAPI(title=f"i2i: {gen.meta.name}", version=gen.meta.i2i_version or "", lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.translator = tr

    def error(status: int, message: str) -> JSONResponse:
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)

    @app.exception_handler(ServeError)
    async def serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(422, f"invalid request: {where}: {first.get('msg', 'bad value')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:  # a bug of ours: say so, briefly
        return error(500, f"internal error: {type(exc).__name__}")

    page = resources.files("i2i_export").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": gen.meta.name, "providers": gen.providers, "pending": tr.pending}

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        info = gen.describe()
        info["limits"] = {"max_body_bytes": limits.max_body_bytes, "max_pixels": limits.max_pixels,
                          "timeout_s": limits.timeout_s, "max_queue": limits.max_queue}
        info["tile"] = tile
        return info

    @app.post("/v1/translate")
    async def translate(request: Request, format: str | None = None, quality: int = 90) -> Response:  # noqa: A002
        deadline = time.monotonic() + limits.timeout_s
        if not 1 <= quality <= 100:
            raise ServeError(422, "quality must be between 1 and 100")
        fmt = _pick_format(format, request.headers.get("accept", ""))
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        multipart = ctype == "multipart/form-data"
        if not multipart and not ctype.startswith(RAW_TYPES):
            raise ServeError(415, f"unsupported content type {ctype or '(none)'!r}: send image bytes (image/png, image/jpeg ...) or multipart/form-data with an 'image' field")
        tr.admit()
        try:
            body = await _read_body(request, limits, deadline)
            if not body:
                raise ServeError(422, "the body is empty: send the image file's bytes")
            mask = None
            if multipart:
                data, mask = await _parts(request, body, limits)
            else:
                data = body
            out, headers = await tr.translate(data, mask, fmt, quality, deadline)
        finally:
            tr.release()
        return Response(out, media_type=FORMATS[fmt], headers=headers)

    return app


async def _parts(request: Any, body: bytes, limits: Limits) -> tuple[bytes, bytes | None]:
    """(image, mask) bytes from a multipart body that was already read within the limits."""
    from starlette.requests import Request

    async def replay() -> dict[str, Any]:  # form() reads the body through receive(): hand it what we read
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, receive=replay).form(max_files=2, max_fields=8, max_part_size=limits.max_body_bytes)
    except Exception as exc:  # noqa: BLE001 - malformed multipart
        raise ServeError(422, f"malformed multipart body: {getattr(exc, 'detail', exc)}") from None
    files = {}
    try:
        for key in ("image", "file", "mask"):
            part = form.get(key)
            if part is not None and hasattr(part, "read"):
                files[key] = await part.read()
    finally:  # the parts are spooled temporary files (on disk past 1 MB): close them now, not at GC
        await form.close()
    image = files.get("image", files.get("file"))
    if image is None:
        raise ServeError(422, "the multipart body has no 'image' file field")
    return image, files.get("mask")


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread; yields its base URL (tests, benchmarks)."""
    import uvicorn

    cfg = uvicorn.Config(app, host=host, port=port, log_level=config.pop("log_level", "warning"), **config)
    server = uvicorn.Server(cfg)
    thread = threading.Thread(target=server.run, name="i2i-uvicorn", daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > 30:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def serve(model_path: str | Path, host: str = "127.0.0.1", port: int = 8000, **kwargs: Any) -> None:
    """Blocking: serve until interrupted (``i2i serve``)."""
    import uvicorn

    app = create_app(model_path, **kwargs)  # a bad file fails here, before anything says it is serving
    gen = app.state.translator.generator
    print(f"model {gen.meta.name} ({gen.meta.method or 'imported'}) running on {', '.join(gen.providers)}", flush=True)
    print(f"serving {model_path} on http://{host}:{port}/ (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=5)
