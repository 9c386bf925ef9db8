"""ModelWorker: the one serialized owner of the Assistant (with a fake Assistant)."""

import threading

import pytest
from ui_fixtures import FakeAssistant

from moviechat_desktop.engine.errors import VideoDecodeError
from moviechat_desktop.workers.model_worker import ModelWorker


class Recorder:
    """Collects a worker's signals (delivered on the GUI thread) as (name, args)."""

    NAMES = (
        "model_loading_started",
        "model_loaded",
        "model_unavailable",
        "film_opened",
        "film_closed",
        "encoding_progressed",
        "answer_deferred",
        "answer_started",
        "answer_chunk_received",
        "answer_finished",
        "answer_stopped",
        "answer_failed",
        "errored",
        "conversation_loaded",
        "cache_cleared",
    )

    def __init__(self, worker):
        self.events = []
        self.gui_thread = threading.get_ident()
        self.off_thread = 0
        for name in self.NAMES:
            getattr(worker, name).connect(lambda *args, n=name: self._record(n, args))

    def _record(self, name, args):
        if threading.get_ident() != self.gui_thread:
            self.off_thread += 1
        self.events.append((name, args))

    def named(self, name):
        return [args for n, args in self.events if n == name]

    def answer_text(self, rid):
        return "".join(args[1] for args in self.named("answer_chunk_received") if args[0] == rid)

    def has(self, name, rid=None):
        return any(rid is None or args[0] == rid for args in self.named(name))


@pytest.fixture
def make_worker(qtbot):
    workers = []

    def make(**fake_kwargs):
        fake = FakeAssistant(**fake_kwargs)
        worker = ModelWorker(lambda: fake)
        worker.fake = fake
        worker.rec = Recorder(worker)
        workers.append(worker)
        worker.start()
        return worker

    yield make
    for worker in workers:
        assert worker.shutdown(5000), "the worker thread did not end"


def opened(qtbot, worker, path):
    worker.load_model()
    with qtbot.waitSignal(worker.film_opened, timeout=5000):
        worker.open_film(str(path))


def test_encodes_in_the_background_with_throttled_progress(qtbot, make_worker, bikes_mp4):
    worker = make_worker(fragments=64, step_s=0.002)
    opened(qtbot, worker, bikes_mp4)
    qtbot.waitUntil(
        lambda: any(s.finished for (s,) in worker.rec.named("encoding_progressed")), timeout=10000
    )
    statuses = [s for (s,) in worker.rec.named("encoding_progressed")]
    assert worker.rec.named("model_loaded") == [("Fake CPU · float32",)]
    assert statuses[-1].finished and statuses[-1].fragments_done == 64
    assert statuses[-1].covered == ((0.0, pytest.approx(worker.fake.duration_s)),)
    # throttled: 64 steps of ~2 ms cannot produce one signal each at ≤10 signals/s
    assert len(statuses) < 64
    done = [s.fragments_done for s in statuses]
    assert done == sorted(done)
    # one owner: every Assistant call ran on the worker's own thread, never the GUI's
    assert len(worker.fake.thread_ids) == 1
    assert threading.get_ident() not in worker.fake.thread_ids
    assert worker.rec.off_thread == 0


def test_questions_are_answered_one_at_a_time_in_order(qtbot, make_worker, bikes_mp4):
    worker = make_worker(chunk_s=0.01)
    opened(qtbot, worker, bikes_mp4)
    for rid, text in ((1, "first"), (2, "second"), (3, "third")):
        worker.ask(rid, text, "global", None)
    qtbot.waitUntil(lambda: worker.rec.has("answer_finished", 3), timeout=10000)
    assert [a[0] for a in worker.rec.named("answer_started")] == [1, 2, 3]
    assert [a[0] for a in worker.rec.named("answer_finished")] == [1, 2, 3]
    assert worker.fake.max_concurrent == 1  # never two generations at once
    for rid, text in ((1, "first"), (2, "second"), (3, "third")):
        assert worker.rec.answer_text(rid).startswith(f"[{text}] A rabbit")
    # the conversation grew in order: each answer joined it (follow-ups)
    assert [q for q, *_ in worker.fake.conversation] == ["first", "second", "third"]


def test_stop_ends_the_running_answer_and_drops_a_queued_one(qtbot, make_worker, bikes_mp4):
    # answers of ~6 s (30 words 0.2 s apart): the stops land while the first one runs, also
    # on a loaded machine
    worker = make_worker(chunk_s=0.2, answer=" ".join(["word"] * 30))
    opened(qtbot, worker, bikes_mp4)
    worker.ask(1, "long", "global", None)
    worker.ask(2, "queued", "global", None)
    worker.ask(3, "kept", "global", None)
    qtbot.waitUntil(lambda: worker.rec.has("answer_chunk_received", 1), timeout=5000)
    worker.stop_answer(2)
    worker.stop_answer(1)
    # the recorder, not qtbot.waitSignal: a queued answer_stopped reaching a finished blocker
    # raised AttributeError inside pytest-qt now and then ('MultiSignalBlocker' object has no
    # attribute 'check_params_callback')
    qtbot.waitUntil(lambda: worker.rec.has("answer_stopped", 1), timeout=5000)
    qtbot.waitUntil(lambda: worker.rec.has("answer_finished", 3), timeout=30000)
    assert worker.rec.has("answer_stopped", 2)
    assert not worker.rec.has("answer_started", 2)
    assert not worker.rec.has("answer_finished", 1)
    assert [q for q, *_ in worker.fake.conversation] == ["kept"]


def test_breakpoint_beyond_coverage_waits_for_the_encoder(qtbot, make_worker, bikes_mp4):
    worker = make_worker(fragments=8, step_s=0.15)
    opened(qtbot, worker, bikes_mp4)
    at = 0.95 * worker.fake.duration_s
    worker.ask(7, "What happens now?", "breakpoint", at)
    qtbot.waitUntil(lambda: worker.rec.has("answer_deferred", 7), timeout=5000)
    rid, status = worker.rec.named("answer_deferred")[0]
    assert rid == 7 and status.fragments_done < 8  # announced while not yet covered
    qtbot.waitUntil(lambda: worker.rec.has("answer_finished", 7), timeout=15000)
    assert len(worker.rec.named("answer_deferred")) == 1  # announced once
    assert worker.fake.asked == [("What happens now?", "breakpoint", pytest.approx(at))]
    assert worker.fake.covers(at)


def test_global_question_before_anything_is_encoded_waits(qtbot, make_worker, bikes_mp4):
    gate = threading.Event()
    worker = make_worker(gate=gate)
    opened(qtbot, worker, bikes_mp4)
    worker.ask(1, "Anything?", "global", None)
    gate.set()
    qtbot.waitUntil(lambda: worker.rec.has("answer_finished", 1), timeout=10000)
    assert worker.fake.asked and worker.fake.asked[0][0] == "Anything?"


def test_closing_the_film_cancels_a_blocked_encoding_step(qtbot, make_worker, bikes_mp4):
    gate = threading.Event()  # never set: the encoder is stuck inside a step
    worker = make_worker(gate=gate)
    opened(qtbot, worker, bikes_mp4)
    worker.ask(1, "Will this run?", "global", None)
    with qtbot.waitSignal(worker.film_closed, timeout=3000):
        worker.close_film()
    qtbot.waitUntil(lambda: worker.rec.has("answer_stopped", 1), timeout=3000)
    assert worker.fake.path is None and worker.fake.done == 0


def test_replacing_the_film_stops_its_questions(qtbot, make_worker, bikes_mp4, bigbuckbunny):
    worker = make_worker(chunk_s=0.2)
    opened(qtbot, worker, bikes_mp4)
    worker.ask(1, "about bikes", "global", None)
    qtbot.waitUntil(lambda: worker.rec.has("answer_started", 1), timeout=5000)
    with qtbot.waitSignal(worker.film_opened, timeout=5000) as sig:
        worker.open_film(str(bigbuckbunny))
    assert sig.args[0] == str(bigbuckbunny)
    qtbot.waitUntil(lambda: worker.rec.has("answer_stopped", 1), timeout=3000)
    assert worker.fake.path == str(bigbuckbunny)


def test_missing_weights_make_the_model_unavailable_not_the_player(qtbot, make_worker, bikes_mp4):
    worker = make_worker(weights=False)
    with qtbot.waitSignal(worker.model_unavailable, timeout=5000) as sig:
        worker.load_model()
    report = sig.args[0]
    assert report.needs_weights and "weights" in report.message.lower()
    with qtbot.waitSignal(worker.film_opened, timeout=5000):
        worker.open_film(str(bikes_mp4))  # a film still opens (probe + plan need no model)
    with qtbot.waitSignal(worker.answer_failed, timeout=5000) as failed:
        worker.ask(1, "Hello?", "global", None)
    assert failed.args[0] == 1 and failed.args[1].needs_weights
    assert not worker.rec.named("encoding_progressed")[1:]  # nothing encoded without a model


def test_a_bad_file_is_an_error_report(qtbot, make_worker, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 50)
    worker = make_worker()
    worker.load_model()
    with qtbot.waitSignal(worker.errored, timeout=5000) as sig:
        worker.open_film(str(bad))
    assert sig.args[0].kind.endswith("Error") and not sig.args[0].unexpected
    with qtbot.waitSignal(worker.answer_failed, timeout=5000) as failed:
        worker.ask(1, "Hello?", "global", None)
    assert "open a film" in failed.args[1].message.lower()


def test_shutdown_during_generation_ends_the_thread(qtbot, make_worker, bikes_mp4):
    worker = make_worker(chunk_s=0.5)
    opened(qtbot, worker, bikes_mp4)
    worker.ask(1, "long answer", "global", None)
    qtbot.waitUntil(lambda: worker.rec.has("answer_started", 1), timeout=5000)
    assert worker.shutdown(3000)
    assert not worker.isRunning()


def test_fake_assistant_matches_the_facade_signatures():
    """The fake must keep the engine Assistant's public API, or these tests prove nothing."""
    import inspect

    from moviechat_desktop.engine.assistant import Assistant

    for name in ("load_model", "open", "close", "encode_step", "status", "covers", "ask"):
        real = list(inspect.signature(getattr(Assistant, name)).parameters)
        fake = list(inspect.signature(getattr(FakeAssistant, name)).parameters)
        assert fake == real, name
    for name in ("model_loaded", "device_label"):
        assert isinstance(getattr(Assistant, name), property)


@pytest.mark.parametrize(
    "error",
    [VideoDecodeError("the film cannot be decoded at 00:05"), RuntimeError("CUDA error: boom")],
)
def test_an_encoding_failure_is_reported_once_and_stops_encoding(
    qtbot, make_worker, bikes_mp4, error
):
    worker = make_worker(fail_at=3, fail_with=error)
    opened(qtbot, worker, bikes_mp4)
    qtbot.waitUntil(lambda: worker.rec.has("errored"), timeout=5000)
    (report,) = worker.rec.named("errored")[0]
    assert report.kind == type(error).__name__
    assert report.unexpected == (not isinstance(error, VideoDecodeError))
    worker.ask(1, "At the end?", "breakpoint", 9.5)  # beyond what could be watched
    qtbot.waitUntil(lambda: worker.rec.has("answer_failed", 1), timeout=5000)
    (_, failed), *_ = worker.rec.named("answer_failed")
    assert "could not be watched further" in failed.message
    worker.ask(2, "So far?", "global", None)  # what was watched can still be asked about
    qtbot.waitUntil(lambda: worker.rec.has("answer_finished", 2), timeout=5000)
    assert worker.fake.failures == 1 and len(worker.rec.named("errored")) == 1


def test_progress_throttle_holds_back_and_flushes_the_latest():
    from moviechat_desktop.workers.throttle import ProgressThrottle

    sent = []
    throttle = ProgressThrottle(sent.append, interval_s=3600)
    assert throttle.report(1)  # the first report always goes out
    assert not throttle.report(2) and not throttle.report(3)
    assert sent == [1]
    throttle.flush()
    assert sent == [1, 3]  # only the latest held-back value
    throttle.flush()
    assert sent == [1, 3]  # nothing left to flush
    assert throttle.report(4, force=True) and sent == [1, 3, 4]


def test_the_saved_conversation_follows_open_new_and_each_answer(qtbot, make_worker, bikes_mp4):
    worker = make_worker()
    opened(qtbot, worker, bikes_mp4)
    qtbot.waitUntil(lambda: worker.rec.has("conversation_loaded"), timeout=5000)
    (view,) = worker.rec.named("conversation_loaded")[0]
    assert (view.film_path, view.reason, view.records, view.conversations) == (
        str(bikes_mp4),
        "opened",
        (),
        (),
    )
    qtbot.waitUntil(lambda: worker.fake.done > 0, timeout=5000)
    worker.ask(1, "first", "global", None)
    qtbot.waitUntil(lambda: worker.rec.has("answer_finished", 1), timeout=5000)
    qtbot.waitUntil(lambda: len(worker.rec.named("conversation_loaded")) == 2, timeout=5000)
    (updated,) = worker.rec.named("conversation_loaded")[1]
    assert updated.reason == "updated" and updated.records == ()  # only the list changed
    assert [(c.title, c.messages) for c in updated.conversations] == [("first", 2)]
    worker.new_conversation()
    qtbot.waitUntil(lambda: len(worker.rec.named("conversation_loaded")) == 3, timeout=5000)
    (new,) = worker.rec.named("conversation_loaded")[2]
    assert new.reason == "new" and new.conversation_id != view.conversation_id
    worker.open_conversation(view.conversation_id)
    qtbot.waitUntil(lambda: len(worker.rec.named("conversation_loaded")) == 4, timeout=5000)
    (switched,) = worker.rec.named("conversation_loaded")[3]
    assert switched.reason == "switched" and switched.conversation_id == view.conversation_id
    assert [r.role for r in switched.records] == ["user", "assistant"]
    worker.open_conversation("no-such-id")
    qtbot.waitUntil(lambda: worker.rec.has("errored"), timeout=5000)
    (report,) = worker.rec.named("errored")[0]
    assert "no conversation 'no-such-id'" in report.message
    assert worker.rec.off_thread == 0


def test_an_unreadable_history_does_not_stop_the_film(qtbot, make_worker, bikes_mp4, caplog):
    worker = make_worker()

    def broken(conversation_id=None):
        raise PermissionError("chat file unreadable")

    worker.fake.conversation_records = broken
    opened(qtbot, worker, bikes_mp4)
    qtbot.waitUntil(lambda: worker.fake.done == worker.fake.fragments, timeout=5000)
    assert not worker.rec.has("conversation_loaded") and not worker.rec.has("errored")
    assert "reading the chat history failed" in caplog.text


def test_clear_cache_runs_on_the_worker(qtbot, make_worker):
    worker = make_worker()
    with qtbot.waitSignal(worker.cache_cleared, timeout=5000) as blocker:
        worker.clear_cache()
    assert blocker.args[0].removed == 2 and worker.fake.cleared == 1
    assert worker.fake.thread_ids and threading.get_ident() not in worker.fake.thread_ids


def test_a_chat_that_cannot_be_saved_is_reported_once(qtbot, make_worker, bikes_mp4):
    worker = make_worker()
    opened(qtbot, worker, bikes_mp4)
    qtbot.waitUntil(lambda: worker.fake.done > 0, timeout=5000)
    worker.fake.history_error = "No space left on device"
    for rid in (1, 2):
        worker.ask(rid, f"question {rid}", "global", None)
    qtbot.waitUntil(lambda: worker.rec.has("answer_finished", 2), timeout=5000)
    qtbot.wait(50)
    reports = [args[0] for args in worker.rec.named("errored")]
    assert [r.title for r in reports] == ["Conversation not saved"]
    assert "No space left on device" in reports[0].message and "Export" in reports[0].message
