"""Library jobs without Ray: path scanning, the job book's state, resume from the cache,
cancel, the memory equal to a local encode's, the HTTP routes and their client.
(tests/test_remote_ray.py runs them on the real Ray server.)"""

import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
import torch

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.errors import MovieChatError
from moviechat_desktop.engine.settings import AppSettings, SamplingSettings
from moviechat_desktop.service import library_job_paths as paths_mod
from moviechat_desktop.service.library_job import JobBook, JobNotFound
from moviechat_desktop.service.library_job_encoder import LocalFragmentBackend

SAMPLING = SamplingSettings(n_fragments=6, frames_per_fragment=4)


def small_settings() -> AppSettings:
    return AppSettings(sampling=SAMPLING)


def wait_done(book: JobBook, job_id: str, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        progress = book.progress(job_id)
        if progress["state"] in ("done", "cancelled"):
            return progress
        time.sleep(0.05)
    raise AssertionError(f"job still {progress['state']}: {progress}")


# --------------------------------------------------------------------------- paths
def test_scan_expands_folders_and_says_what_is_wrong_with_each_path(tmp_path):
    films = tmp_path / "films"
    (films / "season 1").mkdir(parents=True)
    (films / ".hidden").mkdir()
    for name in ("b.mkv", "a.MP4", "season 1/c.avi", ".hidden/d.mp4", "notes.txt", ".e.mp4"):
        (films / name).write_bytes(b"x")
    empty = tmp_path / "empty"
    empty.mkdir()
    odd = tmp_path / "film.dat"  # a named file is taken whatever its extension
    odd.write_bytes(b"x")
    found = paths_mod.scan(
        [str(films), str(odd), str(tmp_path / "gone.mp4"), "relative.mp4", str(empty), str(odd)]
    )
    assert [(Path(c.path).name if c.error is None else c.path, c.error) for c in found] == [
        ("a.MP4", None),
        ("b.mkv", None),
        ("c.avi", None),
        ("film.dat", None),
        (str(tmp_path / "gone.mp4"), "no such file or folder on the server"),
        ("relative.mp4", "not an absolute path (name it as the server sees it)"),
        (str(empty), "the folder holds no video files"),
    ]


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (None, "non-empty list"),
        ([], "non-empty list"),
        (["/a", 3], "non-empty string"),
        (["  "], "non-empty string"),
        (["/a\x00b"], "non-empty string"),
        (["/" + "a" * 5000], "longer than"),
    ],
)
def test_a_malformed_path_list_is_refused(paths, message):
    with pytest.raises(ValueError, match=message):
        paths_mod.check_paths(paths)


# --------------------------------------------------------------------------- the job book
class BlockingBackend:
    """A backend whose fragments finish only when the test lets them (cancel tests)."""

    image_size, window, label = 4, 2, "fake"

    def __init__(self):
        self.identity = {"fake": 1}
        from moviechat_desktop.engine.model.config import MemoryConfig

        self.memory_config = MemoryConfig()
        self.release = threading.Event()
        self.submitted, self.cancelled = [], []

    def submit(self, info, frame_indices, exact):
        future = Future()
        self.submitted.append((future, len(frame_indices)))
        return future

    def wait(self, handles, timeout_s):
        if self.release.wait(timeout_s):
            out = []
            for future, count in self.submitted:
                if future in handles:
                    out.append((future, np.ones((count, 2, 3), np.float32)))
            self.release.clear()
            return out
        return []

    def cancel(self, handles):
        self.cancelled.extend(handles)


def test_unknown_jobs_and_bad_requests_are_clear_errors(tmp_path):
    book = JobBook(BlockingBackend, small_settings())
    try:
        with pytest.raises(JobNotFound, match="no library job 'nope'"):
            book.progress("nope")
        with pytest.raises(MovieChatError, match="non-empty list"):
            book.submit({"paths": []})
        with pytest.raises(MovieChatError, match=r"sampling\.plan"):
            book.submit({"paths": ["/x"], "sampling": {"plan": "all"}})
    finally:
        book.close()


def test_per_film_errors_do_not_stop_the_job(tmp_path, bikes_mp4):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("hello")
    book = JobBook(BlockingBackend, small_settings())
    backend_started = []
    book._backend_factory = lambda: backend_started.append(1) or BlockingBackend()
    try:
        progress = book.submit({"paths": [str(not_video), str(tmp_path / "missing.avi")]})
        assert progress["films_total"] == 2
        progress = wait_done(book, progress["job_id"])
        failed = {Path(f["path"]).name: f["error"] for f in progress["failed"]}
        assert failed["missing.avi"] == "no such file or folder on the server"
        assert failed["notes.mp4"].startswith("not a video the server can read")
        assert progress["state"] == "done" and progress["films_failed"] == 2
        assert backend_started == []  # nothing to encode: no encoders started
    finally:
        book.close()


def test_cancel_stops_the_job_and_keeps_what_was_written(bikes_mp4):
    backend = BlockingBackend()
    book = JobBook(lambda: backend, small_settings())
    try:
        job = book.submit({"paths": [str(bikes_mp4)]})
        assert book.submit({"paths": [str(bikes_mp4)]})["job_id"] == job["job_id"]  # same job
        deadline = time.monotonic() + 30
        while len(backend.submitted) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        backend.release.set()  # the first two fragments finish and are written
        while book.progress(job["job_id"])["fragments_done"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        progress = book.cancel(job["job_id"])
        progress = wait_done(book, job["job_id"])
        assert progress["state"] == "cancelled" and progress["fragments_done"] == 2
        assert len(backend.cancelled) == 2  # the two in flight were dropped
        # the next run finds the two in the cache and asks only for the rest
        backend.submitted.clear()
        again = book.submit({"paths": [str(bikes_mp4)]})
        assert again["job_id"] != job["job_id"]
        while not backend.submitted and time.monotonic() < deadline:
            time.sleep(0.02)
        assert book.progress(again["job_id"])["fragments_from_cache"] == 2
        book.cancel(again["job_id"])
        assert wait_done(book, again["job_id"])["state"] == "cancelled"
    finally:
        backend.release.set()
        book.close()


# --------------------------------------------------------------------------- real encoding
@pytest.fixture(scope="module")
def local_backend(reference_dir):
    return LocalFragmentBackend(reference_dir, small_settings().model)


def test_a_job_makes_the_memory_a_local_encode_makes_and_a_rerun_skips_it(
    local_backend, reference_dir, bikes_mp4, vtest_avi
):
    book = JobBook(lambda: local_backend, small_settings())
    try:
        first = wait_done(book, book.submit({"paths": [str(bikes_mp4), str(vtest_avi)]})["job_id"])
        assert first["state"] == "done" and first["failed"] == [] and first["error"] is None
        assert first["films_ready"] == 2 and first["fragments_total"] == 12
        assert first["fragments_done"] == first["fragments_encoded"] == 12
        second = wait_done(book, book.submit({"paths": [str(vtest_avi), str(bikes_mp4)]})["job_id"])
        assert second["fragments_encoded"] == 0 and second["fragments_from_cache"] == 12
    finally:
        book.close()
    for film in (bikes_mp4, vtest_avi):
        # the desktop's own open finds the job's memory (same cache key) ...
        cached = Assistant(settings=small_settings(), model_dir=reference_dir)
        cached.open(film)
        cached.load_model()
        assert cached.cache_restored == 6 and cached.status().finished
        # ... and it holds the tokens a local encode computes (stored as float16 by both)
        local = Assistant(settings=small_settings(), model_dir=reference_dir, use_cache=False)
        local.open(film)
        local.encode()
        for mine, theirs in zip(cached._memory.fragments(), local._memory.fragments(), strict=True):
            assert mine.index == theirs.index and mine.timestamps == theirs.timestamps
            assert torch.equal(mine.raw, theirs.raw.half().float())
            assert torch.equal(mine.long, theirs.long.half().float())
        cached.close()
        local.close()


# --------------------------------------------------------------------------- HTTP + client
def test_the_routes_and_the_client(local_backend, reference_dir, bikes_mp4, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from moviechat_desktop.service.library_job import LocalLibrary
    from moviechat_desktop.service.library_job_client import JobLost, LibraryClient
    from moviechat_desktop.service.remote_films import FilmService
    from moviechat_desktop.service.serve_app import build_app

    token_file = tmp_path / "token"
    token_file.write_text("tok\n")
    book = JobBook(lambda: local_backend, small_settings())
    service = FilmService(model_dir=reference_dir, settings=small_settings())
    try:
        no_jobs = TestClient(build_app(service, "tok"), base_url="http://testserver")
        with no_jobs:
            client = LibraryClient("http://testserver", token_file, http=no_jobs)
            with pytest.raises(MovieChatError, match="library jobs need the Ray server"):
                client.submit([str(bikes_mp4)], small_settings())
        app = build_app(service, "tok", library=LocalLibrary(book))
        with TestClient(app, base_url="http://testserver") as http:
            assert http.post("/v1/library/jobs", json={"paths": ["/a"]}).status_code == 401
            client = LibraryClient("http://testserver", token_file, http=http)
            with pytest.raises(JobLost, match="no library job"):
                client.progress("0123")
            with pytest.raises(MovieChatError, match="non-empty list"):
                client._call("POST", "/library/jobs", json={"paths": "x"})
            job = client.submit([str(bikes_mp4), str(tmp_path / "nope.mp4")], small_settings())
            while job["state"] not in ("done", "cancelled"):
                time.sleep(0.05)
                job = client.progress(job["job_id"])
            assert job["films_ready"] == 1 and job["fragments_done"] == job["fragments_total"]
            assert job["failed"] == [
                {
                    "path": str(tmp_path / "nope.mp4"),
                    "error": "no such file or folder on the server",
                }
            ]
            assert client.cancel(job["job_id"])["state"] == "done"  # too late: nothing changes
    finally:
        book.close()
        service.shutdown()


def test_a_film_the_server_reads_itself_is_encoded_and_answered_there(
    reference_dir, bikes_mp4, tmp_path
):
    """ask --server --on-server: the server opens the film by its path, encodes it itself
    (no frames travel), grabs the breakpoint picture itself; the memory is a local encode's."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from moviechat_desktop.engine.errors import VideoError
    from moviechat_desktop.engine.model.llm import GenerationSettings
    from moviechat_desktop.service.remote_client import RemoteEngine
    from moviechat_desktop.service.remote_films import FilmService
    from moviechat_desktop.service.serve_app import build_app

    token_file = tmp_path / "token"
    token_file.write_text("tok\n")
    service = FilmService(model_dir=reference_dir, settings=small_settings())
    service.load()
    greedy = GenerationSettings(greedy=True, max_new_tokens=4)
    try:
        with TestClient(build_app(service, "tok"), base_url="http://testserver") as http:
            engine = RemoteEngine("http://testserver", token_file, small_settings(), http=http)
            with pytest.raises(VideoError, match="no such file or folder on the server"):
                engine.open_on_server(str(tmp_path / "nope.mp4"))
            with pytest.raises(VideoError, match="a folder; name one film"):
                engine.open_on_server(str(tmp_path))
            info = engine.open_on_server(str(bikes_mp4))
            assert info.path.name == "bikes.mp4" and engine.status().fragments_total == 6
            engine.encode()
            assert engine.status().finished and engine.bytes_uploaded == 0
            list(engine.ask("What happens?", settings=greedy))
            assert engine.last_answer.tokens > 0 and engine.last_answer.memory_frames > 0
            list(engine.ask("And here?", "breakpoint", 2.0, settings=greedy))
            answer = engine.last_answer
            assert answer.mode == "breakpoint" and answer.at_s == 2.0 and answer.tokens > 0
            assert engine.bytes_uploaded == 0  # the picture at 2.0 s was grabbed by the server
            held = service._films[engine.film_id]
            assert held.frame_transport is None  # decoded by the server: a local encode's key
            local = Assistant(settings=small_settings(), model_dir=reference_dir)
            local.open(bikes_mp4)  # the server holds the entry: read here, not written
            local.load_model()
            assert local.cache_restored == 6
            for mine, theirs in zip(
                held._memory.fragments(), local._memory.fragments(), strict=True
            ):
                assert torch.equal(mine.raw, theirs.raw)
            local.close()
            engine.shutdown()
    finally:
        service.shutdown()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["encode", "--on-server", "/films"], "--on-server needs --server"),
        (["encode", "/a.mp4", "/b.mp4"], "one VIDEO at a time"),
        (
            ["encode", "--server", "http://h:1", "--on-server", "--no-cache", "/films"],
            "--no-cache cannot be combined with --on-server",
        ),
        (["ask", "--on-server", "/films/a.mp4", "What?"], "--on-server needs --server"),
    ],
)
def test_on_server_usage_errors(argv, message, capsys):
    from moviechat_desktop.cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_the_command_resubmits_a_job_the_server_forgot(
    local_backend, reference_dir, bikes_mp4, tmp_path, monkeypatch, capsys
):
    """The server restarted mid-job (its job book is new): the client submits the same paths
    again and the job finishes, what was written before coming from the cache."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from moviechat_desktop import cli_library_job
    from moviechat_desktop.cli import main
    from moviechat_desktop.service import library_job_client
    from moviechat_desktop.service.library_job import LocalLibrary
    from moviechat_desktop.service.remote_films import FilmService
    from moviechat_desktop.service.serve_app import build_app

    token_file = tmp_path / "token"
    token_file.write_text("tok\n")
    (tmp_path / "cfg").mkdir()
    first = JobBook(lambda: local_backend, small_settings())
    second = JobBook(lambda: local_backend, small_settings())
    service = FilmService(model_dir=reference_dir, settings=small_settings())
    app = build_app(service, "tok", library=LocalLibrary(first))
    polls = []
    real_sleep = time.sleep

    def sleep(seconds):  # the server "restarts" once the first job has written a fragment
        job_id = next(iter(first._jobs))
        while not polls and first.progress(job_id)["fragments_encoded"] < 1:
            real_sleep(0.02)
        if not polls:
            first.close()  # its job stops where it is
            app.state.moviechat["library"] = LocalLibrary(second)
        polls.append(seconds)
        real_sleep(seconds)

    try:
        with TestClient(app, base_url="http://testserver") as http:
            monkeypatch.setattr(library_job_client.httpx, "Client", lambda **_: http)
            monkeypatch.setattr(cli_library_job, "_pause", sleep)
            monkeypatch.setattr(cli_library_job, "load_settings", small_settings)
            argv = ["encode", "--server", "http://testserver", "--token-file", str(token_file)]
            code = main([*argv, "--on-server", str(bikes_mp4)])
        out, err = capsys.readouterr()
        assert code == 0, err
        resumed = second.progress(next(iter(second._jobs)))
        assert resumed["films_ready"] == 1 and resumed["fragments_from_cache"] >= 1
        assert resumed["fragments_from_cache"] + resumed["fragments_encoded"] == 6
        assert out.startswith("1 of 1 films ready on the server")
    finally:
        first.close()
        second.close()
        service.shutdown()
