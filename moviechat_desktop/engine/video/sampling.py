"""Which frames of a film the assistant watches: a plan of fragments, each with its frames.

``plan_fragments`` is the original's rule (128 equal-duration fragments, 8 frames spread
uniformly inside each: 1024 frames for any film length); ``plan_fps`` is the denser option (a
fixed rate). Frame indices are decord's (presentation order); times come from the frames' own
timestamps when ``VideoInfo.frame_times_s`` has them (variable frame rate), else ``k / fps``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from moviechat_desktop.engine.settings import SamplingSettings
    from moviechat_desktop.engine.video.probe import VideoInfo


def _slack(t_s: float) -> float:
    """How far a frame's start may lie before ``t_s`` and still count as starting at ``t_s``.

    decord's timestamps are float32 (0.04 reads 0.0399999991; about 0.5 ms off after two hours)
    and ``probe`` rounds them to microseconds: a frame that starts on a fragment boundary must
    not slip into the previous fragment because of that.
    """
    return 2e-6 + abs(t_s) * 2.5e-7


@dataclass(frozen=True)
class Fragment:
    """One fragment of the film: its time span and the frames sampled in it."""

    index: int
    start_s: float
    end_s: float
    frame_indices: tuple[int, ...]  # decord frame indices, non-decreasing (repeats allowed)
    timestamps: tuple[float, ...]  # presentation time (s) of each sampled frame


@dataclass(frozen=True)
class SamplingPlan:
    """All fragments of a film, contiguous in time, in order."""

    fragments: tuple[Fragment, ...]
    kind: str  # "fragments" | "fps"

    def __post_init__(self) -> None:
        if not self.fragments:
            raise ValueError("a sampling plan needs at least one fragment")

    def fragment_at(self, t_s: float) -> Fragment:
        """The fragment whose span holds ``t_s``; times outside the film are clamped."""
        starts = [fragment.start_s for fragment in self.fragments]
        position = bisect.bisect_right(starts, t_s) - 1
        return self.fragments[min(max(position, 0), len(self.fragments) - 1)]

    @property
    def total_frames(self) -> int:
        return sum(len(fragment.frame_indices) for fragment in self.fragments)

    @property
    def duration_s(self) -> float:
        return self.fragments[-1].end_s


def frame_starts(info: VideoInfo) -> np.ndarray:
    """Start time (s) of every frame of the film, from its timestamps or from ``fps``."""
    if info.frame_times_s is not None and len(info.frame_times_s) == info.frame_count:
        return np.asarray(info.frame_times_s, dtype=np.float64)
    if info.frame_count <= 0 or not info.fps > 0:
        raise ValueError(f"cannot plan frames for {info.path.name}: no frames or no frame rate")
    return np.arange(info.frame_count, dtype=np.float64) / info.fps


def frame_shown_at(starts: np.ndarray, t_s: float) -> int:
    """Index of the frame on screen at ``t_s``: the last frame that started at or before it."""
    position = int(np.searchsorted(starts, t_s + _slack(t_s), side="right")) - 1
    return min(max(position, 0), len(starts) - 1)


def _fragment(
    index: int, start_s: float, end_s: float, indices: list[int], starts: np.ndarray
) -> Fragment:
    return Fragment(
        index=index,
        start_s=start_s,
        end_s=end_s,
        frame_indices=tuple(indices),
        timestamps=tuple(round(float(starts[i]), 6) for i in indices),
    )


def plan_fragments(
    info: VideoInfo, n_fragments: int = 128, frames_per_fragment: int = 8
) -> SamplingPlan:
    """The original's plan: fragment i covers [i*L/n, (i+1)*L/n) of the film's duration L.

    Inside a fragment holding ``vlen`` frames, the k-th sample is its frame
    ``floor(k * vlen / frames_per_fragment)``: the original's
    ``np.arange(0, vlen, vlen/8).astype(int)``, in integer arithmetic so it also holds exactly
    for counts other than 8. Short films: a fragment with fewer frames than samples repeats
    frames (the arithmetic above), and a fragment so short that no frame starts inside it
    samples the frame on screen at its start, ``frames_per_fragment`` times. So every plan has
    exactly ``n_fragments * frames_per_fragment`` frames and the memory's shape never depends
    on the film.
    """
    if n_fragments < 1 or frames_per_fragment < 1:
        raise ValueError("n_fragments and frames_per_fragment must be at least 1")
    starts = frame_starts(info)
    length = float(info.duration_s)
    k = np.arange(frames_per_fragment, dtype=np.int64)
    fragments = []
    for i in range(n_fragments):
        start_s = i * length / n_fragments
        end_s = (i + 1) * length / n_fragments if i < n_fragments - 1 else length
        first = int(np.searchsorted(starts, start_s - _slack(start_s), side="left"))
        stop = (
            len(starts)
            if i == n_fragments - 1
            else int(np.searchsorted(starts, end_s - _slack(end_s), side="left"))
        )
        vlen = stop - first
        if vlen > 0:
            indices = (first + (k * vlen) // frames_per_fragment).tolist()
        else:
            indices = [frame_shown_at(starts, start_s)] * frames_per_fragment
        fragments.append(_fragment(i, start_s, end_s, indices, starts))
    return SamplingPlan(fragments=tuple(fragments), kind="fragments")


def plan_fps(info: VideoInfo, fps: float = 1.0, frames_per_fragment: int = 8) -> SamplingPlan:
    """A denser plan: the frame on screen at every ``1/fps`` seconds from 0, in fragments.

    Fragment j covers ``frames_per_fragment`` sampling periods. The last fragment is padded by
    repeating its last frame, so every fragment has exactly ``frames_per_fragment`` frames.
    """
    if not fps > 0 or not math.isfinite(fps) or frames_per_fragment < 1:
        raise ValueError("fps must be a positive number and frames_per_fragment at least 1")
    starts = frame_starts(info)
    length = float(info.duration_s)
    n_samples = max(1, math.ceil(length * fps - 1e-9))
    sampled = [frame_shown_at(starts, s / fps) for s in range(n_samples)]
    span = frames_per_fragment / fps
    fragments = []
    for i, first in enumerate(range(0, n_samples, frames_per_fragment)):
        indices = sampled[first : first + frames_per_fragment]
        indices += [indices[-1]] * (frames_per_fragment - len(indices))
        end_s = min((i + 1) * span, length)
        if first + frames_per_fragment >= n_samples:
            end_s = length
        fragments.append(_fragment(i, i * span, end_s, indices, starts))
    return SamplingPlan(fragments=tuple(fragments), kind="fps")


def plan_for_settings(info: VideoInfo, sampling: SamplingSettings) -> SamplingPlan:
    """The plan the sampling settings ask for (``plan_fps`` or ``plan_fragments``)."""
    if sampling.plan == "fps":
        return plan_fps(info, fps=sampling.fps, frames_per_fragment=sampling.frames_per_fragment)
    return plan_fragments(
        info, n_fragments=sampling.n_fragments, frames_per_fragment=sampling.frames_per_fragment
    )
