"""The assistant facade with the tiny reference model on real clips: the path GUI and CLI share."""

import pytest

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.errors import Cancelled, MovieChatError, NotReady, VideoError
from moviechat_desktop.engine.model.llm import GenerationSettings
from moviechat_desktop.engine.progress import CancelToken

GREEDY = GenerationSettings(greedy=True, max_new_tokens=8)


@pytest.fixture(scope="module")
def loaded(reference_dir):
    assistant = Assistant(model_dir=reference_dir)
    assistant.load_model()
    return assistant


def test_nothing_encoded_yet_is_a_clear_refusal(loaded, bigbuckbunny):
    loaded.open(bigbuckbunny)
    with pytest.raises(NotReady, match="nothing of the film has been encoded"):
        list(loaded.ask("What happens?", settings=GREEDY))
    assert not loaded.covers(0.0)


def test_encode_steps_cover_the_film_in_order(loaded, bigbuckbunny):
    info = loaded.open(bigbuckbunny)
    status = loaded.status()
    assert (status.fragments_done, status.fragments_total) == (0, 128)
    assert status.frames_total == 128 * 8
    status = loaded.encode_step()
    assert status.fragments_done == 1
    assert status.covered[0][0] == 0.0
    assert 0 < status.covered[0][1] < info.duration_s
    seen = [status.fragments_done]
    status = loaded.encode(on_progress=lambda s: seen.append(s.fragments_done))
    assert status.finished
    assert seen == list(range(1, 129))
    assert len(status.covered) == 1
    assert status.covered[0][1] == pytest.approx(info.duration_s, abs=0.05)
    assert status.frames_per_s > 0


def test_global_and_breakpoint_answers(loaded, vtest_avi):
    info = loaded.open(vtest_avi)
    plan = loaded._plan
    at = 30.0
    k = plan.fragment_at(at).index
    while not loaded.covers(at):
        loaded.encode_step()
    # exactly the fragments up to the breakpoint's were needed
    assert loaded.status().fragments_done == k + 1
    with pytest.raises(NotReady, match=r"has not watched up to 01:00\.0 yet"):
        list(loaded.ask("And now?", mode="breakpoint", at_s=60.0, settings=GREEDY))

    answer = "".join(loaded.ask("What is he holding?", "breakpoint", at_s=at, settings=GREEDY))
    assert isinstance(answer, str)
    raw_upto = sum(1 for t in plan.fragments[k].timestamps if t <= at)
    # our clean semantics: 2 long frames per earlier fragment + raw frames <= t + the frame at t
    assert loaded.last_answer.memory_frames == 2 * k + raw_upto + 1
    assert loaded.last_answer.mode == "breakpoint"
    assert loaded.last_answer.at_s == at
    timing = loaded.last_answer
    assert 0 < timing.first_token_s <= timing.answer_s
    if answer:  # the first text shown never comes before the token that made it
        assert timing.first_token_s <= timing.first_text_s <= timing.answer_s
    assert 1 <= timing.tokens <= GREEDY.max_new_tokens

    loaded.encode()
    loaded.new_conversation()
    again = "".join(loaded.ask("What is he holding?", "breakpoint", at_s=at, settings=GREEDY))
    assert again == answer, "greedy answers do not depend on what was encoded after t"
    whole = "".join(loaded.ask("What happens in the film?", settings=GREEDY))
    assert loaded.last_answer.memory_frames == 256
    assert isinstance(whole, str)
    assert len(loaded.conversation.turns) == 2
    loaded.new_conversation()
    assert loaded.conversation.turns == []
    with pytest.raises(VideoError, match="outside the film"):
        list(loaded.ask("x", "breakpoint", at_s=info.duration_s + 5, settings=GREEDY))


def test_follow_up_uses_the_conversation(loaded, bigbuckbunny):
    loaded.open(bigbuckbunny)
    loaded.encode()
    first = "".join(loaded.ask("Who is there?", settings=GREEDY))
    fresh = "".join(loaded.ask("Who is there?", settings=GREEDY))
    assert len(loaded.conversation.turns) == 2
    assert loaded.conversation.turns[0].answer == first
    loaded.new_conversation()
    # the same question without history: same as the first answer (greedy)
    assert "".join(loaded.ask("Who is there?", settings=GREEDY)) == first
    assert isinstance(fresh, str)


def test_cancel_and_bad_requests(loaded, make_video):
    clip = make_video("cancel.mp4", seconds=3)
    loaded.open(clip)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        loaded.encode_step(token)
    assert loaded.status().fragments_done == 0
    loaded.encode()
    token = CancelToken()
    stream = loaded.ask(
        "Describe it.", settings=GenerationSettings(max_new_tokens=50), cancel=token
    )
    token.cancel()
    with pytest.raises(Cancelled):
        list(stream)
    assert loaded.conversation.turns == [], "a cancelled answer is not part of the conversation"
    with pytest.raises(MovieChatError, match="empty"):
        list(loaded.ask("   "))
    with pytest.raises(NotReady, match="needs a time"):
        list(loaded.ask("x", mode="breakpoint"))


def test_bad_film_keeps_the_previous_one(loaded, bigbuckbunny, tmp_path):
    loaded.open(bigbuckbunny)
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a film")
    with pytest.raises(VideoError):
        loaded.open(bad)
    assert loaded.video is not None and loaded.video.path == bigbuckbunny


def test_unicode_path_and_odd_geometry(loaded, make_video):
    clip = make_video("Film à l'été 2.mp4", seconds=2, size="90x160")
    info = loaded.open(clip)
    assert info.path.name == "Film à l'été 2.mp4"
    status = loaded.encode()
    assert status.finished
    answer = "".join(loaded.ask("What is shown?", "breakpoint", at_s=1.0, settings=GREEDY))
    assert isinstance(answer, str)


def test_breakpoint_frames_come_from_one_reader_per_film(loaded, vtest_avi, monkeypatch):
    """The full-size reader (it indexes the whole file) is opened once per film, not per
    question, and the frame it gives is exactly the one-off ``frame_at``'s."""
    import torch

    from moviechat_desktop.engine.video import frames as video

    opened = []
    real_open = video.open_reader

    def counting(path, size, *args, **kwargs):
        if size is None:
            opened.append(path)
        return real_open(path, size, *args, **kwargs)

    monkeypatch.setattr(video, "open_reader", counting)
    loaded.open(vtest_avi)
    loaded.encode()
    for at in (12.0, 40.0, 70.5):
        list(loaded.ask("What is here?", "breakpoint", at, settings=GREEDY))
        assert (loaded.last_answer.mode, loaded.last_answer.at_s) == ("breakpoint", at)
    assert len(opened) == 1
    size = loaded.model.config.image_size
    first = loaded._grabber
    assert torch.equal(first.get().grab(40.0, size), video.frame_at(vtest_avi, 40.0, size))
    # opening (another or the same) film closes the reader and opens the new film's in the
    # background, before any question
    loaded.open(vtest_avi)
    assert loaded._grabber is not first and first._grabber is None
    loaded._grabber.get()
    assert len(opened) == 3  # frame_at above opened one; the reopened film one more
    list(loaded.ask("And now?", "breakpoint", 5.0, settings=GREEDY))
    assert len(opened) == 3
