"""The real model's weights: manifest, status, download, import, verify, resolve.

The rest of the app calls ``resolve_model_paths()``; the CLI (``weights status|download|verify|
import``) and the Weights dialog call the others. Nothing here imports torch at import time,
and nothing here ever unpickles code (``read_checkpoint``: a restricted unpickler; ``.pth``
files are converted once to ``.safetensors``).
"""

from __future__ import annotations

from moviechat_desktop.engine.weights.audit import VerifyResult, verify_weights
from moviechat_desktop.engine.weights.importer import ImportResult, forget_imports, import_weights
from moviechat_desktop.engine.weights.install import check_disk_space, download_weights
from moviechat_desktop.engine.weights.manifest import (
    MANIFEST_ENV,
    Manifest,
    WeightPart,
    format_bytes,
    load_manifest,
)
from moviechat_desktop.engine.weights.resolve import missing_message, resolve_model_paths
from moviechat_desktop.engine.weights.status import PartStatus, weights_status
from moviechat_desktop.engine.weights.store import destination_dir, free_bytes, is_offline
from moviechat_desktop.engine.weights.transfer import TransferCallback, TransferProgress

__all__ = [
    "MANIFEST_ENV",
    "ImportResult",
    "Manifest",
    "PartStatus",
    "TransferCallback",
    "TransferProgress",
    "VerifyResult",
    "WeightPart",
    "check_disk_space",
    "destination_dir",
    "download_weights",
    "forget_imports",
    "format_bytes",
    "free_bytes",
    "import_weights",
    "is_offline",
    "load_manifest",
    "missing_message",
    "resolve_model_paths",
    "verify_weights",
    "weights_status",
]
