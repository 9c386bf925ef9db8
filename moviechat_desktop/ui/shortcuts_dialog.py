"""Help → Keyboard shortcuts: every key of the window, read from its menus' actions.

The table is built from the QActions themselves (so it cannot drift from what the keys do),
plus the keys that belong to one widget (the question box, the resume bar) and the mouse.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QMenu,
    QMenuBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

_ARROWS = {"Left": "←", "Right": "→", "Up": "↑", "Down": "↓"}

# keys handled by one widget rather than by a menu action: (where, what, keys)
WIDGET_KEYS: tuple[tuple[str, str, str], ...] = (
    ("Question box", "Send the question", "Enter"),
    ("Question box", "New line", "Shift+Enter"),
    ("Question box", "Recall the last question (again: earlier ones; ↓ later ones)", "↑"),
    ("Question box", "Back to the video", "Esc"),
    ("Resume bar", "Continue where you left off (while the bar has the focus)", "Enter"),
    ("Window", "Next / previous control (the focused one is outlined)", "Tab, Shift+Tab"),
    ("Mouse", "Volume", "Wheel over the video"),
    ("Mouse", "Fullscreen", "Double-click on the video"),
)


def key_text(sequence: QKeySequence) -> str:
    """A key as the README and this window write it: "Shift+→", "Ctrl+.", "Space"."""
    text = sequence.toString(QKeySequence.SequenceFormat.PortableText)
    for name, arrow in _ARROWS.items():
        text = re.sub(rf"\b{name}\b", arrow, text)
    return text


def action_keys(action: QAction) -> str:
    return ", ".join(key_text(s) for s in action.shortcuts() if not s.isEmpty())


def _walk(menu: QMenu, where: str) -> Iterator[tuple[str, str, str]]:
    for action in menu.actions():
        if action.menu() is not None:
            yield from _walk(action.menu(), f"{where} › {action.menu().title().replace('&', '')}")
        elif action.shortcuts():
            yield where, action.text().replace("&", ""), action_keys(action)


def shortcut_rows(menu_bar: QMenuBar) -> list[tuple[str, str, str]]:
    """(menu, action, keys) for every action with a key, then the widgets' own keys."""
    rows: list[tuple[str, str, str]] = []
    for action in menu_bar.actions():
        if action.menu() is not None:
            rows.extend(_walk(action.menu(), action.menu().title().replace("&", "")))
    rows.extend(WIDGET_KEYS)
    return rows


class ShortcutsDialog(QDialog):
    def __init__(self, menu_bar: QMenuBar, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(620, 640)
        rows = shortcut_rows(menu_bar)
        self.table = QTableWidget(len(rows), 3, self)
        self.table.setHorizontalHeaderLabels(["Where", "What", "Keys"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        for row, values in enumerate(rows):
            for column, value in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(value))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        note = QLabel(
            "Player keys act while the video or its controls have the focus; keys typed in "
            "the question box never reach the player. <b>/</b> is volume down in mpv; here "
            "it jumps to the question box.",
            self,
        )
        note.setWordWrap(True)
        note.setTextFormat(Qt.TextFormat.RichText)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(note)
        layout.addWidget(buttons)

    def rows(self) -> list[tuple[str, str, str]]:
        table = self.table
        return [
            tuple(table.item(r, c).text() for c in range(3))  # type: ignore[misc]
            for r in range(table.rowCount())
        ]
