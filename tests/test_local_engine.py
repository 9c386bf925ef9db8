"""The local engine: the Assistant in a child process behind a pipe (service.local_engine).

The pipe's rules with a scripted engine (streaming, cancel, errors, callbacks, death, stop),
then the real Assistant on the tiny reference model: the child's greedy answer equals the
in-process one, and the process that drives it never imports torch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from moviechat_desktop.engine.errors import NotReady
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.service.api import (
    EngineClient,
    EngineDied,
    EngineStopped,
    Interruptible,
    RemoteError,
)
from moviechat_desktop.service.local_engine import LocalEngine

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent


def _children() -> set[int]:
    """This process's live child processes (the multiprocessing resource tracker aside)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == os.getpid() and b"resource_tracker" not in cmdline:
            found.add(int(entry.name))
    return found


@pytest.fixture
def scripted():
    engines = []

    def start(**kwargs) -> LocalEngine:
        engine = LocalEngine("engine_children:Scripted", **kwargs)
        engines.append(engine)
        return engine

    before = _children()
    yield start
    for engine in engines:
        engine.shutdown()
    assert _children() - before == set(), "a child process was left behind"


def test_calls_attributes_and_streams_cross_the_pipe(scripted):
    engine = scripted(chunk_s=0.05)
    assert engine.pid != os.getpid() and engine.alive
    assert engine.sleep(0.0) == "slept"
    assert engine.settings == {"greedy": True}
    engine.settings = {"greedy": False}  # assigned in the child
    assert engine.settings == {"greedy": False}
    start = time.monotonic()
    arrivals = []
    for chunk in engine.count(6):
        arrivals.append((time.monotonic() - start, chunk))
    assert [c for _, c in arrivals] == [f"{i} " for i in range(6)]
    # streamed: the first chunk arrived long before the last was made
    assert arrivals[0][0] < arrivals[-1][0] - 0.15
    assert engine.progress(3, arrivals.append) == 3
    assert arrivals[-3:] == [0, 1, 2]  # the callback ran here, in order


def test_errors_come_back_as_themselves_or_described(scripted):
    engine = scripted()
    with pytest.raises(NotReady, match="nothing of the film"):
        engine.refuse()
    with pytest.raises(KeyError):
        engine.crash()
    with pytest.raises(RemoteError, match="Odd: cannot travel"):
        engine.odd_error()
    with pytest.raises(AttributeError):
        engine.no_such_method()
    assert not hasattr(engine, "no_such_thing")
    with pytest.raises(TypeError, match="cannot be sent"):
        engine.unsendable()
    with pytest.raises(RemoteError, match="cannot be read here"):
        engine.forbidden_reply()  # a torch-module class would import torch here
    assert engine.sleep(0.0) == "slept"  # still in step after every failure


class _Unreadable:
    """Pickles fine here, fails to rebuild on the other side."""

    def __reduce__(self):
        return (int, ("not a number",))


def test_engine_types_reach_the_child_and_unreadable_arguments_fail_the_call(scripted):
    """The child read requests with the parent's guard (no engine.model classes), so a
    GenerationSettings argument killed its reader thread and the call waited forever."""
    from moviechat_desktop.engine.model.llm import GenerationSettings

    engine = scripted()
    settings = GenerationSettings(greedy=True, max_new_tokens=5)
    assert engine.kind_of(settings) == "moviechat_desktop.engine.model.llm.GenerationSettings"
    with pytest.raises(RemoteError, match="cannot read the 'call' request"):
        engine.kind_of(_Unreadable())
    assert engine.sleep(0.0) == "slept"  # the pipe is still in step


def test_cancel_reaches_the_child_during_a_call_and_a_stream(scripted):
    engine = scripted(chunk_s=0.05)
    token = CancelToken()
    start = time.monotonic()
    import threading

    threading.Timer(0.2, token.cancel).start()
    with pytest.raises(Exception) as raised:
        engine.sleep(30.0, cancel=token)
    assert type(raised.value).__name__ == "Cancelled"
    assert time.monotonic() - start < 1.0
    token = CancelToken()
    received = []
    for chunk in engine.count(1000, cancel=token):
        received.append(chunk)
        if len(received) == 3:
            token.cancel()
    assert 3 <= len(received) < 10
    # a stream left unread is cancelled and drained before the next call
    stream = engine.count(1000)
    assert next(stream) == "0 "
    assert engine.sleep(0.0) == "slept"


def test_a_killed_child_raises_engine_died_and_is_reaped(scripted):
    engine = scripted()
    os.kill(engine.pid, signal.SIGKILL)
    with pytest.raises(EngineDied, match="SIGKILL"):
        engine.sleep(0.0)
    assert not engine.alive
    with pytest.raises(EngineDied):  # and every later call
        engine.sleep(0.0)
    engine.shutdown()
    assert engine.pid not in _children()


def test_a_child_dying_in_the_middle_of_a_call(scripted):
    engine = scripted()
    with pytest.raises(EngineDied, match="status 3"):
        engine.exit_now(3)


def test_interrupt_ends_the_call_in_flight_and_shutdown_is_quick(scripted):
    engine = scripted()
    import threading

    threading.Timer(0.2, engine.interrupt).start()
    start = time.monotonic()
    with pytest.raises(EngineStopped):
        engine.sleep(30.0)  # no cancel token: the child stays busy
    assert time.monotonic() - start < 1.0
    start = time.monotonic()
    engine.shutdown()
    assert time.monotonic() - start < 1.5
    with pytest.raises(EngineStopped):
        engine.sleep(0.0)


def test_the_client_api_is_satisfied(scripted):
    from moviechat_desktop.engine.assistant import Assistant

    assert isinstance(Assistant(), EngineClient)
    assert isinstance(scripted(), Interruptible)
    assert not isinstance(Assistant(), Interruptible)


# --------------------------------------------------------------------------- the tiny model
def _settings(reference_dir, n_fragments=4):
    from moviechat_desktop.engine.settings import AppSettings

    settings = AppSettings()
    settings.sampling.n_fragments = n_fragments
    settings.model.model_dir = str(reference_dir)
    settings.model.device = "cpu"
    settings.generation.greedy = True
    settings.generation.max_new_tokens = 24
    return settings


@pytest.mark.slow
def test_the_childs_greedy_answer_equals_the_in_process_one(reference_dir, bikes_mp4):
    from moviechat_desktop.engine.assistant import Assistant

    settings = _settings(reference_dir)
    answers = []
    child = LocalEngine(settings=settings, use_cache=False, keep_history=False)
    try:
        for engine in (Assistant(settings=settings, use_cache=False, keep_history=False), child):
            engine.load_model()
            engine.open(bikes_mp4)
            status = engine.encode()
            assert status.finished
            covered = engine.status().covered
            answers.append(("".join(engine.ask("What happens in this video?")), covered))
            answers.append(("".join(engine.ask("At 00:05?", "breakpoint", 5.0)), None))
        assert answers[0] == answers[2] and answers[1] == answers[3]
        assert answers[0][0]  # a non-empty answer
        assert child.last_answer.mode == "breakpoint" and child.last_answer.at_s == 5.0
    finally:
        child.shutdown()


GUI_PATH = textwrap.dedent(
    """
    import sys, time
    from PySide6.QtCore import QCoreApplication
    from moviechat_desktop.ui.main_window import make_engine_assistant
    from moviechat_desktop.workers.model_worker import ModelWorker
    from moviechat_desktop.engine.settings import AppSettings

    def main():
        app = QCoreApplication([])
        settings = AppSettings()
        settings.sampling.n_fragments = 4
        settings.model.model_dir = sys.argv[1]
        settings.model.device = "cpu"
        settings.generation.max_new_tokens = 8
        worker = ModelWorker(lambda: make_engine_assistant(settings))
        done = []
        worker.answer_finished.connect(lambda rid: done.append(rid))
        worker.answer_failed.connect(lambda rid, err: done.append(err.message))
        worker.start()
        worker.load_model()
        worker.open_film(sys.argv[2])
        worker.ask(1, "What happens?", "global", None)
        worker.ask(2, "And at 00:03?", "breakpoint", 3.0)
        deadline = time.monotonic() + 150
        while len(done) < 2 and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)
        assert worker.shutdown(5000)
        heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
        print("DONE", done, "HEAVY", heavy)

    if __name__ == "__main__":
        main()
    """
)


@pytest.mark.slow
def test_the_gui_process_never_imports_torch(tmp_path, reference_dir, bikes_mp4):
    """The window's worker path, run in a fresh process: load, open, encode, two answers."""
    script = tmp_path / "gui_path.py"
    script.write_text(GUI_PATH)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(script), str(reference_dir), str(bikes_mp4)],
        capture_output=True,
        text=True,
        timeout=170,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DONE [1, 2] HEAVY []" in result.stdout, result.stdout + result.stderr[-3000:]
