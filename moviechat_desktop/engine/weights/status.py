"""What is installed: finding each part on disk without network and without reading weights.

Order of preference for a part: the local file/directory the user imported, then what the app
downloaded (recorded in ``installed.json``), then files with the final names that are not
recorded (a final name is only ever written after verification), then the hub cache. Only
cheap checks happen here (existence, recorded size, safetensors headers, a model directory's
config and shard list); ``weights verify`` re-hashes everything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from moviechat_desktop.engine.errors import CheckpointMismatch, WeightsCorrupt, WeightsMissing
from moviechat_desktop.engine.weights import hub
from moviechat_desktop.engine.weights.http_download import part_path_for
from moviechat_desktop.engine.weights.manifest import Manifest, WeightPart
from moviechat_desktop.engine.weights.store import (
    destination_dir,
    get_entry,
    imports_record_path,
    installed_record_path,
    weights_dir,
)
from moviechat_desktop.engine.weights.verify import check_directory, safetensors_shapes

log = logging.getLogger(__name__)

# ready: usable as is; unconverted: usable, but a .pth (download/verify converts it);
# partial: an interrupted download is waiting to resume; missing; invalid: present but failed
# a check (resolve refuses it; verify or download again).
STATES = ("ready", "unconverted", "partial", "missing", "invalid")


@dataclass(frozen=True)
class PartStatus:
    id: str
    field: str
    title: str
    state: str
    size: int  # manifest size (an estimate unless size_exact)
    size_exact: bool
    destination: Path  # where a download puts it
    source: str  # where a download fetches it from
    path: Path | None = None  # what the model would load
    origin: str = ""  # "imported" | "downloaded" | "hub cache" | ""
    partial_bytes: int = 0
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.state in ("ready", "unconverted")

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "field": self.field,
            "title": self.title,
            "state": self.state,
            "size": self.size,
            "size_exact": self.size_exact,
            "destination": str(self.destination),
            "source": self.source,
            "path": str(self.path) if self.path else None,
            "origin": self.origin,
            "partial_bytes": self.partial_bytes,
            "detail": self.detail,
        }


def converted_name(filename: str) -> str:
    """``eva_vit_g.pth`` → ``eva_vit_g.safetensors`` (here, not in ``convert``: this module and
    the Weights dialog that reads it stay clear of the checkpoint reader)."""
    return Path(filename).stem + ".safetensors"


def converted_path(part: WeightPart) -> Path:
    """Where the app keeps the safetensors conversion of a downloaded file part."""
    return weights_dir() / converted_name(part.filename)


def _status(part: WeightPart, state: str, **kw: object) -> PartStatus:
    return PartStatus(
        id=part.id,
        field=part.field,
        title=part.title,
        state=state,
        size=part.size,
        size_exact=part.size_exact,
        destination=destination_dir(part.destination),
        source=part.source.describe(),
        **kw,  # type: ignore[arg-type]
    )


def _cheap_check(part: WeightPart, path: Path, recorded_size: int | None) -> Exception | None:
    """None when ``path`` looks intact, else the error that says why not."""
    try:
        if part.is_dir:
            check_directory(part, path)
        elif recorded_size is not None and path.stat().st_size != recorded_size:
            size = path.stat().st_size
            return WeightsCorrupt(f"{path.name} is {size} bytes, {recorded_size} were recorded")
        elif path.suffix == ".safetensors":
            safetensors_shapes(path)
    except (WeightsMissing, WeightsCorrupt, CheckpointMismatch, OSError) as err:
        return err
    return None


def _found(part: WeightPart, path: Path, origin: str, recorded_size: int | None) -> PartStatus:
    problem = _cheap_check(part, path, recorded_size)
    if isinstance(problem, WeightsMissing):  # e.g. a model directory with shards still to come
        return _status(
            part,
            "partial",
            path=path,
            origin=origin,
            detail=str(problem),
            partial_bytes=_partial_bytes(part),
        )
    if problem is not None:
        return _status(part, "invalid", path=path, origin=origin, detail=str(problem))
    state = "ready" if part.is_dir or path.suffix == ".safetensors" else "unconverted"
    return _status(part, state, path=path, origin=origin)


def _partial_bytes(part: WeightPart) -> int:
    if part.source.type == "url":
        part_file = part_path_for(weights_dir() / part.filename)
        return part_file.stat().st_size if part_file.is_file() else 0
    return hub.partial_bytes(part.source)


def part_status(part: WeightPart) -> PartStatus:
    """Where ``part`` is on this machine, if anywhere (no network, no weights read)."""
    records = ((imports_record_path(), "imported"), (installed_record_path(), "downloaded"))
    for record, origin in records:
        entry = get_entry(record, part.id)
        if entry is None or not entry.get("path"):
            continue
        path = Path(entry["path"])
        if path.exists():
            return _found(part, path, origin, None if part.is_dir else entry.get("size"))
        log.info("%s: the %s copy %s is gone", part.id, origin, path)
    candidates: list[tuple[Path | None, str]] = []  # the first that exists wins
    if not part.is_dir:
        candidates.append((converted_path(part), "downloaded"))
    if part.source.type == "url":
        candidates.append((weights_dir() / part.filename, "downloaded"))
    elif part.source.type == "hf_file":
        candidates.append((hub.cached_file(part.source), "hub cache"))
    else:
        candidates.append((hub.cached_snapshot(part.source), "hub cache"))
    for candidate, origin in candidates:
        if candidate is not None and candidate.exists():
            return _found(part, candidate, origin, None)
    partial = _partial_bytes(part)
    return _status(part, "partial" if partial else "missing", partial_bytes=partial)


def weights_status(manifest: Manifest | None = None) -> list[PartStatus]:
    """The status of every part of the manifest (the shipped one by default)."""
    from moviechat_desktop.engine.weights.manifest import load_manifest

    manifest = manifest or load_manifest()
    return [part_status(part) for part in manifest.parts]
