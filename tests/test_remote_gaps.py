"""A film damaged in the middle, watched through a server (issue #15 item 7, remote paths):
a real HTTP server on loopback (uvicorn in a thread, the FastAPI app, the tiny model; no Ray),
``RemoteEngine`` and the CLI as clients. The client skips what it cannot decode and tells the
server (PUT /films/{id}/gaps/{i}); the server treats it as a local gap. Films the server reads
itself (a library job, then ``ask --on-server``) find their gaps there."""

from __future__ import annotations

import json

import httpx
import pytest
from cache_helpers import GREEDY, small_settings
from damaged_film_maker import make_damaged_film

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from loopback_server import serving

from moviechat_desktop.cli import main
from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.errors import VideoDecodeError
from moviechat_desktop.engine.settings import save_settings
from moviechat_desktop.service.library_job import JobBook, LocalLibrary
from moviechat_desktop.service.library_job_encoder import LocalFragmentBackend
from moviechat_desktop.service.remote_client import RemoteEngine
from moviechat_desktop.service.remote_films import FilmService
from moviechat_desktop.service.remote_frames import ClientFrames
from moviechat_desktop.service.serve_app import build_app

pytestmark = pytest.mark.timeout(300)

TOKEN = "gaps-test-token"
FRAGMENTS = 10  # of 2 s each over the 20-s film


def settings():
    return small_settings(n_fragments=FRAGMENTS)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    return make_damaged_film(tmp_path_factory.mktemp("damaged"))


@pytest.fixture(scope="module")
def server(reference_dir):
    """The server (its cache and history follow each test's isolated dirs) with library jobs
    run in this process."""
    service = FilmService(model_dir=reference_dir, settings=settings())
    service.load()
    book = JobBook(lambda: LocalFragmentBackend(reference_dir, settings().model), settings())
    try:
        with serving(build_app(service, TOKEN, library=LocalLibrary(book))) as address:
            yield service, address
    finally:
        book.close()
        service.shutdown()


@pytest.fixture
def url(server):
    service, address = server
    yield address
    service._executor.submit(service.close_all).result()  # the next test's server starts empty


@pytest.fixture
def service(server):
    return server[0]


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def remote(url, token_file):
    engine = RemoteEngine(url, token_file, settings=settings())
    yield engine
    engine.shutdown()


@pytest.fixture
def decoded(monkeypatch):
    """The fragments the client tries to decode, in order (the decoding still runs)."""
    tried: list[tuple[int, ...]] = []
    original = ClientFrames.fragment

    def counting(frames, indices):
        tried.append(tuple(int(i) for i in indices))
        return original(frames, indices)

    monkeypatch.setattr(ClientFrames, "fragment", counting)
    return tried


@pytest.fixture(scope="module")
def local_gaps(reference_dir, damaged):
    """What the local engine makes of the film: its gaps and its fragments in memory."""
    local = Assistant(settings=settings(), model_dir=reference_dir, use_cache=False)
    local.open(damaged)
    status = local.encode()
    local.close()
    assert status.gaps and status.finished
    return status


def gap_indices(remote) -> list[int]:
    return [f.index for f in remote._plan.fragments if f.index in remote._state["gap_fragments"]]


# --------------------------------------------------------------------------- frames uploaded
def test_the_client_skips_what_it_cannot_decode_and_the_server_counts_it_as_seen(
    remote, service, damaged, local_gaps
):
    remote.open(damaged)
    status = remote.encode()
    # as the local engine: the same gaps, the rest encoded, the encoding finished
    assert status.finished and status.gaps == local_gaps.gaps
    assert status.fragments_done == local_gaps.fragments_done < status.fragments_total
    assert status.covered == local_gaps.covered
    held = service._films[remote.film_id]  # the server's Assistant holds them as gaps
    assert held.status().gaps == status.gaps and held.gap_fragments() == gap_indices(remote)
    # a breakpoint question after the gap is answered from the rest of the film
    after = status.gaps[-1][1] + 1.0
    assert remote.covers(after) and held.covers(after)
    assert "".join(remote.ask("What now?", "breakpoint", after, settings=GREEDY))
    assert remote.last_answer.gaps == status.gaps and remote.last_answer.tokens > 0
    "".join(remote.ask("And before?", "breakpoint", 1.0, settings=GREEDY))
    assert remote.last_answer.gaps == ()
    "".join(remote.ask("What happens?", settings=GREEDY))
    assert remote.last_answer.gaps == status.gaps


def test_a_gap_is_not_cached_and_a_reopen_tries_it_again(
    remote, url, token_file, damaged, decoded, local_gaps
):
    remote.open(damaged)
    done = remote.encode()
    gaps = gap_indices(remote)
    assert gaps and len(decoded) == FRAGMENTS
    plan = remote._plan
    tried_gaps = [tuple(plan.fragments[i].frame_indices) for i in gaps]
    # the server lost the film (restart, eviction): the client reopens it and tells it the
    # gaps again, so a breakpoint after them is answered without decoding them again
    httpx.delete(
        f"{url}/v1/films/{remote.film_id}", headers={"Authorization": f"Bearer {TOKEN}"}
    ).raise_for_status()
    decoded.clear()
    after = done.gaps[-1][1] + 1.0
    "".join(remote.ask("What now?", "breakpoint", after, settings=GREEDY))
    assert remote.last_answer.gaps == done.gaps and decoded == []
    assert remote.cache_restored == done.fragments_done  # the gaps are not in the cache
    # the user opens the film again (the server still holds it): the gaps are tried again
    remote.open(damaged)
    status = remote.status()
    assert status.gaps == () and not status.finished
    assert status.fragments_done == done.fragments_done
    assert remote.encode().gaps == done.gaps and decoded == tried_gaps
    # another client, the film closed on the server: from the cache, the gaps tried again
    film_id = remote.film_id
    remote.close()
    closed = httpx.delete(f"{url}/v1/films/{film_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert closed.json() == {"closed": True}
    decoded.clear()
    other = RemoteEngine(url, token_file, settings=settings())
    try:
        other.open(damaged)
        assert other.cache_restored == done.fragments_done and not other.status().finished
        assert other.encode().gaps == done.gaps and decoded == tried_gaps
    finally:
        other.shutdown()


def _broken(frames, indices):
    raise VideoDecodeError(f"'{frames.path.name}' is damaged: the picture cannot be decoded.")


def test_when_every_fragment_fails_the_error_is_clear(remote, damaged, monkeypatch):
    monkeypatch.setattr(ClientFrames, "fragment", _broken)
    remote.open(damaged)
    with pytest.raises(VideoDecodeError, match="none of its pictures can be decoded"):
        remote.encode()


def test_a_server_of_an_older_version_is_named(remote, damaged, monkeypatch):
    """A server without the gaps route: the decode error says the server must be updated."""
    original = FilmService.info

    def older(service):
        return {k: v for k, v in original(service).items() if k != "skips_damaged"}

    monkeypatch.setattr(FilmService, "info", older)
    remote.open(damaged)
    with pytest.raises(VideoDecodeError, match=r"00:09\.0 cannot be decoded \(the server runs an "
                       r"older version that cannot skip a damaged part: update it\)"):  # fmt: skip
        remote.encode()


def test_the_command_says_none_of_its_pictures_decode(
    damaged, monkeypatch, capsys, url, token_file
):
    monkeypatch.setattr(ClientFrames, "fragment", _broken)
    save_settings(settings())
    argv = ["encode", str(damaged), "--server", url, "--token-file", str(token_file)]
    assert main(argv) == 1
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == (
        "moviechat-desktop: error: 'damaged.mp4' is damaged: none of its pictures can be decoded."
    ), err
    assert "Traceback" not in err


def test_the_server_refuses_a_malformed_gap(remote, url, damaged, bikes_mp4, token_file):
    remote.open(damaged)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    film = f"{url}/v1/films/{remote.film_id}/gaps"

    def put(index, body, headers=auth):
        response = httpx.put(f"{film}/{index}", json=body, headers=headers)
        message = response.json().get("error", {}).get("message", "")
        assert "\n" not in message
        return response.status_code, message

    ok = {"reason": "cannot be decoded"}
    assert put(FRAGMENTS, ok) == (400, f"fragment {FRAGMENTS} is outside 0..{FRAGMENTS - 1}")
    assert put(-1, ok) == (400, f"fragment -1 is outside 0..{FRAGMENTS - 1}")
    assert put(0, {"reason": 3})[0] == 400
    assert put(0, "cannot")[0] == 400
    assert put(0, {"reason": "   "}) == (400, "a gap's reason must be 1 to 300 characters")
    assert put(0, {"reason": "x" * 301}) == (400, "a gap's reason must be 1 to 300 characters")
    assert httpx.put(f"{film}/x", json=ok, headers=auth).status_code == 422  # not a number
    assert httpx.put(f"{film}/0", json=ok).status_code == 401
    unknown = f"{url}/v1/films/0-{'0' * 32}/gaps/0"
    assert httpx.put(unknown, json=ok, headers=auth).status_code == 404
    assert remote.status().gaps == ()  # none of these made a gap
    # a good one: a multi-line reason becomes one line, the state comes back with the gap
    response = httpx.put(f"{film}/2", json={"reason": "bad\npicture"}, headers=auth)
    assert response.status_code == 200 and response.json()["gap_fragments"] == [2]
    # a film the server decodes itself finds its damaged parts itself
    on_server = RemoteEngine(url, token_file, settings=settings())
    try:
        on_server.open_on_server(str(bikes_mp4))
        path = f"{url}/v1/films/{on_server.film_id}/gaps/0"
        response = httpx.put(path, json=ok, headers=auth)
        assert response.status_code == 409 and "decodes this film itself" in response.text
    finally:
        on_server.shutdown()


def test_the_commands_note_the_gap_once_and_report_it(damaged, url, token_file, capsys):
    save_settings(settings())
    server = ["--server", url, "--token-file", str(token_file)]
    assert main(["encode", str(damaged), *server, "--json"]) == 0
    out, err = capsys.readouterr()
    encoded = json.loads(out)
    assert encoded["gaps"] and all(len(g) == 2 for g in encoded["gaps"])
    notes = [line for line in err.splitlines() if "could not be decoded" in line]
    assert len(notes) == 1 and "damaged.mp4" in notes[0], err
    after = encoded["gaps"][-1][1] + 1.0
    argv = ["ask", str(damaged), "What now?", *server, "--at", f"{after:.1f}"]
    assert main([*argv, "--max-new-tokens", "3", "--greedy", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["gaps"] == encoded["gaps"] and report["mode"] == "breakpoint"
    assert report["engine"] == "server"
    notes = [line for line in err.splitlines() if "could not be decoded" in line]
    assert len(notes) == 1, err  # the gap was tried again (not cached) and said once


# --------------------------------------------------------------------------- films the server reads
def test_a_library_job_then_ask_on_server_answer_around_the_gap(
    damaged, url, token_file, capsys, local_gaps, monkeypatch
):
    save_settings(settings())
    server = ["--server", url, "--token-file", str(token_file)]
    assert main(["encode", *server, "--on-server", str(damaged)]) == 0
    out, err = capsys.readouterr()
    damaged_count = FRAGMENTS - local_gaps.fragments_done
    assert out.startswith("1 of 1 films ready on the server: ")
    assert f"{damaged_count} damaged fragments skipped" in out
    notes = [line for line in err.splitlines() if "could not be decoded" in line]
    assert notes == [
        f"moviechat-desktop: note: {_described(local_gaps.gaps)} of damaged.mp4 could not be "
        "decoded (damaged) and was skipped"
    ], err
    assert "error" not in err
    after = local_gaps.gaps[-1][1] + 1.0
    argv = ["ask", *server, "--on-server", str(damaged), "What now?", "--at", f"{after:.1f}"]
    assert main([*argv, "--max-new-tokens", "3", "--greedy", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["gaps"] == [list(g) for g in local_gaps.gaps]
    assert report["fragments_from_cache"] == local_gaps.fragments_done  # the job's memory
    assert report["answer"] is not None and report["mode"] == "breakpoint"
    notes = [line for line in err.splitlines() if "could not be decoded" in line]
    assert len(notes) == 1, err
    # asked again (the server still holds the film open): the damaged part is tried again
    skipped = []
    original = Assistant.skip_fragment
    monkeypatch.setattr(
        Assistant, "skip_fragment", lambda a, i, why: skipped.append(i) or original(a, i, why)
    )
    assert main([*argv, "--max-new-tokens", "3", "--greedy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gaps"] == report["gaps"]
    assert len(skipped) == FRAGMENTS - local_gaps.fragments_done


def test_a_library_job_over_a_film_nothing_decodes_from_fails_it_clearly(
    damaged, url, token_file, capsys, monkeypatch
):
    from moviechat_desktop.service import library_job_encoder

    def broken(info, frame_indices, size, exact):
        raise VideoDecodeError(f"'{info.path.name}' is damaged: the picture cannot be decoded.")

    monkeypatch.setattr(library_job_encoder, "decode_fragment", broken)
    save_settings(settings())
    server = ["--server", url, "--token-file", str(token_file)]
    assert main(["encode", *server, "--on-server", str(damaged)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("0 of 1 films ready on the server: ")
    assert err.splitlines()[-1] == (
        f"moviechat-desktop: error: {damaged}: 'damaged.mp4' is damaged: none of its pictures "
        "can be decoded."
    ), err
    assert "note:" not in err  # the error says it all


def _described(gaps):
    from moviechat_desktop.engine.memory.gaps import describe_gaps

    return describe_gaps(gaps)


# --------------------------------------------------------------------------- the window's engine
def test_the_windows_engine_process_gets_the_gaps_from_the_server(
    url, token_file, damaged, local_gaps
):
    """The window's engine (a child process hosting ``RemoteEngine``) hands the window the
    gaps it paints red and the status text (tests/test_damaged_film.py checks those)."""
    from moviechat_desktop.ui.main_window import make_engine_assistant

    window_settings = settings()
    engine_settings = window_settings.engine
    engine_settings.mode, engine_settings.server_url = "server", url
    engine_settings.token_file = str(token_file)
    engine = make_engine_assistant(window_settings)
    try:
        engine.load_model()
        engine.open(damaged)
        status = engine.encode()
        assert status.finished and status.gaps == local_gaps.gaps
        after = status.gaps[-1][1] + 1.0
        assert engine.covers(after)
        assert list(engine.ask("What now?", "breakpoint", after, settings=GREEDY))
        assert engine.last_answer.gaps == status.gaps
    finally:
        engine.shutdown()


# --------------------------------------------------------------------------- prepared pictures
def test_a_picture_prepared_at_the_pause_is_uploaded_without_decoding_again(
    remote, bikes_mp4, monkeypatch
):
    """(issue 16 item 3, the remote client) ``prepare_breakpoint`` decodes and compresses the
    picture on screen; the question showing that frame only uploads it."""
    pictures: list[int] = []
    original = ClientFrames.picture

    def counting(frames, index, t_s):
        pictures.append(index)
        return original(frames, index, t_s)

    monkeypatch.setattr(ClientFrames, "picture", counting)
    remote.open(bikes_mp4)
    remote.encode()
    assert remote.prepare_breakpoint(3.0) is True
    assert len(pictures) == 1
    sent = remote.bytes_uploaded
    assert "".join(remote.ask("What now?", "breakpoint", 3.0, settings=GREEDY))
    assert len(pictures) == 1, "the question did not decode the picture again"
    assert remote.bytes_uploaded > sent  # it was still sent, with the question
    "".join(remote.ask("And now?", "breakpoint", 6.0, settings=GREEDY))
    assert len(pictures) == 2 and pictures[0] != pictures[1]
    assert remote.prepare_breakpoint(1e6) is False  # outside the film: the question says why
