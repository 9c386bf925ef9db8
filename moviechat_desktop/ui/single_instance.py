"""One window, as VLC and mpv do: launching the app with a file while a window is open opens
the file in that window (``player.one_window``; false allows several windows).

The first window listens on a local socket (``QLocalServer``; a Unix socket only this user can
use, named after the user and the config folder, so another profile gets its own window). A
later launch connects, sends one JSON line ``{"open": "/abs/path"}`` (or ``{"open": null}``
to just bring the window forward), waits for ``ok`` and exits. The message is checked
(a JSON object, a path string of bounded length); the path then goes through the same probe
as File → Open, so a bad file gets the usual dialog in the running window.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from moviechat_desktop.engine.settings import user_config_dir

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_MS = 500
REPLY_TIMEOUT_MS = 3000
MAX_MESSAGE = 16 * 1024


def server_name() -> str:
    """Per user and per config folder (tests and profiles with their own config stay apart)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name (some containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    folder = hashlib.sha1(str(user_config_dir()).encode()).hexdigest()[:10]
    return f"moviechat-desktop-{user}-{folder}"


def parse_message(data: bytes) -> tuple[bool, str | None]:
    """``(valid, path)`` of a request line; ``path`` None means "just show the window"."""
    if len(data) > MAX_MESSAGE:
        return False, None
    try:
        message = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(message, dict):
        return False, None
    path = message.get("open")
    if path is None:
        return True, None
    if not isinstance(path, str) or not path or len(path) > 4096 or "\0" in path:
        return False, None
    return True, path


def forward(path: str | None) -> bool:
    """Hand ``path`` to the running window; True when one took it (then this launch exits)."""
    socket = QLocalSocket()
    socket.connectToServer(server_name())
    if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
        return False
    absolute = os.path.abspath(os.path.expanduser(path)) if path else None
    socket.write(json.dumps({"open": absolute}).encode("utf-8") + b"\n")
    socket.flush()
    reply = b""
    while b"\n" not in reply and socket.waitForReadyRead(REPLY_TIMEOUT_MS):
        reply += bytes(socket.readAll().data())
    socket.disconnectFromServer()
    if reply.strip() != b"ok":
        log.warning("the running window did not take the file (%r)", reply[:40])
        return False
    log.info("opened in the running window: %s", absolute)
    return True


class InstanceServer(QObject):
    """The running window's end: each request opens its file with ``open_file``."""

    request = Signal(object)  # the path (str) or None

    def __init__(self, open_file: Callable[[str | None], None], parent: QObject | None = None):
        super().__init__(parent)
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._server.newConnection.connect(self._accept)
        self.request.connect(open_file)
        self._buffers: dict[QLocalSocket, bytes] = {}

    def listen(self) -> bool:
        name = server_name()
        if not self._server.listen(name):
            QLocalServer.removeServer(name)  # a socket left by a window that crashed
            if not self._server.listen(name):
                log.warning("single window: cannot listen (%s)", self._server.errorString())
                return False
        return True

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while self._server.hasPendingConnections():
            socket = self._server.nextPendingConnection()
            self._buffers[socket] = b""
            socket.readyRead.connect(lambda s=socket: self._read(s))
            socket.disconnected.connect(lambda s=socket: self._drop(s))

    def _drop(self, socket: QLocalSocket) -> None:
        self._buffers.pop(socket, None)
        socket.deleteLater()

    def _read(self, socket: QLocalSocket) -> None:
        data = self._buffers.get(socket, b"") + bytes(socket.readAll().data())
        if b"\n" not in data and len(data) <= MAX_MESSAGE:
            self._buffers[socket] = data
            return
        valid, path = parse_message(data.split(b"\n", 1)[0])
        socket.write(b"ok\n" if valid else b"refused\n")
        socket.flush()
        socket.disconnectFromServer()
        if valid:
            self.request.emit(path)
        else:
            log.warning("single window: a malformed request was ignored")


def present(window: QObject, path: str | None) -> None:
    """Open ``path`` (if any) in ``window`` and bring the window to the front."""
    if path:
        window.open_file(path)  # type: ignore[attr-defined]
    if window.isMinimized():  # type: ignore[attr-defined]
        window.showNormal()  # type: ignore[attr-defined]
    window.raise_()  # type: ignore[attr-defined]
    window.activateWindow()  # type: ignore[attr-defined]


def serve(window: QObject) -> InstanceServer | None:
    """Make ``window`` the one later launches hand their files to (None if it cannot)."""
    server = InstanceServer(lambda path: present(window, path), window)
    return server if server.listen() else None
