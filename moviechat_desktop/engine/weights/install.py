"""Downloading the parts that are missing: fetch, verify, convert once, record.

For each part: plain URLs go through the resumable downloader into the user cache dir, hub
files through huggingface_hub into the hub cache. Every file is verified (size; sha256 from
the manifest, or the hub's etag) and ``.pth`` checkpoints are checked for the part's keys and
converted to ``.safetensors`` in the user cache dir. ``installed.json`` records what was
installed with the hashes observed, which ``weights verify`` checks against later.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.errors import (
    CheckpointMismatch,
    DownloadError,
    UnsafeCheckpoint,
    WeightsCorrupt,
)
from moviechat_desktop.engine.model.checkpoint_io import read_checkpoint_contents
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.weights import hub
from moviechat_desktop.engine.weights.convert import save_safetensors, skipped_metadata
from moviechat_desktop.engine.weights.http_download import hash_file, http_download
from moviechat_desktop.engine.weights.manifest import (
    Manifest,
    WeightPart,
    format_bytes,
    load_manifest,
)
from moviechat_desktop.engine.weights.resolve import offline_message
from moviechat_desktop.engine.weights.status import PartStatus, converted_path, part_status
from moviechat_desktop.engine.weights.store import (
    destination_dir,
    free_bytes,
    installed_record_path,
    is_offline,
    set_entry,
    weights_dir,
)
from moviechat_desktop.engine.weights.transfer import (
    ByteReporter,
    TransferCallback,
    no_transfer_progress,
)
from moviechat_desktop.engine.weights.verify import (
    check_directory,
    check_etag,
    check_keys,
    state_shapes,
)

log = logging.getLogger(__name__)


def _device_of(path: Path) -> int:
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return os.stat(probe).st_dev


def check_disk_space(parts: Sequence[WeightPart]) -> None:
    """Refuse to start when a destination disk cannot hold what is about to be written.

    ``.pth`` parts need room for the download and its safetensors conversion at the same time.
    """
    need: dict[int, tuple[Path, int]] = {}
    for part in parts:
        writes = [(destination_dir(part.destination), part.size)]
        if not part.is_dir:
            writes.append((weights_dir(), part.size))
        for folder, size in writes:
            dev = _device_of(folder)
            previous = need.get(dev, (folder, 0))[1]
            need[dev] = (folder, previous + size)
    for folder, size in need.values():
        free = free_bytes(folder)
        if free < size:
            raise DownloadError(
                f"not enough disk space in {folder}: the weights need about {format_bytes(size)}, "
                f"{format_bytes(free)} is free"
            )


def download_weights(
    part_ids: Sequence[str] | None = None,
    *,
    manifest: Manifest | None = None,
    progress: TransferCallback = no_transfer_progress,
    cancel: CancelToken | None = None,
) -> list[PartStatus]:
    """Download, verify, convert and record every part that is not ready; return the statuses.

    Parts already present as ``.pth`` are converted without any network access. Raises
    ``DownloadError`` (offline mode, network, disk space), ``WeightsCorrupt`` (a file failed
    verification and was deleted), ``CheckpointMismatch``/``UnsafeCheckpoint`` (the source
    served something that is not the part) or ``Cancelled`` (partial downloads are kept).
    """
    manifest = manifest or load_manifest()
    cancel = cancel or CancelToken()
    chosen = [manifest.part(i) for i in part_ids] if part_ids else list(manifest.parts)
    states = {p.id: part_status(p).state for p in chosen}
    todo = [p for p in chosen if states[p.id] != "ready"]
    need_network = [p for p in todo if states[p.id] != "unconverted"]
    if need_network and is_offline():
        raise DownloadError(offline_message(need_network))
    check_disk_space(need_network)
    for part in todo:
        cancel.raise_if_cancelled()
        install_part(part, progress=progress, cancel=cancel)
    return [part_status(p) for p in chosen]


def install_part(part: WeightPart, *, progress: TransferCallback, cancel: CancelToken) -> None:
    """Bring one part to "ready" (download if needed, verify, convert, record)."""
    status = part_status(part)
    if status.state == "ready":
        return
    log.info("installing %s (%s)", part.id, part.source.describe())
    if part.source.type == "hf_snapshot":
        _install_snapshot(part, progress, cancel)
    elif part.source.type == "hf_file":
        if (
            status.state == "unconverted"
            and status.path is not None
            and status.origin == "hub cache"
        ):
            cached = hub.HubFile(
                status.path, None, hub.etag_of(status.path), status.path.stat().st_size
            )
        else:
            cached = hub.download_file(part.source, part=part.id, progress=progress, cancel=cancel)
        verifier = ByteReporter(
            part.id, progress, cancel, cached.size, phase="verify", file=part.filename
        )
        try:
            check_etag(cached.path, cached.etag, verifier)
            if part.sha256 and part.sha256 != cached.etag:
                check_etag(cached.path, part.sha256)
        except WeightsCorrupt as err:
            hub.remove_cached(cached.path)
            raise WeightsCorrupt(f"{err}; it was deleted — download it again") from err
        origin = {
            "repo": part.source.repo,
            "revision": part.source.revision,
            "commit": cached.commit,
            "etag": cached.etag,
            "size": cached.size,
        }
        finalize_file(part, cached.path, origin, cancel, progress, owned=False)
    else:
        pth = weights_dir() / part.filename
        if status.state == "unconverted" and status.path == pth:
            origin = {"url": part.source.url, "size": pth.stat().st_size}
        else:
            got = http_download(
                part.source.url,
                pth,
                expected_size=part.size if part.size_exact else None,
                sha256=part.sha256,
                part=part.id,
                progress=progress,
                cancel=cancel,
            )
            origin = {"url": part.source.url, "size": got.size, "sha256": got.sha256}
        finalize_file(part, pth, origin, cancel, progress, owned=True)


def finalize_file(
    part: WeightPart,
    src: Path,
    origin: dict[str, Any],
    cancel: CancelToken,
    progress: TransferCallback = no_transfer_progress,
    *,
    owned: bool,
) -> Path:
    """Check a fetched ``.pth``/``.safetensors`` for the part's keys, convert it, record it.

    ``owned`` files (our own downloads) are deleted after conversion, and also when they turn
    out not to be the part, so the next download starts clean; hub-cache files are removed from
    the hub cache in that case.
    """
    reporter = ByteReporter(part.id, progress, cancel, 1, phase="convert", file=src.name)
    reporter.set(0)
    dest = converted_path(part)
    try:
        contents = read_checkpoint_contents(src)
        state = contents.tensors
        check_keys(part, state_shapes(state), src.name)
    except (UnsafeCheckpoint, CheckpointMismatch) as err:
        if owned:
            src.unlink(missing_ok=True)
        else:
            hub.remove_cached(src)
        raise type(err)(f"{err} (from {part.source.describe()}; the file was deleted)") from err
    cancel.raise_if_cancelled()
    if src.suffix != ".safetensors" or src != dest:
        metadata = {"converted_from": src.name, "part": part.id, **skipped_metadata(contents)}
        save_safetensors(state, dest, metadata)
    del state, contents
    reporter.set(1)
    size = dest.stat().st_size
    digest = hash_file(
        dest, ByteReporter(part.id, progress, cancel, size, phase="verify", file=dest.name)
    )
    set_entry(
        installed_record_path(),
        part.id,
        {"path": str(dest), "size": size, "sha256": digest, "converted": True, "original": origin},
    )
    if owned and src != dest:
        src.unlink(missing_ok=True)
    ByteReporter(part.id, progress, cancel, size, phase="done", file=dest.name).set(size)
    return dest


def _install_snapshot(part: WeightPart, progress: TransferCallback, cancel: CancelToken) -> None:
    commit, planned = hub.plan_snapshot(part.source)
    folder = hub.download_snapshot(
        part.source, planned, part=part.id, progress=progress, cancel=cancel
    )
    total = sum(f.size for f in planned)
    verifier = ByteReporter(part.id, progress, cancel, total, phase="verify", file=part.source.repo)
    verify_snapshot_files(folder, [f.name for f in planned], verifier)
    check_directory(part, folder)
    files = {f.name: (folder / f.name).stat().st_size for f in planned}
    set_entry(
        installed_record_path(),
        part.id,
        {
            "path": str(folder),
            "commit": commit,
            "files": files,
            "original": {"repo": part.source.repo, "revision": part.source.revision},
        },
    )
    ByteReporter(part.id, progress, cancel, total, phase="done", file=part.source.repo).set(total)


def verify_snapshot_files(folder: Path, names: Sequence[str], reporter: ByteReporter) -> None:
    """Hash every file of a hub snapshot against its etag; delete and raise on a mismatch."""
    for name in names:
        path = folder / name
        if not path.exists():
            continue
        etag = hub.etag_of(path)
        try:
            before = reporter.done
            check_etag(path, etag, reporter)
            reporter.set(before + path.stat().st_size, file=name)
        except WeightsCorrupt as err:
            hub.remove_cached(path)
            raise WeightsCorrupt(f"{err}; it was deleted — download again") from err
