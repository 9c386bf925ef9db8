"""ModelWorker when its engine dies (in-process fakes standing in for the child process; the
real child is killed in test_ui_engine_process.py): restart, reload, reopen, ask again and
save the question once, give up after repeated deaths; cancelled work is no error."""

from __future__ import annotations

import threading

import pytest
from test_ui_model_worker import Recorder
from ui_fixtures import FakeAssistant

from moviechat_desktop.service.api import EngineDied, Interruptible
from moviechat_desktop.workers import model_worker
from moviechat_desktop.workers.model_worker import ModelWorker


class MortalFake(FakeAssistant):
    """A fake engine that can be 'killed': every call after ``kill()`` raises EngineDied."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dead = threading.Event()
        self.interrupted = False

    @property
    def alive(self) -> bool:
        return not self.dead.is_set()

    def interrupt(self) -> None:
        self.interrupted = True

    def kill(self) -> None:
        self.dead.set()

    def _check(self) -> None:
        if self.dead.is_set():
            raise EngineDied("The assistant's process ended: it was killed by SIGKILL.")

    def encode_step(self, cancel=None):
        self._check()
        status = super().encode_step(cancel)
        self._check()
        return status

    def status(self):
        self._check()
        return super().status()

    def _stream(self, question, mode, at_s, cancel, **kwargs):
        for chunk in super()._stream(question, mode, at_s, cancel, **kwargs):
            self._check()
            yield chunk

    def _record(self, *args, **kwargs):
        if self.dead.is_set():  # a killed process saves nothing (not even a stopped answer)
            return None
        return super()._record(*args, **kwargs)


@pytest.fixture
def mortal_worker(qtbot):
    workers = []

    def make(**fake_kwargs):
        history: dict = {}
        engines: list[MortalFake] = []

        def factory():
            engines.append(MortalFake(history=history, **fake_kwargs))
            return engines[-1]

        worker = ModelWorker(factory)
        worker.engines, worker.history = engines, history
        worker.rec = Recorder(worker)
        restarted: list[str] = []
        worker.engine_restarted.connect(restarted.append)
        worker.restarted = restarted
        workers.append(worker)
        worker.start()
        worker.load_model()
        return worker

    yield make
    for worker in workers:
        assert worker.shutdown(5000)


def _open(qtbot, worker, path):
    with qtbot.waitSignal(worker.film_opened, timeout=5000):
        worker.open_film(str(path))


def _questions(worker, text):
    return [r for records in worker.history.values() for r in records if r.text == text]


def test_a_fake_engine_is_interruptible():
    assert isinstance(MortalFake(), Interruptible)


def test_death_while_answering_restarts_and_asks_again_saving_the_question_once(
    qtbot, mortal_worker, bikes_mp4
):
    worker = mortal_worker(chunk_s=0.05)
    _open(qtbot, worker, bikes_mp4)
    qtbot.waitUntil(lambda: worker.engines[0].done > 0, timeout=5000)
    worker.ask(1, "Who is there?", "global", None)
    worker.ask(2, "And then?", "global", None)
    qtbot.waitUntil(lambda: worker.rec.has("answer_chunk_received", 1), timeout=5000)
    worker.engines[0].kill()
    qtbot.waitUntil(lambda: worker.rec.has("answer_finished", 2), timeout=10000)
    assert worker.restarted and "SIGKILL" in worker.restarted[0]
    assert len(worker.engines) == 2 and worker.engines[1].model_loaded
    assert worker.engines[1].path == str(bikes_mp4)  # the film was reopened
    assert [a[0] for a in worker.rec.named("answer_started")] == [1, 1, 2]  # 1 started over
    assert not worker.rec.named("answer_failed") and not worker.rec.named("errored")
    asked = _questions(worker, "Who is there?")
    assert [r.role for r in asked] == ["user"]  # saved once, by the engine that died
    assert worker.engines[1].asked[0][0] == "Who is there?"
    reopened = [v for (v,) in worker.rec.named("conversation_loaded") if v.reason == "reopened"]
    assert reopened and reopened[0].records == ()  # the chat on screen is kept as it is


def test_death_while_idle_is_noticed_and_the_engine_restarted(qtbot, mortal_worker, bikes_mp4):
    worker = mortal_worker(step_s=0.001)
    _open(qtbot, worker, bikes_mp4)
    qtbot.waitUntil(lambda: worker.engines[0].done == worker.engines[0].fragments, timeout=5000)
    worker.engines[0].kill()
    qtbot.waitUntil(lambda: len(worker.engines) == 2, timeout=5000)  # within IDLE_CHECK_S
    worker.ask(1, "Still there?", "global", None)
    qtbot.waitUntil(lambda: worker.rec.has("answer_finished", 1), timeout=5000)


def test_repeated_deaths_give_up_and_fail_the_questions(
    qtbot, mortal_worker, bikes_mp4, monkeypatch
):
    monkeypatch.setattr(model_worker, "MAX_RESTARTS", 2)
    worker = mortal_worker(step_s=0.05)
    gave_up = []
    worker.engine_gave_up.connect(gave_up.append)
    _open(qtbot, worker, bikes_mp4)
    worker.engines[0].kill()
    qtbot.waitUntil(lambda: len(worker.engines) == 2, timeout=5000)
    qtbot.waitUntil(lambda: worker.engines[1].done > 0, timeout=5000)
    worker.ask(1, "Hello?", "global", None)
    worker.engines[1].kill()
    qtbot.waitUntil(lambda: bool(gave_up), timeout=5000)
    assert "2 times within a minute" in gave_up[0].message
    qtbot.waitUntil(lambda: worker.rec.has("answer_failed", 1), timeout=5000)
    worker.ask(2, "Anyone?", "global", None)
    qtbot.waitUntil(lambda: worker.rec.has("answer_failed", 2), timeout=5000)
    assert "stopped" in worker.rec.named("answer_failed")[-1][1].message
    assert len(worker.engines) == 2  # no third start


def test_opening_another_film_while_encoding_is_no_error(
    qtbot, mortal_worker, bikes_mp4, vtest_avi
):
    worker = mortal_worker(step_s=0.2)
    _open(qtbot, worker, bikes_mp4)
    qtbot.waitUntil(lambda: worker.engines[0].done > 0, timeout=5000)
    _open(qtbot, worker, vtest_avi)
    qtbot.waitUntil(lambda: worker.engines[0].done > 0, timeout=5000)
    assert not worker.rec.named("errored")


def test_shutdown_interrupts_the_engine(qtbot, mortal_worker, bikes_mp4):
    worker = mortal_worker(step_s=0.05)
    _open(qtbot, worker, bikes_mp4)
    assert worker.shutdown(5000)
    assert worker.engines[0].interrupted and worker.engines[0].shut_down
