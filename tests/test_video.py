"""Video input: probe, sampling plans, decoding, the exact frame at t, and bad files.

Expected values come from ffprobe / ffmpeg run here (an independent decoder), never from
numbers typed into the test.
"""

import io
import json
import os
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from moviechat_desktop.engine.errors import VideoDecodeError, VideoError
from moviechat_desktop.engine.video import ffprobe
from moviechat_desktop.engine.video import probe as video_probe
from moviechat_desktop.engine.video.frames import (
    FrameDecoder,
    VideoInfo,
    frame_at,
    normalize,
    plan_fps,
    plan_fragments,
    preprocess_image,
    probe,
)

SIZE = 56  # the tiny reference model's image size
TIME_IN_MESSAGE = re.compile(r"\d+:\d\d\.\d")


# --------------------------------------------------------------------------- independent tools
def run_ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def ffprobe_json(path, *args):
    out = subprocess.run(
        ["ffprobe", "-v", "error", *args, "-of", "json", str(path)],
        capture_output=True,
        check=True,
    ).stdout
    return json.loads(out)


def ffprobe_video(path):
    entries = "stream=codec_name,width,height,avg_frame_rate,duration,nb_read_packets"
    args = ["-select_streams", "v:0", "-count_packets", "-show_entries", entries]
    return ffprobe_json(path, *args)["streams"][0]


def ffprobe_has_audio(path):
    streams = ffprobe_json(path, "-show_entries", "stream=codec_type")["streams"]
    return any(s["codec_type"] == "audio" for s in streams)


def ffprobe_frame_starts(path):
    packets = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "packet=pts_time")
    starts = np.sort([float(p["pts_time"]) for p in packets["packets"]])
    return starts - starts[0]


def ffprobe_rotation(path):
    """Clockwise display rotation from the display matrix (ffprobe reports it CCW)."""
    stream = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "stream_side_data")
    sides = stream["streams"][0].get("side_data_list", [])
    return round(-float(sides[0].get("rotation", 0)) if sides else 0) % 360


def ffmpeg_frame(path, k, size=None):
    """Frame k as ffmpeg shows it (auto-rotated), optionally squashed to size x size."""
    chain = f"select=eq(n\\,{k})" + (f",scale={size}:{size}" if size else "")
    png = subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-i", str(path), "-vf", chain, "-frames:v", "1"),
            *("-f", "image2pipe", "-vcodec", "png", "-"),
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def shown_at(starts, t):
    return int(np.searchsorted(starts, t + 1e-6, side="right")) - 1


def mean_abs(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean())


REAL_CLIPS = ["bigbuckbunny", "bikes_mp4", "vtest_avi"]


@pytest.fixture(params=REAL_CLIPS)
def real_clip(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("video_cases")


# --------------------------------------------------------------------------- probe
def test_probe_matches_ffprobe(real_clip):
    info = probe(real_clip)
    stream = ffprobe_video(real_clip)
    assert info.path == Path(os.path.abspath(real_clip))
    assert (info.width, info.height) == (stream["width"], stream["height"])
    assert info.frame_count == int(stream["nb_read_packets"])
    assert info.duration_s == pytest.approx(float(stream["duration"]), abs=1e-3)
    assert info.fps == pytest.approx(float(Fraction(stream["avg_frame_rate"])), rel=1e-6)
    assert info.codec == stream["codec_name"]
    assert info.has_audio is ffprobe_has_audio(real_clip)
    assert info.rotation == ffprobe_rotation(real_clip)
    assert np.allclose(info.frame_times_s, ffprobe_frame_starts(real_clip), atol=1e-3)
    assert probe(str(real_clip)) == info  # str or Path; a frozen, comparable value


def test_probe_without_ffprobe_cannot_tell_audio(bigbuckbunny, monkeypatch):
    with_ffprobe = probe(bigbuckbunny)
    monkeypatch.setattr(ffprobe, "ffprobe_executable", lambda: None)
    without = probe(bigbuckbunny)
    assert with_ffprobe.has_audio is True
    assert without.has_audio is None
    for name in ("duration_s", "fps", "frame_count", "width", "height", "rotation"):
        assert getattr(without, name) == getattr(with_ffprobe, name)
    assert without.codec  # opencv's fourcc stands in for ffprobe's codec name


# --------------------------------------------------------------------------- sampling plans
def test_default_plan_is_128_fragments_of_8(real_clip):
    info = probe(real_clip)
    plan = plan_fragments(info)
    assert plan.kind == "fragments"
    assert len(plan.fragments) == 128
    assert plan.total_frames == 1024
    assert [f.index for f in plan.fragments] == list(range(128))
    assert plan.fragments[0].start_s == 0
    assert plan.fragments[-1].end_s == pytest.approx(info.duration_s)
    for before, after in zip(plan.fragments, plan.fragments[1:], strict=False):
        assert before.end_s == pytest.approx(after.start_s)
    indices = np.concatenate([f.frame_indices for f in plan.fragments])
    stamps = np.concatenate([f.timestamps for f in plan.fragments])
    assert np.all(np.diff(indices) >= 0) and indices.min() >= 0 and indices.max() < info.frame_count
    assert np.all(np.diff(stamps) >= 0)
    assert stamps.min() >= 0 and stamps.max() < info.duration_s
    starts = ffprobe_frame_starts(real_clip)
    assert np.allclose(stamps, starts[indices], atol=1e-3)
    for f in plan.fragments:  # each sample is on screen during its fragment
        assert len(f.frame_indices) == 8
        assert all(f.start_s - 1 / info.fps - 1e-3 <= t < f.end_s for t in f.timestamps)


def test_plan_uses_the_originals_arange_rule(make_video):
    path = make_video("arange_rule.mp4", seconds=3, fps=25)  # 18.75 frames per fragment
    info = probe(path)
    starts = ffprobe_frame_starts(path)
    length = float(ffprobe_video(path)["duration"])
    for per_fragment in (8, 6):
        plan = plan_fragments(info, n_fragments=4, frames_per_fragment=per_fragment)
        for i, fragment in enumerate(plan.fragments):
            inside = np.flatnonzero((starts >= i * length / 4) & (starts < (i + 1) * length / 4))
            first, vlen = inside[0], len(inside)
            if per_fragment == 8:  # the original's expression, verbatim
                expected = first + np.arange(0, vlen, vlen / 8).astype(int)
            else:
                expected = first + np.floor(np.arange(per_fragment) * vlen / per_fragment)
            assert list(fragment.frame_indices) == expected.astype(int).tolist()


def test_plan_for_a_hand_made_constant_rate_info():
    info = VideoInfo(Path("film.mp4"), 10.0, 25.0, 250, 64, 48, 0, None, None)
    plan = plan_fragments(info)
    for i, fragment in enumerate(plan.fragments):
        first = -(-i * 250 // 128)  # frames k with k/25 >= i*10/128, in integers
        vlen = -(-(i + 1) * 250 // 128) - first
        expected = first + np.arange(0, vlen, vlen / 8).astype(int)
        assert list(fragment.frame_indices) == expected.tolist()
        assert fragment.timestamps == pytest.approx([k / 25 for k in expected])


def test_short_film_keeps_128_fragments(bigbuckbunny):
    info = probe(bigbuckbunny)
    assert info.frame_count < 128 * 8
    plan = plan_fragments(info)
    assert len(plan.fragments) == 128 and plan.total_frames == 1024
    used = set(np.concatenate([f.frame_indices for f in plan.fragments]).tolist())
    assert used == set(range(info.frame_count))  # every frame is seen, none is skipped


def test_plan_fps_samples_the_frame_on_screen(bikes_mp4):
    info = probe(bikes_mp4)
    starts = ffprobe_frame_starts(bikes_mp4)
    plan = plan_fps(info, fps=2.0, frames_per_fragment=8)
    assert plan.kind == "fps"
    n_samples = int(np.ceil(info.duration_s * 2))
    assert len(plan.fragments) == -(-n_samples // 8)
    assert all(len(f.frame_indices) == 8 for f in plan.fragments)
    flat = [i for f in plan.fragments for i in f.frame_indices]
    assert flat[:n_samples] == [shown_at(starts, k / 2) for k in range(n_samples)]
    assert set(flat[n_samples:]) <= {flat[n_samples - 1]}  # the last fragment is padded
    assert plan.fragments[1].start_s == pytest.approx(4.0)
    assert plan.fragments[-1].end_s == pytest.approx(info.duration_s)


def test_fragment_at(vtest_avi):
    info = probe(vtest_avi)
    for plan in (plan_fragments(info), plan_fps(info, fps=1.0)):
        for t in np.linspace(0, info.duration_s, 37, endpoint=False):
            fragment = plan.fragment_at(t)
            assert fragment.start_s <= t < fragment.end_s
        assert plan.fragment_at(-3.0) is plan.fragments[0]
        assert plan.fragment_at(info.duration_s) is plan.fragments[-1]
        assert plan.fragment_at(info.duration_s + 60) is plan.fragments[-1]


# --------------------------------------------------------------------------- decoding
def test_decoder_shapes_and_pixels(real_clip):
    info = probe(real_clip)
    fragment = plan_fragments(info).fragments[64]
    with FrameDecoder(real_clip, size=SIZE) as decoder:
        frames = decoder.decode(fragment.frame_indices)
        assert frames.shape == (8, SIZE, SIZE, 3) and frames.dtype == torch.uint8
        reference = ffmpeg_frame(real_clip, fragment.frame_indices[0], SIZE)
        assert mean_abs(frames[0], reference) < 6  # two scalers, same picture
        assert decoder.decode([]).shape == (0, SIZE, SIZE, 3)
        with pytest.raises(IndexError):
            decoder.decode([info.frame_count])
    assert decoder.closed
    with pytest.raises(ValueError, match="closed"):
        decoder.decode([0])


def test_decoder_default_size_feeds_normalize(bikes_mp4):
    decoder = FrameDecoder(bikes_mp4)
    frames = decoder.decode([0, 0, 10])
    decoder.close()
    assert frames.shape == (3, 224, 224, 3)
    assert torch.equal(frames[0], frames[1])
    assert normalize(frames).shape == (3, 3, 224, 224)


def test_frame_at_is_the_frame_on_screen(real_clip):
    info = probe(real_clip)
    t = info.duration_s * 0.4
    k = shown_at(ffprobe_frame_starts(real_clip), t)
    out = frame_at(real_clip, t, SIZE)
    assert out.shape == (1, 3, SIZE, SIZE) and out.dtype == torch.float32
    full_size = ffmpeg_frame(real_clip, k)
    assert full_size.shape[:2] == (info.height, info.width)
    assert mean_abs(out[0], preprocess_image(full_size, SIZE)) < 0.05
    with FrameDecoder(real_clip, size=SIZE) as decoder:  # what the memory saw at that time
        assert mean_abs(out[0], normalize(decoder.decode([k]))[0]) < 0.15


def test_frame_at_picks_the_right_neighbour(make_video):
    path = make_video("moving.mp4", seconds=2, size="160x90", fps=25)
    starts = ffprobe_frame_starts(path)
    with FrameDecoder(path, size=SIZE) as decoder:
        for t in (0.5, 1.01, 1.39):
            k = shown_at(starts, t)
            candidates = normalize(decoder.decode([k - 1, k, k + 1]))
            out = frame_at(path, t, SIZE)[0]
            diffs = [mean_abs(out, c) for c in candidates]
            assert int(np.argmin(diffs)) == 1, diffs


def test_frame_at_outside_the_film(bikes_mp4):
    info = probe(bikes_mp4)
    for t in (-1.0, info.duration_s + 30, float("nan")):
        with pytest.raises(VideoError, match="outside"):
            frame_at(bikes_mp4, t, SIZE)
    last = frame_at(bikes_mp4, info.duration_s + 0.2, SIZE)  # the player's end: last frame
    with FrameDecoder(bikes_mp4, size=SIZE) as decoder:
        assert mean_abs(last[0], normalize(decoder.decode([info.frame_count - 1]))[0]) < 0.15


# --------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        probe(tmp_path / "nope.mp4")


def test_directory(tmp_path):
    with pytest.raises(VideoError, match="folder"):
        probe(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        probe(tmp_path / "empty.mp4")


def test_unreadable_file(bikes_mp4, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(video_probe, "open", refuse, raising=False)
    with pytest.raises(VideoError, match="permission denied"):
        probe(bikes_mp4)


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("This is not a film.\n" * 200)
    with pytest.raises(VideoError, match="text file"):
        probe(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.mkv"
    path.write_bytes(np.random.default_rng(7).bytes(60_000))
    with pytest.raises(VideoError, match="not a video"):
        probe(path)


@pytest.mark.parametrize("name", ["tone.m4a", "tone.mp4"])
def test_audio_only(make_video, name):
    path = make_video(name, seconds=1, audio_only=True)
    with pytest.raises(VideoError, match="only audio"):
        probe(path)


def test_audio_only_without_ffprobe(make_video, monkeypatch):
    path = make_video("tone.m4a", seconds=1, audio_only=True)
    monkeypatch.setattr(ffprobe, "ffprobe_executable", lambda: None)
    with pytest.raises(VideoError, match=r"no video stream.*audio"):
        probe(path)


@pytest.mark.parametrize(
    ("name", "message"), [("none.avi", "no video frames"), ("none.mp4", "no video")]
)
def test_zero_frames(make_video, name, message):
    path = make_video(name, seconds=1, extra=("-frames:v", "0"))
    with pytest.raises(VideoError, match=message):
        probe(path)


@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_mp4(make_video, clip_dir, faststart):
    extra = ("-movflags", "+faststart") if faststart else ()
    whole = make_video(f"whole_{faststart}.mp4", seconds=2, extra=extra)
    cut = clip_dir / f"cut_{faststart}.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match=r"truncated|incomplete"):
        probe(cut)


def test_corrupted_middle(make_video, clip_dir):
    whole = make_video(
        "to_corrupt.mp4", seconds=4, size="320x180", extra=("-movflags", "+faststart")
    )
    data = bytearray(whole.read_bytes())
    lo, hi = int(len(data) * 0.35), int(len(data) * 0.55)
    data[lo:hi] = np.random.default_rng(3).bytes(hi - lo)
    path = clip_dir / "corrupt_middle.mp4"
    path.write_bytes(bytes(data))
    info = probe(path)  # the first and the last frame still decode
    with FrameDecoder(path, size=SIZE) as decoder, pytest.raises(VideoDecodeError) as caught:
        for fragment in plan_fragments(info, n_fragments=16).fragments:
            decoder.decode(fragment.frame_indices)
    message = str(caught.value)
    assert "damaged" in message and TIME_IN_MESSAGE.search(message), message


def test_variable_frame_rate(clip_dir):
    path = clip_dir / "vfr.mp4"
    run_ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10:duration=2"),
        *("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30:duration=2"),
        *("-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]"),
        *("-fps_mode", "passthrough", "-g", "25", "-pix_fmt", "yuv420p", path),
    )
    starts = ffprobe_frame_starts(path)
    assert len(set(np.round(np.diff(starts), 3))) > 1  # really variable
    info = probe(path)
    assert info.frame_count == len(starts)
    assert np.allclose(info.frame_times_s, starts, atol=1e-3)
    assert starts[-1] < info.duration_s <= starts[-1] + 0.1
    plan = plan_fragments(info, n_fragments=4)
    for fragment in plan.fragments:  # timestamps, not frame_count / fps
        assert all(fragment.start_s <= t < fragment.end_s for t in fragment.timestamps)
        inside = np.flatnonzero((starts >= fragment.start_s) & (starts < fragment.end_s))
        assert set(fragment.frame_indices) <= set(inside.tolist())
    t = 2.55  # in the 30 fps part
    k = shown_at(starts, t)
    with FrameDecoder(path, size=SIZE) as decoder:
        candidates = normalize(decoder.decode([k - 1, k, k + 1]))
    diffs = [mean_abs(frame_at(path, t, SIZE)[0], c) for c in candidates]
    assert int(np.argmin(diffs)) == 1, diffs


def _rotate(src, dst, degrees):
    """Stream-copy src with a display rotation (option name depends on the ffmpeg version)."""
    try:
        run_ffmpeg("-display_rotation", degrees, "-i", src, "-c", "copy", dst)
    except subprocess.CalledProcessError:
        run_ffmpeg("-i", src, "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", dst)


def test_rotation_metadata_is_applied_as_displayed(make_video, clip_dir):
    upright = make_video("upright.mp4", seconds=1, size="160x90")
    rotated = clip_dir / "rotated.mp4"
    _rotate(upright, rotated, 90)
    expected_rotation = ffprobe_rotation(rotated)
    assert expected_rotation in (90, 270)
    info = probe(rotated)
    assert info.rotation == expected_rotation
    assert (info.width, info.height) == (90, 160)
    shown = ffmpeg_frame(rotated, 0, SIZE)  # ffmpeg auto-rotates like a player
    with FrameDecoder(rotated, size=SIZE) as turned, FrameDecoder(upright, size=SIZE) as plain:
        frame, unturned = turned.decode([0])[0], plain.decode([0])[0]
    assert mean_abs(frame, shown) < 6
    assert mean_abs(unturned, shown) > 4 * mean_abs(frame, shown)
    assert mean_abs(frame_at(rotated, 0.0, SIZE)[0], normalize(frame[None])[0]) < 0.15


def test_unicode_and_spaces_in_path(make_video, clip_dir):
    path = clip_dir / "Film à l'été 2.mp4"
    path.write_bytes(make_video("plain_name.mp4", seconds=1).read_bytes())
    info = probe(path)
    assert info.path.name == "Film à l'été 2.mp4"
    assert info.frame_count == int(ffprobe_video(path)["nb_read_packets"])
    with FrameDecoder(path, size=SIZE) as decoder:
        assert decoder.decode([0, info.frame_count - 1]).shape == (2, SIZE, SIZE, 3)
    assert frame_at(path, 0.5, SIZE).shape == (1, 3, SIZE, SIZE)


def test_8k_video_works(clip_dir):
    path = clip_dir / "8k.mp4"
    run_ffmpeg(
        *("-f", "lavfi", "-i", "color=c=0x3366cc:size=7680x4320:rate=2:duration=1"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", path),
    )
    info = probe(path)
    assert (info.width, info.height) == (7680, 4320)
    assert plan_fragments(info).total_frames == 1024
    with FrameDecoder(path, size=SIZE) as decoder:
        frames = decoder.decode([0, info.frame_count - 1])
    solid = np.full((SIZE, SIZE, 3), (0x33, 0x66, 0xCC), np.uint8)
    assert mean_abs(frames[0], solid) < 3  # yuv420 round trip of a flat colour
    assert mean_abs(frame_at(path, 0.7, SIZE)[0], preprocess_image(solid, SIZE)) < 0.05


def test_absurd_resolution_is_refused(clip_dir):
    path = clip_dir / "strip.mkv"  # 17000 px wide: past any real format, still a tiny file
    run_ffmpeg(
        "-f", "lavfi", "-i", "color=c=red:size=17000x16:rate=2:duration=1", "-c:v", "ffv1", path
    )
    with pytest.raises(VideoError, match="17000x16 pixels"):
        probe(path)
