"""Using weights the user already has ("Use local files…", ``weights import PATH``).

``PATH`` is one checkpoint file, a Hugging Face model directory, or a directory holding any of
them (the reference layout, LAVIS file names, converted ``.safetensors``…). Each file is matched
to a part by its name, else by the keys it holds; it is verified (exact size and sha256 when the
manifest knows them, the part's keys and shapes) and used in place. ``.pth`` files are converted
once to ``.safetensors`` in the user cache dir so that no later start unpickles them. The
choices are recorded in ``weights.json`` in the user config dir.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.errors import (
    CheckpointMismatch,
    UnsafeCheckpoint,
    WeightsCorrupt,
    WeightsMissing,
)
from moviechat_desktop.engine.file_checks import real_path, why_unusable
from moviechat_desktop.engine.model.checkpoint_io import read_checkpoint_contents
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.weights.convert import save_safetensors, skipped_metadata
from moviechat_desktop.engine.weights.http_download import hash_file
from moviechat_desktop.engine.weights.manifest import Manifest, WeightPart, load_manifest
from moviechat_desktop.engine.weights.status import PartStatus, part_status
from moviechat_desktop.engine.weights.store import imported_dir, imports_record_path, set_entry
from moviechat_desktop.engine.weights.transfer import (
    ByteReporter,
    TransferCallback,
    no_transfer_progress,
)
from moviechat_desktop.engine.weights.verify import (
    check_directory,
    check_keys,
    check_sha256,
    detect_part,
    safetensors_shapes,
    state_shapes,
)

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


@dataclass(frozen=True)
class ImportResult:
    imported: list[PartStatus] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # "name: why", for files not used


def _candidates(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise WeightsMissing(f"{path} {why_unusable(path) or 'is not a file or folder'}")
    if (path / "config.json").is_file():
        return [path]
    children = sorted(path.iterdir())
    return [c for c in children if c.is_file() and c.suffix in WEIGHT_SUFFIXES] + [
        c for c in children if c.is_dir() and (c / "config.json").is_file()
    ]


def _by_name(manifest: Manifest, candidate: Path) -> WeightPart | None:
    for part in manifest.parts:
        if part.is_dir != candidate.is_dir():
            continue
        if candidate.name == part.filename or candidate.stem == Path(part.filename).stem:
            return part
    return None


def _identify(manifest: Manifest, candidate: Path) -> tuple[WeightPart | None, Any, str]:
    """(part, state dict already read or None, why not) for one candidate."""
    if candidate.is_dir():
        dirs = [p for p in manifest.parts if p.is_dir]
        return (dirs[0] if len(dirs) == 1 else None), None, "no directory part in the manifest"
    state = None
    if candidate.suffix == ".safetensors":
        keys: Any = safetensors_shapes(candidate)
    else:
        state = read_checkpoint_contents(candidate)
        keys = state_shapes(state.tensors)
    part = detect_part(manifest, keys)
    return part, state, "" if part else "its keys match no part of the model"


def import_weights(
    path: str | Path,
    part_id: str | None = None,
    *,
    manifest: Manifest | None = None,
    progress: TransferCallback = no_transfer_progress,
    cancel: CancelToken | None = None,
) -> ImportResult:
    """Verify and record local weights at ``path``; return what was imported and ignored.

    With ``part_id``, ``path`` is that part (a file, or the model directory), or a folder in
    which the file for that part is looked for. Raises ``WeightsMissing`` (nothing usable
    found), ``CheckpointMismatch`` / ``WeightsCorrupt`` / ``UnsafeCheckpoint`` (a file that
    claims to be a part by its name, or the single file given, fails verification).
    """
    manifest = manifest or load_manifest()
    cancel = cancel or CancelToken()
    path = Path(real_path(path))  # (Path.resolve raises on a symbolic-link loop)
    wanted = manifest.part(part_id) if part_id else None
    if wanted is not None and (wanted.is_dir or path.is_file()):
        if why_unusable(path):
            raise WeightsMissing(f"{path} {why_unusable(path)}")
        return ImportResult(imported=[_import_one(wanted, path, None, progress, cancel)])
    chosen, ignored = _choose(manifest, path, cancel)
    if wanted is not None:  # a folder searched for one file part
        ignored += [
            f"{src.name}: not the {wanted.title}"
            for pid, (src, _) in chosen.items()
            if pid != wanted.id
        ]
        chosen = {pid: found for pid, found in chosen.items() if pid == wanted.id}
    imported = []
    for pid, (src, state) in chosen.items():
        try:
            imported.append(_import_one(manifest.part(pid), src, state, progress, cancel))
        except (UnsafeCheckpoint, CheckpointMismatch, WeightsCorrupt, WeightsMissing) as err:
            if src == path:  # the path given is itself the part: say exactly what is wrong
                raise
            ignored.append(f"{src.name}: {err}")  # a folder scan goes on with the other files
    if not imported:
        raise WeightsMissing(f"no usable model weights in {path} ({'; '.join(ignored) or 'empty'})")
    return ImportResult(imported=imported, ignored=ignored)


def _choose(
    manifest: Manifest, path: Path, cancel: CancelToken
) -> tuple[dict[str, tuple[Path, Any]], list[str]]:
    """Match every candidate under ``path`` to a part: {part id: (path, state read)}, ignored."""
    candidates = _candidates(path)
    single = len(candidates) == 1 and candidates[0] == path
    chosen: dict[str, tuple[Path, Any]] = {}
    ignored: list[str] = []
    for candidate in candidates:
        cancel.raise_if_cancelled()
        part = _by_name(manifest, candidate)
        state, why = None, ""
        if part is None:
            try:
                part, state, why = _identify(manifest, candidate)
            except (UnsafeCheckpoint, CheckpointMismatch, WeightsCorrupt) as err:
                if single:
                    raise
                part, why = None, str(err)
        if part is None:
            if single:
                ids = ", ".join(p.id for p in manifest.parts)
                raise CheckpointMismatch(
                    f"cannot tell which part {path.name} is ({why}); pass --part ({ids})"
                )
            ignored.append(f"{candidate.name}: {why}")
            continue
        previous = chosen.get(part.id)
        if previous is not None and previous[0].suffix == ".safetensors":
            ignored.append(f"{candidate.name}: {previous[0].name} is used for the {part.title}")
            continue
        if previous is not None:
            ignored.append(f"{previous[0].name}: {candidate.name} is used for the {part.title}")
        chosen[part.id] = (candidate, state)
    return chosen, ignored


def _import_one(
    part: WeightPart, src: Path, state: Any, progress: TransferCallback, cancel: CancelToken
) -> PartStatus:
    if part.is_dir != src.is_dir():
        kind = "a directory" if part.is_dir else "a file"
        raise CheckpointMismatch(f"the {part.title} is {kind}; {src} is not")
    if part.is_dir:
        weights = check_directory(part, src)
        entry: dict[str, Any] = {
            "path": str(src),
            "source_path": str(src),
            "files": {w.name: w.stat().st_size for w in weights},
        }
        set_entry(imports_record_path(), part.id, entry)
        log.info("imported %s from %s", part.id, src)
        return part_status(part)
    size = src.stat().st_size
    if part.size_exact and size != part.size:
        raise WeightsCorrupt(f"{src.name} is {size} bytes; the {part.title} is {part.size} bytes")
    if part.sha256:
        check_sha256(
            src,
            part.sha256,
            ByteReporter(part.id, progress, cancel, size, phase="verify", file=src.name),
        )
    if src.suffix == ".safetensors":
        check_keys(part, safetensors_shapes(src), src.name)
        used = src
    else:
        if state is None:
            state = read_checkpoint_contents(src)
        check_keys(part, state_shapes(state.tensors), src.name)
        ByteReporter(part.id, progress, cancel, 1, phase="convert", file=src.name).set(0)
        used = save_safetensors(
            state.tensors,
            imported_dir() / f"{part.id}.safetensors",
            {"converted_from": src.name, "part": part.id, **skipped_metadata(state)},
        )
    used_size = used.stat().st_size
    digest = hash_file(
        used, ByteReporter(part.id, progress, cancel, used_size, phase="verify", file=used.name)
    )
    entry = {
        "path": str(used),
        "source_path": str(src),
        "size": used_size,
        "sha256": digest,
        "source_size": size,
    }
    set_entry(imports_record_path(), part.id, entry)
    log.info("imported %s from %s", part.id, src)
    return part_status(part)


def forget_imports(part_ids: Sequence[str]) -> None:
    """Stop using imported files for these parts (the user's files are left alone)."""
    for pid in part_ids:
        converted = imported_dir() / f"{pid}.safetensors"
        converted.unlink(missing_ok=True)
        set_entry(imports_record_path(), pid, None)
