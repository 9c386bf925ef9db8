"""The seek slider, which also shows what the assistant has already watched.

Values are milliseconds. A click jumps to the clicked time (not one page step), dragging
seeks live, hovering shows the time under the cursor, and a thin bar under the groove is
painted from ``EncodeStatus.covered`` — the time ranges already in the assistant's memory.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QSlider, QStyle, QStyleOptionSlider, QToolTip, QWidget

from moviechat_desktop.timefmt import format_time

COVERED_COLOUR = QColor("#66bb6a")  # green: "the assistant has watched this"
CHAPTER_COLOUR = QColor("#f5f7fa")  # white ticks: where chapters start
COVERED_HEIGHT = 3
HEARD_COLOUR = QColor("#42a5f5")  # blue: "the assistant has heard this" (speech recognised)
GAP_COLOUR = QColor("#ef5350")  # red: "damaged here, could not be decoded" (memory/gaps.py)


class TimelineSlider(QSlider):
    seek_requested = Signal(float)  # seconds

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.setRange(0, 0)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # arrow keys belong to the player
        self.setMouseTracking(True)
        self.setMinimumHeight(22)
        self._covered: tuple[tuple[float, float], ...] = ()
        self._heard: tuple[tuple[float, float], ...] = ()
        self._gaps: tuple[tuple[float, float], ...] = ()
        self._chapters: tuple[float, ...] = ()
        self._duration = 0.0
        self.sliderMoved.connect(lambda ms: self.seek_requested.emit(ms / 1000))

    # ------------------------------------------------------------------ model
    @property
    def covered(self) -> tuple[tuple[float, float], ...]:
        return self._covered

    def covered_fraction(self) -> float:
        if self._duration <= 0:
            return 0.0
        return min(1.0, sum(max(0.0, b - a) for a, b in self._covered) / self._duration)

    def set_duration(self, seconds: float) -> None:
        self._duration = max(0.0, seconds)
        self.setRange(0, int(self._duration * 1000))
        self.update()

    def set_position(self, seconds: float) -> None:
        if not self.isSliderDown():
            self.blockSignals(True)
            self.setValue(int(seconds * 1000))
            self.blockSignals(False)

    def set_covered(self, ranges: tuple[tuple[float, float], ...], duration_s: float = 0.0) -> None:
        self._covered = tuple((float(a), float(b)) for a, b in ranges)
        if duration_s > 0 and self._duration <= 0:
            self.set_duration(duration_s)
        percent = round(100 * self.covered_fraction())
        self.setToolTip(f"The assistant has watched {percent}% of the film" if ranges else "")
        self.update()

    @property
    def heard(self) -> tuple[tuple[float, float], ...]:
        return self._heard

    def set_heard(self, ranges: tuple[tuple[float, float], ...]) -> None:
        """The ranges whose speech has been recognised (speech as the dialogue source), drawn
        as a second thin bar above the groove."""
        heard = tuple((float(a), float(b)) for a, b in ranges)
        if heard != self._heard:
            self._heard = heard
            self.update()

    @property
    def gaps(self) -> tuple[tuple[float, float], ...]:
        return self._gaps

    def set_gaps(self, ranges: tuple[tuple[float, float], ...]) -> None:
        """Damaged parts the assistant could not decode, drawn in red on the watched bar."""
        gaps = tuple((float(a), float(b)) for a, b in ranges)
        if gaps != self._gaps:
            self._gaps = gaps
            self.update()

    # ------------------------------------------------------------------ geometry
    def _style_option(self) -> QStyleOptionSlider:
        option = QStyleOptionSlider()
        self.initStyleOption(option)
        return option

    def _track(self) -> tuple[int, int, QRect]:
        """(x of time 0, usable width in px, groove rect)."""
        option = self._style_option()
        style = self.style()
        groove = style.subControlRect(
            QStyle.ComplexControl.CC_Slider, option, QStyle.SubControl.SC_SliderGroove, self
        )
        handle = style.subControlRect(
            QStyle.ComplexControl.CC_Slider, option, QStyle.SubControl.SC_SliderHandle, self
        )
        half = handle.width() // 2
        return groove.left() + half, max(1, groove.width() - handle.width()), groove

    def seconds_at(self, x: int) -> float:
        left, width, _ = self._track()
        fraction = min(1.0, max(0.0, (x - left) / width))
        return fraction * self._duration

    def x_of(self, seconds: float) -> int:
        left, width, _ = self._track()
        fraction = 0.0 if self._duration <= 0 else min(1.0, max(0.0, seconds / self._duration))
        return left + round(fraction * width)

    # ------------------------------------------------------------------ events
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._duration > 0:
            seconds = self.seconds_at(round(event.position().x()))
            self.setValue(int(seconds * 1000))
            self.seek_requested.emit(seconds)
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._duration > 0:
            x = round(event.position().x())
            text = format_time(self.seconds_at(x), hours=self._duration >= 3600)
            QToolTip.showText(self.mapToGlobal(QPoint(x, -28)), text, self)
        super().mouseMoveEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not (self._covered or self._heard or self._gaps or self._chapters):
            return
        if self._duration <= 0:
            return
        _, _, groove = self._track()
        y = min(self.height() - COVERED_HEIGHT, groove.bottom() + 3)
        heard_y = max(0, groove.top() - 3 - COVERED_HEIGHT)
        painter = QPainter(self)
        for ranges, top, colour in (
            (self._covered, y, COVERED_COLOUR),
            (self._heard, heard_y, HEARD_COLOUR),
            (self._gaps, y, GAP_COLOUR),
        ):
            for start, end in ranges:
                x0, x1 = self.x_of(start), self.x_of(end)
                painter.fillRect(QRect(x0, top, max(1, x1 - x0), COVERED_HEIGHT), colour)
        for start in self._chapters:  # a tick across the groove where each chapter starts
            if 0 < start < self._duration:
                x = self.x_of(start)
                painter.fillRect(QRect(x, groove.top() - 2, 2, groove.height() + 4), CHAPTER_COLOUR)
        painter.end()

    @property
    def chapters(self) -> tuple[float, ...]:
        return self._chapters

    def set_chapters(self, starts: tuple[float, ...]) -> None:
        """Chapter starts (seconds): drawn as ticks on the groove."""
        self._chapters = tuple(starts)
        self.update()
