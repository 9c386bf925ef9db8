"""The "continue where you left off?" strip shown over the transport bar on reopening a film.

VLC's habit: the film starts from the beginning at once and the offer stays for a few
seconds (counted down on the Continue button); accepting jumps to the remembered position.
The bar takes the keyboard focus when it appears (Enter = Continue; the player's keys keep
working since the bar sits in the player pane) and gives it back to the video when it goes.
"Always continue" accepts and asks the window to skip the question from now on
(Settings → Player → "Continue films where I left them").
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication, QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from moviechat_desktop.timefmt import format_time

OFFER_MS = 10_000


class ResumeBar(QFrame):
    resume_accepted = Signal(float)  # the position to jump to
    always_chosen = Signal()  # "Always continue": skip this question from now on
    focus_released = Signal()  # it went away holding the keyboard focus: back to the video

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ResumeBar")
        self._position = 0.0
        self._left_ms = 0
        self.label = QLabel(self)
        self.resume_button = QPushButton("Continue", self)
        self.resume_button.setToolTip("Jump to where you left off (Enter)")
        self.always_button = QPushButton("Always continue", self)
        self.always_button.setToolTip(
            "Continue now, and from now on open films where you left them without asking"
        )
        self.dismiss_button = QPushButton("Start over", self)
        self.dismiss_button.setToolTip("Keep watching from the start")
        for button in (self.resume_button, self.always_button, self.dismiss_button):
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            button.setAutoDefault(True)  # Enter clicks the focused button, as in a dialog
        self.resume_button.clicked.connect(self._accept)
        self.always_button.clicked.connect(self._always)
        self.dismiss_button.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 10, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.resume_button)
        layout.addWidget(self.always_button)
        layout.addWidget(self.dismiss_button)
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._count_down)
        self.hide()

    @property
    def position(self) -> float:
        return self._position

    @property
    def seconds_left(self) -> int:
        return max(0, (self._left_ms + 999) // 1000)

    def offer(self, position_s: float, duration_s: float = 0.0) -> None:
        self._position = position_s
        stamp = format_time(position_s, hours=duration_s >= 3600 or None)
        self.label.setText(f"Continue watching from {stamp}?")
        self._left_ms = OFFER_MS
        self._show_countdown()
        self.show()
        self._tick.start()
        self.resume_button.setFocus(Qt.FocusReason.OtherFocusReason)

    def _show_countdown(self) -> None:
        self.resume_button.setText(f"Continue ({self.seconds_left} s)")

    def _count_down(self) -> None:
        self._left_ms -= self._tick.interval()
        if self._left_ms <= 0:
            self.hide()
        else:
            self._show_countdown()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self._accept()  # Enter anywhere on the bar (its label included) = Continue
            return
        super().keyPressEvent(event)

    def _accept(self) -> None:
        self.hide()
        self.resume_accepted.emit(self._position)

    def _always(self) -> None:
        self.always_chosen.emit()
        self._accept()

    def hideEvent(self, event) -> None:
        focused = QApplication.focusWidget()
        had_focus = focused is not None and self.isAncestorOf(focused)
        self._tick.stop()
        super().hideEvent(event)
        if had_focus:
            self.focus_released.emit()
