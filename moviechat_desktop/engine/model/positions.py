"""MovieChat's hierarchical frame-position table: 256 positions from 16 trained rows.

The Video-LLaMA checkpoint holds ``video_frame_position_embedding``, an ``Embedding(32, D)``.
MovieChat stretches its first ``n = 16`` rows to ``n²`` positions (the paper's "hierarchical
decomposition"): with ``alpha = 0.01``

    u_i = (p_i − alpha·p_0) / (1 − alpha)            for i < n
    row(n·i + j) = alpha·u_i + (1 − alpha)·u_j       for i, j < n

so rows 0..n−1 equal p_0..p_{n−1} and position k = n·i + j is "block i, step j".

Our decision (DESIGN §3): the table is built from the LOADED weight. The original built it from
the random initial weight before loading the checkpoint (reference README, finding 1); the
parity tests feed that table explicitly to show the rest of the pipeline is unchanged.
"""

from __future__ import annotations

import torch


def hierarchical_position_table(
    weight: torch.Tensor, n_position: int = 16, alpha: float = 0.01
) -> torch.Tensor:
    """Return the ``(n_position², D)`` table built from ``weight`` ``(P, D)``, ``P ≥ n_position``.

    Computed in float32 on the weight's device; the result is a new tensor (no autograd).
    """
    if weight.dim() != 2 or weight.shape[0] < n_position:
        raise ValueError(
            f"position weight must be (P >= {n_position}, D), got {tuple(weight.shape)}"
        )
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    with torch.no_grad():
        p = weight[:n_position].detach().float()  # (n, D)
        u = (p - alpha * p[:1]) / (1 - alpha)  # (n, D)
        # row n*i + j = alpha*u_i + (1-alpha)*u_j: broadcast (n, 1, D) + (1, n, D) → (n, n, D)
        table = alpha * u[:, None, :] + (1 - alpha) * u[None, :, :]
        return table.reshape(n_position * n_position, -1)  # (n², D)
