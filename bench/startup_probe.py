"""The GUI thread's stalls while a fresh process brings the assistant up, as the app does.

The app shows its window at once; its model worker then imports torch and transformers and
loads the model. Imports run once per process and hold the GIL for long stretches (loading
libtorch, executing big modules), so this runs in its own process, before anything has
imported torch: ``python -m bench.startup_probe --model-dir DIR [--device D --precision P]``.
It prints one JSON object: seconds until the model is ready and the stalls of a 5 ms precise
timer on the GUI thread meanwhile (as in ``ui_bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from moviechat_desktop.runtime_env import prefer_passive_openmp

prefer_passive_openmp()  # as the app does, before torch

import decord  # noqa: E402, F401  (before Qt: ENVIRONMENT.md)

STALL_BUDGET_MS = 50.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup_probe")
    p.add_argument("--model-dir", default="")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--timeout-s", type=float, default=1800)
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb" if os.environ.get("DISPLAY") else "offscreen")
    from pathlib import Path

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from bench.ui_bench import StallProbe
    from moviechat_desktop.engine.settings import load_settings
    from moviechat_desktop.workers.model_worker import ModelWorker

    torch_before = "torch" in sys.modules
    settings = load_settings(Path(os.devnull))  # shipped defaults
    settings.model.model_dir = args.model_dir
    settings.model.device, settings.model.precision = args.device, args.precision

    def make():
        from moviechat_desktop.engine.assistant import Assistant

        return Assistant(settings=settings)

    app = QApplication.instance() or QApplication(["moviechat-bench"])
    loop = QEventLoop()
    outcome: dict[str, str] = {}
    probe = StallProbe()
    worker = ModelWorker(make)
    worker.model_loaded.connect(lambda label: (outcome.update(ready=label), loop.quit()))
    worker.model_unavailable.connect(lambda r: (outcome.update(error=r.message), loop.quit()))
    QTimer.singleShot(int(args.timeout_s * 1000), loop.quit)
    probe.timer.start()
    start = time.perf_counter()
    worker.start()
    worker.load_model()
    loop.exec()
    end = time.perf_counter()
    probe.timer.stop()
    worker.shutdown(60_000)
    app.processEvents()
    stalls_ms = [1000 * s for s in probe.stalls(start, end)]
    result = {
        "torch_imported_before": torch_before,
        "error": outcome.get("error") or (None if "ready" in outcome else "timed out"),
        "startup_ready_s": end - start,
        "ui_max_stall_startup_ms": max(stalls_ms, default=0.0),
        "ui_stalls_over_budget_startup": float(sum(s > STALL_BUDGET_MS for s in stalls_ms)),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
