"""Keyboard-only use (issue #14 item 3): `/` to ask, Esc back to the video, Ctrl+. stops an
answer, ↑ recalls the last question, a visible focus ring, Help → Keyboard shortcuts and the
README's keys table complete. Offscreen VLC (dummy outputs) and the fake Assistant."""

import re
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QWidget

from moviechat_desktop.ui.chat_transcript import STOPPED
from moviechat_desktop.ui.player_widget import PLAYING
from moviechat_desktop.ui.shortcuts_dialog import WIDGET_KEYS, action_keys, key_text

pytest_plugins = ["ui_fixtures"]

pytestmark = pytest.mark.timeout(120)

README = Path(__file__).resolve().parent.parent / "README.md"


def open_and_play(qtbot, window, path):
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(path)
    qtbot.waitUntil(lambda: window.player.state == PLAYING, timeout=10000)


def focus(qtbot, window, widget):
    window.activateWindow()
    widget.setFocus()
    qtbot.waitUntil(widget.hasFocus, timeout=3000)


def test_slash_focuses_the_question_box_from_anywhere_and_esc_gives_it_back(
    qtbot, make_main_window, vtest_avi
):
    window = make_main_window()
    open_and_play(qtbot, window, vtest_avi)
    box, surface = window.chat.question, window.player.surface
    focus(qtbot, window, surface)
    qtbot.keyClick(surface, Qt.Key.Key_Slash)
    assert box.hasFocus()
    assert box.toPlainText() == ""  # the key moved the focus, it typed nothing
    qtbot.keyClicks(box, "a/b")  # in the box a slash is just a character
    assert box.toPlainText() == "a/b" and box.hasFocus()
    qtbot.keyClick(box, Qt.Key.Key_Escape)
    assert surface.hasFocus()
    assert not window.isFullScreen() and box.toPlainText() == "a/b"  # kept for later
    # the Dialogue tab's search field types a slash too; from its list, / jumps to the chat
    window.side.setCurrentWidget(window.dialogue)
    focus(qtbot, window, window.dialogue.search)
    qtbot.keyClicks(window.dialogue.search, "1/2")
    assert window.dialogue.search.text() == "1/2"
    focus(qtbot, window, window.dialogue.lines)
    qtbot.keyClick(window.dialogue.lines, Qt.Key.Key_Slash)
    assert window.side.currentWidget() is window.chat and box.hasFocus()
    # with the chat hidden, / shows it (and the Chat toggle follows)
    window.set_chat_visible(False)
    assert window.chat.isHidden() and surface.hasFocus()
    qtbot.keyClick(surface, Qt.Key.Key_Slash)
    assert not window.chat.isHidden() and box.hasFocus()
    assert window.transport.chat_button.isChecked() and window.actions.show_chat.isChecked()
    # Esc on the video still leaves fullscreen
    focus(qtbot, window, surface)
    qtbot.keyClick(surface, Qt.Key.Key_F)
    qtbot.waitUntil(window.isFullScreen, timeout=3000)
    qtbot.keyClick(surface, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.isFullScreen(), timeout=3000)


def test_ctrl_period_stops_a_streaming_answer(qtbot, make_main_window, fake_maker, bikes_mp4):
    words = " ".join(f"word{i}" for i in range(400))
    window = make_main_window(make_assistant=fake_maker(chunk_s=0.05, answer=words))
    open_and_play(qtbot, window, bikes_mp4)
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.99, timeout=10000)
    assert "Ctrl+." in window.chat.stop_button.toolTip()
    box = window.chat.question
    focus(qtbot, window, box)
    qtbot.keyClicks(box, "Tell me everything")
    qtbot.keyClick(box, Qt.Key.Key_Return)
    entry = window.chat.transcript.entries[-1]
    qtbot.waitUntil(lambda: entry.answer.count("word") >= 3, timeout=10000)
    qtbot.keyClick(box, Qt.Key.Key_Period, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: entry.state == STOPPED, timeout=5000)
    assert entry.answer.count("word") < 100  # stopped long before the end
    assert box.toPlainText() == ""  # Ctrl+. typed nothing
    # from the video too
    focus(qtbot, window, window.player.surface)
    second = window.chat.submit("And again")
    qtbot.waitUntil(lambda: second.answer.count("word") >= 3, timeout=10000)
    qtbot.keyClick(window.player.surface, Qt.Key.Key_Period, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: second.state == STOPPED, timeout=5000)
    assert window.player.state == PLAYING  # the player did not react


def test_up_in_an_empty_box_recalls_the_last_questions(qtbot, make_main_window, bikes_mp4):
    window = make_main_window()
    open_and_play(qtbot, window, bikes_mp4)
    box = window.chat.question
    for question in ("Who rides?", "What colour\nis the bike?"):
        window.chat.submit(question)
    focus(qtbot, window, box)
    qtbot.keyClick(box, Qt.Key.Key_Up)
    assert box.toPlainText() == "What colour\nis the bike?"
    qtbot.keyClick(box, Qt.Key.Key_Up)
    assert box.toPlainText() == "Who rides?"
    qtbot.keyClick(box, Qt.Key.Key_Up)  # the oldest stays
    assert box.toPlainText() == "Who rides?"
    qtbot.keyClick(box, Qt.Key.Key_Down)
    assert box.toPlainText() == "What colour\nis the bike?"
    qtbot.keyClick(box, Qt.Key.Key_Down)
    assert box.toPlainText() == ""
    # a text being typed keeps ↑ for moving the cursor
    qtbot.keyClicks(box, "draft")
    qtbot.keyClick(box, Qt.Key.Key_Up)
    assert box.toPlainText() == "draft"
    # a recalled question can be edited and sent
    box.clear()
    qtbot.keyClick(box, Qt.Key.Key_Up)
    qtbot.keyClicks(box, " Really?")
    qtbot.keyClick(box, Qt.Key.Key_Return)
    assert window.chat.transcript.entries[-1].question == "What colour\nis the bike? Really?"


def _grab(widget: QWidget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    data = np.frombuffer(image.constBits(), np.uint8, count=stride * h)
    return data.reshape(h, stride)[:, : w * 3].reshape(h, w, 3).astype(np.int16)


def test_every_control_that_takes_the_keyboard_shows_a_focus_ring(qtbot, make_main_window):
    window = make_main_window()
    window.resume_bar.offer(200.0, 600.0)  # its buttons take the keyboard too
    focusable = []
    for side in (window.chat, window.dialogue):
        window.side.setCurrentWidget(side)
        qtbot.wait(50)
        focusable += [
            w
            for w in window.findChildren(QWidget)
            if w.isVisible()
            and w.focusPolicy() & Qt.FocusPolicy.TabFocus
            and w is not window.player.surface  # VLC draws over it (its ring: the chat's)
            and w.isEnabled()
            and w.focusProxy() is None  # the proxy (a tab widget's bar) is checked itself
            and w not in focusable
        ]
    names = {type(w).__name__ for w in focusable}
    assert {"QuestionEdit", "QComboBox", "QPushButton", "QTextBrowser"} <= names, names
    window.activateWindow()
    missing = []
    for widget in focusable:
        if window.dialogue.isAncestorOf(widget):
            window.side.setCurrentWidget(window.dialogue)
        elif window.chat.isAncestorOf(widget):
            window.side.setCurrentWidget(window.chat)
        window.player.surface.setFocus()
        qtbot.waitUntil(lambda w=widget: not w.hasFocus(), timeout=2000)
        qtbot.wait(30)
        before = _grab(widget)
        widget.setFocus(Qt.FocusReason.TabFocusReason)
        qtbot.waitUntil(widget.hasFocus, timeout=2000)
        qtbot.wait(30)
        after = _grab(widget)
        # the ring: a clear change along the widget's edges, not only a text cursor inside
        edge = np.zeros(before.shape[:2], bool)
        edge[:2, :] = edge[-2:, :] = edge[:, :2] = edge[:, -2:] = True
        if before.shape != after.shape:
            missing.append(f"{type(widget).__name__} (changed size)")
            continue
        changed = (np.abs(after - before).max(axis=2) > 40)[edge].mean()
        if changed < 0.3:
            missing.append(f"{type(widget).__name__} {widget.objectName()} {changed:.2f}")
    assert not missing, f"no visible focus ring: {missing}"


def test_help_lists_every_key_and_the_readme_table_is_complete(qtbot, make_main_window):
    window = make_main_window()
    dialog = window.show_shortcuts()
    qtbot.waitExposed(dialog)
    rows = dialog.rows()
    keyed = [a for a in window.findChildren(type(window.actions.open)) if a.shortcuts()]
    assert len(keyed) >= 25
    listed = {keys for _, _, keys in rows}
    for action in keyed:
        assert action_keys(action) in listed, action.text()
    for _, _what, keys in WIDGET_KEYS:
        assert keys in listed
    assert window.show_shortcuts() is dialog  # one window, raised again
    # F1 opens it from the video
    dialog.close()
    focus(qtbot, window, window.player.surface)
    qtbot.keyClick(window.player.surface, Qt.Key.Key_F1)
    assert dialog.isVisible()

    text = README.read_text("utf-8")
    table = text.split("### Keyboard", 1)[1].split("\n### ", 1)[0]
    cells = set()  # every `key` written in the table's rows
    for line in table.splitlines():
        if line.startswith("|"):
            cells.update(re.findall(r"`([^`]+)`", line))
    for action in keyed:
        for sequence in action.shortcuts():
            assert key_text(sequence) in cells, f"README keys table misses {key_text(sequence)}"
    for where, _, keys in WIDGET_KEYS:
        if where != "Mouse":
            for key in keys.split(", "):
                assert key in cells, f"README keys table misses {key} ({where})"
    assert "mpv" in table and "`/`" in table  # / is volume down there: said so


def test_key_text_writes_arrows_and_modifiers():
    from PySide6.QtGui import QKeySequence

    assert key_text(QKeySequence("Shift+Right")) == "Shift+→"
    assert key_text(QKeySequence("Ctrl+Up")) == "Ctrl+↑"
    assert key_text(QKeySequence("Ctrl+.")) == "Ctrl+."
    assert key_text(QKeySequence("+")) == "+"
    QApplication.processEvents()
