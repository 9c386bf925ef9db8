"""The CLI's side of the warm engine: find it (or start it) and talk to one session of it.

``open_warm_engine`` returns a ``WarmEngine``: the local engine's proxy (``LocalEngine``:
every method by name, streams, cancel tokens, callbacks) over a Unix socket to the daemon
(``warm_engine_main``) instead of a pipe to a child of its own. The first call starts the
daemon, detached, and waits for it; later calls connect at once and get the model it already
holds. This module, like the whole client path, imports neither torch, transformers nor decord
(import-linter contract, and a test of ``sys.modules`` after a warm ``ask``).

Returns None (the caller runs the engine in its own process, as before) when
``engine.keep_warm_s`` / ``$MOVIECHAT_KEEP_WARM_S`` is 0, and, with one warning, when the
runtime directory is not private (``warm_engine_paths``) or the daemon cannot be started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Client, Connection
from typing import Any

from moviechat_desktop.engine.settings import AppSettings
from moviechat_desktop.service import pipe_wire as wire
from moviechat_desktop.service.api import EngineDied, EngineError
from moviechat_desktop.service.local_engine import LocalEngine
from moviechat_desktop.service.warm_engine_paths import (
    PACKAGE_DIR,
    WarmEnginePlace,
    WarmEngineRefused,
    code_fingerprint,
    keep_warm_seconds,
    read_key,
    warm_engine_place,
    write_new_key,
)
from moviechat_desktop.terminal_text import for_terminal

log = logging.getLogger(__name__)

DAEMON_MODULE = "moviechat_desktop.service.warm_engine_main"
START_TIMEOUT_S = 120.0  # Python and the engine's light imports on a slow, busy machine
WAIT_NOTICE_S = 1.0  # a call waiting longer than this for another one says so
CONTROL_TIMEOUT_S = 10.0  # status / stop answers
LOG_MAX_BYTES = 1 << 20  # the daemon's log is started afresh beyond this


class WarmEngine(LocalEngine):
    """One session of the warm engine (an ``EngineClient``; see the module docstring).

    ``close()`` closes the film in the engine (releasing its cache entry) and ends the
    session; the daemon keeps the model for the next call. The daemon dying mid-call is
    ``EngineDied`` ("The assistant's process ended: …"), as for the GUI's engine process.
    """

    def __init__(self, conn: Connection, pid: int, place: WarmEnginePlace) -> None:
        object.__setattr__(self, "_ready", False)
        self._attach(conn)
        self.pid = pid
        self._place = place
        self._ready = True

    def close(self) -> None:
        try:
            if self.alive:
                self._call("close")
        except EngineError:
            pass  # ended already: nothing is left open
        finally:
            self.shutdown()

    def _peer_alive(self) -> bool:
        return True  # the daemon's end closing reads as the end of the stream

    def _how_it_ended(self) -> str:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return (
                f"the warm engine (pid {self.pid}) is gone: killed, or it crashed "
                f"(its log: {self._place.log_file})"
            )
        except OSError:
            pass
        return f"the warm engine (pid {self.pid}) ended this call (its log: {self._place.log_file})"

    def _stop_peer(self, grace_s: float) -> None:
        pass  # the daemon stays, warm, for the next call

    def _log_death(self, died: EngineDied) -> None:
        log.info("%s", died)  # the CLI says it once, as the call's error

    def __repr__(self) -> str:
        return f"<WarmEngine pid={self.pid} {'closed' if self._closed else 'open'}>"


def open_warm_engine(
    settings: AppSettings,
    model_dir: str | None,
    use_cache: bool,
    on_wait: Callable[[], None] = lambda: None,
) -> WarmEngine | None:
    """A session of this user's warm engine (started when none runs), or None when the
    warm engine is off or cannot be used here (module docstring). ``model_dir``: absolute.
    ``on_wait`` is called once when the engine has been busy with another call for a while."""
    keep_warm_s = keep_warm_seconds(settings)
    if keep_warm_s <= 0 or os.name != "posix":  # (Unix sockets, fcntl locks)
        return None
    try:
        place = warm_engine_place()
    except WarmEngineRefused as err:
        log.warning("no warm engine (%s): this call loads its own", for_terminal(str(err)))
        return None
    request = {
        "settings": settings,
        "model_dir": model_dir,
        "use_cache": use_cache,
        "keep_warm_s": keep_warm_s,
    }
    fingerprint = code_fingerprint()
    for _ in range(3):  # a stale engine, or one that exited just as we came: start another
        try:
            conn = _connect_or_start(place, keep_warm_s)
        except (EngineError, OSError) as err:
            log.warning(
                "the warm engine could not start (%s): this call loads its own",
                for_terminal(str(err)),
            )
            return None
        engine = _begin_session(conn, fingerprint, request, place, on_wait)
        if engine is not None:
            return engine
    log.warning(
        "the warm engine keeps going away (its log: %s): this call loads its own", place.log_file
    )
    return None


def _begin_session(
    conn: Connection,
    fingerprint: str,
    request: dict,
    place: WarmEnginePlace,
    on_wait: Callable[[], None],
) -> WarmEngine | None:
    """Ask for a session: the engine, or None when this daemon cannot serve it (stale, or
    gone before the session began)."""
    waiting_since: float | None = None
    try:
        conn.send_bytes(wire.dumps(("session", fingerprint, request)))
        while True:
            if not conn.poll(0.05):
                if waiting_since is not None and time.monotonic() - waiting_since > WAIT_NOTICE_S:
                    on_wait()
                    waiting_since = None
                continue
            reply = wire.loads(conn.recv_bytes())
            if reply[0] == "queued":
                waiting_since = time.monotonic()
            elif reply[0] == "ready":
                return WarmEngine(conn, reply[2], place)
            elif reply[0] == "error":
                conn.close()
                failure = reply[2]
                break
            else:  # "stale": it runs other code and is going away
                log.info("the warm engine runs other code: starting a new one")
                conn.close()
                return None
    except (EOFError, OSError):
        conn.close()
        return None
    raise failure  # the engine could not be built from these settings


# --------------------------------------------------------------------------- connect or start
def _try_connect(place: WarmEnginePlace) -> Connection | None:
    """A connection to the running daemon, or None when there is none (or it is a dead one's
    socket file, or one we cannot talk to)."""
    if not place.socket.is_socket():
        return None
    try:
        key = read_key(place)
        return Client(str(place.socket), family="AF_UNIX", authkey=key)
    except (WarmEngineRefused, OSError, EOFError, ValueError) as err:
        log.debug("no warm engine at %s: %s", place.socket, err)
        return None
    except Exception as err:  # multiprocessing's AuthenticationError
        log.info("the warm engine at %s refused the handshake: %s", place.socket, err)
        return None


@contextlib.contextmanager
def _start_lock(place: WarmEnginePlace) -> Iterator[None]:
    """Held while a daemon is started: two calls at once never start two."""
    import fcntl  # POSIX only, like the Unix socket (open_warm_engine checks)

    fd = os.open(place.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _connect_or_start(place: WarmEnginePlace, keep_warm_s: int) -> Connection:
    conn = _try_connect(place)
    if conn is not None:
        return conn
    with _start_lock(place):
        conn = _try_connect(place)  # another call may have started one meanwhile
        if conn is not None:
            return conn
        return _start(place, keep_warm_s)


def _start(place: WarmEnginePlace, keep_warm_s: int) -> Connection:
    if place.socket.exists() or place.socket.is_symlink():
        log.info("removing the socket of a warm engine that is gone: %s", place.socket)
        place.socket.unlink()
    key = write_new_key(place)
    log_file = place.log_file
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if log_file.stat().st_size > LOG_MAX_BYTES:
            os.replace(log_file, log_file.with_suffix(".log.1"))
    env = dict(os.environ)  # the daemon imports this very code, wherever the caller found it
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_DIR.parent), env.get("PYTHONPATH", "")) if p
    )
    command = [sys.executable, "-m", DAEMON_MODULE, "--socket", str(place.socket)]
    command += ["--key-file", str(place.key_file), "--keep-warm-s", str(keep_warm_s)]
    with open(log_file, "ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd="/",
            env=env,
            start_new_session=True,
        )
    log.info("started the warm engine (pid %d)", process.pid)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if place.socket.is_socket():
            try:
                return Client(str(place.socket), family="AF_UNIX", authkey=key)
            except (ConnectionRefusedError, FileNotFoundError):
                pass  # bound, not listening yet
        code = process.poll()
        if code is not None:
            raise EngineError(
                f"the warm engine could not start (status {code}): {_last_line(log_file)} "
                f"(its log: {log_file})"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise EngineError(
                f"the warm engine did not start within {START_TIMEOUT_S:.0f} s "
                f"(its log: {log_file})"
            )
        time.sleep(0.02)


def _last_line(path: os.PathLike) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return "no log"
    return for_terminal(lines[-1][-300:]) if lines else "no log"


# --------------------------------------------------------------------------- status and stop
def _control(kind: str) -> tuple[WarmEnginePlace, dict[str, Any] | None]:
    """Ask the running daemon (if any) for ``status`` or to ``stop``: its description."""
    place = warm_engine_place()
    conn = _try_connect(place)
    if conn is None:
        return place, None
    with conn:
        try:
            conn.send_bytes(wire.dumps((kind, code_fingerprint())))
            if not conn.poll(CONTROL_TIMEOUT_S):
                raise EngineError(f"the warm engine (at {place.socket}) does not answer")
            return place, wire.loads(conn.recv_bytes())[2]
        except (EOFError, OSError):
            return place, None


def engine_status() -> tuple[WarmEnginePlace, dict[str, Any] | None]:
    """The running warm engine's description (pid, model, idle time...), or None."""
    return _control("status")


def stop_engine(wait_s: float = CONTROL_TIMEOUT_S) -> tuple[WarmEnginePlace, dict | None]:
    """Stop the running warm engine (the call it serves is cancelled) and wait until its
    process is gone; its description, or None when none was running."""
    place, described = _control("stop")
    if described is not None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _process_exists(described["pid"]):
            time.sleep(0.05)
    return place, described


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
