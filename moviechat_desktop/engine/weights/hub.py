"""Hugging Face hub files through ``huggingface_hub`` (hub cache, HF_ENDPOINT, login token).

Downloads go through ``hf_hub_download`` / ``snapshot_download`` into the standard hub cache
(``$HF_HUB_CACHE`` or ``$HF_HOME/hub``), so other tools share them. The endpoint and cache dir
are read from the environment at call time; the token is huggingface_hub's own (``HF_TOKEN`` or
``hf auth login``) and is never passed through or logged here.

Progress and cancel ride on huggingface_hub's ``tqdm_class`` hook: our bar class reports bytes
and raises ``Cancelled`` from ``update`` once the token is cancelled, which aborts the transfer
within one chunk (huggingface_hub's chunk size is lowered to 1 MiB for that). huggingface_hub
2.4 resumes a dropped connection inside one call (a Range request from the last chunk it
wrote) but deletes its temporary file when a call fails or is cancelled, so a cancelled hub
file starts again from zero next time (the plain-URL parts resume across runs).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, TypeVar

from moviechat_desktop.engine.errors import DownloadError, MovieChatError
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.weights.manifest import Source
from moviechat_desktop.engine.weights.store import hub_cache_dir
from moviechat_desktop.engine.weights.transfer import ByteReporter

log = logging.getLogger(__name__)

T = TypeVar("T")
CANCEL_CHUNK = 1024 * 1024
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


def etag_of(path: Path) -> str | None:
    """The hub cache names blobs by etag: read it from the symlink target."""
    if not path.is_symlink():
        return None
    name = path.resolve().name
    return name if len(name) in (40, 64) and all(c in "0123456789abcdef" for c in name) else None


class _BarSink:
    """Collects the byte counts of the tqdm-like bars huggingface_hub creates.

    huggingface_hub may drive several byte bars for one transfer (``snapshot_download`` keeps a
    "transfer" and a "reconstruction" bar over the same bytes); the progress is the largest of
    them, so nothing is counted twice whatever the bars are called.
    """

    def __init__(self, reporter: ByteReporter | None) -> None:
        self.reporter = reporter  # None: a silent sink
        self.base = reporter.done if reporter else 0
        self._bars: list[Any] = []
        self._lock = threading.Lock()

    def register(self, bar: Any) -> None:
        with self._lock:
            self._bars.append(bar)

    def changed(self) -> None:
        if self.reporter is None:
            return
        self.reporter.cancel.raise_if_cancelled()
        with self._lock:
            done = max((b.n for b in self._bars if b.counts_bytes), default=0)
        self.reporter.set(self.base + max(0, done))

    def bar_class(self) -> type:
        sink = self

        class _Bar:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self.desc = kwargs.get("desc") or ""
                self.total = kwargs.get("total")
                self.n = int(kwargs.get("initial") or 0)
                self.counts_bytes = kwargs.get("unit") == "B"
                self.format_dict: dict[str, Any] = {"rate": None}
                sink.register(self)

            def update(self, n: float | None = 1) -> None:
                self.n += int(n or 0)
                if self.counts_bytes:
                    sink.changed()

            def __enter__(self) -> _Bar:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def __iter__(self):  # pragma: no cover - huggingface_hub does not iterate it
                return iter(())

            def _noop(self, *args: Any, **kwargs: Any) -> None:
                return None

            close = refresh = reset = clear = display = _noop
            set_description = set_description_str = set_postfix = set_postfix_str = _noop

        return _Bar


def _call_hub(what: str, fn: Callable[[], T]) -> T:
    """Run a huggingface_hub call; turn its failures into one-line ``DownloadError``s."""
    import huggingface_hub.constants as hf_constants

    # Progress (and so cancel) reaches us once per chunk read from the socket; 10 MB by
    # default, which is ten seconds or more on a slow line. 1 MiB chunks cost nothing.
    hf_constants.DOWNLOAD_CHUNK_SIZE = min(hf_constants.DOWNLOAD_CHUNK_SIZE, CANCEL_CHUNK)
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

        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
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
    from huggingface_hub import hf_hub_download

    what = f"{source.repo}/{source.filename}"

    def fetch(dry_run: bool, tqdm_class: type | None = None) -> Any:
        return hf_hub_download(
            repo_id=source.repo,
            filename=source.filename,
            revision=source.revision,
            cache_dir=str(hub_cache_dir()),
            endpoint=endpoint(),
            tqdm_class=tqdm_class,
            dry_run=dry_run,
        )

    info = _call_hub(what, lambda: fetch(True, _BarSink(None).bar_class()))
    reporter = ByteReporter(
        part, progress, cancel, info.file_size, phase="download", file=source.filename
    )
    reporter.set(0)
    sink = _BarSink(reporter)
    path = Path(_call_hub(what, lambda: fetch(False, sink.bar_class())))
    size = path.stat().st_size
    reporter.set(size)
    return HubFile(path=path, commit=info.commit_hash, etag=etag_of(path), size=size)


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
            tqdm_class=_BarSink(None).bar_class(),
        ),
    )
    files = [PlannedFile(i.filename, int(i.file_size or 0), bool(i.is_cached)) for i in infos]
    if source.prefer_safetensors and any(f.name.endswith(".safetensors") for f in files):
        files = [f for f in files if not any(fnmatch(f.name, pat) for pat in _BIN_WEIGHTS)]
    if not files:
        raise DownloadError(f"{source.repo} has no files matching the manifest's patterns")
    commit = infos[0].commit_hash if infos else ""
    return commit, files


def download_snapshot(
    source: Source,
    files: list[PlannedFile],
    *,
    part: str,
    progress: Callable[..., None],
    cancel: CancelToken,
) -> Path:
    """Fetch the planned files into the hub cache; return the snapshot folder."""
    from huggingface_hub import snapshot_download

    cached = sum(f.size for f in files if f.cached)
    total = sum(f.size for f in files)
    reporter = ByteReporter(
        part, progress, cancel, total, phase="download", file=source.repo, done=cached
    )
    reporter.set(cached)
    sink = _BarSink(reporter)
    folder = _call_hub(
        source.repo,
        lambda: snapshot_download(
            repo_id=source.repo,
            revision=source.revision,
            allow_patterns=[f.name for f in files],
            cache_dir=str(hub_cache_dir()),
            endpoint=endpoint(),
            tqdm_class=sink.bar_class(),
            max_workers=4,
        ),
    )
    reporter.set(total)
    return Path(folder)


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
        revision = ref.read_text("utf-8").strip()
    folder = repo_dir / "snapshots" / revision
    return folder if folder.is_dir() else None


def partial_bytes(source: Source) -> int:
    """Bytes of unfinished hub downloads of this repo (``*.incomplete`` blobs)."""
    blobs = repo_cache_dir(source.repo) / "blobs"
    if not blobs.is_dir():
        return 0
    return sum(p.stat().st_size for p in blobs.glob("*.incomplete") if p.is_file())


def remove_cached(path: Path) -> None:
    """Delete a cached hub file: the snapshot entry and the blob it points at."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path and blob.parent.name == "blobs":
        blob.unlink(missing_ok=True)
    log.info("removed %s from the hub cache", path)
