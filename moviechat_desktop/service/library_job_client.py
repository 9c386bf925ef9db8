"""The HTTP client of library jobs (the routes in ``serve_app``, the jobs in ``library_job``):
submit paths as the server sees them with this computer's sampling settings, poll the job's
progress, cancel it. ``cli_library_job`` is the command around it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from moviechat_desktop.engine.settings import AppSettings
from moviechat_desktop.service import remote_wire as wire
from moviechat_desktop.service.remote_client import (
    CONNECT_TIMEOUT_S,
    ServerError,
    Unauthorized,
    check_server_url,
    read_token,
)


class JobLost(ServerError):
    """The server does not know the job (any more)."""


class LibraryClient:
    """HTTP calls of the library job routes (``serve_app``)."""

    def __init__(
        self, server_url: str, token_file: str | Path | None, http: httpx.Client | None = None
    ) -> None:
        self.server_url = check_server_url(server_url)
        token = read_token(token_file)
        self._http = http or httpx.Client(
            base_url=self.server_url, timeout=httpx.Timeout(60.0, connect=CONNECT_TIMEOUT_S)
        )
        self._http.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, wire.API_PREFIX + path, **kwargs)
        except httpx.ConnectError as err:
            raise ServerError(f"cannot reach the server at {self.server_url} ({err})") from None
        except httpx.HTTPError as err:
            raise ServerError(
                f"the connection to the server at {self.server_url} broke ({err})"
            ) from None
        if response.status_code == 401:
            raise Unauthorized(
                f"the server at {self.server_url} refused the token (401): check --token-file"
            )
        try:
            data = response.json()
        except ValueError:
            raise ServerError(f"the server at {self.server_url} failed (HTTP "
                              f"{response.status_code})") from None  # fmt: skip
        if response.status_code >= 400 or not isinstance(data, dict):
            error = data.get("error") if isinstance(data, dict) else None
            if isinstance(error, dict) and error.get("type") == "JobNotFound":
                raise JobLost(str(error.get("message")))
            if response.status_code == 503 and isinstance(data, dict) and "detail" in data:
                raise ServerError(f"the server at {self.server_url}: {data['detail']}")
            raise wire.error_from_wire(error, ServerError)
        return data

    def submit(self, paths: list[str], settings: AppSettings) -> dict[str, Any]:
        body = {"paths": paths, "sampling": wire.sampling_to_wire(settings.sampling)}
        return self._call("POST", "/library/jobs", json=body)

    def progress(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/library/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/library/jobs/{job_id}")

    def close(self) -> None:
        self._http.close()


__all__ = ["JobLost", "LibraryClient"]
