"""Reading checkpoint files safely: safetensors, or ``.pth`` through our restricted unpickler.

Never executes pickled code (``torch_pickle``: tensors and plain containers are rebuilt, every
other pickled object becomes a placeholder that is never imported or called). The state dict is
the file's top-level dict, or its ``'model'`` entry when there is one (LAVIS and Video-LLaMA
save ``{'model': ..., 'optimizer': ..., 'config': ..., 'scaler': ..., 'epoch': ...}``).
Everything outside the state dict, and every non-tensor inside it, is skipped and listed
(``CheckpointContents.skipped``, logged; ``weights verify`` shows it). A tensor of the state
dict that cannot be rebuilt safely (a quantized or sparse tensor, a storage of an unknown type)
refuses the whole file.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.errors import CheckpointMismatch, UnsafeCheckpoint, WeightsMissing
from moviechat_desktop.engine.model.torch_pickle import (
    PickleRefused,
    Skipped,
    SkippedObject,
    TensorRef,
    is_tensor_rebuild,
    unpickle_archive,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointContents:
    """The state dict of a checkpoint file and what was left out of it."""

    tensors: dict[str, torch.Tensor]
    skipped: list[str] = field(default_factory=list)  # "config (argparse.Namespace)", ...
    skipped_globals: list[str] = field(default_factory=list)  # placeholders never imported


def _describe(value: Any) -> str:
    if isinstance(value, SkippedObject | Skipped):
        return value.name
    if isinstance(value, TensorRef):
        return "tensor"
    if isinstance(value, dict):
        return f"dict of {len(value)}"
    if isinstance(value, list | tuple):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def read_checkpoint_contents(path: str | Path) -> CheckpointContents:
    """The state dict in ``path`` (``.safetensors``, or a ``.pth``/``.pt``/``.bin`` torch zip).

    Raises ``WeightsMissing`` if the file does not exist, ``UnsafeCheckpoint`` if the state
    dict's tensors cannot be read without running code, ``CheckpointMismatch`` if the file is
    damaged or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsMissing(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        from moviechat_desktop.engine.model.safetensors_header import read_header

        read_header(path)  # a crafted header is a one-line WeightsCorrupt, checked first

        try:
            return CheckpointContents(load_file(str(path)))
        except Exception as err:  # safetensors raises its own SafetensorError
            raise CheckpointMismatch(f"{path.name} is not a valid safetensors file: {err}") from err
    return _read_torch_zip(path)


def _read_torch_zip(path: Path) -> CheckpointContents:
    try:
        with zipfile.ZipFile(path) as zf:
            unpickled = unpickle_archive(zf)
            root = unpickled.root
            if not isinstance(root, dict):
                raise CheckpointMismatch(
                    f"{path.name} does not hold a state dict (it holds a {_describe(root)})"
                )
            skipped: list[str] = []
            state = root
            if isinstance(root.get("model"), dict):
                state = root["model"]
                skipped += [f"{k} ({_describe(v)})" for k, v in root.items() if k != "model"]
            refs: dict[str, TensorRef] = {}
            for key, value in state.items():
                if isinstance(value, TensorRef) and isinstance(key, str):
                    refs[key] = value
                elif isinstance(value, SkippedObject) and is_tensor_rebuild(value.name):
                    raise UnsafeCheckpoint(
                        f"{path.name} refused: tensor {str(key)[:80]} is stored as "
                        f"{value.name}, which cannot be read without running pickled code"
                    )
                else:
                    skipped.append(f"{str(key)[:80]} ({_describe(value)})")
            tensors = {key: ref.materialize() for key, ref in refs.items()}
    except zipfile.BadZipFile as err:
        raise _not_zip(path) from err
    except PickleRefused as err:
        raise UnsafeCheckpoint(f"{path.name} refused: {err}") from err
    except (OSError, EOFError, zipfile.LargeZipFile, RuntimeError) as err:
        raise CheckpointMismatch(f"{path.name} is not a readable checkpoint: {err}") from err
    if not tensors:
        raise CheckpointMismatch(f"{path.name} does not hold a state dict of tensors")
    contents = CheckpointContents(tensors, skipped, unpickled.skipped_globals)
    if skipped:
        log.info(
            "%s: %d tensors read; skipped, never run: %s%s",
            path.name,
            len(tensors),
            ", ".join(skipped[:12])
            + (f" (and {len(skipped) - 12} more)" if len(skipped) > 12 else ""),
            f"; placeholders for {', '.join(unpickled.skipped_globals[:12])}"
            if unpickled.skipped_globals
            else "",
        )
    return contents


def _not_zip(path: Path) -> CheckpointMismatch | UnsafeCheckpoint:
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head[:1] == b"\x80":  # a bare pickle: torch's pre-1.6 format, or pickle.dump
        return UnsafeCheckpoint(
            f"{path.name} refused: it is a plain pickle (torch's format before 1.6), which "
            "cannot be read without running pickled code; re-save it with a recent torch or "
            "convert it to .safetensors"
        )
    if head == b"PK":
        return CheckpointMismatch(
            f"{path.name} is not a readable checkpoint: its zip archive is truncated or damaged"
        )
    return CheckpointMismatch(f"{path.name} is not a torch checkpoint (not a zip archive)")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """``read_checkpoint_contents(path).tensors``: the flat ``{key: tensor}`` state dict."""
    return read_checkpoint_contents(path).tensors
