"""The Ray Serve deployment of the remote engine, and starting/stopping it.

``MovieChatServer`` is defined at module level so Ray imports it by name in each replica (the
replica then serves ``serve_app.app`` with its own ``FilmService``). Every replica loads the
model once; with GPUs in the cluster each replica takes one. Films are multiplexed by their
id: Serve's router sends a film's requests to a replica that already holds it.
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from typing import Any

from ray import serve

from moviechat_desktop.engine.errors import MovieChatError
from moviechat_desktop.service.remote_films import FilmService
from moviechat_desktop.service.serve_app import app, install_replica, token_digest

log = logging.getLogger(__name__)

APP_NAME = "moviechat"
MAX_FILMS_PER_REPLICA = 8


@serve.deployment(name="moviechat", max_ongoing_requests=64)
@serve.ingress(app)
class MovieChatServer:
    """One replica: one model, up to ``MAX_FILMS_PER_REPLICA`` open films."""

    def __init__(self, model_dir: str | None, digest: str) -> None:
        from moviechat_desktop.service.library_job_ray import RayLibrary

        service = FilmService(model_dir=model_dir, max_films=MAX_FILMS_PER_REPLICA)
        service.load()
        install_replica(service, digest, self, library=RayLibrary())

    @serve.multiplexed(max_num_models_per_replica=MAX_FILMS_PER_REPLICA)
    async def film_slot(self, film_id: str) -> str:
        return film_id  # a marker for the router: the film's memory lives in the FilmService


def check_port_free(host: str, port: int) -> None:
    """``MovieChatError`` when ``host:port`` cannot be bound (in use, not an address here)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise MovieChatError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def start(
    model_dir: str | Path | None,
    token: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    address: str | None = None,
    num_cpus: int | None = None,
    temp_dir: str | None = None,
    env_vars: dict[str, str] | None = None,
) -> None:
    """Start (or join, with ``address``) a Ray cluster and deploy the engine; returns once the
    replicas have loaded the model and the HTTP proxy accepts requests."""
    import ray

    if replicas < 1:
        raise MovieChatError("--replicas must be at least 1")
    if address is None:
        check_port_free(host, port)
    init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if env_vars:
        init["runtime_env"] = {"env_vars": env_vars}
    if address is not None:
        ray.init(address=address, **init)
    else:
        ray.init(num_cpus=num_cpus, _temp_dir=temp_dir, **init)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus and replicas > gpus:
            raise MovieChatError(
                f"--replicas {replicas} needs {replicas} GPUs; the cluster has {gpus:g}"
            )
        from moviechat_desktop.service.library_job_ray import ENCODER_GPU_SHARE, start_coordinator

        start_coordinator(model_dir)  # library jobs (encode films the cluster reads itself)
        serve.start(http_options={"host": host, "port": port})
        # each GPU also holds a library job's frame encoder (ENCODER_GPU_SHARE of it)
        server = MovieChatServer.options(
            num_replicas=replicas,
            ray_actor_options={"num_gpus": 1 - ENCODER_GPU_SHARE if gpus else 0, "num_cpus": 1},
        )
        model = None if model_dir is None else str(Path(model_dir).resolve())
        serve.run(server.bind(model, token_digest(token)), name=APP_NAME, route_prefix="/")
    except BaseException as err:
        stop()
        if isinstance(err, MovieChatError | KeyboardInterrupt | SystemExit):
            raise
        # Ray's own failures (an actor that died while starting, a timeout): one line
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise MovieChatError(f"the server did not start ({type(err).__name__}: {first})") from err


def stop(timeout_s: float = 10.0) -> None:
    """Shut the deployment and this process's Ray connection down (idempotent).

    A Ctrl-C in a terminal reaches Ray's own processes too (same process group): Serve's
    controller may then be gone and ``serve.shutdown`` would wait 30 s for it, so it gets
    ``timeout_s`` before Ray itself is shut down (which ends the processes it started).
    """
    import ray

    try:
        if ray.is_initialized():
            worker = threading.Thread(target=serve.shutdown, name="serve-shutdown", daemon=True)
            worker.start()
            worker.join(timeout_s)
            if worker.is_alive():
                log.warning("Serve did not shut down within %.0f s; stopping Ray", timeout_s)
    finally:
        ray.shutdown()
