"""The Dialogue tab beside the chat: the film's timed lines, the one being spoken highlighted.

It shows what the assistant reads (``engine.dialogue.lines.Dialogue``, sent by the model
worker's ``dialogue_changed``): where the lines come from ("Subtitles: film.en.srt",
"Embedded track 2 (eng)", "Speech: 34% recognised"), the lines in time order with the
player's times, a search box that filters as you type, and a click on a line seeks there.
The current line follows the film (``set_position``, called with the player's clock).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from moviechat_desktop.timefmt import format_time

TIME_ROLE = Qt.ItemDataRole.UserRole  # a row's start time in seconds
SOURCES = (
    ("auto", "Automatic"),
    ("file", "Subtitle file added"),
    ("sidecar", "Subtitle file beside the film"),
    ("embedded", "Subtitle track in the film"),
    ("speech", "Speech recognition"),
    ("none", "None"),
)


class DialoguePanel(QWidget):
    seek_requested = Signal(float)  # seconds: a line was clicked
    enabled_toggled = Signal(bool)  # "Use dialogue in answers" was switched
    source_chosen = Signal(str)  # the user picked where dialogue comes from (SOURCES)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("DialoguePanel")
        self.source_label = QLabel("No film open")
        self.source_label.setWordWrap(True)
        self.use_dialogue = QCheckBox("Use dialogue in answers")
        self.use_dialogue.setChecked(True)
        self.use_dialogue.toggled.connect(self.enabled_toggled)
        self.source = QComboBox()
        for value, text in SOURCES:
            self.source.addItem(text, value)
        self.source.setToolTip("Where the assistant's dialogue comes from")
        self.source.activated.connect(lambda _i: self.source_chosen.emit(self.source.currentData()))
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search the dialogue")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._filter)
        self.lines = QListWidget()
        self.lines.setWordWrap(True)
        self.lines.setUniformItemSizes(False)
        self.lines.itemClicked.connect(self._clicked)
        self.lines.itemActivated.connect(self._clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.source_label)
        layout.addWidget(self.use_dialogue)
        layout.addWidget(self.source)
        layout.addWidget(self.search)
        layout.addWidget(self.lines, 1)
        self.dialogue: Any = None
        self._starts: list[float] = []
        self._current = -1
        self._position = 0.0

    # ------------------------------------------------------------------ content
    def set_dialogue(self, dialogue: Any) -> None:
        """Show ``dialogue`` (a ``Dialogue``; None: no film). Keeps the search text."""
        self.dialogue = dialogue
        self.source_label.setText(_describe(dialogue))
        lines = () if dialogue is None else dialogue.lines
        hours = bool(lines) and max(line.start_s for line in lines) >= 3600
        self.lines.setUpdatesEnabled(False)
        self.lines.clear()
        ordered = sorted(lines, key=lambda line: line.start_s)
        for line in ordered:
            said = f"{line.speaker}: {line.text}" if line.speaker else line.text
            item = QListWidgetItem(f"{format_time(line.start_s, hours=hours)}  {said}")
            item.setData(TIME_ROLE, float(line.start_s))
            item.setToolTip(f"Click to go to {format_time(line.start_s, hours=hours)}")
            self.lines.addItem(item)
        self.lines.setUpdatesEnabled(True)
        self._starts = [line.start_s for line in ordered]
        self._current = -1
        self._filter(self.search.text())
        self.set_position(self._position)

    def chosen_source(self) -> str:
        return str(self.source.currentData())

    def set_source(self, source: str) -> None:
        """Reflect the chosen source without emitting ``source_chosen``."""
        self.source.setCurrentIndex(max(0, self.source.findData(source)))

    def set_use_dialogue(self, enabled: bool) -> None:
        """Reflect the setting without emitting ``enabled_toggled``."""
        self.use_dialogue.blockSignals(True)
        self.use_dialogue.setChecked(enabled)
        self.use_dialogue.blockSignals(False)

    # ------------------------------------------------------------------ playback
    def current_row(self) -> int:
        """The row of the line being spoken (the last one started), -1 before the first."""
        return self._current

    def set_position(self, seconds: float) -> None:
        """Highlight the line the film is at (cheap: called with every clock tick)."""
        self._position = seconds
        row = bisect_right(self._starts, seconds) - 1
        if row == self._current:
            return
        self._mark(self._current, False)
        self._current = row
        self._mark(row, True)
        item = self.lines.item(row) if row >= 0 else None
        if item is not None and not item.isHidden() and not self.lines.underMouse():
            self.lines.scrollToItem(item, QListWidget.ScrollHint.PositionAtCenter)

    def _mark(self, row: int, on: bool) -> None:
        item = self.lines.item(row) if row >= 0 else None
        if item is None:
            return
        font = QFont(item.font())
        font.setBold(on)
        item.setFont(font)
        item.setSelected(on)

    # ------------------------------------------------------------------ search and seek
    def visible_rows(self) -> list[int]:
        return [i for i in range(self.lines.count()) if not self.lines.item(i).isHidden()]

    def _filter(self, text: str) -> None:
        words = text.casefold().split()
        for i in range(self.lines.count()):
            item = self.lines.item(i)
            shown = all(w in item.text().casefold() for w in words)
            item.setHidden(not shown)

    def _clicked(self, item: QListWidgetItem) -> None:
        self.seek_requested.emit(float(item.data(TIME_ROLE)))


def _describe(dialogue: Any) -> str:
    if dialogue is None:
        return "No film open"
    if dialogue.source == "none":
        return dialogue.label or "No dialogue"
    count = len(dialogue.lines)
    return f"{dialogue.label} · {count} line{'s' if count != 1 else ''}"
