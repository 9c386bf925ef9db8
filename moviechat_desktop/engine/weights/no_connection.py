"""A connection that cannot succeed, told apart from a transfer that broke.

Retrying with backoff helps a download whose connection dropped or whose server had a
moment; it only makes the user wait when there is no network at all. A name that does not
resolve, a refused connection and a network or host with no route are reported at the first
attempt as ``NoConnection`` (a ``DownloadError``), with what was tried in parentheses.
"""

from __future__ import annotations

import errno
import socket

from moviechat_desktop.engine.errors import DownloadError

NO_CONNECTION = (
    "No connection to the download server — check the network, or use files you already have"
)
_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN}
_WORDS = (  # libraries that keep only the text (httpx/httpcore wrap the OSError's message)
    ("name or service not known", "the server's name was not resolved"),
    ("temporary failure in name resolution", "the server's name was not resolved"),
    ("nodename nor servname", "the server's name was not resolved"),
    ("getaddrinfo failed", "the server's name was not resolved"),
    ("connection refused", "the connection was refused"),
    ("network is unreachable", "no route to the network"),
    ("no route to host", "no route to the server"),
)


class NoConnection(DownloadError):
    """No connection to the download server could be made (see module docstring)."""


def _chain(err: BaseException):
    seen: set[int] = set()
    todo = [err]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)  # urllib's URLError keeps the OSError here
        for nested in (current.__cause__, current.__context__, reason):
            if isinstance(nested, BaseException):
                todo.append(nested)


def why_unreachable(err: BaseException) -> str | None:
    """Why no connection could be made, in words, when ``err`` says so; else None (a
    transfer that broke, a timeout, a server error: those are worth retrying)."""
    for item in _chain(err):
        if isinstance(item, socket.gaierror):
            return "the server's name was not resolved"
        if isinstance(item, ConnectionRefusedError):
            return "the connection was refused"
        if isinstance(item, OSError) and item.errno in _NO_ROUTE:
            return "no route to the server"
    for item in _chain(err):
        text = str(item).lower()
        for words, why in _WORDS:
            if words in text:
                return why
    return None


def no_connection(where: str, why: str) -> NoConnection:
    return NoConnection(f"{NO_CONNECTION} ({where}: {why}).")
