"""GUI entry point: create the QApplication and the main window."""

from __future__ import annotations


def run_gui(video: str | None = None) -> int:
    import os
    import sys

    import decord  # noqa: F401  (before any Qt GUI import: see ENVIRONMENT.md)

    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from moviechat_desktop.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("MovieChat Desktop")
    window = MainWindow()
    window.show()
    if video:
        window.open_file(video)
    return app.exec()
