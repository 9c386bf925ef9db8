"""Qt widgets. Never imports torch/transformers at module level (import-linter contract)."""

from moviechat_desktop.workers import qt_fixes as _qt_fixes

_qt_fixes.install()  # PySide6 6.12.0's Signal.emit reference bug (see workers/qt_fixes.py)
