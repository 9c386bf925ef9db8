"""The main window's menus and the player's keyboard shortcuts (VLC's conventions).

Player shortcuts (Space, arrows, M, F, E, +/−/=, Shift+S, V, Esc) are registered with
``WidgetWithChildrenShortcut`` on the player pane only: they act while the focus is in the
video or its controls, and never while typing in the chat. File and Assistant actions
(Ctrl+O, Ctrl+Q, / to ask, Ctrl+. to stop an answer…) work from anywhere in the window.
Help → Keyboard shortcuts lists them all (ui/shortcuts_dialog.py reads these actions).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence

from moviechat_desktop.timefmt import format_time
from moviechat_desktop.ui import player_extras as extras

if TYPE_CHECKING:
    from moviechat_desktop.ui.main_window import MainWindow

SEEK_STEPS = (("", 10), ("Shift+", 3), ("Ctrl+", 60))  # modifier → seconds
VOLUME_STEP = 5


class WindowActions:
    """Builds the menu bar and the player shortcuts of ``window``; keeps the QActions."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.player_actions: list[QAction] = []
        w = window
        player = w.player
        menu_bar = w.menuBar()

        file_menu = menu_bar.addMenu("&File")
        self.open = self._global(file_menu, "&Open…", w.choose_file, QKeySequence.StandardKey.Open)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self.fill_recent_menu)
        self._global(file_menu, "Add &Subtitle File…", w.choose_subtitle_file)
        file_menu.addSeparator()
        self._global(file_menu, "&Quit", w.close, QKeySequence.StandardKey.Quit)

        playback = menu_bar.addMenu("&Playback")
        self.play_pause = self._player(playback, "Play / Pause", player.toggle_play, "Space")
        playback.addSeparator()

        def jump(seconds: float) -> None:
            extras.seek_and_show(player, player.position + seconds)

        for modifier, seconds in SEEK_STEPS:
            self._player(
                playback,
                f"Jump forward {seconds} s",
                lambda s=seconds: jump(s),
                f"{modifier}Right",
            )
            self._player(
                playback,
                f"Jump backward {seconds} s",
                lambda s=seconds: jump(-s),
                f"{modifier}Left",
            )
        self._player(playback, "Next frame", player.next_frame, "E")
        playback.addSeparator()
        self._player(playback, "Faster", lambda: player.step_rate(1), "+", "]")
        self._player(playback, "Slower", lambda: player.step_rate(-1), "-", "[")
        self._player(playback, "Normal speed", lambda: player.step_rate(0), "=")
        playback.addSeparator()
        up, down = (
            (lambda: player.change_volume(VOLUME_STEP)),
            (lambda: player.change_volume(-VOLUME_STEP)),
        )
        self._player(playback, "Volume up", up, "Up", "Ctrl+Up")
        self._player(playback, "Volume down", down, "Down", "Ctrl+Down")
        self._player(playback, "Mute", player.toggle_mute, "M")
        playback.addSeparator()
        self._player(playback, "Fullscreen", w.toggle_fullscreen, "F")
        self._player(playback, "Leave fullscreen", w.leave_fullscreen, "Esc")
        self._player(playback, "Snapshot", w.take_snapshot, "Shift+S")
        self._player(playback, "Next subtitle track", player.cycle_subtitles, "V")
        self.subtitle_menu = playback.addMenu("Subtitle trac&k")
        self.subtitle_menu.aboutToShow.connect(self.fill_subtitle_menu)
        self._player(
            playback,
            "Subtitles earlier (−50 ms)",
            lambda: extras.change_subtitle_delay(player, -1),
            "G",
        )
        self._player(
            playback,
            "Subtitles later (+50 ms)",
            lambda: extras.change_subtitle_delay(player, 1),
            "H",
        )
        self._player(playback, "Next audio track", lambda: extras.cycle_audio(player), "B")
        self.audio_menu = playback.addMenu("&Audio track")
        self.audio_menu.aboutToShow.connect(self.fill_audio_menu)
        self._player(playback, "Next aspect ratio", lambda: extras.cycle_aspect(player), "A")
        self.aspect_menu = playback.addMenu("Aspect &ratio")
        for aspect in extras.ASPECTS:
            self.aspect_menu.addAction(
                aspect or "Default", lambda a=aspect: extras.set_aspect(player, a)
            )
        self.chapter_menu = playback.addMenu("C&hapters")
        self.chapter_menu.aboutToShow.connect(self.fill_chapter_menu)
        playback.addSeparator()
        self._player(playback, "Next film in the folder", lambda: w.open_sibling(1), "N")
        self._player(playback, "Previous film in the folder", lambda: w.open_sibling(-1), "P")

        assistant = menu_bar.addMenu("&Assistant")
        self._global(assistant, "&Weights…", w.open_weights_dialog)
        self._global(assistant, "&Settings…", w.open_settings_dialog)
        assistant.addSeparator()
        self.ask = self._global(assistant, "&Ask a question", w.focus_question, "/")
        self.stop_answer = self._global(
            assistant, "S&top the answer", w.controller.stop_current, "Ctrl+."
        )
        self._global(assistant, "&New conversation", w.new_conversation, "Ctrl+Shift+N")
        self.conversations_menu = assistant.addMenu("&Conversations")
        self.conversations_menu.aboutToShow.connect(self.fill_conversations_menu)
        self._global(assistant, "&Export chat…", w.export_chat, "Ctrl+E")
        self.show_chat = self._global(assistant, "Show &chat", w.set_chat_visible, "Ctrl+J")
        self.show_chat.setCheckable(True)
        self.show_chat.setChecked(True)
        assistant.addSeparator()
        self._global(assistant, "C&lear memory cache…", w.clear_cache)

        help_menu = menu_bar.addMenu("&Help")
        self._global(help_menu, "&Keyboard shortcuts", w.show_shortcuts, "F1")
        self._global(help_menu, "&About MovieChat Desktop", w.show_about)

    def _global(self, menu, text: str, slot: Callable, shortcut=None) -> QAction:
        action = QAction(text, self.window)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(
            lambda checked=False: slot(checked) if action.isCheckable() else slot()
        )
        menu.addAction(action)
        self.window.addAction(action)  # its key works in fullscreen too (menu bar hidden)
        return action

    def _player(self, menu, text: str, slot: Callable[[], object], *keys: str) -> QAction:
        action = QAction(text, self.window)
        action.setShortcuts([QKeySequence(k) for k in keys])
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.triggered.connect(lambda _checked=False: slot())  # drop "checked"
        menu.addAction(action)
        self.window.player_pane.addAction(action)
        self.player_actions.append(action)
        return action

    def _fill_tracks(self, menu, tracks, current: int, choose: Callable[[int], object]) -> None:
        menu.clear()
        for track_id, name in tracks:
            action = menu.addAction(name)
            action.setCheckable(True)
            action.setChecked(track_id == current)
            action.triggered.connect(lambda _checked=False, t=track_id: choose(t))
        if not tracks:
            menu.addAction("(none in this film)").setEnabled(False)

    def fill_chapter_menu(self) -> None:
        """The film's chapters; the one playing is checked; a click goes there."""
        menu, player = self.chapter_menu, self.window.player
        menu.clear()
        listed = extras.chapters(player)
        hours = player.duration >= 3600
        current = max((i for i, (s, _) in enumerate(listed) if s <= player.position), default=-1)
        for index, (start, title) in enumerate(listed):
            action = menu.addAction(f"{format_time(start, hours=hours)}  {title}")
            action.setCheckable(True)
            action.setChecked(index == current)
            action.triggered.connect(
                lambda _checked=False, s=start: extras.seek_and_show(player, s)
            )
        if not listed:
            menu.addAction("(this film has no chapters)").setEnabled(False)

    def fill_audio_menu(self) -> None:
        player = self.window.player
        current = player._player.audio_get_track() if player._player is not None else -1
        self._fill_tracks(
            self.audio_menu,
            extras.audio_tracks(player),
            current,
            lambda t: extras.set_audio_track(player, t),
        )

    def fill_subtitle_menu(self) -> None:
        player = self.window.player
        current = player._player.video_get_spu() if player._player is not None else -1
        self._fill_tracks(
            self.subtitle_menu,
            extras.subtitle_tracks(player),
            current,
            lambda t: extras.set_subtitle_track(player, t),
        )

    def fill_conversations_menu(self) -> None:
        """The open film's saved conversations, newest first; the current one is checked."""
        menu = self.conversations_menu
        menu.clear()
        controller = self.window.controller
        if self.window.film_path is None:
            menu.addAction("(open a film first)").setEnabled(False)
            return
        summaries = sorted(controller.conversations, key=lambda c: c.started, reverse=True)
        for summary in summaries:
            started = datetime.fromtimestamp(summary.started).strftime("%Y-%m-%d %H:%M")
            title = summary.title or "(no question)"
            action = menu.addAction(f"{started} — {title} ({summary.messages} messages)")
            action.setCheckable(True)
            action.setChecked(summary.id == controller.conversation_id)
            action.triggered.connect(
                lambda _checked=False, cid=summary.id: self.window.open_conversation(cid)
            )
        if not summaries:
            menu.addAction("(no saved conversations about this film)").setEnabled(False)

    def fill_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        recent = self.window.history.recent()
        for path in recent:
            action = menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.triggered.connect(lambda checked=False, p=path: self.window.open_file(p))
        if recent:
            menu.addSeparator()
            menu.addAction("Clear list", self.window.history.clear_recent)
        else:
            menu.addAction("(no recent films)").setEnabled(False)
