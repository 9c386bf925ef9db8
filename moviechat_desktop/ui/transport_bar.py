"""The controls under the video: play/pause, seek slider with times, volume, speed, extras.

The bar only shows state and reports clicks; ``MainWindow`` connects it to ``PlayerWidget``.
No control takes keyboard focus, so the player's keys keep working after a click.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMenu,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from moviechat_desktop.timefmt import format_time
from moviechat_desktop.ui.app_resources import icon
from moviechat_desktop.ui.player_widget import RATES
from moviechat_desktop.ui.timeline_slider import TimelineSlider


class TransportBar(QWidget):
    play_clicked = Signal()
    seek_requested = Signal(float)
    volume_requested = Signal(int)
    mute_clicked = Signal()
    rate_requested = Signal(float)
    frame_step_clicked = Signal()
    snapshot_clicked = Signal()
    fullscreen_clicked = Signal()
    chat_toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("TransportBar")
        self._duration = 0.0
        self.slider = TimelineSlider(self)
        self.slider.seek_requested.connect(self.seek_requested)
        self.elapsed = QLabel("00:00", self)
        self.total = QLabel("00:00", self)
        for label in (self.elapsed, self.total):
            label.setObjectName("TimeLabel")

        self._icons = {n: icon(n) for n in ("play", "pause", "volume", "muted")}
        self.play_button = self._button("Play / pause (Space)", self._icons["play"], "Play")
        self.play_button.clicked.connect(self.play_clicked)
        self.frame_button = self._button("Next frame (E)", icon("next-frame"), "Frame")
        self.frame_button.clicked.connect(self.frame_step_clicked)
        self.mute_button = self._button("Mute (M)", self._icons["volume"], "Mute")
        self.mute_button.clicked.connect(self.mute_clicked)
        self.volume = QSlider(Qt.Orientation.Horizontal, self)
        self.volume.setRange(0, 100)
        self.volume.setFixedWidth(90)
        self.volume.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.volume.setToolTip("Volume (↑/↓, mouse wheel)")
        self.volume.valueChanged.connect(self.volume_requested)
        self.speed_button = self._button("Playback speed (+ / − / =)", text="1×")
        self.speed_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.speed_button)
        for rate in RATES:
            menu.addAction(f"{rate:g}×", lambda r=rate: self.rate_requested.emit(r))
        self.speed_button.setMenu(menu)
        self.snapshot_button = self._button("Snapshot (Shift+S)", icon("snapshot"), "Snapshot")
        self.snapshot_button.clicked.connect(self.snapshot_clicked)
        self.fullscreen_button = self._button(
            "Fullscreen (F, double-click)", icon("fullscreen"), "Fullscreen"
        )
        self.fullscreen_button.clicked.connect(self.fullscreen_clicked)
        self.chat_button = self._button("Show or hide the assistant (Ctrl+J)", icon("chat"), "Chat")
        self.chat_button.setText("Chat")
        self.chat_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.chat_button.setCheckable(True)
        self.chat_button.setChecked(True)
        self.chat_button.toggled.connect(self.chat_toggled)

        seek_row = QHBoxLayout()
        seek_row.addWidget(self.elapsed)
        seek_row.addWidget(self.slider, 1)
        seek_row.addWidget(self.total)
        buttons = QHBoxLayout()
        for widget in (self.play_button, self.frame_button, self.mute_button, self.volume):
            buttons.addWidget(widget)
        buttons.addStretch(1)
        for widget in (
            self.speed_button,
            self.snapshot_button,
            self.fullscreen_button,
            self.chat_button,
        ):
            buttons.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 2, 8, 4)
        layout.setSpacing(2)
        layout.addLayout(seek_row)
        layout.addLayout(buttons)
        self._playing = False
        self.muted = False
        self.set_volume(80, False)

    def _button(self, tip: str, icon: QIcon | None = None, text: str = "") -> QToolButton:
        button = QToolButton(self)
        button.setToolTip(tip)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        button.setAutoRaise(True)
        if icon is not None and not icon.isNull():
            button.setIcon(icon)
        else:
            button.setText(text)
        return button

    def _set_icon(self, button: QToolButton, name: str) -> None:
        if not self._icons[name].isNull():
            button.setIcon(self._icons[name])
        else:
            button.setText(name.capitalize())

    # ------------------------------------------------------------------ state
    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def hours(self) -> bool:
        return self._duration >= 3600

    def set_playing(self, playing: bool) -> None:
        self._playing = playing
        self._set_icon(self.play_button, "pause" if playing else "play")

    def set_duration(self, seconds: float) -> None:
        self._duration = seconds
        self.slider.set_duration(seconds)
        self.total.setText(format_time(seconds, hours=self.hours))

    def set_position(self, seconds: float) -> None:
        self.slider.set_position(seconds)
        self.elapsed.setText(format_time(seconds, hours=self.hours))

    def set_volume(self, volume: int, muted: bool) -> None:
        self.volume.blockSignals(True)
        self.volume.setValue(volume)
        self.volume.blockSignals(False)
        self.muted = muted
        self._set_icon(self.mute_button, "muted" if muted else "volume")

    def set_rate(self, rate: float) -> None:
        self.speed_button.setText(f"{rate:g}×")

    def set_covered(self, ranges: tuple[tuple[float, float], ...], duration_s: float) -> None:
        self.slider.set_covered(ranges, duration_s)

    def set_heard(self, ranges: tuple[tuple[float, float], ...]) -> None:
        self.slider.set_heard(ranges)

    def set_gaps(self, ranges: tuple[tuple[float, float], ...]) -> None:
        self.slider.set_gaps(ranges)

    def set_chat_visible(self, visible: bool) -> None:
        self.chat_button.blockSignals(True)
        self.chat_button.setChecked(visible)
        self.chat_button.blockSignals(False)
