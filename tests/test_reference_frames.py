"""The fast reader of the plan's frames (issue 16): the nearest reference picture per planned
frame, on a film shaped like a real one (long GOP, B-frames) made here with ffmpeg; the exact
setting keeps today's frames bit for bit; the cache key tells the two apart; damage still gives
the clear messages."""

from __future__ import annotations

import dataclasses
import re
import subprocess

import numpy as np
import pytest
import torch
from cache_helpers import small_settings

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.errors import VideoDecodeError
from moviechat_desktop.engine.model.movie_chat import MovieChatModel
from moviechat_desktop.engine.settings import SamplingSettings, load_settings
from moviechat_desktop.engine.store.fingerprint import sampling_identity
from moviechat_desktop.engine.video import reference_frames
from moviechat_desktop.engine.video.frames import FrameDecoder, normalize, probe
from moviechat_desktop.engine.video.plan_reader import open_plan_reader
from moviechat_desktop.engine.video.probe import open_reader
from moviechat_desktop.engine.video.reference_frames import ReferenceFrameReader
from moviechat_desktop.engine.video.sampling import frame_starts, plan_fragments

pytestmark = pytest.mark.timeout(300)

SIZE = 56
DAMAGED = r"'damaged\.mp4' is damaged: the picture at \d\d:\d\d\.\d cannot be decoded\."
MAX_MOVE = 2  # frames: x264 with 3 B-frames and B-pyramid has a reference at least every 2


def _ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, timeout=120)


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory):
    """20 s of 320x180 at 25 fps with camera-like noise: x264, keyframe at most every 250
    frames (no scene cuts), 3 B-frames with B-pyramid — a real film's shape, small."""
    path = tmp_path_factory.mktemp("long_gop") / "long_gop.mp4"
    _ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=20"),
        *("-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-preset", "veryfast"),
        *("-x264-params", "keyint=250:min-keyint=250:scenecut=0:bframes=3:b-pyramid=normal"),
        *("-pix_fmt", "yuv420p", path),
    )
    return path


def _diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def _every_frame(path) -> np.ndarray:
    """Every frame of ``path`` in display order, decoded in full by PyAV and scaled as the
    reader scales: the reference for "the picture is the frame it says it chose"."""
    import av
    from av.video.reformatter import VideoReformatter

    scaler = VideoReformatter()
    with av.open(str(path)) as container:
        decoded = [
            (f.pts, scaler.reformat(f, width=SIZE, height=SIZE, format="rgb24",
                                    interpolation="BILINEAR").to_ndarray())
            for f in container.decode(container.streams.video[0])
        ]  # fmt: skip
    return np.stack([picture for _, picture in sorted(decoded, key=lambda item: item[0])])


def _read_plan(path, info, plan):
    reader = ReferenceFrameReader(path, frame_starts(info), size=SIZE, threads=2)
    frames = [reader.decode_array(f.frame_indices) for f in plan.fragments]
    return reader, frames


def test_nearest_reference_pictures_are_distinct_near_and_close_to_the_exact_frames(long_gop):
    info = probe(long_gop)
    plan = plan_fragments(info, n_fragments=16)  # 128 frames, ~4 frames apart
    reader, frames = _read_plan(long_gop, info, plan)
    assert not reader.exact
    planned = [i for f in plan.fragments for i in f.frame_indices]
    assert len(reader.moves) == len(planned)
    assert max(abs(m) for m in reader.moves) <= MAX_MOVE, reader.moves
    assert any(m != 0 for m in reader.moves), "B-frames are skipped, so some frames move"
    chosen = [i + m for i, m in zip(planned, reader.moves, strict=True)]
    assert len(set(chosen)) == len(set(planned)) == len(planned)  # no two collapse
    got = np.concatenate(frames)
    assert got.shape == (len(planned), SIZE, SIZE, 3) and got.dtype == np.uint8
    # each picture is, bit for bit, the frame it says it chose (skipping B-frames changes no
    # reference picture) ...
    every = _every_frame(long_gop)
    assert len(every) == info.frame_count
    assert all(np.array_equal(a, every[k]) for a, k in zip(got, chosen, strict=True))
    # ... and close to the exact reader's planned frame (a frame of a noisy moving film apart,
    # scaled by another FFmpeg's swscale): measured 3.3 on average at 56 px
    exact = open_reader(long_gop, SIZE, num_threads=2).get_batch(planned).asnumpy()
    assert np.mean([_diff(a, b) for a, b in zip(got, exact, strict=True)]) < 6.0
    reader.close()


def test_the_decoder_skips_pictures_and_gops(long_gop):
    """Fewer pictures are decoded than the exact reader's decode-from-keyframe would: a plan
    with all its frames in the first half never decodes the second half."""
    info = probe(long_gop)
    plan = plan_fragments(info, n_fragments=16)
    reader = ReferenceFrameReader(long_gop, frame_starts(info), size=SIZE, threads=1)
    decoded = []
    original = reader._keep
    reader._keep = lambda frame: (decoded.append(frame.pts), original(frame))[1]
    for fragment in plan.fragments[:4]:  # the first 5 s of 20
        reader.decode_array(fragment.frame_indices)
    last_planned = plan.fragments[3].frame_indices[-1]
    assert len(decoded) < 0.75 * last_planned, "non-reference B-frames are not decoded"
    assert max(decoded) * reader._tb < 6.0, "nothing after the last planned frame's GOP part"


def test_any_order_and_repeats_give_the_same_pictures(long_gop):
    info = probe(long_gop)
    plan = plan_fragments(info, n_fragments=16)
    _, in_order = _read_plan(long_gop, info, plan)
    reader = ReferenceFrameReader(long_gop, frame_starts(info), size=SIZE, threads=2)
    for k in (9, 2, 15, 0):  # backwards and forwards: seeks
        assert np.array_equal(reader.decode_array(plan.fragments[k].frame_indices), in_order[k])
    twice = reader.decode_array([100, 100, 101])
    assert np.array_equal(twice[0], twice[1])
    with pytest.raises(IndexError):
        reader.decode_array([info.frame_count])
    reader.close()


def test_unfollowable_timestamps_fall_back_to_the_exact_frames(long_gop, monkeypatch, caplog):
    info = probe(long_gop)
    indices = plan_fragments(info, n_fragments=16).fragments[3].frame_indices
    monkeypatch.setattr(reference_frames, "_MAX_MOVE_S", -1.0)  # any picture is "too far"
    reader = ReferenceFrameReader(long_gop, frame_starts(info), size=SIZE)
    got = reader.decode_array(indices)
    assert reader.exact and "exact frames instead" in caplog.text
    expected = open_reader(long_gop, SIZE).get_batch(list(indices)).asnumpy()
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("clip", ["bikes_mp4", "vtest_avi", "bigbuckbunny"])
def test_real_clips_read_their_nearest_pictures(clip, request):
    path = request.getfixturevalue(clip)
    info = probe(path)
    plan = plan_fragments(info, n_fragments=16)
    reader, frames = _read_plan(path, info, plan)
    assert not reader.exact
    assert max(abs(m) for m in reader.moves) <= 3
    planned = [i for f in plan.fragments for i in f.frame_indices]
    chosen = [i + m for i, m in zip(planned, reader.moves, strict=True)]
    every = _every_frame(path)
    assert all(
        np.array_equal(a, every[k]) for a, k in zip(np.concatenate(frames), chosen, strict=True)
    )


def test_cache_key_tells_the_modes_apart_and_exact_keeps_the_old_key():
    fast, exact = SamplingSettings(), SamplingSettings(exact_frames=True)
    assert not load_settings().sampling.exact_frames  # the default is the fast reader
    assert sampling_identity(fast) != sampling_identity(exact)
    assert sampling_identity(fast)["frames"]["reader"] == "nearest-reference"
    # exact frames keep the key every cache had before the choice existed
    assert sampling_identity(exact) == {"plan": "fragments", "frames_per_fragment": 8,
                                        "n_fragments": 128}  # fmt: skip


def _encoded_pixels(reference_dir, path, exact: bool, monkeypatch) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    original = MovieChatModel.encode_frames

    def recording(model, pixels, *args, **kwargs):
        seen.append(pixels.clone())
        return original(model, pixels, *args, **kwargs)

    monkeypatch.setattr(MovieChatModel, "encode_frames", recording)
    settings = small_settings(n_fragments=4)
    settings.sampling = dataclasses.replace(settings.sampling, exact_frames=exact)
    assistant = Assistant(settings, model_dir=reference_dir, use_cache=False, keep_history=False)
    assistant.open(path)
    assistant.encode()
    assistant.close()
    monkeypatch.setattr(MovieChatModel, "encode_frames", original)
    return torch.cat(seen)


def test_exact_setting_encodes_todays_frames_bit_for_bit(reference_dir, long_gop, monkeypatch):
    info = probe(long_gop)
    plan = plan_fragments(info, n_fragments=4)
    exact = _encoded_pixels(reference_dir, long_gop, True, monkeypatch)
    size = exact.shape[-1]
    with FrameDecoder(long_gop, size=size) as decoder:  # today's reader, as before the choice
        today = torch.cat([normalize(decoder.decode(f.frame_indices)) for f in plan.fragments])
    assert torch.equal(exact, today)
    fast = _encoded_pixels(reference_dir, long_gop, False, monkeypatch)
    assert fast.shape == exact.shape and not torch.equal(fast, exact)
    assert (fast - exact).abs().mean() < 0.2  # close: neighbouring pictures
    assert isinstance(open_plan_reader(info, size, exact=True), FrameDecoder)
    assert isinstance(open_plan_reader(info, size, exact=False), ReferenceFrameReader)


def test_a_damaged_middle_names_the_time_and_the_rest_reads(tmp_path, make_video):
    whole = make_video("to_damage.mp4", seconds=20, size="320x180")  # a keyframe every second
    data = bytearray(whole.read_bytes())
    lo, hi = int(len(data) * 0.45), int(len(data) * 0.60)
    data[lo:hi] = bytes((i * 37 + 11) & 0xFF for i in range(hi - lo))
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    info = probe(path)
    plan = plan_fragments(info, n_fragments=10)
    reader = ReferenceFrameReader(path, frame_starts(info), size=SIZE)
    failed, read = [], []
    for fragment in plan.fragments:
        try:
            reader.decode_array(fragment.frame_indices)
            read.append(fragment.index)
        except VideoDecodeError as err:
            failed.append((fragment.index, str(err)))
    assert failed and read, (failed, read)
    assert all(re.fullmatch(DAMAGED, m) for _, m in failed), failed
    # the exact reader gives up on the same fragments
    with FrameDecoder(path, size=SIZE) as exact:
        exact_failed = []
        for fragment in plan.fragments:
            try:
                exact.decode(fragment.frame_indices)
            except VideoDecodeError:
                exact_failed.append(fragment.index)
    assert [i for i, _ in failed] == exact_failed


def test_a_rotated_film_is_turned_as_the_exact_reader_turns_it(long_gop, tmp_path):
    rotated = tmp_path / "rotated.mp4"
    try:
        _ffmpeg("-display_rotation", 90, "-i", long_gop, "-c", "copy", rotated)
    except subprocess.CalledProcessError:
        _ffmpeg("-i", long_gop, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated)
    info = probe(rotated)
    assert info.rotation in (90, 270)
    indices = plan_fragments(info, n_fragments=16).fragments[2].frame_indices
    reader = ReferenceFrameReader(rotated, frame_starts(info), SIZE, rotation=info.rotation)
    got = reader.decode_array(indices)
    chosen = [i + m for i, m in zip(indices, reader.moves, strict=True)]
    every = _every_frame(long_gop)[chosen]  # upright
    turned = np.stack([np.rot90(f, k=-(info.rotation // 90)) for f in every])
    assert np.array_equal(got, turned)
    # decord turns the full picture, then squashes it: at 56 px that differs by ~10 levels on
    # this sharp pattern (decord's own two orders differ as much); unturned, by ~120
    exact = open_reader(rotated, SIZE).get_batch(list(indices)).asnumpy()
    assert _diff(got, exact) < 0.2 * _diff(got, every)


def test_the_server_keys_a_clients_frames_by_what_the_client_decoded():
    from moviechat_desktop.service import remote_wire

    fast = remote_wire.sampling_to_wire(SamplingSettings())
    assert remote_wire.sampling_from_wire(fast).exact_frames is False
    older = {k: v for k, v in fast.items() if k != "exact_frames"}  # a client from before
    assert remote_wire.sampling_from_wire(older).exact_frames is True
