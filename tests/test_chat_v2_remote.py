"""Regenerate and Edit through the remote engine (FastAPI app over Starlette's TestClient, the
tiny model, ``RemoteEngine`` as the client): the server keeps both turns and its model
context follows the branch; a breakpoint question regenerated sends its picture again."""

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from moviechat_desktop.engine.errors import NotReady
from moviechat_desktop.engine.model.llm import GenerationSettings
from moviechat_desktop.engine.settings import AppSettings, SamplingSettings
from moviechat_desktop.engine.store.chat_history import current_branch
from moviechat_desktop.service.remote_client import RemoteEngine
from moviechat_desktop.service.remote_films import FilmService
from moviechat_desktop.service.serve_app import build_app

TOKEN = "test-token-v2"
GREEDY = GenerationSettings(greedy=True, max_new_tokens=8)


def small_settings() -> AppSettings:
    return AppSettings(sampling=SamplingSettings(n_fragments=6, frames_per_fragment=8))


@pytest.fixture(scope="module")
def service(reference_dir):
    svc = FilmService(model_dir=reference_dir, settings=small_settings())
    svc.load()
    yield svc
    svc.shutdown()


@pytest.fixture
def remote(service, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with TestClient(build_app(service, TOKEN), base_url="http://testserver") as http:
        engine = RemoteEngine("http://testserver", token_file, settings=small_settings(), http=http)
        yield engine
        engine.close()
    service._executor.submit(service.close_all).result()


def test_regenerate_and_edit_over_the_server(remote, vtest_avi):
    remote.open(vtest_avi)
    remote.encode()
    remote.new_conversation()
    first = "".join(remote.ask("What happens?", settings=GREEDY))
    q1 = remote.last_answer.question_id
    "".join(remote.ask("What is he holding?", "breakpoint", at_s=30.0, settings=GREEDY))
    q2, prompt2 = remote.last_answer.question_id, remote.last_answer.prompt
    "".join(remote.ask("And then?", settings=GREEDY))
    assert q1 and q2 and q1 != q2

    uploaded = remote.bytes_uploaded
    "".join(remote.regenerate(q2, settings=GREEDY))
    assert remote.bytes_uploaded > uploaded, "the breakpoint picture went with it"
    assert remote.last_answer.prompt == prompt2 and "And then?" not in prompt2
    assert remote.last_answer.question_id == q2
    records = remote.conversation_records()
    assert len(records) == 7 and records[-1].replaces == records[3].id
    assert [r.text for r in current_branch(records)][:3] == [
        "What happens?", first, "What is he holding?",
    ]  # fmt: skip

    "".join(remote.edit_question(q1, "What happens first?", settings=GREEDY))
    assert "What happens?" not in remote.last_answer.prompt
    assert "What is he holding?" not in remote.last_answer.prompt
    records = remote.conversation_records()
    branch = current_branch(records)
    assert len(records) == 9 and branch[0].text == "What happens first?"
    assert len(branch) == 2 and branch[0].replaces == q1
    assert "What happens first?" in remote.export_markdown()
    with pytest.raises(NotReady, match="not part of the current conversation"):
        list(remote.regenerate("no-such-question"))
