"""Regenerate and Edit in the chat window (issue #14 item 4), with the fake Assistant (its
``history`` dict plays the chat files, its ``contexts`` the model's context): the entries after
the redone one leave the chat, the history keeps both turns, the context follows the branch,
Esc cancels an edit, and after a reopen the branch, stopped answers and coverage notes are back.
"""

import pytest
from PySide6.QtCore import Qt

from moviechat_desktop.ui.chat_render import EDIT_SCHEME, REGENERATE_SCHEME
from moviechat_desktop.ui.chat_transcript import DONE, QUEUED

pytest_plugins = ["ui_fixtures"]

pytestmark = pytest.mark.timeout(120)


def open_film(qtbot, window, path):
    with qtbot.waitSignal(window.worker.conversation_loaded, timeout=10000):
        window.open_file(path)


def ask(qtbot, window, text):
    entry = window.chat.submit(text)
    qtbot.waitUntil(lambda: entry.finished, timeout=10000)
    assert entry.state == DONE, entry.note
    return entry


def three_turns(qtbot, make_main_window, fake_maker, path, history):
    window = make_main_window(make_assistant=fake_maker(history=history))
    open_film(qtbot, window, path)
    entries = [ask(qtbot, window, text) for text in ("One?", "Two?", "Three?")]
    assert all(e.question_id for e in entries), "the saved questions' ids reached the chat"
    return window, entries


def test_regenerate_replaces_the_answer_and_drops_the_later_turns(
    qtbot, make_main_window, fake_maker, bikes_mp4
):
    history = {}
    window, (one, two, three) = three_turns(qtbot, make_main_window, fake_maker, bikes_mp4, history)
    chat, fake = window.chat, window._make_assistant.instance
    chat.render_now()
    html = chat.browser.toHtml()
    for entry in (one, two, three):
        assert f"{REGENERATE_SCHEME}:{entry.id}" in html and f"{EDIT_SCHEME}:{entry.id}" in html
    fake.answer = "A different answer."
    chat.link_clicked.emit(f"{REGENERATE_SCHEME}:{two.id}")
    assert chat.transcript.entries == [one, two] and two.state in (QUEUED, DONE)
    qtbot.waitUntil(lambda: two.state == DONE, timeout=10000)
    assert two.answer.strip() == "[Two?] A different answer."
    assert fake.contexts[-1] == [("One?", one.answer)], "the context is the branch before it"
    records = fake.conversation_records()
    assert len(records) == 7, "the old answer and the third turn stay in the history"
    assert records[-1].replaces == records[3].id
    chat.render_now()
    shown = chat.browser.toPlainText()
    assert "Three?" not in shown and "answer regenerated" in shown
    # a follow-up continues the new branch
    ask(qtbot, window, "Four?")
    assert fake.contexts[-1] == [("One?", one.answer), ("Two?", two.answer)]

    window.close()
    again = make_main_window(make_assistant=fake_maker(history=history))
    open_film(qtbot, again, bikes_mp4)
    restored = again.chat.transcript.entries
    assert [(e.question, e.revised) for e in restored] == [
        ("One?", ""), ("Two?", "answer regenerated"), ("Four?", ""),
    ]  # fmt: skip
    assert restored[1].answer.strip() == "[Two?] A different answer."


def test_edit_resends_in_place_and_esc_cancels(qtbot, make_main_window, fake_maker, bikes_mp4):
    history = {}
    window, (one, two, _) = three_turns(qtbot, make_main_window, fake_maker, bikes_mp4, history)
    chat, fake = window.chat, window._make_assistant.instance
    chat.link_clicked.emit(f"{EDIT_SCHEME}:{two.id}")
    assert chat.editing is two and chat.question.toPlainText() == "Two?"
    assert chat.edit_label.isVisible() and "Esc cancels" in chat.edit_label.text()
    qtbot.keyClick(chat.question, Qt.Key.Key_Escape)
    assert chat.editing is None and not chat.edit_label.isVisible()
    assert chat.question.toPlainText() == "" and len(chat.transcript) == 3

    chat.link_clicked.emit(f"{EDIT_SCHEME}:{one.id}")
    chat.question.setPlainText("One, edited?")
    qtbot.keyClick(chat.question, Qt.Key.Key_Return)
    assert chat.transcript.entries == [one] and one.question == "One, edited?"
    assert chat.editing is None and chat.question.toPlainText() == ""
    qtbot.waitUntil(lambda: one.state == DONE, timeout=10000)
    assert one.answer.startswith("[One, edited?]") and one.revised == "edited"
    assert fake.asked[-1] == ("One, edited?", "global", None)
    assert fake.contexts[-1] == [], "an edited first question has no earlier turns"
    records = fake.conversation_records()
    assert len(records) == 8 and records[6].replaces == records[0].id
    assert one.question_id == records[6].id, "the edited question's own id, for another edit"

    window.close()
    again = make_main_window(make_assistant=fake_maker(history=history))
    open_film(qtbot, again, bikes_mp4)
    (restored,) = again.chat.transcript.entries
    assert (restored.question, restored.revised) == ("One, edited?", "edited")
    again.chat.render_now()
    assert "edited" in again.chat.browser.toPlainText()
    markdown = again.chat.to_markdown()
    assert "One, edited?" in markdown and "Two?" not in markdown and ", edited)" in markdown


def test_regenerate_and_edit_wait_for_the_answer_being_written(
    qtbot, make_main_window, fake_maker, bikes_mp4
):
    window = make_main_window(make_assistant=fake_maker(chunk_s=0.2))
    open_film(qtbot, window, bikes_mp4)
    chat = window.chat
    first = chat.submit("First?")
    qtbot.waitUntil(lambda: first.finished, timeout=20000)
    slow = chat.submit("Slow?")
    qtbot.waitUntil(lambda: slow.answer != "", timeout=10000)
    chat.link_clicked.emit(f"{REGENERATE_SCHEME}:{first.id}")
    chat.link_clicked.emit(f"{EDIT_SCHEME}:{first.id}")
    assert chat.transcript.entries == [first, slow] and first.state == DONE
    assert chat.editing is None and "Wait for the answer" in chat.status_label.text()
    chat.stop_button.click()
    qtbot.waitUntil(lambda: slow.finished, timeout=5000)
    # the stopped answer can be regenerated: it was saved, with its partial text
    fake = window._make_assistant.instance
    assert fake.conversation_records()[-1].stopped
    chat.link_clicked.emit(f"{REGENERATE_SCHEME}:{slow.id}")
    qtbot.waitUntil(lambda: slow.state == DONE, timeout=20000)
    assert slow.answer.strip().endswith("walks away.")
    assert fake.contexts[-1] == [("First?", first.answer)]


def test_the_coverage_note_is_shown_after_a_reopen(qtbot, make_main_window, fake_maker, bikes_mp4):
    history = {}
    window = make_main_window(make_assistant=fake_maker(history=history, step_s=0.5))
    open_film(qtbot, window, bikes_mp4)
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.1, timeout=10000)
    entry = ask(qtbot, window, "So far?")
    note = entry.coverage
    assert note.startswith("Answered from ") and "% of the film (up to " in note
    window.close()

    again = make_main_window(make_assistant=fake_maker(history=history))
    open_film(qtbot, again, bikes_mp4)
    (restored,) = again.chat.transcript.entries
    assert restored.coverage == note
    again.chat.render_now()
    assert note in again.chat.browser.toPlainText()
    # once the film is all watched, the restored answer offers to ask again
    qtbot.waitUntil(lambda: restored.links != (), timeout=10000)
    assert restored.links[0][1] == "Ask again with the whole film"
