"""A film's MovieChat memory: per-fragment raw frame tokens and consolidated long-term frames.

Each fragment's frames (its short-term memory) are consolidated on their own — never across
fragments — down to ``short_memory_merge`` frames, which join the long-term memory with the
time span they cover. The raw tokens are kept too: breakpoint mode needs the unmerged frames
of the fragment being watched. Fragments may arrive in any order and are kept ordered by index.

Tensors live on the host (float32, CPU); the model moves what it needs to its device.
Thread-safe: the encoder may add fragments while another thread reads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch

from moviechat_desktop.engine.errors import CacheError, NotReady
from moviechat_desktop.engine.memory.consolidation import Consolidated, MergeStep, consolidate
from moviechat_desktop.engine.model.config import MemoryConfig

__all__ = ["Consolidated", "FilmMemory", "Fragment", "MergeStep", "consolidate"]

STATE_VERSION = 1
_TIME_EPS = 1e-6  # seconds: fragment ends closer than this count as touching


@dataclass(frozen=True)
class Fragment:
    """One encoded fragment: raw tokens ``(n, Q, D)`` at ``timestamps``, and its survivors."""

    index: int
    raw: torch.Tensor
    timestamps: tuple[float, ...]
    start_s: float
    end_s: float
    long: torch.Tensor  # (k, Q, D) consolidated frames
    covers: tuple[tuple[int, ...], ...]  # raw indices each long frame covers

    @property
    def spans(self) -> list[tuple[float, float]]:
        """The time span ``(first, last timestamp)`` each long-term frame covers."""
        return [(self.timestamps[c[0]], self.timestamps[c[-1]]) for c in self.covers]


class FilmMemory:
    """MovieChat's short/long-term memory of one film (see module docstring)."""

    def __init__(self, config: MemoryConfig | None = None) -> None:
        self.config = config or MemoryConfig()
        self._fragments: dict[int, Fragment] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ writing
    def add_fragment(
        self,
        index: int,
        tokens: torch.Tensor,
        timestamps: list[float] | tuple[float, ...],
        start_s: float,
        end_s: float,
    ) -> Fragment:
        """Store fragment ``index`` (replacing it if present) and consolidate its frames."""
        if tokens.dim() != 3 or tokens.shape[0] == 0:
            raise ValueError(f"expected tokens (n>0, Q, D), got {tuple(tokens.shape)}")
        stamps = tuple(float(t) for t in timestamps)
        if len(stamps) != tokens.shape[0]:
            raise ValueError(f"{tokens.shape[0]} frames but {len(stamps)} timestamps")
        if list(stamps) != sorted(stamps) or not start_s <= end_s:
            raise ValueError("timestamps must be sorted and start_s <= end_s")
        raw = tokens.detach().to("cpu", torch.float32).contiguous()  # (n, Q, D)
        merged = consolidate(raw, self.config.short_memory_merge, record_log=False)
        fragment = Fragment(
            index=int(index),
            raw=raw,
            timestamps=stamps,
            start_s=float(start_s),
            end_s=float(end_s),
            long=merged.frames,
            covers=tuple(tuple(c) for c in merged.covers),
        )
        with self._lock:
            other = next(iter(self._fragments.values()), None)
            if other is not None and other.raw.shape[1:] != raw.shape[1:]:
                raise ValueError(
                    f"frame tokens {tuple(raw.shape[1:])} differ from the memory's "
                    f"{tuple(other.raw.shape[1:])}"
                )
            self._fragments[fragment.index] = fragment
        return fragment

    def clear(self) -> None:
        with self._lock:
            self._fragments.clear()

    # ------------------------------------------------------------------ reading
    def fragments(self) -> list[Fragment]:
        """The encoded fragments, ordered by index."""
        with self._lock:
            return [self._fragments[i] for i in sorted(self._fragments)]

    @property
    def fragments_done(self) -> int:
        """How many fragments are encoded."""
        with self._lock:
            return len(self._fragments)

    def fragment_indices(self) -> list[int]:
        """The indices of the encoded fragments, ascending."""
        with self._lock:
            return sorted(self._fragments)

    def covered_ranges(self) -> list[tuple[float, float]]:
        """The encoded time ranges ``(start_s, end_s)``, touching fragments merged, in order."""
        ranges: list[tuple[float, float]] = []
        for start, end in sorted((f.start_s, f.end_s) for f in self.fragments()):
            if ranges and start <= ranges[-1][1] + _TIME_EPS:
                ranges[-1] = (ranges[-1][0], max(ranges[-1][1], end))
            else:
                ranges.append((start, end))
        return ranges

    def long_term(self) -> tuple[torch.Tensor, list[tuple[float, float]]]:
        """All long-term frames ``(L, Q, D)`` in fragment order, with their time spans."""
        fragments = self.fragments()
        if not fragments:
            raise NotReady("no part of the film has been encoded yet")
        frames = torch.cat([f.long for f in fragments])  # (L, Q, D)
        return frames, [span for f in fragments for span in f.spans]

    def global_frames(self) -> torch.Tensor:
        """The frames for global mode: the long-term memory ``(L, Q, D)``; beyond
        ``long_memory_length`` frames (dense plans) it is compressed by the same adjacent-merge
        rule (across fragments, as a last resort) down to that length."""
        frames, _ = self.long_term()
        if frames.shape[0] > self.config.long_memory_length:
            frames = consolidate(frames, self.config.long_memory_length, record_log=False).frames
        return frames

    def breakpoint_frames(self, t_s: float, current: torch.Tensor) -> torch.Tensor:
        """The frames for a question at ``t_s`` (our clean semantics, DESIGN §3).

        Long-term frames of the fragments that end at or before ``t_s``, then the raw frames of
        the fragment containing ``t_s`` (``start_s <= t_s < end_s``) whose timestamp is at or
        before ``t_s``, then ``current`` ``(1, Q, D)`` (the exact frame at ``t_s``). Beyond
        ``long_memory_length`` frames the oldest raw frames are dropped first, then the oldest
        long-term ones. Fragments not encoded are simply absent: the caller checks coverage.
        """
        if current.dim() != 3 or current.shape[0] != 1:
            raise ValueError(f"expected current (1, Q, D), got {tuple(current.shape)}")
        current = current.detach().to("cpu", torch.float32)
        long_parts: list[torch.Tensor] = []
        raw = current[:0]  # (0, Q, D)
        for fragment in self.fragments():
            if fragment.end_s <= t_s:
                long_parts.append(fragment.long)
            elif fragment.start_s <= t_s:
                seen = sum(1 for stamp in fragment.timestamps if stamp <= t_s)
                raw = fragment.raw[:seen]  # (r, Q, D)
        long = torch.cat(long_parts) if long_parts else current[:0]  # (l, Q, D)
        if long.shape[1:] != current.shape[1:] or raw.shape[1:] != current.shape[1:]:
            raise ValueError("the current frame's tokens do not match the memory's")
        excess = long.shape[0] + raw.shape[0] + 1 - self.config.long_memory_length
        if excess > 0:
            drop_raw = min(excess, raw.shape[0])
            raw = raw[drop_raw:]
            long = long[excess - drop_raw :]
        return torch.cat([long, raw, current])  # (l + r + 1, Q, D)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """``{"tensors": {name: Tensor}, "metadata": JSON-able dict}``, lossless."""
        tensors: dict[str, torch.Tensor] = {}
        entries = []
        for f in self.fragments():
            tensors[f"fragment.{f.index}.raw"] = f.raw
            tensors[f"fragment.{f.index}.long"] = f.long
            entries.append(
                {
                    "index": f.index,
                    "timestamps": list(f.timestamps),
                    "start_s": f.start_s,
                    "end_s": f.end_s,
                    "covers": [list(c) for c in f.covers],
                }
            )
        metadata = {
            "version": STATE_VERSION,
            "short_memory_merge": self.config.short_memory_merge,
            "long_memory_length": self.config.long_memory_length,
            "fragments": entries,
        }
        return {"tensors": tensors, "metadata": metadata}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the memory with ``state`` (from ``state_dict``); ``CacheError`` if invalid."""
        try:
            tensors, metadata = state["tensors"], state["metadata"]
            if metadata["version"] != STATE_VERSION:
                raise CacheError(f"memory state version {metadata['version']} is not supported")
            if metadata["short_memory_merge"] != self.config.short_memory_merge:
                raise CacheError("memory state was built with another short_memory_merge")
            fragments: dict[int, Fragment] = {}
            for entry in metadata["fragments"]:
                index = int(entry["index"])
                raw = tensors[f"fragment.{index}.raw"].to("cpu", torch.float32)
                long = tensors[f"fragment.{index}.long"].to("cpu", torch.float32)
                covers = tuple(tuple(int(i) for i in c) for c in entry["covers"])
                stamps = tuple(float(t) for t in entry["timestamps"])
                flat = sorted(i for c in covers for i in c)
                if (
                    raw.dim() != 3
                    or len(stamps) != raw.shape[0]
                    or long.shape[0] != len(covers)
                    or long.shape[1:] != raw.shape[1:]
                    or flat != list(range(raw.shape[0]))
                ):
                    raise CacheError(f"memory state of fragment {index} is inconsistent")
                fragments[index] = Fragment(
                    index, raw, stamps, float(entry["start_s"]), float(entry["end_s"]), long, covers
                )
        except CacheError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CacheError(f"memory state is corrupt: {err!r}") from err
        with self._lock:
            self._fragments = fragments
