"""Resumable HTTP download of one file: ``.part`` file, Range requests, verify, atomic rename.

Bytes go to ``<dest>.part``; after an interruption (dropped connection, cancel, crash, quit)
the next call resumes from the ``.part`` file's size with ``Range: bytes=N-``. A server that
ignores the Range header (answers 200) is detected and the file restarts from zero. Only a
complete file whose size (and sha256, when known) checks out is renamed to ``dest``, so a file
with the final name is never a half-file.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from moviechat_desktop import __version__
from moviechat_desktop.engine.errors import Cancelled, DownloadError, WeightsCorrupt
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.weights.no_connection import no_connection, why_unreachable
from moviechat_desktop.engine.weights.store import fsync_replace
from moviechat_desktop.engine.weights.transfer import (
    ByteReporter,
    TransferCallback,
    no_transfer_progress,
)

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass(frozen=True)
class DownloadedFile:
    path: Path
    size: int
    sha256: str
    resumed_from: int  # bytes that were already on disk when this call started


def part_path_for(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``"bytes 100-199/200"`` → ``(100, 200)``; ``"bytes */200"`` → ``(None, 200)``."""
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return start, total


def hash_file(path: Path, reporter: ByteReporter | None = None, limit: int | None = None) -> str:
    """sha256 of ``path`` (its first ``limit`` bytes), reporting progress and honouring cancel."""
    digest = hashlib.sha256()
    _hash_into(digest, path, reporter, limit)
    return digest.hexdigest()


def _hash_into(digest, path: Path, reporter: ByteReporter | None, limit: int | None) -> None:
    left = limit
    with open(path, "rb") as fh:
        while left is None or left > 0:
            block = fh.read(4 * 1024 * 1024 if left is None else min(left, 4 * 1024 * 1024))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
            if reporter is not None:
                reporter.add(len(block))


class _PartFile:
    """The ``.part`` file with its running sha256: its size and digest always agree."""

    def __init__(self, path: Path, keep: int, reporter: ByteReporter | None) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self.size = 0
        if keep:
            _hash_into(self.digest, path, reporter, keep)
            self.size = keep
        else:
            self.restart()

    def restart(self) -> None:
        self.path.write_bytes(b"")
        self.digest = hashlib.sha256()
        self.size = 0

    def append_from(self, resp, reporter: ByteReporter) -> None:
        """Append the response body until it ends (or raises)."""
        try:
            fh = open(self.path, "ab")  # noqa: SIM115 (closed in finally)
        except OSError as err:
            raise DownloadError(f"cannot write {self.path}: {err}") from err
        try:
            while True:
                chunk = resp.read1(CHUNK)  # what has arrived: cancel stays prompt on a slow line
                if not chunk:
                    return
                try:
                    fh.write(chunk)
                    fh.flush()
                except OSError as err:
                    raise DownloadError(f"cannot write {self.path}: {err} (disk full?)") from err
                self.digest.update(chunk)
                self.size += len(chunk)
                reporter.add(len(chunk))  # raises Cancelled
        finally:
            fh.close()


def http_download(
    url: str,
    dest: Path,
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    part: str = "",
    progress: TransferCallback = no_transfer_progress,
    cancel: CancelToken | None = None,
    max_attempts: int = 6,
    timeout_s: float = 30.0,
    retry_delay_s: float = 1.0,
    headers: dict[str, str] | None = None,
) -> DownloadedFile:
    """Download ``url`` to ``dest`` (resuming ``dest.part``) and return what was written.

    ``expected_size`` is an exact size (pass ``None`` for an estimate); a server offering a
    different size is refused. Retries (with Range) after dropped connections and server
    errors, at most ``max_attempts`` times in a row without progress. ``headers`` are sent with
    every request (e.g. the hub's Authorization; it is dropped when a redirect leaves the
    host). Raises ``Cancelled``
    (the ``.part`` file stays for a resume), ``DownloadError`` (HTTP error, too many failed
    attempts, disk full) or ``WeightsCorrupt`` (checksum mismatch; the ``.part`` is deleted).
    """
    cancel = cancel or CancelToken()
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part_file = part_path_for(dest)
    keep = part_file.stat().st_size if part_file.exists() else 0
    if expected_size is not None and keep > expected_size:
        keep = 0
    if keep:
        log.info("resuming %s from %d bytes", dest.name, keep)
    checker = ByteReporter(part, progress, cancel, keep, phase="verify", file=dest.name)
    pf = _PartFile(part_file, keep, checker)
    total = expected_size
    reporter = ByteReporter(
        part, progress, cancel, total, phase="download", file=dest.name, done=pf.size
    )
    failures = 0
    while total is None or pf.size < total:
        cancel.raise_if_cancelled()
        before = pf.size
        sent = {
            "User-Agent": f"moviechat-desktop/{__version__}",
            **(headers or {}),
            "Accept-Encoding": "identity",
        }
        if pf.size:
            sent["Range"] = f"bytes={pf.size}-"
        try:
            request = urllib.request.Request(url, headers=sent)
            with _OPENER.open(request, timeout=timeout_s) as resp:
                server_total = _accept_response(resp, pf, url)
                if server_total is not None:
                    if expected_size is not None and server_total != expected_size:
                        raise DownloadError(
                            f"{url} offers {server_total} bytes but {expected_size} are expected"
                        )
                    total = reporter.total = server_total
                reporter.set(pf.size)
                pf.append_from(resp, reporter)
            if total is None:  # the server never said: what arrived is the file
                total = pf.size
            elif pf.size < total:
                raise ConnectionError(f"connection closed at {pf.size} of {total} bytes")
        except urllib.error.HTTPError as err:
            _, server_total = _parse_content_range(err.headers.get("Content-Range"))
            if err.code == 416 and server_total is not None and server_total == pf.size:
                total = pf.size  # it was already complete
                break
            if err.code == 416:
                pf.restart()
            elif err.code not in (408, 429) and err.code < 500:
                raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
            failures = _retry_or_raise(
                url,
                err,
                failures,
                max_attempts=max_attempts,
                offset=pf.size,
                cancel=cancel,
                delay_s=retry_delay_s,
            )
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            why = why_unreachable(err)
            if why is not None:  # no network: say so now, retrying would only make one wait
                host = urllib.parse.urlsplit(url).hostname or url
                raise no_connection(host, why) from err
            if pf.size > before:
                failures = 0  # progress was made: only consecutive fruitless attempts count
            failures = _retry_or_raise(
                url,
                err,
                failures,
                max_attempts=max_attempts,
                offset=pf.size,
                cancel=cancel,
                delay_s=retry_delay_s,
            )
    actual = pf.digest.hexdigest()
    if sha256 is not None and actual != sha256:
        part_file.unlink(missing_ok=True)
        raise WeightsCorrupt(
            f"{dest.name} failed verification: sha256 is {actual}, expected {sha256}; "
            "the download was deleted — run the download again"
        )
    fsync_replace(part_file, dest)
    return DownloadedFile(path=dest, size=pf.size, sha256=actual, resumed_from=keep)


class _SameHostAuthRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects (the hub sends file downloads to a CDN) keeping Range, but never carry
    an Authorization header to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: PLR0917 (stdlib's)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != req.host:
            for name in ("Authorization", "authorization"):
                new.headers.pop(name, None)
                new.unredirected_hdrs.pop(name, None)
        return new


_OPENER = urllib.request.build_opener(_SameHostAuthRedirects)


def _accept_response(resp, pf: _PartFile, url: str) -> int | None:
    """Check a response against the ``.part`` file; return the full size the server announces."""
    if resp.status == 206:
        start, server_total = _parse_content_range(resp.headers.get("Content-Range"))
        if start != pf.size:
            raise DownloadError(f"{url}: the server resumed at byte {start}, not {pf.size}")
        return server_total
    if pf.size:  # 200 to a Range request: the server ignores Range, start over
        log.info("%s ignored the Range request; restarting from zero", url)
        pf.restart()
    length = resp.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _retry_or_raise(
    url: str,
    err: Exception,
    failures: int,
    *,
    max_attempts: int,
    offset: int,
    cancel: CancelToken,
    delay_s: float,
) -> int:
    failures += 1
    if failures >= max_attempts:
        raise DownloadError(
            f"download from {url} failed {failures} times in a row ({err}); "
            f"{offset} bytes are kept and the next download resumes from there"
        ) from err
    wait = min(30.0, delay_s * 2 ** (failures - 1))
    log.warning("download from %s interrupted (%s); retry %d in %.1f s", url, err, failures, wait)
    if cancel.wait(wait):
        raise Cancelled("cancelled")
    return failures
