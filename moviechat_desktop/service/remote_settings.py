"""Which engine the window builds when Settings say "Assistant runs on: a server".

Torch-free and light (the GUI process imports it): the ``RemoteEngine`` itself is built by name
inside the local engine's child process (it decodes the film's frames, which the GUI process
must not), so the window only names it here.
"""

from __future__ import annotations

from typing import Any

from moviechat_desktop.engine.settings import AppSettings
from moviechat_desktop.service.api import EngineError

REMOTE_ENGINE = "moviechat_desktop.service.remote_client:RemoteEngine"


def uses_server(settings: AppSettings) -> bool:
    return settings.engine.mode == "server"


def remote_engine_arguments(settings: AppSettings) -> dict[str, Any]:
    """The ``RemoteEngine`` arguments from the [engine] settings; ``EngineError`` when the
    server's address is missing."""
    url = settings.engine.server_url.strip()
    if not url:
        raise EngineError(
            "the assistant is set to run on a server but no server address is set "
            "(Settings → Assistant runs on)"
        )
    return {
        "server_url": url,
        "token_file": settings.engine.token_file.strip() or None,
        "settings": settings,
    }
