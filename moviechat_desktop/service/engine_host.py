"""The local engine's child process: builds the Assistant and serves the parent's calls.

``serve`` is the ``multiprocessing`` target (spawn start method). The main thread runs the
calls one at a time, exactly as the GUI's worker thread used to; a reader thread takes the
parent's messages, so a ``cancel`` reaches the call in flight at once (the engine checks its
token between fragments and between generated tokens) and the parent going away (its end of
the pipe closes) stops the work at the next check.

The engine is named by a string (``"package.module:Factory"``) and imported here, in the
child: the parent never imports it. This module itself is torch-free.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.service import pipe_wire as wire

log = logging.getLogger(__name__)

_EOF = ("eof", -1)


def resolve(factory: str) -> Callable[..., Any]:
    """``"package.module:Name"`` → the object (imported here, in the child)."""
    module_name, _, attr = factory.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class _Host:
    def __init__(self, conn: Connection, engine: Any) -> None:
        self.conn = conn
        self.engine = engine
        self.inbox: queue.Queue[tuple] = queue.Queue()
        self._tokens: dict[int, CancelToken] = {}
        self._lock = threading.Lock()
        self.gone = threading.Event()  # the parent closed its end or asked us to stop

    # ------------------------------------------------------------------ reader thread
    def read_forever(self) -> None:
        while True:
            try:
                message = wire.loads_request(self.conn.recv_bytes())
            except (EOFError, OSError):
                self._stop_everything()
                self.inbox.put(_EOF)
                return
            kind, call_id = message[0], message[1]
            if kind == "cancel":
                self.token(call_id).cancel()
            elif kind == "shutdown":
                self._stop_everything()
                self.inbox.put(message)
                return
            else:
                self.inbox.put(message)

    def _stop_everything(self) -> None:
        self.gone.set()
        with self._lock:
            for token in self._tokens.values():
                token.cancel()

    def token(self, call_id: int) -> CancelToken:
        with self._lock:
            token = self._tokens.get(call_id)
            if token is None:
                token = self._tokens[call_id] = CancelToken()
                if self.gone.is_set():
                    token.cancel()
            return token

    def forget(self, call_id: int) -> None:
        with self._lock:
            self._tokens.pop(call_id, None)

    # ------------------------------------------------------------------ main thread
    def send(self, message: tuple) -> None:
        try:
            data = wire.dumps(message)
        except Exception as err:  # a result that cannot travel: say what it was
            kind, call_id = message[0], message[1]
            log.warning("cannot send a %s reply: %s", kind, err)
            failure = wire.sendable_exception(
                TypeError(f"the engine's reply cannot be sent to the app ({err})")
            )
            data = wire.dumps(("error", call_id, failure))
        self.conn.send_bytes(data)

    def run(self) -> None:
        while True:
            message = self.inbox.get()
            kind, call_id = message[0], message[1]
            if kind in ("eof", "shutdown"):
                return
            try:
                self._handle(kind, call_id, message[2:])
            except (EOFError, OSError, BrokenPipeError):
                return  # the parent went away while we were answering
            finally:
                self.forget(call_id)

    def _handle(self, kind: str, call_id: int, rest: tuple) -> None:
        if kind == "unreadable":  # its arguments could not be rebuilt here (loads_request)
            self._send_error(call_id, rest[0])
            return
        try:
            if kind == "get":
                value = getattr(self.engine, rest[0])
                if callable(value) and hasattr(value, "__self__"):  # a bound method
                    self.send(("method", call_id))
                else:
                    self.send(("value", call_id, value))
                return
            if kind == "set":
                setattr(self.engine, rest[0], rest[1])
                self.send(("value", call_id, None))
                return
            name, args, kwargs = rest
            if name.startswith("_"):
                raise AttributeError(f"{name} is not part of the engine's API")
            token = self.token(call_id)
            args = tuple(self._local(a, call_id, token) for a in args)
            kwargs = {k: self._local(v, call_id, token) for k, v in kwargs.items()}
            result = getattr(self.engine, name)(*args, **kwargs)
        except BaseException as err:
            self._send_error(call_id, err)
            return
        if isinstance(result, Iterator):
            self._stream(call_id, result, token)
        else:
            self.send(("value", call_id, result))

    def _local(self, value: Any, call_id: int, token: CancelToken) -> Any:
        if isinstance(value, str) and value == wire.CANCEL:
            return token
        if isinstance(value, wire.Callback):
            index = value.index

            def callback(*args: Any, **kwargs: Any) -> None:
                self.send(("callback", call_id, index, args, kwargs))

            return callback
        return value

    def _stream(self, call_id: int, items: Iterator, token: CancelToken) -> None:
        self.send(("stream", call_id))
        try:
            for item in items:
                self.send(("item", call_id, item))
                if token.cancelled:
                    break
        except (EOFError, OSError, BrokenPipeError):
            raise
        except BaseException as err:
            self._send_error(call_id, err)
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        self.send(("end", call_id))

    def _send_error(self, call_id: int, err: BaseException) -> None:
        from moviechat_desktop.engine.errors import MovieChatError

        if not isinstance(err, MovieChatError | AttributeError):
            log.error("error inside the engine", exc_info=(type(err), err, err.__traceback__))
        self.send(("error", call_id, wire.sendable_exception(err)))


def serve(conn: Connection, factory: str, kwargs: dict[str, Any], log_level: int) -> None:
    """The child's main: build the engine, say ``ready``, serve calls until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the app's to handle
    logging.basicConfig(level=log_level or logging.WARNING)
    from moviechat_desktop.runtime_env import prefer_passive_openmp

    prefer_passive_openmp()
    try:
        engine = resolve(factory)(**kwargs)
    except BaseException as err:
        log.error("the engine could not start", exc_info=(type(err), err, err.__traceback__))
        conn.send_bytes(wire.dumps(("error", 0, wire.sendable_exception(err))))
        conn.close()
        return
    host = _Host(conn, engine)
    try:
        conn.send_bytes(wire.dumps(("ready", 0, os.getpid())))
    except OSError:  # the app has gone (its window closed while this engine started): end quietly
        engine.shutdown()
        logging.shutdown()
        os._exit(0)
    reader = threading.Thread(target=host.read_forever, name="engine-pipe-reader", daemon=True)
    reader.start()
    try:
        host.run()
    finally:
        try:
            engine.shutdown()
        except Exception:
            log.exception("shutting the engine down failed")
        conn.close()
    # Everything the engine keeps is already on disk (atomic writes, fsynced appends): skip the
    # interpreter's teardown of torch & co., which takes ~0.3-0.5 s, so quitting is quick.
    logging.shutdown()
    os._exit(0)
