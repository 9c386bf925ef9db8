"""MovieChat's hierarchical frame-position table: 256 positions from 16 trained rows.

The Video-LLaMA checkpoint holds ``video_frame_position_embedding``, an ``Embedding(32, D)``.
MovieChat stretches its first ``n = 16`` rows to ``n²`` positions (the paper's "hierarchical
decomposition"): with ``alpha = 0.01``

    u_i = (p_i − alpha·p_0) / (1 − alpha)            for i < n
    row(n·i + j) = alpha·u_i + (1 − alpha)·u_j       for i, j < n

so rows 0..n−1 equal p_0..p_{n−1} and position k = n·i + j is "block i, step j".

Our decision (DESIGN §3): by default (``model.position_table = "trained"``) the table is built
from the LOADED weight. The original built it from the random initial weight before loading the
checkpoint (reference README, finding 1). ``"original"`` reproduces that, for anyone comparing
with published MovieChat numbers: ``original_position_table`` reads the init-time table —
for the real model the reference set's best-effort seed-42 reconstruction shipped with the app
(``resources/model/full_size_seed42_position_table.safetensors``, byte-identical), for a
reference-layout directory (the tiny sets) its own file holding ``frame_position_embeddings``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from moviechat_desktop.engine.errors import CheckpointMismatch, WeightsMissing

POSITION_TABLES = ("trained", "original")
ORIGINAL_TABLE_KEY = "frame_position_embeddings"  # (n², D): the table the original used
REAL_ORIGINAL_TABLE = "full_size_seed42_position_table.safetensors"


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


def shipped_original_table() -> Path:
    """The real model's init-time table shipped with the app (reference set, finding 1)."""
    from importlib.resources import files

    return Path(str(files("moviechat_desktop.resources").joinpath("model", REAL_ORIGINAL_TABLE)))


def original_position_table(source: Path | None, rows: int, width: int) -> torch.Tensor:
    """The original's init-time table ``(rows, width)`` (float32) from ``source`` (None: the
    shipped one for the real model). ``WeightsMissing`` / ``CheckpointMismatch`` when the file is
    absent, unreadable or of another shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = shipped_original_table() if source is None else Path(source)
    if not path.is_file():
        raise WeightsMissing(f"the original position table {path} is missing")
    try:
        table = load_file(str(path)).get(ORIGINAL_TABLE_KEY)
    except (SafetensorError, OSError) as err:
        raise CheckpointMismatch(f"{path.name} is not a readable position table: {err}") from err
    if table is None:
        raise CheckpointMismatch(f"{path.name} holds no {ORIGINAL_TABLE_KEY}")
    if tuple(table.shape) != (rows, width):
        raise CheckpointMismatch(
            f"{path.name}: the original position table is {list(table.shape)}, this model "
            f"needs [{rows}, {width}]"
        )
    return table.float()
