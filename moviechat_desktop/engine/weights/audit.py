"""``weights verify``: re-check every installed part in depth.

Files are re-hashed against the sha256 recorded when they were installed (or the hub's etag),
safetensors headers must account for every byte, and the part's keys and shapes must be there.
A part that fails is never used again: its record is dropped and the app's own copy deleted
(a hub-cache file is removed from the hub cache; a user's imported file is left alone, only
the app stops using it). ``.pth`` files found on the way are converted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from moviechat_desktop.engine.errors import (
    CheckpointMismatch,
    UnsafeCheckpoint,
    WeightsCorrupt,
    WeightsMissing,
)
from moviechat_desktop.engine.model.safetensors_header import read_header
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.weights import hub
from moviechat_desktop.engine.weights.convert import SKIPPED_KEY
from moviechat_desktop.engine.weights.http_download import hash_file
from moviechat_desktop.engine.weights.importer import forget_imports
from moviechat_desktop.engine.weights.install import install_part, verify_snapshot_files
from moviechat_desktop.engine.weights.manifest import Manifest, WeightPart, load_manifest
from moviechat_desktop.engine.weights.status import PartStatus, part_status
from moviechat_desktop.engine.weights.store import (
    get_entry,
    imports_record_path,
    installed_record_path,
    set_entry,
    weights_dir,
)
from moviechat_desktop.engine.weights.transfer import (
    ByteReporter,
    TransferCallback,
    no_transfer_progress,
)
from moviechat_desktop.engine.weights.verify import check_directory, check_keys, safetensors_shapes

log = logging.getLogger(__name__)
_FAILURES = (WeightsCorrupt, WeightsMissing, CheckpointMismatch, UnsafeCheckpoint)


@dataclass(frozen=True)
class VerifyResult:
    id: str
    title: str
    ok: bool
    state: str  # the part's state after the check
    path: Path | None
    detail: str
    checked: bool = True  # False: nothing was installed to check

    @property
    def failed(self) -> bool:
        """Present, checked, and found bad (it is no longer used)."""
        return self.checked and not self.ok

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "ok": self.ok,
            "checked": self.checked,
            "state": self.state,
            "path": str(self.path) if self.path else None,
            "detail": self.detail,
        }


def verify_weights(
    part_ids: Sequence[str] | None = None,
    *,
    manifest: Manifest | None = None,
    progress: TransferCallback = no_transfer_progress,
    cancel: CancelToken | None = None,
) -> list[VerifyResult]:
    """Check each part in depth; a part that fails is taken out of use (see module doc)."""
    manifest = manifest or load_manifest()
    cancel = cancel or CancelToken()
    chosen = [manifest.part(i) for i in part_ids] if part_ids else list(manifest.parts)
    results = []
    for part in chosen:
        cancel.raise_if_cancelled()
        status = part_status(part)
        if status.state in ("missing", "partial"):
            detail = status.detail or "not installed"
            results.append(_result(part, False, status, detail, checked=False))
            continue
        try:
            if status.state == "invalid":
                raise WeightsCorrupt(status.detail)
            note = _check(part, status, progress, cancel)
        except _FAILURES as err:
            _take_out_of_use(part, status)
            results.append(_result(part, False, part_status(part), str(err)))
            continue
        after = part_status(part)
        detail = "ok" + (f"; {note}" if note else "") + _skipped_note(after.path)
        results.append(_result(part, True, after, detail))
    return results


def _skipped_note(path: Path | None) -> str:
    """What reading the original ``.pth`` skipped (recorded in the converted file's metadata)."""
    if path is None or not path.is_file() or path.suffix != ".safetensors":
        return ""
    try:
        metadata = read_header(path).metadata
        raw = metadata.get(SKIPPED_KEY)
        listed = [str(x) for x in json.loads(raw)] if raw else []
    except (OSError, ValueError, TypeError, WeightsCorrupt):
        return ""
    if not listed:
        return ""
    source = metadata.get("converted_from", "the .pth")
    return f"; read from {source}, skipped without running: {'; '.join(listed)}"


def _result(
    part: WeightPart, ok: bool, status: PartStatus, detail: str, *, checked: bool = True
) -> VerifyResult:
    return VerifyResult(part.id, part.title, ok, status.state, status.path, detail, checked)


def _check(
    part: WeightPart, status: PartStatus, progress: TransferCallback, cancel: CancelToken
) -> str | None:
    """Raise one of ``_FAILURES`` if the part is bad; return a note on what was checked."""
    assert status.path is not None
    path = status.path
    if status.state == "unconverted":  # a .pth: converting it checks its keys
        install_part(part, progress=progress, cancel=cancel)
        return None
    if part.is_dir:
        check_directory(part, path)
        if status.origin != "imported":
            names = [p.name for p in sorted(path.iterdir()) if p.is_file()]
            total = sum((path / n).stat().st_size for n in names)
            verify_snapshot_files(
                path,
                names,
                ByteReporter(part.id, progress, cancel, total, phase="verify", file=path.name),
            )
        # the decoder's tokenizer only (a speech model's tokenizer.json is Whisper's own)
        return _tokenizer_note(path) if part.field == "llama_dir" else None
    check_keys(part, safetensors_shapes(path), path.name)
    record = imports_record_path() if status.origin == "imported" else installed_record_path()
    entry = get_entry(record, part.id) or {}
    size = path.stat().st_size
    digest = hash_file(
        path, ByteReporter(part.id, progress, cancel, size, phase="verify", file=path.name)
    )
    expected = entry.get("sha256") if entry.get("path") == str(path) else None
    if expected and digest != expected:
        raise WeightsCorrupt(
            f"{path.name} failed verification: sha256 is {digest}, {expected} was recorded "
            "when it was installed"
        )
    if not expected:  # found without a record: remember what it is now
        set_entry(
            record, part.id, {"path": str(path), "size": size, "sha256": digest, "converted": True}
        )
    return None


def _tokenizer_note(folder: Path) -> str:
    """``tokenizer_check.check_tokenizer`` on a decoder directory that ships a tokenizer
    (``CheckpointMismatch`` when it would split the prompt unlike the original)."""
    from moviechat_desktop.engine.model.tokenizer import TOKENIZER_FILES

    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return "no tokenizer files (the byte-level test tokenizer is used)"
    from moviechat_desktop.engine.model.tokenizer_check import check_tokenizer

    return check_tokenizer(folder)


def _take_out_of_use(part: WeightPart, status: PartStatus) -> None:
    path = status.path
    if status.origin == "imported":
        forget_imports([part.id])
        return
    set_entry(installed_record_path(), part.id, None)
    if path is None or not path.exists():
        return
    if status.origin == "hub cache" and not part.is_dir:
        hub.remove_cached(path)
    elif path.is_file() and weights_dir() in path.parents:
        path.unlink()
    log.warning("%s failed verification; %s is no longer used", part.id, path)
