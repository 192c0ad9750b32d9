"""Video in, video out (i2i/video.py): `i2i translate clip.mp4`, streamed, batched, with its sound.

The clips are made here with PyAV (a few seconds, tiny, with a sine-wave sound track); the model is
the real realesr-animevideov3 (x4, 2.3 MB) or a fake generator built on `i2i.loader.Generator`
where only the plumbing is under test. Tolerances, against the image path on the same decoded frame:
lossless output (ffv1, RGB) differs by at most 1 level (a batch of 4 against one frame at a time:
float rounding at .5), and the default H.264 yuv420p CRF 18 output is within 35 dB PSNR.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from click.testing import CliRunner  # noqa: E402

from i2i.artifact import GeneratorMeta  # noqa: E402
from i2i.errors import I2IError  # noqa: E402
from i2i.imageio import decode_image, write_image  # noqa: E402
from i2i.loader import Generator, load  # noqa: E402
from i2i.video import (  # noqa: E402
    TemporalSmoother, VideoInterrupted, flicker, panned_frames, probe, translate_video, write_clip,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
ANIME = SHARED / "weights" / "realesrgan" / "realesr-animevideov3.pth"
HORSE = SHARED / "datasets" / "horses" / "n02381460_1019.jpg"
needs_anime = pytest.mark.skipif(not ANIME.is_file(),
                                 reason="../shared/weights/realesrgan/realesr-animevideov3.pth not present")


#: tests whose figures were measured on the horse photo (the stand-in pattern moves them)
needs_horse = pytest.mark.skipif(not HORSE.is_file(), reason="../shared/datasets/horses not present")


def horse() -> np.ndarray:
    if HORSE.is_file():
        return decode_image(HORSE)
    rng = np.random.default_rng(0)  # a textured stand-in where the shared data is absent
    base = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return np.kron(base, np.ones((8, 8, 1), np.uint8))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 24 fps, 64x48, H.264 yuv420p, rotated 90 degrees, with a 440 Hz AAC sound track."""
    path = tmp_path_factory.mktemp("clips") / "pan.mp4"
    return write_clip(path, panned_frames(horse(), 48, 64, 48, step=2), fps=24, rotation=90)


@pytest.fixture(scope="module")
def anime(one_thread: None) -> Generator:
    if not ANIME.is_file():
        pytest.skip(f"{ANIME} is absent")
    return load(ANIME, device="cpu")


def identity(scale: int = 1, noise: float = 0.0, calls: list[int] | None = None, stop_at: int = 0) -> Generator:
    """A fake translator: the input (upscaled by ``scale``), plus per-call random noise (a flickering
    translator) when ``noise`` > 0; raises KeyboardInterrupt on call ``stop_at`` (Ctrl-C mid-clip)."""
    rng = np.random.default_rng(0)
    calls = calls if calls is not None else []

    def run(x: np.ndarray, *extras: np.ndarray) -> np.ndarray:
        calls.append(x.shape[0])
        if stop_at and len(calls) == stop_at:
            raise KeyboardInterrupt
        y = np.repeat(np.repeat(x, scale, axis=2), scale, axis=3) if scale > 1 else x.copy()
        if noise:
            y = y + rng.normal(0, noise, y.shape).astype(np.float32)
        return y

    meta = GeneratorMeta(name="identity", value_range=(0.0, 1.0), scale=scale, tiling="local")
    return Generator(run, meta, "cpu")


def frames_of(path: Path) -> list[np.ndarray]:
    """Every frame as RGB, decoded the plain PyAV way (not through i2i)."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    mse = np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b)])
    return float(10 * np.log10(255**2 / mse)) if mse else float("inf")


# -- what the output keeps ----------------------------------------------------------------------


def test_output_keeps_frames_rate_duration_rotation_and_sound(clip: Path, anime: Generator, tmp_path: Path) -> None:
    result = translate_video(anime, clip, tmp_path / "out.mp4", batch_size=4)
    src, out = probe(clip), probe(result.path)
    assert (out.frames, out.fps, out.duration) == (src.frames, src.fps, src.duration) == (48, 24.0, 2.0)
    assert out.times == src.times  # every timestamp, not just the count
    assert (out.width, out.height) == (4 * src.width, 4 * src.height)
    assert out.rotation == src.rotation == 90
    assert out.codec == "h264" and out.pix_fmt == "yuv420p"
    assert [a[0] for a in out.audio] == ["aac"]  # copied, not re-encoded: the same packets
    assert out.audio[0][1] == pytest.approx(src.audio[0][1], abs=1e-6)
    assert (result.frames, result.audio_streams, result.notes) == (48, 1, [])
    assert not [p for p in tmp_path.iterdir() if p.name != "out.mp4"]  # no temporary left


def test_each_frame_is_the_image_paths_output(clip: Path, anime: Generator, tmp_path: Path) -> None:
    """Lossless RGB output (ffv1 bgr0) against Generator.translate on the same decoded frame: at most
    1 level off (batched float rounding); the default H.264 yuv420p CRF 18 within 35 dB PSNR."""
    expected = [anime.translate(f) for f in frames_of(clip)]
    lossless = translate_video(anime, clip, tmp_path / "lossless.mkv", codec="ffv1", pix_fmt="bgr0", batch_size=4)
    got = frames_of(lossless.path)
    assert len(got) == len(expected)
    assert max(int(np.abs(g.astype(np.int16) - e).max()) for g, e in zip(got, expected)) <= 1
    h264 = translate_video(anime, clip, tmp_path / "h264.mp4")
    assert psnr(frames_of(h264.path), expected) > 35.0


def test_batches_give_the_frames_of_one_at_a_time(clip: Path, anime: Generator, tmp_path: Path) -> None:
    one = frames_of(translate_video(anime, clip, tmp_path / "one.mkv", codec="ffv1", pix_fmt="bgr0", batch_size=1).path)
    six = frames_of(translate_video(anime, clip, tmp_path / "six.mkv", codec="ffv1", pix_fmt="bgr0", batch_size=6).path)
    assert max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(one, six)) <= 1


def test_frames_run_in_batches_and_tiles_per_frame(clip: Path, tmp_path: Path) -> None:
    calls: list[int] = []
    translate_video(identity(calls=calls), clip, tmp_path / "b.mp4", batch_size=5)
    assert calls == [5] * 9 + [3]  # 48 frames
    calls.clear()
    out = translate_video(identity(calls=calls), clip, tmp_path / "t.mkv", tile=32, overlap=8, codec="ffv1",
                          pix_fmt="bgr0")
    assert len(calls) == 48 * 4 and set(calls) == {1}  # 64x48 in 32-pixel tiles: 4 per frame
    assert all((a == b).all() for a, b in zip(frames_of(out.path), frames_of(clip)))  # the identity, tiled: the input


def test_variable_frame_rate_keeps_every_timestamp(tmp_path: Path) -> None:
    times = [0.0, 0.04, 0.08, 0.2, 0.24, 0.5, 0.54, 0.58, 1.0, 1.1]
    src = write_clip(tmp_path / "vfr.mkv", panned_frames(horse(), len(times), 32, 32), fps=25, times=times)
    out = translate_video(identity(), src, tmp_path / "out.mp4")
    assert probe(src).times == pytest.approx(times, abs=1e-3)  # Matroska keeps milliseconds
    assert probe(out.path).times == pytest.approx(probe(src).times, abs=1e-6)


def mp4_edit_end(path: Path) -> float:
    """Seconds the first edit list entry (elst, version 0, of the first track) shows: where players end the video."""
    import struct

    data = path.read_bytes()
    mvhd = data.find(b"mvhd")
    timescale = struct.unpack(">I", data[mvhd + 16 : mvhd + 20])[0]
    elst = data.find(b"elst")
    return struct.unpack(">I", data[elst + 12 : elst + 16])[0] / timescale


@needs_horse
def test_a_variable_frame_rate_clip_ends_where_its_last_frame_ends(tmp_path: Path) -> None:
    """H.264 gives every packet one frame at the average rate; the last frame of a variable-rate clip
    lasted that (0.2 s here) instead of its own 0.05 s: each packet now carries its frame's duration."""
    times = [0, 0.04, 0.08, 0.2, 0.25, 0.3, 0.5, 0.52, 0.54, 0.56, 0.7, 0.8, 0.9, 1.0, 1.05, 1.1, 1.3, 1.35, 1.4, 1.5]
    src = write_clip(tmp_path / "vfr.mp4", panned_frames(horse(), len(times), 32, 32), times=times)
    # the source's own end: its last frame's duration is the encoder's choice, which depends on the
    # content (0.05 s on the horse, 1/24 s on other pictures); the output must end where it ends
    end = probe(src).duration
    assert 1.5 < end <= 1.6
    mkv = translate_video(identity(), src, tmp_path / "out.mkv")
    assert mkv.duration == pytest.approx(end) and probe(mkv.path).duration == pytest.approx(end, abs=1e-3)
    mp4 = translate_video(identity(), src, tmp_path / "out.mp4")
    assert mp4.duration == pytest.approx(end) and mp4_edit_end(mp4.path) == pytest.approx(end, abs=1e-3)
    assert probe(mp4.path).times == probe(src).times


def test_odd_sizes_are_cropped_for_yuv420p_or_kept_with_yuv444p(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "odd.mp4", panned_frames(horse(), 6, 33, 25), pix_fmt="yuv444p", audio_hz=None)
    notes: list[str] = []
    out = translate_video(identity(), src, tmp_path / "o420.mp4", note=notes.append)
    assert (probe(out.path).width, probe(out.path).height) == (32, 24)
    assert notes == ["odd.mp4: the output is 33x25, and yuv420p needs even sides: cropped to 32x24 "
                     "(--pix-fmt yuv444p keeps every pixel)"]
    out = translate_video(identity(), src, tmp_path / "o444.mp4", pix_fmt="yuv444p")
    assert (probe(out.path).width, probe(out.path).height, out.notes) == (33, 25, [])
    assert probe(out.path).audio == [] and out.audio_streams == 0  # no sound in, none out


def test_ten_bit_input_is_translated_and_said(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "10bit.mkv", panned_frames(horse(), 6, 32, 32), pix_fmt="yuv420p10le", audio_hz=None)
    assert probe(src).pix_fmt == "yuv420p10le"
    out = translate_video(identity(), src, tmp_path / "out.mp4")
    assert probe(out.path).frames == 6
    assert out.notes == ["its 10-bit frames are translated in 8 bits, as images are (--pix-fmt yuv420p10le writes 10 bits)"]
    ten = translate_video(identity(), src, tmp_path / "out10.mp4", pix_fmt="yuv420p10le")
    assert probe(ten.path).pix_fmt == "yuv420p10le"
    assert ten.notes == ["its 10-bit frames are translated in 8 bits, as images are (written as yuv420p10le)"]


def test_sound_the_container_cannot_hold_is_re_encoded_and_said(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "pcm.mkv", panned_frames(horse(), 12, 32, 32), audio_codec="pcm_s16le")
    out = translate_video(identity(), src, tmp_path / "out.webm", codec="libvpx-vp9")
    info = probe(out.path)
    assert [a[0] for a in info.audio] == ["opus"]
    assert info.audio[0][1] == pytest.approx(probe(src).audio[0][1], abs=0.03)  # one Opus frame of slack
    assert out.notes == ["its pcm_s16le sound cannot be copied into .webm: re-encoded as libopus (--container mkv copies it)"]
    kept = translate_video(identity(), src, tmp_path / "out.mkv")  # Matroska holds PCM: copied
    assert [a[0] for a in probe(kept.path).audio] == ["pcm_s16le"] and kept.notes == []
    mp4 = translate_video(identity(), src, tmp_path / "out.mp4")  # the mp4 muxer takes PCM, few players play it
    assert [a[0] for a in probe(mp4.path).audio] == ["aac"]
    assert mp4.notes == ["its pcm_s16le sound is re-encoded as aac for .mp4, where few players play PCM "
                         "(--container mkv or mov copies it)"]


def joined_clips(tmp_path: Path, second_width: int = 32) -> Path:
    """Two .ts clips joined with `cat`: the timestamps of video and sound start again half-way."""
    one = write_clip(tmp_path / "one.ts", panned_frames(horse(), 12, 32, 32), fps=24)
    two = write_clip(tmp_path / "two.ts", panned_frames(horse(), 12, second_width, 32), fps=24)
    joined = tmp_path / f"joined{second_width}.ts"
    joined.write_bytes(one.read_bytes() + two.read_bytes())
    return joined


def test_clips_joined_end_to_end_keep_their_sound(tmp_path: Path) -> None:
    """Timestamps that go back (and a size that changes) half-way, with sound: the copied sound
    packets go back too, which the muxer refuses; they are moved to follow on, and said."""
    for width in (32, 48):
        src = joined_clips(tmp_path, width)
        with av.open(str(src)) as c:  # the premise: the sound's dts goes back
            dts = [p.dts for p in c.demux(audio=0) if p.dts is not None]
        assert any(b <= a for a, b in zip(dts, dts[1:]))
        for suffix in (".mp4", ".mkv"):
            out = translate_video(identity(), src, tmp_path / f"out{width}{suffix}")
            info = probe(out.path)
            assert info.frames == out.frames == 24 and (info.width, info.height) == (32, 32)
            assert all(b > a for a, b in zip(info.times, info.times[1:]))
            assert len(info.audio) == 1 and info.audio[0][1] == pytest.approx(1.0, abs=0.1)  # both halves' sound
            assert "12 frame(s) had missing or non-increasing timestamps; they were renumbered" in out.notes
            assert ("its sound's timestamps go back 1 time(s) (clips joined end to end?): the sound after each jump "
                    "was moved to follow on") in out.notes
            assert (width == 48) == any("scaled to the first's 32x32" in n for n in out.notes)


def test_joined_clips_on_the_command_line(tmp_path: Path) -> None:
    from i2i.cli import cli

    if not ANIME.is_file():
        pytest.skip(f"{ANIME} is absent")
    src = joined_clips(tmp_path, 48)
    res = CliRunner().invoke(cli, ["translate", str(src), "--model", str(ANIME), "--out", str(tmp_path / "o"),
                                   "--container", "mkv", "--preset", "ultrafast"])
    assert res.exit_code == 0, res.output
    assert "the sound after each jump was moved to follow on" in res.output
    assert len(probe(tmp_path / "o" / "joined48.mkv").audio) == 1


def test_an_encoder_that_refuses_its_settings_is_not_blamed_on_the_sound(clip: Path, tmp_path: Path,
                                                                        capfd: pytest.CaptureFixture[str]) -> None:
    """The MPEG-4 part 2 encoder takes no time base past 1/65535 (a VFR .mp4's is 1/90000): an encoder
    failure names the encoder and FFmpeg's reason, not a sound that 'cannot be copied'."""
    times = [0.0, 0.04, 0.1, 0.2]
    src = write_clip(tmp_path / "vfr.mp4", panned_frames(horse(), 4, 32, 32), times=times)
    notes: list[str] = []
    with pytest.raises(I2IError, match=r"^the mpeg4 encoder refuses yuv420p 32x32: timebase 1/90000 not supported") as caught:
        translate_video(identity(), src, tmp_path / "out.mp4", codec="mpeg4", note=notes.append)
    assert "\n" not in str(caught.value) and notes == []
    assert "timebase" not in capfd.readouterr().err  # FFmpeg's reason is in the error, not printed as well
    assert list(tmp_path.iterdir()) == [src]


def test_x265_prints_nothing_per_clip(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    src = write_clip(tmp_path / "s.mp4", panned_frames(horse(), 4, 32, 32), audio_hz=None)
    capfd.readouterr()
    for codec in ("libx265", "libsvtav1"):
        if codec in av.codecs_available:
            translate_video(identity(), src, tmp_path / f"{codec}.mkv", codec=codec, pix_fmt="yuv420p")
    err = capfd.readouterr().err
    assert err.count("\n") <= 2, err


def test_an_onnx_file_runs_batched_through_onnxruntime(clip: Path, anime: Generator, tmp_path: Path) -> None:
    """The same door for .onnx files: batches go to onnxruntime, frames match its image path."""
    pytest.importorskip("onnxruntime")
    from i2i_export.exporter import export_onnx

    onnx = load(export_onnx(anime.module, anime.meta, tmp_path / "anime.onnx"), device="cpu")
    calls: list[int] = []
    counted = Generator(lambda x: (calls.append(x.shape[0]), onnx.run(x))[1], onnx.meta, onnx.device)
    translate_video(counted, clip, tmp_path / "counted.mp4", batch_size=8)
    assert calls == [8] * 6
    out = translate_video(onnx, clip, tmp_path / "onnx.mkv", codec="ffv1", pix_fmt="bgr0", batch_size=8)
    expected = [onnx.translate(f) for f in frames_of(clip)]
    assert max(int(np.abs(g.astype(np.int16) - e).max()) for g, e in zip(frames_of(out.path), expected)) <= 1


def test_size_and_an_inpainting_mask_apply_to_every_frame(clip: Path, tmp_path: Path) -> None:
    """--size resizes each frame first (as for images); an inpainting model gets one mask for all frames."""
    out = translate_video(identity(scale=2), clip, tmp_path / "small.mp4", size=24)
    assert (probe(out.path).width, probe(out.path).height) == (64, 48)  # 64x48 -> 32x24 -> x2
    seen: list[tuple[int, ...]] = []

    def fill(x: np.ndarray, mask: np.ndarray) -> np.ndarray:  # paints the hole white
        seen.append(mask.shape)
        return x * (1 - mask) + mask

    meta = GeneratorMeta(name="filler", value_range=(0.0, 1.0), tiling="local",
                         extra_inputs=[{"name": "mask", "channels": 1}])
    hole = np.zeros((48, 64), np.uint8)
    hole[10:20, 30:50] = 255
    write_image(tmp_path / "hole.png", hole)
    with pytest.raises(I2IError, match="^filler needs a mask: pass --mask FILE"):
        translate_video(Generator(fill, meta, "cpu"), clip, tmp_path / "none.mp4")
    out = translate_video(Generator(fill, meta, "cpu"), clip, tmp_path / "filled.mkv", mask=str(tmp_path / "hole.png"),
                          codec="ffv1", pix_fmt="bgr0", batch_size=4)
    assert seen == [(4, 1, 48, 64)] * 12
    frames = frames_of(out.path)
    assert all((f[10:20, 30:50] == 255).all() for f in frames)
    assert all((f[:10] == g[:10]).all() for f, g in zip(frames, frames_of(clip)))
    with pytest.raises(I2IError, match="^--mask is for inpainting models; identity takes no mask$"):
        translate_video(identity(), clip, tmp_path / "x.mp4", mask=str(tmp_path / "hole.png"))


# -- interrupts and bad input -------------------------------------------------------------------


def test_ctrl_c_leaves_a_playable_partial_file_and_says_so(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(VideoInterrupted) as caught:
        translate_video(identity(stop_at=4), clip, tmp_path / "out.mp4", batch_size=2)
    partial = tmp_path / "out.partial.mp4"
    assert caught.value.partial == partial and caught.value.frames == 6  # 3 batches of 2 were translated
    assert str(caught.value) == (f"interrupted: {partial} holds the first 6 of 48 frames of pan.mp4 "
                                 f"(playable; run again for the whole clip)")
    info = probe(partial)
    assert info.frames == 6 and info.times == probe(clip).times[:6] and info.rotation == 90
    assert len(info.audio) == 1  # the sound up to where it stopped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.partial.mp4"]  # no final name, no temporary


def test_a_finished_run_removes_the_partial_file_an_interrupted_one_left(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(VideoInterrupted):
        translate_video(identity(stop_at=2), clip, tmp_path / "out.mp4", batch_size=2)
    assert [p.name for p in tmp_path.iterdir()] == ["out.partial.mp4"]
    out = translate_video(identity(), clip, tmp_path / "out.mp4")
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    assert out.notes == ["removed out.partial.mp4, the part an earlier interrupted run left"]


def test_ctrl_c_in_a_folder_says_which_clips_were_not_started(clip: Path, tmp_path: Path) -> None:
    from i2i.video import translate_videos

    paths = []
    for name in ("a", "b", "c"):
        paths.append(tmp_path / f"{name}.mp4")
        paths[-1].write_bytes(clip.read_bytes())
    lines: list[str] = []
    with pytest.raises(SystemExit) as caught:
        translate_videos(identity(stop_at=3), paths, tmp_path / "out", batch_size=2, echo=lines.append)
    assert caught.value.code == 130
    assert lines[-2].startswith(f"i2i: interrupted: {tmp_path / 'out' / 'a.partial.mp4'} holds the first 4 of 48")
    assert lines[-1] == "i2i: 2 more video(s) were not started: b.mp4, c.mp4"


def test_ctrl_c_before_any_frame_leaves_nothing(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(VideoInterrupted, match="nothing written") as caught:
        translate_video(identity(stop_at=1), clip, tmp_path / "out.mp4")
    assert caught.value.partial is None and list(tmp_path.iterdir()) == []


def test_bad_inputs_are_one_line_errors_and_leave_nothing(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp4"  # an .mp4 cut short loses its index (moov), written last
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    sound = tmp_path / "sound.mp4"
    with av.open(str(sound), "w") as c:
        s = c.add_stream("aac", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)
    damaged = re.escape(" (not a video, or damaged/truncated)")
    cases = {
        text: re.escape(f"cannot read video {text}: Invalid data found when processing input") + damaged,
        empty: re.escape(f"cannot read video {empty}: the file is empty"),
        truncated: re.escape(f"cannot read video {truncated}: ") + ".*" + damaged,
        sound: re.escape(f"{sound} holds no video frames (no video stream); nothing to translate"),
        tmp_path / "missing.mp4": re.escape(f"no such video file: {tmp_path / 'missing.mp4'}"),
    }
    for path, message in cases.items():
        with pytest.raises(I2IError, match=f"^{message}$") as caught:
            translate_video(identity(), path, out / f"{path.stem}.mp4")
        assert "\n" not in str(caught.value)
    assert not out.exists() or list(out.iterdir()) == []


def test_a_video_stream_without_frames_is_an_error(tmp_path: Path) -> None:
    bare = tmp_path / "bare.mp4"
    with av.open(str(bare), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()
    with pytest.raises(I2IError, match=f"^{bare} holds no video frames \\(no video stream\\); nothing to translate$"):
        translate_video(identity(), bare, tmp_path / "out.mp4")
    assert [p.name for p in tmp_path.iterdir()] == ["bare.mp4"]


def test_a_truncated_stream_gives_the_frames_it_has_and_says_so(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "long.mkv", panned_frames(horse(), 48, 64, 48, step=2), audio_hz=None)
    cut = tmp_path / "cut.mkv"  # Matroska streams: a file cut short still opens
    cut.write_bytes(src.read_bytes()[: int(src.stat().st_size * 0.6)])
    out = translate_video(identity(), cut, tmp_path / "out.mp4")
    assert 10 < out.frames < 48 and probe(out.path).frames == out.frames
    assert out.notes == [f"its header announces about 48 frames but only {out.frames} could be decoded: the file "
                         f"looks truncated; translated those"]


def test_options_the_encoder_refuses_are_one_line_errors(clip: Path, tmp_path: Path) -> None:
    g = identity()
    cases = [
        (dict(codec="nope"), "^no video encoder 'nope' in this PyAV; try libx264"),
        (dict(codec="aac"), "^aac is not a video encoder"),
        (dict(pix_fmt="yuv999"), "^unknown --pix-fmt 'yuv999'"),
        (dict(codec="ffv1", pix_fmt="gbrp"), "^the ffv1 encoder does not take --pix-fmt gbrp; it takes "),
        (dict(batch_size=0), r"^batch_size \(--batch-size\) must be at least 1"),
        (dict(temporal_smooth=1.0), r"^temporal_smooth \(--temporal-smooth\) is a strength in \[0, 1\)"),
        (dict(preset="turbo"), "^--preset turbo: unknown preset for libx264; choose one of ultrafast, superfast, "
                               "veryfast, faster, fast, medium, slow, slower, veryslow, placebo$"),
        (dict(codec="libx265", preset="turbo"), "^--preset turbo: unknown preset for libx265; choose one of "),
        (dict(codec="libvpx-vp9", preset="fast"), "^--preset: the libvpx-vp9 encoder has no presets$"),
    ]
    if "libsvtav1" in av.codecs_available:
        cases.append((dict(codec="libsvtav1", preset="turbo"),
                      r"^--preset turbo: libsvtav1's presets are numbers from -1 \(slowest\) to 13 \(fastest\)$"))
    for kwargs, message in cases:
        with pytest.raises(I2IError, match=message):
            translate_video(g, clip, tmp_path / "out.mp4", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(I2IError, match="^.webm files cannot hold libx264 video; use --codec libvpx-vp9"):
        translate_video(g, clip, tmp_path / "out.webm")
    with pytest.raises(I2IError, match="^cannot write a video as out.gif: use .mp4, .mov, .mkv or .webm$"):
        translate_video(g, clip, tmp_path / "out.gif")
    with pytest.raises(I2IError, match=r"would overwrite the input; choose another output path \(--out on the command line\)$"):
        translate_video(g, clip, clip)
    assert list(tmp_path.iterdir()) == []


@needs_anime  # the command line part loads it
def test_without_pyav_the_error_names_the_extra(clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from i2i.cli import cli

    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(I2IError, match=r'^videos need PyAV, which is not installed: pip install "i2i\[video\]"$'):
        translate_video(identity(), clip, tmp_path / "out.mp4")
    res = CliRunner().invoke(cli, ["translate", str(clip), "--model", str(ANIME), "--out", str(tmp_path)])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == 'Error: videos need PyAV, which is not installed: pip install "i2i[video]"'


# -- flicker ------------------------------------------------------------------------------------


@needs_horse
def test_temporal_smoothing_steadies_a_flickering_translator(tmp_path: Path) -> None:
    """A still shot through a translator that adds fresh noise to every frame: the option cuts the
    output's frame-to-frame change; on a pan, the output still follows the input (no smearing)."""
    still = write_clip(tmp_path / "still.mp4", [horse()[:64, :64]] * 24, audio_hz=None, codec="ffv1", pix_fmt="bgr0")
    raw = translate_video(identity(noise=0.03), still, tmp_path / "raw.mkv", codec="ffv1", pix_fmt="bgr0")
    smooth = translate_video(identity(noise=0.03), still, tmp_path / "smooth.mkv", codec="ffv1", pix_fmt="bgr0",
                             temporal_smooth=0.8)
    src = frames_of(still)
    jitter_raw = np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(frames_of(raw.path)[1:], frames_of(raw.path))])
    jitter_smooth = np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(frames_of(smooth.path)[1:], frames_of(smooth.path))])
    assert jitter_smooth < 0.5 * jitter_raw
    pan = write_clip(tmp_path / "pan.mkv", panned_frames(horse(), 24, 64, 64, step=3), codec="ffv1", pix_fmt="bgr0",
                     audio_hz=None)
    followed = translate_video(identity(), pan, tmp_path / "pan_out.mkv", codec="ffv1", pix_fmt="bgr0",
                               temporal_smooth=0.8)
    drift = np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(frames_of(followed.path), frames_of(pan))])
    assert drift < 2.0  # levels, mean over the clip: moving content is taken as it comes
    assert src  # the clip decoded


def test_flicker_measure() -> None:
    a = [np.full((4, 4, 3), v, np.uint8) for v in (0, 10, 20)]
    b = [np.full((4, 4, 3), v, np.uint8) for v in (0, 20, 40)]
    assert flicker(a, b) == pytest.approx(2.0)
    assert flicker(a, a) == pytest.approx(1.0)
    still = [a[0]] * 3
    assert flicker(still, still) == 1.0  # nothing moves on either side: as steady as the input
    assert flicker(still, a) == float("inf")  # change out of a still input
    assert np.isnan(flicker(a[:1], b[:1])) and np.isnan(flicker([], []))  # one frame: nothing to measure
    smoother = TemporalSmoother(0.5)
    first = smoother(a[0], b[0])
    assert (first == b[0]).all()
    assert (smoother(a[0], b[2]) == 20).all()  # the input did not move: half the old, half the new


# -- the command line ---------------------------------------------------------------------------


def test_translate_command_takes_videos_with_images(clip: Path, anime: Generator, tmp_path: Path) -> None:
    from i2i.cli import cli

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "pan.mp4").write_bytes(clip.read_bytes())
    (folder / "pan.mkv").write_bytes(clip.read_bytes())  # the same stem: distinct output names
    write_image(folder / "still.png", horse()[:32, :32])
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["translate", str(folder), "--model", str(ANIME), "--out", str(out),
                                   "--batch-size", "8", "--crf", "23", "--preset", "veryfast"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["pan_mkv.mp4", "pan_mp4.mp4", "still.png"]
    assert "translated 1 image(s) with srvgg_compact on cpu" in res.output
    assert "translated 2 video(s) with srvgg_compact on cpu" in res.output
    assert f"pan.mp4 -> {out / 'pan_mp4.mp4'}: 48 frames, 256x192, 2.00 s, 1 audio stream(s)" in res.output
    assert probe(out / "pan_mp4.mp4").frames == 48


@needs_anime
def test_translate_command_lists_a_bad_video_and_goes_on(clip: Path, tmp_path: Path) -> None:
    from i2i.cli import cli

    bad = tmp_path / "bad.mov"
    bad.write_bytes(b"\x00" * 1000)
    res = CliRunner().invoke(cli, ["translate", str(bad), str(clip), "--model", str(ANIME), "--out",
                                   str(tmp_path / "out"), "--container", "mkv"])
    assert res.exit_code == 1
    assert f"i2i: cannot read video {bad}: " in res.output
    assert res.output.strip().splitlines()[-1] == "Error: 1 of 2 file(s) could not be translated (listed above)"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["pan.mkv"]


def test_expand_inputs_finds_videos(tmp_path: Path) -> None:
    from i2i.translate import expand_inputs

    for name in ("a.mp4", "b.MOV", "c.mkv", "d.webm", "e.avi", "f.png", "g.txt", "._h.mp4"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_inputs((str(tmp_path),))] == ["a.mp4", "b.MOV", "c.mkv", "d.webm", "e.avi", "f.png"]
    assert [p.name for p in expand_inputs((str(tmp_path / "*.m*"),))] == ["a.mp4", "c.mkv"]
    more = ["i.m4v", "j.ts", "k.mts", "l.m2ts", "m.3gp", "n.mpg", "o.mpeg", "p.wmv", "q.flv", "r.ogv"]
    for name in more:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_inputs((str(tmp_path / "[i-r].*"),))] == more
    # an existing file of another kind names its suffix and what is read; a missing path says so
    with pytest.raises(I2IError, match=r"g.txt is neither an image nor a video i2i reads \(by its suffix '.txt'\).*\.m4v"):
        expand_inputs((str(tmp_path / "g.txt"),))
    with pytest.raises(I2IError, match="no such file or folder"):
        expand_inputs((str(tmp_path / "missing.mp4"),))
    (tmp_path / "empty").mkdir()
    with pytest.raises(I2IError, match="no images or videos found at"):
        expand_inputs((str(tmp_path / "empty"),))


def test_m4v_and_ts_clips_are_translated_on_the_command_line(clip: Path, tmp_path: Path) -> None:
    from i2i.cli import cli

    if not ANIME.is_file():
        pytest.skip(f"{ANIME} is absent")
    m4v = tmp_path / "phone.m4v"
    m4v.write_bytes(clip.read_bytes())
    ts = write_clip(tmp_path / "cam.ts", panned_frames(horse(), 6, 32, 32), fps=24)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["translate", str(m4v), str(ts), "--model", str(ANIME), "--out", str(out),
                                   "--preset", "ultrafast"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["cam.mp4", "phone.mp4"]
    assert probe(out / "phone.mp4").frames == 48 and probe(out / "cam.mp4").frames == 6


def test_an_unknown_preset_on_the_command_line_is_one_line(clip: Path, tmp_path: Path) -> None:
    from i2i.cli import cli

    if not ANIME.is_file():
        pytest.skip(f"{ANIME} is absent")
    res = CliRunner().invoke(cli, ["translate", str(clip), "--model", str(ANIME), "--out", str(tmp_path / "o"),
                                   "--preset", "turbo"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == (
        "Error: --preset turbo: unknown preset for libx264; choose one of ultrafast, superfast, veryfast, faster, "
        "fast, medium, slow, slower, veryslow, placebo")
    assert "cannot be copied" not in res.output


def test_ctrl_c_on_the_command_line_exits_130_with_a_playable_file(tmp_path: Path) -> None:
    """A real SIGINT to `i2i translate` while a clip is half done (reader, network and writer all busy)."""
    import os
    import signal
    import subprocess
    import time

    if not ANIME.is_file():
        pytest.skip(f"{ANIME} is absent")
    src = write_clip(tmp_path / "long.mp4", panned_frames(horse(), 480, 64, 48, step=1), fps=24)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "i2i.cli", "translate", str(src), "--model", str(ANIME), "--out",
                             str(out), "--batch-size", "2", "--preset", "ultrafast"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until frames are being written
        if out.is_dir() and any(p.stat().st_size > 20_000 for p in out.iterdir()):
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    partial = out / "long.partial.mp4"
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"i2i: interrupted: {partial} holds the first ") and line.endswith(
        " of 480 frames of long.mp4 (playable; run again for the whole clip)"), stderr
    frames = int(line.split(" holds the first ")[1].split()[0])
    assert 0 < frames < 480
    info = probe(partial)
    assert info.frames == frames and len(info.audio) == 1
    assert sorted(p.name for p in out.iterdir()) == ["long.partial.mp4"]


def test_serve_says_it_takes_no_videos(clip: Path) -> None:
    """`i2i serve` takes images: /v1/model says so, and a video upload is a 415 that names `i2i translate`."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from i2i_export.server import create_app, serve_in_thread

    g = identity()
    g.meta.i2i_version = "0.1.0"
    with serve_in_thread(create_app("identity", generator=g), port=0) as url, httpx.Client(base_url=url, timeout=60) as c:
        video = c.get("/v1/model").json()["video"]
        assert video["accepted"] is False and "i2i translate clip.mp4" in video["how"]
        said = ("this server translates images, not videos: translate a video with `i2i translate clip.mp4")
        r = c.post("/v1/translate", content=clip.read_bytes(), headers={"content-type": "video/mp4"})
        assert r.status_code == 415 and r.json()["error"].startswith(said)
        mkv = write_clip(clip.parent / "serve.mkv", panned_frames(horse(), 2, 32, 32), audio_hz=None)
        webm = write_clip(clip.parent / "serve.webm", panned_frames(horse(), 2, 32, 32), audio_hz=None,
                          codec="libvpx-vp9")
        ts = write_clip(clip.parent / "serve.ts", panned_frames(horse(), 2, 32, 32), audio_hz=None)
        for path in (clip, mkv, webm, ts):  # a clip sent as raw bytes, or as a form part typed as a video or not
            data = path.read_bytes()
            r = c.post("/v1/translate", content=data, headers={"content-type": "application/octet-stream"})
            assert (r.status_code, r.json()["error"][: len(said)]) == (415, said), path
            for part_type in ("video/mp4", "application/octet-stream"):
                r = c.post("/v1/translate", files={"image": (path.name, data, part_type)})
                assert (r.status_code, r.json()["error"][: len(said)]) == (415, said), (path, part_type)
        r = c.post("/v1/translate", files={"image": ("a.png", b"\x89PNG not really", "video/mp4")})
        assert r.status_code == 415  # the part says it is a video


def test_video_options_are_checked_before_any_work_and_stale_parts_of_any_container_go(clip: Path, tmp_path: Path) -> None:
    """A bad --preset/--crf is one line before an image of the same run is written; the Python API
    refuses a CRF x264 cannot take; a finished clip removes what an interrupted run left in another
    container; flicker() wants as many output frames as input frames."""
    from i2i.cli import cli
    from i2i.video import check_options, flicker

    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", horse()[:32, :32])
    (folder / "b.mp4").write_bytes(clip.read_bytes())
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["translate", str(folder), "--model", str(tmp_path / "none.onnx"), "--out", str(out),
                                   "--preset", "turbo"])
    assert res.exit_code != 0 and "--preset turbo: unknown preset for libx264" in res.output and not out.exists()
    res = CliRunner().invoke(cli, ["translate", str(folder / "a.png"), "--model", str(tmp_path / "none.onnx"),
                                   "--out", str(out), "--crf", "20"])
    assert "i2i: --crf is for videos; no video among the inputs" in res.output  # said, not silently ignored
    for bad in (99, 2.5, -1):
        with pytest.raises(I2IError, match=r"crf \(--crf\) is an integer from 0"):
            check_options(crf=bad)
    stale = tmp_path / "b.partial.mkv"
    stale.write_bytes(b"part")
    notes: list[str] = []
    translate_video(identity(), clip, tmp_path / "b.mp4", note=notes.append)
    assert not stale.exists() and any("removed b.partial.mkv" in n for n in notes), notes
    with pytest.raises(I2IError, match="5 input frames, 3 output frames"):
        flicker([np.zeros((2, 2, 3))] * 5, [np.zeros((2, 2, 3))] * 3)
