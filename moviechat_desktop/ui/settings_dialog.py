"""Assistant settings: model directory, device and precision, sampling plan, generation, the
memory cache's size limit (and a button to clear it).

Edits a copy of ``AppSettings``; ``settings()`` returns the edited copy and the caller saves
it (``engine.settings.save_settings``) and tells the model worker.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from moviechat_desktop.engine.settings import AppSettings

DEVICES = (("Automatic (GPU when present)", "auto"), ("GPU (CUDA)", "cuda"), ("CPU", "cpu"))
PRECISIONS = (
    ("Automatic (from free GPU memory)", "auto"),
    ("16-bit (fp16)", "fp16"),
    ("bfloat16", "bf16"),
    ("8-bit", "int8"),
    ("4-bit", "int4"),
    ("32-bit (fp32)", "fp32"),
)
PLANS = (("Fixed fragments (MovieChat's)", "fragments"), ("Frames per second", "fps"))
ENGINE_MODES = (("This computer", "local"), ("A server", "server"))


def _combo(parent: QWidget, choices: tuple[tuple[str, str], ...], value: str) -> QComboBox:
    box = QComboBox(parent)
    for label, data in choices:
        box.addItem(label, data)
    index = box.findData(value)
    box.setCurrentIndex(index if index >= 0 else 0)
    return box


class SettingsDialog(QDialog):
    clear_cache_requested = Signal()

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Assistant settings")
        self._settings = copy.deepcopy(settings)
        s = self._settings

        self.model_dir = QLineEdit(s.model.model_dir, self)
        self.model_dir.setPlaceholderText("the installed weights (Assistant → Weights…)")
        self.model_dir.setToolTip(
            "Leave empty to use the weights installed with Assistant → Weights…; or a folder "
            "laid out like the reference set (a test model). It must exist."
        )
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        dir_row = QHBoxLayout()
        dir_row.addWidget(self.model_dir, 1)
        dir_row.addWidget(browse)
        self.device = _combo(self, DEVICES, s.model.device)
        self.precision = _combo(self, PRECISIONS, s.model.precision)
        self.device.setToolTip(
            "Where the assistant thinks: Automatic uses the graphics card when there is one. "
            "The player itself is not affected."
        )
        self.precision.setToolTip(
            "Smaller numbers use less graphics memory and run faster but answer slightly less "
            "well. Automatic picks from the free memory."
        )
        model_box = QGroupBox("Model", self)
        model_form = QFormLayout(model_box)
        model_form.addRow("Model directory:", dir_row)
        model_form.addRow("Device:", self.device)
        model_form.addRow("Precision:", self.precision)

        self.engine_mode = _combo(self, ENGINE_MODES, s.engine.mode)
        self.server_url = QLineEdit(s.engine.server_url, self)
        self.server_url.setPlaceholderText("http://gpu-box:8000")
        self.token_file = QLineEdit(s.engine.token_file, self)
        self.token_file.setPlaceholderText("server-token in the config folder")
        self.engine_mode.setToolTip(
            "This computer: the assistant runs here. A server: another computer does the "
            "watching and answering; the film plays here."
        )
        self.server_url.setToolTip("The address the server printed when it started.")
        self.token_file.setToolTip(
            "The file holding the server's password (the server wrote it when it first started)."
        )
        browse_token = QPushButton("Browse…", self)
        browse_token.clicked.connect(self._browse_token)
        token_row = QHBoxLayout()
        token_row.addWidget(self.token_file, 1)
        token_row.addWidget(browse_token)
        self._token_browse = browse_token
        self.engine_mode.currentIndexChanged.connect(self._engine_mode_changed)
        engine_box = QGroupBox("Assistant runs on", self)
        engine_box.setToolTip(
            "A server is a computer running 'moviechat-desktop serve' (e.g. one with a big "
            "GPU). The film stays here: its frames are sent, the server keeps its memory."
        )
        engine_form = QFormLayout(engine_box)
        engine_form.addRow("Runs on:", self.engine_mode)
        engine_form.addRow("Server address:", self.server_url)
        engine_form.addRow("Token file:", token_row)

        self.plan = _combo(self, PLANS, s.sampling.plan)
        self.n_fragments = QSpinBox(self)
        self.n_fragments.setRange(1, 4096)
        self.n_fragments.setValue(s.sampling.n_fragments)
        self.frames_per_fragment = QSpinBox(self)
        self.frames_per_fragment.setRange(2, 64)
        self.frames_per_fragment.setValue(s.sampling.frames_per_fragment)
        self.fps = QDoubleSpinBox(self)
        self.fps.setRange(0.05, 30.0)
        self.fps.setDecimals(2)
        self.fps.setValue(s.sampling.fps)
        self.plan.setToolTip(
            "How the assistant picks the pictures it looks at: a fixed number per film "
            "(MovieChat's way) or a steady rate (more pictures for long films, slower)."
        )
        self.n_fragments.setToolTip(
            "The film is cut into this many equal parts. More parts: more detail, a longer "
            "watch. Changing it makes the assistant watch every film again."
        )
        self.frames_per_fragment.setToolTip(
            "Pictures looked at in each part. More: finer detail, a longer watch. Changing it "
            "makes the assistant watch every film again."
        )
        self.fps.setToolTip(
            "Pictures per second of film with the steady-rate plan. Changing it makes the "
            "assistant watch every film again."
        )
        self.exact_frames = QCheckBox("Exactly the original's frames (slower)", self)
        self.exact_frames.setChecked(s.sampling.exact_frames)
        self.exact_frames.setToolTip(
            "Off: for each picture the plan asks for, the assistant takes the nearest one the "
            "video decoder has to work out anyway (usually the same picture or the one next to "
            "it), which makes long films ready several times sooner. On: exactly the pictures "
            "the original MovieChat picks, for comparing with it. Changing it makes the "
            "assistant watch every film again."
        )
        self.plan.currentIndexChanged.connect(self._plan_changed)
        sampling_box = QGroupBox("What the assistant watches", self)
        sampling_form = QFormLayout(sampling_box)
        sampling_form.addRow("Plan:", self.plan)
        sampling_form.addRow("Fragments per film:", self.n_fragments)
        sampling_form.addRow("Frames per fragment:", self.frames_per_fragment)
        sampling_form.addRow("Frames per second:", self.fps)
        sampling_form.addRow("", self.exact_frames)

        self.greedy = QCheckBox("Greedy (always the most likely word; repeatable answers)", self)
        self.greedy.setChecked(s.generation.greedy)
        self.max_tokens = QSpinBox(self)
        self.max_tokens.setRange(1, 4096)
        self.max_tokens.setValue(s.generation.max_new_tokens)
        self.top_p = QDoubleSpinBox(self)
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setValue(s.generation.top_p)
        self.temperature = QDoubleSpinBox(self)
        self.temperature.setRange(0.01, 5.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(s.generation.temperature)
        self.greedy.setToolTip(
            "On: the same question gets the same answer. Off: answers vary a little, as in "
            "most chat assistants."
        )
        self.max_tokens.setToolTip("How long an answer may get (a token is about ¾ of a word).")
        self.top_p.setToolTip(
            "Lower keeps answers to the most likely words (safer, plainer); 1 allows any."
        )
        self.temperature.setToolTip(
            "Higher makes answers more adventurous, lower more predictable (1 is neutral)."
        )
        self.greedy.toggled.connect(self._greedy_changed)
        self.use_dialogue = QCheckBox("Use dialogue (the film's subtitles or speech)", self)
        self.use_dialogue.setChecked(s.dialogue.enabled)
        self.use_dialogue.setToolTip(
            "The assistant reads the film's lines beside the pictures (never a line after the "
            "moment asked about)."
        )
        generation_box = QGroupBox("Answers", self)
        generation_form = QFormLayout(generation_box)
        generation_form.addRow(self.greedy)
        generation_form.addRow("Longest answer (tokens):", self.max_tokens)
        generation_form.addRow("Top-p:", self.top_p)
        generation_form.addRow("Temperature:", self.temperature)
        generation_form.addRow(self.use_dialogue)

        self.cache_limit = QDoubleSpinBox(self)
        self.cache_limit.setRange(0.1, 10_000.0)
        self.cache_limit.setDecimals(1)
        self.cache_limit.setSuffix(" GB")
        self.cache_limit.setValue(s.cache.limit_gb)
        self.cache_limit.setToolTip(
            "What the assistant remembers of the films it watched. When the cache grows past "
            "this, the films opened longest ago are forgotten first (from the next film opened)."
        )
        self.clear_cache = QPushButton("Clear memory cache…", self)
        self.clear_cache.clicked.connect(self.clear_cache_requested)
        cache_row = QHBoxLayout()
        cache_row.addWidget(self.cache_limit, 1)
        cache_row.addWidget(self.clear_cache)
        cache_box = QGroupBox("Films remembered", self)
        cache_form = QFormLayout(cache_box)
        cache_form.addRow("Memory cache limit:", cache_row)

        self.always_resume = QCheckBox("Continue films where I left them, without asking", self)
        self.always_resume.setChecked(s.player.always_resume)
        self.always_resume.setToolTip(
            "Reopening a film jumps to where you stopped watching instead of offering it in a "
            "bar under the video for 10 seconds."
        )
        player_box = QGroupBox("Player", self)
        player_form = QFormLayout(player_box)
        player_form.addRow(self.always_resume)
        self.one_window = QCheckBox("Open films launched later in this window", self)
        self.one_window.setChecked(s.player.one_window)
        self.one_window.setToolTip(
            "Opening a film from the file manager or a terminal while a window is open plays it "
            "in that window, as VLC does. Off: every launch opens a new window."
        )
        player_form.addRow(self.one_window)
        self.snapshot_dir = QLineEdit(s.player.snapshot_dir, self)
        self.snapshot_dir.setPlaceholderText("Pictures/MovieChat")
        self.snapshot_dir.setToolTip(
            "Where Shift+S saves the picture on screen. Empty: a MovieChat folder in your "
            "Pictures folder (created when needed)."
        )
        browse_shots = QPushButton("Browse…", self)
        browse_shots.clicked.connect(self._browse_snapshots)
        shots_row = QHBoxLayout()
        shots_row.addWidget(self.snapshot_dir, 1)
        shots_row.addWidget(browse_shots)
        player_form.addRow("Snapshot folder:", shots_row)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults,
            self,
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            self._restore_defaults
        )
        self.problem = QLabel("", self)  # why OK was refused, or what Restore Defaults kept
        self.problem.setObjectName("SettingsProblem")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #ffb74d")
        self.problem.hide()
        self._estimate: tuple[float, float] | None = None  # open film: (duration s, frames/s)
        self.confirm_box: QMessageBox | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(self.problem)
        for widget in (
            engine_box,
            model_box,
            sampling_box,
            generation_box,
            cache_box,
            player_box,
            buttons,
        ):
            layout.addWidget(widget)
        self._plan_changed()
        self._engine_mode_changed()
        self._greedy_changed(self.greedy.isChecked())

    def set_answer_limit(self, limit: int) -> None:
        """The longest answer the model's context leaves room for (the engine's
        ``answer_length_limit``): the spin box stops there, as ``--max-new-tokens`` does."""
        self.max_tokens.setRange(1, max(1, limit))
        self.max_tokens.setToolTip(f"1 to {limit} tokens: the answer shares the model's context")

    def _browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Model directory", self.model_dir.text())
        if chosen:
            self.model_dir.setText(chosen)

    def _browse_token(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "Server token file", self.token_file.text())
        if chosen:
            self.token_file.setText(chosen)

    def _engine_mode_changed(self) -> None:
        on_server = self.engine_mode.currentData() == "server"
        for widget in (self.server_url, self.token_file, self._token_browse):
            widget.setEnabled(on_server)

    def _plan_changed(self) -> None:
        fps_plan = self.plan.currentData() == "fps"
        self.n_fragments.setEnabled(not fps_plan)
        self.fps.setEnabled(fps_plan)

    def _greedy_changed(self, greedy: bool) -> None:
        self.top_p.setEnabled(not greedy)
        self.temperature.setEnabled(not greedy)

    def _restore_defaults(self) -> None:
        from moviechat_desktop.engine.settings import load_settings, settings_path

        # load_settings overlays the user's file on the shipped defaults: point it at a file
        # that does not exist to get the shipped defaults alone.
        defaults = load_settings(settings_path().with_name("no-such-settings.toml"))
        kept = self.model_dir.text().strip()
        defaults.model.model_dir = kept  # never blanked silently: where the model is
        self._load(defaults)
        if kept:
            self._say(
                f"Defaults restored. The model directory stays {kept}; empty the field to use "
                "the installed weights instead."
            )

    def _say(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.setVisible(bool(text))

    # ------------------------------------------------------------------ OK
    def set_film_estimate(self, duration_s: float, frames_per_s: float) -> None:
        """The open film's length and how fast the assistant watched it, for the warning
        before a change that makes it watch again."""
        self._estimate = (duration_s, frames_per_s) if duration_s > 0 else None

    def rewatch_needed(self) -> bool:
        """Whether the edited settings make every film's memory useless (what the assistant
        watches, or the model and precision it watches with)."""
        from moviechat_desktop.engine.store.fingerprint import sampling_identity

        old, new = self._settings, self.settings()
        return sampling_identity(old.sampling) != sampling_identity(new.sampling) or (
            old.model.model_dir,
            old.model.precision,
            old.model.device,
        ) != (new.model.model_dir, new.model.precision, new.model.device)

    def rewatch_words(self) -> str:
        """The warning: "… about 12 min for this one" when the open film tells how long."""
        text = (
            "The assistant will watch every film again, from the start, the next time it is opened"
        )
        if self._estimate is None or self._estimate[1] <= 0:
            return text + "."
        duration_s, speed = self._estimate
        s = self.settings().sampling
        frames = duration_s * s.fps if s.plan == "fps" else s.n_fragments * s.frames_per_fragment
        minutes = frames / speed / 60
        if minutes < 1:
            return text + ": less than a minute for this one."
        return text + f": about {math.ceil(minutes)} min for this one."

    def accept(self) -> None:
        """Refuse a model directory that does not exist (the reason shown above the
        fields); ask before a change that makes the assistant watch every film again."""
        folder = self.model_dir.text().strip()
        if folder and not Path(folder).is_dir():
            why = "is not a folder" if Path(folder).exists() else "does not exist"
            self._say(f"The model directory {folder} {why}. Choose another, or empty the field.")
            self.model_dir.setFocus()
            return
        if self.rewatch_needed():
            box = QMessageBox(
                QMessageBox.Icon.Warning,
                "Watch every film again?",
                self.rewatch_words(),
                QMessageBox.StandardButton.Ok | QMessageBox.StandardButton.Cancel,
                self,
            )
            box.setObjectName("RewatchBox")
            box.setDefaultButton(QMessageBox.StandardButton.Cancel)
            box.button(QMessageBox.StandardButton.Ok).setText("Change and watch again")
            box.finished.connect(
                lambda result: (
                    super(SettingsDialog, self).accept()
                    if result == QMessageBox.StandardButton.Ok
                    else None
                )
            )
            self.confirm_box = box
            box.open()
            return
        super().accept()

    def _load(self, s: AppSettings) -> None:
        self.model_dir.setText(s.model.model_dir)
        self.device.setCurrentIndex(max(0, self.device.findData(s.model.device)))
        self.precision.setCurrentIndex(max(0, self.precision.findData(s.model.precision)))
        self.plan.setCurrentIndex(max(0, self.plan.findData(s.sampling.plan)))
        self.n_fragments.setValue(s.sampling.n_fragments)
        self.frames_per_fragment.setValue(s.sampling.frames_per_fragment)
        self.fps.setValue(s.sampling.fps)
        self.exact_frames.setChecked(s.sampling.exact_frames)
        self.greedy.setChecked(s.generation.greedy)
        self.max_tokens.setValue(s.generation.max_new_tokens)
        self.top_p.setValue(s.generation.top_p)
        self.temperature.setValue(s.generation.temperature)
        self.use_dialogue.setChecked(s.dialogue.enabled)
        self.cache_limit.setValue(s.cache.limit_gb)
        self.always_resume.setChecked(s.player.always_resume)
        self.one_window.setChecked(s.player.one_window)
        self.snapshot_dir.setText(s.player.snapshot_dir)
        self.engine_mode.setCurrentIndex(max(0, self.engine_mode.findData(s.engine.mode)))
        self.server_url.setText(s.engine.server_url)
        self.token_file.setText(s.engine.token_file)

    def _browse_snapshots(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "Snapshot folder", self.snapshot_dir.text())
        if chosen:
            self.snapshot_dir.setText(chosen)

    def settings(self) -> AppSettings:
        """The edited settings (a copy; the original passed in is untouched)."""
        s = copy.deepcopy(self._settings)
        s.model.model_dir = self.model_dir.text().strip()
        s.model.device = self.device.currentData()
        s.model.precision = self.precision.currentData()
        s.sampling.plan = self.plan.currentData()
        s.sampling.n_fragments = self.n_fragments.value()
        s.sampling.frames_per_fragment = self.frames_per_fragment.value()
        s.sampling.fps = self.fps.value()
        s.sampling.exact_frames = self.exact_frames.isChecked()
        s.generation.greedy = self.greedy.isChecked()
        s.generation.max_new_tokens = self.max_tokens.value()
        s.generation.top_p = self.top_p.value()
        s.generation.temperature = self.temperature.value()
        s.dialogue.enabled = self.use_dialogue.isChecked()
        s.cache.limit_gb = self.cache_limit.value()
        s.player.always_resume = self.always_resume.isChecked()
        s.player.one_window = self.one_window.isChecked()
        s.player.snapshot_dir = self.snapshot_dir.text().strip()
        s.engine.mode = self.engine_mode.currentData()
        s.engine.server_url = self.server_url.text().strip()
        s.engine.token_file = self.token_file.text().strip()
        return s
