"""The local engine: the Assistant in a child process, reached through a pipe.

``LocalEngine`` is an ``EngineClient``: any method or attribute of the engine is forwarded by
name (``__getattr__``), its arguments, results and exceptions pickled; a result that is an
iterator (``ask``) streams its items back one by one. A ``CancelToken`` argument keeps working:
while a call is in flight the proxy watches the token and sends ``cancel`` as soon as it is
set, which the child's reader thread passes to the engine at once.

The child is started with the ``spawn`` method (a fresh interpreter: no copy of the GUI's
threads or Qt state) and imports the engine itself; this module, and so the GUI process,
never imports torch, transformers or decord (import-linter contract, and a test).

When the child dies (SIGKILL, segfault, out of memory) the call in flight and every later one
raise ``EngineDied``; the owner starts a new ``LocalEngine`` (see ``ModelWorker``).
``interrupt()`` (any thread) makes the call in flight raise ``EngineStopped`` at once;
``shutdown()`` asks the child to stop, then terminates and finally kills it after short grace
periods, and reaps it (no zombie is left).

The process-specific part is three methods (``_peer_alive``, ``_how_it_ended``, ``_stop_peer``):
``service/warm_engine.py``'s ``WarmEngine`` reuses everything else over a Unix socket to the
CLI's warm engine. A ``("log", -1, level, name, text)`` message (that engine's warnings) is
handled as a record of this process's own logger ``name``.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.runtime_env import start_spawned
from moviechat_desktop.service import pipe_wire as wire
from moviechat_desktop.service.api import EngineDied, EngineError, EngineStopped, RemoteError
from moviechat_desktop.service.engine_host import serve

log = logging.getLogger(__name__)

ASSISTANT = "moviechat_desktop.engine.assistant:Assistant"
POLL_S = 0.02  # how often a waiting call looks at its cancel tokens and the child
START_TIMEOUT_S = 120.0  # a cold start on a slow disk (Python + the engine's light imports)
STOP_GRACE_S = 0.5  # an idle child exits on "shutdown" well within this
BUSY_GRACE_S = 0.1  # a child busy with a fragment will not stop by itself: terminate soon


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"it was killed by {name}{hint}"
    return f"it exited with status {code}"


def _relay_log(level: int, name: str, message: str) -> None:
    """A record the engine logged, handled here as this process's own (its handlers, e.g. the
    CLI's one line on stderr)."""
    record = logging.makeLogRecord(
        {"name": name, "levelno": level, "levelname": logging.getLevelName(level), "msg": message}
    )
    logging.getLogger(name).handle(record)


class LocalEngine:
    """An ``EngineClient`` whose engine runs in a child process (see the module docstring).

    ``factory`` names the engine to build in the child (``"package.module:Callable"``, the
    Assistant by default) and ``kwargs`` its arguments (picklable: e.g. ``settings``).
    Construction starts the child and waits until the engine is built (not loaded).
    """

    def __init__(self, factory: str = ASSISTANT, **kwargs: Any) -> None:
        object.__setattr__(self, "_ready", False)
        ctx = multiprocessing.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self._process = ctx.Process(
            target=serve,
            args=(child_conn, factory, kwargs, logging.getLogger().getEffectiveLevel()),
            name="moviechat-engine",
            daemon=True,
        )
        self._attach(parent_conn)
        start_spawned(self._process)  # never while an import has sys.path changed
        child_conn.close()  # the child holds its end: its death closes the pipe
        self.pid = self._process.pid
        reply = self._receive(0, (), timeout_s=START_TIMEOUT_S)
        if reply[0] == "error":
            self.shutdown()
            raise reply[2]
        self._ready = True

    def _attach(self, conn: Any) -> None:
        """The connection to the engine (a pipe to the child here; a subclass may bring a
        socket, ``service/warm_engine.py``) and the call state."""
        self._conn = conn
        self._lock = threading.RLock()  # one call at a time
        self._interrupted = threading.Event()
        self._dead: EngineDied | None = None
        self._closed = False
        self._busy = False  # a call's reply is still owed (an interrupted call)
        self._next_id = 0
        self._methods: set[str] = set()
        self._open_stream: int | None = None

    # ------------------------------------------------------------------ the forwarding
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not self.__dict__.get("_ready", False):
            raise AttributeError(name)
        if name in self._methods:
            return functools.partial(self._call, name)
        reply = self._request("get", (name,))
        if reply[0] == "method":
            self._methods.add(name)
            return functools.partial(self._call, name)
        return reply[2]

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name == "pid" or not self.__dict__.get("_ready", False):
            object.__setattr__(self, name, value)
        else:
            self._request("set", (name, value))

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        tokens: list[CancelToken] = []
        callbacks: list[Any] = []

        def outbound(value: Any) -> Any:
            if isinstance(value, CancelToken):
                tokens.append(value)
                return wire.CANCEL
            if callable(value) and not isinstance(value, type):
                callbacks.append(value)
                return wire.Callback(len(callbacks) - 1)
            return value

        sent_args = tuple(outbound(a) for a in args)
        sent_kwargs = {k: outbound(v) for k, v in kwargs.items()}
        for token in tokens:
            token.raise_if_cancelled()
        reply = self._request("call", (name, sent_args, sent_kwargs), tokens, callbacks)
        if reply[0] == "stream":
            return self._stream(reply[1], tokens, callbacks)
        return reply[2]

    def _request(
        self, kind: str, payload: tuple, tokens: list[CancelToken] = (), callbacks: list = ()
    ) -> tuple:
        with self._lock:
            self._check_usable()
            if self._open_stream is not None:
                self._abandon_stream(self._open_stream)
            self._next_id += 1
            call_id = self._next_id
            self._send((kind, call_id, *payload))
            reply = self._receive(call_id, tokens, callbacks=callbacks)
            if reply[0] == "error":
                raise reply[2]
            if reply[0] == "stream":
                self._open_stream = call_id
            return reply

    def _stream(self, call_id: int, tokens: list[CancelToken], callbacks: list) -> Iterator:
        finished = False
        try:
            while True:
                with self._lock:
                    reply = self._receive(call_id, tokens, callbacks=callbacks)
                if reply[0] == "item":
                    yield reply[2]
                    continue
                finished = True
                self._open_stream = None
                if reply[0] == "error":
                    raise reply[2]
                return
        finally:
            if not finished:
                with self._lock:
                    if self._open_stream == call_id:
                        self._abandon_stream(call_id)

    def _abandon_stream(self, call_id: int) -> None:
        """The caller stopped reading a stream: cancel it and read it to its end."""
        self._open_stream = None
        if self._dead is not None or self._interrupted.is_set():
            return
        try:
            self._send(("cancel", call_id))
            while self._receive(call_id, ())[0] == "item":
                pass
        except EngineError:
            pass  # dead or stopping: nothing left to read

    # ------------------------------------------------------------------ the pipe
    def _check_usable(self) -> None:
        if self._dead is not None:
            raise self._dead
        if self._closed or self._interrupted.is_set():
            raise EngineStopped("the assistant is shutting down")

    def _send(self, message: tuple) -> None:
        try:
            self._conn.send_bytes(wire.dumps_request(message))
        except (OSError, EOFError, BrokenPipeError) as err:
            raise self._died() from err

    def _receive(
        self,
        call_id: int,
        tokens: list[CancelToken] | tuple = (),
        callbacks: list | tuple = (),
        timeout_s: float | None = None,
    ) -> tuple:
        """The reply to ``call_id`` (stale replies of abandoned calls are skipped)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        cancel_sent = False
        self._busy = True
        while True:
            if self._interrupted.is_set():
                raise EngineStopped("the assistant is shutting down")
            try:
                ready = self._conn.poll(POLL_S)
                message = wire.loads(self._conn.recv_bytes()) if ready else None
            except (EOFError, OSError) as err:
                raise self._died() from err
            except pickle.UnpicklingError as err:  # a class this process must not import
                self._busy = False
                raise RemoteError(f"the engine's reply cannot be read here: {err}") from err
            # checked on every message too: a job that reports progress all the time (a
            # download's chunks) must still get its cancel
            if not cancel_sent and any(t.cancelled for t in tokens):
                self._send(("cancel", call_id))
                cancel_sent = True
            if message is None:
                if not self._peer_alive() and not self._conn.poll(0):
                    raise self._died()
                if deadline is not None and time.monotonic() > deadline:
                    raise self._died()
                continue
            if message[0] == "log":  # a warning the engine logged (the warm engine's sessions)
                _relay_log(*message[2:])
                continue
            if message[0] == "callback" and message[1] == call_id:
                self._run_callback(callbacks, *message[2:])
                continue
            if message[1] != call_id:
                continue  # a late reply to a call that was abandoned
            if message[0] not in ("item", "callback"):
                self._busy = False
            return message

    @staticmethod
    def _run_callback(callbacks, index: int, args: tuple, kwargs: dict) -> None:
        try:
            callbacks[index](*args, **kwargs)
        except Exception:
            log.exception("an engine callback failed")

    def _died(self) -> EngineDied:
        if self._dead is None:
            self._dead = EngineDied(f"The assistant's process ended: {self._how_it_ended()}.")
            self._log_death(self._dead)
        return self._dead

    def _log_death(self, died: EngineDied) -> None:
        log.warning("%s", died)

    # ------------------------------------------------------------------ the engine's process
    def _peer_alive(self) -> bool:
        return self._process.is_alive()

    def _how_it_ended(self) -> str:
        self._process.join(0.5)
        return _describe_exit(self._process.exitcode)

    def _stop_peer(self, grace_s: float) -> None:
        """After ``shutdown`` was sent: wait for the child, then terminate, kill and reap it."""
        self._process.join(grace_s)
        if self._process.is_alive():
            log.info("the engine did not stop in %.1f s: terminating it", grace_s)
            self._process.terminate()
            self._process.join(0.5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process.close()

    # ------------------------------------------------------------------ life cycle
    @property
    def alive(self) -> bool:
        """True while the child runs (False once it died or was shut down)."""
        return self._dead is None and not self._closed and self._peer_alive()

    def interrupt(self) -> None:
        """Any thread: the call in flight raises ``EngineStopped`` within ~20 ms, and so does
        every later call; the owner then calls ``shutdown``."""
        self._interrupted.set()

    def shutdown(self, grace_s: float | None = None) -> None:
        """Stop the child: ask, then SIGTERM, then SIGKILL; reap it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        busy = self._busy or self._open_stream is not None
        if grace_s is None:
            grace_s = BUSY_GRACE_S if busy else STOP_GRACE_S
        if self._dead is None and self._peer_alive():
            try:
                self._conn.send_bytes(wire.dumps_request(("shutdown", 0)))
            except (OSError, EOFError):
                pass
        try:
            self._conn.close()
        except OSError:
            pass
        self._stop_peer(grace_s)

    def __del__(self) -> None:  # a forgotten client must not leave its child behind
        if self.__dict__.get("_conn") is not None and not self.__dict__.get("_closed", True):
            try:
                self.shutdown(grace_s=0.1)
            except Exception:
                pass

    def __repr__(self) -> str:
        state = "dead" if self._dead else ("closed" if self._closed else "running")
        return f"<LocalEngine pid={self.pid} {state}>"
