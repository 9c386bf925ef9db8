"""Settings in plain words (issue #14 item 8): a tooltip on every field, a warning before a
change that makes the assistant watch every film again (with how long for the open film), a
model directory that does not exist refused at OK, Restore Defaults keeping the model
directory, and "Model: not found at DIR" opening Settings instead of the download dialog."""

import pytest
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QLineEdit,
    QMessageBox,
)
from ui_fixtures import FakeAssistant
from ui_fixtures import test_settings as fixture_settings

from moviechat_desktop.engine.errors import WeightsMissing
from moviechat_desktop.ui.settings_dialog import SettingsDialog
from moviechat_desktop.ui.weights_dialog import WeightsDialog

pytest_plugins = ["ui_fixtures"]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def dialog(qtbot):
    made = SettingsDialog(fixture_settings())
    qtbot.addWidget(made)
    made.show()
    qtbot.waitExposed(made)
    return made


def ok(dialog):
    dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok).click()


def test_every_field_says_what_it_changes(dialog):
    fields = [
        w
        for kind in (QLineEdit, QComboBox, QAbstractSpinBox, QCheckBox)
        for w in dialog.findChildren(kind)
        if not isinstance(w.parent(), QAbstractSpinBox | QComboBox)  # their inner editors
    ]
    assert len(fields) >= 14
    untold = [
        f"{type(w).__name__}<{type(w.parent()).__name__}>:{w.objectName()}"
        for w in fields
        if len(w.toolTip()) < 20
    ]
    assert not untold, untold


def test_a_model_directory_that_does_not_exist_is_refused_at_ok(dialog, tmp_path):
    dialog.model_dir.setText(str(tmp_path / "no-such-model"))
    ok(dialog)
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert f"{tmp_path / 'no-such-model'} does not exist" in dialog.problem.text()
    assert dialog.problem.isVisible()
    a_file = tmp_path / "weights.pth"
    a_file.write_bytes(b"x")
    dialog.model_dir.setText(str(a_file))
    ok(dialog)
    assert dialog.isVisible() and "is not a folder" in dialog.problem.text()
    dialog.model_dir.setText(str(tmp_path))  # exists: then only the re-watch question
    ok(dialog)
    assert dialog.confirm_box is not None and dialog.confirm_box.isVisible()
    dialog.confirm_box.button(QMessageBox.StandardButton.Ok).click()
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.settings().model.model_dir == str(tmp_path)


def test_a_change_that_rewatches_every_film_is_confirmed_first(dialog):
    dialog.set_film_estimate(5400.0, 2.0)  # a 90-minute film watched at 2 frames/s
    dialog.temperature.setValue(0.5)  # answers only: no question
    assert not dialog.rewatch_needed()
    dialog.n_fragments.setValue(128)
    dialog.frames_per_fragment.setValue(8)
    assert dialog.rewatch_needed()
    assert dialog.rewatch_words().endswith("about 9 min for this one.")  # 1024 frames / 2 / 60
    ok(dialog)
    box = dialog.confirm_box
    assert box.isVisible() and box.text() == dialog.rewatch_words()
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.Cancel)
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    ok(dialog)
    dialog.confirm_box.button(QMessageBox.StandardButton.Ok).click()
    assert dialog.result() == QDialog.DialogCode.Accepted


def test_without_an_estimate_the_warning_still_comes(dialog):
    dialog.plan.setCurrentIndex(dialog.plan.findData("fps"))
    assert dialog.rewatch_words().endswith("the next time it is opened.")


def test_answers_only_changes_are_accepted_at_once(dialog):
    dialog.temperature.setValue(0.7)
    ok(dialog)
    assert dialog.confirm_box is None and dialog.result() == QDialog.DialogCode.Accepted


def test_restore_defaults_keeps_the_model_directory(qtbot, tmp_path):
    settings = fixture_settings(model_dir=tmp_path)
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.n_fragments.setValue(99)
    buttons = dialog.findChild(QDialogButtonBox)
    buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).click()
    assert dialog.n_fragments.value() == 128  # the shipped default
    assert dialog.model_dir.text() == str(tmp_path)  # kept, and said so
    assert str(tmp_path) in dialog.problem.text() and dialog.problem.isVisible()


def test_model_not_found_opens_settings_not_the_download(qtbot, make_main_window, tmp_path):
    missing = str(tmp_path / "gone-model")

    class MissingDir(FakeAssistant):
        def load_model(self):
            raise WeightsMissing(f"model directory not found: {missing}")

    window = make_main_window(
        make_assistant=MissingDir, settings=fixture_settings(model_dir=missing)
    )
    qtbot.waitUntil(lambda: window.status.model_state == "unavailable", timeout=10000)
    label = window.status.device_label
    assert f"Model: not found at {missing}" in label.text()
    assert window.chat.weights_button.text() == "Open Settings…"
    window.chat.weights_button.click()
    qtbot.waitUntil(
        lambda: any(d.isVisible() for d in window.findChildren(SettingsDialog)), timeout=3000
    )
    assert not [d for d in window.findChildren(WeightsDialog) if d.isVisible()]
    for d in window.findChildren(SettingsDialog):
        d.reject()
    label.linkActivated.emit("settings")  # the status field's link does the same
    qtbot.waitUntil(
        lambda: any(d.isVisible() for d in window.findChildren(SettingsDialog)), timeout=3000
    )
