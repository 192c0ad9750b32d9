"""Video translation (issue 20): frames per second, memory over clip length, and flicker.

Three measurements, each printed as a table and as one JSON line:

1. **Speed**: realesr-animevideov3 (x4, PyTorch, CPU) on a panned 16:9 clip (``--seconds`` at
   ``--height`` lines, ``--fps``, with a sine sound track), encoded H.264 yuv420p CRF 18 each time:
   - ``naive``: decode a frame, ``Generator.translate`` it, encode it, next frame: one thread,
     one frame at a time (what a per-frame script does, minus its temporary PNGs);
   - ``pipeline b1``: :func:`i2i.video.translate_video` with ``batch_size=1`` (decoding, the
     network and encoding overlapped in three threads);
   - ``pipeline bN``: the same with ``--batch`` frames per network call.
   Contenders run one after the other on the same clip (``--rounds`` times, interleaved); fps is
   frames / wall seconds of the whole job (decoding and encoding included).
2. **Memory**: peak RSS (``VmHWM``) of a fresh process translating a ``--rss-seconds`` clip and
   one 4x longer (``--rss-height`` lines): flat when the queues bound what is in flight.
   ``pipeline``: RSS sampled through a ``--trace-seconds`` clip with the network replaced by a
   nearest-neighbour x4, so a long clip is cheap and the figure is the pipeline's own.
3. **Flicker** (:func:`i2i.video.flicker`: mean absolute frame-to-frame change of the output over
   that of the input): the vintagify CycleGAN generator (resnet_9blocks, InstanceNorm) from
   ../shared/weights on a clip panned over a horse photo (``--flicker-frames``, 1 pixel a frame),
   without and with ``--temporal-smooth`` 0.5 and 0.8; lossless in and out (ffv1) so the codec adds
   nothing. ``drift`` is the mean absolute difference between the smoothed and the plain output
   (levels): what the smoothing changed.

    python bench/video.py                                   # the issue's 10 s 480p clip
    python bench/video.py --seconds 2 --height 240 --rss-seconds 1 --rss-height 120   # a busy 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
ANIME = SHARED / "weights" / "realesrgan" / "realesr-animevideov3.pth"
CYCLEGAN = SHARED / "weights" / "vintagify_cyclegan" / "G_A2B_epoch33.pth"
FACE_DIR = SHARED / "datasets" / "inpaint" / "celeba_hq" / "src"
HORSE = SHARED / "datasets" / "horses" / "n02381460_1019.jpg"


def source_image(height: int) -> np.ndarray:
    """A real photo resized so a 16:9 window of ``height`` lines can pan across it."""
    from PIL import Image

    face = sorted(p for p in FACE_DIR.rglob("*") if p.suffix.lower() in (".jpg", ".png"))[0]
    width = round(height * 16 / 9 / 2) * 2
    with Image.open(face) as im:
        side = int(width * 1.3)
        return np.asarray(im.convert("RGB").resize((side, side), Image.BICUBIC))[(side - height) // 2 :][:height]


def make_clip(path: Path, seconds: float, height: int, fps: int = 24, lossless: bool = False) -> Path:
    from i2i.video import panned_frames, write_clip

    image = source_image(height)
    width = round(height * 16 / 9 / 2) * 2
    frames = panned_frames(image, int(round(seconds * fps)), width, height, step=1)
    if lossless:
        return write_clip(path, frames, fps, codec="ffv1", pix_fmt="bgr0")
    return write_clip(path, frames, fps, options={"crf": "18"})


def naive(generator, src: Path, dst: Path) -> int:
    """One frame at a time, in one thread: decode, translate, encode."""
    import av

    n = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vs = inp.streams.video[0]
        os_ = None
        for frame in inp.decode(vs):
            rgb = generator.translate(frame.to_ndarray(format="rgb24"))
            if os_ is None:
                os_ = out.add_stream("libx264", rate=vs.average_rate, options={"crf": "18"})
                os_.width, os_.height, os_.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts = n
            for p in os_.encode(f):
                out.mux(p)
            n += 1
        for p in os_.encode(None):
            out.mux(p)
    return n


def speed(args: argparse.Namespace, work: Path) -> dict:
    from i2i.loader import load
    from i2i.video import probe, translate_video

    clip = make_clip(work / "speed.mp4", args.seconds, args.height, args.fps)
    info = probe(clip, decode_audio=False)
    g = load(ANIME, device="cpu")
    warm = make_clip(work / "warm.mp4", 0.125, 64, args.fps)  # first calls (codecs, allocator) untimed
    naive(g, warm, work / "warm_naive.mp4")
    translate_video(g, warm, work / "warm_pipe.mp4", batch_size=args.batch)
    runs: dict[str, list[float]] = {"naive": [], "pipeline b1": [], f"pipeline b{args.batch}": []}
    for _ in range(args.rounds):
        for name in runs:
            t0 = time.perf_counter()
            if name == "naive":
                n = naive(g, clip, work / "naive.mp4")
            else:
                n = translate_video(g, clip, work / "pipe.mp4", batch_size=1 if name.endswith("b1") else args.batch).frames
            seconds = time.perf_counter() - t0
            assert n == info.frames, (name, n, info.frames)
            runs[name].append(n / seconds)
    print(f"\nspeed: {info.width}x{info.height} -> {4 * info.width}x{4 * info.height}, {info.frames} frames "
          f"({info.duration:.1f} s at {info.fps:g} fps), realesr-animevideov3 on the CPU, H.264 CRF 18")
    print(f"{'':>14}  " + "  ".join(f"round {i + 1:>2}" for i in range(args.rounds)) + "   best fps  vs naive")
    best_naive = max(runs["naive"])
    for name, fps in runs.items():
        print(f"{name:>14}  " + "  ".join(f"{v:8.3f}" for v in fps) + f"   {max(fps):8.3f}  {max(fps) / best_naive:7.2f}x")
    return {"speed": {k: v for k, v in runs.items()}, "frames": info.frames, "size": [info.width, info.height]}


def rss_child(clip: str, batch: int) -> None:
    from i2i.loader import load
    from i2i.video import translate_video

    g = load(ANIME, device="cpu")
    out = Path(clip).with_name(Path(clip).stem + "_out.mp4")
    r = translate_video(g, clip, out, batch_size=batch)
    print(json.dumps({"frames": r.frames, "peak_mb": peak_rss() / 2**20, "run_s": r.seconds}))


def peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM, not ``ru_maxrss``, which Linux carries over an exec
    from the forking parent (a child of a big process would report the parent's size)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory(args: argparse.Namespace, work: Path) -> dict:
    rows = []
    for seconds in (args.rss_seconds, 4 * args.rss_seconds):
        clip = make_clip(work / f"rss_{seconds:g}.mp4", seconds, args.rss_height, args.fps)
        res = subprocess.run([sys.executable, __file__, "--rss-child", str(clip), "--batch", str(args.batch)],
                             capture_output=True, text=True, check=True)
        rows.append({"seconds": seconds, **json.loads(res.stdout.strip().splitlines()[-1])})
    print(f"\nmemory: {args.rss_height}p clips, batch {args.batch}, one fresh process each (peak RSS)")
    for r in rows:
        print(f"  {r['seconds']:5.1f} s clip  {r['frames']:5d} frames  peak RSS {r['peak_mb']:7.0f} MB")
    print(f"  longer / shorter: {rows[1]['peak_mb'] / rows[0]['peak_mb']:.3f}x")
    return {"memory": rows}


def pipeline_memory(args: argparse.Namespace, work: Path) -> dict:
    """RSS sampled through a long clip with the network replaced by a nearest-neighbour x4 (numpy),
    so the clip is long and the figure is the pipeline's own: decoder, queues, encoder."""
    from i2i.artifact import GeneratorMeta
    from i2i.loader import Generator
    from i2i.video import translate_video

    def nearest(x: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(x, 4, axis=2), 4, axis=3)

    g = Generator(nearest, GeneratorMeta(name="nearest_x4", value_range=(0.0, 1.0), scale=4, tiling="local"), "cpu")
    clip = make_clip(work / "trace.mp4", args.trace_seconds, args.rss_height, args.fps)
    samples: list[tuple[int, float]] = []

    def progress(done: int, total: int) -> None:
        with open("/proc/self/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        samples.append((done, rss / 1024))

    translate_video(g, clip, work / "trace_out.mp4", batch_size=args.batch, progress=progress)
    every = max(1, len(samples) // 12)
    print(f"\npipeline memory (no network: nearest x4), {args.rss_height}p, {samples[-1][0]} frames, batch {args.batch}:")
    print("  " + "  ".join(f"{d}: {mb:.0f}" for d, mb in samples[::every] + samples[-1:]) + "  (frame: RSS MB)")
    return {"pipeline_rss": samples[::every] + samples[-1:]}


def flicker_run(args: argparse.Namespace, work: Path) -> dict:
    from i2i.imageio import decode_image
    from i2i.loader import load
    from i2i.video import flicker, panned_frames, translate_video, write_clip

    import av

    def frames(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as c:
            return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]

    g = load(CYCLEGAN, device="cpu")
    clip = write_clip(work / "horse.mkv", panned_frames(decode_image(HORSE), args.flicker_frames, 192, 128, step=1),
                      24, codec="ffv1", pix_fmt="bgr0", audio_hz=None)
    src = frames(clip)
    rows = []
    plain = None
    for strength in (0.0, 0.5, 0.8):
        out = translate_video(g, clip, work / f"horse_{strength}.mkv", codec="ffv1", pix_fmt="bgr0",
                              batch_size=args.batch, temporal_smooth=strength)
        got = frames(out.path)
        plain = got if plain is None else plain
        drift = float(np.mean([np.abs(a.astype(np.float32) - b).mean() for a, b in zip(got, plain)]))
        rows.append({"temporal_smooth": strength, "flicker": flicker(src, got), "drift": drift})
    print(f"\nflicker: vintagify CycleGAN (resnet_9blocks, InstanceNorm) on a {len(src)}-frame 192x128 pan over "
          f"{HORSE.name}, 1 px a frame")
    print("  temporal_smooth  flicker (out/in change)  drift vs plain (levels)")
    for r in rows:
        print(f"  {r['temporal_smooth']:15.1f}  {r['flicker']:23.3f}  {r['drift']:23.2f}")
    return {"flicker": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--rss-seconds", type=float, default=10.0)
    p.add_argument("--rss-height", type=int, default=480)
    p.add_argument("--flicker-frames", type=int, default=48)
    p.add_argument("--trace-seconds", type=float, default=32.0)
    p.add_argument("--only", choices=["speed", "memory", "pipeline", "flicker"], action="append")
    p.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    if args.rss_child:
        rss_child(args.rss_child, args.batch)
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}  load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}  "
          f"cores {os.cpu_count()}")
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        parts = (("speed", speed), ("memory", memory), ("pipeline", pipeline_memory), ("flicker", flicker_run))
        for part, fn in parts:
            if not args.only or part in args.only:
                result.update(fn(args, work))
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
