"""The breakpoint reader is opened in the background when a film opens (issue 16 item 3): the
first breakpoint question finds it open, frames are the exact ones a synchronous reader gives,
errors reach the question, and closing while it opens is clean."""

from __future__ import annotations

import threading

import pytest
import torch
from cache_helpers import GREEDY, small_settings

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.errors import VideoError
from moviechat_desktop.engine.video import frames
from moviechat_desktop.engine.video.frames import FrameGrabber
from moviechat_desktop.engine.video.grabber_opener import GrabberOpener


@pytest.fixture(scope="module")
def clip(make_video):
    return make_video("breakpoint.mp4", seconds=3)


def test_the_opened_reader_grabs_the_same_frames(vtest_avi):
    opener = GrabberOpener(vtest_avi)
    grabber = opener.get()
    assert opener.ready
    with FrameGrabber(vtest_avi) as direct:
        for t in (0.0, 12.34, 60.0):
            assert torch.equal(grabber.grab(t), direct.grab(t))
    assert opener.get() is grabber, "one reader per film"
    opener.close()
    with pytest.raises(ValueError, match="closed"):
        opener.get()


def test_an_unreadable_file_fails_the_question_not_the_opening(tmp_path):
    bad = tmp_path / "not a film.mp4"
    bad.write_bytes(b"\x00" * 4096)
    opener = GrabberOpener(bad)  # never raises here
    with pytest.raises(VideoError):
        opener.get()
    opener.close()


def test_closing_while_it_opens_closes_the_reader(vtest_avi, monkeypatch):
    release, made = threading.Event(), []
    real_init = FrameGrabber.__init__

    def slow_init(self, path):
        release.wait(10)
        real_init(self, path)
        made.append(self)

    monkeypatch.setattr(FrameGrabber, "__init__", slow_init)
    opener = GrabberOpener(vtest_avi)
    opener.close()  # before the reader exists
    release.set()
    opener._thread.join(10)
    assert made and made[0]._reader is None, "the late reader was closed"


def test_the_first_breakpoint_question_uses_the_reader_opened_with_the_film(
    reference_dir, clip, monkeypatch
):
    opened_in: list[str] = []
    real_init = FrameGrabber.__init__

    def recording_init(self, path):
        opened_in.append(threading.current_thread().name)
        real_init(self, path)

    monkeypatch.setattr(frames.FrameGrabber, "__init__", recording_init)
    assistant = Assistant(settings=small_settings(4), model_dir=reference_dir)
    assistant.open(clip)
    assistant._grabber._thread.join(30)
    assert opened_in == ["moviechat-grabber-open"], "opened with the film, in the background"
    while not assistant.covers(1.5):
        assistant.encode_step()
    answer = "".join(assistant.ask("What is here?", "breakpoint", at_s=1.5, settings=GREEDY))
    assert isinstance(answer, str)
    assert opened_in == ["moviechat-grabber-open"], "no second reader for the question"
    assert assistant.last_answer.timings["current_frame_s"] > 0
    assistant.close()
    assert assistant._grabber is None
