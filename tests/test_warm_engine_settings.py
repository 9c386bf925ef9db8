"""``engine.keep_warm_s`` and ``$MOVIECHAT_KEEP_WARM_S``: range, override, bad values."""

from __future__ import annotations

import logging

import pytest
from warm_engine_helpers import write_settings

from moviechat_desktop.engine.settings import load_settings
from moviechat_desktop.service.warm_engine_paths import keep_warm_seconds


def test_the_default_is_five_minutes_and_the_variable_overrides_it(monkeypatch):
    monkeypatch.delenv("MOVIECHAT_KEEP_WARM_S")
    settings = load_settings()
    assert settings.engine.keep_warm_s == 300 and keep_warm_seconds(settings) == 300
    monkeypatch.setenv("MOVIECHAT_KEEP_WARM_S", "45")
    assert keep_warm_seconds(settings) == 45
    monkeypatch.setenv("MOVIECHAT_KEEP_WARM_S", "0")
    assert keep_warm_seconds(settings) == 0


def test_the_settings_file_sets_it_within_its_range(monkeypatch, caplog):
    monkeypatch.delenv("MOVIECHAT_KEEP_WARM_S")
    write_settings("[engine]\nkeep_warm_s = 0\n")
    assert keep_warm_seconds(load_settings()) == 0
    write_settings("[engine]\nkeep_warm_s = 100000\n")
    with caplog.at_level(logging.WARNING):
        assert load_settings().engine.keep_warm_s == 300
    assert "engine.keep_warm_s should be int from 0 to 86400" in caplog.text


@pytest.mark.parametrize("value", ["soon", "-1", "86401", "1.5"])
def test_a_bad_variable_is_said_and_the_setting_used(monkeypatch, caplog, value):
    monkeypatch.setenv("MOVIECHAT_KEEP_WARM_S", value)
    write_settings("[engine]\nkeep_warm_s = 30\n")
    with caplog.at_level(logging.WARNING):
        assert keep_warm_seconds(load_settings()) == 30
    assert "MOVIECHAT_KEEP_WARM_S" in caplog.text and "using engine.keep_warm_s" in caplog.text
