"""The chat with the REAL engine Assistant on the tiny reference model (CPU, offscreen):
streaming, follow-ups, Stop, a question waiting in line, a breakpoint beyond coverage."""

import re

import pytest

from moviechat_desktop.ui.chat_transcript import ANSWERING, BREAKPOINT, QUEUED, WAITING
from moviechat_desktop.ui.player_widget import PLAYING

pytest_plugins = ["ui_fixtures"]  # make_main_window, tiny_maker, …

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


@pytest.fixture
def start(qtbot, wait_for_model):
    """Wait for the tiny model (the first load imports torch), then open and play ``path``."""

    def run(window, path):
        wait_for_model(window)
        with qtbot.waitSignal(window.film_opened, timeout=10000):
            window.open_file(path)
        qtbot.waitUntil(lambda: window.player.state == PLAYING, timeout=10000)

    return run


def watched_all(window):
    return window.transport.slider.covered_fraction() > 0.99


def test_answers_stream_from_the_tiny_model_and_follow_ups_continue(
    qtbot, make_main_window, tiny_maker, start, bikes_mp4
):
    maker = tiny_maker()
    window = make_main_window(make_assistant=maker)
    chunks = []
    window.worker.answer_chunk_received.connect(lambda rid, text: chunks.append((rid, text)))
    start(window, bikes_mp4)
    assert window.status.device_label.text().startswith("Model: cpu")
    qtbot.waitUntil(lambda: watched_all(window), timeout=30000)
    first = window.chat.submit("What is happening in this video?")
    qtbot.waitUntil(lambda: first.finished, timeout=60000)
    assert first.state == "done", first.note
    assert first.answer and first.answer == "".join(t for rid, t in chunks if rid == first.id)
    follow_up = window.chat.submit("And after that?")
    qtbot.waitUntil(lambda: follow_up.finished, timeout=60000)
    assert follow_up.state == "done", follow_up.note
    turns = maker.instance.conversation.turns
    assert [t.question for t in turns] == [first.question, follow_up.question]
    window.chat.render_now()
    text = window.chat.browser.toPlainText()
    assert text.index(first.question) < text.index(follow_up.question)
    assert text.count("Whole film") == 2  # each bubble shows its mode


def test_stop_ends_a_tiny_model_answer(qtbot, make_main_window, tiny_maker, start, bikes_mp4):
    window = make_main_window(make_assistant=tiny_maker(chunk_delay_s=0.4))
    start(window, bikes_mp4)
    qtbot.waitUntil(lambda: watched_all(window), timeout=30000)
    entry = window.chat.submit("Describe everything in detail.")
    qtbot.waitUntil(lambda: entry.state == ANSWERING, timeout=60000)
    assert window.chat.stop_button.isEnabled()
    window.chat.stop_button.click()
    qtbot.waitUntil(lambda: entry.finished, timeout=5000)
    assert entry.state == "stopped"
    assert not window.chat.stop_button.isEnabled()
    window.chat.render_now()
    assert "(stopped)" in window.chat.browser.toPlainText()
    after = window.chat.submit("Still there?")
    qtbot.waitUntil(lambda: after.finished, timeout=60000)
    assert after.state == "done"


def test_a_second_question_waits_in_line(qtbot, make_main_window, tiny_maker, start, bikes_mp4):
    window = make_main_window(make_assistant=tiny_maker(chunk_delay_s=0.15))
    start(window, bikes_mp4)
    qtbot.waitUntil(lambda: watched_all(window), timeout=30000)
    first = window.chat.submit("First question?")
    second = window.chat.submit("Second question?")
    qtbot.waitUntil(lambda: first.state == ANSWERING, timeout=60000)
    assert second.state == QUEUED
    window.chat.render_now()
    assert "queued — waits for the current answer" in window.chat.browser.toPlainText()
    started = []
    window.worker.answer_started.connect(started.append)
    qtbot.waitUntil(lambda: second.finished, timeout=60000)
    assert first.state == second.state == "done"
    assert started == [second.id]  # it started only once the first had finished


def test_a_breakpoint_beyond_what_is_watched_waits_then_answers(
    qtbot, make_main_window, tiny_maker, start, vtest_avi
):
    window = make_main_window(make_assistant=tiny_maker(step_delay_s=0.3))
    start(window, vtest_avi)
    window.player.pause()
    window.player.seek(75.0)
    qtbot.waitUntil(lambda: window.chat.mode() == BREAKPOINT, timeout=3000)
    assert not watched_all(window)
    entry = window.chat.submit("What is happening right now?")
    assert (entry.mode, entry.at_s) == (BREAKPOINT, pytest.approx(75.0))
    qtbot.waitUntil(lambda: entry.state == WAITING, timeout=30000)
    assert re.search(r"watched up to \d\d:\d\d", entry.note)
    assert "01:15" in entry.note
    window.chat.render_now()
    assert "it answers as soon as it reaches 01:15" in window.chat.browser.toPlainText()
    qtbot.waitUntil(lambda: entry.finished, timeout=60000)
    assert entry.state == "done", entry.note
    assert window.transport.slider.covered_fraction() > 0.9
