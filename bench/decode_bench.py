"""Decode + preprocess speed for the sampling plan, against a bare decord pass.

Both passes read the plan's frame indices one fragment at a time (as the encoder does), at the
same size, each opening its own reader (the opening is part of the cost). Ours is the app's
default reader (``plan_reader.open_plan_reader``: the nearest reference pictures,
``ReferenceFrameReader``) + ``normalize`` (uint8 → float32, CLIP mean/std); the bare pass is
``decord.VideoReader(...).get_batch(indices).asnumpy()``. The
ratio ours/bare is the engine's overhead over decoding itself; ``normalize_share_pct`` says how
much of our time the uint8 → float32 normalization takes.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

from moviechat_desktop.engine.video.sampling import SamplingPlan

log = logging.getLogger(__name__)


def _ours(path: Path, plan: SamplingPlan, size: int) -> tuple[float, float]:
    """(total time, of which ``normalize``)."""
    from moviechat_desktop.engine.video.frames import normalize, probe
    from moviechat_desktop.engine.video.plan_reader import open_plan_reader

    info = probe(path)  # the engine has it before it reads a frame: not timed
    start = time.perf_counter()
    in_normalize = 0.0
    with open_plan_reader(info, size, exact=False) as decoder:
        for fragment in plan.fragments:
            frames = decoder.decode(fragment.frame_indices)  # (n, S, S, 3) uint8
            t0 = time.perf_counter()
            pixels = normalize(frames)  # (n, 3, S, S) float32
            in_normalize += time.perf_counter() - t0
            if pixels.shape[0] != len(fragment.frame_indices):
                raise RuntimeError("the reader returned the wrong number of frames")
    return time.perf_counter() - start, in_normalize


def _bare(path: Path, plan: SamplingPlan, size: int) -> float:
    import decord

    start = time.perf_counter()
    reader = decord.VideoReader(str(path), width=size, height=size, num_threads=0)
    for fragment in plan.fragments:
        frames = reader.get_batch(list(fragment.frame_indices)).asnumpy()  # (n, S, S, 3)
        if frames.shape[0] != len(fragment.frame_indices):
            raise RuntimeError("decord returned the wrong number of frames")
    del reader
    return time.perf_counter() - start


def measure_decode(
    path: Path, plan: SamplingPlan, size: int, repeats: int, samples: dict[str, list[float]]
) -> dict[str, float]:
    """Median frames/s of both passes over ``repeats`` alternating runs, and their ratio;
    each run's seconds go to ``samples``."""
    frames = plan.total_frames
    ours, shares, bare = [], [], []
    for _ in range(repeats):  # alternate so that drift in machine load hits both alike
        bare.append(_bare(path, plan, size))
        total, in_normalize = _ours(path, plan, size)
        ours.append(total)
        shares.append(in_normalize / total)
    if repeats > 1:
        samples["decode_s"], samples["bare_decord_s"] = ours, bare
    ours_s, bare_s = statistics.median(ours), statistics.median(bare)
    log.info("decode %s: ours %.2f s, bare decord %.2f s", path.name, ours_s, bare_s)
    return {
        "plan_frames": float(frames),
        "decode_fps": frames / ours_s,
        "bare_decord_fps": frames / bare_s,
        "decode_overhead_ratio": ours_s / bare_s,
        "normalize_share_pct": 100 * statistics.median(shares),
    }
