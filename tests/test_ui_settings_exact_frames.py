"""Settings → "Exactly the original's frames": shown, saved, and a change asks to re-watch
(the choice is part of the memory cache key, issue 16)."""

from __future__ import annotations

import dataclasses

import pytest
from ui_fixtures import test_settings as fixture_settings

from moviechat_desktop.ui.settings_dialog import SettingsDialog

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("exact", [False, True])
def test_the_exact_frames_box_round_trips_and_a_change_means_rewatching(qtbot, exact):
    settings = fixture_settings()
    settings.sampling = dataclasses.replace(settings.sampling, exact_frames=exact)
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    assert dialog.exact_frames.isChecked() is exact
    assert "original" in dialog.exact_frames.toolTip()
    assert dialog.settings().sampling.exact_frames is exact
    assert not dialog.rewatch_needed()
    dialog.exact_frames.setChecked(not exact)
    assert dialog.settings().sampling.exact_frames is (not exact)
    assert dialog.rewatch_needed()
