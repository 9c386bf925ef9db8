"""A symbolic-link loop is named as one, in the CLI and in the window; an exception escaping any
Qt slot (or an asyncio task of the GUI loop) is shown to the user and logged, never silent."""

from __future__ import annotations

import logging
import os

import pytest
from PySide6.QtCore import QObject, QTimer, Signal

from moviechat_desktop.cli import main
from moviechat_desktop.engine.errors import VideoError
from moviechat_desktop.engine.video.probe import probe as probe_video
from moviechat_desktop.ui.playback_history import PlaybackHistory

pytest_plugins = ["ui_fixtures"]  # make_main_window

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def loop_path(tmp_path):
    a, b = tmp_path / "film.mp4", tmp_path / "other.mp4"
    os.symlink(b, a)
    os.symlink(a, b)
    return a


def test_the_engine_and_the_cli_name_a_symlink_loop(capsys, loop_path):
    with pytest.raises(VideoError, match="is a symbolic-link loop"):
        probe_video(loop_path)
    assert main(["encode", str(loop_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'film.mp4' is a symbolic-link loop" in err


def test_the_weights_import_names_a_symlink_loop(capsys, loop_path):
    assert main(["weights", "import", str(loop_path)]) == 1
    assert "is a symbolic-link loop" in capsys.readouterr().err


def test_the_playback_history_copes_with_a_loop(tmp_path, loop_path):
    history = PlaybackHistory(tmp_path / "history.json")
    history.add_recent(loop_path)
    history.remember_position(loop_path, 30.0, 600.0)
    assert history.resume_position(loop_path) in (None, 30.0)
    history.remove_recent(loop_path)


def test_the_window_shows_a_symlink_loop_in_a_dialog(qtbot, make_main_window, loop_path):
    window = make_main_window()
    window.history.add_recent(loop_path)
    with qtbot.waitSignal(window.open_failed, timeout=10000) as failed:
        window.open_file(loop_path)
    assert "is a symbolic-link loop" in failed.args[0].message
    box = window.last_error_box
    assert box is not None and box.isVisible()
    assert "is a symbolic-link loop" in box.informativeText()
    box.close()


class _Emitter(QObject):
    fired = Signal()


@pytest.mark.qt_no_exception_capture  # the window's own hook is under test
def test_an_exception_escaping_a_slot_is_shown_and_logged(qtbot, make_main_window, caplog):
    from PySide6.QtWidgets import QApplication, QMessageBox

    window = make_main_window()
    emitter = _Emitter()

    def broken_slot():
        raise KeyError("the slot's own bug")

    emitter.fired.connect(broken_slot)
    with caplog.at_level(logging.ERROR):
        QTimer.singleShot(0, emitter.fired.emit)
        qtbot.waitUntil(
            lambda: any(
                isinstance(w, QMessageBox)
                and w.isVisible()
                and "slot's own bug" in w.informativeText()
                for w in QApplication.topLevelWidgets()
            ),
            timeout=5000,
        )
    box = next(
        w
        for w in QApplication.topLevelWidgets()
        if isinstance(w, QMessageBox) and w.isVisible() and "slot's own bug" in w.informativeText()
    )
    assert box.property("error_kind") == "KeyError" and box.windowTitle() == "Unexpected error"
    assert any("slot's own bug" in r.getMessage() or r.exc_info for r in caplog.records)
    assert any(r.exc_info and "slot's own bug" in str(r.exc_info[1]) for r in caplog.records), (
        "the traceback is logged"
    )
    box.close()
    del window


@pytest.mark.qt_no_exception_capture
def test_an_exception_in_a_gui_asyncio_task_is_shown(qtbot, make_main_window, caplog):
    import asyncio

    from PySide6.QtWidgets import QApplication, QMessageBox

    make_main_window()

    async def broken():
        raise ValueError("a task's own bug")

    with caplog.at_level(logging.ERROR):
        task = asyncio.get_event_loop().create_task(broken())
        qtbot.waitUntil(task.done, timeout=5000)
        del task  # the loop reports an exception nobody retrieved when the task goes away
        import gc

        gc.collect()
        qtbot.waitUntil(
            lambda: any(
                isinstance(w, QMessageBox)
                and w.isVisible()
                and "task's own bug" in w.informativeText()
                for w in QApplication.topLevelWidgets()
            ),
            timeout=5000,
        )
