"""The main window (placeholder until the player lands)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QMainWindow


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("MovieChat Desktop")
        self.resize(1100, 650)
        self.setCentralWidget(QLabel("MovieChat Desktop"))

    def open_file(self, path: str) -> None:
        self.setWindowTitle(f"MovieChat Desktop — {path}")
