"""The warm engine: a background process that keeps the CLI's model loaded between calls.

Started by the first ``ask``/``encode`` (``service/warm_engine.py``) as
``python -m moviechat_desktop.service.warm_engine_main --socket S --key-file K``, detached from
the terminal, its output going to its log file. It listens on the Unix socket ``S`` (the
multiprocessing handshake with the key in ``K``) and:

* answers ``status`` and ``stop`` at once, even while a call is being served;
* serves ``session`` connections one at a time, in order (a caller that has to wait is told
  ``queued``): each gets its own ``Assistant`` built from the settings the client sent, with the
  one kept model (``warm_engine_models``), and then exactly the local engine's protocol
  (``engine_host._Host``: calls by name, streams, cancels; warnings the engine logs meanwhile
  travel to the client as ``("log", -1, level, name, text)``). When the session ends (the
  client said ``shutdown``, closed, or died) its work is cancelled and its film closed;
* tells a client of other code (``code_fingerprint``) that it is ``stale`` and goes away;
* exits after ``keep_warm_s`` seconds without a call (the latest client's setting), on
  SIGTERM/SIGINT and on ``stop``; its socket file is removed as it stops listening.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import queue
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

from moviechat_desktop.service import pipe_wire as wire
from moviechat_desktop.service.api import EngineStopped
from moviechat_desktop.service.engine_host import _EOF, _Host
from moviechat_desktop.service.warm_engine_paths import code_fingerprint

log = logging.getLogger("moviechat_desktop.warm_engine")

HELLO_TIMEOUT_S = 10.0  # a connection that says nothing this long is dropped
HELLO_MAX_BYTES = 16 * 1024 * 1024
POLL_S = 0.1
SESSION_END_GRACE_S = 2.0  # a stopped session's caller gets this long to hear why


class _SessionHost(_Host):
    """``_Host`` whose replies may also come from other threads (the log relay), and which
    answers every call with ``EngineStopped`` once the daemon is stopping."""

    def __init__(self, conn: Connection, engine: Any) -> None:
        super().__init__(conn, engine)
        self._send_lock = threading.Lock()
        self.stopping: str | None = None

    def send(self, message: tuple) -> None:
        with self._send_lock:
            super().send(message)

    def _handle(self, kind: str, call_id: int, rest: tuple) -> None:
        if self.stopping is None:
            super()._handle(kind, call_id, rest)
        else:
            self._send_error(call_id, EngineStopped(f"the warm engine stopped ({self.stopping})"))

    def end_soon(self, reason: str) -> None:
        """The daemon is stopping: cancel the call in flight, refuse later ones, and end the
        session after a moment (the caller has heard why by then)."""
        self.stopping = reason
        self._stop_everything()
        timer = threading.Timer(SESSION_END_GRACE_S, self.inbox.put, (_EOF,))
        timer.daemon = True
        timer.start()


class _RelayLogs(logging.Handler):
    """Sends the session's warnings to its client (which prints them as its own)."""

    QUIET = ("moviechat_desktop.service.engine_host",)  # its errors reach the client as such

    def __init__(self, host: _SessionHost) -> None:
        super().__init__(logging.WARNING)
        self._host = host
        self._inside = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(self.QUIET) or getattr(self._inside, "on", False):
            return
        self._inside.on = True
        try:
            self._host.send(("log", -1, record.levelno, record.name, record.getMessage()))
        except Exception:  # the client is gone: its session is ending anyway
            pass
        finally:
            self._inside.on = False


class WarmEngineDaemon:
    def __init__(self, socket_path: Path, key: bytes, keep_warm_s: float) -> None:
        from moviechat_desktop.service.warm_engine_models import ModelKeeper

        self.socket_path = socket_path
        self.keep_warm_s = keep_warm_s
        self.fingerprint = code_fingerprint()
        self.models = ModelKeeper()
        self.pending: queue.Queue[tuple[Connection, dict]] = queue.Queue()
        self.stopping = threading.Event()
        self.signalled: str | None = None  # set by a signal handler (no locks there)
        self.state_lock = threading.Lock()
        self.host: _SessionHost | None = None
        self.busy = False
        self.calls = 0  # sessions queued or being served (a new one waits when > 0)
        self.last_call = time.monotonic()
        self.sessions = 0
        self.started = time.time()
        if socket_path.is_socket():
            socket_path.unlink()  # a crashed daemon's (the client checked it refuses)
        self.listener: Listener | None = Listener(
            str(socket_path), family="AF_UNIX", backlog=16, authkey=key
        )
        os.chmod(socket_path, 0o600)

    # ------------------------------------------------------------------ main thread
    def run(self) -> int:
        for target, name in ((self._accept_forever, "accept"), (self._watch_signals, "signals")):
            threading.Thread(target=target, name=name, daemon=True).start()
        log.info("listening on %s (code %s)", self.socket_path, self.fingerprint)
        while not self.stopping.is_set():
            remaining = self.keep_warm_s - (time.monotonic() - self.last_call)
            if remaining <= 0:
                log.info("no call for %.0f s: exiting", self.keep_warm_s)
                break
            try:
                conn, request = self.pending.get(timeout=min(remaining, POLL_S))
            except queue.Empty:
                continue
            self._serve(conn, request)
            self.last_call = time.monotonic()
        self.stop("exiting", cancel=False)
        while not self.pending.empty():  # callers that were waiting start another engine
            self.pending.get_nowait()[0].close()
        self.models.drop()
        return 0

    def _serve(self, conn: Connection, request: dict) -> None:
        from moviechat_desktop.service.warm_engine_models import SessionAssistant

        with self.state_lock:
            self.busy = True
        self.keep_warm_s = request.get("keep_warm_s", self.keep_warm_s)
        relay = None
        try:
            try:
                assistant = SessionAssistant(
                    self.models,
                    settings=request["settings"],
                    model_dir=request["model_dir"],
                    use_cache=request["use_cache"],
                )
            except BaseException as err:
                conn.send_bytes(wire.dumps(("error", 0, wire.sendable_exception(err))))
                return
            host = self.host = _SessionHost(conn, assistant)
            relay = _RelayLogs(host)
            logging.getLogger().addHandler(relay)
            try:
                conn.send_bytes(wire.dumps(("ready", 0, os.getpid())))
                threading.Thread(target=host.read_forever, name="session", daemon=True).start()
                host.run()
            finally:
                logging.getLogger().removeHandler(relay)
                self.host = None
                try:
                    assistant.shutdown()  # the film's cache entry and files are released
                except Exception:
                    log.exception("closing the session's film failed")
        except (OSError, EOFError) as err:
            log.info("the caller went away: %s", err)
        finally:
            conn.close()
            with self.state_lock:
                self.busy = False
                self.calls -= 1
                self.sessions += 1

    # ------------------------------------------------------------------ other threads
    def _accept_forever(self) -> None:
        while not self.stopping.is_set():
            listener = self.listener
            if listener is None:
                return
            try:
                conn = listener.accept()
            except Exception as err:  # a failed handshake, or the listener closed
                if self.stopping.is_set():
                    return
                log.warning("a connection failed: %s", err)
                continue
            threading.Thread(target=self._greet, args=(conn,), daemon=True).start()

    def _greet(self, conn: Connection) -> None:
        try:
            if not conn.poll(HELLO_TIMEOUT_S):
                conn.close()
                return
            kind, fingerprint, *rest = pickle.loads(conn.recv_bytes(HELLO_MAX_BYTES))
            if kind == "status":
                conn.send_bytes(wire.dumps(("status", 0, self.describe())))
            elif kind == "stop":
                conn.send_bytes(wire.dumps(("stopping", 0, self.describe())))
                self.stop("asked to stop", cancel=True)
            elif kind == "session" and fingerprint != self.fingerprint:
                log.info(
                    "a caller runs other code (%s; this is %s): exiting",
                    fingerprint,
                    self.fingerprint,
                )
                self.stop("stale", cancel=False)  # the socket is gone before the caller hears
                conn.send_bytes(wire.dumps(("stale", 0)))
            elif kind == "session":
                with self.state_lock:
                    if self.stopping.is_set():
                        conn.close()
                        return
                    if self.calls > 0:
                        conn.send_bytes(wire.dumps(("queued", 0)))
                    self.calls += 1
                    self.pending.put((conn, rest[0]))
                return  # the main thread owns it now
        except Exception as err:
            log.warning("a caller's greeting failed: %s", err)
        conn.close()

    def _watch_signals(self) -> None:
        while not self.stopping.wait(POLL_S):
            if self.signalled:
                self.stop(self.signalled, cancel=True)

    def stop(self, reason: str, cancel: bool) -> None:
        """Stop listening (the socket file goes) and end the main loop; ``cancel``: the call
        being served too."""
        with self.state_lock:
            if not self.stopping.is_set():
                log.info("stopping: %s", reason)
            self.stopping.set()
            listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()  # unlinks the socket
        host = self.host
        if cancel and host is not None:
            try:  # the caller is told why its call ends ("cancelled" follows)
                message = f"the warm engine is stopping ({reason}): this call is cancelled"
                host.send(("log", -1, logging.WARNING, log.name, message))
            except Exception:
                pass
            host.end_soon(reason)

    def describe(self) -> dict[str, Any]:
        idle = 0.0 if self.busy else time.monotonic() - self.last_call
        return {
            "pid": os.getpid(),
            "socket": str(self.socket_path),
            "code": self.fingerprint,
            "started": self.started,
            "busy": self.busy,
            "waiting": self.pending.qsize(),
            "sessions": self.sessions,
            "idle_s": round(idle, 1),
            "keep_warm_s": self.keep_warm_s,
            "model": self.models.describe(),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moviechat_desktop.service.warm_engine_main")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--key-file", required=True, type=Path)
    parser.add_argument("--keep-warm-s", type=float, default=300.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s pid %(process)d %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from moviechat_desktop.runtime_env import prefer_passive_openmp

    prefer_passive_openmp()
    from moviechat_desktop.service.warm_engine_paths import WarmEnginePlace, read_key

    place = WarmEnginePlace(args.key_file.parent, args.key_file.stem)
    daemon = WarmEngineDaemon(args.socket, read_key(place), args.keep_warm_s)

    def on_signal(signum: int, _frame: Any) -> None:
        daemon.signalled = signal.Signals(signum).name

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    status = daemon.run()
    log.info("stopped")
    # everything the sessions keep is on disk already: skip the teardown of torch & co.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
