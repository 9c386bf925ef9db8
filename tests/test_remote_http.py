"""The remote engine without Ray: the FastAPI app over Starlette's TestClient, the tiny model,
``RemoteEngine`` as the client. (tests/test_remote_ray.py runs the real Serve deployment.)"""

import base64
import dataclasses
import json
import os
import stat
import struct

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from moviechat_desktop.cli import main
from moviechat_desktop.cli_serve import ensure_token, is_loopback, public_address
from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.errors import MovieChatError, NotReady
from moviechat_desktop.engine.model.llm import GenerationSettings
from moviechat_desktop.engine.settings import AppSettings, SamplingSettings
from moviechat_desktop.engine.store.fingerprint import file_fingerprint
from moviechat_desktop.service import remote_wire as wire
from moviechat_desktop.service.api import EngineClient
from moviechat_desktop.service.remote_client import RemoteEngine, ServerError, Unauthorized
from moviechat_desktop.service.remote_films import FilmService
from moviechat_desktop.service.serve_app import build_app

TOKEN = "test-token-123"
GREEDY = GenerationSettings(greedy=True, max_new_tokens=8)


def small_settings() -> AppSettings:
    return AppSettings(sampling=SamplingSettings(n_fragments=12, frames_per_fragment=8))


@pytest.fixture(scope="module")
def service(reference_dir, tmp_path_factory):
    # the module's server keeps its cache and history in its own dirs (set per test by
    # conftest; the service reads them when it opens a film, so they follow each test)
    svc = FilmService(model_dir=reference_dir, settings=small_settings())
    svc.load()
    yield svc
    svc.shutdown()


@pytest.fixture
def http(service):
    with TestClient(build_app(service, TOKEN), base_url="http://testserver") as client:
        yield client
    service._executor.submit(service.close_all).result()  # the next test's server starts empty


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def remote(http, token_file):
    engine = RemoteEngine("http://testserver", token_file, settings=small_settings(), http=http)
    yield engine
    engine.close()


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- answers
def test_remote_answers_equal_the_in_process_ones(remote, reference_dir, vtest_avi):
    assert isinstance(remote, EngineClient)
    info = remote.open(vtest_avi)
    assert remote.film_id == file_fingerprint(vtest_avi)
    assert (remote.status().fragments_done, remote.status().fragments_total) == (0, 12)
    with pytest.raises(NotReady, match="nothing of the film has been encoded"):
        list(remote.ask("What happens?", settings=GREEDY))
    seen = []
    status = remote.encode(on_progress=lambda s: seen.append(s.fragments_done))
    assert status.finished and seen == list(range(1, 13))
    assert remote.bytes_uploaded > 0
    remote.new_conversation()
    answer = "".join(remote.ask("What happens?", settings=GREEDY))
    assert remote.last_answer.memory_frames > 0 and remote.last_answer.first_token_s > 0
    timing = remote.last_answer
    assert timing.first_token_s <= timing.first_text_s <= timing.answer_s
    assert timing.timings["server_first_token_s"] <= timing.timings["server_answer_s"]
    at = 30.0
    moment = "".join(remote.ask("What is he holding?", "breakpoint", at_s=at, settings=GREEDY))
    assert remote.last_answer.at_s == at

    local = Assistant(
        settings=small_settings(), model_dir=reference_dir, use_cache=False, keep_history=False
    )
    local.open(vtest_avi)
    local.encode()
    local.new_conversation()
    assert "".join(local.ask("What happens?", settings=GREEDY)) == answer
    local_moment = "".join(local.ask("What is he holding?", "breakpoint", at_s=at, settings=GREEDY))
    assert local_moment == moment
    assert local.last_answer.memory_frames == remote.last_answer.memory_frames

    # the server keeps the conversation
    [summary] = remote.conversations()
    assert summary.messages == 4 and summary.title == "What happens?"
    records = remote.conversation_records()
    assert [r.role for r in records] == ["user", "assistant", "user", "assistant"]
    assert records[2].at_s == at
    assert "What is he holding?" in remote.export_markdown()
    assert info.duration_s == pytest.approx(local.video.duration_s)
    # no subtitles, no audio: no dialogue, said plainly (tests/test_remote_dialogue.py has it)
    assert remote.dialogue.source == "none" and remote.last_answer.dialogue_source == "none"
    assert "has no audio track" in remote.dialogue.label
    with pytest.raises(MovieChatError, match=r"x\.srt"):  # read here, on the client
        remote.set_dialogue_source("file", file="x.srt")


def test_a_reconnecting_client_finds_the_memory_but_a_local_engine_does_not(
    remote, http, token_file, reference_dir, bikes_mp4
):
    remote.open(bikes_mp4)
    assert remote.cache_restored == 0
    remote.encode()
    # another client (a reconnect): the server's cache gives the memory back
    again = RemoteEngine("http://testserver", token_file, settings=small_settings(), http=http)
    again.open(bikes_mp4)
    assert again.status().finished
    # the server forgot the film (restart, eviction): the client opens it again by itself
    assert http.delete(f"/v1/films/{again.film_id}", headers=auth()).json() == {"closed": True}
    answer = "".join(again.ask("What happens?", settings=GREEDY))
    assert isinstance(answer, str) and again.cache_restored == 12
    # uploaded memories never mix with locally decoded ones (same film, same cache dir)
    local = Assistant(settings=small_settings(), model_dir=reference_dir)
    local.open(bikes_mp4)
    local.load_model()
    assert local.cache_restored == 0
    local.close()


def test_a_film_reopened_by_the_server_answers_in_the_clients_conversation(remote, http, bikes_mp4):
    """A server that lost the film (a restart, another replica) reopens it on its latest saved
    conversation; the client's new chat (nothing of it on disk yet) must still be the one
    answered in — seen as a flaky follow-up answer after replicas were killed under Ray."""
    remote.open(bikes_mp4)
    remote.encode()
    remote.new_conversation()
    first = "".join(remote.ask("What happens?", settings=GREEDY))
    remote.new_conversation()
    fresh = remote.conversation_id
    assert http.delete(f"/v1/films/{remote.film_id}", headers=auth()).json() == {"closed": True}
    again = "".join(remote.ask("What happens?", settings=GREEDY))
    assert remote.conversation_id == fresh
    assert again == first, "answered as a follow-up of the older conversation"
    assert [r.role for r in remote.conversation_records()] == ["user", "assistant"]


def test_covers_and_breakpoints_before_the_moment_is_encoded(remote, bikes_mp4):
    remote.open(bikes_mp4)
    assert not remote.covers(5.0)
    while not remote.covers(5.0):
        remote.encode_step()
    assert remote.status().fragments_done < 12
    with pytest.raises(NotReady, match="has not watched up to"):
        list(remote.ask("And now?", "breakpoint", at_s=9.5, settings=GREEDY))
    assert "".join(remote.ask("Now?", "breakpoint", at_s=4.0, settings=GREEDY)) is not None


# --------------------------------------------------------------------------- security
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/info"),
        ("PUT", "/v1/films/1-00000000000000000000000000000000"),
        ("POST", "/v1/films/1-00000000000000000000000000000000/ask"),
        ("PUT", "/v1/films/1-00000000000000000000000000000000/fragments/0"),
        ("POST", "/v1/cache/clear"),
        ("GET", "/v1/nothing-here"),
    ],
)
@pytest.mark.parametrize("headers", [{}, auth("wrong"), {"Authorization": TOKEN}])
def test_every_request_needs_the_token(http, method, path, headers):
    response = http.request(method, path, headers=headers, content=b"{}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_wrong_token_is_one_clear_client_error(http, tmp_path, bikes_mp4):
    bad = tmp_path / "bad"
    bad.write_text("not-the-token")
    engine = RemoteEngine("http://testserver", bad, settings=small_settings(), http=http)
    with pytest.raises(Unauthorized, match=r"refused the token \(401\)"):
        engine.open(bikes_mp4)


def test_uploads_are_validated(http, remote, bikes_mp4):
    remote.open(bikes_mp4)
    film = f"/v1/films/{remote.film_id}"
    size = 56  # the tiny model's input size
    good = wire.pack_frames(np.zeros((8, size, size, 3), np.uint8))
    cases = {
        "too few": wire.pack_frames(np.zeros((7, size, size, 3), np.uint8)),
        "too many": wire.pack_frames(np.zeros((9, size, size, 3), np.uint8)),
        "wrong size": wire.pack_frames(np.zeros((8, size + 1, size, 3), np.uint8)),
        "not a jpeg": struct.pack(">I", 4) + b"\x89PNG" + good[8:],
        "cut short": good[:-10],
        "bad length": struct.pack(">I", 1 << 30) + b"x",
    }
    for name, body in cases.items():
        response = http.put(f"{film}/fragments/0", content=body, headers=auth())
        assert response.status_code == 400, name
        assert response.json()["error"]["type"] == "WireError", name
    assert http.put(f"{film}/fragments/12", content=good, headers=auth()).status_code == 400
    huge = {**auth(), "Content-Length": str(wire.MAX_FRAMES_BODY + 1)}
    assert http.put(f"{film}/fragments/0", content=b"", headers=huge).status_code == 413
    assert http.put(f"{film}/fragments/0", content=good, headers=auth()).status_code == 200
    # nothing about a bad request reached the memory
    assert http.get(film, headers=auth()).json()["status"]["fragments_done"] == 1


def test_open_requests_are_validated(http, remote, bikes_mp4):
    remote.open(bikes_mp4)
    body = remote._open_body
    film = f"/v1/films/{remote.film_id}"

    def put(path, data):
        return http.put(path, content=json.dumps(data), headers=auth())

    assert put("/v1/films/not-a-fingerprint", body).status_code == 400
    bad_info = {**body, "info": {**body["info"], "frame_count": -1}}
    assert put(film, bad_info).status_code == 400
    short_plan = {**body, "plan": {**body["plan"], "fragments": body["plan"]["fragments"][:3]}}
    assert put(film, short_plan).status_code == 400
    outside = json.loads(json.dumps(body))
    outside["plan"]["fragments"][0][2][0] = 10**9
    assert put(film, outside).status_code == 400
    assert http.put(film, content=b"{not json", headers=auth()).status_code == 400
    # a name is kept as a bare file name
    named = {**body, "info": {**body["info"], "name": "../../etc/passwd"}}
    assert put(film, {**named, "use_cache": False}).status_code == 200


def test_asking_is_validated(http, remote, bikes_mp4):
    remote.open(bikes_mp4)
    remote.encode()
    ask = f"/v1/films/{remote.film_id}/ask"

    def post(data):
        return http.post(ask, content=json.dumps(data), headers=auth())

    response = post({"question": "When?", "mode": "breakpoint", "at_s": 2.0})
    assert response.status_code == 409, "an uploaded film's breakpoint needs its picture"
    assert "needs the picture" in response.json()["error"]["message"]
    assert post({"question": "x", "mode": "sideways"}).status_code == 400
    assert post({"question": "x", "settings": {"max_new_tokens": "many"}}).status_code == 400
    assert post({"question": "x", "settings": {"top_p": 5.0}}).status_code == 400
    assert post({"question": "x" * (wire.MAX_QUESTION_CHARS + 1)}).status_code == 400
    frame = base64.b64encode(wire.encode_image(np.zeros((64, 64, 3), np.uint8))).decode()
    response = post({"question": "x", "mode": "breakpoint", "at_s": 2.0, "frame": frame})
    assert response.status_code == 400
    lines = [json.loads(line) for line in post({"question": "Why?"}).text.splitlines()]
    assert "chunk" in lines[0] and "done" in lines[-1]


# --------------------------------------------------------------------------- the CLI
def test_cli_server_flags(capsys, tmp_path, bikes_mp4, reference_dir):
    def run(*args):
        try:
            code = main(["ask", str(bikes_mp4), "What?", *args])
        except SystemExit as exit_:
            code = exit_.code
        return code, capsys.readouterr().err

    code, err = run("--server", "http://127.0.0.1:9", "--model-dir", str(reference_dir))
    assert code == 2 and "cannot be combined with --server" in err
    code, err = run("--token-file", str(tmp_path / "t"))
    assert code == 2 and "--token-file needs --server" in err
    code, err = run("--server", "http://127.0.0.1:9", "--token-file", str(tmp_path / "none"))
    assert code == 1 and err.count("\n") == 1 and "no server token at" in err
    token = tmp_path / "t"
    token.write_text("abc")
    code, err = run("--server", "http://127.0.0.1:9", "--token-file", str(token))
    assert code == 1 and err.count("\n") == 1 and "cannot reach the server" in err
    code, err = run("--server", "ftp://x", "--token-file", str(token))
    assert code == 1 and "is not a server address" in err


def test_serve_writes_a_private_random_token(tmp_path, capsys):
    path = tmp_path / "config" / "server-token"
    token = ensure_token(path)
    assert len(token) >= 40 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "a new token is in" in capsys.readouterr().err
    assert ensure_token(path) == token  # kept
    assert ensure_token(tmp_path / "other") != token  # random
    path.chmod(0o644)
    ensure_token(path)
    assert "readable by other users" in capsys.readouterr().err


def test_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert public_address("10.1.2.3") == "10.1.2.3"
    assert public_address("::1") == "[::1]"
    assert public_address("0.0.0.0") not in ("0.0.0.0", "")


def test_serve_usage_errors(capsys):
    for args, message in (
        (["--port", "0"], "is not a port"),
        (["--replicas", "0"], "at least 1"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["serve", *args])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
    assert main(["serve", "--model-dir", "/no/such/dir"]) == 1
    assert "model directory not found" in capsys.readouterr().err
    assert main(["serve"]) == 1  # no weights installed in the test's dirs: before Ray starts
    assert "error:" in capsys.readouterr().err


def test_server_errors_become_one_line(http, token_file):
    engine = RemoteEngine("http://testserver", token_file, http=http)
    with pytest.raises(NotReady, match="no film is open"):
        engine.export_markdown()
    engine.load_model()
    assert engine.model_loaded and "on testserver" in engine.device_label
    with pytest.raises(ServerError, match="refused the request"):
        engine._json("PUT", "/films/nope", json={})
    assert dataclasses.asdict(engine.clear_cache()).keys() == {
        "removed",
        "freed_bytes",
        "kept_in_use",
    }


def test_serve_stdout_carries_only_the_ready_line():
    """Ray prints its own notices to the driver's stdout (seen in CI as the first line a
    script read); after the switch they reach stderr and stdout has only the ready line."""
    import subprocess
    import sys

    script = (
        "import os, subprocess, sys\n"
        "from moviechat_desktop.cli_serve import _stdout_for_the_ready_line_only\n"
        "ready = _stdout_for_the_ready_line_only()\n"
        "print('(raylet) a notice from Ray')\n"
        "os.write(1, b'a write to fd 1\\n')\n"
        "subprocess.run([sys.executable, '-c', 'print(\"a child process\")'], check=True)\n"
        "print('serving on http://127.0.0.1:1', file=ready)\n"
        "ready.flush()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "serving on http://127.0.0.1:1\n"
    for line in ("(raylet) a notice from Ray", "a write to fd 1", "a child process"):
        assert line in done.stderr
