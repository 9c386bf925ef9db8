"""The breakpoint picture prepared when the player pauses (issue 16 item 3): the question that
follows uses it instead of decoding and encoding the picture again, and answers exactly as
without it; another frame, another film or another model is not served a stale picture."""

from __future__ import annotations

import pytest
from cache_helpers import GREEDY, small_settings

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.errors import VideoError
from moviechat_desktop.engine.video.frames import FrameGrabber

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def grabs(monkeypatch):
    """Every picture the breakpoint reader decodes, by frame index."""
    seen: list[int] = []
    real = FrameGrabber.grab_index

    def counting(self, index, size=224, t_s=None):
        seen.append(index)
        return real(self, index, size, t_s)

    monkeypatch.setattr(FrameGrabber, "grab_index", counting)
    return seen


def _ready(reference_dir, clip) -> Assistant:
    # no chat history: each answer follows no earlier turn, so answers compare
    assistant = Assistant(
        settings=small_settings(n_fragments=4), model_dir=reference_dir, keep_history=False
    )
    assistant.open(clip)
    assistant.load_model()
    assistant.encode()
    return assistant


def _answer(assistant: Assistant, at_s: float) -> str:
    return "".join(assistant.ask("What is on screen?", "breakpoint", at_s, settings=GREEDY))


def test_a_prepared_picture_is_used_and_the_answer_is_the_same(reference_dir, bikes_mp4, grabs):
    plain = _ready(reference_dir, bikes_mp4)
    expected = _answer(plain, 4.3)
    expected_timings = plain.last_answer.timings
    plain.close()
    assert len(grabs) == 1 and "current_frame_s" in expected_timings

    assistant = _ready(reference_dir, bikes_mp4)
    assert assistant.prepare_breakpoint(4.3) is True
    assert len(grabs) == 2  # decoded when the player paused
    assert _answer(assistant, 4.3) == expected
    assert len(grabs) == 2, "the question did not decode the picture again"
    # the same frame asked again (a second question at the same pause): still no decoding
    _answer(assistant, 4.3)
    assert len(grabs) == 2
    assistant.close()


def test_another_frame_film_or_model_decodes_again(reference_dir, bikes_mp4, grabs):
    assistant = _ready(reference_dir, bikes_mp4)
    assistant.prepare_breakpoint(2.0)
    _answer(assistant, 6.0)  # another moment: its own picture
    assert len(grabs) == 2 and grabs[0] != grabs[1]
    # a reloaded model (settings changed) never gets the old model's encoding
    assistant.prepare_breakpoint(6.0)
    assert len(grabs) == 2  # already the prepared frame
    assistant._model = None
    assistant.load_model()
    _answer(assistant, 6.0)
    assert len(grabs) == 3
    # the film reopened: nothing prepared survives close()
    assistant.open(bikes_mp4)
    assistant.encode()
    _answer(assistant, 6.0)
    assert len(grabs) == 4
    assistant.close()


def test_nothing_to_prepare_and_bad_times(reference_dir, bikes_mp4):
    assistant = Assistant(settings=small_settings(n_fragments=4), model_dir=reference_dir)
    assert assistant.prepare_breakpoint(1.0) is False  # no film
    assistant.open(bikes_mp4)
    assert assistant.prepare_breakpoint(1.0) is False  # no model yet
    assistant.load_model()
    with pytest.raises(VideoError, match="outside the film"):
        assistant.prepare_breakpoint(10_000.0)
    assistant.close()
