"""bench/decode_limit.py on a small clip with a keyframe every 25 frames and B-frames: the plan's
frames fall in the GOPs it counts, the limit decodes no more than the film holds and at least
one frame per needed GOP, and decoding from a GOP's keyframe with only reference frames reaches
the last planned frame; bench/real_films.py refuses a non-positive length (exit 2)."""

from __future__ import annotations

import pytest

from bench import decode_limit, real_films


@pytest.fixture(scope="module")
def clip(make_video):
    # 6 s at 25 fps: 150 frames, keyframes at 0, 25, 50, ... (-g 25, no scene cuts), B-frames
    return make_video("gops.mp4", seconds=6, extra=("-sc_threshold", "0", "-bf", "2"))


def test_the_limit_counts_only_the_gops_the_plan_needs(clip):
    plan = decode_limit.plan_indices(clip, fragments=2)
    flat = [i for f in plan for i in f]
    whole = decode_limit.decode_limit(clip, flat, threads=1)
    assert whole["film_frames"] == 150 and whole["film_keyframes"] == 6
    expected_gops = len({i // 25 for i in flat})
    assert whole["limit_gops"] == expected_gops
    assert expected_gops <= whole["limit_frames_decoded"] <= whole["film_frames"]
    # one frame in the first GOP: its keyframe alone
    first = decode_limit.decode_limit(clip, [0], threads=1)
    assert (first["limit_gops"], first["limit_frames_decoded"]) == (1, 1)
    # the last frame of the 2nd GOP: from its keyframe, without the non-reference B-frames
    late = decode_limit.decode_limit(clip, [49], threads=1)
    assert late["limit_gops"] == 1 and 1 < late["limit_frames_decoded"] < 25


def test_real_films_refuses_a_non_positive_length(capsys):
    with pytest.raises(SystemExit) as exit_info:
        real_films.main(["1080p", "--seconds", "0"])
    assert exit_info.value.code == 2
    assert "--seconds must be at least 1" in capsys.readouterr().err


def test_our_reader_row_counts_every_planned_frame_and_how_far_it_moved(clip):
    plan = decode_limit.plan_indices(clip, fragments=2)
    row = decode_limit.our_reader(clip, plan, threads=1)
    assert row["reader_s"] > 0 and row["reader_exact_fallback"] == 0.0
    counted = row["moved_0"] + row["moved_1"] + row["moved_2"] + row["moved_3_or_more"]
    assert counted == sum(len(f) for f in plan)
    assert row["moved_max"] <= 2  # two B-frames between references at most
    assert decode_limit.moved([0, -1, 1, 3, -5]) == {
        "moved_0": 1.0, "moved_1": 2.0, "moved_2": 0.0, "moved_3_or_more": 2.0, "moved_max": 5.0
    }  # fmt: skip


@pytest.mark.parametrize(
    "argv", [["4k", "--loop", "5"], ["1080p", "--seconds", "90", "--loop", "60"]]
)
def test_real_films_refuses_a_loop_it_cannot_make(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        real_films.main(argv)
    assert exit_info.value.code == 2
    assert "--loop" in capsys.readouterr().err
