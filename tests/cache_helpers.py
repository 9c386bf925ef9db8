"""Helpers shared by the memory-cache and chat-history tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.model.llm import GenerationSettings
from moviechat_desktop.engine.model.movie_chat import MovieChatModel
from moviechat_desktop.engine.settings import AppSettings
from moviechat_desktop.engine.store.film_cache import FilmCache

GREEDY = GenerationSettings(greedy=True, max_new_tokens=8)


def small_settings(n_fragments: int = 8, plan: str = "fragments", limit_gb: float = 20.0):
    """Defaults, with few fragments so a test encodes a clip in a fraction of a second."""
    settings = AppSettings()
    settings.sampling = dataclasses.replace(settings.sampling, n_fragments=n_fragments, plan=plan)
    settings.cache = dataclasses.replace(settings.cache, limit_gb=limit_gb)
    return settings


class EncoderCounter:
    """Counts the frames ``MovieChatModel.encode_frames`` is asked to encode (it still runs)."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[int] = []
        original = MovieChatModel.encode_frames

        def counting(model, pixels, *args, **kwargs):
            self.calls.append(int(pixels.shape[0]))
            return original(model, pixels, *args, **kwargs)

        monkeypatch.setattr(MovieChatModel, "encode_frames", counting)

    @property
    def frames(self) -> int:
        return sum(self.calls)


def memory_state(assistant: Assistant) -> dict:
    """The open film's memory as ``FilmMemory.state_dict()`` (tensors + metadata)."""
    assert assistant._memory is not None, "no memory"
    return assistant._memory.state_dict()


def assert_same_memory(expected: dict, actual: dict, indices=None) -> None:
    """Bitwise equality of the fragments ``indices`` (default: all of ``expected``)."""
    by_index = {e["index"]: e for e in actual["metadata"]["fragments"]}
    wanted = [
        e for e in expected["metadata"]["fragments"] if indices is None or e["index"] in indices
    ]
    assert wanted, "nothing to compare"
    for entry in wanted:
        i = entry["index"]
        assert by_index.get(i) == entry, f"fragment {i} metadata differs"
        for part in ("raw", "long"):
            a, b = (
                expected["tensors"][f"fragment.{i}.{part}"],
                actual["tensors"][f"fragment.{i}.{part}"],
            )
            assert a.dtype == b.dtype and a.shape == b.shape
            assert torch.equal(a, b), f"fragment {i} {part} tokens differ"
    if indices is None:
        assert len(actual["metadata"]["fragments"]) == len(wanted)


def reference_memory(reference_dir: Path, clip: Path, settings: AppSettings) -> dict:
    """The memory of ``clip`` encoded from scratch, rounded to the cache's stored precision
    (float16: what an encoding that writes the cache holds, cache_entry.py); nothing is read
    from or written to disk (safe in module-scoped fixtures, which run outside the per-test
    dir isolation)."""
    import torch

    from moviechat_desktop.engine.store.cache_entry import STORED_DTYPE

    assistant = Assistant(
        settings=settings, model_dir=reference_dir, use_cache=False, keep_history=False
    )
    assistant.open(clip)
    assistant.encode()
    state = memory_state(assistant)
    assistant.close()
    stored = getattr(torch, STORED_DTYPE)
    state["tensors"] = {k: v.to(stored).to(v.dtype) for k, v in state["tensors"].items()}
    return state


def cache_dirs() -> list[Path]:
    """The live (not moved-aside) entries of the default cache, as directories."""
    return [e.path for e in FilmCache().entries() if not e.corrupt]


def corrupt_items() -> list[Path]:
    return [e.path for e in FilmCache().entries() if e.corrupt]


def run_and_kill(script: Path, env: dict, on_line, *, delay_s: float = 0.0, stderr: Path):
    """Run ``script`` in a real process; for each complete line it prints, call
    ``on_line(word, rest)`` (the first word and the rest); the first time it returns True, wait
    ``delay_s`` and SIGKILL the process. Lines printed before it died are still read (they tell
    what it committed); a line cut short by the kill is not. Returns (killed, returncode)."""
    import signal
    import subprocess
    import sys
    import time

    with open(stderr, "a") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=err, text=True, env=env
        )
    killed = False
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.endswith("\n"):  # cut short by the kill while printing
                break
            word, _, rest = line.strip().partition(" ")
            if on_line(word, rest) and not killed:
                time.sleep(delay_s)
                proc.send_signal(signal.SIGKILL)
                killed = True
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return killed, proc.returncode
