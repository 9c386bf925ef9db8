"""Reopening a film in the window: its saved conversation is back, earlier conversations are
listed and can be continued, "New chat" starts afresh, and the memory cache can be cleared.

Most tests use the fake Assistant (its ``history`` dict plays the chat files); the last one
runs the real engine on the tiny model, where the film's memory comes from the disk cache."""

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from moviechat_desktop.ui.chat_transcript import DONE, STOPPED

pytest_plugins = ["ui_fixtures"]

pytestmark = pytest.mark.timeout(120)


def open_film(qtbot, window, path):
    with qtbot.waitSignal(window.worker.conversation_loaded, timeout=10000):
        window.open_file(path)
    assert window.film_path == str(path)


def ask(qtbot, window, text):
    entry = window.chat.submit(text)
    qtbot.waitUntil(lambda: entry.finished, timeout=10000)
    assert entry.state == DONE, entry.note
    return entry


def menu_entries(window):
    window.actions.fill_conversations_menu()
    return window.actions.conversations_menu.actions()


def test_reopening_a_film_shows_its_conversation_and_continues_it(
    qtbot, make_main_window, fake_maker, bikes_mp4
):
    history = {}
    first = make_main_window(make_assistant=fake_maker(history=history))
    open_film(qtbot, first, bikes_mp4)
    q1 = ask(qtbot, first, "Who rides?")
    q2 = ask(qtbot, first, "And then?")
    first.close()

    second = make_main_window(make_assistant=fake_maker(history=history))
    open_film(qtbot, second, bikes_mp4)
    entries = second.chat.transcript.entries
    assert [(e.question, e.answer, e.state, e.restored) for e in entries] == [
        (q1.question, q1.answer, DONE, True),
        (q2.question, q2.answer, DONE, True),
    ]
    text = second.chat.browser.toPlainText()
    assert "Saved conversation" in text and "Who rides?" in text and "And then?" in text
    fake = second._make_assistant.instance
    saved_id = history[str(bikes_mp4)][0].conversation
    assert fake.conversation_id == saved_id
    q3 = ask(qtbot, second, "Anything else?")  # the follow-up joins the same conversation
    assert [r.conversation for r in history[str(bikes_mp4)]] == [saved_id] * 6
    assert [e.question for e in second.chat.transcript.entries] == [
        "Who rides?",
        "And then?",
        q3.question,
    ]
    # the list follows each saved answer (a signal after the answer's own)
    qtbot.waitUntil(lambda: second.controller.conversations[0].messages == 6, timeout=5000)
    actions = menu_entries(second)
    assert len(actions) == 1 and actions[0].isChecked()
    assert "Who rides?" in actions[0].text() and "(6 messages)" in actions[0].text()


def test_export_after_reopening_includes_the_saved_messages(
    qtbot, make_main_window, fake_maker, bikes_mp4, tmp_path, monkeypatch
):
    history = {}
    first = make_main_window(make_assistant=fake_maker(history=history))
    open_film(qtbot, first, bikes_mp4)
    earlier = ask(qtbot, first, "What colour is the bike?")
    first.close()
    second = make_main_window(make_assistant=fake_maker(history=history))
    open_film(qtbot, second, bikes_mp4)
    later = ask(qtbot, second, "Where are they going?")
    target = tmp_path / "chat.md"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a: (str(target), "")))
    assert second.export_chat() == target
    text = target.read_text("utf-8")
    assert text.index("> What colour is the bike?") < text.index("> Where are they going?")
    assert earlier.answer.strip() in text and later.answer.strip() in text


def test_new_chat_keeps_the_old_one_listed_and_it_can_be_continued(
    qtbot, make_main_window, fake_maker, bikes_mp4
):
    history = {}
    window = make_main_window(make_assistant=fake_maker(history=history))
    open_film(qtbot, window, bikes_mp4)
    ask(qtbot, window, "First chat?")
    with qtbot.waitSignal(window.worker.conversation_loaded, timeout=5000):
        window.chat.new_button.click()
    assert len(window.chat.transcript) == 0
    ask(qtbot, window, "Second chat?")
    qtbot.waitUntil(lambda: len(window.controller.conversations) == 2, timeout=5000)
    actions = menu_entries(window)
    assert len(actions) == 2
    newest, oldest = actions  # newest first, the current one checked
    assert "Second chat?" in newest.text() and newest.isChecked()
    assert "First chat?" in oldest.text() and not oldest.isChecked()

    with qtbot.waitSignal(window.worker.conversation_loaded, timeout=5000):
        oldest.trigger()
    assert [e.question for e in window.chat.transcript.entries] == ["First chat?"]
    ask(qtbot, window, "Back to the first?")
    fake = window._make_assistant.instance
    first_id = history[str(bikes_mp4)][0].conversation
    assert fake.conversation_id == first_id
    assert [r.text for r in fake.conversation_records(first_id) if r.role == "user"] == [
        "First chat?",
        "Back to the first?",
    ]


def test_a_stopped_answer_is_restored_with_its_partial_text(
    qtbot, make_main_window, fake_maker, bikes_mp4
):
    history = {}
    first = make_main_window(make_assistant=fake_maker(history=history, chunk_s=0.2))
    open_film(qtbot, first, bikes_mp4)
    entry = first.chat.submit("Interrupted?")
    qtbot.waitUntil(lambda: entry.answer != "", timeout=10000)
    first.chat.stop_button.click()
    qtbot.waitUntil(lambda: entry.finished, timeout=5000)
    assert entry.state == STOPPED
    partial = entry.answer.strip()
    first.close()
    second = make_main_window(make_assistant=fake_maker(history=history))
    open_film(qtbot, second, bikes_mp4)
    (restored,) = second.chat.transcript.entries
    assert (restored.question, restored.state) == ("Interrupted?", STOPPED)
    assert restored.answer == partial and partial.startswith("[Interrupted?]")
    assert not partial.endswith("walks away."), "stopped before the end"
    shown = second.chat.browser.toPlainText()
    assert f"{partial} (stopped)" in shown and "(no answer was saved)" not in shown


def test_a_question_asked_while_the_film_opens_stays_after_the_saved_ones(
    qtbot, make_main_window, fake_maker, bikes_mp4
):
    history = {}
    first = make_main_window(make_assistant=fake_maker(history=history))
    open_film(qtbot, first, bikes_mp4)
    ask(qtbot, first, "Saved question?")
    first.close()
    second = make_main_window(make_assistant=fake_maker(history=history))
    with qtbot.waitSignal(second.film_opened, timeout=10000):
        second.open_file(bikes_mp4)
    quick = second.chat.submit("Asked at once?")  # before the saved conversation is back
    qtbot.waitUntil(lambda: quick.finished, timeout=10000)
    assert [e.question for e in second.chat.transcript.entries] == [
        "Saved question?",
        "Asked at once?",
    ]


def test_another_films_conversation_replaces_the_chat(
    qtbot, make_main_window, fake_maker, bikes_mp4, bigbuckbunny
):
    window = make_main_window(make_assistant=fake_maker(history={}))
    open_film(qtbot, window, bikes_mp4)
    ask(qtbot, window, "About the bikes?")
    open_film(qtbot, window, bigbuckbunny)
    assert len(window.chat.transcript) == 0
    assert menu_entries(window)[0].text().startswith("(no saved conversations")
    open_film(qtbot, window, bikes_mp4)
    assert [e.question for e in window.chat.transcript.entries] == ["About the bikes?"]


def test_clear_memory_cache_asks_first_then_reports(qtbot, make_main_window, bikes_mp4):
    window = make_main_window()
    open_film(qtbot, window, bikes_mp4)
    fake = window._make_assistant.instance

    box = window.clear_cache()
    assert isinstance(box, QMessageBox) and "conversations are not deleted" in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.wait(200)
    assert fake.cleared == 0

    box = window.clear_cache()
    with qtbot.waitSignal(window.worker.cache_cleared, timeout=5000):
        box.button(QMessageBox.StandardButton.Yes).click()
    assert fake.cleared == 1
    message = window.statusBar().currentMessage()
    assert message == "Memory cache cleared: 2 films forgotten, 3.50 MB freed; 1 in use kept."


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_tiny_model_remembers_a_reopened_film(
    qtbot, make_main_window, tiny_maker, wait_for_model, bikes_mp4
):
    """Real engine: the reopened film's memory comes from the cache (nothing is encoded),
    its conversation is back, and a new chat gets the same greedy answer as before."""
    first = make_main_window(make_assistant=tiny_maker())
    wait_for_model(first)
    open_film(qtbot, first, bikes_mp4)
    qtbot.waitUntil(lambda: first.transport.slider.covered_fraction() > 0.99, timeout=60000)
    before = ask_slowly(qtbot, first, "What is happening in this video?")
    assert before.answer
    assert first._make_assistant.instance.encode_seconds > 0  # the first window encoded
    first.close()

    maker = tiny_maker()
    second = make_main_window(make_assistant=maker)
    wait_for_model(second)
    opened = []
    second.worker.film_opened.connect(lambda _path, status: opened.append(status))
    open_film(qtbot, second, bikes_mp4)
    assert opened and opened[0].finished  # the whole memory came from the cache
    assert maker.instance.cache_restored == opened[0].fragments_total
    assert maker.instance.encode_seconds == 0.0  # the encoder never ran
    (restored,) = second.chat.transcript.entries
    assert (restored.question, restored.answer) == (before.question, before.answer)
    with qtbot.waitSignal(second.worker.conversation_loaded, timeout=5000):
        second.chat.new_button.click()
    again = ask_slowly(qtbot, second, before.question)
    assert again.answer == before.answer
    assert maker.instance.encode_seconds == 0.0


def ask_slowly(qtbot, window, text):
    entry = window.chat.submit(text)
    qtbot.waitUntil(lambda: entry.finished, timeout=60000)
    assert entry.state == DONE, entry.note
    return entry


def test_new_settings_reopen_the_film_without_repeating_the_chat(
    qtbot, make_main_window, fake_maker, bikes_mp4
):
    import copy

    window = make_main_window(make_assistant=fake_maker(history={}))
    open_film(qtbot, window, bikes_mp4)
    ask(qtbot, window, "Before the settings changed?")
    new = copy.deepcopy(window.settings)
    new.sampling.n_fragments += 1  # a sampling change rebuilds the assistant
    with qtbot.waitSignal(window.worker.conversation_loaded, timeout=10000) as blocker:
        window.apply_settings(new)
    assert blocker.args[0].reason == "reopened" and blocker.args[0].records == ()
    assert [e.question for e in window.chat.transcript.entries] == ["Before the settings changed?"]
    assert window.controller.conversation_id == blocker.args[0].conversation_id
