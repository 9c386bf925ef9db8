"""A fake Hugging Face hub + file server on 127.0.0.1, shared by the weights tests.

It speaks the subset of the hub protocol huggingface_hub 2.4 uses (read from its source):

- ``HEAD /{repo}/resolve/{revision}/{filename}``: ``X-Repo-Commit``, ``ETag`` (sha256 for LFS
  files, git blob sha1 for small ones), ``Content-Length``; then ``GET`` of the same URL, with
  ``Range: bytes=N-`` when its in-call retry resumes a dropped transfer.
- ``GET /api/models/{repo}/revision/{revision}`` → ``{"id", "sha"}`` (snapshot_download's
  repo_info) and ``GET /api/models/{repo}/tree/{commit}?recursive=...`` → the file list with
  ``oid``/``size``/``lfs`` (its list_repo_tree).
- ``GET /files/{name}``: plain files for the URL (LAVIS-style) parts.

Every GET honours ``Range`` (unless ``ignore_range``), can drop the connection after N bytes
(``drop_after``, once per path), can be slowed down (``chunk_delay_s``) and is logged with
the Range header and the bytes actually sent. The fixture stops the server when the test ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

LFS_SUFFIXES = (".pth", ".bin", ".safetensors", ".model")


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Served:
    method: str
    path: str
    range: str | None
    status: int
    bytes_sent: int = 0


class FakeHub:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # /files/{name}
        self.repos: dict[str, dict[str, bytes]] = {}  # repo -> {filename: content}
        self.bad_content: dict[str, bytes] = {}  # url path -> bytes served instead
        self.lying_headers: dict[str, dict[str, str]] = {}  # repo -> headers sent instead
        self.drop_after: dict[str, int] = {}  # url path -> bytes sent before dropping (once)
        self.always_drop_after: dict[str, int] = {}  # the same, on every request
        self.ignore_range = False
        self.chunk_size = 64 * 1024
        self.chunk_delay_s = 0.0
        self.log: list[Served] = []
        self.auth_seen: list[str | None] = []  # the Authorization header of each GET
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # ------------------------------------------------------------------ content
    def commit(self, repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()

    def etag(self, name: str, data: bytes) -> str:
        return sha256(data) if name.endswith(LFS_SUFFIXES) else git_sha1(data)

    def add_file(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"{self.url}/files/{name}"

    def add_repo(self, repo: str, files: dict[str, bytes]) -> None:
        self.repos[repo] = dict(files)

    def requests_for(self, suffix: str, method: str = "GET") -> list[Served]:
        return [r for r in self.log if r.method == method and r.path.endswith(suffix)]

    def bytes_sent(self, suffix: str) -> int:
        return sum(r.bytes_sent for r in self.requests_for(suffix))

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ routing
    def route(self, path: str) -> tuple[int, dict[str, str], bytes | None]:
        """(status, headers, body) for a path; body None means 404."""
        parts = [unquote(p) for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "files" and parts[1] in self.files:
            return 200, {}, self.files[parts[1]]
        if len(parts) >= 5 and parts[0] == "api" and parts[1] == "models":
            repo = "/".join(parts[2:4])
            if repo in self.repos and parts[4] == "revision":
                sha = self.lying_headers.get(repo, {}).get("X-Repo-Commit", self.commit(repo))
                body = json.dumps({"id": repo, "sha": sha, "siblings": []})
                return 200, {"Content-Type": "application/json"}, body.encode()
            if repo in self.repos and parts[4] == "tree":
                entries = []
                for name, data in sorted(self.repos[repo].items()):
                    entry = {"type": "file", "path": name, "size": len(data), "oid": git_sha1(data)}
                    if name.endswith(LFS_SUFFIXES):
                        entry["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 134}
                    entries.append(entry)
                return 200, {"Content-Type": "application/json"}, json.dumps(entries).encode()
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, name = "/".join(parts[:2]), "/".join(parts[4:])
            if name in self.repos.get(repo, {}):
                data = self.repos[repo][name]
                headers = {"X-Repo-Commit": self.commit(repo), "ETag": f'"{self.etag(name, data)}"'}
                headers.update(self.lying_headers.get(repo, {}))
                return 200, headers, data
            return 404, {"X-Repo-Commit": self.commit(repo), "X-Error-Code": "EntryNotFound"}, None
        return 404, {}, None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(send_body=False)

            def do_GET(self) -> None:
                self._serve(send_body=True)

            def _serve(self, send_body: bool) -> None:
                path = urlsplit(self.path).path
                status, headers, body = hub.route(path)
                record = Served(self.command, path, self.headers.get("Range"), status)
                with hub._lock:
                    hub.log.append(record)
                    if self.command == "GET":
                        hub.auth_seen.append(self.headers.get("Authorization"))
                if body is None:
                    self.send_response(404)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = hub.bad_content.get(path, body)
                start = 0
                wanted = self.headers.get("Range")
                if wanted and not hub.ignore_range and wanted.startswith("bytes="):
                    start = int(wanted[6:].split("-")[0])
                    if start >= len(body):
                        record.status = 416
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    record.status = 206
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if not send_body:
                    return
                limit = len(body)
                with hub._lock:
                    drop = hub.drop_after.pop(path, hub.always_drop_after.get(path))
                if drop is not None:
                    limit = min(limit, start + drop)
                pos = start
                try:
                    while pos < limit:
                        piece = body[pos : min(limit, pos + hub.chunk_size)]
                        self.wfile.write(piece)
                        self.wfile.flush()
                        pos += len(piece)
                        record.bytes_sent = pos - start
                        if hub.chunk_delay_s:
                            time.sleep(hub.chunk_delay_s)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if drop is not None:
                    self.close_connection = True

        return Handler


@contextlib.contextmanager
def serve() -> Iterator[FakeHub]:
    """A running fake hub, stopped (and its port closed) on exit."""
    hub = FakeHub().start()
    try:
        yield hub
    finally:
        hub.stop()


def go_online(monkeypatch: pytest.MonkeyPatch, hub: FakeHub) -> FakeHub:
    """Allow network and point huggingface_hub at ``hub`` (HF_ENDPOINT) for one test."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return hub


def use_tiny_manifest(
    tmp_path: Path, hub: FakeHub, reference_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Write the tiny-model manifest served by ``hub`` and select it with the env var."""
    path = write_tiny_manifest(tmp_path / "manifest.json", hub, reference_dir)
    monkeypatch.setenv("MOVIECHAT_WEIGHTS_MANIFEST", str(path))
    return path


def tiny_parts(reference_dir: Path) -> dict[str, bytes]:
    return {
        name: (reference_dir / name).read_bytes()
        for name in ("tiny_eva_vit.pth", "tiny_blip2_qformer.pth", "tiny_videollama.pth")
    }


VIDEO_REPO = "test-org/tiny-videollama"
LLAMA_REPO = "test-org/tiny-vicuna"


def write_tiny_manifest(
    path: Path, hub: FakeHub, reference_dir: Path, *, exact: bool = True
) -> Path:
    """Serve the tiny reference model from ``hub`` and write a manifest describing it.

    The EVA part gets its exact size and sha256 (computed here from the file); the BLIP-2 part
    only an estimate, so the app records the hash it observes.
    """
    files = tiny_parts(reference_dir)
    llama = {p.name: p.read_bytes() for p in (reference_dir / "tiny_llama").iterdir()}
    # a .bin decoy the app must not fetch (the repo also has .safetensors) and a stray file
    llama["pytorch_model.bin"] = b"not weights" * 100
    llama["README.md"] = b"# tiny\n"
    hub.add_repo(VIDEO_REPO, {"tiny_videollama.pth": files["tiny_videollama.pth"]})
    hub.add_repo(LLAMA_REPO, llama)
    eva = files["tiny_eva_vit.pth"]
    manifest = json.loads(
        (Path(__file__).parent.parent / "configs" / "weights_manifest.json").read_text()
    )
    by_id = {p["id"]: p for p in manifest["parts"]}
    for part in manifest["parts"]:  # the tiny model has the real key names, not the real shapes
        part["expect_keys"] = dict.fromkeys(part["expect_keys"])
    by_id["eva_vit"]["expect_keys"] = {
        "cls_token": None,
        "pos_embed": None,
        "blocks.0.attn.qkv.weight": None,
    }
    by_id["blip2_qformer"]["expect_keys"].pop(
        "Qformer.bert.encoder.layer.11.output_query.dense.weight"
    )
    by_id["blip2_qformer"]["expect_keys"].pop(
        "Qformer.bert.encoder.layer.10.crossattention.self.key.weight"
    )
    by_id["eva_vit"].update(
        filename="tiny_eva_vit.pth",
        source={"type": "url", "url": hub.add_file("tiny_eva_vit.pth", eva)},
        size=len(eva),
        size_exact=exact,
        sha256=sha256(eva) if exact else None,
    )
    blip = files["tiny_blip2_qformer.pth"]
    by_id["blip2_qformer"].update(
        filename="tiny_blip2_qformer.pth",
        source={"type": "url", "url": hub.add_file("tiny_blip2_qformer.pth", blip)},
        size=len(blip) + 1000,
        size_exact=False,
    )
    by_id["videollama"].update(
        filename="tiny_videollama.pth",
        source={"type": "hf_file", "repo": VIDEO_REPO, "filename": "tiny_videollama.pth"},
        size=len(files["tiny_videollama.pth"]),
    )
    by_id["vicuna"]["source"]["repo"] = LLAMA_REPO
    by_id["vicuna"].update(required_any=[], expect_config={"model_type": "llama"}, size=400_000)
    manifest["model_config"] = str(reference_dir / "tiny_config.json")
    path.write_text(json.dumps(manifest, indent=1))
    return path


# --------------------------------------------------------------------------- the fake itself
def test_fake_hub_serves_ranges_and_drops(fake_hub):
    import urllib.request

    url = fake_hub.add_file("blob.bin", bytes(range(256)) * 10)
    request = urllib.request.Request(url, headers={"Range": "bytes=2500-"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 206
        assert resp.read() == (bytes(range(256)) * 10)[2500:]
    fake_hub.drop_after["/files/blob.bin"] = 100
    with urllib.request.urlopen(url, timeout=5) as resp, pytest.raises(Exception):  # noqa: B017
        resp.read()
    assert fake_hub.log[-1].bytes_sent == 100


def test_huggingface_hub_talks_to_the_fake(online, tmp_path):
    from huggingface_hub import hf_hub_download

    online.add_repo("org/repo", {"w.safetensors": b"x" * 5000, "config.json": b"{}"})
    got = hf_hub_download("org/repo", "w.safetensors", cache_dir=str(tmp_path), endpoint=online.url)
    assert Path(got).read_bytes() == b"x" * 5000
    assert Path(got).resolve().name == sha256(b"x" * 5000)  # blobs are named by etag
    assert [r.method for r in online.log if "w.safetensors" in r.path] == ["HEAD", "GET"]
