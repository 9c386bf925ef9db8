"""Weights download with no network (issue #14 item 9): a connection that cannot succeed is
reported at the first attempt, without the retry-with-backoff meant for broken transfers; the
dialog's button then says "Retry" and Enter never starts a download. Tested with a refused
connection on loopback."""

from __future__ import annotations

import errno
import os
import socket
import time
import urllib.error
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from moviechat_desktop.engine.weights.http_download import http_download
from moviechat_desktop.engine.weights.no_connection import (
    NO_CONNECTION,
    NoConnection,
    why_unreachable,
)
from moviechat_desktop.ui.weights_dialog import WeightsDialog

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def refused_url():
    """A loopback port nobody listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_refused_connection_is_reported_at_once(tmp_path, refused_url):
    started = time.monotonic()
    with pytest.raises(NoConnection) as caught:
        http_download(
            f"{refused_url}/eva_vit_g.pth",
            tmp_path / "eva_vit_g.pth",
            max_attempts=6,
            retry_delay_s=1.0,  # the backoff would wait 1+2+4+8+16 s before giving up
        )
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"took {elapsed:.1f} s: it retried"
    message = str(caught.value)
    assert message.startswith(NO_CONNECTION)
    assert "the connection was refused" in message and "127.0.0.1" in message
    assert "\n" not in message


def test_what_counts_as_no_connection():
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert why_unreachable(urllib.error.URLError(gai)) == "the server's name was not resolved"
    assert why_unreachable(ConnectionRefusedError(111, "refused")) == "the connection was refused"
    assert why_unreachable(OSError(errno.ENETUNREACH, "x")) == "no route to the server"
    assert why_unreachable(OSError(errno.EHOSTUNREACH, "x")) == "no route to the server"
    try:  # a library that wraps the OSError (httpx, requests)
        try:
            raise OSError(errno.ECONNREFUSED, "Connection refused")
        except OSError as inner:
            raise RuntimeError("ConnectError") from inner
    except RuntimeError as wrapped:
        assert why_unreachable(wrapped) == "the connection was refused"
    assert why_unreachable(RuntimeError("[Errno -2] Name or service not known")) is not None
    # a transfer that broke, a timeout, a server error: retried as before
    assert why_unreachable(ConnectionResetError(104, "reset by peer")) is None
    assert why_unreachable(TimeoutError("timed out")) is None
    assert why_unreachable(urllib.error.URLError(TimeoutError())) is None


def test_the_dialog_says_so_offers_retry_and_enter_never_downloads(
    qtbot, online, tiny_manifest, refused_url, monkeypatch
):
    # every source unreachable: the hub and the plain URLs of the tiny manifest
    monkeypatch.setenv("HF_ENDPOINT", refused_url)
    path = Path(os.environ["MOVIECHAT_WEIGHTS_MANIFEST"])
    path.write_text(path.read_text().replace(online.url, refused_url))
    dialog = WeightsDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert not dialog.download_button.isDefault() and not dialog.download_button.autoDefault()
    assert dialog.close_button.isDefault()
    dialog.download_button.setFocus()  # even with the focus on it, Enter closes: no download
    qtbot.keyClick(dialog, Qt.Key.Key_Return)
    assert dialog.worker is None
    dialog.show()
    started = time.monotonic()
    dialog.download_button.click()
    qtbot.waitUntil(lambda: dialog.worker is None, timeout=30_000)
    elapsed = time.monotonic() - started
    message = dialog.message_label.text()
    assert NO_CONNECTION in message, message
    assert elapsed < 5.0, f"{elapsed:.1f} s: it retried with backoff"
    assert dialog.download_button.text() == "Retry"
    dialog.download_button.click()  # Retry tries again (and fails the same way)
    assert dialog.download_button.text() != "Retry" or dialog.worker is not None
    qtbot.waitUntil(lambda: dialog.worker is None, timeout=30_000)
    assert dialog.download_button.text() == "Retry"
