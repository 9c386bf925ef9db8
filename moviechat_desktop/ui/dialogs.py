"""The main window's dialogs: file choosers, weights, settings, export, clearing the memory
cache, about.

File choosers use Qt's static helpers (tests monkeypatch ``QFileDialog``); the other
dialogs are opened non-blocking with ``open()`` and report back through ``finished``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox

from moviechat_desktop import __version__
from moviechat_desktop.ui.error_display import show_notice
from moviechat_desktop.workers.messages import ErrorReport

if TYPE_CHECKING:
    from moviechat_desktop.ui.main_window import MainWindow

log = logging.getLogger(__name__)

VIDEO_FILTER = (
    "Videos (*.mp4 *.mkv *.avi *.mov *.webm *.m4v *.mpg *.mpeg *.wmv *.flv *.ts *.ogv);;"
    "All files (*)"
)
SUBTITLE_FILTER = "Subtitles (*.srt *.ass *.ssa *.vtt *.sub *.smi);;All files (*)"


def _start_dir(film: str | None) -> str:
    """The open film's folder, else the Videos folder, else home: always a folder that
    exists (a missing one would be taken by the file dialog as a file name to pre-fill)."""
    for candidate in (Path(film).parent if film else None, Path(platformdirs.user_videos_dir())):
        if candidate is not None and candidate.is_dir():
            return str(candidate)
    return str(Path.home())


def choose_video(window: MainWindow, film: str | None) -> str:
    path, _ = QFileDialog.getOpenFileName(window, "Open a film", _start_dir(film), VIDEO_FILTER)
    return path


def choose_subtitles(window: MainWindow, film: str | None) -> str:
    path, _ = QFileDialog.getOpenFileName(
        window, "Add a subtitle file", _start_dir(film), SUBTITLE_FILTER
    )
    return path


def snapshot_dir() -> Path:
    return Path(platformdirs.user_pictures_dir()) / "MovieChat"


def open_weights_dialog(window: MainWindow) -> QDialog | None:
    """The weights dialog (another module); a notice instead if it cannot be imported."""
    try:
        from moviechat_desktop.ui.weights_dialog import WeightsDialog
    except ImportError as err:
        log.warning("weights dialog unavailable: %s", err)
        window.last_error_box = show_notice(
            window,
            "Model weights",
            "The weights dialog is not available in this build. From a terminal run\n\n"
            "    moviechat-desktop weights status\n    moviechat-desktop weights download\n\n"
            "then restart MovieChat Desktop.",
        )
        return None
    existing = getattr(window, "weights_dialog", None)
    if existing is not None:  # one dialog per window: it keeps its transfers and progress
        existing.refresh()
        existing.open()
        existing.raise_()
        existing.activateWindow()
        return existing
    dialog = WeightsDialog(parent=window)
    changed = getattr(dialog, "weights_changed", None)
    if changed is not None:  # the weights may have changed: try the model again
        changed.connect(window.weights_changed)
    dialog.finished.connect(lambda _result: window.weights_changed())
    dialog.open()
    window.weights_dialog = dialog
    return dialog


def open_settings_dialog(window: MainWindow) -> QDialog:
    from moviechat_desktop.ui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(window.settings, window)
    if getattr(window, "answer_limit", None):
        dialog.set_answer_limit(window.answer_limit)
    dialog.clear_cache_requested.connect(window.clear_cache)
    duration = getattr(window.film_info, "duration_s", 0.0) or 0.0
    dialog.set_film_estimate(duration, getattr(window, "watch_speed", 0.0))
    dialog.accepted.connect(lambda: _settings_accepted(window, dialog))
    dialog.open()
    return dialog


def _settings_accepted(window: MainWindow, dialog) -> None:
    from moviechat_desktop.engine.settings import save_settings

    new = dialog.settings()
    try:
        save_settings(new)
    except OSError as err:
        window.show_error(ErrorReport.simple("Settings not saved", str(err), "OSError"))
    window.apply_settings(new)


def export_chat(window: MainWindow) -> Path | None:
    """Ask where, then write the conversation as Markdown; the path written, or None."""
    film = window.film_path
    suggested = (Path(film).stem if film else "moviechat") + " — chat.md"
    start = str(Path(_start_dir(film)) / suggested)
    path, _ = QFileDialog.getSaveFileName(window, "Export chat", start, "Markdown (*.md)")
    if not path:
        return None
    target = Path(path)
    if not target.suffix:
        target = target.with_suffix(".md")
    try:
        target.write_text(window.chat.to_markdown(film), "utf-8")
    except OSError as err:
        window.show_error(ErrorReport.simple("Export failed", f"{target}: {err}", "OSError"))
        return None
    window.statusBar().showMessage(f"Chat exported to {target}", 4000)
    return target


def confirm_clear_cache(window: MainWindow) -> QMessageBox:
    """Ask before deleting the cached memories; Yes asks the model worker to clear them."""
    box = QMessageBox(
        QMessageBox.Icon.Question,
        "Clear the memory cache",
        "Forget what the assistant has watched of every film?\n\n"
        "Films are watched again the next time they are opened. The film playing now keeps "
        "its memory, and conversations are not deleted.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        window,
    )
    box.setObjectName("ClearCacheBox")
    box.setInformativeText("Counting what it holds…")
    _count_cache(window, box)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.finished.connect(
        lambda result: (
            window.worker.clear_cache() if result == QMessageBox.StandardButton.Yes else None
        )
    )
    box.open()
    return box


def _count_cache(window: MainWindow, box: QMessageBox) -> None:
    """Fill in how much clearing frees, counted on a thread (a big cache is many files)."""
    from shiboken6 import isValid

    from moviechat_desktop.engine.store.saved_state import memory_cache_usage
    from moviechat_desktop.engine.weights.manifest import format_bytes
    from moviechat_desktop.workers.saved_state_worker import SavedStateWorker

    def counted(_seq: int, _root: str, usage) -> None:
        if not isValid(box):
            return  # answered and closed before the count ended
        if usage is None:
            box.setInformativeText("")
            return
        films, size = usage
        if films == 0:
            box.setInformativeText("The cache is empty: nothing to free.")
        else:
            what = "1 film" if films == 1 else f"{films} films"
            box.setInformativeText(f"It holds {what}: clearing frees up to {format_bytes(size)}.")

    counter = SavedStateWorker(0, "", lambda _root: memory_cache_usage(), window)
    counter.read.connect(counted)
    counter.finished.connect(counter.deleteLater)
    window.counters = getattr(window, "counters", set())
    window.counters.add(counter)
    counter.finished.connect(lambda: window.counters.discard(counter))
    counter.start()


def describe_cleared(result) -> str:
    """``ClearResult`` → the status bar's sentence."""
    from moviechat_desktop.engine.weights.manifest import format_bytes

    size = format_bytes(result.freed_bytes)
    films = "1 film" if result.removed == 1 else f"{result.removed} films"
    text = f"Memory cache cleared: {films} forgotten, {size} freed"
    if result.kept_in_use:
        text += f"; {result.kept_in_use} in use kept"
    return text + "."


def show_about(window: MainWindow) -> None:
    window.last_error_box = show_notice(
        window,
        "About MovieChat Desktop",
        f"MovieChat Desktop {__version__}\n\n"
        "A video player with an assistant that has watched the film with you.\n"
        "Playback by VLC; the assistant is MovieChat (CVPR 2024): EVA ViT-g + BLIP-2 Q-Former "
        "per frame, a sparse memory, a video Q-Former and Vicuna-7B, running on your computer.",
    )
