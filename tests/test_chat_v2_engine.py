"""The Assistant with chat history version 2 (tiny reference model): a stopped answer is saved
with its partial text, Regenerate and Edit keep both turns in the file while the model's
context follows the current branch (checked on the prompt text), and a whole-film answer from
part of the film stores its coverage note."""

import pytest
from cache_helpers import GREEDY, small_settings

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.errors import NotReady
from moviechat_desktop.engine.store.chat_history import ChatHistory, current_branch
from moviechat_desktop.ui.chat_transcript import STOPPED, entries_from_records


@pytest.fixture(scope="module")
def clip(make_video):
    return make_video("chat_v2.mp4", seconds=3)


def _opened(reference_dir, clip, **kw):
    assistant = Assistant(settings=small_settings(), model_dir=reference_dir, **kw)
    assistant.open(clip)
    assistant.encode()
    return assistant


def _ask(assistant, question, *args):
    answer = "".join(assistant.ask(question, *args, settings=GREEDY))
    return answer, assistant.last_answer.question_id, assistant.last_answer.prompt


def test_a_stopped_answer_is_saved_with_its_partial_text(reference_dir, clip):
    assistant = _opened(reference_dir, clip)
    stream = assistant.ask("Describe it.", settings=GREEDY)
    first = next(stream)
    stream.close()  # the window stops it after its first words
    info = assistant.last_answer
    assert info.stopped and info.question_id and info.answer_id
    _, _, prompt = _ask(assistant, "Who is there?")
    assert "Describe it." not in prompt, "a stopped answer stays out of the model's context"
    assistant.close()

    reopened = _opened(reference_dir, clip)
    records = reopened.conversation_records()
    assert [(r.role, r.stopped) for r in records] == [
        ("user", False), ("assistant", True), ("user", False), ("assistant", False),
    ]  # fmt: skip
    assert records[1].text == first.strip() and records[1].id == info.answer_id
    assert [t.question for t in reopened.conversation.turns] == ["Who is there?"]
    stopped, _ = entries_from_records(records)
    assert (stopped.answer, stopped.state, stopped.note) == (first.strip(), STOPPED, "stopped")
    assert f"{first.strip()} _(stopped)_" in reopened.export_markdown()
    reopened.close()


def test_regenerate_and_edit_keep_both_turns_and_the_context_follows_the_branch(
    reference_dir, clip
):
    assistant = _opened(reference_dir, clip)
    assistant.new_conversation()
    a1, q1, _ = _ask(assistant, "First question?")
    a2, q2, prompt2 = _ask(assistant, "Second question?")
    _, q3, prompt3 = _ask(assistant, "Third question?")
    assert "Second question?" in prompt3

    regenerated = "".join(assistant.regenerate(q2, settings=GREEDY))
    info = assistant.last_answer
    assert info.question_id == q2 and info.prompt == prompt2, "the context of the 2nd question"
    assert "Third question?" not in info.prompt
    assert regenerated == a2, "greedy: the same context gives the same answer"
    records = assistant.conversation_records()
    assert len(records) == 7, "the old answer and the third turn stay in the history"
    assert records[-1].replaces == records[3].id and records[-1].role == "assistant"
    assert [r.text for r in current_branch(records)] == [
        "First question?", a1, "Second question?", regenerated,
    ]  # fmt: skip
    _, _, prompt4 = _ask(assistant, "Fourth question?")
    assert "Second question?" in prompt4 and "Third question?" not in prompt4

    _, _, fresh = _ask(_fresh(reference_dir, clip), "Edited first?")
    "".join(assistant.edit_question(q1, "Edited first?", settings=GREEDY))
    info = assistant.last_answer
    assert info.prompt == fresh, "an edited first question has no earlier turns"
    records = assistant.conversation_records()
    assert len(records) == 11 and records[-2].replaces == q1 and records[-2].role == "user"
    assert current_branch(records)[0].text == "Edited first?"
    assert [t.question for t in assistant.conversation.turns] == ["Edited first?"]
    with pytest.raises(NotReady, match="not part of the current conversation"):
        list(assistant.regenerate(q3))  # on the old branch now
    with pytest.raises(NotReady, match="not part of the current conversation"):
        list(assistant.edit_question("no-such-id", "x"))
    conversation = assistant.conversation_id
    assistant.close()

    reopened = _opened(reference_dir, clip)
    assert reopened.conversation_id == conversation
    assert [t.question for t in reopened.conversation.turns] == ["Edited first?"]
    (entry,) = entries_from_records(reopened.conversation_records())
    edited = records[-2].id  # the edited question's own id (it replaces q1)
    assert (entry.question, entry.revised, entry.question_id) == ("Edited first?", "edited", edited)
    # an edit repeated after a crash (the old id) replaces the first edit
    "".join(reopened.edit_question(q1, "Edited once more?", settings=GREEDY))
    branch = current_branch(reopened.conversation_records())
    assert branch[0].text == "Edited once more?" and len(branch) == 2
    markdown = reopened.export_markdown()
    assert "Edited once more?" in markdown and "First question?" not in markdown
    assert "## Question (edited)" in markdown
    reopened.close()


def _fresh(reference_dir, clip):
    assistant = _opened(reference_dir, clip, keep_history=False)
    assistant.new_conversation()
    return assistant


def test_regenerate_needs_the_history(reference_dir, clip):
    assistant = _fresh(reference_dir, clip)
    "".join(assistant.ask("Who?", settings=GREEDY))
    with pytest.raises(NotReady, match="needs the chat history"):
        list(assistant.regenerate("m1"))
    assert assistant.last_answer.question_id is None


def test_a_partial_answer_stores_its_coverage_note(reference_dir, clip):
    assistant = Assistant(settings=small_settings(), model_dir=reference_dir, use_cache=False)
    assistant.open(clip)
    assistant.new_conversation()
    assistant.encode_step()
    assistant.encode_step()  # 2 of 8 fragments
    "".join(assistant.ask("So far?", settings=GREEDY))
    note = assistant.last_answer.coverage
    assert note.startswith("Answered from 25% of the film (up to 00:00:00")
    "".join(assistant.ask("Here?", "breakpoint", 0.1, settings=GREEDY))
    assert assistant.last_answer.coverage == "", "a breakpoint answer needs no note"
    assistant.encode()
    "".join(assistant.ask("And now?", settings=GREEDY))
    assert assistant.last_answer.coverage == ""
    film = assistant.film_id
    assistant.close()

    records = ChatHistory.for_film(film).records()[-6:]
    assert [r.coverage for r in records if r.role == "assistant"] == [note, "", ""]
    entries = entries_from_records(records)
    assert entries[0].coverage == note and entries[0].partial
    assert not entries[1].partial and not entries[2].partial


def test_stop_and_regenerate_through_the_engine_process(reference_dir, clip):
    """The window's engine runs in a child process (service/local_engine.py): the new
    methods cross it by the generic forwarding, and a stop there saves the partial answer."""
    from moviechat_desktop.engine.errors import Cancelled
    from moviechat_desktop.engine.progress import CancelToken
    from moviechat_desktop.service.local_engine import LocalEngine

    settings = small_settings()
    settings.model.model_dir = str(reference_dir)
    settings.model.device = "cpu"
    settings.generation.greedy, settings.generation.max_new_tokens = True, 8
    # chunks 0.2 s apart: the tiny model's whole answer could otherwise be made before the
    # stop reaches the child (seen: the answer saved as complete)
    child = LocalEngine("engine_children:slow_assistant", settings=settings, chunk_delay_s=0.2)
    try:
        child.load_model()
        child.open(clip)
        child.encode()
        child.new_conversation()
        first = "".join(child.ask("Who is there?"))
        question = child.last_answer.question_id
        token = CancelToken()
        chunks = []
        try:
            for chunk in child.ask("Describe it.", cancel=token):
                chunks.append(chunk)
                token.cancel()
        except Cancelled:
            pass
        records = child.conversation_records()
        assert [(r.role, r.stopped) for r in records][-2:] == [("user", False), ("assistant", True)]
        assert chunks and records[-1].text.startswith(chunks[0].strip())
        again = "".join(child.regenerate(question))
        assert again == first and child.last_answer.question_id == question
        assert "Describe it." not in child.last_answer.prompt
        records = child.conversation_records()
        assert len(records) == 5 and records[-1].replaces == records[1].id
        assert [r.text for r in current_branch(records)] == ["Who is there?", again]
    finally:
        child.shutdown()
