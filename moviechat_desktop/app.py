"""GUI entry point: the QApplication on a qasync event loop, and the main window.

The event loop is a qasync ``QEventLoop`` so UI code can ``await`` an answer as it streams
(see ``workers/answer_stream.py``); Qt and asyncio share the GUI thread.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)


def _choose_qt_platform() -> None:
    """No display → offscreen (tests, CI); Wayland with XWayland → xcb, because VLC can only
    draw into X11 windows on Linux."""
    if "QT_QPA_PLATFORM" in os.environ or not sys.platform.startswith("linux"):
        return
    if os.environ.get("DISPLAY"):
        if os.environ.get("WAYLAND_DISPLAY"):
            os.environ["QT_QPA_PLATFORM"] = "xcb"
    elif not os.environ.get("WAYLAND_DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


def run_gui(video: str | None = None) -> int:
    """Open the player window (optionally with ``video``); returns the exit status."""
    import decord  # noqa: F401  (before any Qt GUI import: see ENVIRONMENT.md)

    _choose_qt_platform()
    import qasync
    from PySide6.QtWidgets import QApplication

    from moviechat_desktop.ui.app_resources import app_icon, dark_palette
    from moviechat_desktop.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from moviechat_desktop.engine.settings import load_settings
    from moviechat_desktop.ui import single_instance

    one_window = load_settings().player.one_window
    if one_window and single_instance.forward(video):
        return 0  # the running window took the file (VLC's and mpv's one-instance behaviour)
    app.setApplicationName("MovieChat Desktop")
    app.setOrganizationName("MovieChat Desktop")
    app.setDesktopFileName("io.github.moviechat_desktop.MovieChatDesktop")
    app.setWindowIcon(app_icon())
    app.setStyle("Fusion")  # the same look everywhere; dark like a video player
    app.setPalette(dark_palette())
    loop = qasync.QEventLoop(app)
    import asyncio

    asyncio.set_event_loop(loop)
    window = MainWindow()
    instance = single_instance.serve(window) if one_window else None
    window.show()
    if video:
        window.open_file(video)
    with loop:
        code = loop.run_forever()
    if instance is not None:
        instance.close()  # a launch from now on opens its own window
    if window.worker.isRunning():
        # The model worker could not stop in time (e.g. still reading weights from disk):
        # Qt would abort when its QThread is destroyed while running, so leave at once.
        log.warning("exiting while the model worker is still busy")
        logging.shutdown()
        os._exit(int(code or 0))
    return int(code or 0)
