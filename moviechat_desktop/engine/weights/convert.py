"""One-time conversion of ``.pth`` checkpoints to ``.safetensors``.

The original checkpoints are pickles. They are read once, safely (``read_checkpoint_contents``:
a restricted unpickler that runs no code, the ``{'model': ...}`` wrapper removed), and written
back as the same flat ``{key: tensor}`` dict in safetensors, so no later start ever unpickles
anything. Keys, dtypes and values are preserved exactly. What the reader skipped (optimizer
state, config objects...) is listed in the file's metadata under ``skipped`` (JSON), which
``weights verify`` shows.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from moviechat_desktop.engine.model.checkpoint_io import (
    CheckpointContents,
    read_checkpoint_contents,
)
from moviechat_desktop.engine.weights.status import converted_name
from moviechat_desktop.engine.weights.store import fsync_replace

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
__all__ = ["SKIPPED_KEY", "convert_checkpoint", "converted_name", "save_safetensors"]


SKIPPED_KEY = "skipped"


def skipped_metadata(contents: CheckpointContents) -> dict[str, str]:
    """The safetensors metadata listing what reading the ``.pth`` skipped (empty if nothing)."""
    listed = list(contents.skipped)
    if contents.skipped_globals:
        listed.append("placeholders never imported: " + ", ".join(contents.skipped_globals))
    return {SKIPPED_KEY: json.dumps(listed)} if listed else {}


def save_safetensors(
    state: Mapping[str, torch.Tensor], dest: Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``state`` to ``dest`` atomically (temp file, fsync, rename).

    safetensors refuses tensors that share memory or are views into a larger buffer; those are
    copied first (values unchanged).
    """
    from safetensors.torch import save_file

    tensors = {}
    seen: set[int] = set()
    for key, value in state.items():
        tensor = value.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        storage = tensor.untyped_storage()
        whole = storage.nbytes() == tensor.numel() * tensor.element_size()
        if not tensor.is_contiguous() or not whole or storage.data_ptr() in seen:
            tensor = tensor.contiguous().clone()
        if tensor.numel():
            seen.add(tensor.untyped_storage().data_ptr())
        tensors[key] = tensor
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt", **(metadata or {})})
        fsync_replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def convert_checkpoint(src: Path, dest: Path) -> dict[str, torch.Tensor]:
    """Read ``src`` safely and write it to ``dest`` as safetensors; return the state dict.

    Raises ``UnsafeCheckpoint`` (a pickle that would run code), ``CheckpointMismatch`` (not a
    state dict) or ``WeightsMissing`` (no such file) — from ``read_checkpoint``.
    """
    contents = read_checkpoint_contents(src)
    state = contents.tensors
    metadata = {"converted_from": Path(src).name, **skipped_metadata(contents)}
    save_safetensors(state, dest, metadata)
    log.info("converted %s to %s (%d tensors)", src, dest, len(state))
    return state
