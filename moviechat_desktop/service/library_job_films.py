"""Films the server reads itself (``ask --server URL --on-server PATH``), on a replica.

``identify`` (any replica, off the model thread) checks the path as a library job does,
probes and fingerprints the film and plans it with the client's sampling settings: the client
then knows the film's id (its content fingerprint, the Serve routing key) and plan.
``open_server_film`` (``FilmService.open`` with ``server_path`` in the body) opens it with
``Assistant.open``: the server decodes the film itself, so its memory is the one a library job
or a local ``encode`` builds (no frame transport in the cache key) and breakpoint pictures are
grabbed there. ``encode_next`` encodes the next fragment on the replica (a film only partly
built by a library job is finished this way).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.errors import MovieChatError, VideoError
from moviechat_desktop.service import library_job_paths as paths_mod
from moviechat_desktop.service import remote_wire as wire

if TYPE_CHECKING:
    from moviechat_desktop.service.remote_films import FilmService


def _checked_path(body: Any, key: str) -> str:
    if not isinstance(body, dict):
        raise wire.WireError("the request must be an object")
    try:
        (path,) = paths_mod.check_paths([body.get(key)])
    except ValueError:
        raise wire.WireError(f"{key} must be a film's path on the server") from None
    if Path(path).expanduser().is_dir():
        raise VideoError(f"{path}: a folder; name one film")
    (candidate,) = paths_mod.scan([path])  # a file: one candidate
    if candidate.error is not None:
        raise VideoError(f"{path}: {candidate.error}")
    return candidate.path


def identify(body: Any) -> dict[str, Any]:
    """``{"path", "sampling"}`` → the film's id, description and plan (blocking: probes)."""
    from moviechat_desktop.engine.store.fingerprint import file_fingerprint
    from moviechat_desktop.engine.video.probe import probe
    from moviechat_desktop.engine.video.sampling import plan_for_settings

    path = _checked_path(body, "path")
    sampling = wire.sampling_from_wire(body.get("sampling"))
    info = probe(path)
    plan = plan_for_settings(info, sampling)
    try:
        film_id = file_fingerprint(info.path)
    except OSError as err:
        raise VideoError(f"cannot read '{info.path.name}': {err.strerror or err}") from None
    return {
        "film_id": film_id,
        "info": wire.info_to_wire(info),
        "plan": wire.plan_to_wire(plan),
    }


def open_server_film(service: FilmService, film_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Open (or keep open) the film at ``body["server_path"]`` on this replica; its state."""
    from moviechat_desktop.engine.assistant import Assistant

    wire.check_film_id(film_id)
    path = _checked_path(body, "server_path")
    sampling = wire.sampling_from_wire(body.get("sampling"))
    use_cache = body.get("use_cache", True)
    if not isinstance(use_cache, bool):
        raise wire.WireError("use_cache must be true or false")
    films = service._films
    current = films.get(film_id)
    if (
        current is not None
        and current.frame_transport is None
        and current.settings.sampling == sampling
        and current.use_cache == use_cache
    ):
        films.move_to_end(film_id)
        current.retry_gaps()  # a reopen tries the damaged parts again, as locally
        state = service.state(film_id)
        state["cache_restored"] = state["status"]["fragments_done"]
        return state
    settings = dataclasses.replace(service.settings, sampling=sampling)
    assistant = Assistant(settings=settings, model_dir=service._base.model_dir, use_cache=use_cache)
    assistant.use_model_of(service._base)
    assistant.open(path)
    if assistant.film_id != film_id:
        assistant.close()
        raise MovieChatError(f"{path} changed on the server since it was identified: open it again")
    if current is not None:
        current.close()
    films[film_id] = assistant
    films.move_to_end(film_id)
    while len(films) > service._max_films:
        _, oldest = films.popitem(last=False)
        oldest.close()  # its memory stays in the cache
    return service.state(film_id)


def encode_next(service: FilmService, film_id: str) -> dict[str, Any]:
    """Encode the next fragment of a film the server reads itself; the film's state."""
    service.film(film_id).encode_step()
    return service.state(film_id)
