"""Who is who on disk: a film's content fingerprint and the key of its memory cache.

A film is recognised by its content, not its path, so a renamed or moved copy still finds its
memory: the size plus a BLAKE2b hash of a few 64 KiB blocks (the first, the last and evenly
spaced ones between; the whole file when it is small). That reads 512 KiB whatever the size,
so a 4 GB film is fingerprinted in milliseconds. Appending to a file or changing a byte in a
sampled block changes the fingerprint; a same-size edit outside every sampled block does not
(the price of not reading gigabytes).

The memory cache key adds everything the encoded tokens depend on: the frame encoder's weights
(fingerprinted the same way plus their modification time, so a weights file edited in place
misses even where the edit lies outside the sampled blocks; a folder moved with its times kept
still hits, a plain copy does not — a re-encode, never a wrong memory), the model's vision and
Q-Former dimensions, the memory's merge setting, the precision plan the encoder runs under
(``PrecisionPlan.encoder_label``), the sampling settings, and ``ENCODING_VERSION`` (bump it
when decoding or preprocessing changes). The video Q-Former, the position table and the decoder
do not touch the memory, so changing them keeps the caches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moviechat_desktop.engine.model.config import ModelConfig
    from moviechat_desktop.engine.model.paths import ModelPaths
    from moviechat_desktop.engine.settings import SamplingSettings

BLOCK_SIZE = 64 * 1024
SAMPLED_BLOCKS = 8
FINGERPRINT_VERSION = 1
ENCODING_VERSION = 1  # decode + preprocess + encode pipeline; bump to invalidate old caches


def sampled_offsets(
    size: int, block_size: int = BLOCK_SIZE, blocks: int = SAMPLED_BLOCKS
) -> list[int]:
    """Start offsets of the blocks hashed for a file of ``size`` bytes, ascending."""
    if size <= block_size * blocks:
        return list(range(0, size, block_size))  # small file: all of it
    last = size - block_size
    return sorted({i * last // (blocks - 1) for i in range(blocks)})


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """``"<size hex>-<32 hex digits>"`` from the size and the sampled blocks. ``OSError``."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        digest.update(f"moviechat-fp-v{FINGERPRINT_VERSION}:{size}:".encode())
        for offset in sampled_offsets(size):
            handle.seek(offset)
            digest.update(handle.read(BLOCK_SIZE))
    return f"{size:x}-{digest.hexdigest()}"


def _weight_fingerprint(path: Path) -> str:
    """``file_fingerprint`` and the modification time (a few milliseconds per file)."""
    return f"{file_fingerprint(path)}@{os.stat(path).st_mtime_ns}"


def model_identity(paths: ModelPaths, config: ModelConfig, precision: str) -> dict[str, Any]:
    """What the frame tokens depend on, JSON-able. ``OSError`` if a weight file is unreadable.

    ``precision`` is the frame encoder's side of the precision plan
    (``PrecisionPlan.encoder_label``): "float32" for a uniform plan (as caches made before the
    plan existed), a longer label for the original's CUDA split, so tokens computed under one
    plan are never restored under another."""
    return {
        "encoding_version": ENCODING_VERSION,
        "eva_vit": _weight_fingerprint(Path(paths.eva_vit)),
        "blip2_qformer": _weight_fingerprint(Path(paths.blip2_qformer)),
        "vision": dataclasses.asdict(config.vision),
        "qformer": dataclasses.asdict(config.qformer),
        "short_memory_merge": config.memory.short_memory_merge,
        "dtype": precision,
    }


def sampling_identity(sampling: SamplingSettings) -> dict[str, Any]:
    """The sampling settings that shape the plan (the unused rate of the other plan left out)
    and, unless ``exact_frames``, the reader that picks the pictures near the planned ones."""
    identity: dict[str, Any] = {
        "plan": sampling.plan,
        "frames_per_fragment": sampling.frames_per_fragment,
    }
    if sampling.plan == "fps":
        identity["fps"] = sampling.fps
    else:
        identity["n_fragments"] = sampling.n_fragments
    if not sampling.exact_frames:  # exact frames keep the key caches had before the choice
        from moviechat_desktop.engine.video.reader_identity import READER_IDENTITY

        identity["frames"] = dict(READER_IDENTITY)
    return identity


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class CacheKey:
    """A film's memory cache key: ``film`` fingerprint + ``model`` and ``sampling`` identity."""

    film: str
    model: dict[str, Any]
    sampling: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"film": self.film, "model": self.model, "sampling": self.sampling}

    @property
    def digest(self) -> str:
        """32 hex digits naming the cache entry (its directory)."""
        return hashlib.blake2b(canonical_json(self.as_dict()), digest_size=16).hexdigest()
