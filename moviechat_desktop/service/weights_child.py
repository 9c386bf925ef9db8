"""A weights job (download, import, verify) run in a child process, for the Weights dialog.

Converting a ``.pth`` checkpoint reads it with torch and verifying the decoder loads its
tokenizer with transformers; the GUI process never imports either (import-linter contract), so
``run_weights_job`` starts a child (``LocalEngine`` with ``engine.weights.jobs.WeightsJobs``),
runs the one job there and stops the child. The caller's ``progress`` callback is called in the
calling thread with each ``TransferProgress`` the child sends; its ``CancelToken`` reaches the
job within one chunk. The job's result (statuses, an ``ImportResult``, verify results: plain
dataclasses) and its errors (``MovieChatError`` subclasses) come back as themselves; a child
that dies raises ``EngineDied`` with a message about the weights job.

This module is torch-free: it names the job's engine by a string and never imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.weights.manifest import Manifest
from moviechat_desktop.engine.weights.transfer import TransferCallback, no_transfer_progress
from moviechat_desktop.service.api import EngineDied
from moviechat_desktop.service.local_engine import LocalEngine

WEIGHTS_JOBS = "moviechat_desktop.engine.weights.jobs:WeightsJobs"
JOBS = ("download", "import", "verify")


def run_weights_job(
    job: str,
    *,
    part_ids: Sequence[str] | None = None,
    path: str | Path | None = None,
    manifest: Manifest | None = None,
    progress: TransferCallback = no_transfer_progress,
    cancel: CancelToken | None = None,
) -> Any:
    """Run ``job`` in a child process and return its result (see the module docstring)."""
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}")
    if job == "import" and path is None:
        raise ValueError("an import needs a path")
    cancel = cancel or CancelToken()
    cancel.raise_if_cancelled()
    ids = list(part_ids) if part_ids else None
    common: dict[str, Any] = {"manifest": manifest, "progress": progress, "cancel": cancel}
    try:
        child = LocalEngine(WEIGHTS_JOBS)
    except EngineDied as err:
        raise EngineDied(f"The weights {job} could not start: {_reason(err)}") from err
    try:
        if job == "download":
            return child.download(ids, **common)
        if job == "import":
            return child.import_path(str(path), ids[0] if ids else None, **common)
        return child.verify(ids, **common)
    except EngineDied as err:
        raise EngineDied(f"The weights {job} stopped: {_reason(err)}") from err
    finally:
        child.shutdown()


def _reason(err: EngineDied) -> str:
    """ "its process was killed by SIGKILL (out of memory?)." from the engine's wording."""
    text, prefix = str(err), "The assistant's process ended: "
    return "its process ended: " + text.removeprefix(prefix) if text.startswith(prefix) else text
