"""Shipped icons and stylesheets, found with ``importlib.resources`` (never the cwd)."""

from __future__ import annotations

import logging
from importlib.resources import files

from PySide6.QtGui import QColor, QIcon, QPalette, QPixmap

log = logging.getLogger(__name__)

PACKAGE = "moviechat_desktop.resources"


def read_stylesheet(name: str = "app.qss") -> str:
    """The text of ``resources/styles/<name>``; "" (and a warning) if it is missing."""
    try:
        return files(PACKAGE).joinpath("styles", name).read_text("utf-8")
    except (FileNotFoundError, ModuleNotFoundError, OSError) as err:
        log.warning("stylesheet %s not found: %s", name, err)
        return ""


def icon(name: str) -> QIcon:
    """``resources/icons/<name>.svg`` as a QIcon; a null icon (and a warning) if unusable."""
    try:
        data = files(PACKAGE).joinpath("icons", f"{name}.svg").read_bytes()
    except (FileNotFoundError, ModuleNotFoundError, OSError) as err:
        log.warning("icon %s not found: %s", name, err)
        return QIcon()
    pixmap = QPixmap()
    if not pixmap.loadFromData(data, "SVG"):
        log.warning("icon %s: the SVG image plugin is missing", name)
        return QIcon()
    return QIcon(pixmap)


def app_icon() -> QIcon:
    """The app icon (an SVG rendered by Qt's image plugins)."""
    return icon("moviechat")


def dark_palette() -> QPalette:
    """The colours of ``app.qss`` as a palette, for what the stylesheet leaves to the style
    (spin boxes, check boxes, scroll bars, dialogs of other modules)."""
    palette = QPalette()
    roles = QPalette.ColorRole
    for role, colour in (
        (roles.Window, "#22252b"),
        (roles.WindowText, "#e6e8eb"),
        (roles.Base, "#17191d"),
        (roles.AlternateBase, "#1f2227"),
        (roles.Text, "#e6e8eb"),
        (roles.Button, "#2b2f36"),
        (roles.ButtonText, "#e6e8eb"),
        (roles.Highlight, "#2d4f7c"),
        (roles.HighlightedText, "#ffffff"),
        (roles.ToolTipBase, "#25282e"),
        (roles.ToolTipText, "#e6e8eb"),
        (roles.PlaceholderText, "#80858e"),
        (roles.Link, "#7fb6ff"),
    ):
        palette.setColor(role, QColor(colour))
    disabled = QPalette.ColorGroup.Disabled
    for role in (roles.WindowText, roles.Text, roles.ButtonText):
        palette.setColor(disabled, role, QColor("#6b7079"))
    return palette
