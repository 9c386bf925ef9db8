"""MovieChat's memory consolidation: merge the most similar adjacent frames until few remain.

While more than ``keep`` frames remain, the adjacent pair with the highest similarity
``mean(T_i @ T_{i+1}ᵀ)`` — the dot product of the two frames' mean tokens, NOT a cosine — is
replaced by its plain average ``(T_i + T_{i+1}) / 2`` (so frames merged repeatedly are not
weighted equally, as in the original). Ties go to the lowest index. Similarities are computed in
float64 from the mean tokens (the merge choices then do not depend on the device's matmul
precision); the merged frames keep the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MergeStep:
    """One step: the adjacent similarities before merging, and the pair ``(chosen, chosen+1)``."""

    similarities: list[float]
    chosen: int


@dataclass(frozen=True)
class Consolidated:
    """The survivors ``(k, Q, D)``, the input indices each survivor covers, and the merge log."""

    frames: torch.Tensor
    covers: list[list[int]]
    log: list[MergeStep]


def _similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b))


def consolidate(frames: torch.Tensor, keep: int = 2, record_log: bool = True) -> Consolidated:
    """Merge ``frames`` ``(n, Q, D)`` down to ``min(n, keep)`` frames (see module docstring).

    ``record_log=False`` skips the per-step copies of the similarity list (large compressions).
    """
    if frames.dim() != 3:
        raise ValueError(f"expected frames (n, Q, D), got {tuple(frames.shape)}")
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    buffer = list(frames.unbind(0))  # n × (Q, D)
    means = [f.double().mean(dim=0) for f in buffer]  # n × (D,)
    covers = [[i] for i in range(len(buffer))]
    sims = [_similarity(means[i], means[i + 1]) for i in range(len(buffer) - 1)]
    log: list[MergeStep] = []
    while len(buffer) > keep:
        best = max(range(len(sims)), key=sims.__getitem__)  # first maximum: ties → lowest
        if record_log:
            log.append(MergeStep(similarities=list(sims), chosen=best))
        merged = (buffer[best] + buffer[best + 1]) / 2  # (Q, D)
        buffer[best : best + 2] = [merged]
        means[best : best + 2] = [merged.double().mean(dim=0)]
        covers[best : best + 2] = [covers[best] + covers[best + 1]]
        # Only the two similarities touching the merged frame change.
        del sims[best]
        if best > 0:
            sims[best - 1] = _similarity(means[best - 1], means[best])
        if best < len(buffer) - 1:
            sims[best] = _similarity(means[best], means[best + 1])
    survivors = torch.stack(buffer) if buffer else frames[:0]  # (k, Q, D)
    return Consolidated(frames=survivors, covers=covers, log=log)
