"""The one function that shows any error to the user (``Cancelled`` is never shown).

Boxes are window-modal but opened with ``open()``, not ``exec()``: the event loop (and the
film) keep running behind them, and tests can find and close them.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from moviechat_desktop.workers.messages import ErrorReport

log = logging.getLogger(__name__)


def show_error(parent: QWidget | None, error: ErrorReport | BaseException) -> QMessageBox | None:
    """Show ``error`` in a message box; returns the box (None for a cancellation)."""
    report = error if isinstance(error, ErrorReport) else ErrorReport.from_exception(error)
    if report.cancelled:
        log.debug("cancelled: %s", report.message)
        return None
    log.info("showing error %s: %s", report.kind, report.message)
    box = QMessageBox(parent)
    box.setObjectName("ErrorBox")
    box.setIcon(QMessageBox.Icon.Warning if not report.unexpected else QMessageBox.Icon.Critical)
    box.setWindowTitle(report.title)
    box.setText(f"<b>{report.title}</b>")
    box.setInformativeText(report.message)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.setProperty("error_kind", report.kind)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def show_notice(parent: QWidget | None, title: str, message: str) -> QMessageBox:
    """An informational box (not an error), shown the same non-blocking way."""
    box = QMessageBox(QMessageBox.Icon.Information, title, message, parent=parent)
    box.setObjectName("NoticeBox")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
