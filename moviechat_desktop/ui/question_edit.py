"""The chat's question box: Enter sends, Shift+Enter starts a new line.

Every key typed here stays here: ``ShortcutOverride`` is accepted for all plain and
Shift-modified keys, so no player shortcut (Space, arrows, M, F…) can fire while typing.
Esc hands the keyboard back to the video (``escaped``); ↑ in an empty box recalls the last
question, ↑/↓ again walk through the earlier ones (a shell's history).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QWidget

_KEEP_MODIFIERS = (
    Qt.KeyboardModifier.NoModifier,
    Qt.KeyboardModifier.ShiftModifier,
    Qt.KeyboardModifier.KeypadModifier,
)


class QuestionEdit(QPlainTextEdit):
    submitted = Signal(str)
    escaped = Signal()  # Esc: the window gives the focus back to the video

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("QuestionEdit")
        self.setPlaceholderText(
            "Ask about the film…  (Enter to send, Shift+Enter for a new line, ↑ last question)"
        )
        self.setTabChangesFocus(True)
        self.setMaximumHeight(84)
        # the questions asked so far in this conversation, oldest first (set by the chat)
        self.past_questions: Callable[[], list[str]] = list
        self._recalled: int | None = None  # index into past_questions() being shown

    def event(self, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and event.modifiers() in _KEEP_MODIFIERS
        ):
            event.accept()  # ours: typing never triggers a player shortcut (Esc included)
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        plain = not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            text = self.toPlainText().strip()
            if text:
                self._recalled = None
                self.submitted.emit(text)
                self.clear()
            return
        if key == Qt.Key.Key_Escape and plain:
            self.escaped.emit()
            return
        if key == Qt.Key.Key_Up and plain and self._recall(-1):
            return
        if key == Qt.Key.Key_Down and plain and self._recall(+1):
            return
        super().keyPressEvent(event)

    def _recall(self, step: int) -> bool:
        """↑/↓ through the past questions while the box is empty or shows one unchanged."""
        past = self.past_questions()
        text = self.toPlainText()
        showing = (
            self._recalled is not None
            and self._recalled < len(past)
            and past[self._recalled] == text
        )
        if not showing:
            self._recalled = None
            if text or step > 0 or not past:
                return False  # an edited or typed text keeps the arrows for moving the cursor
            index = len(past) - 1
        else:
            index = self._recalled + step
        if index < 0:
            return True  # already at the oldest: stay
        if index >= len(past):
            self._recalled = None
            self.clear()
            return True
        self._recalled = index
        self.setPlainText(past[index])
        self.moveCursor(QTextCursor.MoveOperation.End)
        return True
