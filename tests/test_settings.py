import dataclasses

from moviechat_desktop.engine.settings import (
    AppSettings,
    load_settings,
    save_settings,
    settings_path,
)


def test_defaults_come_from_shipped_file():
    s = load_settings()
    assert s.sampling.n_fragments == 128
    assert s.sampling.frames_per_fragment == 8
    assert s.generation.top_p == 0.9
    assert s.model.precision == "auto"
    assert str(settings_path()).startswith(str(settings_path().parent))


def test_round_trip_with_unicode_and_quotes(tmp_path):
    s = AppSettings()
    s.model.model_dir = str(tmp_path / 'Film "à" l\'été')
    s.generation.greedy = True
    s.generation.max_new_tokens = 42
    s.sampling.fps = 2.5
    path = save_settings(s)
    assert path == settings_path()
    assert dataclasses.asdict(load_settings()) == dataclasses.asdict(s)


def test_bad_user_file_never_stops_start(caplog):
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text('[generation]\nmax_new_tokens = "lots"\nbogus = 1\n[nope]\nx=1\n')
    s = load_settings()
    assert s.generation.max_new_tokens == 300
    assert "max_new_tokens" in caplog.text and "bogus" in caplog.text and "nope" in caplog.text
    settings_path().write_text("this is [ not toml")
    assert load_settings().generation.max_new_tokens == 300
