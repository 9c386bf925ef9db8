"""The chat beside the video: the conversation, the question box and its mode switch.

The mode switch follows the player: paused in the middle of the film it proposes
"This moment (01:12:30)" — the paused position is the breakpoint — and otherwise "Whole film".
The user may change it; the next pause or play sets it back to the default. The panel is a
view over a ``ChatTranscript``; ``ChatController`` connects it to the model worker.

Editing a question (its "Edit" link): the question's text goes into the box, a line above it
says so, Enter resends it as the edited question (``edit_submitted``) and Esc cancels.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QGuiApplication, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from moviechat_desktop.ui import chat_render
from moviechat_desktop.ui.chat_transcript import (
    BREAKPOINT,
    GLOBAL,
    ChatEntry,
    ChatTranscript,
    mode_label,
)
from moviechat_desktop.ui.question_edit import QuestionEdit

RENDER_DELAY_MS = 40  # coalesce streamed chunks: at most ~25 re-renders per second
SHOWN_AT_FIRST = 30  # a long chat opens on its last finished entries; a link shows more
END_MARGIN_S = 0.5  # paused this close to the end counts as "finished", not "mid-film"


class ChatPanel(QWidget):
    question_submitted = Signal(object)  # the new ChatEntry (already in the transcript)
    stop_requested = Signal()
    seek_requested = Signal(float)
    weights_requested = Signal()
    export_requested = Signal()
    new_conversation_requested = Signal()
    link_clicked = Signal(str)  # an entry's link the panel does not handle itself
    edit_submitted = Signal(object, str)  # the entry being edited, its new text

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ChatPanel")
        self.transcript = ChatTranscript()
        self._position = 0.0
        self._duration = 0.0
        self._paused_mid_film = False
        self._playing = False
        self.model_ready = True  # False while the model loads: "sending…" says so
        # (hours, duration) and the settled entries as laid out in the document
        self._settled_key: tuple | None = None
        self._tail_start = 0  # where the entries still changing begin in the document
        self._shown_limit = SHOWN_AT_FIRST  # finished entries laid out by a full render
        self.hidden = 0  # leading entries behind the "show earlier" link
        self.editing: ChatEntry | None = None  # the question being edited in the box

        title = QLabel("<b>Assistant</b>", self)
        self.status_label = QLabel("", self)
        self.status_label.setObjectName("ChatStatus")
        self.status_label.setWordWrap(True)
        self.notice = QFrame(self)
        self.notice.setObjectName("WeightsNotice")
        self.notice_label = QLabel(self.notice)
        self.notice_label.setWordWrap(True)
        self.weights_button = QPushButton("Set up weights…", self.notice)
        self.weights_button.clicked.connect(self.weights_requested)
        notice_layout = QVBoxLayout(self.notice)
        notice_layout.addWidget(self.notice_label)
        notice_layout.addWidget(self.weights_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.notice.hide()

        self.browser = QTextBrowser(self)
        self.browser.setOpenLinks(False)
        self.browser.setOpenExternalLinks(False)
        self.browser.anchorClicked.connect(self._on_anchor)

        self.mode_box = QComboBox(self)
        self.mode_box.addItem("Whole film", GLOBAL)
        self.mode_box.addItem("This moment (00:00)", BREAKPOINT)
        self.mode_box.setToolTip("Ask about the whole film, or about the paused moment")
        self.question = QuestionEdit(self)
        self.question.submitted.connect(self.submit)
        self.question.escaped.connect(self.cancel_edit)
        self.edit_label = QLabel("", self)
        self.edit_label.setObjectName("ChatEditing")
        self.edit_label.setWordWrap(True)
        self.edit_label.hide()
        self.question.past_questions = self.past_questions
        self.send_button = QPushButton("Ask", self)
        self.send_button.clicked.connect(lambda: self.question.submitted.emit(self._typed()))
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setToolTip("Stop the answer being written (Ctrl+.)")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop_requested)
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setToolTip("Copy the conversation as Markdown")
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        self.export_button = QPushButton("Export…", self)
        self.export_button.clicked.connect(self.export_requested)
        self.new_button = QPushButton("New chat", self)
        self.new_button.setToolTip("Start a new conversation (earlier ones stay in the menu)")
        self.new_button.clicked.connect(self.new_conversation_requested)

        mode_row = QHBoxLayout()
        mode_row.addWidget(QLabel("Ask about:", self))
        mode_row.addWidget(self.mode_box, 1)
        buttons = QHBoxLayout()
        for button in (self.new_button, self.copy_button, self.export_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(title)
        layout.addWidget(self.status_label)
        layout.addWidget(self.notice)
        layout.addWidget(self.browser, 1)
        layout.addLayout(mode_row)
        layout.addWidget(self.edit_label)
        layout.addWidget(self.question)
        layout.addLayout(buttons)

        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(RENDER_DELAY_MS)
        self._render_timer.timeout.connect(self.render_now)
        self.render_now()

    # ------------------------------------------------------------------ mode switch
    @property
    def hours(self) -> bool:
        return self._duration >= 3600

    def mode(self) -> str:
        return self.mode_box.currentData()

    def set_mode(self, mode: str) -> None:
        self.mode_box.setCurrentIndex(self.mode_box.findData(mode))

    def set_playback(self, state: str, position_s: float, duration_s: float) -> None:
        """Follow the player: a pause mid-film makes "This moment" the default mode."""
        self._position, self._duration = position_s, duration_s
        self._playing = state in ("playing", "opening")
        self.mode_box.setItemText(1, mode_label(BREAKPOINT, position_s, hours=self.hours))
        paused_mid_film = state == "paused" and 0 < position_s < max(0.0, duration_s - END_MARGIN_S)
        if paused_mid_film != self._paused_mid_film:
            self._paused_mid_film = paused_mid_film
            self.set_mode(BREAKPOINT if paused_mid_film else GLOBAL)

    # ------------------------------------------------------------------ asking
    def _typed(self) -> str:
        return self.question.toPlainText().strip()

    def submit(self, text: str) -> ChatEntry | None:
        """Add ``text`` as a question in the current mode (at the current position)."""
        text = text.strip()
        if not text:
            return None
        if self.editing is not None:  # the controller accepts it (finish_edit) or says why not
            self.edit_submitted.emit(self.editing, text)
            return self.editing
        self.question.clear()
        at_s = self._position if self.mode() == BREAKPOINT else None
        entry = self.transcript.add(text, self.mode(), at_s)
        if self.mode() == GLOBAL and self._playing and self._position > 0:
            entry.moment_s = self._position  # offered as "this moment" in the bubble
        self.render_now()
        self.question_submitted.emit(entry)
        return entry

    def ask_about_moment(self, entry_id: int) -> ChatEntry | None:
        """Ask the whole-film question ``entry_id`` again about the moment the film was at
        when it was sent (its ``moment_s``)."""
        original = self.transcript.get(entry_id)
        if original is None or original.moment_s is None:
            return None
        at_s, original.moment_s = original.moment_s, None  # offered once: the link goes
        self._settled_key = None
        entry = self.transcript.add(original.question, BREAKPOINT, at_s)
        self.render_now()
        self.question_submitted.emit(entry)
        return entry

    def start_edit(self, entry: ChatEntry) -> None:
        """Put ``entry``'s question in the box to be edited and resent (Esc cancels)."""
        self.editing = entry
        self.edit_label.setText(
            f"Editing a question ({mode_label(entry.mode, entry.at_s, hours=self.hours)}): "
            "Enter sends it in place of the old one, Esc cancels."
        )
        self.edit_label.show()
        self.question.setPlainText(entry.question)
        cursor = self.question.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        self.question.setTextCursor(cursor)
        self.question.setFocus()

    def cancel_edit(self) -> None:
        """Leave editing (Esc): the box empties, the question stays as it was."""
        if self.editing is None:
            return
        self.finish_edit()

    def finish_edit(self) -> None:
        self.editing = None
        self.edit_label.hide()
        self.question.clear()

    def past_questions(self) -> list[str]:
        """This conversation's questions, oldest first (↑ in the question box)."""
        return [entry.question for entry in self.transcript.entries if entry.question]

    def refresh(self, _entry: ChatEntry | None = None) -> None:
        """An entry changed (a chunk arrived, its state moved): re-render soon."""
        self.stop_button.setEnabled(bool(self.transcript.pending()))
        if not self._render_timer.isActive():
            self._render_timer.start()

    def render_now(self) -> None:
        """Show the transcript. Finished entries at the top are laid out once; while an
        answer streams only the entries from the first unfinished one on are replaced, so a
        chunk costs the same in a long conversation as in a short one."""
        self._render_timer.stop()
        bar = self.browser.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        entries = self.transcript.entries
        settled = chat_render.settled_count(entries)
        layout = (self.hours, self._duration)
        key = tuple(
            (e.id, e.state, e.answer, e.note, e.links, e.coverage, e.question_id, e.revised)
            for e in entries[:settled]
        )
        style = {
            "hours": self.hours,
            "duration_s": self._duration or None,
            "model_ready": self.model_ready,
        }
        old = self._settled_key
        if not entries:
            self.browser.setHtml(chat_render.EMPTY_CHAT_HTML)
            self._settled_key = None
            self.hidden = 0
        elif old is not None and old[0] == layout and key[: len(old[1])] == old[1] and old[1]:
            # the same settled entries, perhaps followed by newly finished ones: lay those out
            # for good, then replace what is still changing
            if len(key) > len(old[1]):
                newly = entries[len(old[1]) : settled]
                self._replace_tail(chat_render.render_tail(newly, **style, settled=True))
                self._tail_start = self._document_end()
                self._settled_key = (layout, key)
            self._replace_tail(chat_render.render_tail(entries[settled:], **style))
        else:  # a new conversation, restored entries, another film length: everything anew
            self.hidden = max(0, settled - self._shown_limit)
            self.browser.setHtml(
                chat_render.render_transcript(entries[:settled], **style, hidden=self.hidden)
            )
            self._tail_start = self._document_end()
            self._settled_key = (layout, key)
            self._replace_tail(chat_render.render_tail(entries[settled:], **style))
        if at_bottom:
            bar.setValue(bar.maximum())
        self.stop_button.setEnabled(bool(self.transcript.pending()))

    def _document_end(self) -> int:
        cursor = QTextCursor(self.browser.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor.position()

    def _replace_tail(self, html: str) -> None:
        cursor = QTextCursor(self.browser.document())
        cursor.setPosition(self._tail_start)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        if html:
            cursor.insertHtml(html)

    def clear(self) -> None:
        self.cancel_edit()
        self.transcript.clear()
        self._shown_limit = SHOWN_AT_FIRST
        self.render_now()

    def show_earlier(self) -> None:
        """Lay out up to ``SHOWN_AT_FIRST`` more of the earlier entries."""
        self._shown_limit += SHOWN_AT_FIRST
        self._settled_key = None
        self.render_now()

    # ------------------------------------------------------------------ status and notices
    def set_model_ready(self, ready: bool) -> None:
        """The model is loaded (or not yet): a question in line says which."""
        if ready != self.model_ready:
            self.model_ready = ready
            self.refresh()

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def show_weights_notice(self, message: str) -> None:
        self.notice_label.setText(f"{message}\n\nThe player works fully without it.")
        self.notice.show()

    def hide_weights_notice(self) -> None:
        self.notice.hide()

    @property
    def weights_notice_visible(self) -> bool:
        return not self.notice.isHidden()

    def to_markdown(self, film: str | None = None) -> str:
        return self.transcript.to_markdown(film, hours=self.hours)

    def copy_to_clipboard(self) -> None:
        QGuiApplication.clipboard().setText(self.to_markdown())

    def _on_anchor(self, url: QUrl) -> None:
        if url.toString() == chat_render.MORE_HREF:
            bar = self.browser.verticalScrollBar()
            self.show_earlier()
            bar.setValue(0)
            return
        scheme, _, value = url.toString().partition(":")
        if scheme == chat_render.COPY_SCHEME and value.isdigit():
            entry = self.transcript.get(int(value))
            if entry is not None:
                QGuiApplication.clipboard().setText(entry.answer.strip())
            return
        moment_of = chat_render.parse_moment_href(url.toString())
        if moment_of is not None:
            self.ask_about_moment(moment_of)
            return
        seconds = chat_render.parse_seek_href(url.toString())
        if seconds is not None:
            self.seek_requested.emit(seconds)
        else:
            self.link_clicked.emit(url.toString())
