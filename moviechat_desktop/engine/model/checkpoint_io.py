"""Reading checkpoint files safely: safetensors, or ``.pth`` through ``weights_only=True``.

Never executes pickled code. The original LAVIS/Video-LLaMA files wrap their state dict as
``{'model': {...}}``; ``read_checkpoint`` unwraps that so every caller sees a flat
``{key: tensor}`` mapping.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from moviechat_desktop.engine.errors import CheckpointMismatch, UnsafeCheckpoint, WeightsMissing

if TYPE_CHECKING:
    import torch


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Return the flat state dict in ``path`` (``.safetensors`` or ``.pth``/``.pt``/``.bin``).

    Raises ``WeightsMissing`` if the file does not exist, ``UnsafeCheckpoint`` if loading it
    would need arbitrary pickled objects, ``CheckpointMismatch`` if it holds no tensors.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsMissing(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        from moviechat_desktop.engine.model.safetensors_header import read_header

        read_header(path)  # a crafted header is a one-line WeightsCorrupt, checked first
        try:
            state = load_file(str(path))
        except Exception as err:  # safetensors raises its own SafetensorError
            raise CheckpointMismatch(f"{path.name} is not a valid safetensors file: {err}") from err
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpoint(
                f"{path.name} refused: loading it would execute pickled code "
                f"(only plain tensors are accepted): {str(err).splitlines()[0]}"
            ) from err
        except (RuntimeError, EOFError, ValueError) as err:
            raise CheckpointMismatch(f"{path.name} is not a readable checkpoint: {err}") from err
    if isinstance(state, dict) and set(state) >= {"model"} and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatch(f"{path.name} does not hold a state dict of tensors")
    return state
