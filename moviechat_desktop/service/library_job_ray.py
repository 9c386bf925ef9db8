"""Library jobs on the Ray cluster: the coordinator actor, the encoder pool, the decode tasks.

* ``LibraryCoordinator``: one named actor (``moviechat-library`` in the ``moviechat``
  namespace) started by ``serve`` on its own node, so the memory it writes is that node's
  cache, the one the server's replicas there read. It holds the ``JobBook`` (the jobs, run one
  after another); every replica reaches it by name (``RayLibrary``), so any replica can answer
  a job's progress. Ray restarts it if it dies (its jobs are then forgotten: the client submits
  again and the cache makes that a resume).
* Fragment work (``RayFragmentBackend``): each fragment is a Ray task ``_decode`` (one CPU,
  any node: decoding dominates on real films, so it spreads over every CPU of the cluster;
  the film's path must be readable there, e.g. a shared mount) whose frames go, through the
  object store, to an ``EncoderWorker`` actor holding the frame encoder. The pool: one worker
  per GPU, each taking ``ENCODER_GPU_SHARE`` of it (the replica on that GPU takes the rest),
  or, on a cluster without GPUs, one worker per node. The pool is started by the first job
  and kept for the next ones. Ray retries a decode task or an encoder call whose worker died.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ray

from moviechat_desktop.engine.errors import MovieChatError
from moviechat_desktop.service.library_job import JobBook, JobNotFound
from moviechat_desktop.service.library_job_encoder import FilmFrameEncoder, decode_fragment

log = logging.getLogger(__name__)

NAMESPACE = "moviechat"
COORDINATOR = "moviechat-library"
ENCODER_GPU_SHARE = 0.25  # of each GPU, for its frame encoder (the replica takes the rest)
START_TIMEOUT_S = 600.0  # the encoders loading their weights


def encoder_pool(cluster_gpus: float, alive_nodes: int) -> tuple[int, float]:
    """How many encoder workers and the GPU share of each (0: CPU workers)."""
    if cluster_gpus >= 1:
        return int(cluster_gpus), ENCODER_GPU_SHARE
    return max(1, alive_nodes), 0.0


def fragment_window(cluster_cpus: float, workers: int) -> int:
    """Fragments in flight: enough for every CPU to decode and every encoder to have a next one."""
    return max(2, int(cluster_cpus) + 2 * workers)


@ray.remote(num_cpus=1, max_retries=3)
def _decode(info: Any, frame_indices: list[int], size: int, exact: bool) -> Any:
    return decode_fragment(info, frame_indices, size, exact)


@ray.remote(num_cpus=0, max_restarts=3, max_task_retries=3)
class EncoderWorker:
    """The frame encoder on one node (``FilmFrameEncoder``)."""

    def __init__(self, model_dir: str | None, model_settings: Any) -> None:
        self._encoder = FilmFrameEncoder(model_dir, model_settings)

    def describe(self) -> dict[str, Any]:
        encoder = self._encoder
        return {
            "identity": encoder.identity,
            "image_size": encoder.image_size,
            "memory_config": encoder.memory_config,
            "label": encoder.label,
        }

    def encode(self, frames: Any) -> Any:
        return self._encoder.encode(frames)


class RayFragmentBackend:
    """``library_job.FragmentBackend`` on the cluster (see module docstring)."""

    def __init__(self, model_dir: str | None, model_settings: Any) -> None:
        resources = ray.cluster_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        count, share = encoder_pool(resources.get("GPU", 0.0), len(nodes))
        options: dict[str, Any] = (
            {"num_gpus": share} if share else {"scheduling_strategy": "SPREAD"}
        )
        self._workers = [
            EncoderWorker.options(**options).remote(model_dir, model_settings) for _ in range(count)
        ]
        self._load = [0] * count  # fragments in flight per worker
        try:
            described = ray.get(
                [w.describe.remote() for w in self._workers], timeout=START_TIMEOUT_S
            )
        except Exception as err:
            for worker in self._workers:
                ray.kill(worker)
            cause = getattr(err, "cause", None) or err
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
            raise MovieChatError(f"{type(cause).__name__}: {first}") from None
        if any(d["identity"] != described[0]["identity"] for d in described):
            labels = sorted({d["label"] for d in described})
            raise MovieChatError(
                f"the cluster's nodes encode differently ({', '.join(labels)}): their memories "
                "would not mix; give every node the same weights and device kind"
            )
        first = described[0]
        self.identity = first["identity"]
        self.image_size = int(first["image_size"])
        self.memory_config = first["memory_config"]
        self.label = ", ".join(sorted({d["label"] for d in described}))
        self.window = fragment_window(resources.get("CPU", 1.0), count)
        self._inflight: dict[Any, tuple[Any, int]] = {}  # tokens ref -> (frames ref, worker)
        log.info(
            "library encoders: %d (%s), %d fragments in flight", count, self.label, self.window
        )

    def submit(self, info: Any, frame_indices: list[int], exact: bool) -> Any:
        frames = _decode.remote(info, frame_indices, self.image_size, exact)
        chosen = min(range(len(self._workers)), key=self._load.__getitem__)
        self._load[chosen] += 1
        tokens = self._workers[chosen].encode.remote(frames)
        self._inflight[tokens] = (frames, chosen)
        return tokens

    def _settle(self, ref: Any) -> None:
        entry = self._inflight.pop(ref, None)
        if entry is not None:
            self._load[entry[1]] -= 1

    def wait(self, handles: list[Any], timeout_s: float) -> list[tuple[Any, Any]]:
        if not handles:
            return []
        ready, rest = ray.wait(handles, num_returns=1, timeout=timeout_s)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        results = []
        for ref in ready:
            self._settle(ref)
            try:
                results.append((ref, ray.get(ref)))
            except Exception as err:  # RayTaskError (its cause: the worker's exception)
                results.append((ref, err))
        return results

    def cancel(self, handles: list[Any]) -> None:
        for ref in handles:
            entry = self._inflight.get(ref)
            self._settle(ref)
            for target in (entry[0] if entry else None, ref):
                if target is None:
                    continue
                try:
                    ray.cancel(target)
                except Exception as err:  # already finished, or an actor call Ray keeps
                    log.debug("cancel: %s", err)


@ray.remote(num_cpus=0, max_concurrency=8, max_restarts=3)
class LibraryCoordinator:
    """The server's ``JobBook`` (see module docstring)."""

    def __init__(self, model_dir: str | None) -> None:
        from moviechat_desktop.engine.settings import load_settings

        settings = load_settings()
        self._book = JobBook(lambda: RayFragmentBackend(model_dir, settings.model), settings)

    def call(self, method: str, *args: Any) -> dict[str, Any]:
        """``submit`` / ``progress`` / ``cancel``: ``{"ok": ...}`` or ``{"error": ...}``."""
        if method not in ("submit", "progress", "cancel"):
            return {"error": {"type": "MovieChatError", "message": f"no method {method}"}}
        try:
            return {"ok": getattr(self._book, method)(*args)}
        except MovieChatError as err:
            return {"error": {"type": type(err).__name__, "message": str(err)}}


def start_coordinator(model_dir: str | Path | None) -> Any:
    """The coordinator on this node (started once; a server joining a cluster that has one
    uses it). Called by ``serve`` after ``ray.init``."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    model = None if model_dir is None else str(Path(model_dir).resolve())
    handle = LibraryCoordinator.options(
        name=COORDINATOR,
        namespace=NAMESPACE,
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    ).remote(model)
    _HELD[:] = [handle]  # Ray ends an actor nobody holds a handle to: serve holds this one
    return handle


_HELD: list[Any] = []


class RayLibrary:
    """What a replica's routes call (async): the coordinator, found by name."""

    def __init__(self) -> None:
        self._actor: Any = None

    def _coordinator(self) -> Any:
        if self._actor is None:
            try:
                self._actor = ray.get_actor(COORDINATOR, namespace=NAMESPACE)
            except ValueError:
                raise MovieChatError(
                    "library jobs are not available: the server's job coordinator is not "
                    "running (restart the server)"
                ) from None
        return self._actor

    async def _call(self, method: str, *args: Any) -> Any:
        from moviechat_desktop.service.remote_wire import WireError

        try:
            reply = await self._coordinator().call.remote(method, *args)
        except ray.exceptions.RayActorError:
            self._actor = None
            raise MovieChatError("the server's job coordinator stopped: try again") from None
        if "error" in reply:
            kind = {"JobNotFound": JobNotFound, "WireError": WireError}.get(
                reply["error"]["type"], MovieChatError
            )
            raise kind(reply["error"]["message"])
        return reply["ok"]

    async def submit(self, body: Any) -> dict[str, Any]:
        return await self._call("submit", body)

    async def progress(self, job_id: str) -> dict[str, Any]:
        return await self._call("progress", job_id)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return await self._call("cancel", job_id)
