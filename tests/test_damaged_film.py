"""A film damaged in the middle (made here: ffmpeg, then bytes overwritten) is watched like VLC
plays it: what decodes is encoded, the broken part becomes a gap — in the status (timeline),
in answers' coverage, counted as seen for breakpoint questions after it, retried when the film
is reopened. A file nothing decodes from is still refused with a clear message."""

from __future__ import annotations

import json

import pytest
from cache_helpers import GREEDY, small_settings
from damaged_film_maker import SECONDS, make_damaged_film, ruin

from moviechat_desktop.cli import main
from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.errors import VideoDecodeError, VideoError

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """20 s at 25 fps, a keyframe every second; bytes 45-60 % overwritten (≈ 9-12 s)."""
    return make_damaged_film(tmp_path_factory.mktemp("damaged"))


def _assistant(reference_dir, **kw):
    return Assistant(settings=small_settings(n_fragments=10), model_dir=reference_dir, **kw)


def test_the_damaged_part_is_a_gap_and_the_rest_is_watched(reference_dir, damaged):
    assistant = _assistant(reference_dir)
    info = assistant.open(damaged)
    status = assistant.encode()
    assert status.finished
    assert 0 < status.fragments_done < status.fragments_total
    assert status.gaps, "the broken part is reported"
    (gap_start, gap_end), *_ = status.gaps
    assert 4.0 <= gap_start < gap_end <= 16.0
    for a, b in status.covered:  # what is in memory does not overlap the gaps
        assert b <= gap_start + 1e-6 or a >= status.gaps[-1][1] - 1e-6
    # a breakpoint after the gap is answered from the rest of the film
    after = status.gaps[-1][1] + 1.0
    assert assistant.covers(after)
    assert "".join(assistant.ask("What now?", "breakpoint", after, settings=GREEDY))
    assert assistant.last_answer.gaps == status.gaps
    # before the gap the answer has no gap to mention; the whole film mentions it
    "".join(assistant.ask("And before?", "breakpoint", 1.0, settings=GREEDY))
    assert assistant.last_answer.gaps == ()
    "".join(assistant.ask("What happens?", settings=GREEDY))
    assert assistant.last_answer.gaps == status.gaps
    assert info.duration_s == pytest.approx(SECONDS, abs=0.1)
    assistant.close()


def test_a_gap_is_tried_again_when_the_film_is_reopened(reference_dir, damaged):
    first = _assistant(reference_dir)
    first.open(damaged)
    done = first.encode()
    first.close()
    again = _assistant(reference_dir)
    again.open(damaged)  # the good fragments come back from the cache, the gap does not
    status = again.status()
    assert status.gaps == () and not status.finished
    assert status.fragments_done == done.fragments_done
    status = again.encode()
    assert status.finished and status.gaps == done.gaps  # tried, and still damaged
    again.close()


def test_a_file_nothing_decodes_from_is_still_refused(reference_dir, damaged, tmp_path):
    ruined = ruin(damaged, tmp_path / "ruined.mp4")
    assistant = _assistant(reference_dir)
    with pytest.raises(VideoError, match=r"damaged|truncated|cannot|incomplete"):
        assistant.open(ruined)
        assistant.encode()


def test_when_every_fragment_fails_the_error_is_clear(reference_dir, damaged, monkeypatch):
    from moviechat_desktop.engine.video.frames import FrameDecoder
    from moviechat_desktop.engine.video.reference_frames import ReferenceFrameReader

    def broken(self, indices):
        raise VideoDecodeError(f"'{self.path.name}' is damaged: the picture cannot be decoded.")

    monkeypatch.setattr(FrameDecoder, "decode", broken)  # exact frames
    monkeypatch.setattr(ReferenceFrameReader, "decode", broken)  # the default reader
    assistant = _assistant(reference_dir, use_cache=False)
    assistant.open(damaged)
    with pytest.raises(VideoDecodeError, match="none of its pictures can be decoded"):
        assistant.encode()


def test_the_cli_encodes_around_the_gap_and_says_so_once(capsys, reference_dir, damaged):
    from moviechat_desktop.engine.settings import save_settings

    save_settings(small_settings(n_fragments=10))  # the isolated user config of this test
    assert main(["encode", str(damaged), "--model-dir", str(reference_dir)]) == 0
    out, err = capsys.readouterr()
    notes = [line for line in (out + err).splitlines() if "could not be decoded" in line]
    assert len(notes) == 1, out + err
    assert main(
        ["ask", str(damaged), "What is this?", "--model-dir", str(reference_dir),
         "--max-new-tokens", "3", "--greedy", "--json"]
    ) == 0  # fmt: skip
    out, _ = capsys.readouterr()
    report = json.loads(out)
    assert report["gaps"] and all(len(g) == 2 for g in report["gaps"])


# --------------------------------------------------------------------------- the window
pytest_plugins = ["ui_fixtures"]  # make_main_window


def test_the_window_marks_the_gap_on_the_timeline_and_says_so(qtbot, make_main_window):
    from moviechat_desktop.engine.assistant import EncodeStatus
    from moviechat_desktop.ui.timeline_slider import GAP_COLOUR

    window = make_main_window()
    window.status.model_state = "ready"
    status = EncodeStatus(
        fragments_done=8, fragments_total=10, frames_done=64, frames_total=80,
        covered=((0.0, 8.0), (12.0, 20.0)), frames_per_s=0.0, duration_s=20.0,
        finished=True, gaps=((8.0, 12.0),),
    )  # fmt: skip
    window._encoding_progressed(status)
    slider = window.transport.slider
    assert slider.gaps == ((8.0, 12.0),)
    assert window.status.encoding_label.text() == (
        "Watched the film except 00:08–00:12 (damaged, skipped)"
    )
    slider.resize(400, 30)
    image = slider.grab().toImage()
    x = slider.x_of(10.0)
    column = {image.pixelColor(x, y).name() for y in range(image.height())}
    assert GAP_COLOUR.name() in column, "the gap is painted in red under the groove"
