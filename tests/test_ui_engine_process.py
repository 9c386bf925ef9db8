"""The window with its engine in a child process (the app's default), on the tiny model:
the child killed with SIGKILL while encoding and while answering — the film keeps playing,
the chat says the assistant restarted, the next question is answered and saved once — and
quitting while encoding is quick and leaves no process behind."""

from __future__ import annotations

import copy
import logging
import os
import signal
import time

import pytest

from moviechat_desktop.ui.chat_transcript import ANSWERING
from moviechat_desktop.ui.player_widget import ENDED, PLAYING

pytest_plugins = ["ui_fixtures"]  # make_main_window, wait_for_model, …

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


@pytest.fixture
def child_maker(reference_dir):
    """``child_maker(step_delay_s=0, chunk_delay_s=0, n_fragments=8)`` → a ``make_assistant``
    starting the real Assistant (slowed as asked) in a child process; ``maker.engines`` lists
    every engine it started (a restart adds one)."""
    from moviechat_desktop.service.local_engine import LocalEngine

    def factory(step_delay_s=0.0, chunk_delay_s=0.0, n_fragments=8):
        def make(settings):
            chosen = copy.deepcopy(settings)
            chosen.model.model_dir = str(reference_dir)
            chosen.sampling.n_fragments = n_fragments
            engine = LocalEngine(
                "engine_children:slow_assistant",
                settings=chosen,
                step_delay_s=step_delay_s,
                chunk_delay_s=chunk_delay_s,
            )
            make.engines.append(engine)
            return engine

        make.engines = []
        return make

    return factory


def _start(qtbot, wait_for_model, window, path):
    wait_for_model(window)
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(path)
    qtbot.waitUntil(lambda: window.player.state == PLAYING, timeout=10000)


def _saved(settings, reference_dir, path, question):
    """How often ``question`` and answers to it are in the film's chat history on disk."""
    from moviechat_desktop.engine.assistant import Assistant

    chosen = copy.deepcopy(settings)
    chosen.model.model_dir = str(reference_dir)
    reader = Assistant(settings=chosen)
    reader.open(path)
    try:
        records = reader.conversation_records()
    finally:
        reader.shutdown()
    asked = [i for i, r in enumerate(records) if r.role == "user" and r.text == question]
    answered = [i for i in asked if i + 1 < len(records) and records[i + 1].role == "assistant"]
    return len(asked), len(answered)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive either
        return stat.read().split(")")[1].split()[0] != "Z"


def test_the_child_killed_while_encoding_restarts_and_answers(
    qtbot, make_main_window, child_maker, wait_for_model, reference_dir, vtest_avi
):
    maker = child_maker(step_delay_s=0.4)
    window = make_main_window(make_assistant=maker)
    _start(qtbot, wait_for_model, window, vtest_avi)
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.1, timeout=60000)
    assert window.transport.slider.covered_fraction() < 0.9
    first = maker.engines[0]
    with qtbot.waitSignal(window.worker.engine_restarted, timeout=10000) as restarted:
        os.kill(first.pid, signal.SIGKILL)
    assert "SIGKILL" in restarted.args[0]
    assert "restarted" in window.chat.status_label.text().lower()
    assert window.player.state == PLAYING  # the film never stopped
    wait_for_model(window)
    assert len(maker.engines) == 2 and not _alive(first.pid)
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.99, timeout=60000)
    entry = window.chat.submit("What happens in the street?")
    qtbot.waitUntil(lambda: entry.finished, timeout=60000)
    assert entry.state == "done", entry.note
    assert entry.answer
    assert window.player.state in (PLAYING, ENDED)  # it may reach its end on a slow machine
    assert _saved(window.settings, reference_dir, vtest_avi, entry.question) == (1, 1)


def test_the_child_killed_while_answering_answers_again_and_saves_the_question_once(
    qtbot, make_main_window, child_maker, wait_for_model, reference_dir, vtest_avi, caplog
):
    caplog.set_level(logging.INFO, logger="moviechat_desktop.workers.model_worker")
    maker = child_maker(chunk_delay_s=1.0)
    window = make_main_window(make_assistant=maker)
    _start(qtbot, wait_for_model, window, vtest_avi)
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.99, timeout=60000)
    entry = window.chat.submit("Who walks past?")
    queued = window.chat.submit("And then?")
    qtbot.waitUntil(lambda: entry.state == ANSWERING, timeout=60000)
    qtbot.wait(500)  # the child has saved the question and is writing the answer
    assert not entry.finished
    with qtbot.waitSignal(window.worker.engine_restarted, timeout=10000):
        os.kill(maker.engines[0].pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: queued.finished, timeout=120000)
    assert entry.state == queued.state == "done", (entry.note, queued.note)
    assert window.player.state in (PLAYING, ENDED)  # it may reach its end on a slow machine
    assert _saved(window.settings, reference_dir, vtest_avi, entry.question) == (1, 1)
    assert _saved(window.settings, reference_dir, vtest_avi, queued.question) == (1, 1)
    assert f"question {entry.id} was saved by the engine that died" in caplog.text
    follow_up = window.chat.submit("Anything else?")  # the restarted engine goes on answering
    qtbot.waitUntil(lambda: follow_up.finished, timeout=60000)
    assert follow_up.state == "done", follow_up.note


def test_quitting_while_encoding_is_quick_and_leaves_no_process(
    qtbot, make_main_window, child_maker, wait_for_model, vtest_avi
):
    maker = child_maker(n_fragments=64)
    window = make_main_window(make_assistant=maker)
    _start(qtbot, wait_for_model, window, vtest_avi)
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.05, timeout=60000)
    assert window.transport.slider.covered_fraction() < 0.95
    pid = maker.engines[0].pid
    start = time.perf_counter()
    assert window.shutdown()
    elapsed = time.perf_counter() - start
    assert not _alive(pid)
    assert elapsed < 3.0  # ~0.2-0.5 s measured (bench/README.md); generous for a busy CI box
