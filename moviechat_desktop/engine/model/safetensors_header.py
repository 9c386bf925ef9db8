"""The header of a ``.safetensors`` file, read and checked before anything uses it.

A safetensors file is an 8-byte little-endian header length, a JSON header, then the tensor
bytes. The header comes from whoever made the file, so its structure is checked here the way
the format defines it: at most 100 MB (the format's own limit), a JSON object whose entries
(besides an optional ``__metadata__`` object of strings) each have a known ``dtype``, a
``shape`` of non-negative integers and ``data_offsets`` ``[start, end]`` that lie inside the
data, hold exactly ``shape × dtype`` bytes, and together cover the data without gaps or
overlaps. Anything else raises ``WeightsCorrupt`` with a one-line reason — never a
``KeyError``, ``TypeError`` or ``RecursionError`` from a crafted file.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.errors import WeightsCorrupt

MAX_HEADER_BYTES = 100_000_000  # the safetensors format's limit on the JSON header
MAX_DIMS = 64

# bits per element of every dtype the format defines
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    start: int  # offsets into the data that follows the header
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]
    header_bytes: int

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: entry.shape for name, entry in self.tensors.items()}


def read_header(path: str | Path) -> SafetensorsHeader:
    """The checked header of the safetensors file at ``path`` (the data is not read)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise _bad(path, "it is too short")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES:
            raise _bad(path, f"its header claims {length} bytes (the format allows 100 MB)")
        if length > size - 8:
            raise _bad(path, "its header is longer than the file (truncated?)")
        raw = fh.read(length)
    return parse_header(raw, size - 8 - length, path.name)


def parse_header(raw: bytes, data_bytes: int, name: str = "the file") -> SafetensorsHeader:
    """Check a header's JSON text against the ``data_bytes`` of tensor data that follow it."""
    if len(raw) > MAX_HEADER_BYTES:
        raise _bad(name, "its header is larger than the format's 100 MB")
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise _bad(name, "its header is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise _bad(name, f"its header is not JSON ({str(err)[:80]})") from None
    if not isinstance(header, dict):
        raise _bad(name, f"its header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _bad(name, "its __metadata__ is not an object of strings")
    tensors = {key: _entry(name, key, value) for key, value in header.items()}
    covered = 0
    for key, entry in sorted(tensors.items(), key=lambda kv: (kv[1].start, kv[1].end)):
        if entry.start != covered:
            what = "overlaps another" if entry.start < covered else "leaves a gap before it"
            raise _bad(name, f"tensor {_short(key)} {what}")
        covered = entry.end
    if covered != data_bytes:
        raise _bad(
            name,
            f"its header describes {covered} bytes of data but the file holds {data_bytes} "
            "(truncated or damaged)",
        )
    return SafetensorsHeader(tensors, dict(metadata), len(raw))


def _entry(name: str, key: str, value: Any) -> TensorEntry:
    if not isinstance(value, dict):
        raise _bad(name, f"entry {_short(key)} is not an object")
    dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise _bad(name, f"entry {_short(key)} has no known dtype ({_short(dtype)})")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_count(d) for d in shape):
        raise _bad(name, f"entry {_short(key)} has no valid shape")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_count(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise _bad(name, f"entry {_short(key)} has no valid data_offsets")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if (bits + 7) // 8 != offsets[1] - offsets[0]:
        raise _bad(name, f"entry {_short(key)}'s data_offsets do not match its shape and dtype")
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _short(value: Any) -> str:
    return repr(value)[:60]


def _bad(name: str | Path, why: str) -> WeightsCorrupt:
    label = name.name if isinstance(name, Path) else name
    return WeightsCorrupt(f"{label} is not a valid safetensors file: {why}")
