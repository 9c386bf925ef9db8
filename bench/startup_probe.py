"""The GUI thread's stalls while a fresh process brings the assistant up, as the app does,
then encodes a film, answers, and quits in the middle of encoding.

The app shows its window at once; its model worker then starts the engine — by default in a
child process (``--engine process``, as the app does), or the old way, an ``Assistant`` in the
worker thread (``--engine thread``), which imports torch and transformers in the GUI process
under the GIL. Imports run once per process, so this runs in its own process, before anything
has imported torch: ``python -m bench.startup_probe --model-dir DIR [--film F] [--engine E]``.
It prints one JSON object: seconds until the model is ready and the stalls of a 5 ms precise
timer on the GUI thread meanwhile (as in ``ui_bench``); with ``--film``, the stalls while the
film is encoded (no cache) and a global question answered, and how long quitting takes
(``ModelWorker.shutdown``, the window's close) while the film is being encoded again.

``--cli-ask FILM`` measures a command-line call instead (``bench/cli_startup.py``): a cached
``ask``'s wall and CPU, its import split, and ``python -c "import torch"`` as the yardstick.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from moviechat_desktop.runtime_env import prefer_passive_openmp

prefer_passive_openmp()  # as the app does, before torch

import decord  # noqa: E402, F401  (before Qt: ENVIRONMENT.md)

STALL_BUDGET_MS = 50.0


def _engine_factory(kind: str, settings, use_cache: bool):
    if kind == "process":
        from moviechat_desktop.service.local_engine import LocalEngine

        return lambda: LocalEngine(settings=settings, use_cache=use_cache, keep_history=False)

    def make():
        from moviechat_desktop.engine.assistant import Assistant

        return Assistant(settings=settings, use_cache=use_cache, keep_history=False)

    return make


def _stall_metrics(probe, start: float, end: float, phase: str) -> dict[str, float]:
    stalls_ms = [1000 * s for s in probe.stalls(start, end)]
    return {
        f"ui_max_stall_{phase}_ms": max(stalls_ms, default=0.0),
        f"ui_stalls_over_budget_{phase}": float(sum(s > STALL_BUDGET_MS for s in stalls_ms)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup_probe")
    p.add_argument("--model-dir", default="")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--engine", choices=("process", "thread"), default="process")
    p.add_argument("--film", default="", help="also encode, answer and quit while encoding")
    p.add_argument("--fragments", type=int, default=0, help="sampling plan (default: shipped)")
    p.add_argument("--timeout-s", type=float, default=1800)
    p.add_argument("--cli-ask", metavar="FILM", help="time a cached CLI ask instead (no GUI)")
    p.add_argument("--repeats", type=int, default=3, help="cached asks to time (--cli-ask)")
    args = p.parse_args(argv)
    if args.cli_ask:
        from bench.cli_startup import format_rows, measure_cli_ask

        figures = measure_cli_ask(Path(args.cli_ask), args.model_dir, max(1, args.repeats))
        print(format_rows(figures), file=sys.stderr)
        print(json.dumps({k: round(v, 4) for k, v in figures.items()}))
        return 0
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb" if os.environ.get("DISPLAY") else "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from bench.ui_bench import StallProbe
    from moviechat_desktop.engine.settings import load_settings
    from moviechat_desktop.workers import qt_fixes
    from moviechat_desktop.workers.model_worker import ModelWorker

    torch_before = "torch" in sys.modules
    settings = load_settings(Path(os.devnull))  # shipped defaults
    settings.model.model_dir = args.model_dir
    settings.model.device, settings.model.precision = args.device, args.precision
    if args.fragments:
        settings.sampling.n_fragments = args.fragments

    app = QApplication.instance() or QApplication(["moviechat-bench"])
    qt_fixes.install()
    loop = QEventLoop()
    outcome: dict[str, str] = {}
    marks: dict[str, float] = {}
    probe = StallProbe()
    worker = ModelWorker(_engine_factory(args.engine, settings, use_cache=False))

    def progressed(status) -> None:
        if status.finished and "encoded" not in marks:
            marks["encoded"] = time.perf_counter()
            worker.ask(1, "What happens in this film?", "global", None)
        elif "answered" in marks and status.fragments_done >= 1:
            marks["quit_while_encoding"] = float(not status.finished)
            loop.quit()  # encoding again: time to quit (unless a short film is done already)

    def answered(_rid: int) -> None:
        marks["answered"] = time.perf_counter()
        worker.open_film(args.film)  # no cache: it is encoded again

    def ready(label: str) -> None:
        marks["ready"] = time.perf_counter()
        outcome["ready"] = label
        if args.film:
            worker.open_film(args.film)
        else:
            loop.quit()

    def fail(message: str) -> None:
        outcome["error"] = message
        loop.quit()

    worker.model_loaded.connect(ready)
    worker.model_unavailable.connect(lambda r: fail(r.message))
    worker.errored.connect(lambda r: fail(r.message))
    worker.answer_failed.connect(lambda rid, r: fail(r.message))
    worker.encoding_progressed.connect(progressed)
    worker.answer_finished.connect(answered)
    QTimer.singleShot(int(args.timeout_s * 1000), loop.quit)
    probe.timer.start()
    start = time.perf_counter()
    worker.start()
    worker.load_model()
    loop.exec()
    quit_start = time.perf_counter()
    ended = worker.shutdown(60_000)
    quit_s = time.perf_counter() - quit_start
    probe.timer.stop()
    app.processEvents()
    result: dict = {
        "engine": args.engine,
        "torch_imported_before": torch_before,
        "torch_in_gui_process": "torch" in sys.modules,
        "error": outcome.get("error") or (None if "ready" in outcome else "timed out"),
        "startup_ready_s": marks.get("ready", quit_start) - start,
    }
    result.update(_stall_metrics(probe, start, marks.get("ready", quit_start), "startup"))
    if args.film and "answered" in marks and outcome.get("error") is None:
        result["probe_encode_s"] = marks["encoded"] - marks["ready"]
        result.update(_stall_metrics(probe, marks["ready"], marks["encoded"], "encode"))
        result.update(_stall_metrics(probe, marks["encoded"], marks["answered"], "answer"))
        if marks.get("quit_while_encoding"):
            result["quit_while_encoding_s"] = quit_s
            result["quit_ended"] = ended
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
