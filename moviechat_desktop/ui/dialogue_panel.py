"""The Dialogue tab beside the chat: the film's timed lines, the one being spoken highlighted.

It shows what the assistant reads (``engine.dialogue.lines.Dialogue``, sent by the model
worker's ``dialogue_changed``): where the lines come from ("Subtitles: film.en.srt",
"Embedded track 2 (eng)", "Speech: 34% recognised"), the lines in time order with the
player's times, a search box that filters as you type, and a click on a line seeks there.
The current line follows the film (``set_position``, called with the player's clock).

A two-hour film has ~1500-2000 lines, so the list is a model and a view with one-line rows of
uniform height (a word-wrapped list widget took ~0.5 s to fill and ~ms per clock tick); the
full text of a long line is its tooltip. Recognised speech only grows: new lines are appended.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QFont, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QLabel,
    QLineEdit,
    QListView,
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
_Index = QModelIndex | QPersistentModelIndex


class DialogueLinesModel(QAbstractListModel):
    """The lines as rows ``"01:12  Speaker: text"``; the current row is bold."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.texts: list[str] = []
        self.starts: list[float] = []
        self.current = -1
        self._bold = QFont()
        self._bold.setBold(True)
        self.highlight = QBrush(QPalette().color(QPalette.ColorRole.Highlight).lighter(170))

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.texts)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row = index.row()
        if not index.isValid() or not 0 <= row < len(self.texts):
            return None
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return self.texts[row]
        if role == TIME_ROLE:
            return self.starts[row]
        if row == self.current:
            if role == Qt.ItemDataRole.FontRole:
                return self._bold
            if role == Qt.ItemDataRole.BackgroundRole:
                return self.highlight
        return None

    def set_lines(self, lines: list[Any], hours: bool) -> None:
        """Show ``lines`` (time order); appends when they only add to what is shown."""
        texts = [_row_text(line, hours) for line in lines]
        known = len(self.texts)
        if known and len(texts) >= known and texts[:known] == self.texts:
            if len(texts) > known:
                self.beginInsertRows(QModelIndex(), known, len(texts) - 1)
                self.texts, self.starts = texts, [line.start_s for line in lines]
                self.endInsertRows()
            return
        self.beginResetModel()
        self.texts, self.starts = texts, [line.start_s for line in lines]
        self.current = -1
        self.endResetModel()

    def set_current(self, row: int) -> None:
        old, self.current = self.current, row
        for changed in (old, row):
            if 0 <= changed < len(self.texts):
                index = self.index(changed)
                roles = [Qt.ItemDataRole.FontRole, Qt.ItemDataRole.BackgroundRole]
                self.dataChanged.emit(index, index, roles)


class _WordFilter(QSortFilterProxyModel):
    """Rows holding every word typed (case-insensitive, any order)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.words: list[str] = []

    def set_words(self, text: str) -> None:
        if not hasattr(self, "beginFilterChange"):  # Qt before 6.10
            self.words = text.casefold().split()
            self.invalidateFilter()
            return
        self.beginFilterChange()  # Qt 6.10+: invalidateFilter() is deprecated
        self.words = text.casefold().split()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:
        if not self.words:
            return True
        model = self.sourceModel()
        assert isinstance(model, DialogueLinesModel)
        text = model.texts[source_row].casefold()
        return all(word in text for word in self.words)


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
        self.source.activated.connect(lambda _i: self.source_chosen.emit(self.chosen_source()))
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search the dialogue")
        self.search.setClearButtonEnabled(True)
        self.model = DialogueLinesModel(self)
        self.filter = _WordFilter(self)
        self.filter.setSourceModel(self.model)
        self.search.textChanged.connect(self.filter.set_words)
        self.lines = QListView()
        self.lines.setModel(self.filter)
        self.lines.setUniformItemSizes(True)
        self.lines.setWordWrap(False)
        self.lines.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.lines.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.lines.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.lines.clicked.connect(self._clicked)
        self.lines.activated.connect(self._clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.source_label)
        layout.addWidget(self.use_dialogue)
        layout.addWidget(self.source)
        layout.addWidget(self.search)
        layout.addWidget(self.lines, 1)
        self.dialogue: Any = None
        self._position = 0.0

    # ------------------------------------------------------------------ content
    def set_dialogue(self, dialogue: Any) -> None:
        """Show ``dialogue`` (a ``Dialogue``; None: no film). Keeps the search text."""
        self.dialogue = dialogue
        self.source_label.setText(_describe(dialogue))
        lines = sorted((() if dialogue is None else dialogue.lines), key=lambda ln: ln.start_s)
        hours = bool(lines) and lines[-1].start_s >= 3600
        self.model.set_lines(lines, hours)
        self.set_position(self._position, force=True)

    def line_count(self) -> int:
        return self.model.rowCount()

    def row_text(self, row: int) -> str:
        return self.model.texts[row]

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
        return self.model.current

    def is_highlighted(self, row: int) -> bool:
        index = self.model.index(row)
        font = self.model.data(index, Qt.ItemDataRole.FontRole)
        background = self.model.data(index, Qt.ItemDataRole.BackgroundRole)
        return font is not None and font.bold() and background is not None

    def set_position(self, seconds: float, force: bool = False) -> None:
        """Highlight the line the film is at (cheap: called with every clock tick)."""
        self._position = seconds
        row = bisect_right(self.model.starts, seconds) - 1
        if row == self.model.current and not force:
            return
        self.model.set_current(row)  # bold on a highlight (no selection: it costs ms a tick)
        if row < 0:
            return
        view_index = self.filter.mapFromSource(self.model.index(row))
        if view_index.isValid() and not self.lines.underMouse():
            self.lines.scrollTo(view_index, QAbstractItemView.ScrollHint.PositionAtCenter)

    # ------------------------------------------------------------------ search and seek
    def visible_rows(self) -> list[int]:
        """The lines the search leaves shown (rows of the whole list)."""
        return [
            self.filter.mapToSource(self.filter.index(i, 0)).row()
            for i in range(self.filter.rowCount())
        ]

    def view_rect(self, row: int):
        """Where line ``row`` is drawn in the list's viewport (for tests and tooltips)."""
        return self.lines.visualRect(self.filter.mapFromSource(self.model.index(row)))

    def _clicked(self, view_index: QModelIndex) -> None:
        start = self.filter.data(view_index, TIME_ROLE)
        if start is not None:
            self.seek_requested.emit(float(start))


def _row_text(line: Any, hours: bool) -> str:
    said = f"{line.speaker}: {line.text}" if line.speaker else line.text
    return f"{format_time(line.start_s, hours=hours)}  {' '.join(said.split())}"


def _describe(dialogue: Any) -> str:
    if dialogue is None:
        return "No film open"
    if dialogue.source == "none":
        return dialogue.label or "No dialogue"
    count = len(dialogue.lines)
    return f"{dialogue.label} · {count} line{'s' if count != 1 else ''}"
