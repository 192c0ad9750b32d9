"""Video in, video out: ``i2i translate clip.mp4`` and :func:`translate_video`, streamed, batched, with sound.

A clip is decoded, translated and encoded in one pass with PyAV (``pip install "i2i[video]"``; its
wheels bundle FFmpeg, so there is no ``ffmpeg`` binary to find and no temporary frame files):

- **three stages at once**: a reader thread demuxes and decodes frames, the calling thread runs
  them through the generator in batches of ``batch_size`` (:meth:`i2i.loader.Generator.run`, with
  the same pre/post-processing as the image path, :mod:`i2i.imageproc`), and a writer thread encodes
  and muxes. The queues between them are bounded, so memory stays flat however long the clip.
- **what the output keeps**: every frame's timestamp (so frame count, frame rate, duration and a
  variable frame rate are the input's), the rotation (display matrix) and every audio stream,
  copied packet for packet; audio that the output container cannot hold (PCM into .webm, say) is
  re-encoded and that is said.
- **encoding**: H.264 (libx264) yuv420p in .mp4 at CRF 18 by default (``codec``, ``crf``,
  ``preset``, ``pix_fmt``, ``container``). Colour is converted with the input's matrix and range
  (BT.601 when untagged, as FFmpeg assumes) and the output is tagged with them. A 4:2:0 or 4:2:2
  output needs even sides: an odd side is cropped by one pixel, and said (``pix_fmt="yuv444p"``
  keeps every pixel).
- **frames are translated whole**, tiled per frame with ``tile`` (or automatically past
  ``max_pixels``, as for images), resized first with ``size``; an inpainting model takes one
  ``mask`` for every frame.
- **flicker**: ``temporal_smooth`` in (0, 1) blends each output pixel with its previous output where
  the *input* did not change there (:class:`TemporalSmoother`); :func:`flicker` is the measure.
- **interrupts**: Ctrl-C (KeyboardInterrupt, and SIGTERM under the CLI) stops reading, encodes what
  was translated, closes the file properly and renames it ``<name>.partial.<ext>``: a playable file,
  named in the :class:`VideoInterrupted` message. Until a clip is done the output is a hidden
  temporary file, so a failure never leaves half a file under the final name.

Bad input is one line (:class:`~i2i.errors.I2IError`): a file that is not a video or has no video
stream or no frames. A truncated file gives the frames that could be decoded, with a note.
"""

from __future__ import annotations

import math
import os
import queue
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from glob import escape as glob_escape

from .errors import I2IError

#: Suffixes (lower case) that ``i2i translate`` takes as videos.
VIDEO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".ts", ".mts", ".m2ts", ".3gp", ".mpg", ".mpeg", ".wmv", ".flv",
    ".ogv",
})

#: ``container`` -> (FFmpeg muxer, file suffix)
CONTAINERS = {"mp4": ("mp4", ".mp4"), "mov": ("mov", ".mov"), "mkv": ("matroska", ".mkv"), "webm": ("webm", ".webm")}

#: what audio that cannot be copied into a container is re-encoded to
_AUDIO_FALLBACK = {"webm": "libopus"}

INSTALL_HINT = 'pip install "i2i[video]"'

_END = object()


class VideoInterrupted(I2IError):
    """Ctrl-C or SIGTERM while translating a clip: ``partial`` is the playable file written so far
    (None when nothing was translated yet), ``frames`` how many frames it holds.

    It is an :class:`~i2i.errors.I2IError` (an ``Exception``), not a ``KeyboardInterrupt``: the
    KeyboardInterrupt was handled (the partial file written and named), and this carries the outcome.
    A loop over clips that catches ``Exception`` to go on after a bad clip must catch
    ``VideoInterrupted`` first and stop, as ``i2i translate`` does."""

    exit_code = 130

    def __init__(self, message: str, partial: Path | None, frames: int) -> None:
        super().__init__(message)
        self.partial = partial
        self.frames = frames


@dataclass
class VideoResult:
    """What :func:`translate_video` wrote."""

    path: Path
    frames: int
    width: int
    height: int
    #: seconds of video (last timestamp + last frame's duration, minus the first timestamp)
    duration: float
    audio_streams: int
    #: seconds spent, and frames per second over the whole clip (decoding and encoding included)
    seconds: float
    fps: float
    #: things the user should know (audio re-encoded, odd size cropped, truncated input ...)
    notes: list[str] = field(default_factory=list)


def require_av() -> Any:
    """``import av`` (18 or newer), or a one-line I2IError naming the install command."""
    try:
        import av
    except ImportError:
        raise I2IError(f"videos need PyAV, which is not installed: {INSTALL_HINT}") from None
    major = int(str(getattr(av, "__version__", "0")).split(".")[0] or 0)
    if major < 18:  # the first to write a display matrix (rotation) and list encoder options
        raise I2IError(f"videos need PyAV 18 or newer, this is {av.__version__}: pip install -U \"i2i[video]\"")
    return av


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """True for a file with a video suffix that is not hidden (``._clip.mp4``)."""
    p = Path(path)
    return p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")


def list_videos(folder_or_glob: str | os.PathLike[str]) -> list[Path]:
    """Video files in a folder (sorted), a single video file, or the matches of a glob; [] when
    nothing is there (:func:`i2i.imageio.list_images` says when the path does not exist)."""
    import glob

    text = os.fspath(folder_or_glob)
    path = Path(text).expanduser()
    if path.is_dir():
        found: Iterable[Path] = path.iterdir()
    elif path.is_file():
        found = [path]
    elif glob.has_magic(text):
        found = (Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True))
    else:
        return []
    return sorted(p for p in found if is_video_file(p) and p.is_file())


# -- probing ------------------------------------------------------------------------------------


@dataclass
class VideoInfo:
    """What :func:`probe` reads from a file by decoding it (tests, benchmarks, ``i2i serve`` limits)."""

    frames: int
    width: int
    height: int
    #: frames per second: frames / duration
    fps: float
    duration: float
    rotation: int
    pix_fmt: str
    codec: str
    #: per audio stream: (codec, seconds from first to last sample)
    audio: list[tuple[str, float]]
    #: each frame's presentation time in seconds
    times: list[float] = field(default_factory=list)


def probe(path: str | os.PathLike[str], decode_audio: bool = True) -> VideoInfo:
    """Open ``path`` and decode every video frame (and audio frame) to count what it really holds.

    ``duration`` ends at the last frame's time plus its decoded duration. In MP4/MOV with B-frames
    that duration is the gap to the next *decoding* timestamp, which on a variable-rate clip can be
    another frame's: the file's edit list (what players show) may end elsewhere."""
    av = require_av()
    with _open_input(av, Path(path)) as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        times: list[float] = []
        last_dur = 0.0
        rotation, first = 0, None
        audio_span: dict[int, list[float]] = {a.index: [math.inf, -math.inf] for a in container.streams.audio}
        streams = [vs, *(container.streams.audio if decode_audio else [])]
        for packet in container.demux(*streams):
            if packet.stream.type == "video":
                for frame in packet.decode():
                    if first is None:
                        first, rotation = frame, frame.rotation
                    times.append(float(frame.pts * frame.time_base))
                    last_dur = float((frame.duration or 0) * frame.time_base)
            else:
                for frame in packet.decode():
                    start = float(frame.pts * frame.time_base)
                    span = audio_span[packet.stream.index]
                    span[0] = min(span[0], start)
                    span[1] = max(span[1], start + frame.samples / frame.sample_rate)
        if first is None:
            raise I2IError(f"{path} holds no video frames")
        if not last_dur and len(times) > 1:
            last_dur = times[-1] - times[-2]
        duration = times[-1] - times[0] + last_dur
        audio = [(a.codec_context.name, max(0.0, audio_span[a.index][1] - audio_span[a.index][0]))
                 for a in container.streams.audio] if decode_audio else []
        return VideoInfo(frames=len(times), width=first.width, height=first.height,
                         fps=len(times) / duration if duration > 0 else 0.0, duration=duration, rotation=rotation,
                         pix_fmt=first.format.name, codec=vs.codec_context.name, audio=audio, times=times)


class _Input:
    def __init__(self, container: Any) -> None:
        self.container = container

    def __enter__(self) -> Any:
        return self.container

    def __exit__(self, *exc: Any) -> None:
        self.container.close()


def _open_input(av: Any, path: Path) -> _Input:
    """av.open for reading, with one-line errors: not there, not a video, no video stream."""
    if not path.is_file():
        raise I2IError(f"no such video file: {path}")
    if path.stat().st_size == 0:
        raise I2IError(f"cannot read video {path}: the file is empty")
    try:
        container = av.open(str(path), "r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise I2IError(f"cannot read video {path}: {_reason(exc)} (not a video, or damaged/truncated)") from None
    if not container.streams.video:
        container.close()
        raise I2IError(f"{path} holds no video frames (no video stream); nothing to translate")
    return _Input(container)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


# -- flicker ------------------------------------------------------------------------------------


def flicker(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray]) -> float:
    """Mean absolute frame-to-frame change of ``outputs`` over that of ``inputs`` (uint8 frames).

    1 means the output changes as much as the input does; a translator that flickers scores
    higher than a steady one on the same clip. Each side is measured at its own size.

    Edge cases: fewer than two frames on either side has no change to measure: ``nan``. A still
    input (no change at all) gives 1.0 when the output is still too, and ``inf`` when the output
    moves (change out of nothing).
    """

    def change(frames: Iterable[np.ndarray]) -> tuple[float, int]:
        total, n, prev = 0.0, 0, None
        for f in frames:
            cur = np.asarray(f, dtype=np.float32)
            if prev is not None:
                total += float(np.abs(cur - prev).mean())
                n += 1
            prev = cur
        return total / max(n, 1), n

    base, n_in = change(inputs)
    moved, n_out = change(outputs)
    if n_in != n_out:
        raise I2IError(f"flicker compares a clip with its translation frame by frame: {n_in + 1} input frames, "
                       f"{n_out + 1} output frames")
    if n_in == 0 or n_out == 0:
        return float("nan")
    if base == 0:
        return 1.0 if moved == 0 else float("inf")
    return moved / base


class TemporalSmoother:
    """An exponential moving average of the output, guided by the input's change.

    For each pixel, ``w = strength * exp(-(d / sigma)^2)`` where ``d`` is how much the *input* pixel
    changed since the previous frame (mean over channels, 0-255): the output becomes
    ``w * previous_output + (1 - w) * new_output``. Where the input is still, a translator's
    frame-to-frame jitter is averaged away; where it moves (``d`` well past ``sigma``), the new
    output is taken as is, so moving edges do not smear. A frame whose mean input change is past
    ``cut`` (a scene cut) starts afresh. ``strength`` 0 turns it off; 0.8 averages over about five
    frames where nothing moves.
    """

    def __init__(self, strength: float, sigma: float = 6.0, cut: float = 40.0) -> None:
        if not 0.0 <= strength < 1.0:
            raise I2IError(f"temporal_smooth (--temporal-smooth) is a strength in [0, 1), got {strength}")
        self.strength = strength
        self.sigma = sigma
        self.cut = cut
        self._prev_in: np.ndarray | None = None
        self._state: np.ndarray | None = None

    def __call__(self, inp: np.ndarray, out: np.ndarray) -> np.ndarray:
        grey_in = np.asarray(inp, dtype=np.float32).mean(axis=2) if inp.ndim == 3 else inp.astype(np.float32)
        new = out.astype(np.float32)
        prev_in, self._prev_in = self._prev_in, grey_in
        if (self.strength == 0 or prev_in is None or self._state is None or prev_in.shape != grey_in.shape
                or self._state.shape != new.shape):
            self._state = new
            return out
        d = np.abs(grey_in - prev_in)
        if float(d.mean()) > self.cut:  # a scene cut: nothing to carry over
            self._state = new
            return out
        w = self.strength * np.exp(-np.square(d / self.sigma))
        sy, sx = new.shape[0] // w.shape[0], new.shape[1] // w.shape[1]
        if (sy, sx) != (1, 1):  # a scale-s model: each input pixel guides its s x s output pixels
            w = np.repeat(np.repeat(w, sy, axis=0), sx, axis=1)
        w = w[: new.shape[0], : new.shape[1], None]
        self._state = w * self._state + (1.0 - w) * new
        return (self._state + 0.5).astype(np.uint8)


# -- clips for tests and benchmarks -------------------------------------------------------------


def write_clip(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float = 24, *,
               codec: str = "libx264", pix_fmt: str = "yuv420p", audio_hz: float | None = 440.0,
               sample_rate: int = 44100, audio_codec: str = "aac", rotation: int = 0,
               times: list[float] | None = None, options: dict[str, str] | None = None) -> Path:
    """Write uint8 RGB ``frames`` as a clip (``fps``, or each frame's time in ``times`` for a variable
    rate) with a sine-wave sound track of ``audio_hz`` as long as the video (None: silent, no audio
    stream). For tests and benchmarks: real files made with the same library that reads them."""
    from fractions import Fraction

    av = require_av()
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    tb = Fraction(1, 90000) if times is not None else 1 / rate
    out = av.open(str(path), "w")
    vs, astream = None, None
    n = 0
    try:
        for i, image in enumerate(frames):
            if vs is None:
                vs = out.add_stream(codec, rate=rate, options=dict(options or {}))
                vs.width, vs.height, vs.pix_fmt = image.shape[1], image.shape[0], pix_fmt
                vs.codec_context.time_base = tb
                if rotation:
                    vs.set_display_rotation(rotation)
                if audio_hz is not None:
                    astream = out.add_stream(audio_codec, rate=sample_rate, layout="mono")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = round(times[i] / tb) if times is not None else i
            frame.time_base = tb
            for packet in vs.encode(frame):
                out.mux(packet)
            n += 1
        if vs is None:
            raise I2IError("write_clip needs at least one frame")
        for packet in vs.encode(None):
            out.mux(packet)
        if astream is not None:
            seconds = (times[-1] + 1 / float(rate)) if times is not None else n / float(rate)
            total, t, chunk = int(round(seconds * sample_rate)), 0, 1024
            fmt = "fltp" if audio_codec in ("aac", "libopus", "mp3", "libmp3lame") else "s16"
            while t < total:
                k = min(chunk, total - t)
                wave = 0.3 * np.sin(2 * np.pi * audio_hz * np.arange(t, t + k) / sample_rate)
                data = wave.astype(np.float32)[None] if fmt == "fltp" else (wave * 32767).astype(np.int16)[None]
                af = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
                af.sample_rate, af.pts = sample_rate, t
                for packet in astream.encode(af):
                    out.mux(packet)
                t += k
            for packet in astream.encode(None):
                out.mux(packet)
    finally:
        out.close()
    return path


def panned_frames(image: np.ndarray, n: int, width: int, height: int, step: float = 1.0) -> Iterator[np.ndarray]:
    """``n`` crops of ``width`` x ``height`` sliding over ``image`` by ``step`` pixels a frame (a pan;
    back and forth when the image is too narrow), for clips made from a still picture."""
    room = image.shape[1] - width
    if room < 0 or image.shape[0] < height:
        raise ValueError(f"the image ({image.shape[1]}x{image.shape[0]}) is smaller than {width}x{height}")
    top = (image.shape[0] - height) // 2
    for i in range(n):
        x = int(i * step) % (2 * room) if room else 0
        x = x if x <= room else 2 * room - x
        yield np.ascontiguousarray(image[top : top + height, x : x + width])


# -- translating --------------------------------------------------------------------------------


@dataclass
class _Frame:
    rgb: np.ndarray
    pts: int
    duration: int
    #: on the first frame only: the display matrix (rotation) and the YUV matrix it was decoded with
    matrix: bytes | None = None
    colour: "_Colour | None" = None
    bits: int = 8
    #: the translator's input (after --size), kept for the temporal smoother's guide
    source: np.ndarray | None = None


@dataclass
class _Colour:
    """The YUV <-> RGB matrix of a clip: swscale's constant, FFmpeg's tag (AVColorSpace), and the range."""

    sws: int
    tag: int
    full_range: bool


#: AVColorSpace tag -> swscale matrix (SWS_CS_*): BT.709, FCC, BT.601 (BT470BG, SMPTE170M), SMPTE240M, BT.2020
_SWS_OF_TAG = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


def _colour_of(frame: Any) -> _Colour:
    """How to turn this frame into RGB: its tagged matrix, else what players assume for an untagged
    clip (BT.709 from 720 lines up, BT.601 below), and its range (limited unless tagged full)."""
    tag = int(frame.colorspace or 2)
    if tag not in _SWS_OF_TAG:
        tag = 1 if frame.height >= 720 else 6
    return _Colour(sws=_SWS_OF_TAG[tag], tag=tag, full_range=int(frame.color_range or 0) == 2
                   or frame.format.name.startswith("yuvj"))


@dataclass
class _Plan:
    """How the frames of one clip run: batched through ``run``, or one by one through ``translate``."""

    tile: int
    batch_size: int
    hole: np.ndarray | None
    size: int | None
    overlap: int


def translate_video(generator: Any, src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                    batch_size: int = 4, tile: int = 0, overlap: int = 32, size: int | None = None,
                    mask: str | np.ndarray | None = None, max_pixels: int | None = None,
                    codec: str = "libx264", crf: int | None = 18, preset: str | None = None,
                    pix_fmt: str = "yuv420p", temporal_smooth: float = 0.0, queue_frames: int = 0,
                    progress: Callable[[int, int], None] | None = None,
                    note: Callable[[str], None] | None = None) -> VideoResult:
    """Translate clip ``src`` with ``generator`` (from :func:`i2i.load`) into ``dst``; see the module docstring.

    The container follows ``dst``'s suffix (.mp4, .mov, .mkv, .webm). ``batch_size``: frames per
    call of the network (1: one at a time). ``queue_frames``: frames each queue holds (default
    ``2 * batch_size``). ``progress(done, total)`` is called after each translated batch (``total`` is
    the header's frame count, 0 when unknown). ``note(text)`` receives what the user should know
    (also collected in :attr:`VideoResult.notes`).

    Raises I2IError (one line) for an input that is not a video or holds no frames, an option the
    codec or container refuses, and a model that cannot take the frames; :class:`VideoInterrupted`
    on KeyboardInterrupt after writing the playable part.
    """
    from fractions import Fraction

    from .loader import DEFAULT_MAX_PIXELS

    av = require_av()
    src, dst = Path(src), Path(dst)
    fmt = _container_of(dst)
    if dst.resolve() == src.resolve():
        raise I2IError(f"the output {dst} would overwrite the input; choose another output path (--out on the command line)")
    codec = check_options(codec=codec, pix_fmt=pix_fmt, crf=crf, preset=preset, batch_size=batch_size, container=fmt)
    smoother = TemporalSmoother(temporal_smooth) if temporal_smooth else None
    notes: list[str] = []

    def say(text: str) -> None:
        if text not in notes:
            notes.append(text)
            if note:
                note(f"{src.name}: {text}")

    with _open_input(av, src) as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        audio = list(container.streams.audio)
        others = [s for s in container.streams if s.type not in ("video", "audio")]
        if len(container.streams.video) > 1:
            say(f"only the first of its {len(container.streams.video)} video streams is translated")
        if others:
            say(f"{len(others)} subtitle/data stream(s) are not copied")
        total = _expected_frames(container, vs)
        plan = None
        reader = _Reader(av, container, vs, audio, queue_frames or 2 * batch_size)
        writer: _Writer | None = None
        tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.part")
        dst.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        done = 0
        try:
            reader.start()
            for items in _batches(reader, batch_size):
                frames = [it for it in items if isinstance(it, _Frame)]
                if frames and plan is None:
                    h, w = frames[0].rgb.shape[:2]
                    plan = _plan(generator, h, w, batch_size=batch_size, tile=tile, overlap=overlap, size=size,
                                 mask=mask, max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
                                 say=say)
                    if frames[0].bits > 8:
                        deep = any(c.bits > 8 for c in av.video.format.VideoFormat(pix_fmt).components)
                        say(f"its {frames[0].bits}-bit frames are translated in 8 bits, as images are"
                            + (f" (written as {pix_fmt})" if deep else " (--pix-fmt yuv420p10le writes 10 bits)"))
                    writer = _Writer(av, tmp, fmt, audio, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt,
                                     rate=vs.average_rate or vs.guessed_rate or Fraction(24),
                                     time_base=vs.time_base,
                                     say=say, depth=max(2, (queue_frames or 2 * batch_size) // batch_size))
                    writer.final = str(dst)
                    writer.start()
                if frames:
                    if plan is None or writer is None:  # pragma: no cover - set above
                        raise AssertionError
                    _translate_frames(generator, frames, plan)
                    if smoother is not None:
                        for f in frames:
                            f.rgb = smoother(f.source, f.rgb)
                if writer is not None:
                    writer.put(items)
                    done += len(frames)
                    if progress:
                        progress(done, max(total, done))
            if reader.exc is not None:
                raise reader.exc
            if reader.error is not None and done == 0:
                raise I2IError(f"cannot read video {src}: {reader.error} (damaged or truncated)")
            if writer is None:
                raise I2IError(f"{src} holds no video frames; nothing to translate")
            writer.finish()
        except KeyboardInterrupt:
            reader.stop()
            if writer is None or (writer.started_frames == 0 and done == 0):
                if writer is not None:
                    writer.abort()
                tmp.unlink(missing_ok=True)
                raise VideoInterrupted(f"interrupted before the first frame of {src.name} was written; nothing written",
                                       None, 0) from None
            try:
                writer.finish()
            except BaseException:  # a second Ctrl-C, or the writer failing: no file then
                tmp.unlink(missing_ok=True)
                raise
            partial = dst.with_name(f"{dst.stem}.partial{dst.suffix}")
            os.replace(tmp, partial)
            raise VideoInterrupted(f"interrupted: {partial} holds the first {writer.frames} of "
                                   f"{total or '?'} frames of {src.name} (playable; run again for the whole clip)",
                                   partial, writer.frames) from None
        except BaseException:
            reader.stop()
            if writer is not None:
                writer.abort()
            tmp.unlink(missing_ok=True)
            raise
        finally:
            reader.stop()
            reader.join()
        if reader.error is not None:
            say(f"the input ends early ({reader.error}): translated the {writer.frames} frame(s) that could be decoded"
                + (f" of about {total}" if total else ""))
        elif total and writer.frames < total * 0.95 - 1:
            say(f"its header announces about {total} frames but only {writer.frames} could be decoded: the file looks "
                f"truncated; translated those")
        if reader.resized:
            say(f"{reader.resized} frame(s) of another size than the first were scaled to the first's "
                f"{reader.size[0]}x{reader.size[1]} before translating")
        if reader.fixed_pts:
            say(f"{reader.fixed_pts} frame(s) had missing or non-increasing timestamps; they were renumbered")
        if writer.fixed_audio:
            say(f"its sound's timestamps go back {writer.fixed_audio} time(s) (clips joined end to end?): the sound "
                f"after each jump was moved to follow on")
        os.replace(tmp, dst)
        for stale in sorted(dst.parent.glob(f"{glob_escape(dst.stem)}.partial.*")):  # any container's
            if stale.is_file() and stale.suffix.lower() in {s for _, s in CONTAINERS.values()}:
                stale.unlink()  # what an interrupted earlier run left: the whole clip is here now
                say(f"removed {stale.name}, the part an earlier interrupted run left")
    seconds = time.perf_counter() - t0
    return VideoResult(path=dst, frames=writer.frames, width=writer.width, height=writer.height,
                       duration=writer.duration_s, audio_streams=writer.audio_streams, seconds=seconds,
                       fps=writer.frames / seconds if seconds > 0 else 0.0, notes=notes)


def _expected_frames(container: Any, vs: Any) -> int:
    """The frame count the header announces: counted (MP4), else duration x rate; 0 when unknown."""
    if vs.frames:
        return int(vs.frames)
    rate = vs.average_rate or vs.guessed_rate
    if vs.duration and vs.time_base:
        seconds = float(vs.duration * vs.time_base)
    elif container.duration:
        seconds = container.duration / 1_000_000  # AV_TIME_BASE
    else:
        return 0
    return int(round(seconds * float(rate))) if rate else 0


def check_options(codec: str = "libx264", pix_fmt: str = "yuv420p", crf: int | None = 18, preset: str | None = None,
                  batch_size: int = 4, container: str = "mp4") -> str:  # container: mp4, mov, mkv, webm or a muxer
    """The encoder's name for ``codec``, or a one-line I2IError for options that cannot work together:
    an unknown codec, pixel format, preset or container, a CRF outside 0-63 (an integer), a batch size
    below 1. ``i2i translate`` asks before translating anything, so a bad option never comes after work."""
    av = require_av()
    if batch_size < 1:
        raise I2IError(f"batch_size (--batch-size) must be at least 1, got {batch_size}")
    if crf is not None and (isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 63):
        raise I2IError(f"crf (--crf) is an integer from 0 (lossless) to 63 (x264 and x265 use up to 51), got {crf!r}")
    codec = _check_codec(av, codec, pix_fmt)
    _check_preset(codec, preset)
    _check_container(av, CONTAINERS[container][0] if container in CONTAINERS else container, codec)
    return codec


def _check_codec(av: Any, codec: str, pix_fmt: str) -> str:
    """The encoder's name (h264 -> libx264), or a one-line I2IError for an unknown codec or a pixel
    format it does not take."""
    hint = "try libx264, libx265, libvpx-vp9, libsvtav1, or ffv1 (lossless)"
    try:
        encoder = av.Codec(codec, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise I2IError(f"no video encoder {codec!r} in this PyAV; {hint}") from None
    if encoder.type != "video":
        raise I2IError(f"{codec} is not a video encoder; {hint}")
    try:
        av.video.format.VideoFormat(pix_fmt)
    except (ValueError, av.error.FFmpegError):
        raise I2IError(f"unknown --pix-fmt {pix_fmt!r}; try yuv420p, yuv444p or yuv420p10le") from None
    names = [f.name for f in encoder.video_formats or []]
    if names and pix_fmt not in names:
        raise I2IError(f"the {encoder.name} encoder does not take --pix-fmt {pix_fmt}; it takes {', '.join(names[:12])}"
                       + (", ..." if len(names) > 12 else ""))
    return encoder.name


#: presets of the encoders whose list is known (checked before opening: the encoder's own error is
#: printed by FFmpeg and says less)
_PRESETS: dict[str, list[str]] = {
    name: ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"]
    for name in ("libx264", "libx264rgb", "libx265")
}
#: libsvtav1's presets are numbers: -1 (slowest) ... 13 (fastest)
_PRESET_RANGE = {"libsvtav1": (-1, 13)}

#: encoder options that keep the encoders that print their settings on every clip quiet
#: (libsvtav1 reads its level from the environment: SVT_LOG=1 is errors only)
_QUIET: dict[str, dict[str, str]] = {"libx265": {"x265-params": "log-level=error"}}


def _check_preset(codec: str, preset: str | None) -> None:
    """A one-line I2IError for a preset the encoder does not have (for encoders with a known list)."""
    if not preset:
        return
    if codec in _PRESETS and preset not in _PRESETS[codec]:
        names = _PRESETS[codec]
        raise I2IError(f"--preset {preset}: unknown preset for {codec}; choose one of {', '.join(names)}")
    if codec in _PRESET_RANGE:
        lo, hi = _PRESET_RANGE[codec]
        try:
            ok = lo <= int(preset) <= hi
        except ValueError:
            ok = False
        if not ok:
            raise I2IError(f"--preset {preset}: {codec}'s presets are numbers from {lo} (slowest) to {hi} (fastest)")


def _check_container(av: Any, fmt: str, codec: str) -> None:
    import io

    with av.open(io.BytesIO(), "w", format=fmt) as probe_out:
        if codec not in probe_out.supported_codecs:
            fits = [c for c in ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "ffv1") if c in probe_out.supported_codecs]
            raise I2IError(f".{_ext(fmt)} files cannot hold {codec} video; use --codec {' or '.join(fits)}, "
                           f"or another --container")


def _container_of(dst: Path) -> str:
    suffix = dst.suffix.lower()
    for name, (muxer, ext) in CONTAINERS.items():
        if ext == suffix:
            return muxer
    raise I2IError(f"cannot write a video as {dst.name}: use .mp4, .mov, .mkv or .webm")


def _plan(generator: Any, h: int, w: int, *, batch_size: int, tile: int, overlap: int, size: int | None,
          mask: str | np.ndarray | None, max_pixels: int, say: Callable[[str], None]) -> _Plan:
    """Check the model against the first frame and decide tiling and batch size for the clip."""
    import warnings

    from .loader import free_memory, estimate_bytes, plan_tile
    from .translate import hole_mask, read_mask, resize_shorter

    meta = generator.meta
    if size:
        h, w = resize_shorter(np.zeros((h, w, 1), np.uint8), size).shape[:2]
    hole = None
    if meta.extra_inputs:
        if mask is None:
            names = ", ".join(str(i["name"]) for i in meta.extra_inputs)
            raise I2IError(f"{meta.name} needs a {names}: pass --mask FILE (non-zero = hole), used for every frame")
        hole = read_mask(mask, (h, w)) if isinstance(mask, (str, os.PathLike)) else hole_mask(np.asarray(mask), (h, w))
    elif mask is not None:
        raise I2IError(f"--mask is for inpainting models; {meta.name} takes no mask")
    if tile:
        generator.check_tiling()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tile = plan_tile(meta, h, w, tile, max_pixels)
    for warning in caught:
        say(str(warning.message).removeprefix("i2i: "))
    if tile == 0 and batch_size > 1:
        free, one = free_memory(), estimate_bytes(meta, h, w)
        if free is not None and one * batch_size > free:
            fits = max(1, free // max(one, 1))
            say(f"a batch of {batch_size} frames of {w}x{h} would need about {one * batch_size / 2**30:.1f} GiB; "
                f"running {fits} at a time")
            batch_size = int(fits)
    return _Plan(tile=tile, batch_size=batch_size, hole=hole, size=size, overlap=overlap)


def _translate_frames(generator: Any, frames: list[_Frame], plan: _Plan) -> None:
    """Replace each frame's ``rgb`` by its translation: the batch through ``generator.run`` with the
    image path's pre/post-processing (:func:`i2i.imageproc.translate_array` on one frame gives the
    same pixels), or frame by frame through ``generator.translate`` when tiling or a fixed-size file."""
    from .imageio import to_channels
    from .imageproc import from_range, pad_to_multiple, to_range
    from .translate import resize_shorter

    meta = generator.meta
    for f in frames:
        f.source = resize_shorter(f.rgb, plan.size) if plan.size else f.rgb
    singles = plan.tile > 0 or generator.static_hw is not None or plan.batch_size == 1
    outs: list[np.ndarray] = []
    if singles:
        for f in frames:
            outs.append(generator.translate(f.source, plan.hole, tile=plan.tile, overlap=plan.overlap, whole=True))
    else:
        for start in range(0, len(frames), plan.batch_size):
            chunk = frames[start : start + plan.batch_size]
            x = np.stack([to_range(to_channels(f.source, meta.in_channels), meta.value_range) for f in chunk])
            xp, (h, w) = pad_to_multiple(x, meta.size_multiple, min_size=meta.min_size)
            extras = []
            if plan.hole is not None:
                hole = np.broadcast_to(plan.hole[None, None], (len(chunk), 1, *plan.hole.shape))
                extras.append(pad_to_multiple(np.ascontiguousarray(hole), meta.size_multiple, fill=0.0,
                                              min_size=meta.min_size)[0])
            y = generator.run(xp.astype(np.float32, copy=False), *extras)[:, :, : h * meta.scale, : w * meta.scale]
            outs.extend(from_range(o, meta.value_range) for o in y)
    for f, out in zip(frames, outs):
        f.rgb = to_channels(out, 3) if out.shape[2] != 3 else out


def _batches(reader: "_Reader", batch_size: int) -> Iterator[list[Any]]:
    """The reader's items in order, cut after every ``batch_size`` frames (audio packets ride along)."""
    items: list[Any] = []
    n = 0
    for item in reader:
        items.append(item)
        if isinstance(item, _Frame):
            n += 1
            if n == batch_size:
                yield items
                items, n = [], 0
    if items:
        yield items


class _Reader(threading.Thread):
    """Demuxes and decodes in its own thread into a bounded queue: ``_Frame`` (RGB) and audio packets."""

    def __init__(self, av: Any, container: Any, vs: Any, audio: list[Any], depth: int) -> None:
        super().__init__(name="i2i-video-read", daemon=True)
        self.av, self.container, self.vs, self.audio = av, container, vs, audio
        self.q: queue.Queue[Any] = queue.Queue(maxsize=max(2, depth))
        self._halt = threading.Event()
        #: why decoding stopped early (damaged or truncated input), None when it reached the end
        self.error: str | None = None
        #: anything else that went wrong in the thread (a bug): raised by the consumer
        self.exc: BaseException | None = None
        self.fixed_pts = 0
        self.resized = 0
        #: (width, height) of the first frame: every frame is translated at this size
        self.size = (0, 0)

    def stop(self) -> None:
        self._halt.set()
        try:  # unblock a put() waiting on a full queue
            while True:
                self.q.get_nowait()
        except queue.Empty:
            pass

    def _put(self, item: Any) -> bool:
        while not self._halt.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        last_pts: int | None = None
        colour: _Colour | None = None
        size: tuple[int, int] | None = None
        step = _frame_step(self.vs)
        try:
            for packet in self.container.demux(self.vs, *self.audio):
                if self._halt.is_set():
                    return
                if packet.stream.type == "audio":
                    if packet.dts is not None and not self._put(packet):
                        return
                    continue
                for frame in packet.decode():
                    pts = frame.pts
                    if pts is None or (last_pts is not None and pts <= last_pts):
                        pts = (last_pts + step) if last_pts is not None else 0
                        self.fixed_pts += 1
                    last_pts = pts
                    item = _Frame(np.empty(0), pts, frame.duration or step)
                    if colour is None:  # the first frame carries what the output keeps
                        colour = item.colour = _colour_of(frame)
                        size = self.size = (frame.width, frame.height)
                        sd = frame.side_data.get("DISPLAYMATRIX") if len(frame.side_data) else None
                        item.matrix = bytes(sd) if sd is not None else None
                        item.bits = max((c.bits for c in frame.format.components), default=8)
                    elif (frame.width, frame.height) != size:  # a stream that changes size: keep the first
                        self.resized += 1
                    item.rgb = _to_rgb(frame, colour, size)
                    if not self._put(item):
                        return
        except self.av.error.FFmpegError as exc:
            self.error = _reason(exc)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self.exc = exc
        finally:
            self._put(_END)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self.q.get()
            if item is _END:
                return
            yield item


def _frame_step(vs: Any) -> int:
    """One frame's duration in the stream's time base (for frames without a timestamp)."""
    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    if not rate or not vs.time_base:
        return 1
    return max(1, round(1 / (rate * vs.time_base)))


def _to_rgb(frame: Any, colour: _Colour, size: tuple[int, int] | None = None) -> np.ndarray:
    """A decoded frame as uint8 HxWx3 RGB, converted with the clip's matrix and range (and scaled to
    ``size`` = (width, height) when it differs)."""
    w, h = size if size is not None else (None, None)
    if frame.format.is_rgb:
        return frame.to_ndarray(format="rgb24", width=w, height=h)
    return frame.to_ndarray(format="rgb24", width=w, height=h, src_colorspace=colour.sws, dst_colorspace=colour.sws,
                            src_color_range=2 if colour.full_range else 1, dst_color_range=2)


class _Writer(threading.Thread):
    """Encodes and muxes in its own thread, from a bounded queue of batches."""

    def __init__(self, av: Any, path: Path, fmt: str, audio: list[Any], *, codec: str, crf: int | None,
                 preset: str | None, pix_fmt: str, rate: Any, time_base: Any, say: Callable[[str], None],
                 depth: int) -> None:
        super().__init__(name="i2i-video-write", daemon=True)
        self.av, self.path, self.fmt, self.audio = av, path, fmt, audio
        self.final = path.name  # what messages call the file (set by the caller to the final name)
        self.codec, self.crf, self.preset, self.pix_fmt = codec, crf, preset, pix_fmt
        self.rate, self.time_base, self.say = rate, time_base, say
        self.q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.out: Any = None
        self.vstream: Any = None
        self.astreams: dict[int, Any] = {}  # input stream index -> output stream
        self.recode: dict[int, tuple[Any, Any]] = {}  # input stream index -> (resampler, encoder stream)
        self.frames = 0
        self.started_frames = 0
        self.width = self.height = 0
        self.audio_streams = 0
        self._first_pts: int | None = None
        self._end_pts = 0
        self._aborted = threading.Event()
        self._crop: tuple[int, int] | None = None
        self._colour: dict[str, Any] = {}
        self._early: list[Any] = []  # audio packets before the first frame, held until the streams exist
        #: per copied audio stream: the last muxed dts and duration, and the shift that keeps them increasing
        self._adts: dict[int, tuple[int, int]] = {}
        self._ashift: dict[int, int] = {}
        self.fixed_audio = 0
        self._durations: dict[int, int] = {}  # pts -> duration of the frames in the encoder

    @property
    def duration_s(self) -> float:
        if self._first_pts is None:
            return 0.0
        return float((self._end_pts - self._first_pts) * self.time_base)

    # -- called by the translating thread
    def put(self, items: list[Any]) -> None:
        self.started_frames += sum(isinstance(i, _Frame) for i in items)
        while True:
            if self.error is not None:
                self._raise()
            try:
                self.q.put(items, timeout=0.1)
                return
            except queue.Full:
                if not self.is_alive():
                    self._raise()

    def finish(self) -> None:
        """Flush the encoder, close the file; raise what went wrong in the writer."""
        while self.is_alive():
            try:
                self.q.put(_END, timeout=0.1)
                break
            except queue.Full:
                continue
        self.join()
        if self.error is not None:
            self._raise()

    def abort(self) -> None:
        self._aborted.set()
        try:
            while True:
                self.q.get_nowait()
        except queue.Empty:
            pass
        try:
            self.q.put_nowait(_END)
        except queue.Full:
            pass
        self.join(timeout=30)

    def _raise(self) -> None:
        err = self.error
        if isinstance(err, I2IError):
            raise err
        raise I2IError(f"cannot write {self.final}: {_reason(err or RuntimeError('the writer stopped'))}")

    # -- the writer thread
    def run(self) -> None:
        try:
            while True:
                items = self.q.get()
                if items is _END or self._aborted.is_set():
                    break
                for item in items:
                    if isinstance(item, _Frame):
                        if self.out is None:
                            self._open(item)
                        self._encode(item)
                    elif self.out is not None:
                        self._audio(item)
                    else:
                        self._early.append(item)
            if self.out is not None and not self._aborted.is_set():
                for packet in self.vstream.encode(None):
                    self._mux_video(packet)
                for index, (resampler, stream) in self.recode.items():
                    for packet in stream.encode(None):
                        self.out.mux(packet)
        except BaseException as exc:  # noqa: BLE001 - raised in the translating thread
            self.error = exc
        finally:
            if self.out is not None:
                try:
                    self.out.close()
                except Exception as exc:  # noqa: BLE001
                    self.error = self.error or exc

    def _open(self, first: _Frame) -> None:
        """Create the output file and its streams from the first translated frame."""
        av = self.av
        h, w = first.rgb.shape[:2]
        fmt = av.video.format.VideoFormat(self.pix_fmt) if self.pix_fmt else None
        if fmt is None:
            raise I2IError("--pix-fmt is empty")
        sub_w, sub_h = fmt.chroma_width(2) == 1, fmt.chroma_height(2) == 1
        cw, ch = w - (w % 2 if sub_w else 0), h - (h % 2 if sub_h else 0)
        if (cw, ch) != (w, h):
            self._crop = (ch, cw)
            self.say(f"the output is {w}x{h}, and {self.pix_fmt} needs even sides: cropped to {cw}x{ch} "
                     f"(--pix-fmt yuv444p keeps every pixel)")
        self.width, self.height = cw, ch
        try:
            self._open_container(first, with_recode=set())
        except I2IError:
            raise
        except av.error.FFmpegError as exc:
            sound = f" with {', '.join(s.codec_context.name for s in self.audio)} sound" if self.audio else ""
            raise I2IError(f"cannot write {self.codec} {self.pix_fmt} {cw}x{ch}{sound} into .{_ext(self.fmt)}: "
                           f"{_reason(exc)}") from None
        for packet in self._early:
            self._audio(packet)
        self._early = []

    def _open_container(self, first: _Frame, with_recode: set[int]) -> None:
        av = self.av
        out = av.open(str(self.path), "w", format=self.fmt)
        try:
            options = {}
            supported = av.CodecContext.create(self.codec, "w").supported_options
            names = {o.name for o in [*supported.private, *supported.generic]}
            if self.crf is not None and "crf" in names:
                options["crf"] = str(self.crf)
                if self.codec in ("libvpx-vp9", "libvpx"):
                    options["b"] = "0"  # constant quality
            if self.preset:
                if "preset" not in names:
                    raise I2IError(f"--preset: the {self.codec} encoder has no presets")
                options["preset"] = self.preset
            options.update(_QUIET.get(self.codec, {}))
            if self.codec == "libsvtav1":
                os.environ.setdefault("SVT_LOG", "1")
            vstream = out.add_stream(self.codec, rate=self.rate, options=options)
            vstream.width, vstream.height = self.width, self.height
            try:
                vstream.pix_fmt = self.pix_fmt
            except (ValueError, av.error.FFmpegError) as exc:
                raise I2IError(f"unknown --pix-fmt {self.pix_fmt!r} ({_reason(exc)}); try yuv420p, yuv444p or yuv420p10le") from None
            vstream.codec_context.time_base = self.time_base
            vstream.time_base = self.time_base
            if first.matrix:
                vstream.set_display_matrix(list(np.frombuffer(first.matrix, dtype="<i4")[:9].tolist()))
            if not av.video.format.VideoFormat(self.pix_fmt).is_rgb and first.colour is not None:
                # the input's matrix, converted explicitly and tagged (players guess untagged HD as BT.709)
                self._colour = {"src_colorspace": first.colour.sws, "dst_colorspace": first.colour.sws,
                                "src_color_range": 2, "dst_color_range": 1}
                vstream.codec_context.colorspace = first.colour.tag
                vstream.codec_context.color_range = 1
            astreams, recode = {}, {}
            for s in self.audio:
                name = s.codec_context.name
                pcm_in_mp4 = self.fmt == "mp4" and name.startswith("pcm_")  # muxed, but few players play it
                if s.index in with_recode or name not in out.supported_codecs or pcm_in_mp4:
                    enc_name = _AUDIO_FALLBACK.get(self.fmt, "aac")
                    rates = av.Codec(enc_name, "w").audio_rates or []
                    rate = s.codec_context.sample_rate or 48000
                    if rates and rate not in rates:  # Opus: 48 kHz and a few below
                        rate = min(rates, key=lambda r: (r < rate, abs(r - rate)))
                    enc = out.add_stream(enc_name, rate=rate)
                    try:
                        layout = s.codec_context.layout
                        if layout.name.endswith("channels"):  # no channel order (PCM in .mkv): AAC refuses it
                            layout = av.AudioLayout(len(layout.channels))
                        enc.layout = layout
                    except Exception:  # noqa: BLE001 - the encoder's default layout then
                        pass
                    recode[s.index] = (av.AudioResampler(format=enc.codec_context.codec.audio_formats[0].name,
                                                         layout=enc.codec_context.layout,
                                                         rate=enc.codec_context.sample_rate), enc)
                    if pcm_in_mp4 and s.index not in with_recode:
                        self.say(f"its {name} sound is re-encoded as {enc_name} for .mp4, where few players play PCM "
                                 f"(--container mkv or mov copies it)")
                    else:
                        self.say(f"its {name} sound cannot be copied into .{_ext(self.fmt)}: re-encoded as "
                                 f"{enc_name} (--container mkv copies it)")
                else:
                    astreams[s.index] = out.add_stream_from_template(s)
            logs: list[Any] = []
            try:
                with _ffmpeg_errors(av) as logs:  # FFmpeg's reason, in the one-line error, not on stderr
                    out.start_encoding()
            except av.error.FFmpegError as exc:
                cause = next((str(m).strip() for level, _, m in reversed(logs) if level <= 16 and str(m).strip()),
                             _reason(exc))
                if not vstream.codec_context.is_open:  # the encoder refused its options, not the muxer the sound
                    given = " ".join(f"{k}={v}" for k, v in options.items() if k not in ("b",))
                    raise I2IError(f"the {self.codec} encoder refuses {self.pix_fmt} {self.width}x{self.height}"
                                   + (f" with {given}" if given else "") + f": {cause}") from None
                for index, (_, enc) in recode.items():
                    if not enc.codec_context.is_open:
                        name = next(a.codec_context.name for a in self.audio if a.index == index)
                        raise I2IError(f"the {enc.codec_context.name} encoder refuses the {name} sound "
                                       f"({enc.codec_context.sample_rate} Hz, {enc.codec_context.layout.name}): "
                                       f"{cause}; --container mkv copies it") from None
                copied = set(astreams)
                if copied and not with_recode:  # the muxer refused a copied sound: re-encode it instead
                    out.close()
                    self.path.unlink(missing_ok=True)
                    return self._open_container(first, with_recode=copied)
                raise
        except BaseException:
            try:
                out.close()
            except Exception:  # noqa: BLE001
                pass
            raise
        self.out, self.vstream, self.astreams, self.recode = out, vstream, astreams, recode
        self.audio_streams = len(astreams) + len(recode)

    def _encode(self, f: _Frame) -> None:
        av = self.av
        rgb = f.rgb
        if self._crop is not None:
            rgb = rgb[: self._crop[0], : self._crop[1]]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if self._colour:
            frame = frame.reformat(format=self.pix_fmt, **self._colour)
        frame.pts = f.pts
        frame.time_base = self.time_base
        frame.duration = f.duration
        self._durations[f.pts] = f.duration
        for packet in self.vstream.encode(frame):
            self._mux_video(packet)
        if self._first_pts is None:
            self._first_pts = f.pts
        self._end_pts = f.pts + f.duration
        self.frames += 1

    def _mux_video(self, packet: Any) -> None:
        """Mux with its frame's own duration: the encoder (x264) gives every packet one frame at the
        average rate, and MP4/MOV end the track at the largest pts + duration, so the last frame of a
        variable-rate clip lasted that guess instead of its own time."""
        if packet.pts is not None:
            duration = self._durations.pop(packet.pts, None)
            if duration:
                packet.duration = duration
        self.out.mux(packet)

    def _audio(self, packet: Any) -> None:
        index = packet.stream.index
        if index in self.astreams:
            # concatenated clips (two .ts files joined with cat) jump back in time: the muxer refuses a
            # dts that does not increase, so such packets continue from the previous one instead
            shift = self._ashift.get(index, 0)
            if packet.dts is not None:
                dts = packet.dts + shift
                last = self._adts.get(index)
                if last is not None and dts <= last[0]:
                    shift += last[0] + max(last[1], 1) - dts
                    self._ashift[index] = shift
                    self.fixed_audio += 1
                    dts = packet.dts + shift
                if shift:
                    packet.dts = dts
                    if packet.pts is not None:
                        packet.pts = packet.pts + shift
                self._adts[index] = (dts, packet.duration or 0)
            packet.stream = self.astreams[index]
            self.out.mux(packet)
            return
        if index in self.recode:
            resampler, stream = self.recode[index]
            for frame in packet.decode():
                frame.pts = None
                for part in resampler.resample(frame):
                    for p in stream.encode(part):
                        self.out.mux(p)


class _ffmpeg_errors:
    """Collect FFmpeg's error log lines (level ERROR and worse) while opening the output, instead of
    letting them reach stderr; PyAV logs nothing by default, so the level is raised for the moment."""

    def __init__(self, av: Any) -> None:
        self.av = av
        self.previous: Any = None
        self.capture: Any = None

    def __enter__(self) -> list[Any]:
        logging = self.av.logging
        self.previous = logging.get_level()
        if self.previous is None:
            logging.set_level(logging.ERROR)
        self.capture = logging.Capture()
        return self.capture.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.capture.__exit__(*exc)
        if self.previous is None:
            self.av.logging.set_level(None)


def _ext(muxer: str) -> str:
    return next((name for name, (m, _) in CONTAINERS.items() if m == muxer), muxer)


# -- the command line ---------------------------------------------------------------------------


def video_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The click options of ``i2i translate`` that only videos use (they arrive as ``**video``)."""
    import click

    options = [
        click.option("--batch-size", type=click.IntRange(min=1), default=4, help="Videos: frames per network call."),
        click.option("--codec", default="libx264", help="Videos: encoder (libx264, libx265, libvpx-vp9, libsvtav1, ffv1 ...)."),
        click.option("--crf", type=click.IntRange(min=0, max=63), default=18, help="Videos: constant quality "
                     "(lower is better; libx264: 18 looks lossless, 23 is FFmpeg's default)."),
        click.option("--preset", help="Videos: encoder speed preset (libx264: ultrafast ... veryslow; default medium)."),
        click.option("--pix-fmt", default="yuv420p", help="Videos: pixel format (yuv420p plays everywhere; "
                     "yuv444p keeps full colour and odd sides; yuv420p10le for 10 bits)."),
        click.option("--container", type=click.Choice(sorted(CONTAINERS)), default="mp4",
                     help="Videos: output file type."),
        click.option("--temporal-smooth", type=click.FloatRange(0, 1, max_open=True), default=0.0,
                     help="Videos: against flicker, blend each output pixel with the previous frame's where the "
                     "input did not change (0: off; 0.5-0.8: typical)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def translate_videos(generator: Any, paths: list[Path], out_dir: Path, *, size: int | None = None,
                     mask: str | None = None, tile: int = 0, overlap: int = 32, max_pixels: int | None = None,
                     batch_size: int = 4, codec: str = "libx264", crf: int | None = 18, preset: str | None = None,
                     pix_fmt: str = "yuv420p", container: str = "mp4", temporal_smooth: float = 0.0,
                     echo: Callable[[str], None] | None = None) -> tuple[list[VideoResult], list[tuple[Path, str]]]:
    """``i2i translate`` for video files: each clip to ``out_dir/<name>.<container>`` with a progress
    bar (frames, fps, ETA) on a terminal and a line every 30 s otherwise; returns (results, failed).

    A clip that cannot be read is reported and the others go on; a model or option error stops at
    once. Ctrl-C (or SIGTERM) leaves the playable part of the current clip, says so, and exits 130
    (SystemExit: this is the command line's helper; :func:`translate_video` raises
    :class:`VideoInterrupted` instead).
    """
    import signal

    from tqdm import tqdm

    from .translate import output_names

    require_av()
    echo = echo or (lambda text: print(text, file=sys.stderr))
    suffix = CONTAINERS[container][1]
    results: list[VideoResult] = []
    failed: list[tuple[Path, str]] = []
    names = [Path(n).with_suffix(suffix).name for n in output_names(paths)]

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if in_main else None
    try:
        for number, (path, name) in enumerate(zip(paths, names)):
            tty = sys.stderr.isatty()
            bar = tqdm(total=0, unit="frame", desc=path.name, disable=not tty, file=sys.stderr, dynamic_ncols=True)
            last = [time.monotonic()]

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)
                if not tty and time.monotonic() - last[0] > 30:
                    last[0] = time.monotonic()
                    rate = bar.format_dict.get("rate") or 0
                    echo(f"i2i: {path.name}: {done}/{total or '?'} frames" + (f", {rate:.2f} fps" if rate else ""))

            try:
                result = translate_video(generator, path, out_dir / name, batch_size=batch_size, tile=tile,
                                         overlap=overlap, size=size, mask=mask, max_pixels=max_pixels, codec=codec,
                                         crf=crf, preset=preset, pix_fmt=pix_fmt, temporal_smooth=temporal_smooth,
                                         progress=progress, note=lambda t: (tqdm.write if tty else echo)(f"i2i: {t}"))
            except VideoInterrupted as exc:
                bar.close()
                echo(f"i2i: {exc}")
                left = len(paths) - number - 1
                if left:
                    echo(f"i2i: {left} more video(s) were not started: {', '.join(p.name for p in paths[number + 1:][:5])}"
                         + (", ..." if left > 5 else ""))
                raise SystemExit(exc.exit_code) from None
            except I2IError as exc:
                bar.close()
                if _is_input_error(exc, path) and len(paths) > 1:
                    failed.append((path, str(exc)))
                    echo(f"i2i: {exc}")
                    continue
                raise
            bar.close()
            results.append(result)
            echo(f"{path.name} -> {result.path}: {result.frames} frames, {result.width}x{result.height}, "
                 f"{result.duration:.2f} s, {result.audio_streams} audio stream(s); translated at {result.fps:.2f} frames/s")
    finally:
        if in_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return results, failed


def _is_input_error(exc: I2IError, path: Path) -> bool:
    return str(path) in str(exc)
