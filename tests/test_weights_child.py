"""The Weights dialog's jobs run in a child process (issue #13): the one-time ``.pth``
conversion and the tokenizer check happen there, and the GUI process never imports torch or
transformers; progress is thinned out in the child, errors come back as the engine's classes,
and a cancel reaches a job that reports progress all the time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from sp_tokenizer import write_vicuna_style_tokenizer

from moviechat_desktop.engine.errors import Cancelled, DownloadError, WeightsMissing
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.weights.jobs import ProgressRelay, engine_error
from moviechat_desktop.engine.weights.no_connection import NoConnection
from moviechat_desktop.engine.weights.store import imported_dir
from moviechat_desktop.engine.weights.transfer import TransferProgress
from moviechat_desktop.service.weights_child import run_weights_job

pytestmark = pytest.mark.timeout(180)

GUI_SCRIPT = r"""
import json, sys, time
from PySide6.QtWidgets import QApplication

app = QApplication(["weights-child-test"])
from moviechat_desktop.ui.weights_dialog import WeightsDialog

eva, llama = sys.argv[1], sys.argv[2]
dialog = WeightsDialog()
done = []

def run(start):
    start()
    dialog.worker.completed.connect(done.append)
    deadline = time.monotonic() + 150
    while dialog.worker is not None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.005)

run(lambda: dialog.import_path(eva, "eva_vit"))
run(lambda: dialog.import_path(llama, "vicuna"))
run(dialog.start_verify)
verify = done[-1] if done and isinstance(done[-1], list) else []
print(json.dumps({
    "heavy": sorted(m for m in ("torch", "transformers", "tokenizers", "sentencepiece",
                                "safetensors.torch") if m in sys.modules),
    "engine_model": sorted(m for m in sys.modules if m.startswith("moviechat_desktop.engine.model.")
                           and m.rsplit(".", 1)[1] in ("checkpoints", "llm", "tokenizer",
                                                       "tokenizer_check", "encoder")),
    "states": {pid: row.state_label.text() for pid, row in dialog.part_rows.items()},
    "message": dialog.message_label.text(),
    "verify": {r.id: [r.ok, r.detail] for r in verify},
}))
"""


def test_conversion_and_tokenizer_check_run_without_torch_in_the_gui_process(
    tiny_manifest, reference_dir, tmp_path
):
    llama = tmp_path / "tiny_llama"
    shutil.copytree(reference_dir / "tiny_llama", llama)
    write_vicuna_style_tokenizer(llama)  # so verify runs the tokenizer check
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run(
        [sys.executable, "-c", GUI_SCRIPT, str(reference_dir / "tiny_eva_vit.pth"), str(llama)],
        capture_output=True,
        text=True,
        timeout=170,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], report  # nothing heavy was imported in the GUI process
    assert report["engine_model"] == [], report
    assert report["states"]["eva_vit"] == "Installed", report
    assert report["states"]["vicuna"] == "Installed", report
    converted = imported_dir() / "eva_vit.safetensors"
    assert converted.is_file()  # the .pth was converted (in the child)
    ok, detail = report["verify"]["vicuna"]
    assert ok and "tokenizer: " in detail and "BOS once" in detail, report
    assert report["verify"]["eva_vit"][0], report
    assert report["message"] == "", report


def test_errors_come_back_as_the_engines_classes(tiny_manifest, tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(WeightsMissing, match=r"nowhere\.pth"):
        run_weights_job("import", path=missing)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        run_weights_job("verify", cancel=token)
    with pytest.raises(ValueError, match="needs a path"):
        run_weights_job("import")


def test_an_error_class_outside_engine_errors_becomes_its_base():
    err = engine_error(NoConnection("No connection to the server: the connection was refused"))
    assert type(err) is DownloadError and str(err).startswith("No connection")
    same = WeightsMissing("x")
    assert engine_error(same) is same


def test_progress_relay_thins_updates_and_keeps_the_last_and_every_phase():
    sent: list[TransferProgress] = []
    relay = ProgressRelay(sent.append, interval_s=10.0)
    for done in range(1000):
        relay(TransferProgress("eva", "download", done, 1000))
    relay(TransferProgress("qf", "download", 5, 10))
    assert [(p.part, p.done) for p in sent] == [("eva", 0), ("qf", 5)]
    relay(TransferProgress("eva", "verify", 1, 1000))  # a new phase goes through at once
    relay(TransferProgress("eva", "verify", 2, 1000))
    relay.flush()  # the held-back last update of each part
    assert [(p.part, p.phase, p.done) for p in sent[2:]] == [
        ("eva", "verify", 1),
        ("eva", "verify", 2),
    ]
    relay(TransferProgress("eva", "done", 1000, 1000))
    relay(TransferProgress("eva", "done", 1000, 1000))
    assert [p.phase for p in sent[4:]] == ["done", "done"]  # "done" is never held back
    relay.flush()
    assert len(sent) == 6


def test_cancel_reaches_a_call_that_reports_progress_all_the_time():
    from moviechat_desktop.service.local_engine import LocalEngine

    engine = LocalEngine("engine_children:Scripted")
    try:
        token, seen = CancelToken(), []

        def slow_reader(index: int) -> None:  # the child fills the pipe: a message always waits
            seen.append(index)
            time.sleep(0.001)

        threading.Timer(0.5, token.cancel).start()
        started = time.monotonic()
        with pytest.raises(Cancelled):  # without the check on every message: no cancel in 20 s
            engine.chatter(slow_reader, cancel=token)
        assert time.monotonic() - started < 15
        assert len(seen) > 10  # it was reporting while the cancel was sent
    finally:
        engine.shutdown()
