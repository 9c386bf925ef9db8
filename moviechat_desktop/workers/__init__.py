"""Qt glue between the engine and the UI: worker threads and the qasync bridge."""

from moviechat_desktop.workers import qt_fixes as _qt_fixes

_qt_fixes.install()  # PySide6 6.12.0's Signal.emit reference bug (see qt_fixes)
