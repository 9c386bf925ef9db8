"""Checks that a file or directory really is the part it claims to be.

- content: sha256 (manifest value or the one recorded at install), or the hub's etag (sha256 of
  an LFS file, git blob sha1 of a small file);
- structure: a ``.safetensors`` header that accounts for every byte of the file;
- keys: the part's ``expect_keys`` present with the expected shapes, the Llama directory's
  ``config.json`` values, required files and every shard its index names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.errors import CheckpointMismatch, WeightsCorrupt, WeightsMissing
from moviechat_desktop.engine.model.safetensors_header import read_header
from moviechat_desktop.engine.weights.http_download import hash_file
from moviechat_desktop.engine.weights.manifest import Manifest, WeightPart
from moviechat_desktop.engine.weights.transfer import ByteReporter

Shapes = Mapping[str, tuple[int, ...] | None]
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key → shape from a ``.safetensors`` header, without torch and without reading the data.

    Raises ``WeightsCorrupt`` when the header is malformed (``safetensors_header``) or does
    not account for the file's size exactly (a truncated or padded file).
    """
    return read_header(path).shapes()


def check_keys(part: WeightPart, shapes: Shapes, name: str) -> None:
    """Raise ``CheckpointMismatch`` unless ``shapes`` has every expected key and shape."""
    missing = [k for k in part.expect_keys if k not in shapes]
    wrong = [
        f"{k} is {list(shapes[k] or ())}, expected {list(want)}"
        for k, want in part.expect_keys.items()
        if want is not None and shapes.get(k) is not None and tuple(shapes[k] or ()) != want
    ]
    if missing or wrong:
        details = "; ".join(
            ([f"missing keys {', '.join(missing[:4])}"] if missing else []) + wrong[:3]
        )
        raise CheckpointMismatch(f"{name} is not a valid {part.title} checkpoint: {details}")


def state_shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def detect_part(manifest: Manifest, keys: Shapes) -> WeightPart | None:
    """The file part whose expected keys all appear in ``keys`` (names only), if exactly one."""
    hits = [
        p
        for p in manifest.parts
        if not p.is_dir and p.expect_keys and all(k in keys for k in p.expect_keys)
    ]
    return hits[0] if len(hits) == 1 else None


def git_blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def check_etag(path: Path, etag: str | None, reporter: ByteReporter | None = None) -> None:
    """Compare a hub file with its etag; raise ``WeightsCorrupt`` on a mismatch."""
    if not etag:
        return
    if len(etag) == 64:
        actual = hash_file(path, reporter)
    elif len(etag) == 40 and path.stat().st_size <= 50 * 1024 * 1024:
        actual = git_blob_sha1(path)
    else:
        return
    if actual != etag:
        raise WeightsCorrupt(
            f"{path.name} failed verification: its hash is {actual}, the hub says {etag}"
        )


def check_sha256(path: Path, expected: str, reporter: ByteReporter | None = None) -> str:
    actual = hash_file(path, reporter)
    if actual != expected:
        raise WeightsCorrupt(
            f"{path.name} failed verification: sha256 {actual}, expected {expected}"
        )
    return actual


def check_directory(part: WeightPart, folder: Path) -> list[Path]:
    """Check a Hugging Face model directory; return its weight files.

    Raises ``WeightsMissing`` (files absent) or ``CheckpointMismatch`` (wrong model).
    """
    if not folder.is_dir():
        raise WeightsMissing(f"{folder} is not a directory")
    missing = [name for name in part.required_files if not (folder / name).is_file()]
    missing += [
        " or ".join(group)
        for group in part.required_any
        if not any((folder / name).is_file() for name in group)
    ]
    if missing:
        raise WeightsMissing(f"{folder} lacks {', '.join(missing)} for the {part.title}")
    config_file = folder / "config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise CheckpointMismatch(f"{config_file} is not valid JSON: {err}") from err
        wrong = [
            f"{k}={config.get(k)!r} (expected {v!r})"
            for k, v in part.expect_config.items()
            if config.get(k) != v
        ]
        if wrong:
            raise CheckpointMismatch(f"{folder} is not the {part.title}: {', '.join(wrong)}")
    if part.weight_files:  # not transformers weights (a CTranslate2 model.bin)
        return [folder / name for name in part.weight_files]
    return _check_weight_files(part, folder)


def _check_weight_files(part: WeightPart, folder: Path) -> list[Path]:
    for index_name in (SAFETENSORS_INDEX, BIN_INDEX):
        index = folder / index_name
        if not index.is_file():
            continue
        try:
            weight_map: dict[str, str] = json.loads(index.read_text("utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
            raise CheckpointMismatch(f"{index} is not a valid weights index: {err}") from err
        shards = sorted({folder / name for name in weight_map.values()})
        absent = [s.name for s in shards if not s.is_file()]
        if absent:
            raise WeightsMissing(f"{folder} lacks weight shards {', '.join(absent)}")
        shapes: dict[str, tuple[int, ...] | None] = dict.fromkeys(weight_map)
        if index_name == SAFETENSORS_INDEX:
            for shard in {folder / weight_map[k] for k in part.expect_keys if k in weight_map}:
                shapes.update(safetensors_shapes(shard))
        check_keys(part, shapes, folder.name)
        return shards
    single = folder / "model.safetensors"
    if single.is_file():
        check_keys(part, safetensors_shapes(single), folder.name)
        return [single]
    if (folder / "pytorch_model.bin").is_file():
        return [folder / "pytorch_model.bin"]  # keys checked when transformers loads it
    raise WeightsMissing(f"{folder} holds no model weights (*.safetensors or pytorch_model*.bin)")
