"""The Dialogue tab: timed lines, the current line following the film, search, click to seek,
the source shown; the worker's dialogue signal; Add Subtitle File and the track VLC shows
reach the engine; an answer without dialogue says so; the "Use dialogue" switch; the answer
length limit in Settings; speech progress on the timeline."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import Qt

from moviechat_desktop.engine.assistant import AnswerInfo
from moviechat_desktop.engine.dialogue.lines import Dialogue, DialogueLine
from moviechat_desktop.ui.dialogue_panel import DialoguePanel
from moviechat_desktop.ui.timeline_slider import TimelineSlider

pytest_plugins = ["ui_fixtures"]

pytestmark = pytest.mark.timeout(120)

LINES = (
    DialogueLine(1.0, 2.0, "Where is the rabbit?"),
    DialogueLine(3.5, 4.5, "Behind the big tree.", speaker="Frank"),
    DialogueLine(6.0, 7.0, "Then let us go there."),
)
SUBTITLES = Dialogue("sidecar", "Subtitles: bikes.en.srt", LINES, complete_until_s=10.0)


# ---------------------------------------------------------------- the panel alone
def test_panel_lists_highlights_filters_and_seeks(qtbot):
    panel = DialoguePanel()
    qtbot.addWidget(panel)
    panel.set_dialogue(SUBTITLES)
    assert panel.source_label.text() == "Subtitles: bikes.en.srt · 3 lines"
    texts = [panel.row_text(i) for i in range(panel.line_count())]
    assert texts == [
        "00:01  Where is the rabbit?",
        "00:03  Frank: Behind the big tree.",
        "00:06  Then let us go there.",
    ]
    assert panel.current_row() == -1
    panel.set_position(0.5)
    assert panel.current_row() == -1, "no line before the first one starts"
    panel.set_position(4.0)
    assert panel.current_row() == 1
    assert panel.is_highlighted(1) and not panel.is_highlighted(0)
    panel.set_position(9.0)
    assert panel.current_row() == 2 and panel.is_highlighted(2) and not panel.is_highlighted(1)

    qtbot.keyClicks(panel.search, "TREE")
    assert panel.visible_rows() == [1]
    panel.search.clear()
    qtbot.keyClicks(panel.search, "the")
    assert panel.visible_rows() == [0, 1, 2]
    qtbot.keyClicks(panel.search, "n let")
    assert panel.visible_rows() == [2]
    panel.search.clear()

    # recognised speech only grows: the rows are appended, the highlight stays
    grown = Dialogue("speech", "Speech: 50% recognised", (*LINES, DialogueLine(8.0, 9.0, "Go!")))
    panel.set_dialogue(grown)
    assert panel.line_count() == 4 and panel.row_text(3) == "00:08  Go!"
    assert panel.current_row() == 3 and panel.is_highlighted(3)  # the film is at 9 s

    panel.show()
    qtbot.waitExposed(panel)
    with qtbot.waitSignal(panel.seek_requested) as seek:
        rect = panel.view_rect(1)
        qtbot.mouseClick(panel.lines.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert seek.args == [3.5]


def test_panel_sources_and_long_films(qtbot):
    panel = DialoguePanel()
    qtbot.addWidget(panel)
    panel.set_dialogue(None)
    assert panel.source_label.text() == "No film open"
    panel.set_dialogue(Dialogue.none("No subtitles or speech found"))
    assert panel.source_label.text() == "No subtitles or speech found"
    assert panel.line_count() == 0
    speech = Dialogue("speech", "Speech: 34% recognised", (DialogueLine(3725.0, 3726.0, "Hi"),))
    panel.set_dialogue(speech)
    assert panel.source_label.text() == "Speech: 34% recognised · 1 line"
    assert panel.row_text(0) == "01:02:05  Hi"
    with qtbot.waitSignal(panel.source_chosen) as chosen:
        panel.source.setCurrentIndex(panel.source.findData("speech"))
        panel.source.activated.emit(panel.source.currentIndex())
    assert chosen.args == ["speech"]


def test_the_timeline_shows_what_was_heard(qtbot):
    slider = TimelineSlider()
    qtbot.addWidget(slider)
    slider.resize(400, 24)
    slider.set_duration(100.0)
    slider.set_heard(((0.0, 30.0),))
    assert slider.heard == ((0.0, 30.0),)
    slider.show()
    qtbot.waitExposed(slider)
    slider.repaint()  # paints both bars without error


# ---------------------------------------------------------------- in the window
@pytest.fixture
def dialogue_fake():
    """A ``make_assistant`` whose fake engine has the dialogue API (engine contract 2)."""
    from ui_fixtures import FakeAssistant

    class DialogueFake(FakeAssistant):
        def __init__(self, settings=None, **kwargs):
            super().__init__(settings, **kwargs)
            self.chosen: list[tuple] = []
            self.current = SUBTITLES
            self.last_answer = AnswerInfo()
            self.lock = threading.Lock()

        @property
        def dialogue(self):
            if not self.settings.dialogue.enabled:
                return Dialogue.none("Dialogue is switched off in Settings")
            return self.current if self.path else Dialogue.none("No film is open")

        def set_dialogue_source(self, source="auto", file=None, track=None):
            self.chosen.append((source, file, track))
            if file is not None:
                self.current = Dialogue("file", f"Subtitles: {file.rsplit('/', 1)[-1]}", LINES)
            return self.current

        def answer_length_limit(self):
            return 1234

        def ask(self, question, *args, **kwargs):
            used = len(self.dialogue.lines) if "dialogue" not in question else 0
            self.last_answer = AnswerInfo(dialogue_lines=used, dialogue_source="sidecar")
            return super().ask(question, *args, **kwargs)

    def make(settings):
        make.instance = DialogueFake(settings)
        return make.instance

    make.instance = None
    return make


def _open(qtbot, window, path):
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(path)
    qtbot.waitUntil(lambda: window.dialogue.line_count() == 3, timeout=10000)


def test_the_tab_shows_the_films_dialogue_and_follows_the_film(
    qtbot, make_main_window, dialogue_fake, bikes_mp4
):
    window = make_main_window(make_assistant=dialogue_fake)
    assert [window.side.tabText(i) for i in range(window.side.count())] == ["Chat", "Dialogue"]
    _open(qtbot, window, bikes_mp4)
    assert window.dialogue.source_label.text() == "Subtitles: bikes.en.srt · 3 lines"
    window.player.position_changed.emit(3.6)
    assert window.dialogue.current_row() == 1
    seeks = []
    window.player.seek = seeks.append  # what a click does, without racing VLC's clock
    window.dialogue.seek_requested.disconnect()
    window.dialogue.seek_requested.connect(window.player.seek)
    window.side.setCurrentWidget(window.dialogue)
    rect = window.dialogue.view_rect(2)
    qtbot.mouseClick(window.dialogue.lines.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert seeks == [6.0]
    # hiding the side panel (fullscreen, chat button) hides the tabs; showing brings them back
    window.set_chat_visible(False)
    assert window.side.isHidden() and window.chat.isHidden()
    window.set_chat_visible(True)
    assert not window.side.isHidden()


def test_added_subtitles_and_the_track_shown_reach_the_engine(
    qtbot, make_main_window, dialogue_fake, bikes_mp4, tmp_path
):
    window = make_main_window(make_assistant=dialogue_fake)
    _open(qtbot, window, bikes_mp4)
    fake = dialogue_fake.instance
    srt = tmp_path / "mine.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:02,000\nHello\n", encoding="utf-8")
    window.add_subtitle_file(srt)
    qtbot.waitUntil(lambda: ("auto", str(srt), None) in fake.chosen, timeout=5000)
    qtbot.waitUntil(
        lambda: window.dialogue.source_label.text().startswith("Subtitles: mine.srt"),
        timeout=5000,
    )
    window.player.subtitle_track_changed.emit(1)
    qtbot.waitUntil(lambda: ("auto", None, 1) in fake.chosen, timeout=5000)


def test_an_answer_without_dialogue_says_so(qtbot, make_main_window, dialogue_fake, bikes_mp4):
    window = make_main_window(make_assistant=dialogue_fake)
    _open(qtbot, window, bikes_mp4)
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.99, timeout=10000)
    window.chat.submit("Where is the rabbit?")
    window.chat.submit("Answer without dialogue please")
    entries = window.chat.transcript.entries
    qtbot.waitUntil(lambda: all(e.finished for e in entries), timeout=10000)
    assert "without dialogue" not in entries[0].note
    assert entries[1].note.endswith("Answered without dialogue.")


def test_the_use_dialogue_switch_and_the_answer_limit(
    qtbot, make_main_window, dialogue_fake, bikes_mp4, monkeypatch
):
    from moviechat_desktop.ui import dialogs

    window = make_main_window(make_assistant=dialogue_fake)
    qtbot.waitUntil(lambda: window.answer_limit == 1234, timeout=10000)
    _open(qtbot, window, bikes_mp4)
    window.dialogue.use_dialogue.setChecked(False)
    assert window.settings.dialogue.enabled is False
    qtbot.waitUntil(lambda: window.dialogue.line_count() == 0, timeout=5000)
    assert "switched off" in window.dialogue.source_label.text()
    dialog = dialogs.open_settings_dialog(window)
    try:
        assert dialog.max_tokens.maximum() == 1234
        assert dialog.use_dialogue.isChecked() is False
        dialog.use_dialogue.setChecked(True)
        assert dialog.settings().dialogue.enabled is True
    finally:
        dialog.reject()


@pytest.mark.timeout(300)
def test_the_real_engine_reads_a_sidecar_into_the_tab_and_the_prompt(
    qtbot, make_main_window, tiny_maker, make_video, tmp_path
):
    """The tiny real Assistant in the window: a sidecar beside the film reaches the tab, and a
    breakpoint answer's prompt holds only the lines up to that moment."""
    import shutil

    film = tmp_path / "talk.mp4"
    shutil.copy(make_video("talk-ui.mp4", seconds=4), film)
    (tmp_path / "talk.en.srt").write_text(
        "1\n00:00:00,500 --> 00:00:01,000\nFirst words.\n\n"
        "2\n00:00:03,000 --> 00:00:03,500\nLast words.\n",
        encoding="utf-8",
    )
    maker = tiny_maker(n_fragments=4)
    window = make_main_window(make_assistant=maker)
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(film)
    # the worker loads the model first (tens of seconds on a busy 2-core machine)
    qtbot.waitUntil(lambda: window.dialogue.line_count() == 2, timeout=150000)
    assert "talk.en.srt" in window.dialogue.source_label.text()
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.99, timeout=100000)
    entry = window.chat.submit("What was said?")
    qtbot.waitUntil(lambda: entry.finished, timeout=30000)
    info = maker.instance.last_answer
    assert info.dialogue_source == "sidecar"
    assert "without dialogue" not in entry.note


@pytest.fixture
def speech_fake():
    """A fake engine whose dialogue is speech recognised chunk by chunk in the background."""
    import dataclasses

    from ui_fixtures import FakeAssistant

    class SpeechFake(FakeAssistant):
        chunks = 4

        def __init__(self, settings=None, **kwargs):
            super().__init__(settings, **kwargs)
            self.heard = 0

        def open(self, path, subtitles=None):
            self.heard = 0
            return super().open(path, subtitles)

        def status(self):
            status = super().status()
            if self.path is None:
                return status
            span = self.duration_s / self.chunks
            return dataclasses.replace(
                status,
                speech_done_s=self.heard * span,
                speech_total_s=self.duration_s,
                speech_covered=((0.0, self.heard * span),) if self.heard else (),
                speech_pending=self.heard < self.chunks,
            )

        def background_step(self, cancel=None):
            time.sleep(0.02)
            if self.heard < self.chunks:
                self.heard += 1
            elif not super().status().finished:
                return self.encode_step(cancel)
            return self.status()

        @property
        def dialogue(self):
            span = self.duration_s / self.chunks
            lines = tuple(
                DialogueLine(i * span + 0.1, i * span + 1.0, f"chunk {i}")
                for i in range(self.heard)
            )
            percent = round(100 * self.heard / self.chunks)
            return Dialogue("speech", f"Speech: {percent}% recognised", lines)

    def make(settings):
        make.instance = SpeechFake(settings)
        return make.instance

    make.instance = None
    return make


def test_recognised_speech_grows_in_the_tab_and_on_the_timeline(
    qtbot, make_main_window, speech_fake, bikes_mp4
):
    window = make_main_window(make_assistant=speech_fake)
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(bikes_mp4)
    qtbot.waitUntil(lambda: window.dialogue.line_count() == 4, timeout=10000)
    assert window.dialogue.source_label.text() == "Speech: 100% recognised · 4 lines"
    qtbot.waitUntil(lambda: window.transport.slider.heard != (), timeout=5000)
    start, end = window.transport.slider.heard[0]
    assert start == 0.0 and end == pytest.approx(window.film_info.duration_s, rel=0.01)
