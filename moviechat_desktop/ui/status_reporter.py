"""The status bar's permanent fields (model/device, encoding state and speed) and the chat
panel's status line, kept in step with the model worker's signals."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QLabel, QStatusBar

from moviechat_desktop.timefmt import format_time
from moviechat_desktop.ui.chat_panel import ChatPanel
from moviechat_desktop.workers.messages import ErrorReport


def describe_encoding(status: Any) -> str:
    """ "The assistant has seen 35% (up to 12:04)" / "Watched the whole film" / "".

    "Up to" is the end of what it has seen without a gap from the start (what a question
    about a moment can be answered up to); the encoding speed is in ``encoding_speed``."""
    if status is None or status.fragments_total == 0:
        return ""
    gaps = getattr(status, "gaps", ())
    if status.finished and gaps:  # a film damaged in the middle: said here, once, in words
        from moviechat_desktop.engine.memory.gaps import describe_gaps

        hours = status.duration_s >= 3600
        return f"Watched the film except {describe_gaps(gaps, hours)} (damaged, skipped)"
    if status.finished:
        return "Watched the whole film"
    percent = round(100 * status.fragments_done / status.fragments_total)
    covered = status.covered
    until = covered[0][1] if covered and covered[0][0] <= 0.5 else 0.0
    stamp = format_time(until, hours=status.duration_s >= 3600)
    return f"The assistant has seen {percent}% (up to {stamp})"


def encoding_speed(status: Any) -> str:
    """The status field's tooltip: how fast the assistant watches."""
    if status is None or status.frames_per_s <= 0 or status.finished:
        return ""
    return f"Watching at {status.frames_per_s:.1f} frames/s"


class StatusReporter:
    def __init__(self, bar: QStatusBar, panel: ChatPanel) -> None:
        self.panel = panel
        self.device_label = QLabel("Model: not loaded")
        self.device_label.setObjectName("DeviceLabel")
        self.encoding_label = QLabel("")
        self.encoding_label.setObjectName("EncodingLabel")
        bar.addPermanentWidget(self.encoding_label)
        bar.addPermanentWidget(self.device_label)
        self.model_state = "not loaded"
        self._last_status: Any = None
        self._restarted = ""  # the last restart's message
        self.bar = bar

    def model_loading(self) -> None:
        self.model_state = "loading"
        self.device_label.setText("Model: loading…")
        if self._restarted:
            self.panel.set_status(f"{self._restarted}: loading its model again…")
        else:
            self.panel.set_status("Loading the assistant's model…")

    def engine_restarted(self, message: str) -> None:
        """The engine's process died and a new one started (the player never stopped)."""
        self._restarted = message
        self.model_state = "restarting"
        self.device_label.setText("Model: restarting…")
        self.encoding_label.setText("")
        self.panel.set_status(f"{message}. Questions in line are asked again.")
        self.bar.showMessage(message, 10_000)

    def model_ready(self, device_label: str) -> None:
        self.model_state = "ready"
        self._restarted = ""
        self.device_label.setText(f"Model: {device_label}")
        self.device_label.setToolTip("Where the assistant runs")
        self.panel.hide_weights_notice()
        if self._last_status is not None:
            self.encoding(self._last_status)
        else:
            self.panel.set_status("Ready: open a film.")

    def model_unavailable(self, report: ErrorReport) -> None:
        self.model_state = "unavailable"
        self.device_label.setText("Model: not installed" if report.needs_weights else "Model: —")
        self.device_label.setToolTip(report.message)
        self.encoding_label.setText("")
        self.panel.set_status("")
        self.panel.show_weights_notice(report.message)

    def encoding(self, status: Any) -> None:
        self._last_status = status
        text = describe_encoding(status) if self.model_state == "ready" else ""
        self.encoding_label.setText(text)
        self.encoding_label.setToolTip(encoding_speed(status) if text else "")
        if self.model_state == "ready":
            watched = ""
            if status.covered and not status.finished:
                hours = status.duration_s >= 3600
                watched = f" — up to {format_time(status.covered[0][1], hours=hours)}"
            self.panel.set_status(text + watched if text else "")
