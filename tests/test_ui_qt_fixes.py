"""The guard against PySide6 6.12.0's Signal.emit reference bug, and small status helpers."""

import sys

import pytest
from PySide6.QtCore import QObject, Signal

import moviechat_desktop.workers  # noqa: F401  (installs the guard)
from moviechat_desktop.engine.assistant import EncodeStatus
from moviechat_desktop.ui.chat_controller import waiting_note, watched_until
from moviechat_desktop.ui.chat_transcript import ChatTranscript
from moviechat_desktop.ui.status_reporter import describe_encoding, encoding_speed
from moviechat_desktop.workers import qt_fixes


class Emitter(QObject):
    fired = Signal(int)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="True is immortal on CPython ≥ 3.12")
def test_emitting_signals_keeps_the_reference_to_true():
    emitter, received = Emitter(), []
    emitter.fired.connect(received.append)
    before = sys.getrefcount(True)
    for i in range(3000):  # without the guard, 6.12.0 aborts CPython 3.11 well before this
        emitter.fired.emit(i)
    assert len(received) == 3000
    assert sys.getrefcount(True) - before > -50  # (other code may hold or drop a few)
    assert not qt_fixes.emit_leaks_references()


def status(done, total=10, covered=(), finished=False, fps=0.0):
    return EncodeStatus(done, total, 8 * done, 8 * total, covered, fps, 100.0, finished)


def test_encoding_descriptions():
    assert describe_encoding(status(0, total=0)) == ""
    seen = status(3, fps=42.04, covered=((0.0, 30.0), (50.0, 60.0)))
    assert describe_encoding(seen) == "The assistant has seen 30% (up to 00:30)"
    assert encoding_speed(seen) == "Watching at 42.0 frames/s"
    assert describe_encoding(status(3)) == "The assistant has seen 30% (up to 00:00)"
    assert encoding_speed(status(3)) == ""
    assert describe_encoding(status(10, finished=True)) == "Watched the whole film"


def test_waiting_notes_say_how_far_the_assistant_has_watched():
    assert watched_until(()) == 0.0
    assert watched_until(((0.0, 42.0), (60.0, 70.0))) == 42.0
    assert watched_until(((5.0, 42.0),)) == 0.0  # a gap at the start
    t = ChatTranscript()
    moment = t.add("What now?", "breakpoint", 75.0)
    note = waiting_note(moment, status(4, covered=((0.0, 40.0),)))
    assert note == (
        "The assistant has watched up to 00:40 so far (40% of the film); "
        "it answers as soon as it reaches 01:15."
    )
    whole = t.add("And the film?", "global")
    assert "not watched anything yet" in waiting_note(whole, status(0))


def test_the_chat_says_so_when_no_asyncio_loop_runs(qtbot):
    from moviechat_desktop.ui.chat_controller import ChatController
    from moviechat_desktop.ui.chat_panel import ChatPanel
    from moviechat_desktop.workers.model_worker import ModelWorker

    panel = ChatPanel()
    qtbot.addWidget(panel)
    worker = ModelWorker(lambda: None)  # never started: nothing may reach it
    controller = ChatController(panel, worker)  # noqa: F841  (kept alive: its slots run)
    entry = panel.submit("Anyone there?")
    assert entry.state == "failed" and "event loop" in entry.note
