"""Fault injection: a real process encoding a film is killed (SIGKILL) in the middle of a cache
write, several times; each next start loses at most the fragment in flight, and every fragment
saved before is intact (bit for bit)."""

import os
import random
import signal
from pathlib import Path

import pytest
from cache_helpers import (
    assert_same_memory,
    cache_dirs,
    memory_state,
    reference_memory,
    run_and_kill,
    small_settings,
)

from moviechat_desktop.engine.assistant import Assistant

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)"),
]

N_FRAGMENTS = 12

# Encodes the film fragment by fragment, printing "SAVED <fragments done>" after each. With
# PAUSE_NAME/PAUSE_AT it writes only half of its PAUSE_AT-th write to a file whose name holds
# PAUSE_NAME, prints "MIDWRITE <file>" and waits there to be killed.
SCRIPT = r"""
import itertools, os, time
import decord  # noqa: F401  (the project's import order: decord before anything else)
from moviechat_desktop.engine.store import atomic_io
from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.settings import AppSettings

pause_name, pause_at = os.environ.get("PAUSE_NAME", ""), int(os.environ.get("PAUSE_AT", "0"))
matching = itertools.count(1)
real_write = atomic_io.write_fully

def write_fully(fd, data):
    name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    if pause_name and pause_name in name and next(matching) == pause_at:
        real_write(fd, data[: len(data) // 2])
        print("MIDWRITE", name, flush=True)
        time.sleep(600)
    real_write(fd, data)

atomic_io.write_fully = write_fully
settings = AppSettings()
settings.sampling.n_fragments = int(os.environ["N_FRAGMENTS"])
assistant = Assistant(settings=settings, model_dir=os.environ["MODEL_DIR"])
assistant.load_model()
assistant.open(os.environ["CLIP"])
print("RESTORED", assistant.cache_restored, flush=True)
status = assistant.status()
while not status.finished:
    status = assistant.encode_step()
    print("SAVED", status.fragments_done, flush=True)
print("DONE", flush=True)
"""


@pytest.fixture(scope="module")
def clip(make_video):
    return make_video("killed.mp4", seconds=4)


@pytest.fixture(scope="module")
def expected(reference_dir, clip):
    return reference_memory(reference_dir, clip, small_settings(N_FRAGMENTS))


class Encoder:
    """Runs SCRIPT in a real process and kills it (SIGKILL) when ``should_kill(line)``."""

    def __init__(self, tmp_path: Path, reference_dir: Path, clip: Path) -> None:
        self.script = tmp_path / "encode_loop.py"
        self.script.write_text(SCRIPT)
        self.log = tmp_path / "stderr.txt"
        self.env = {
            **os.environ,
            "N_FRAGMENTS": str(N_FRAGMENTS),
            "MODEL_DIR": str(reference_dir),
            "CLIP": str(clip),
        }

    def run(self, should_kill, delay_s: float = 0.0, **env) -> dict:
        seen = {"restored": None, "saved": None, "killed": False, "midwrite": None}

        def on_line(word: str, rest: str) -> bool:
            if word == "RESTORED":
                seen["restored"] = seen["saved"] = int(rest)
            elif word == "SAVED":
                seen["saved"] = int(rest)
            elif word == "MIDWRITE":
                seen["midwrite"] = rest
            return should_kill(word, seen)

        killed, returncode = run_and_kill(
            self.script, {**self.env, **env}, on_line, delay_s=delay_s, stderr=self.log
        )
        seen["killed"] = killed
        assert seen["restored"] is not None, self.log.read_text()[-3000:]
        if killed:
            assert returncode == -signal.SIGKILL
        return seen


def _check_restart(reference_dir, clip, expected, low: int, high: int) -> int:
    """A new start restores between ``low`` and ``high`` fragments, all intact; no leftovers."""
    assistant = Assistant(settings=small_settings(N_FRAGMENTS), model_dir=reference_dir)
    assistant.open(clip)
    restored = assistant.cache_restored
    assert low <= restored <= high, (low, restored, high)
    assert assistant.status().fragments_done == restored
    if restored:
        assert_same_memory(expected, memory_state(assistant), indices=range(restored))
    (entry,) = cache_dirs()
    assert not [p for p in entry.iterdir() if p.name.endswith(".tmp")], "leftovers remain"
    assistant.close()
    return restored


def test_sigkill_during_cache_writes_loses_at_most_the_fragment_in_flight(
    tmp_path, reference_dir, clip, expected
):
    encoder = Encoder(tmp_path, reference_dir, clip)

    # 1. killed half-way through writing the 3rd fragment's file
    seen = encoder.run(lambda word, s: word == "MIDWRITE", PAUSE_NAME="frag-", PAUSE_AT="3")
    assert seen["killed"] and seen["saved"] == 2 and seen["midwrite"].startswith("frag-000002")
    (entry,) = cache_dirs()
    assert (entry / seen["midwrite"]).is_file(), "the half-written temp file is there"
    done = _check_restart(reference_dir, clip, expected, 2, 2)

    # 2. killed half-way through the header that commits the 2nd fragment of this run
    #    (writes to header.json*: 1 on open (the durable header.json), then 1 per fragment
    #    (header.json.pending, flushed with the fragments at most every SYNC_INTERVAL_S))
    seen = encoder.run(lambda word, s: word == "MIDWRITE", PAUSE_NAME="header.json", PAUSE_AT="3")
    assert seen["killed"] and seen["restored"] == done and seen["saved"] == done + 1
    done = _check_restart(reference_dir, clip, expected, done + 1, done + 1)

    # 3. killed at seeded random moments after a fragment was reported saved
    rng = random.Random(20261122)
    for _ in range(2):
        target = done + rng.randint(1, 3)
        delay = rng.uniform(0.0, 0.03)
        seen = encoder.run(
            lambda word, s, t=target: word == "SAVED" and s["saved"] >= t, delay_s=delay
        )
        assert seen["killed"] and seen["saved"] >= target
        # every fragment it reported saved is kept; the one in flight may or may not be
        done = _check_restart(reference_dir, clip, expected, seen["saved"], seen["saved"] + 1)

    # the last start finishes the film: everything equals an uninterrupted encoding
    seen = encoder.run(lambda word, s: False)
    assert not seen["killed"] and seen["saved"] == N_FRAGMENTS
    assistant = Assistant(settings=small_settings(N_FRAGMENTS), model_dir=reference_dir)
    assistant.open(clip)
    assert assistant.cache_restored == N_FRAGMENTS
    assert_same_memory(expected, memory_state(assistant))
