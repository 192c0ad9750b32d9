"""HTTP serving of a generator opened by :func:`i2i.load`: FastAPI + uvicorn.

Any source ``i2i.load`` opens can be served (a zoo name, a run or checkpoint folder, a weights file,
an ``.onnx`` file); an ``.onnx`` file is served without torch, as on a serving install.

Endpoints: ``POST /v1/translate`` (raw image bytes, or multipart with ``image`` and an optional
``mask``) -> PNG (JPEG/WebP with ``?format=jpeg`` or ``Accept: image/jpeg``); ``GET /v1/model``
(the metadata, and a checkpoint's model card as Markdown text: ``model_card``, ``summary``);
``GET /healthz``; ``GET /`` a small upload page.

One inference path: uploads are decoded by :func:`i2i.imageio.decode_image`, translated by
:meth:`i2i.loader.Generator.translate` and encoded by :func:`i2i.imageio.encode_image`, as
``i2i translate`` does with files, so a picture gives byte-identical PNGs through either door
(alpha kept, grey in - grey out, 16-bit grey, palettes, CMYK and EXIF orientation alike). Masks
mean what ``i2i translate --mask`` takes: non-zero grey = hole, or opaque = hole in a mask with
transparency.

Inference runs off the event loop: decoding and encoding in a small thread pool, the network in
its own pool (``workers``, default 1 - onnxruntime already spreads one call over every core, two
calls at once only fight over them). Requests wait in a bounded queue (503 past ``max_queue``),
each with a deadline (408 for a body that arrives too slowly, 504 for work that takes too long).

Errors are JSON ``{"error": ..., "status": ...}``: 413 (body or pixels past the limits), 415 (not an
image content type), 422 (empty, unreadable or corrupt image, wrong mask, a bad query, an image the
generator cannot take). Every client mistake is a 4xx and the keep-alive connection stays open; a
500 means a bug of ours (answered as JSON inside the route, so the connection survives that too,
and logged with its traceback) or a served model that gives NaN (damaged weights: the message says).
"""

# no `from __future__ import annotations`: FastAPI resolves the endpoints' annotations (Request,
# imported inside create_app) at runtime, so they must be real objects, not strings
import asyncio
import contextlib
import ipaddress
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from i2i.errors import I2IError, ModelOutputError
from i2i.imageio import BadImageError, ImageTooLargeError, decode_image, encode_image
from i2i.loader import DEFAULT_MAX_PIXELS, Generator, load

#: what /v1/model and a video upload say: `i2i serve` takes images only
VIDEO_HINT = "translate a video with `i2i translate clip.mp4 --model ...` (streamed, batched, sound kept)"
#: the 415 answer to a video, however it came (Content-Type, a form part's type, or its first bytes)
NOT_VIDEOS = f"this server translates images, not videos: {VIDEO_HINT}"

FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
RAW_TYPES = ("image/", "application/octet-stream")

log = logging.getLogger("i2i.serve")


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
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: seconds for the whole request: reading the body, waiting in the queue, inference, encoding
    timeout_s: float = 60.0
    #: requests waiting or running at once; more get 503 and Retry-After
    max_queue: int = 64


#: ISO-BMFF brands of still images (HEIC, AVIF): an ``ftyp`` box that is not a video
_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}


def video_kind(data: bytes) -> str | None:
    """The container a body's first bytes announce when it is a video (mp4/mov, mkv/webm, avi,
    MPEG-TS, MPEG-PS, FLV, ASF/WMV), else None: a small sniff with no decoder, so that a clip sent as
    application/octet-stream or as a multipart part gets the video answer (415), not "not an image"."""
    head = data[:400]
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide") and head[8:12] not in _IMAGE_BRANDS:
        return "mp4/mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "mkv/webm"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    # MPEG-TS: a 0x47 sync byte every 188 bytes (three of them, so a GIF's leading 'G' is not one)
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "mpeg-ts"
    if len(head) > 388 and head[4] == head[196] == head[388] == 0x47:
        return "mpeg-ts"  # M2TS: a 4-byte time code before each 188-byte packet
    if head[:4] == b"\x00\x00\x01\xba":
        return "mpeg-ps"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == b"\x30\x26\xb2\x75":
        return "asf/wmv"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Uploaded bytes -> uint8 HxWxC as stored (:func:`i2i.imageio.decode_image`), or a ServeError:
    413 past ``max_pixels`` (checked from the header, before decoding), 422 when unreadable."""
    try:
        return decode_image(data, max_pixels=max_pixels, name=name)
    except ImageTooLargeError as exc:
        raise ServeError(413, str(exc)) from None
    except BadImageError as exc:
        raise ServeError(422, str(exc)) from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow failing on hostile bytes in a way decode_image does not name
        log.warning("decode_image let %s through on an upload; answered 422", type(exc).__name__, exc_info=True)
        raise ServeError(422, f"cannot read {name}: {type(exc).__name__}") from None


def mask_from_upload(data: bytes, size_hw: tuple[int, int], max_pixels: int) -> np.ndarray:
    """An uploaded hole mask for an image of ``size_hw``: HxW float32, 1 = hole, read as
    ``i2i translate --mask`` reads one (:func:`i2i.translate.hole_mask`). Raises ServeError
    (413/422) or I2IError (422)."""
    from i2i.translate import hole_mask

    return hole_mask(decode_upload(data, "the mask", max_pixels), size_hw, "the mask")


class Translator:
    """The generator, its pools and the queue bound: everything a request needs, shared by the app."""

    def __init__(self, generator: Generator, limits: Limits, workers: int = 1, tile: int = 0) -> None:
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

    async def translate(self, data: bytes, mask: bytes | None, fmt: str, quality: int, deadline: float,
                        whole: bool = False) -> tuple[bytes, dict[str, str]]:
        g = self.generator
        loop = asyncio.get_running_loop()

        async def within(fn: Any, pool: ThreadPoolExecutor, *args: Any) -> Any:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServeError(504, f"the request took longer than {self.limits.timeout_s:g} s")
            try:
                return await asyncio.wait_for(loop.run_in_executor(pool, fn, *args), left)
            except asyncio.TimeoutError:
                raise ServeError(504, f"the request took longer than {self.limits.timeout_s:g} s") from None

        image = await within(decode_upload, self.io_pool, data, "the image", self.limits.max_pixels)
        hole = None
        if g.meta.extra_inputs:
            if mask is None:
                raise ServeError(422, "this model inpaints: send multipart form data with an 'image' and a 'mask' (non-zero = hole)")
            hole = await within(self._mask, self.io_pool, mask, image.shape[:2])
        elif mask is not None:
            raise ServeError(422, f"{g.meta.name} takes no mask (it is not an inpainting model): send the image alone")
        t0 = time.perf_counter()
        out = await within(self._infer, self.infer_pool, image, hole, whole)
        ms = (time.perf_counter() - t0) * 1000
        body = await within(self._encode, self.io_pool, out, fmt, quality)
        headers = {"X-Inference-Ms": f"{ms:.1f}", "X-Providers": ",".join(g.providers) or g.device}
        if not whole and g.pair_input(image) is not None:  # as `i2i translate` says once: what was translated
            headers["X-I2I-Input"] = f"the {g.meta.info['ab_pairs'].get('input', 'left')} half of an A|B pair (?whole=true: all of it)"
        return body, headers

    def _mask(self, data: bytes, size_hw: tuple[int, int]) -> np.ndarray:
        try:
            return mask_from_upload(data, size_hw, self.limits.max_pixels)
        except I2IError as exc:
            raise ServeError(422, str(exc)) from None

    def _infer(self, image: np.ndarray, hole: np.ndarray | None, whole: bool = False) -> np.ndarray:
        try:
            return self.generator.translate(image, hole, tile=self.tile, whole=whole)
        except ModelOutputError as exc:  # NaN out of the model: the server's model is at fault, not the client
            raise ServeError(500, _one_line(exc)) from None
        except I2IError as exc:  # an image this generator cannot take: the client's, with the reason
            raise ServeError(422, _one_line(exc)) from None

    @staticmethod
    def _encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
        try:
            return encode_image(image, fmt, quality)
        except I2IError as exc:  # e.g. a Pillow built without the WebP codec
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


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _error(status: int, message: str) -> Any:
    from fastapi.responses import JSONResponse

    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def _route_class() -> type:
    """FastAPI routes that answer an unexpected exception (a bug of ours) with a JSON 500 themselves.

    Not an ``exception_handler(Exception)``: Starlette runs that one in ServerErrorMiddleware, which
    re-raises after responding, and uvicorn then drops the connection - so the client's next request
    on the same keep-alive connection would be reset.
    """
    from fastapi.exceptions import RequestValidationError
    from fastapi.routing import APIRoute
    from starlette.exceptions import HTTPException

    class GuardedRoute(APIRoute):
        def get_route_handler(self) -> Any:
            handler = super().get_route_handler()

            async def guarded(request: Any) -> Any:
                try:
                    return await handler(request)
                except (ServeError, HTTPException, RequestValidationError):
                    raise  # answered by their handlers (4xx, or a deliberate 503/504)
                except Exception as exc:  # noqa: BLE001 - a bug: say so, keep serving
                    log.exception("i2i serve: unexpected error in %s %s", request.method, request.url.path)
                    return _error(500, f"internal error ({type(exc).__name__}): a bug in i2i serve, not a problem "
                                       f"with the request; the server log has the details")

            return guarded

    return GuardedRoute


def create_app(
    source: str | Path | None,
    *,
    device: str = "auto",
    limits: Limits | None = None,
    workers: int = 1,
    tile: int = 0,
    threads: int = 0,
    generator: Generator | None = None,
) -> Any:
    """The ASGI app serving one generator.

    ``source``: anything :func:`i2i.load` opens (zoo name, .onnx, weights file, run/checkpoint
    folder), opened now on ``device`` (``threads``: onnxruntime intra-op threads) so that a bad
    source fails before anything binds; or pass an already opened ``generator`` (``source`` is then
    only a label). ``tile`` > 0 translates images larger than that in tiles (refused here, with
    I2IError, for a generator that cannot be tiled). Raises I2IError.
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limits = limits or Limits()
    if generator is None:
        if source is None:
            raise I2IError("create_app needs a source (zoo name, .onnx, weights file or run folder) or a generator")
        generator = load(source, device=device, threads=threads)
    gen = generator
    if tile > 0:
        gen.check_tiling("--tile cannot be used")
    tr = Translator(gen, limits, workers=workers, tile=tile)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        tr.close()

    app = FastAPI(title=f"i2i: {gen.meta.name}", version=gen.meta.i2i_version or "unknown", lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.router.route_class = _route_class()
    app.state.translator = tr

    @app.exception_handler(ServeError)
    async def serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"invalid request: {where}: {first.get('msg', 'bad value')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # the last resort, outside any route (the routes answer their own bugs, see _route_class):
        # Starlette re-raises after this, so this connection is closed
        return _error(500, f"internal error: {type(exc).__name__}")

    page = resources.files("i2i_export").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": gen.meta.name, "device": gen.device, "providers": gen.providers,
                "pending": tr.pending}

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        info = gen.describe()
        info["limits"] = {"max_body_bytes": limits.max_body_bytes, "max_pixels": limits.max_pixels,
                          "timeout_s": limits.timeout_s, "max_queue": limits.max_queue}
        info["tile"] = tile
        #: "local" (tiles give the whole image's pixels), "whole_image" (cannot be tiled), "" (unknown)
        info["tiling"] = gen.meta.tiling
        info["can_tile"] = gen.meta.tiling != "whole_image"
        info["video"] = {"accepted": False, "how": VIDEO_HINT}  # images only: see docs/video.md
        return info

    @app.post("/v1/translate")
    async def translate(request: Request, format: str | None = None, quality: int = 90,  # noqa: A002
                        whole: bool = False) -> Response:
        deadline = time.monotonic() + limits.timeout_s
        if not 1 <= quality <= 100:
            raise ServeError(422, "quality must be between 1 and 100")
        fmt = _pick_format(format, request.headers.get("accept", ""))
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        multipart = ctype == "multipart/form-data"
        if ctype.startswith("video/"):
            raise ServeError(415, NOT_VIDEOS)
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
            if video_kind(data):  # a clip sent as octet-stream or as a form part
                raise ServeError(415, NOT_VIDEOS)
            out, headers = await tr.translate(data, mask, fmt, quality, deadline, whole)
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
                if key != "mask" and str(getattr(part, "content_type", "") or "").lower().startswith("video/"):
                    raise ServeError(415, NOT_VIDEOS)
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
        yield f"http://{_url_host(host)}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(source: str | Path | None, host: str = "127.0.0.1", port: int = 8000, **kwargs: Any) -> None:
    """Blocking: serve until interrupted (``i2i serve``). ``kwargs`` go to :func:`create_app`; pass
    ``generator=`` to serve one already opened (``source`` then only names it)."""
    import uvicorn

    app = create_app(source, **kwargs)  # a bad source fails here, before anything says it is serving
    gen = app.state.translator.generator
    print(f"model {gen.meta.name} ({gen.meta.method or 'imported'}) running on {', '.join(gen.providers) or gen.device}", flush=True)
    print(f"serving {source or gen.meta.name} on http://{_url_host(host)}:{port}/ (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=5)
