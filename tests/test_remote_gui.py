"""Settings → "Assistant runs on: a server": the [engine] settings, their dialog fields, and the
window's engine (the local engine's child process hosting ``RemoteEngine``) against a real HTTP
server (uvicorn in a thread, the FastAPI app, the tiny model; no Ray)."""

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from loopback_server import serving

from moviechat_desktop.engine.settings import AppSettings, SamplingSettings, load_settings
from moviechat_desktop.service.api import EngineError
from moviechat_desktop.service.remote_films import FilmService
from moviechat_desktop.service.remote_settings import remote_engine_arguments
from moviechat_desktop.service.serve_app import build_app
from moviechat_desktop.ui.main_window import make_engine_assistant
from moviechat_desktop.ui.settings_dialog import SettingsDialog

TOKEN = "gui-test-token"


def test_engine_settings_default_to_this_computer():
    engine = load_settings().engine
    assert (engine.mode, engine.server_url, engine.token_file) == ("local", "", "")


def test_the_dialog_edits_where_the_assistant_runs(qtbot):
    dialog = SettingsDialog(AppSettings())
    qtbot.addWidget(dialog)
    assert dialog.engine_mode.currentData() == "local"
    assert not dialog.server_url.isEnabled() and not dialog.token_file.isEnabled()
    dialog.engine_mode.setCurrentIndex(dialog.engine_mode.findData("server"))
    assert dialog.server_url.isEnabled() and dialog.token_file.isEnabled()
    dialog.server_url.setText("  http://gpu-box:8000 ")
    dialog.token_file.setText("/home/me/token")
    engine = dialog.settings().engine
    assert (engine.mode, engine.server_url, engine.token_file) == (
        "server",
        "http://gpu-box:8000",
        "/home/me/token",
    )


def test_a_server_without_an_address_is_a_clear_error():
    settings = AppSettings()
    settings.engine.mode = "server"
    with pytest.raises(EngineError, match="no server address is set"):
        remote_engine_arguments(settings)


@pytest.fixture
def http_server(reference_dir):
    service = FilmService(
        model_dir=reference_dir,
        settings=AppSettings(sampling=SamplingSettings(n_fragments=12)),
    )
    service.load()
    try:
        with serving(build_app(service, TOKEN)) as address:
            yield address
    finally:
        service.shutdown()


def test_the_window_engine_runs_the_film_on_the_server(http_server, tmp_path, bikes_mp4):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    settings = AppSettings(sampling=SamplingSettings(n_fragments=12))
    settings.engine.mode, settings.engine.server_url = "server", http_server
    settings.engine.token_file = str(token)
    settings.generation.greedy = True
    engine = make_engine_assistant(settings)  # a child process hosting RemoteEngine
    try:
        engine.load_model()
        assert engine.model_loaded and engine.device_label.endswith(http_server[7:])
        film = tmp_path / "bikes.mp4"  # with a subtitle file beside it (the client reads it)
        film.write_bytes(bikes_mp4.read_bytes())
        film.with_suffix(".srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nGo, Ann!\n")
        engine.open(film)
        dialogue = engine.dialogue
        assert (dialogue.source, dialogue.label) == ("sidecar", "Subtitles: bikes.srt")
        status = engine.encode()
        assert status.finished and status.fragments_total == 12
        chunks = list(engine.ask("What happens?"))  # the pipe carries no engine.model classes
        assert chunks and engine.last_answer.memory_frames > 0
        assert (engine.last_answer.dialogue_source, engine.last_answer.dialogue_lines) == (
            "sidecar",
            1,
        )
        assert [r.role for r in engine.conversation_records()] == ["user", "assistant"]
        # Settings → Answers changed in the window: the server answers with them
        changed = AppSettings(sampling=SamplingSettings(n_fragments=12), engine=settings.engine)
        changed.generation.greedy, changed.generation.max_new_tokens = True, 2
        engine.settings = changed
        list(engine.ask("And then?"))
        assert 0 < engine.last_answer.tokens <= 2
    finally:
        engine.shutdown()


def test_ask_and_encode_take_server(http_server, tmp_path, bikes_mp4, capsys):
    from moviechat_desktop.cli import main
    from moviechat_desktop.engine.settings import save_settings

    small = AppSettings(sampling=SamplingSettings(n_fragments=12))
    small.generation.max_new_tokens = 4
    save_settings(small)  # the user's settings (this test's config dir): a short plan
    token = tmp_path / "token"
    token.write_text(TOKEN)
    remote = ["--server", http_server, "--token-file", str(token)]
    assert main(["encode", str(bikes_mp4), *remote, "--json"]) == 0
    encoded = json.loads(capsys.readouterr().out)
    # the plan is the client's (its settings), the memory the server's
    assert encoded["fragments_encoded"] == 12 and encoded["fragments_from_cache"] == 0
    assert main(["ask", str(bikes_mp4), "What?", *remote, "--json", "--greedy"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["engine"] == "server" and answer["fragments_from_cache"] == 12
    assert answer["device"].endswith(http_server.removeprefix("http://"))
