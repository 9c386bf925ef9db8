"""Fixtures for the UI tests: a qasync loop, a fake Assistant, the tiny real one, windows.

The UI test modules load it with ``pytest_plugins = ["ui_fixtures"]``; the lead may register
it once in conftest.py instead.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from moviechat_desktop.engine.assistant import AnswerInfo, EncodeStatus
from moviechat_desktop.engine.errors import Cancelled, NotReady, VideoError, WeightsMissing
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.settings import AppSettings
from moviechat_desktop.engine.store.chat_history import (
    ChatRecord,
    coverage_note,
    current_branch,
    find_on_branch,
    new_conversation_id,
    new_message_id,
    summarize,
)
from moviechat_desktop.engine.store.film_cache import ClearResult

TEST_FRAGMENTS = 8  # fragments per film in UI tests (the product default is 128)


def test_settings(model_dir: str | Path = "") -> AppSettings:
    settings = AppSettings()
    settings.sampling.n_fragments = TEST_FRAGMENTS
    settings.model.model_dir = str(model_dir)
    settings.model.device = "cpu"
    settings.generation.greedy = True
    settings.generation.max_new_tokens = 24
    return settings


# --------------------------------------------------------------------------- a fake Assistant
class FakeAssistant:
    """The engine ``Assistant``'s API with adjustable speed, for tests of the Qt plumbing.

    Durations come from the engine's real ``probe``; a film is ``fragments`` equal
    fragments; answers are ``answer`` word by word (each word ``chunk_s`` apart), prefixed by
    the question so a test can tell answers apart. ``gate`` (a threading.Event), when given,
    holds each encoding step until set, so a test can freeze the encoder; ``fail_at`` makes
    the step after that many fragments raise ``fail_with``. ``history`` (a dict shared by
    several fakes, "film path → ChatRecord list") plays the chat history on disk, so a test can
    reopen a film in a new window and see its conversation. Like the engine, it saves a stopped
    answer's partial text, regenerates and edits saved questions, and keeps in ``contexts``
    the earlier (question, answer) turns each answer followed (its model context).
    """

    def __init__(
        self,
        settings: AppSettings | None = None,
        *,
        fragments: int = TEST_FRAGMENTS,
        step_s: float = 0.01,
        chunk_s: float = 0.005,
        answer: str = "A rabbit stretches at 00:03 and then walks away.",
        weights: bool = True,
        gate: threading.Event | None = None,
        fail_at: int | None = None,
        fail_with: BaseException | None = None,
        history: dict[str, list[ChatRecord]] | None = None,
    ) -> None:
        self.settings = settings or test_settings()
        self.fragments = fragments
        self.step_s = step_s
        self.chunk_s = chunk_s
        self.answer = answer
        self.weights = weights
        self.gate = gate
        self.fail_at, self.fail_with = fail_at, fail_with
        self.failures = 0
        self.model_loaded = False
        self.device_label = "Fake CPU · float32"
        self.path: str | None = None
        self.duration_s = 0.0
        self.done = 0
        self.conversation: list[tuple[str, str, float | None, str]] = []
        self.asked: list[tuple[str, str, float | None]] = []
        self.generating = threading.Event()  # set while an answer is being generated
        self.concurrent = 0
        self.max_concurrent = 0
        self.thread_ids: set[int] = set()
        self.history = {} if history is None else history
        self.conversation_id: str | None = None
        self.cleared = 0
        self.history_error: str | None = None  # set by a test: saving the chat fails
        # the fake's answers count as using dialogue: no "Answered without dialogue." footnote
        self.last_answer = AnswerInfo(dialogue_lines=1)
        self.contexts: list[list[tuple[str, str]]] = []
        self.prepared: list[float] = []  # prepare_breakpoint's times, in order

    def _touch(self) -> None:
        self.thread_ids.add(threading.get_ident())

    def load_model(self) -> None:
        self._touch()
        if not self.weights:
            raise WeightsMissing("No MovieChat weights are installed (fake).")
        self.model_loaded = True

    def open(self, path, subtitles=None):
        from moviechat_desktop.engine.video.probe import probe

        self._touch()
        info = probe(path)
        self.path, self.duration_s, self.done = str(path), info.duration_s, 0
        self.conversation.clear()
        saved = self.history.get(self.path, [])
        self.conversation_id = saved[-1].conversation if saved else new_conversation_id()
        return info

    def close(self) -> None:
        self._touch()
        self.path, self.duration_s, self.done = None, 0.0, 0

    def shutdown(self) -> None:
        self.close()
        self.shut_down = True

    def status(self) -> EncodeStatus:
        if self.path is None:
            return EncodeStatus(0, 0, 0, 0, (), 0.0, 0.0, False)
        span = self.duration_s / self.fragments
        covered = ((0.0, self.done * span),) if self.done else ()
        return EncodeStatus(
            self.done, self.fragments, 8 * self.done, 8 * self.fragments, covered,
            8 / self.step_s if self.step_s else 0.0, self.duration_s, self.done == self.fragments,
        )  # fmt: skip

    def encode_step(self, cancel: CancelToken | None = None) -> EncodeStatus:
        self._touch()
        if self.path is None:
            raise NotReady("no film is open")
        if self.gate is not None:
            while not self.gate.wait(0.02):
                if cancel is not None:
                    cancel.raise_if_cancelled()
        time.sleep(self.step_s)
        if cancel is not None:
            cancel.raise_if_cancelled()
        if self.fail_at is not None and self.done == self.fail_at:
            self.failures += 1
            raise self.fail_with or RuntimeError("fake failure")
        self.done = min(self.fragments, self.done + 1)
        return self.status()

    def covers(self, at_s: float) -> bool:
        if self.path is None or self.duration_s <= 0:
            return False
        needed = min(self.fragments - 1, math.floor(at_s / (self.duration_s / self.fragments)))
        return self.done >= needed + 1

    def prepare_breakpoint(self, at_s: float) -> bool:
        self._touch()
        self.prepared.append(at_s)
        return self.path is not None

    def new_conversation(self) -> None:
        self.conversation.clear()
        self.conversation_id = new_conversation_id()

    # the chat history, kept in ``self.history`` instead of on disk
    def _record(self, role: str, text: str, mode: str, at_s: float | None, **v2) -> str:
        record = ChatRecord(
            self.conversation_id, role, text, mode, at_s, time.time(), "fake",
            id=new_message_id(), **v2,
        )  # fmt: skip
        self.history.setdefault(self.path, []).append(record)
        return record.id

    def _coverage(self, mode: str) -> str:
        """The engine's coverage note of a whole-film answer from part of the film."""
        status = self.status()
        if mode != "global" or status.finished or not status.fragments_total:
            return ""
        return coverage_note(status.fraction, status.covered[0][1] if status.covered else 0.0)

    def _context(self, branch: list[ChatRecord]) -> list[tuple[str, str]]:
        """The (question, answer) turns of ``branch`` (stopped answers left out)."""
        return [
            (q.text, a.text)
            for q, a in itertools.pairwise(branch)
            if q.role == "user" and a.role == "assistant" and not a.stopped
        ]

    def conversation_records(self, conversation_id: str | None = None) -> list[ChatRecord]:
        wanted = conversation_id or self.conversation_id
        return [r for r in self.history.get(self.path or "", []) if r.conversation == wanted]

    def conversations(self):
        return summarize(self.history.get(self.path or "", []))

    def open_conversation(self, conversation_id: str) -> None:
        if not self.conversation_records(conversation_id):
            raise NotReady(f"no conversation {conversation_id!r} about this film")
        self.conversation_id = conversation_id

    def clear_cache(self) -> ClearResult:
        self._touch()
        self.cleared += 1
        return ClearResult(removed=2, freed_bytes=3_500_000, kept_in_use=1)

    def ask(
        self, question, mode="global", at_s=None, settings=None, cancel=None, *,
        record_question=True, frame=None,
    ) -> Iterator[str]:  # fmt: skip
        self._touch()
        if self.path is None:
            raise NotReady("no film is open")
        if self.done == 0:
            raise NotReady("nothing of the film has been encoded yet")
        if mode == "breakpoint":
            if at_s is None or not 0 <= at_s <= self.duration_s:
                raise VideoError("outside the film")
            if not self.covers(at_s):
                raise NotReady("not watched that far yet")
        self.asked.append((question, mode, at_s))
        self.contexts.append(self._context(current_branch(self.conversation_records())))
        self._new_answer(mode, at_s)
        if record_question:
            self.last_answer.question_id = self._record("user", question, mode, at_s)
        return self._stream(question, mode, at_s, cancel)

    def _new_answer(self, mode: str, at_s: float | None) -> None:
        """A new ``last_answer``, keeping its dialogue fields (a subclass sets them)."""
        self.last_answer = dataclasses.replace(
            self.last_answer, mode=mode, at_s=at_s, question_id=None, answer_id=None,
            stopped=False, coverage="",
        )  # fmt: skip

    def _on_branch(self, question_id: str) -> tuple[list[ChatRecord], int]:
        records = self.conversation_records()
        branch = current_branch(records)
        index = find_on_branch(branch, question_id, records)
        if index < 0 or branch[index].role != "user":
            raise NotReady("that question is not part of the current conversation")
        return branch, index

    def regenerate(self, question_id, settings=None, cancel=None, *, frame=None):
        branch, index = self._on_branch(question_id)
        q = branch[index]
        after = branch[index + 1] if index + 1 < len(branch) else None
        self.asked.append((q.text, q.mode, q.at_s))
        self.contexts.append(self._context(branch[:index]))
        self._new_answer(q.mode, q.at_s)
        self.last_answer.question_id = q.id
        replaces = after.id if after is not None and after.role == "assistant" else None
        return self._stream(q.text, q.mode, q.at_s, cancel, replaces=replaces)

    def edit_question(self, question_id, text, settings=None, cancel=None, *, frame=None):
        branch, index = self._on_branch(question_id)
        old = branch[index]
        self.asked.append((text, old.mode, old.at_s))
        self.contexts.append(self._context(branch[:index]))
        self._new_answer(old.mode, old.at_s)
        self.last_answer.question_id = self._record(
            "user", text, old.mode, old.at_s, replaces=old.id
        )
        return self._stream(text, old.mode, old.at_s, cancel)

    def _stream(self, question, mode, at_s, cancel, replaces=None) -> Iterator[str]:
        self.last_answer.coverage = coverage = self._coverage(mode)
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        self.generating.set()
        text = ""
        try:
            for word in f"[{question}] {self.answer}".split(" "):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                time.sleep(self.chunk_s)
                chunk = word + " "
                text += chunk
                yield chunk
            self.conversation.append((question, mode, at_s, text))
            self.last_answer.answer_id = self._record(
                "assistant", text, mode, at_s, replaces=replaces, coverage=coverage
            )
        except (Cancelled, GeneratorExit):  # stopped: saved with its partial text, as the engine
            self.last_answer.stopped = True
            self.last_answer.answer_id = self._record(
                "assistant", text.strip(), mode, at_s, replaces=replaces, stopped=True,
                coverage=coverage,
            )  # fmt: skip
            raise
        finally:
            self.concurrent -= 1
            self.generating.clear()


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def qasync_loop(qapp):
    """A qasync loop marked as running on top of pytest-qt's event processing.

    qtbot's waits spin Qt's event loop, which runs the asyncio callbacks; the loop is
    detached again afterwards so other tests see no running asyncio loop.
    """
    import qasync

    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        deadline = time.monotonic() + 1.0
        while any(not t.done() for t in asyncio.all_tasks(loop)) and time.monotonic() < deadline:
            qapp.processEvents()
        asyncio.events._set_running_loop(None)
        try:
            qapp.aboutToQuit.disconnect(loop._after_run_forever)
        except (RuntimeError, TypeError, AttributeError):
            pass
        loop._QEventLoop__is_running = False  # qasync offers no way to detach such a loop
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def fake_maker():
    """``fake_maker(**kwargs)`` → a ``make_assistant`` callable building one FakeAssistant;
    the built instance is at ``maker.instance`` once the worker has created it."""

    def factory(**kwargs):
        def make(settings):
            make.instance = FakeAssistant(settings, **kwargs)
            return make.instance

        make.instance = None
        return make

    return factory


def _throttled(assistant_class, step_delay_s: float, chunk_delay_s: float):
    """The real Assistant, with optional pauses around encoding steps and answer chunks so a
    test can act "while encoding" or "while answering" without racing the tiny model."""

    class ThrottledAssistant(assistant_class):
        def encode_step(self, cancel=None):
            if step_delay_s and cancel is not None and cancel.wait(step_delay_s):
                cancel.raise_if_cancelled()
            elif step_delay_s and cancel is None:
                time.sleep(step_delay_s)
            return super().encode_step(cancel)

        def ask(self, question, mode="global", at_s=None, settings=None, cancel=None, **kw):
            chunks = super().ask(question, mode, at_s, settings, cancel, **kw)
            if not chunk_delay_s:
                return chunks
            return self._slowly(chunks)

        def _slowly(self, chunks):
            for chunk in chunks:
                time.sleep(chunk_delay_s)
                yield chunk

    return ThrottledAssistant


@pytest.fixture
def tiny_maker(reference_dir):
    """``tiny_maker(step_delay_s=0, chunk_delay_s=0, n_fragments=8)`` → a ``make_assistant``
    building the REAL engine Assistant on the tiny reference model (CPU, float32)."""
    pytest.importorskip(
        "moviechat_desktop.engine.model.movie_chat", reason="engine model not built yet"
    )

    def factory(step_delay_s: float = 0.0, chunk_delay_s: float = 0.0, n_fragments: int = 8):
        def make(settings):
            from moviechat_desktop.engine.assistant import Assistant

            chosen = copy.deepcopy(settings)
            chosen.model.model_dir = str(reference_dir)
            chosen.sampling.n_fragments = n_fragments
            make.instance = _throttled(Assistant, step_delay_s, chunk_delay_s)(settings=chosen)
            return make.instance

        make.instance = None
        return make

    return factory


@pytest.fixture
def make_main_window(qtbot, qasync_loop, tmp_path, fake_maker):
    """Factory: ``make_main_window(make_assistant=None, probe=None, load_model=True, …)``.

    The window uses VLC's dummy outputs (unless ``video=True``), a history file in tmp_path
    and test settings; every window is shut down (threads joined) at the end of the test.
    """
    from moviechat_desktop.ui.main_window import MainWindow
    from moviechat_desktop.ui.playback_history import PlaybackHistory
    from moviechat_desktop.ui.vlc_setup import DUMMY_OUTPUT_ARGS, default_vlc_args

    windows = []

    def make(
        make_assistant=None,
        probe=None,
        load_model=True,
        settings=None,
        show=True,
        video=False,
        whole_film_choice="now",
    ):
        """``video=True``: VLC draws for real (needs an X display); audio stays dummy.
        ``whole_film_choice``: the chat's answer to "a whole-film question while the film is
        partly watched?" as if already chosen ("now": answered at once, as before the
        question existed; None: the chat asks, as in the app)."""
        args = [*default_vlc_args(), "--aout=dummy"] if video else ["--quiet", *DUMMY_OUTPUT_ARGS]
        window = MainWindow(
            settings=settings or test_settings(),
            make_assistant=make_assistant or fake_maker(),
            probe=probe,
            vlc_args=args,
            history=PlaybackHistory(tmp_path / "history.json"),
            load_model=load_model,
        )
        window.controller.whole_film_choice = whole_film_choice
        windows.append(window)
        if show:
            window.show()
            qtbot.waitExposed(window)
        return window

    yield make
    for window in windows:
        window.shutdown()
        window.close()
        window.deleteLater()
    qtbot.wait(10)


@pytest.fixture
def wait_for_model(qtbot):
    """``wait_for_model(window)``: wait until its model is loaded; fail at once, with the
    reason, when it cannot be (instead of timing out)."""

    def wait(window, timeout_ms: int = 90_000) -> None:
        status = window.status
        qtbot.waitUntil(lambda: status.model_state in ("ready", "unavailable"), timeout=timeout_ms)
        assert status.model_state == "ready", status.device_label.toolTip()

    return wait
