"""Assistant ▸ Weights…: what the model needs, where it goes, and getting it.

One row per part (name, size, state, destination, progress bar, "Use local file…"), an overall
bar with bytes, rate and time left, the free disk space, and Download/Resume, Verify, Cancel,
"Use local files…" (a folder) and Close. The work runs in a ``DownloadWorker`` thread, in a child
process (the one-time ``.pth`` conversion and the tokenizer check need torch and transformers,
which this process never imports); closing the dialog cancels it (partial downloads are kept
and resume next time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from moviechat_desktop.engine.errors import MovieChatError
from moviechat_desktop.engine.weights.manifest import Manifest, format_bytes, load_manifest
from moviechat_desktop.engine.weights.status import PartStatus, weights_status
from moviechat_desktop.engine.weights.store import free_bytes, is_offline
from moviechat_desktop.engine.weights.transfer import TransferProgress
from moviechat_desktop.workers.download_worker import DownloadWorker

log = logging.getLogger(__name__)

SCALE = 1000  # progress bars count permille: sizes overflow a QProgressBar's int
STATE_TEXT = {
    "ready": "Installed",
    "unconverted": "Installed (to be converted)",
    "partial": "Partly downloaded",
    "missing": "Not installed",
    "invalid": "Failed a check",
}
PHASE_TEXT = {
    "download": "Downloading",
    "verify": "Verifying",
    "convert": "Converting",
    "done": "Done",
}
CHECKPOINT_FILTER = "Checkpoints (*.pth *.pt *.bin *.safetensors);;All files (*)"


@dataclass
class PartRow:
    title: QLabel
    size: QLabel
    state_label: QLabel
    where: QLabel
    bar: QProgressBar
    import_button: QPushButton
    status: PartStatus | None = None  # filled by refresh()


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 90:
        return f" · {seconds:.0f} s left"
    if seconds < 5400:
        return f" · {seconds / 60:.0f} min left"
    return f" · {seconds / 3600:.1f} h left"


def describe(progress: TransferProgress) -> str:
    """ "Downloading 1.20 GB of 1.99 GB · 12.3 MB/s · 2 min left"."""
    text = PHASE_TEXT.get(progress.phase, progress.phase)
    if progress.phase in ("download", "verify") and progress.total:
        text += f" {format_bytes(progress.done)} of {format_bytes(progress.total)}"
    if progress.phase == "download" and progress.rate > 0:
        text += f" · {format_bytes(progress.rate)}/s{_eta(progress.eta_s)}"
    return text


class WeightsDialog(QDialog):
    """Lists the model's parts and downloads, imports or verifies them in a worker thread."""

    weights_changed = Signal()  # a job finished: the installed weights may have changed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Model weights")
        self.setMinimumWidth(760)
        self.worker: DownloadWorker | None = None
        self.part_rows: dict[str, PartRow] = {}
        self._fractions: dict[str, float] = {}
        self._job_parts: list[str] = []
        self._close_result: int | None = None
        self._download_failed = False  # the last download failed: its button says "Retry"
        try:
            self.manifest: Manifest | None = load_manifest()
        except MovieChatError as err:
            self.manifest = None
            log.warning("weights manifest unusable: %s", err)
        self._build()
        self.refresh()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        total = format_bytes(self.manifest.total_size) if self.manifest else "?"
        self.intro = QLabel(
            f"The assistant needs the MovieChat model: about {total} from four sources. "
            "Download it here (it resumes if interrupted), or use files you already have."
        )
        self.intro.setWordWrap(True)
        layout.addWidget(self.intro)
        grid = QGridLayout()
        for row, part in enumerate(self.manifest.parts if self.manifest else ()):
            title = QLabel(f"<b>{part.title}</b>")
            title.setToolTip(f"{part.source.describe()}\n{part.license}\n{part.size_note}")
            size = QLabel(part.size_label)
            state = QLabel()
            bar = QProgressBar()
            bar.setRange(0, SCALE)
            bar.setTextVisible(True)
            where = QLabel()
            where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            where.setStyleSheet("color: gray")
            label = "Use local folder…" if part.is_dir else "Use local file…"
            button = QPushButton(label)
            button.clicked.connect(lambda _=False, pid=part.id: self._choose_local(pid))
            grid.addWidget(title, 2 * row, 0)
            grid.addWidget(size, 2 * row, 1)
            grid.addWidget(state, 2 * row, 2)
            grid.addWidget(bar, 2 * row, 3)
            grid.addWidget(button, 2 * row, 4)
            grid.addWidget(where, 2 * row + 1, 0, 1, 5)
            self.part_rows[part.id] = PartRow(title, size, state, where, bar, button)
        layout.addLayout(grid)

        overall = QHBoxLayout()
        overall.addWidget(QLabel("Overall"))
        self.overall_bar = QProgressBar()
        self.overall_bar.setRange(0, SCALE)
        overall.addWidget(self.overall_bar, 1)
        layout.addLayout(overall)
        self.activity_label = QLabel()
        self.space_label = QLabel()
        self.space_label.setWordWrap(True)
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for label in (self.activity_label, self.space_label, self.message_label):
            layout.addWidget(label)

        buttons = QHBoxLayout()
        self.local_button = QPushButton("Use local files…")
        self.local_button.setToolTip("A folder holding checkpoint files and/or the model folder")
        self.local_button.clicked.connect(self._choose_local_folder)
        self.download_button = QPushButton("Download")
        # never the default: Enter must not start a 16 GB download (Close is the default)
        self.download_button.setAutoDefault(False)
        self.download_button.clicked.connect(self.start_download)
        self.verify_button = QPushButton("Verify")
        self.verify_button.clicked.connect(self.start_verify)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close")
        self.close_button.setDefault(True)
        self.close_button.clicked.connect(self.reject)
        for button in (self.local_button, self.verify_button, self.cancel_button):
            button.setAutoDefault(False)
        buttons.addWidget(self.local_button)
        buttons.addStretch(1)
        for button in (
            self.download_button,
            self.verify_button,
            self.cancel_button,
            self.close_button,
        ):
            buttons.addWidget(button)
        layout.addLayout(buttons)

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def statuses(self) -> list[PartStatus]:
        return [row.status for row in self.part_rows.values() if row.status is not None]

    def refresh(self) -> None:
        """Re-read what is installed (cheap: file checks only) and update every row."""
        if self.manifest is None:
            self.message_label.setText("The weights manifest could not be read (see the log).")
            self.download_button.setEnabled(False)
            return
        for status in weights_status(self.manifest):
            row = self.part_rows[status.id]
            row.status = status
            text = STATE_TEXT.get(status.state, status.state)
            if status.state == "partial" and status.partial_bytes:
                text += f" ({format_bytes(status.partial_bytes)})"
            row.state_label.setText(text)
            row.state_label.setToolTip(status.detail)
            where = (
                f"{status.origin}: {status.path}"
                if status.path
                else f"goes to {status.destination}"
            )
            row.where.setText(where)
            row.bar.setValue(SCALE if status.usable else 0)
            self._fractions[status.id] = 1.0 if status.usable else 0.0
        missing = [s for s in self.statuses() if s.state != "ready"]
        self.overall_bar.setValue(round(SCALE * self._overall()))
        resumable = any(s.state == "partial" for s in missing)
        self.download_button.setText(
            "Retry" if self._download_failed else "Resume" if resumable else "Download"
        )
        folders = sorted({s.destination for s in self.statuses()})
        self.space_label.setText(
            "Free disk space: "
            + "; ".join(f"{format_bytes(free_bytes(f))} in {f}" for f in folders)
        )
        if is_offline():
            self.activity_label.setText(
                "Offline mode is on (HF_HUB_OFFLINE): downloads are disabled."
            )
        elif not missing:
            self.activity_label.setText("All parts are installed.")
        else:
            size = sum(s.size - s.partial_bytes for s in missing)
            self.activity_label.setText(f"To download: about {format_bytes(size)}.")
        self._update_buttons()

    def _overall(self) -> float:
        parts = self._job_parts or list(self.part_rows)
        sizes = {s.id: s.size for s in self.statuses()}
        weights = {pid: max(1, sizes.get(pid, 1)) for pid in parts}
        return sum(weights[p] * self._fractions.get(p, 0.0) for p in parts) / sum(weights.values())

    def _update_buttons(self) -> None:
        busy = self.busy
        needs = any(s.state != "ready" for s in self.statuses())
        self.download_button.setEnabled(not busy and needs and self.manifest is not None)
        self.verify_button.setEnabled(not busy and any(s.usable for s in self.statuses()))
        self.local_button.setEnabled(not busy)
        for row in self.part_rows.values():
            row.import_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy and not self.worker.cancel_requested)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ jobs
    def start_download(self) -> None:
        todo = [s.id for s in self.statuses() if s.state != "ready"]
        self._start(
            DownloadWorker("download", part_ids=todo, manifest=self.manifest, parent=self), todo
        )

    def start_verify(self) -> None:
        present = [s.id for s in self.statuses() if s.usable]
        self._start(
            DownloadWorker("verify", part_ids=present, manifest=self.manifest, parent=self), present
        )

    def import_path(self, path: str | Path, part_id: str | None = None) -> None:
        """Use local files at ``path`` (for ``part_id``, or detect the parts)."""
        parts = [part_id] if part_id else []
        worker = DownloadWorker(
            "import", part_ids=parts, path=path, manifest=self.manifest, parent=self
        )
        self._start(worker, parts)

    def _start(self, worker: DownloadWorker, parts: list[str]) -> None:
        if self.busy:
            return
        self.message_label.setText("")
        self._download_failed = False
        self._job_parts = parts
        for pid in parts:
            self._fractions[pid] = 0.0
        worker.progressed.connect(self._on_progress)
        worker.completed.connect(self._on_completed)
        worker.errored.connect(self._on_errored)
        worker.cancelled.connect(self._on_cancelled)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()
        self.activity_label.setText("Starting…")
        self._update_buttons()

    def cancel(self) -> None:
        if self.busy:
            self.worker.cancel()  # type: ignore[union-attr]
            self.activity_label.setText("Cancelling…")
            self._update_buttons()

    def _on_progress(self, batch: tuple[TransferProgress, ...]) -> None:
        for progress in batch:
            row = self.part_rows.get(progress.part)
            if row is None:
                continue
            row.state_label.setText(PHASE_TEXT.get(progress.phase, progress.phase))
            if progress.phase == "download":
                self._fractions[progress.part] = progress.fraction
                row.bar.setValue(round(SCALE * progress.fraction))
            elif progress.phase == "done":
                self._fractions[progress.part] = 1.0
                row.bar.setValue(SCALE)
            title = row.status.title if row.status else progress.part
            self.activity_label.setText(f"{title}: {describe(progress)}")
        self.overall_bar.setValue(round(SCALE * self._overall()))

    def _on_completed(self, result: object) -> None:
        ignored = getattr(result, "ignored", None)
        if ignored:
            self.message_label.setText("Not used: " + "; ".join(ignored))
        failed = (
            [r for r in result if getattr(r, "failed", False)] if isinstance(result, list) else []
        )
        if failed:
            self.message_label.setText(
                "Failed verification (no longer used; download again): "
                + "; ".join(f"{r.title}: {r.detail}" for r in failed)
            )

    def _on_errored(self, message: str) -> None:
        self.message_label.setText(message)
        if self.worker is not None and self.worker.job == "download":
            self._download_failed = True

    def _on_cancelled(self) -> None:
        self.message_label.setText("Cancelled. Partial downloads are kept: Resume continues them.")

    def _on_finished(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.deleteLater()
        self._job_parts = []
        text = self.message_label.text()
        self.refresh()
        self.message_label.setText(text)
        self.weights_changed.emit()
        if self._close_result is not None:
            super().done(self._close_result)

    # ------------------------------------------------------------------ local files
    def _choose_local(self, part_id: str) -> None:
        if self.manifest is None:
            return
        part = self.manifest.part(part_id)
        title = f"Choose the {part.title}"
        if part.is_dir:
            path = QFileDialog.getExistingDirectory(self, title)
        else:
            path, _ = QFileDialog.getOpenFileName(self, title, "", CHECKPOINT_FILTER)
        if path:
            self.import_path(path, part_id)

    def _choose_local_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a folder with the model files")
        if path:
            self.import_path(path)

    # ------------------------------------------------------------------ closing
    def done(self, result: int) -> None:
        """Closing cancels a running job and never waits for it: the dialog hides at once and
        finishes closing (``finished`` is emitted) when the worker has stopped."""
        if self.busy:
            self._close_result = result
            self.cancel()
            self.hide()
            return
        super().done(result)
