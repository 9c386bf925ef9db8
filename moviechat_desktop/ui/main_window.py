"""The main window: the video and its controls beside the chat, menus, status bar.

Opening a film: the file is validated by ``probe`` in a ``ProbeWorker`` (VLC would play a bad
file silently); only then does the player switch to it and the ``ModelWorker`` start watching
it. A bad file gets a dialog and the previous film keeps playing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QMainWindow, QSplitter, QTabWidget, QVBoxLayout, QWidget

from moviechat_desktop.engine.settings import AppSettings, load_settings
from moviechat_desktop.engine.store.saved_state import read_saved_state
from moviechat_desktop.ui import dialogs, player_extras, slot_errors
from moviechat_desktop.ui.app_resources import app_icon, read_stylesheet
from moviechat_desktop.ui.chat_controller import ChatController
from moviechat_desktop.ui.chat_panel import ChatPanel
from moviechat_desktop.ui.dialogue_panel import DialoguePanel
from moviechat_desktop.ui.error_display import show_error
from moviechat_desktop.ui.fullscreen_mode import FullscreenIdle
from moviechat_desktop.ui.pause_prefetch import PausePrefetch
from moviechat_desktop.ui.playback_history import PlaybackHistory
from moviechat_desktop.ui.player_widget import OPENING, PLAYING, PlayerWidget
from moviechat_desktop.ui.resume_bar import ResumeBar
from moviechat_desktop.ui.status_reporter import StatusReporter
from moviechat_desktop.ui.transport_bar import TransportBar
from moviechat_desktop.ui.window_actions import WindowActions
from moviechat_desktop.workers.messages import ErrorReport
from moviechat_desktop.workers.model_worker import ModelWorker
from moviechat_desktop.workers.probe_worker import ProbeFunction, ProbeWorker
from moviechat_desktop.workers.saved_state_worker import SavedStateWorker

log = logging.getLogger(__name__)

SUBTITLE_SUFFIXES = frozenset({".srt", ".ass", ".ssa", ".vtt", ".sub", ".idx", ".smi"})
AssistantMaker = Callable[[AppSettings], Any]
MINIMUM_SIZE = (720, 440)


def make_engine_assistant(settings: AppSettings) -> Any:
    """The engine client the window uses: the Assistant in a child process (called on the
    model worker's thread; the GUI process never imports torch)."""
    from moviechat_desktop.service.local_engine import LocalEngine
    from moviechat_desktop.service.remote_settings import (
        REMOTE_ENGINE,
        remote_engine_arguments,
        uses_server,
    )

    if uses_server(settings):  # the child process talks to the server (Settings → runs on)
        return LocalEngine(REMOTE_ENGINE, **remote_engine_arguments(settings))
    return LocalEngine(settings=settings)


class MainWindow(QMainWindow):
    film_opened = Signal(str)  # a validated film started playing
    open_failed = Signal(object)  # ErrorReport: the file was refused, nothing changed

    def __init__(
        self,
        *,
        settings: AppSettings | None = None,
        make_assistant: AssistantMaker | None = None,
        probe: ProbeFunction | None = None,
        vlc_args: list[str] | None = None,
        history: PlaybackHistory | None = None,
        load_model: bool = True,
    ) -> None:
        super().__init__()
        self.setWindowTitle("MovieChat Desktop")
        self.setWindowIcon(app_icon())
        self.setStyleSheet(read_stylesheet())
        self.resize(1280, 720)
        self.setMinimumSize(MINIMUM_SIZE[0], MINIMUM_SIZE[1])  # the video, controls, chat fit
        self.setAcceptDrops(True)
        self.settings = settings or load_settings()
        self.history = history or PlaybackHistory()
        self.film_path: str | None = None
        self.film_info: Any = None
        self.last_error_box: Any = None
        self.weights_dialog: Any = None
        self.answer_limit: int | None = None  # longest answer the model's context allows
        slot_errors.install(self)  # an exception escaping any slot is shown and logged
        self.snapshot_dir = Path(self.settings.player.snapshot_dir or dialogs.snapshot_dir())
        self._make_assistant = make_assistant or make_engine_assistant
        self._probe = probe
        self._probe_seq = 0
        self._probes: set[ProbeWorker | SavedStateWorker] = set()
        self._engine_status_seen = False
        self.watch_speed = 0.0  # frames per second the assistant last watched at
        self._missing_model_dir: str | None = None
        self._dialogs: list[QWidget] = []

        self.player = PlayerWidget(vlc_args=vlc_args)
        self.transport = TransportBar()
        self.resume_bar = ResumeBar()
        self.player_pane = QWidget()
        self.player_pane.setObjectName("PlayerPane")
        pane_layout = QVBoxLayout(self.player_pane)
        pane_layout.setContentsMargins(0, 0, 0, 0)
        pane_layout.setSpacing(0)
        pane_layout.addWidget(self.player, 1)
        pane_layout.addWidget(self.resume_bar)
        pane_layout.addWidget(self.transport)
        self.chat = ChatPanel()
        self.dialogue = DialoguePanel()
        self.dialogue.set_use_dialogue(self.settings.dialogue.enabled)
        self.dialogue.set_source(self.settings.dialogue.source)
        self.side = QTabWidget()  # the chat and the film's dialogue, side by side as tabs
        self.side.setObjectName("SideTabs")
        self.side.addTab(self.chat, "Chat")
        self.side.addTab(self.dialogue, "Dialogue")
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.player_pane)
        self.splitter.addWidget(self.side)
        self.splitter.setCollapsible(0, False)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([900, 380])
        self.setCentralWidget(self.splitter)

        self.worker = ModelWorker(self._assistant_factory(self.settings))
        self.controller = ChatController(self.chat, self.worker, self)
        self.pause_prefetch = PausePrefetch(self.player, self.worker, self)
        self.status = StatusReporter(self.statusBar(), self.chat)
        self.actions = WindowActions(self)
        self.fullscreen_idle = FullscreenIdle(self)
        self._connect()
        self.worker.start()
        if load_model:
            self.worker.load_model()
        self.player.surface.setFocus()

    def _assistant_factory(self, settings: AppSettings) -> Callable[[], Any]:
        make = self._make_assistant
        return lambda: make(settings)

    def _connect(self) -> None:
        p, t, c, w = self.player, self.transport, self.chat, self.worker

        def jump(seconds: float) -> None:  # a jump asked for: the OSD shows where, as VLC's
            player_extras.seek_and_show(p, seconds)

        p.position_changed.connect(t.set_position)
        p.duration_changed.connect(t.set_duration)
        p.state_changed.connect(self._read_chapters)
        p.state_changed.connect(lambda s: t.set_playing(s in (PLAYING, OPENING)))
        for signal in (p.position_changed, p.duration_changed, p.state_changed):
            signal.connect(self._playback_changed)
        p.volume_changed.connect(t.set_volume)
        p.rate_changed.connect(t.set_rate)
        p.message_posted.connect(lambda m: self.statusBar().showMessage(m, 2500))
        p.message_posted.connect(lambda m: player_extras.osd(p, player_extras.osd_for_message(m)))
        p.surface.double_clicked.connect(self.toggle_fullscreen)
        p.surface.wheel_scrolled.connect(lambda steps: p.change_volume(5 * steps))
        t.play_clicked.connect(p.toggle_play)
        t.seek_requested.connect(jump)
        t.volume_requested.connect(p.set_volume)
        t.mute_clicked.connect(p.toggle_mute)
        t.rate_requested.connect(p.set_rate)
        t.frame_step_clicked.connect(p.next_frame)
        t.snapshot_clicked.connect(self.take_snapshot)
        t.fullscreen_clicked.connect(self.toggle_fullscreen)
        t.chat_toggled.connect(self.set_chat_visible)
        self.resume_bar.resume_accepted.connect(jump)
        self.resume_bar.focus_released.connect(p.surface.setFocus)
        self.resume_bar.always_chosen.connect(self._always_resume)
        p.position_changed.connect(self.dialogue.set_position)
        p.subtitle_track_changed.connect(
            lambda track: w.set_dialogue_source(self.dialogue.chosen_source(), track=track)
        )
        self.dialogue.seek_requested.connect(jump)
        self.dialogue.enabled_toggled.connect(self._use_dialogue_toggled)
        self.dialogue.source_chosen.connect(w.set_dialogue_source)
        w.dialogue_changed.connect(self.dialogue.set_dialogue)
        w.film_closed.connect(lambda: self.dialogue.set_dialogue(None))
        w.answer_limit_known.connect(lambda limit: setattr(self, "answer_limit", limit))
        c.seek_requested.connect(jump)
        c.weights_requested.connect(self._model_help)
        c.export_requested.connect(self.export_chat)
        c.new_conversation_requested.connect(self.new_conversation)
        c.question.escaped.connect(self.player.surface.setFocus)
        self.controller.answer_failed.connect(lambda r: c.show_weights_notice(r.message))
        w.model_loading_started.connect(self.status.model_loading)
        w.model_loading_started.connect(lambda: c.set_model_ready(False))
        w.model_loaded.connect(lambda _label: c.set_model_ready(True))
        w.model_unavailable.connect(lambda _report: c.set_model_ready(True))
        w.model_loaded.connect(self.status.model_ready)
        # one slot: the status field's plain text and the missing-folder link are set together
        # (two queued slots let a test, or a repaint, see the plain text in between)
        w.model_unavailable.connect(self._model_unavailable)
        w.model_loaded.connect(lambda _label: self._model_unavailable(None))
        self.status.device_label.linkActivated.connect(lambda _href: self._model_help())
        w.encoding_progressed.connect(self._encoding_progressed)
        w.film_opened.connect(lambda _path, status: self._encoding_progressed(status))
        w.errored.connect(self.show_error)
        w.engine_restarted.connect(self.status.engine_restarted)
        w.engine_gave_up.connect(self.status.model_unavailable)
        w.cache_cleared.connect(
            lambda result: self.statusBar().showMessage(dialogs.describe_cleared(result), 8000)
        )

    # ------------------------------------------------------------------ opening films
    def open_file(self, path: str | Path) -> None:
        """Validate ``path`` off the GUI thread, then play it (or explain why not)."""
        self._probe_seq += 1
        probe = ProbeWorker(self._probe_seq, str(path), self._probe, self)
        probe.probed.connect(self._probed)
        probe.probe_failed.connect(self._probe_failed)
        probe.finished.connect(lambda: self._probes.discard(probe))
        probe.finished.connect(probe.deleteLater)
        self._probes.add(probe)
        self.statusBar().showMessage(f"Checking {Path(path).name}…")
        probe.start()

    def _probed(self, seq: int, path: str, info: Any) -> None:
        if seq != self._probe_seq:
            return  # another file was chosen meanwhile
        self.statusBar().clearMessage()
        self._remember_position()
        self.film_path, self.film_info = path, info
        self.controller.film_changed(path)
        self.pause_prefetch.forget()
        resume = self.history.resume_position(path)
        always = resume is not None and self.settings.player.always_resume
        self.player.load(
            path,
            start_s=resume if always else 0.0,
            duration_s=getattr(info, "duration_s", 0.0) or 0.0,
        )
        self.transport.slider.set_chapters(())  # the new film's come when it plays
        self.transport.set_covered((), 0.0)
        self._engine_status_seen = False
        self._read_saved_state(seq, path)
        self.worker.open_film(path)
        self.history.add_recent(path)
        self.setWindowTitle(f"{Path(path).name} — MovieChat Desktop")
        self.player.surface.setFocus()
        if resume is not None and not always:
            self.resume_bar.offer(resume, getattr(info, "duration_s", 0.0))
        else:
            self.resume_bar.hide()
        self.film_opened.emit(path)

    def _read_saved_state(self, seq: int, path: str) -> None:
        """Show the film's saved chat and watched range from disk, before any model."""
        reader = SavedStateWorker(seq, path, self.saved_state_reader, self)
        reader.read.connect(self._saved_state_read)
        reader.finished.connect(lambda: self._probes.discard(reader))
        reader.finished.connect(reader.deleteLater)
        self._probes.add(reader)
        reader.start()

    def saved_state_reader(self, path: str) -> Any:
        """Runs on the reader thread: torch-free store modules only."""
        return read_saved_state(path, self.settings.sampling)

    def _saved_state_read(self, seq: int, path: str, state: Any) -> None:
        if seq != self._probe_seq or path != self.film_path or state is None:
            return  # another film is open now, or nothing could be read
        self.controller.show_saved(path, state)
        if not self._engine_status_seen and state.covered:
            duration = getattr(self.film_info, "duration_s", 0.0) or self.player.duration
            self.transport.set_covered(state.covered, duration)

    def _probe_failed(self, seq: int, path: str, report: ErrorReport) -> None:
        if seq != self._probe_seq:
            return
        self.statusBar().clearMessage()
        if not Path(path).exists():
            self.history.remove_recent(path)
        self.show_error(report)
        self.open_failed.emit(report)

    def _remember_position(self) -> None:
        if self.film_path is not None and self.player.duration > 0:
            self.history.remember_position(
                self.film_path, self.player.position, self.player.duration
            )

    def add_subtitle_file(self, path: str | Path) -> bool:
        """Show ``path``'s subtitles and let the assistant read them (Dialogue tab)."""
        if self.film_path is not None:
            self.worker.set_dialogue_source(self.dialogue.chosen_source(), file=str(path))
        return self.player.add_subtitle(path)

    # ------------------------------------------------------------------ state
    def _playback_changed(self, *_: object) -> None:
        p = self.player
        self.chat.set_playback(p.state, p.position, p.duration)

    def _encoding_progressed(self, status: Any) -> None:
        self._engine_status_seen = True  # the engine's own status replaces the saved preview
        if getattr(status, "frames_per_s", 0) > 0:
            self.watch_speed = status.frames_per_s  # for Settings' "about N min" estimate
        self.transport.set_covered(status.covered, status.duration_s)
        self.transport.set_heard(getattr(status, "speech_covered", ()))
        self.transport.set_gaps(getattr(status, "gaps", ()))  # damaged parts, in red
        self.status.encoding(status)

    def show_error(self, error: ErrorReport | BaseException) -> None:
        self.last_error_box = show_error(self, error)

    # ------------------------------------------------------------------ view
    def _show_side(self, visible: bool) -> None:
        """Show or hide the chat/dialogue tabs (the chat itself follows, for its readers)."""
        self.side.setVisible(visible)
        self.chat.setVisible(visible and self.side.currentWidget() is self.chat)

    def set_chat_visible(self, visible: bool) -> None:
        self._show_side(visible)
        self.transport.set_chat_visible(visible)
        self.actions.show_chat.setChecked(visible)
        if not visible:
            self.player.surface.setFocus()

    def focus_question(self) -> None:
        """`/`: the chat comes into view (its tab chosen) and the question box gets the keys."""
        if self.side.isHidden():
            self.set_chat_visible(True)
        self.side.setCurrentWidget(self.chat)
        self._show_side(True)
        self.chat.question.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def toggle_fullscreen(self) -> None:
        if self.isFullScreen():
            self.leave_fullscreen()
            return
        self._chat_was_visible = not self.side.isHidden()
        self.menuBar().hide()
        self.statusBar().hide()
        self.set_chat_visible(False)  # the Chat toggle follows; Ctrl+J opens it beside the video
        self.showFullScreen()
        self.player.surface.setFocus()
        self.fullscreen_idle.poke()

    def leave_fullscreen(self) -> None:
        if not self.isFullScreen():
            return
        self.showNormal()
        self.fullscreen_idle.stop()
        self.menuBar().show()
        self.statusBar().show()
        self.set_chat_visible(getattr(self, "_chat_was_visible", True) or not self.side.isHidden())

    def _read_chapters(self, state: str) -> None:
        """Chapter ticks on the timeline once VLC plays the film (it knows them then)."""
        if state == PLAYING:
            starts = tuple(start for start, _ in player_extras.chapters(self.player))
            if starts != self.transport.slider.chapters:
                self.transport.slider.set_chapters(starts)
        elif state == "stopped":
            self.transport.slider.set_chapters(())

    def open_sibling(self, step: int) -> None:
        """N / P: the next or previous film in the open film's folder (natural order)."""
        path = player_extras.sibling_film(self.film_path, step)
        if path is None:
            self.statusBar().showMessage(
                "No next film in this folder" if step > 0 else "No previous film in this folder",
                2500,
            )
            return
        self.open_file(path)

    def take_snapshot(self) -> str | None:
        return self.player.snapshot(self.snapshot_dir)

    # ------------------------------------------------------------------ dialogs
    def choose_file(self) -> None:
        path = dialogs.choose_video(self, self.film_path)
        if path:
            self.open_file(path)

    def choose_subtitle_file(self) -> None:
        path = dialogs.choose_subtitles(self, self.film_path)
        if path:
            self.add_subtitle_file(path)

    def _model_unavailable(self, report: ErrorReport | None) -> None:
        """A model directory set in Settings that is not there is fixed in Settings, not by
        downloading: the status field and the chat's button say so and open Settings."""
        from html import escape

        if report is not None:
            self.status.model_unavailable(report)

        folder = self.settings.model.model_dir
        missing = (
            report is not None
            and bool(folder)
            and report.message.startswith("model directory not found")
        )
        self._missing_model_dir = folder if missing else None
        self.chat.weights_button.setText("Open Settings…" if missing else "Set up weights…")
        if missing:
            link = f"Model: not found at {escape(folder)}"
            self.status.device_label.setText(f'<a href="settings" style="color:#7fb6ff">{link}</a>')
            self.status.device_label.setToolTip("Click to choose the model directory in Settings")

    def _model_help(self) -> None:
        """The chat's weights button / the status field's link."""
        if self._missing_model_dir:
            self.open_settings_dialog()
        else:
            self.open_weights_dialog()

    def open_weights_dialog(self) -> None:
        dialogs.open_weights_dialog(self)

    def weights_changed(self) -> None:
        """The weights may have changed (dialog job done or closed): try the model again."""
        if self.status.model_state != "ready":
            self.worker.load_model()

    def open_settings_dialog(self) -> None:
        dialogs.open_settings_dialog(self)

    def _always_resume(self) -> None:
        """The resume bar's "Always continue": the same as Settings → Player."""
        self._save_setting("player", "always_resume", True)

    def _save_setting(self, section: str, key: str, value: Any) -> None:
        import copy

        from moviechat_desktop.engine.settings import save_settings

        new = copy.deepcopy(self.settings)
        setattr(getattr(new, section), key, value)
        try:
            save_settings(new)
        except OSError as err:
            self.show_error(ErrorReport.simple("Settings not saved", str(err), "OSError"))
        self.apply_settings(new)

    def _use_dialogue_toggled(self, enabled: bool) -> None:
        """The Dialogue tab's switch: the same setting as Settings → Use dialogue."""
        import copy

        from moviechat_desktop.engine.settings import save_settings

        new = copy.deepcopy(self.settings)
        new.dialogue.enabled = enabled
        try:
            save_settings(new)
        except OSError as err:
            self.show_error(ErrorReport.simple("Settings not saved", str(err), "OSError"))
        self.apply_settings(new)

    def apply_settings(self, new: AppSettings) -> None:
        old, self.settings = self.settings, new
        if new.player.snapshot_dir != old.player.snapshot_dir:
            self.snapshot_dir = Path(new.player.snapshot_dir or dialogs.snapshot_dir())
        self.dialogue.set_use_dialogue(new.dialogue.enabled)
        if new.model != old.model or new.sampling != old.sampling or new.engine != old.engine:
            self.worker.replace_assistant(self._assistant_factory(new))
        else:
            self.worker.update_settings(new)

    def new_conversation(self) -> None:
        self.controller.new_conversation()

    def open_conversation(self, conversation_id: str) -> None:
        self.controller.open_conversation(conversation_id)

    def clear_cache(self) -> QWidget:
        return dialogs.confirm_clear_cache(self)

    def export_chat(self) -> Path | None:
        return dialogs.export_chat(self)

    def show_about(self) -> None:
        dialogs.show_about(self)

    def show_shortcuts(self) -> QWidget:
        """Help → Keyboard shortcuts (one window, raised again when already open)."""
        from moviechat_desktop.ui.shortcuts_dialog import ShortcutsDialog

        dialog = getattr(self, "shortcuts_dialog", None)
        if dialog is None:
            dialog = self.shortcuts_dialog = ShortcutsDialog(self.menuBar(), self)
        dialog.show()
        dialog.raise_()
        return dialog

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        for path in paths:
            if Path(path).suffix.lower() in SUBTITLE_SUFFIXES:
                self.add_subtitle_file(path)
            else:
                self.open_file(path)
                break
        event.acceptProposedAction()

    # ------------------------------------------------------------------ closing
    def shutdown(self) -> bool:
        """Stop everything (idempotent): True when every worker thread has ended."""
        self._remember_position()
        self.fullscreen_idle.detach()
        self.controller.stop_all()
        self.controller.cancel_tasks()
        ended = self.worker.shutdown(timeout_ms=5000)
        for probe in [*self._probes, *getattr(self, "counters", ())]:
            ended = probe.wait(2000) and ended
        self.player.release()
        return ended

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.shutdown():
            log.warning("a worker thread did not end in time (a model still loading?)")
        super().closeEvent(event)
