"""The real thing: ``moviechat-desktop serve`` (Ray Serve, on CPU, the tiny model) started once
for the session, spoken to by ``RemoteEngine`` over loopback HTTP.

One Ray instance for all the tests here (~13-15 s to start and stop on a quiet machine,
~1.5 GB): it runs in its own session so the tests can find and kill its replica; its cache
and config live under the test's temp dir, Ray's temp dir is a short /tmp/mcray-* (Ray's
socket paths must stay short), removed at the end.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import torch

pytest.importorskip("ray")
pytest.importorskip("fastapi")

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.model.llm import GenerationSettings
from moviechat_desktop.engine.settings import AppSettings, SamplingSettings
from moviechat_desktop.service.remote_client import RemoteEngine, ServerError, Unauthorized

pytestmark = [pytest.mark.ray, pytest.mark.slow]

GREEDY = GenerationSettings(greedy=True, max_new_tokens=24)
# The tiny model's greedy text is undecodable bytes that come out as one chunk at the end;
# seeded sampling gives ~40 chunks over ~2 s (measured): what a streaming test needs.
STREAMY = GenerationSettings(greedy=False, seed=0, temperature=1.0, top_p=1.0, max_new_tokens=200)
START_TIMEOUT_S = 240.0


def small_settings() -> AppSettings:
    return AppSettings(sampling=SamplingSettings(n_fragments=12, frames_per_fragment=8))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _session_processes(sid: int, needle: str) -> list[int]:
    """Processes of session ``sid`` (the server and all of Ray's) whose command has ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != sid:
                continue
            if needle in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                found.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return found


@pytest.fixture(scope="session")
def server(tmp_path_factory, reference_dir):
    base = tmp_path_factory.mktemp("served")
    # Ray's socket paths must stay under ~107 characters: pytest's temp paths are too long
    ray_tmp = tempfile.mkdtemp(prefix="mcray-")
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(base / "config"),
        "XDG_CACHE_HOME": str(base / "cache"),
        "XDG_DATA_HOME": str(base / "data"),
        "RAY_TMPDIR": ray_tmp,
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    token_file = base / "token"
    port = _free_port()
    command = [
        sys.executable, "-m", "moviechat_desktop", "serve",
        "--model-dir", str(reference_dir), "--port", str(port),
        "--token-file", str(token_file), "--num-cpus", "3", "--replicas", "2",
    ]  # fmt: skip
    stderr = open(base / "serve.err", "w+")  # noqa: SIM115 (read back at the end)
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=stderr, env=env, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # blocks until the server accepts requests (or dies)
        assert line == f"serving on http://127.0.0.1:{port}\n", (line, _tail(stderr))
        yield SimpleNamespace(
            url=f"http://127.0.0.1:{port}", token_file=token_file, proc=proc, stderr=stderr
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in _session_processes(proc.pid, ""):  # never leave Ray behind
            os.kill(pid, signal.SIGKILL)
        stderr.close()
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)


def _tail(handle) -> str:
    handle.flush()
    handle.seek(0)
    return handle.read()[-3000:]


@pytest.fixture
def remote(server):
    engine = RemoteEngine(server.url, server.token_file, settings=small_settings())
    yield engine
    engine.shutdown()


@pytest.fixture(scope="session")
def in_process(reference_dir, bikes_mp4):
    """The same film in this process, the way ``ask`` without ``--server`` answers."""
    assistant = Assistant(
        settings=small_settings(), model_dir=reference_dir, use_cache=False, keep_history=False
    )
    assistant.open(bikes_mp4)
    assistant.encode()
    assistant.new_conversation()
    return assistant


def _timed(answer) -> tuple[str, list[float]]:
    start, times, chunks = time.perf_counter(), [], []
    for chunk in answer:
        chunks.append(chunk)
        times.append(time.perf_counter() - start)
    return "".join(chunks), times


def test_served_answers_stream_and_equal_the_in_process_ones(remote, in_process, bikes_mp4):
    remote.open(bikes_mp4)
    remote.encode()
    remote.new_conversation()
    answer = "".join(remote.ask("What happens?", settings=GREEDY))
    in_process.new_conversation()
    assert answer == "".join(in_process.ask("What happens?", settings=GREEDY))

    remote.new_conversation()
    text, times = _timed(remote.ask("And then?", settings=STREAMY))
    server = remote.last_answer.timings
    generating_s = server["server_answer_s"] - server["server_first_token_s"]
    assert len(times) > 5 and text
    # the chunks reached this process while the server was still generating, not at the end
    assert times[-1] - times[0] > 0.3 * generating_s > 0
    assert remote.last_answer.chunks == len(times)


def test_a_films_requests_reach_the_replica_holding_it(server, remote, bikes_mp4):
    remote.open(bikes_mp4)  # opened on one of the two replicas
    url, token = f"{server.url}/v1/films/{remote.film_id}", server.token_file.read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    routed = {"serve_multiplexed_model_id": remote.film_id, **auth}
    # with the film id as Serve's multiplexed model id, every request finds the film
    assert {httpx.get(url, headers=routed).status_code for _ in range(12)} == {200}
    # without it, the router spreads requests and the other replica does not know the film
    assert 404 in {httpx.get(url, headers=auth).status_code for _ in range(30)}


def test_subtitle_lines_reach_the_replica_holding_the_film(remote, bikes_mp4, tmp_path):
    subtitles = tmp_path / "race.srt"
    subtitles.write_text(
        "1\n00:00:01,000 --> 00:00:02,000\nAlpha rides first.\n\n"
        "2\n00:00:08,000 --> 00:00:09,000\nZulu wins the race.\n"
    )
    remote.open(bikes_mp4, subtitles=subtitles)
    remote.encode()
    remote.new_conversation()
    "".join(remote.ask("Who rides?", "breakpoint", at_s=5.0, settings=GREEDY))
    info = remote.last_answer
    assert (info.dialogue_source, info.dialogue_lines) == ("file", 1)
    assert "Alpha rides first." in info.prompt and "Zulu" not in info.prompt


def test_the_token_is_required(server, tmp_path, bikes_mp4):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert httpx.get(f"{server.url}/v1/info", headers=headers).status_code == 401
    bad = tmp_path / "bad"
    bad.write_text("wrong")
    with pytest.raises(Unauthorized, match=r"refused the token \(401\)"):
        RemoteEngine(server.url, bad).open(bikes_mp4)


def test_a_server_killed_mid_answer_is_a_clear_error_and_a_retry_works(server, remote, bikes_mp4):
    remote.open(bikes_mp4)
    remote.encode()  # saved in the server's cache fragment by fragment
    remote.new_conversation()
    expected = "".join(remote.ask("What happens?", settings=GREEDY))
    replicas = _session_processes(server.proc.pid, "ServeReplica:moviechat")
    assert len(replicas) == 2
    answer = remote.ask("And then?", settings=STREAMY)
    next(answer)  # the answer has started
    for replica in replicas:  # the whole engine dies, whichever replica held the film
        os.kill(replica, signal.SIGKILL)
    with pytest.raises(ServerError) as failure:
        for _ in answer:
            pass
    message = str(failure.value)
    assert "\n" not in message and server.url in message
    assert "stopped in the middle of the answer" in message
    # the user asks again: Serve has started a new replica, which takes the film back from
    # the cache (the client opens it again by itself)
    remote.new_conversation()
    retry = "".join(remote.ask("What happens?", settings=GREEDY))
    assert retry == expected
    assert remote.cache_restored == 12


# --------------------------------------------------------------------------- library jobs
def _settings_file(text: str) -> None:
    from moviechat_desktop.engine.settings import user_config_dir

    user_config_dir().mkdir(parents=True, exist_ok=True)
    (user_config_dir() / "settings.toml").write_text(text)


def _encode_on_server(server, capsys, *paths) -> tuple[int, str, str]:
    from moviechat_desktop.cli import main

    command = ["encode", "--server", server.url, "--token-file", str(server.token_file)]
    code = main([*command, "--on-server", *map(str, paths)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_library_job_encodes_films_the_server_reads_and_a_rerun_skips_them(
    server, capsys, monkeypatch, reference_dir, bikes_mp4, vtest_avi, tmp_path
):
    """encode --on-server: one job, fragments as Ray tasks (decode) + the encoder actor; the
    memory is the one a local encode makes, in the server's cache; a rerun encodes nothing."""
    _settings_file("[sampling]\nn_fragments = 12\nframes_per_fragment = 8\n")
    code, out, err = _encode_on_server(server, capsys, bikes_mp4, vtest_avi)
    assert code == 0, err
    assert "library job: 24/24 fragments (100%), 2/2 films" in err
    assert out.startswith("2 of 2 films ready on the server: 24 fragments encoded, 0 already")

    code, out, err = _encode_on_server(server, capsys, vtest_avi, bikes_mp4)  # resume: all there
    assert code == 0, err
    assert out.startswith("2 of 2 films ready on the server: 0 fragments encoded, 24 already")

    # the server's cache holds what a local encode of the tiny model computes
    monkeypatch.setenv("XDG_CACHE_HOME", str(server.token_file.parent / "cache"))
    for film in (bikes_mp4, vtest_avi):
        cached = Assistant(settings=small_settings(), model_dir=reference_dir)
        cached.open(film)
        cached.load_model()
        assert cached.cache_restored == 12 and cached.status().finished
        local = Assistant(settings=small_settings(), model_dir=reference_dir, use_cache=False)
        local.open(film)
        local.encode()
        for mine, theirs in zip(cached._memory.fragments(), local._memory.fragments(), strict=True):
            assert mine.timestamps == theirs.timestamps
            assert torch.equal(mine.raw, theirs.raw.half().float()), film.name
            assert torch.equal(mine.long, theirs.long.half().float()), film.name
        cached.close()
        local.close()

    # ask --on-server: the server opens the film by its path and finds the job's memory
    from moviechat_desktop.cli import main

    base = ["ask", "--server", server.url, "--token-file", str(server.token_file), "--on-server"]
    code = main([*base, str(vtest_avi), "What happens?", "--greedy", "--json", "--at", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    reply = json.loads(out)
    assert reply["fragments_from_cache"] == 12 and reply["fragments_encoded"] == 12
    assert reply["mode"] == "breakpoint" and reply["engine"] == "server"
    assert reply["memory_frames"] > 0

    # a path the server cannot use: one line for it, the rest is encoded, exit 1
    text = tmp_path / "notes.mkv"
    text.write_text("not a film")
    code, out, err = _encode_on_server(server, capsys, tmp_path / "gone.mp4", text, bikes_mp4)
    assert code == 1
    assert f"error: {tmp_path / 'gone.mp4'}: no such file or folder on the server\n" in err
    assert f"error: {text}: not a video the server can read" in err
    assert out.startswith("1 of 3 films ready on the server")


def test_a_library_job_skips_a_damaged_part_and_ask_answers_around_it(server, capsys, tmp_path):
    """A fragment a Ray decode task cannot decode comes back wrapped by Ray: the job still
    counts it as damaged (not a failed film), says where, exits 0; ask --on-server then
    answers a breakpoint question after the gap and lists it (issue #15 item 7)."""
    from damaged_film_maker import make_damaged_film

    from moviechat_desktop.cli import main

    damaged = make_damaged_film(tmp_path)
    _settings_file("[sampling]\nn_fragments = 10\nframes_per_fragment = 8\n")
    code, out, err = _encode_on_server(server, capsys, damaged)
    assert code == 0, err
    assert out.startswith("1 of 1 films ready on the server: ") and "damaged fragments" in out
    notes = [line for line in err.splitlines() if "could not be decoded (damaged)" in line]
    assert len(notes) == 1 and "of damaged.mp4" in notes[0], err
    base = ["ask", "--server", server.url, "--token-file", str(server.token_file), "--on-server"]
    code = main([*base, str(damaged), "What now?", "--greedy", "--json", "--at", "18"])
    out, err = capsys.readouterr()
    assert code == 0, err
    reply = json.loads(out)
    assert reply["gaps"] and reply["gaps"][-1][1] < 18 and reply["mode"] == "breakpoint"
    assert 0 < reply["fragments_from_cache"] < 10  # the job cached what decodes, not the gap
    assert sum("could not be decoded (damaged)" in line for line in err.splitlines()) == 1


def test_a_library_job_survives_ctrl_c_and_a_killed_encoder(
    server, capsys, monkeypatch, bigbuckbunny
):
    """Ctrl-C cancels the job on the server (exit 130); the next run takes what was encoded
    from the cache, and Ray retries the fragments of an encoder actor killed mid-job."""
    from moviechat_desktop import cli_library_job
    from moviechat_desktop.service.library_job_client import LibraryClient

    _settings_file("[sampling]\nn_fragments = 24\nframes_per_fragment = 8\n")
    client = LibraryClient(server.url, server.token_file)
    seen = []
    real_sleep = time.sleep

    def sleep(seconds):  # the user presses Ctrl-C as soon as the job has encoded something
        while client.progress(seen[-1])["fragments_encoded"] < 1:
            real_sleep(0.02)
        raise KeyboardInterrupt

    real_submit = LibraryClient.submit

    def submit(self, paths, settings):
        reply = real_submit(self, paths, settings)
        seen.append(reply["job_id"])
        return reply

    with monkeypatch.context() as patch:
        patch.setattr(cli_library_job, "_pause", sleep)
        patch.setattr(LibraryClient, "submit", submit)
        code, _, err = _encode_on_server(server, capsys, bigbuckbunny)
    assert code == 130
    assert "interrupted: the job on the server is cancelled" in err
    deadline = time.monotonic() + 120
    while (progress := client.progress(seen[0]))["state"] != "cancelled":
        assert time.monotonic() < deadline, progress
        time.sleep(0.2)
    assert 1 <= progress["fragments_done"] < progress["fragments_total"] == 24
    done_before = progress["fragments_done"]

    # the next run resumes from the cache; its encoder is killed while it works
    sampling = SamplingSettings(n_fragments=24, frames_per_fragment=8)
    again = client.submit([str(bigbuckbunny)], AppSettings(sampling=sampling))
    assert again["job_id"] != seen[0]
    while (progress := client.progress(again["job_id"]))["fragments_from_cache"] == 0:
        assert time.monotonic() < deadline and progress["state"] != "done", progress
        time.sleep(0.05)
    assert progress["fragments_from_cache"] == done_before
    workers = _session_processes(server.proc.pid, "EncoderWorker")
    assert len(workers) == 1  # one node without GPUs: one encoder
    os.kill(workers[0], signal.SIGKILL)
    assert client.progress(again["job_id"])["fragments_done"] < 24  # killed mid-job
    while (progress := client.progress(again["job_id"]))["state"] != "done":
        assert time.monotonic() < deadline, progress
        time.sleep(0.2)
    assert progress["failed"] == [] and progress["error"] is None, progress
    assert progress["films_ready"] == 1 and progress["fragments_done"] == 24
    assert progress["fragments_encoded"] == 24 - done_before
    assert _session_processes(server.proc.pid, "EncoderWorker") != workers  # restarted
    client.close()


def test_serve_stops_cleanly_on_sigterm(server):
    """Last (file order): SIGTERM ends the session's server, and Ray with it."""
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0, _tail(server.stderr)
    assert "server stopped" in _tail(server.stderr)
    time.sleep(1.0)
    assert _session_processes(server.proc.pid, "") == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v1/info", timeout=5)
