"""Library jobs: encode many films the server can read itself, fragment by fragment.

A client names files or folders as the server sees them (``library_job_paths``); the job probes
each film, plans its fragments with the client's sampling settings, and hands each fragment not
yet in the server's memory cache to a ``FragmentBackend`` (on a Ray cluster: a decode task on
any node, then an encoder actor: ``library_job_ray``). As fragments come back their tokens go
into the film's memory (consolidated per fragment, as the local engine does) and are written
to the cache entry at once, so an interrupted job (client Ctrl-C, cancel, a server restart, a
killed task) loses at most the fragments in flight: the next run skips what the cache holds.

The memory is the one a local ``encode`` of the same film makes: the same decoder, the same
model, the same cache key (the frame transport is "decoded from the film file", i.e. none), so
the replica that later opens the film by its path, or a desktop with the same model, finds it.

``JobBook`` keeps the jobs and runs them one after another on its own thread (films of two jobs
never write the same cache entry at once). Pure Python: no Ray, no HTTP here.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from moviechat_desktop.engine.errors import MovieChatError, VideoDecodeError, VideoError
from moviechat_desktop.engine.memory.gaps import DecodeGaps
from moviechat_desktop.engine.settings import AppSettings, SamplingSettings, load_settings
from moviechat_desktop.service import library_job_paths as paths_mod

log = logging.getLogger(__name__)

KEPT_JOBS = 64  # finished jobs remembered for their progress
POLL_S = 0.25  # how often the runner looks at results and at a cancel


class JobNotFound(MovieChatError):
    """No job with that id on this server (finished long ago, or the server restarted)."""

    http_status = 404


class FragmentBackend(Protocol):
    """Where fragments are decoded and encoded (a Ray cluster; a fake in the unit tests)."""

    image_size: int  # the model's input size
    identity: dict[str, Any]  # the frame encoder's identity (cache key, ``encoder_identity``)
    memory_config: Any  # the model's ``MemoryConfig`` (consolidation)
    window: int  # fragments in flight at most
    label: str  # where it runs, for people

    def submit(self, info: Any, frame_indices: list[int], exact: bool) -> Any:
        """Start decoding (the film ``info``, with the exact reader or not: ``plan_reader``)
        and encoding one fragment; a handle."""

    def wait(self, handles: list[Any], timeout_s: float) -> list[tuple[Any, Any]]:
        """The handles finished within ``timeout_s`` with their tokens ``(n, Q, D)`` float32
        numpy, or the exception that stopped them."""

    def cancel(self, handles: list[Any]) -> None:
        """Drop unfinished fragments (best effort)."""


# --------------------------------------------------------------------------- state
FILM_STATES = ("waiting", "encoding", "ready", "failed", "cancelled")
JOB_STATES = ("queued", "running", "done", "cancelled")


@dataclass
class FilmProgress:
    """One film of a job."""

    path: str
    status: str = "waiting"
    fragments_total: int = 0
    from_cache: int = 0  # fragments the cache already held (skipped)
    encoded: int = 0  # fragments this job encoded
    damaged: int = 0  # fragments that could not be decoded (skipped, as the player does)
    gaps: DecodeGaps = field(default_factory=DecodeGaps, repr=False)  # their time ranges
    error: str | None = None
    plan: Any = field(default=None, repr=False)
    info: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def fragments_done(self) -> int:
        return self.from_cache + self.encoded + self.damaged


@dataclass
class LibraryJob:
    """A job's films and state; ``progress()`` is what the client sees."""

    job_id: str
    paths: list[str]
    sampling: SamplingSettings
    films: list[FilmProgress]
    state: str = "queued"
    error: str | None = None  # why the whole job stopped (the cluster could not start...)
    created: float = field(default_factory=time.time)
    finished_at: float | None = None
    current: FilmProgress | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "cancelled")

    def progress(self) -> dict[str, Any]:
        films = self.films
        return {
            "job_id": self.job_id,
            "state": self.state,
            "error": self.error,
            "films_total": len(films),
            "films_ready": sum(f.status == "ready" for f in films),
            "films_failed": sum(f.status == "failed" for f in films),
            "films_done": sum(f.status in ("ready", "failed", "cancelled") for f in films),
            "fragments_total": sum(f.fragments_total for f in films),
            "fragments_done": sum(f.fragments_done for f in films),
            "fragments_encoded": sum(f.encoded for f in films),
            "fragments_from_cache": sum(f.from_cache for f in films),
            "fragments_damaged": sum(f.damaged for f in films),
            "current": None if self.current is None else self.current.path,
            "failed": [
                {"path": f.path, "error": f.error or "failed"}
                for f in films
                if f.status == "failed"
            ],
            "damaged": [
                {"path": f.path, "fragments": f.damaged, "gaps": f.gaps.ranges()}
                for f in films
                if f.damaged
            ],
        }


def job_from_request(body: Any, defaults: SamplingSettings) -> tuple[list[str], SamplingSettings]:
    """The paths and sampling settings of a POST body; ``ValueError`` saying what is wrong."""
    from moviechat_desktop.service import remote_wire as wire

    if not isinstance(body, dict):
        raise wire.WireError("the job request must be an object")
    try:
        paths = paths_mod.check_paths(body.get("paths"))
    except ValueError as err:
        raise wire.WireError(str(err)) from None
    sampling = defaults
    if body.get("sampling") is not None:
        sampling = wire.sampling_from_wire(body["sampling"])
    return paths, sampling


# --------------------------------------------------------------------------- the book
class JobBook:
    """The server's jobs (see module docstring). Thread-safe; one runner thread."""

    def __init__(
        self,
        backend_factory: Callable[[], FragmentBackend],
        settings: AppSettings | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self._backend_factory = backend_factory
        self._backend: FragmentBackend | None = None
        self._jobs: OrderedDict[str, LibraryJob] = OrderedDict()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._runner = threading.Thread(target=self._run, name="library-jobs", daemon=True)
        self._runner.start()

    # ------------------------------------------------------------------ requests
    def submit(self, body: Any) -> dict[str, Any]:
        """A new job (or the unfinished one with the same paths and settings); its progress."""
        paths, sampling = job_from_request(body, self.settings.sampling)
        try:
            candidates = paths_mod.scan(paths)  # checked now: a bad path is told at once
        except ValueError as err:  # too many films
            from moviechat_desktop.service.remote_wire import WireError

            raise WireError(str(err)) from None
        with self._lock:
            for job in self._jobs.values():
                if not job.finished and job.paths == paths and job.sampling == sampling:
                    return job.progress()  # a client that came back: the same job
            films = [
                FilmProgress(c.path, status="failed" if c.error else "waiting", error=c.error)
                for c in candidates
            ]
            job = LibraryJob(secrets.token_hex(8), paths, sampling, films)
            self._jobs[job.job_id] = job
            self._forget_old()
            self._wake.notify_all()
            return job.progress()

    def progress(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return self._job(job_id).progress()

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop the job: fragments in flight are dropped, the ones written stay in the cache."""
        with self._lock:
            job = self._job(job_id)
            job.cancel_event.set()
            if job.state == "queued":
                self._end(job, "cancelled")
            return job.progress()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.cancel_event.set()
            self._wake.notify_all()
        self._runner.join(timeout=30)

    def _job(self, job_id: str) -> LibraryJob:
        job = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise JobNotFound(
                f"no library job {job_id!r} on the server (it may have restarted): "
                "submit the films again, what is encoded is kept"
            )
        return job

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished]
        for job in finished[: max(0, len(finished) - KEPT_JOBS)]:
            del self._jobs[job.job_id]

    @staticmethod
    def _end(job: LibraryJob, state: str) -> None:
        job.state, job.current, job.finished_at = state, None, time.time()
        for film in job.films:
            if film.status in ("waiting", "encoding"):
                film.status = "cancelled" if state == "cancelled" else film.status

    # ------------------------------------------------------------------ the runner
    def _next_job(self) -> LibraryJob | None:
        with self._lock:
            while not self._closed:
                job = next((j for j in self._jobs.values() if j.state == "queued"), None)
                if job is not None:
                    job.state = "running"
                    return job
                self._wake.wait()
            return None

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                self.run_job(job)
            except Exception as err:  # never a dead runner: the job says why
                log.exception("library job %s failed", job.job_id)
                job.error = _one_line(err)
            # a cancel that came after the last fragment changes nothing: the job is done
            unfinished = any(f.status in ("waiting", "encoding", "cancelled") for f in job.films)
            with self._lock:
                self._end(job, "cancelled" if job.cancel_event.is_set() and unfinished else "done")

    def backend(self) -> FragmentBackend:
        if self._backend is None:
            self._backend = self._backend_factory()
        return self._backend

    def run_job(self, job: LibraryJob) -> None:
        """Plan every film (so the total is known early), then encode them in order."""
        for film in job.films:
            if job.cancel_event.is_set():
                return
            if film.status == "waiting":
                plan_film(film, job.sampling)
        if not any(f.status == "waiting" for f in job.films):
            return
        try:
            backend = self.backend()
        except MovieChatError as err:
            job.error = f"the encoders could not start: {err}"
            for film in job.films:
                if film.status == "waiting":
                    film.status, film.error = "failed", job.error
            return
        for film in job.films:
            if job.cancel_event.is_set():
                return
            if film.status != "waiting":
                continue
            job.current = film
            film.status = "encoding"
            try:
                encode_film(film, job, backend, self.settings)
            except MovieChatError as err:
                film.status, film.error = "failed", str(err)
            except Exception as err:
                log.exception("encoding %s failed", film.path)
                film.status, film.error = "failed", _one_line(err)
            film.plan = None if film.status == "ready" else film.plan  # memory: plans of 100k


# --------------------------------------------------------------------------- one film
def plan_film(film: FilmProgress, sampling: SamplingSettings) -> None:
    """Probe the film and plan its fragments; a film that is not one fails with why."""
    from moviechat_desktop.engine.video.probe import probe
    from moviechat_desktop.engine.video.sampling import plan_for_settings

    try:
        film.info = probe(film.path)
        film.plan = plan_for_settings(film.info, sampling)
    except VideoError as err:
        film.status, film.error = "failed", f"not a video the server can read ({err})"
        return
    except (MovieChatError, OSError) as err:
        film.status, film.error = "failed", str(err)
        return
    except Exception as err:  # a reader's own failure: this film only
        log.exception("probing %s failed", film.path)
        film.status, film.error = "failed", f"cannot be probed ({_one_line(err)})"
        return
    film.fragments_total = len(film.plan.fragments)


def encode_film(
    film: FilmProgress, job: LibraryJob, backend: FragmentBackend, settings: AppSettings
) -> None:
    """Encode the film's fragments the cache does not hold yet, writing each as it comes."""
    import numpy as np
    import torch

    from moviechat_desktop.engine.memory.film_memory import FilmMemory
    from moviechat_desktop.engine.store.film_store import FilmStore

    plan = film.plan
    store = FilmStore(Path(film.path), keep_history=False)
    if store.film_id is None:
        raise MovieChatError("the server cannot read the file to fingerprint it")
    memory = FilmMemory(backend.memory_config)
    try:
        store.attach_cache(backend.identity, job.sampling, settings.cache, plan, memory)
        if store.entry is None:
            raise MovieChatError("the server's memory cache is unavailable (see its log)")
        restored = set(memory.fragment_indices())
        film.from_cache = len(restored)
        missing = [f for f in plan.fragments if f.index not in restored]
        if missing and not store.entry.writable:
            raise MovieChatError(
                "its memory is being written by another process on the server (a window or "
                "another job): run the job again once that is done"
            )
        pending: dict[Any, Any] = {}  # handle -> fragment
        queue = collections.deque(missing)
        while queue or pending:
            if job.cancel_event.is_set():
                backend.cancel(list(pending))
                film.status = "cancelled"
                return
            while queue and len(pending) < backend.window:
                fragment = queue.popleft()
                indices = list(fragment.frame_indices)
                handle = backend.submit(film.info, indices, job.sampling.exact_frames)
                pending[handle] = fragment
            for handle, result in backend.wait(list(pending), POLL_S):
                fragment = pending.pop(handle)
                if isinstance(result, BaseException):
                    cause = getattr(result, "cause", None)  # Ray's wrapper: the worker's error
                    cause = cause if isinstance(cause, BaseException) else result
                    if isinstance(cause, VideoDecodeError):
                        film.damaged += 1  # skipped, as the local engine does (memory/gaps.py)
                        film.gaps.add(
                            fragment.index, fragment.start_s, fragment.end_s, _one_line(cause)
                        )
                        continue
                    backend.cancel(list(pending))
                    raise MovieChatError(f"fragment {fragment.index} failed: {_one_line(cause)}")
                # a copy: Ray hands back read-only arrays, and the cache rounds the memory's
                # tensors in place when it writes them
                tokens = torch.from_numpy(np.array(result, dtype=np.float32))
                memory.add_fragment(
                    fragment.index,
                    tokens,
                    fragment.timestamps,
                    start_s=fragment.start_s,
                    end_s=fragment.end_s,
                )
                store.save_fragment(memory, fragment.index)
                if store.entry is None:  # a disk error: logged by the store
                    backend.cancel(list(pending))
                    raise MovieChatError("the server could not write the memory cache (disk?)")
                film.encoded += 1
        if film.damaged and film.damaged == film.fragments_total:
            raise VideoDecodeError(
                f"'{film.name}' is damaged: none of its pictures can be decoded."
            )  # as the local engine says it
        film.status = "ready"
    finally:
        store.close()


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(err).__name__}: {first[:300]}" if first else type(err).__name__


__all__ = [
    "FilmProgress",
    "FragmentBackend",
    "JobBook",
    "JobNotFound",
    "LibraryJob",
    "LocalLibrary",
    "encode_film",
    "plan_film",
]


class LocalLibrary:
    """The async face the HTTP routes call, over a ``JobBook`` in this process (the Ray
    server uses ``library_job_ray.RayLibrary`` instead)."""

    def __init__(self, book: JobBook) -> None:
        self.book = book

    async def submit(self, body: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.book.submit, body)

    async def progress(self, job_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.book.progress, job_id)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.book.cancel, job_id)
