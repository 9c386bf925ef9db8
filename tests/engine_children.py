"""Engines the local-engine tests start in a child process (named "engine_children:…").

The child imports this module by name (the test's sys.path travels with the spawn start), so
it holds only what the child needs: the real Assistant slowed down where a test must act
"while encoding" or "while answering", and a tiny scripted engine for the pipe's own rules.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Iterator

from moviechat_desktop.engine.errors import NotReady


def slow_assistant(settings, step_delay_s: float = 0.0, chunk_delay_s: float = 0.0):
    """The real Assistant with pauses before each encoding step (watching the cancel token, as
    the engine's own checks do) and around answer chunks."""
    from moviechat_desktop.engine.assistant import Assistant

    class SlowAssistant(Assistant):
        def encode_step(self, cancel=None):
            if step_delay_s and cancel is not None and cancel.wait(step_delay_s):
                cancel.raise_if_cancelled()
            elif step_delay_s and cancel is None:
                time.sleep(step_delay_s)
            return super().encode_step(cancel)

        def ask(self, question, mode="global", at_s=None, settings=None, cancel=None, **kw):
            chunks = super().ask(question, mode, at_s, settings, cancel, **kw)
            return self._slowly(chunks) if chunk_delay_s else chunks

        def _slowly(self, chunks):
            for chunk in chunks:  # the question is saved before the first chunk comes
                time.sleep(chunk_delay_s)
                yield chunk
            time.sleep(chunk_delay_s)  # and the answer only after this

    return SlowAssistant(settings=copy.deepcopy(settings))


class Scripted:
    """A few calls with known behaviour, to test the pipe without a model."""

    def __init__(self, chunk_s: float = 0.05) -> None:
        self.chunk_s = chunk_s
        self.settings = {"greedy": True}
        self.calls = 0
        self.stopped_at: int | None = None

    @property
    def pid(self) -> int:
        return os.getpid()

    def count(self, n: int, cancel=None) -> Iterator[str]:
        for i in range(n):
            if cancel is not None and cancel.cancelled:
                self.stopped_at = i
                return
            time.sleep(self.chunk_s)
            yield f"{i} "

    def sleep(self, seconds: float, cancel=None) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if cancel is not None and cancel.wait(0.01):
                cancel.raise_if_cancelled()
        return "slept"

    def refuse(self) -> None:
        raise NotReady("nothing of the film has been encoded yet")

    def sys_path(self) -> list[str]:
        return list(sys.path)

    def crash(self) -> None:
        raise KeyError("a bug")

    def odd_error(self) -> None:
        class Odd(Exception):
            pass

        raise Odd("cannot travel")

    def progress(self, n: int, on_progress) -> int:
        for i in range(n):
            on_progress(i)
        return n

    def chatter(self, on_progress, cancel=None) -> int:
        """Report progress without a pause until cancelled (the parent always has a message
        waiting, as with a fast download's chunks)."""
        sent = 0
        deadline = time.monotonic() + 20
        while cancel is not None and not cancel.cancelled and time.monotonic() < deadline:
            on_progress(sent)
            sent += 1
        if cancel is not None:
            cancel.raise_if_cancelled()
        return sent

    def kind_of(self, value) -> str:
        """The type of an argument as the child rebuilt it."""
        return f"{type(value).__module__}.{type(value).__qualname__}"

    def unsendable(self):
        return lambda: None

    def forbidden_reply(self):
        from moviechat_desktop.engine.model.config import MemoryConfig

        return MemoryConfig

    def exit_now(self, code: int) -> None:
        os._exit(code)

    def shutdown(self) -> None:
        pass
