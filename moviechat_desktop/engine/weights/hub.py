"""Hugging Face hub files (hub cache, HF_ENDPOINT, login token) in the standard hub cache
(``$HF_HUB_CACHE`` or ``$HF_HOME/hub``), so other tools share them. The endpoint and cache dir
are read from the environment at call time; the token is huggingface_hub's own (``HF_TOKEN`` or
``hf auth login``, through ``build_hf_headers``): it is sent to the hub's host only (not along
a redirect to a CDN) and never logged.

Planning (which files, how big, which commit) asks huggingface_hub (dry runs). The bytes are
fetched by our own resumable ``http_download`` from the file's ``resolve`` URL, straight into
the hub cache's layout (``blobs/<etag>``, ``snapshots/<commit>/<name>`` → the blob,
``refs/<revision>``), because huggingface_hub 2.4 deletes its temporary file when a call fails
or is cancelled: a cancelled 10 GB shard would start again from zero. Ours keeps
``blobs/<etag>.part`` and resumes it with a Range request next time; a file whose etag is a
sha256 (every LFS file) is checked against it before it is moved into place. The result is
the cache huggingface_hub itself writes, so other tools (and ``local_files_only``) share it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, TypeVar

from moviechat_desktop.engine.errors import DownloadError, MovieChatError
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.store.atomic_io import atomic_write
from moviechat_desktop.engine.weights.manifest import Source
from moviechat_desktop.engine.weights.store import hub_cache_dir
from moviechat_desktop.engine.weights.transfer import ByteReporter

log = logging.getLogger(__name__)

T = TypeVar("T")
_BIN_WEIGHTS = ("pytorch_model.bin", "pytorch_model-*-of-*.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class HubFile:
    path: Path  # the snapshot path (usually a symlink into blobs/)
    commit: str | None
    etag: str | None  # sha256 for LFS files, git blob sha1 otherwise; None if unknown
    size: int


@dataclass(frozen=True)
class PlannedFile:
    name: str
    size: int
    cached: bool


def endpoint() -> str | None:
    """``$HF_ENDPOINT`` read now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT") or None


def repo_cache_dir(repo: str) -> Path:
    return hub_cache_dir() / ("models--" + repo.replace("/", "--"))


def is_hex_digest(value: object, lengths: tuple[int, ...] = (40, 64)) -> bool:
    """A lowercase hex digest of one of ``lengths`` characters (git sha1 or sha256)."""
    return (
        isinstance(value, str)
        and len(value) in lengths
        and all(c in "0123456789abcdef" for c in value)
    )


def etag_of(path: Path) -> str | None:
    """The hub cache names blobs by etag: read it from the symlink target."""
    if not path.is_symlink():
        return None
    name = path.resolve().name
    return name if is_hex_digest(name) else None


def _checked_version(what: str, etag: object, commit: object) -> tuple[str, str]:
    """The server's ETag and X-Repo-Commit name files in the cache (``blobs/<etag>``,
    ``snapshots/<commit>``): only hex digests are accepted, anything else is a lying or
    broken server."""
    if not is_hex_digest(etag):
        raise DownloadError(f"{what}: the server sent an invalid ETag {str(etag)[:80]!r}")
    if not is_hex_digest(commit, (40,)):
        raise DownloadError(f"{what}: the server sent an invalid commit {str(commit)[:80]!r}")
    return str(etag), str(commit)


def _checked_name(what: str, name: str) -> str:
    """A repo file name as a relative path with no ``..``, ``.`` or empty parts."""
    parts = name.split("/")
    if not name or "\\" in name or "\0" in name or any(p in ("", ".", "..") for p in parts):
        raise DownloadError(f"{what}: invalid file name {name[:200]!r} (it would leave the cache)")
    return name


def _inside(repo_dir: Path, path: Path, what: str) -> Path:
    """``path`` with its folder resolved (links followed), required inside ``repo_dir``: no
    download, link or delete ever reaches outside the repo's cache folder."""
    root = repo_dir.resolve()
    real = path.parent.resolve() / path.name
    if not real.is_relative_to(root) or real == root:
        raise DownloadError(f"{what}: refusing to write outside the hub cache ({real})")
    return real


class _SilentBar:
    """A tqdm stand-in for huggingface_hub's dry runs: nothing is drawn on the terminal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.n = int(kwargs.get("initial") or 0)
        self.total = kwargs.get("total")
        self.format_dict: dict[str, Any] = {"rate": None}

    def update(self, n: float | None = 1) -> None:
        self.n += int(n or 0)

    def __enter__(self) -> _SilentBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _noop(self, *args: Any, **kwargs: Any) -> None:
        return None

    close = refresh = reset = clear = display = _noop
    set_description = set_description_str = set_postfix = set_postfix_str = _noop


def _call_hub(what: str, fn: Callable[[], T]) -> T:
    """Run a huggingface_hub call; turn its failures into one-line ``DownloadError``s."""
    try:
        return fn()
    except MovieChatError:
        raise  # Cancelled from our progress bar, among others
    except Exception as err:
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
        )

        from moviechat_desktop.engine.weights.no_connection import no_connection, why_unreachable

        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        why = why_unreachable(err)
        if why is not None:
            raise no_connection(what, why) from err
        if isinstance(err, GatedRepoError | RepositoryNotFoundError):
            msg = (
                f"{what}: the repository is gated, private or missing ({first_line}); "
                "log in with `hf auth login` (or set HF_TOKEN) if it needs an account"
            )
        elif isinstance(err, OfflineModeIsEnabled | LocalEntryNotFoundError):
            msg = f"{what}: not in the local cache and the hub cannot be reached ({first_line})"
        else:
            msg = f"{what} failed: {type(err).__name__}: {first_line}"
        raise DownloadError(msg) from err


def download_file(
    source: Source, *, part: str, progress: Callable[..., None], cancel: CancelToken
) -> HubFile:
    """Fetch one repo file into the hub cache (no-op if already cached) and return it."""
    metadata = _file_metadata(source.repo, source.filename, source.revision)
    reporter = ByteReporter(
        part, progress, cancel, metadata.size, phase="download", file=source.filename
    )
    return _fetch(
        source.repo, source.filename, source.revision, metadata, reporter=reporter, base=0
    )


def _file_metadata(repo: str, filename: str, revision: str) -> Any:
    """The hub's answer for one file: etag, commit, size (a HEAD request)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    what = f"{repo}/{filename}"
    _checked_name(what, filename)  # before any request: the name is also a cache path
    url = hf_hub_url(repo, filename, revision=revision, endpoint=endpoint())
    metadata = _call_hub(what, lambda: get_hf_file_metadata(url, endpoint=endpoint()))
    if not metadata.etag or not metadata.commit_hash or metadata.size is None:
        raise DownloadError(f"{what}: the hub did not say which version to fetch (no etag)")
    _checked_version(what, metadata.etag, metadata.commit_hash)
    return metadata


def _is_sha256(etag: str) -> bool:
    return is_hex_digest(etag, (64,))


def _fetch(
    repo: str, filename: str, revision: str, metadata: Any, *, reporter: ByteReporter, base: int
) -> HubFile:
    """Download one file (resuming its ``.part``) into the cache; ``reporter`` counts its
    bytes from ``base`` (the bytes of the files before it)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    from moviechat_desktop.engine.weights.http_download import http_download

    what = f"{repo}/{filename}"
    etag, commit = _checked_version(what, metadata.etag, metadata.commit_hash)
    repo_dir = repo_cache_dir(repo)
    blob = _inside(repo_dir, repo_dir / "blobs" / etag, what)
    pointer = repo_dir / "snapshots" / commit / _checked_name(what, filename)
    pointer = _inside(repo_dir, pointer, what)
    if not blob.is_file():

        def forward(event: Any) -> None:  # the file's progress → the whole transfer's
            if event.phase == "download":
                reporter.set(base + event.done, file=filename)
            else:  # re-reading a partial file before resuming it
                reporter.callback(event)

        url = hf_hub_url(repo, filename, revision=commit, endpoint=endpoint())
        http_download(
            url,
            blob,
            expected_size=metadata.size,
            sha256=etag if _is_sha256(etag) else None,
            part=reporter.part,
            progress=forward,
            cancel=reporter.cancel,
            headers=build_hf_headers(),
        )
    _link(blob, pointer, repo_dir)
    _remember_revision(repo_dir, revision, commit)
    reporter.set(base + metadata.size, file=filename)
    return HubFile(path=pointer, commit=commit, etag=etag, size=pointer.stat().st_size)


def _link(blob: Path, pointer: Path, repo_dir: Path) -> None:
    """``snapshots/<commit>/<name>`` → ``blobs/<etag>`` (relative, as huggingface_hub does)."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer = _inside(repo_dir, pointer, pointer.name)  # again, now its folders exist
    if pointer.is_symlink() or pointer.exists():
        if pointer.resolve() == blob.resolve():
            return
        pointer.unlink()
    try:
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    except OSError:  # no symlinks here (some Windows setups): the file itself, like hf does
        blob.replace(pointer)


def _remember_revision(repo_dir: Path, revision: str, commit: str) -> None:
    if revision == commit:
        return
    ref = _inside(repo_dir, repo_dir / "refs" / _checked_name(revision, revision), revision)
    ref.parent.mkdir(parents=True, exist_ok=True)
    if not ref.is_file() or ref.read_text("utf-8").strip() != commit:
        atomic_write(ref, commit.encode())


def plan_snapshot(source: Source) -> tuple[str, list[PlannedFile]]:
    """Ask the hub which files of the repo match ``allow_patterns`` (dry run, no download).

    When ``prefer_safetensors`` is set and the repo has ``.safetensors`` weights, the ``.bin``
    weights are left out so the model is fetched once, not twice.
    """
    from huggingface_hub import snapshot_download

    infos = _call_hub(
        source.repo,
        lambda: snapshot_download(
            repo_id=source.repo,
            revision=source.revision,
            allow_patterns=list(source.allow_patterns) or None,
            cache_dir=str(hub_cache_dir()),
            endpoint=endpoint(),
            dry_run=True,
            tqdm_class=_SilentBar,
        ),
    )
    files = [
        PlannedFile(
            _checked_name(source.repo, i.filename), int(i.file_size or 0), bool(i.is_cached)
        )
        for i in infos
    ]
    if source.prefer_safetensors and any(f.name.endswith(".safetensors") for f in files):
        files = [f for f in files if not any(fnmatch(f.name, pat) for pat in _BIN_WEIGHTS)]
    if not files:
        raise DownloadError(f"{source.repo} has no files matching the manifest's patterns")
    commit = infos[0].commit_hash if infos else ""
    if not is_hex_digest(commit, (40,)):
        raise DownloadError(f"{source.repo}: the server sent an invalid commit {commit[:80]!r}")
    return commit, files


def download_snapshot(
    source: Source,
    files: list[PlannedFile],
    *,
    part: str,
    progress: Callable[..., None],
    cancel: CancelToken,
) -> Path:
    """Fetch the planned files into the hub cache, one after the other (each resumable);
    return the snapshot folder."""
    cached = sum(f.size for f in files if f.cached)
    total = sum(f.size for f in files)
    reporter = ByteReporter(
        part, progress, cancel, total, phase="download", file=source.repo, done=cached
    )
    reporter.set(cached)
    base = cached
    for planned in files:
        cancel.raise_if_cancelled()
        if planned.cached:
            continue
        metadata = _file_metadata(source.repo, planned.name, source.revision)
        _fetch(source.repo, planned.name, source.revision, metadata, reporter=reporter, base=base)
        base += planned.size
    reporter.set(total)
    folder = cached_snapshot(source)
    if folder is None:
        raise DownloadError(f"{source.repo}: the downloaded files are not in the hub cache")
    return folder


def cached_file(source: Source) -> Path | None:
    """The cached copy of a hub file, from the cache layout alone (no network, no import)."""
    folder = cached_snapshot(source)
    if folder is None:
        return None
    path = folder / source.filename
    return path if path.is_file() else None


def cached_snapshot(source: Source) -> Path | None:
    """The cached snapshot folder of ``source.revision``, without any network access."""
    repo_dir = repo_cache_dir(source.repo)
    revision = source.revision
    ref = repo_dir / "refs" / revision
    if ref.is_file():
        revision = ref.read_text("utf-8", errors="replace").strip()
        if not is_hex_digest(revision, (40,)):
            log.warning("ignoring %s: not a commit hash", ref)
            return None
    try:
        folder = _inside(repo_dir, repo_dir / "snapshots" / _checked_name("", revision), "")
    except DownloadError:
        return None
    return folder if folder.is_dir() else None


def partial_bytes(source: Source) -> int:
    """Bytes of unfinished downloads of this repo: our ``*.part`` blobs (resumed next time)
    and huggingface_hub's ``*.incomplete`` ones."""
    blobs = repo_cache_dir(source.repo) / "blobs"
    if not blobs.is_dir():
        return 0
    partial = [*blobs.glob("*.part"), *blobs.glob("*.incomplete")]
    return sum(p.stat().st_size for p in partial if p.is_file())


def remove_cached(path: Path) -> None:
    """Delete a cached hub file: the snapshot entry and the blob it points at (only when
    that blob is in the hub cache: a link pointing elsewhere loses only itself)."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    cache = hub_cache_dir().resolve()
    if blob != path and blob.parent.name == "blobs" and blob.is_relative_to(cache):
        blob.unlink(missing_ok=True)
    log.info("removed %s from the hub cache", path)
