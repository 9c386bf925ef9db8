"""The weights manifest: what the real model is made of and where each part comes from.

The shipped manifest is ``configs/weights_manifest.json`` (read through
``importlib.resources``, never relative to the working directory). ``$MOVIECHAT_WEIGHTS_MANIFEST``
points at another file with the same layout (tests, mirrors, a different model).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.errors import MovieChatError

MANIFEST_ENV = "MOVIECHAT_WEIGHTS_MANIFEST"
MODEL_PATH_FIELDS = ("eva_vit", "blip2_qformer", "videollama", "llama_dir")
OPTIONAL_FIELDS = ("whisper",)  # parts the model runs without (speech recognition)
SOURCE_TYPES = ("url", "hf_file", "hf_snapshot")
DESTINATIONS = ("user_cache", "hf_cache")


@dataclass(frozen=True)
class Source:
    """Where a part is fetched from.

    ``type`` is ``"url"`` (a plain HTTPS file, downloaded with Range/resume), ``"hf_file"`` (one
    file of a Hugging Face repo) or ``"hf_snapshot"`` (the files of a repo matching
    ``allow_patterns``).
    """

    type: str
    url: str = ""
    repo: str = ""
    filename: str = ""
    revision: str = "main"
    allow_patterns: tuple[str, ...] = ()
    prefer_safetensors: bool = True

    def describe(self) -> str:
        if self.type == "url":
            return self.url
        if self.type == "hf_file":
            return f"huggingface.co/{self.repo} ({self.filename}, {self.revision})"
        return f"huggingface.co/{self.repo} ({self.revision})"


@dataclass(frozen=True)
class WeightPart:
    """One part of the model: a checkpoint file or a Hugging Face model directory."""

    id: str  # stable identifier used in the CLI, the records and the dialog
    field: str  # the ModelPaths field it fills
    title: str  # human-readable name
    kind: str  # "file" or "directory"
    filename: str  # file name (file parts) or directory name (directory parts)
    source: Source
    destination: str  # "user_cache" (platformdirs cache) or "hf_cache" (HF_HOME hub cache)
    size: int  # bytes; an estimate unless size_exact
    size_exact: bool = False
    size_note: str = ""
    sha256: str | None = None  # lower-case hex, or None when unknown
    license: str = ""
    expect_keys: dict[str, tuple[int, ...] | None] = dataclasses.field(default_factory=dict)
    expect_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    required_files: tuple[str, ...] = ()
    required_any: tuple[tuple[str, ...], ...] = ()
    # a directory part whose weights are these files, not transformers weights (CTranslate2)
    weight_files: tuple[str, ...] = ()

    @property
    def is_dir(self) -> bool:
        return self.kind == "directory"

    @property
    def size_label(self) -> str:
        return ("" if self.size_exact else "~") + format_bytes(self.size)


@dataclass(frozen=True)
class Manifest:
    parts: tuple[WeightPart, ...]
    model_config: Path | None = None  # a tiny_config.json-style file; None = real dimensions
    origin: str = "configs/weights_manifest.json"
    optional: tuple[WeightPart, ...] = ()  # not part of the model; downloaded when asked for

    def part(self, part_id: str) -> WeightPart:
        for part in self.parts + self.optional:
            if part.id == part_id:
                return part
        known = ", ".join(p.id for p in self.parts + self.optional)
        raise MovieChatError(f"unknown weights part {part_id!r} (known: {known})")

    @property
    def total_size(self) -> int:
        return sum(p.size for p in self.parts)


def format_bytes(n: float) -> str:
    """``1989000000`` → ``"1.99 GB"``, ``433000000`` → ``"433 MB"`` (decimal units)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            break
        n /= 1000
    if unit == "B" or abs(n) >= 100:
        return f"{n:.0f} {unit}"
    return f"{n:.1f} {unit}" if abs(n) >= 10 else f"{n:.2f} {unit}"


def _shape(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value)


def _parse_part(
    raw: dict[str, Any], origin: str, fields: tuple[str, ...] = MODEL_PATH_FIELDS
) -> WeightPart:
    try:
        src = raw["source"]
        source = Source(
            type=src["type"],
            url=src.get("url", ""),
            repo=src.get("repo", ""),
            filename=src.get("filename", ""),
            revision=src.get("revision", "main"),
            allow_patterns=tuple(src.get("allow_patterns", ())),
            prefer_safetensors=bool(src.get("prefer_safetensors", True)),
        )
        part = WeightPart(
            id=raw["id"],
            field=raw["field"],
            title=raw.get("title", raw["id"]),
            kind=raw.get("kind", "file"),
            filename=raw["filename"],
            source=source,
            destination=raw.get("destination", "user_cache"),
            size=int(raw.get("size", 0)),
            size_exact=bool(raw.get("size_exact", False)),
            size_note=raw.get("size_note", ""),
            sha256=(raw.get("sha256") or None),
            license=raw.get("license", ""),
            expect_keys={k: _shape(v) for k, v in raw.get("expect_keys", {}).items()},
            expect_config=dict(raw.get("expect_config", {})),
            required_files=tuple(raw.get("required_files", ())),
            required_any=tuple(tuple(group) for group in raw.get("required_any", ())),
            weight_files=tuple(raw.get("weight_files", ())),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise MovieChatError(f"weights manifest {origin} is malformed: {err!r}") from err
    problems = []
    if part.field not in fields:
        problems.append(f"field {part.field!r}")
    if source.type not in SOURCE_TYPES:
        problems.append(f"source type {source.type!r}")
    if part.destination not in DESTINATIONS:
        problems.append(f"destination {part.destination!r}")
    if part.kind not in ("file", "directory"):
        problems.append(f"kind {part.kind!r}")
    if source.type == "url" and not source.url:
        problems.append("url source without url")
    if source.type.startswith("hf_") and not source.repo:
        problems.append("hub source without repo")
    if part.sha256 is not None and (len(part.sha256) != 64 or part.sha256 != part.sha256.lower()):
        problems.append("sha256 must be 64 lower-case hex digits or null")
    if problems:
        raise MovieChatError(
            f"weights manifest {origin}: part {part.id}: bad {', '.join(problems)}"
        )
    return part


def parse_manifest(data: dict[str, Any], origin: str, base_dir: Path | None = None) -> Manifest:
    """Build a ``Manifest`` from the decoded JSON; relative paths resolve against ``base_dir``."""
    if data.get("format") != 1:
        raise MovieChatError(
            f"weights manifest {origin}: unsupported format {data.get('format')!r}"
        )
    parts = tuple(_parse_part(raw, origin) for raw in data.get("parts", ()))
    optional = tuple(_parse_part(raw, origin, OPTIONAL_FIELDS) for raw in data.get("optional", ()))
    fields = [p.field for p in parts]
    ids = {p.id for p in parts + optional}
    if sorted(fields) != sorted(MODEL_PATH_FIELDS) or len(ids) != len(parts) + len(optional):
        wanted = ", ".join(MODEL_PATH_FIELDS)
        raise MovieChatError(f"weights manifest {origin} must have one part for each of {wanted}")
    config = data.get("model_config")
    config_path = None
    if config:
        config_path = Path(config)
        if not config_path.is_absolute() and base_dir is not None:
            config_path = base_dir / config_path
    return Manifest(parts=parts, model_config=config_path, origin=origin, optional=optional)


def load_manifest(path: str | Path | None = None) -> Manifest:
    """The manifest at ``path``, else ``$MOVIECHAT_WEIGHTS_MANIFEST``, else the shipped one."""
    chosen = path if path is not None else os.environ.get(MANIFEST_ENV) or None
    if chosen is not None:
        file = Path(chosen)
        try:
            text = file.read_text("utf-8")
        except OSError as err:
            raise MovieChatError(f"cannot read weights manifest {file}: {err}") from err
        origin, base = str(file), file.parent
    else:
        text = (
            files("moviechat_desktop.configs").joinpath("weights_manifest.json").read_text("utf-8")
        )
        origin, base = "configs/weights_manifest.json", None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise MovieChatError(f"weights manifest {origin} is not valid JSON: {err}") from err
    return parse_manifest(data, origin, base)
