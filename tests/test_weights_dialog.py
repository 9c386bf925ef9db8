"""The Weights dialog (offscreen Qt): parts listed, live progress, cancel/resume, local files."""

from __future__ import annotations

import pytest

from moviechat_desktop.engine.weights import load_manifest
from moviechat_desktop.engine.weights.http_download import part_path_for
from moviechat_desktop.engine.weights.store import weights_dir
from moviechat_desktop.ui.weights_dialog import SCALE, WeightsDialog
from moviechat_desktop.workers.download_worker import DownloadWorker

WAIT_MS = 60_000


@pytest.fixture
def make_dialog(qtbot):
    made = []

    def make():
        dialog = WeightsDialog()
        qtbot.addWidget(dialog)
        made.append(dialog)
        return dialog

    yield make
    for dialog in made:  # never leave a worker thread behind
        if dialog.worker is not None:
            dialog.worker.cancel()
            dialog.worker.wait(10_000)


def _finish(qtbot, dialog):
    qtbot.waitUntil(lambda: dialog.worker is None, timeout=WAIT_MS)


def test_lists_parts_sizes_destinations_and_free_space(make_dialog):
    dialog = make_dialog()
    manifest = load_manifest()
    assert list(dialog.part_rows) == [p.id for p in manifest.parts]
    for part in manifest.parts:
        row = dialog.part_rows[part.id]
        assert part.title in row.title.text()
        assert row.size.text() == part.size_label
        assert row.state_label.text() == "Not installed"
        assert row.where.text().startswith("goes to ")
        assert row.bar.value() == 0
    assert "Free disk space:" in dialog.space_label.text()
    assert "Offline mode" in dialog.activity_label.text()  # the tests run offline
    assert dialog.download_button.isEnabled() and not dialog.cancel_button.isEnabled()
    assert not dialog.verify_button.isEnabled()


def test_offline_download_shows_the_reason_inline(qtbot, make_dialog, tiny_manifest):
    dialog = make_dialog()
    dialog.download_button.click()
    _finish(qtbot, dialog)
    assert "offline mode" in dialog.message_label.text()
    assert "EVA ViT-g" in dialog.message_label.text()


def test_progress_moves_during_a_download(qtbot, make_dialog, online, tiny_manifest):
    online.chunk_size = 16 * 1024
    online.chunk_delay_s = 0.01  # ~0.4 s for the EVA file: several progress updates
    dialog = make_dialog()
    seen, overall = [], []
    dialog.part_rows["eva_vit"].bar.valueChanged.connect(seen.append)
    dialog.overall_bar.valueChanged.connect(overall.append)
    dialog.download_button.click()
    assert dialog.busy and dialog.cancel_button.isEnabled()
    _finish(qtbot, dialog)
    assert dialog.message_label.text() == ""
    assert any(0 < v < SCALE for v in seen)  # moved through intermediate values…
    assert seen[-1] == SCALE  # …to the end
    assert any(0 < v < SCALE for v in overall) and dialog.overall_bar.value() == SCALE
    assert all(r.state_label.text() == "Installed" for r in dialog.part_rows.values())
    assert dialog.activity_label.text() == "All parts are installed."
    assert not dialog.download_button.isEnabled() and dialog.verify_button.isEnabled()


def test_cancel_then_resume(qtbot, make_dialog, online, tiny_manifest, reference_dir):
    online.chunk_size = 8 * 1024
    online.chunk_delay_s = 0.02
    dialog = make_dialog()
    bar = dialog.part_rows["eva_vit"].bar
    dialog.download_button.click()
    qtbot.waitUntil(lambda: bar.value() > 0, timeout=WAIT_MS)
    dialog.cancel_button.click()
    assert not dialog.cancel_button.isEnabled()
    _finish(qtbot, dialog)
    assert "Cancelled" in dialog.message_label.text()
    partial = part_path_for(weights_dir() / "tiny_eva_vit.pth")
    assert partial.is_file() and not (weights_dir() / "tiny_eva_vit.pth").exists()
    assert dialog.part_rows["eva_vit"].state_label.text().startswith("Partly downloaded")
    assert dialog.download_button.text() == "Resume"

    kept = partial.stat().st_size
    online.chunk_delay_s = 0
    dialog.download_button.click()
    _finish(qtbot, dialog)
    assert dialog.part_rows["eva_vit"].state_label.text() == "Installed"
    assert online.requests_for("tiny_eva_vit.pth")[-1].range == f"bytes={kept}-"


def test_closing_during_a_download_cancels_it(qtbot, make_dialog, online, tiny_manifest):
    online.chunk_size = 8 * 1024
    online.chunk_delay_s = 0.02
    dialog = make_dialog()
    dialog.show()
    dialog.download_button.click()
    stopped = []
    dialog.worker.cancelled.connect(lambda: stopped.append("cancelled"))
    qtbot.waitUntil(lambda: dialog.part_rows["eva_vit"].bar.value() > 0, timeout=WAIT_MS)
    with qtbot.waitSignal(dialog.finished, timeout=WAIT_MS):  # the window's hook still runs
        dialog.close()
        assert not dialog.isVisible()  # hidden at once, without waiting for the worker
    assert dialog.worker is None
    assert stopped == ["cancelled"]
    assert not (weights_dir() / "tiny_eva_vit.pth").exists()


def test_use_local_file_buttons(qtbot, make_dialog, tiny_manifest, reference_dir, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(
        QFileDialog,
        "getOpenFileName",
        staticmethod(lambda *a, **k: (str(reference_dir / "tiny_eva_vit.pth"), "")),
    )
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(reference_dir))
    )
    dialog = make_dialog()
    changed = []
    dialog.weights_changed.connect(lambda: changed.append(1))
    dialog.part_rows["eva_vit"].import_button.click()
    _finish(qtbot, dialog)
    assert dialog.part_rows["eva_vit"].state_label.text() == "Installed"
    assert dialog.part_rows["eva_vit"].where.text().startswith("imported: ")
    dialog.local_button.click()  # the whole reference folder
    _finish(qtbot, dialog)
    assert all(r.state_label.text() == "Installed" for r in dialog.part_rows.values())
    assert "reference_outputs.safetensors" in dialog.message_label.text()  # reported as not used
    assert changed == [1, 1]


def test_worker_throttles_progress_to_ten_per_second(qtbot, online, tiny_manifest):
    import time

    online.chunk_size = 4 * 1024  # many small chunks: hundreds of engine callbacks
    worker = DownloadWorker("download", part_ids=["eva_vit"])
    batches = []
    worker.progressed.connect(batches.append)
    start = time.monotonic()
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        worker.start()
    elapsed = time.monotonic() - start
    assert worker.emitted <= elapsed / 0.1 + 2
    final = [p for batch in batches for p in batch if p.part == "eva_vit"][-1]
    assert final.phase == "done"
