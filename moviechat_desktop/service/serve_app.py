"""The remote engine's HTTP API (FastAPI) and its Ray Serve deployment.

Every request needs ``Authorization: Bearer <token>`` (401 otherwise; the server keeps only the
token's SHA-256). Bodies are size-limited before they are read and every value is validated
(``remote_wire``). Routes (all under ``/v1``):

    GET    /info                               the model and the frame transport
    PUT    /films/{film}                       open a film from its metadata and sampling plan
    GET    /films/{film}                       its encoding state
    DELETE /films/{film}                       close it (its memory stays in the cache)
    PUT    /films/{film}/fragments/{i}         one fragment's frames (JPEG) → encoded
    PUT    /films/{film}/gaps/{i}              fragment i cannot be decoded: {"reason"} → a gap
    PUT    /films/{film}/dialogue              its dialogue: timed lines, or speech (below)
    PUT    /films/{film}/speech/{i}            speech chunk i as Ogg Opus → its recognised lines
    POST   /films/{film}/ask                   a question → NDJSON stream of chunks
    POST   /films/{film}/conversations         start a new conversation
    GET    /films/{film}/conversations         the film's conversations
    POST   /films/{film}/conversations/{c}     continue conversation c
    GET    /films/{film}/conversations/{c}     its messages ("current": the current one)
    GET    /films/{film}/conversations/{c}/markdown
    POST   /cache/clear                        delete unused cached memories
    POST   /library/films                      a film the server reads itself: id and plan
    POST   /films/{film}/encode                encode its next fragment (the server decodes)
    POST   /library/jobs                       encode films the server reads itself (a job)
    GET    /library/jobs/{job}                 the job's progress
    DELETE /library/jobs/{job}                 cancel it (what is encoded stays cached)

The answer stream is one JSON object per line: ``{"chunk": "..."}`` as the model produces text,
then ``{"done": {...}}`` (what the answer used) or ``{"error": {...}}``. When the client goes
away mid-answer the generation is cancelled.

Ray is imported only by ``serve_deployment``: the FastAPI app runs (and is tested) without
it. With Serve, one film's requests carry the ``serve_multiplexed_model_id`` header (the film
id) so they reach the replica that holds its memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from moviechat_desktop.engine.errors import MovieChatError, NotReady
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.service import remote_wire as wire
from moviechat_desktop.service.dialogue_wire import MAX_AUDIO_BODY, DialogueMissing
from moviechat_desktop.service.remote_films import FilmNotOpen, FilmService

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"

# Set in a Serve replica by the deployment's constructor (see ``deployment``).
_REPLICA: dict[str, Any] = {}


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --------------------------------------------------------------------------- request plumbing
def _state(request: Request) -> dict[str, Any]:
    state = getattr(request.app.state, "moviechat", None)
    return state if state is not None else _REPLICA


def _authorized(request: Request) -> bool:
    expected = _state(request).get("token_digest")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return bool(
        expected
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token_digest(token.strip()), expected)
    )


async def _require_token(request: Request, call_next: Any) -> Any:
    """Every request, whatever its path (an unknown one too), needs the token."""
    if not _authorized(request):
        return JSONResponse(
            {"error": {"type": "Unauthorized", "message": "a valid bearer token is required"}},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return await call_next(request)


async def _service(request: Request) -> FilmService:
    state = _state(request)
    service = state.get("service")
    if service is None:
        raise HTTPException(503, "the engine is not ready")
    film_id = request.path_params.get("film_id")
    replica = state.get("replica")
    if film_id and replica is not None:  # register the film with this replica (affinity)
        await replica.film_slot(film_id)
    return service


Service = Annotated[FilmService, Depends(_service)]


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(413, f"the request body is larger than {limit} bytes")
    parts, total = [], 0
    async for part in request.stream():
        total += len(part)
        if total > limit:
            raise HTTPException(413, f"the request body is larger than {limit} bytes")
        parts.append(part)
    return b"".join(parts)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await _body(request, wire.MAX_JSON_BODY))
    except (ValueError, UnicodeDecodeError):
        raise wire.WireError("the request body is not JSON") from None


def _error_response(status: int, err: BaseException) -> JSONResponse:
    return JSONResponse({"error": wire.error_to_wire(err)}, status_code=status)


def _status_for(err: MovieChatError) -> int:
    if isinstance(getattr(err, "http_status", None), int):
        return err.http_status  # type: ignore[attr-defined]
    if isinstance(err, wire.WireError):
        return 400
    if isinstance(err, FilmNotOpen):
        return 404
    if isinstance(err, NotReady | DialogueMissing):
        return 409
    return 422


# --------------------------------------------------------------------------- the app
def build_app(
    service: FilmService | None = None, token: str | None = None, library: Any = None
) -> FastAPI:
    """The FastAPI app. With ``service`` and ``token`` it serves them (tests, no Ray); without,
    it serves what the Serve replica's constructor puts in ``_REPLICA``."""
    app = FastAPI(
        title="MovieChat Desktop engine",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.middleware("http")(_require_token)
    if service is not None:
        app.state.moviechat = {"service": service, "token_digest": token_digest(token or "")}
        app.state.moviechat["library"] = library

    @app.exception_handler(MovieChatError)
    async def engine_error(_request: Request, err: MovieChatError) -> JSONResponse:
        return _error_response(_status_for(err), err)

    @app.exception_handler(ValueError)
    async def value_error(_request: Request, err: ValueError) -> JSONResponse:
        return _error_response(400, wire.WireError(str(err)))

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, err: Exception) -> JSONResponse:
        log.exception("request failed")
        return _error_response(500, MovieChatError(f"internal server error ({type(err).__name__})"))

    prefix = wire.API_PREFIX

    @app.get(prefix + "/info")
    async def info(service: Service) -> Any:
        return await service.run(service.info)

    @app.put(prefix + "/films/{film_id}")
    async def open_film(film_id: str, request: Request, service: Service) -> Any:
        body = await _json(request)
        return await service.run(service.open, film_id, body)

    @app.get(prefix + "/films/{film_id}")
    async def film_state(film_id: str, service: Service) -> Any:
        return await service.run(service.state, film_id)

    @app.delete(prefix + "/films/{film_id}")
    async def close_film(film_id: str, service: Service) -> Any:
        return await service.run(service.close, film_id)

    @app.put(prefix + "/films/{film_id}/fragments/{index}")
    async def upload(film_id: str, index: int, request: Request, service: Service) -> Any:
        body = await _body(request, wire.MAX_FRAMES_BODY)
        return await service.run(service.upload, film_id, index, body)

    @app.put(prefix + "/films/{film_id}/gaps/{index}")
    async def gap(film_id: str, index: int, request: Request, service: Service) -> Any:
        body = await _json(request)
        return await service.run(service.skip, film_id, index, body)

    @app.put(prefix + "/films/{film_id}/dialogue")
    async def dialogue(film_id: str, request: Request, service: Service) -> Any:
        body = await _json(request)
        return await service.run(service.set_dialogue, film_id, body)

    @app.put(prefix + "/films/{film_id}/speech/{index}")
    async def speech(film_id: str, index: int, request: Request, service: Service) -> Any:
        body = await _body(request, MAX_AUDIO_BODY)
        language = request.query_params.get("language", "auto")
        return await service.run(service.recognise_speech, film_id, index, body, language)

    @app.post(prefix + "/films/{film_id}/ask")
    async def ask(film_id: str, request: Request, service: Service) -> Any:
        body = await _json(request)
        cancel = CancelToken()
        answer, first = await service.run(service.begin_ask, film_id, body, cancel)
        return StreamingResponse(
            _answer_lines(service, film_id, answer, first, cancel), media_type=NDJSON
        )

    @app.post(prefix + "/films/{film_id}/conversations")
    async def new_conversation(film_id: str, service: Service) -> Any:
        return await service.run(service.new_conversation, film_id)

    @app.get(prefix + "/films/{film_id}/conversations")
    async def conversations(film_id: str, service: Service) -> Any:
        return await service.run(service.conversations, film_id)

    @app.post(prefix + "/films/{film_id}/conversations/{conversation_id}")
    async def open_conversation(film_id: str, conversation_id: str, service: Service):
        return await service.run(service.open_conversation, film_id, conversation_id)

    @app.get(prefix + "/films/{film_id}/conversations/{conversation_id}")
    async def records(film_id: str, conversation_id: str, service: Service) -> Any:
        wanted = None if conversation_id == "current" else conversation_id
        return await service.run(service.conversation_records, film_id, wanted)

    @app.get(prefix + "/films/{film_id}/conversations/{conversation_id}/markdown")
    async def markdown(film_id: str, conversation_id: str, service: Service) -> Any:
        wanted = None if conversation_id == "current" else conversation_id
        text = await service.run(service.export_markdown, film_id, wanted)
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")

    @app.post(prefix + "/cache/clear")
    async def clear_cache(service: Service) -> Any:
        return await service.run(service.clear_cache)

    @app.post(prefix + "/library/films")
    async def identify_server_film(request: Request) -> Any:
        from moviechat_desktop.service.library_job_films import identify

        return await asyncio.to_thread(identify, await _json(request))

    @app.post(prefix + "/films/{film_id}/encode")
    async def encode_server_film(film_id: str, service: Service) -> Any:
        from moviechat_desktop.service.library_job_films import encode_next

        return await service.run(encode_next, service, film_id)

    @app.post(prefix + "/library/jobs")
    async def submit_library_job(request: Request) -> Any:
        return await _library(request).submit(await _json(request))

    @app.get(prefix + "/library/jobs/{job_id}")
    async def library_job(job_id: str, request: Request) -> Any:
        return await _library(request).progress(job_id)

    @app.delete(prefix + "/library/jobs/{job_id}")
    async def cancel_library_job(job_id: str, request: Request) -> Any:
        return await _library(request).cancel(job_id)

    return app


def _line(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, ensure_ascii=False) + "\n").encode()


async def _answer_lines(
    service: FilmService, film_id: str, answer: Any, first: str | None, cancel: CancelToken
) -> AsyncIterator[bytes]:
    """The answer's NDJSON lines; cancels the generation when the client goes away."""
    finished = False
    try:
        chunk = first
        while chunk is not None:
            yield _line({"chunk": chunk})
            chunk = await service.run(next, answer, None)
        finished = True
        yield _line({"done": await service.run(service.finish_ask, film_id)})
    except MovieChatError as err:
        finished = True
        yield _line({"error": wire.error_to_wire(err)})
    except asyncio.CancelledError:
        raise
    except Exception as err:  # never a silent cut: the client is told
        log.exception("answer failed")
        finished = True
        yield _line({"error": wire.error_to_wire(MovieChatError(f"the answer failed ({err})"))})
    finally:
        if not finished:
            cancel.cancel()
            await asyncio.shield(service.run(answer.close))


# The app Serve runs: it finds its service through ``_REPLICA`` (module level, so a replica
# importing this module gets this very object; see ``serve_deployment``).
app = build_app()


def _library(request: Request) -> Any:
    """Library jobs (``library_job``): served by the Ray server's job coordinator."""
    library = _state(request).get("library")
    if library is None:
        raise HTTPException(503, "library jobs need the Ray server (moviechat-desktop serve)")
    return library


def install_replica(service: FilmService, digest: str, replica: Any, library: Any = None) -> None:
    """Called by the Serve replica's constructor: what ``app`` serves in this process."""
    _REPLICA.update(service=service, token_digest=digest, replica=replica, library=library)
