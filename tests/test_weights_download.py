"""Downloading the weights against the fake hub: full run, resume, corruption, offline, cancel."""

from __future__ import annotations

import hashlib
import http.server
import itertools
import json
import threading

import pytest
import torch
from test_weights_fakehub import LLAMA_REPO, VIDEO_REPO

from moviechat_desktop.engine.errors import Cancelled, DownloadError, WeightsCorrupt, WeightsMissing
from moviechat_desktop.engine.model.checkpoint_io import read_checkpoint
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.weights import (
    download_weights,
    resolve_model_paths,
    weights_status,
)
from moviechat_desktop.engine.weights import hub as hub_mod
from moviechat_desktop.engine.weights.http_download import http_download, part_path_for
from moviechat_desktop.engine.weights.store import installed_record_path, weights_dir


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_download_verifies_converts_records_and_resolves(online, tiny_manifest, reference_dir):
    events = []
    statuses = download_weights(progress=events.append)
    assert [s.state for s in statuses] == ["ready"] * 4

    paths = resolve_model_paths()
    for field, name in (
        ("eva_vit", "tiny_eva_vit.pth"),
        ("blip2_qformer", "tiny_blip2_qformer.pth"),
        ("videollama", "tiny_videollama.pth"),
    ):
        converted = getattr(paths, field)
        assert converted.suffix == ".safetensors" and converted.parent == weights_dir()
        original = read_checkpoint(reference_dir / name)
        again = read_checkpoint(converted)
        assert sorted(again) == sorted(original)
        for key, tensor in original.items():
            assert again[key].dtype == tensor.dtype and torch.equal(again[key], tensor), key
    # the downloaded pickles are gone once converted: later starts never unpickle
    assert not list(weights_dir().glob("*.pth")) and not list(weights_dir().glob("*.part"))
    assert paths.config == reference_dir / "tiny_config.json"

    llama = paths.llama_dir
    assert (llama / "model.safetensors").read_bytes() == (
        reference_dir / "tiny_llama" / "model.safetensors"
    ).read_bytes()
    assert not (llama / "pytorch_model.bin").exists()  # .safetensors preferred: .bin not fetched
    assert not (llama / "README.md").exists()  # not in allow_patterns
    assert not online.requests_for("pytorch_model.bin")

    record = json.loads(installed_record_path().read_text())["parts"]
    assert record["eva_vit"]["sha256"] == _sha(paths.eva_vit)
    blip_original = (reference_dir / "tiny_blip2_qformer.pth").read_bytes()
    assert (
        record["blip2_qformer"]["original"]["sha256"] == hashlib.sha256(blip_original).hexdigest()
    )
    assert record["vicuna"]["commit"] == online.commit(LLAMA_REPO)

    eva_bytes = [e for e in events if e.part == "eva_vit" and e.phase == "download"]
    assert (
        eva_bytes[-1].done
        == eva_bytes[-1].total
        == (reference_dir / "tiny_eva_vit.pth").stat().st_size
    )
    assert all(a.done <= b.done for a, b in itertools.pairwise(eva_bytes))
    hub_bytes = [e for e in events if e.part == "videollama" and e.phase == "download"]
    assert hub_bytes[-1].done == (reference_dir / "tiny_videollama.pth").stat().st_size
    assert {e.phase for e in events} >= {"download", "verify", "convert", "done"}

    # a second run has nothing to do: no new transfer
    before = len(online.log)
    download_weights()
    assert not [r for r in online.log[before:] if r.method == "GET"]


def test_interrupted_download_resumes_with_range_in_the_same_call(online, tmp_path):
    data = bytes(range(256)) * 4000  # 1 MB
    url = online.add_file("big.pth", data)
    online.drop_after["/files/big.pth"] = 300_000
    got = http_download(
        url, tmp_path / "big.pth", sha256=hashlib.sha256(data).hexdigest(), retry_delay_s=0.01
    )
    assert got.path.read_bytes() == data
    gets = online.requests_for("/files/big.pth")
    assert [g.range for g in gets] == [None, "bytes=300000-"]
    assert online.bytes_sent("/files/big.pth") == len(data)  # nothing fetched twice


def test_cancelled_download_resumes_next_time_without_refetching(online, tmp_path):
    data = bytes(range(256)) * 4000
    url = online.add_file("big.pth", data)
    online.chunk_size = 64 * 1024
    token = CancelToken()

    def cancel_after_some(progress):
        if progress.phase == "download" and progress.done >= 256 * 1024:
            token.cancel()

    dest = tmp_path / "big.pth"
    with pytest.raises(Cancelled):
        http_download(url, dest, progress=cancel_after_some, cancel=token)
    assert not dest.exists()  # no half-file under the final name
    kept = part_path_for(dest).stat().st_size
    assert 0 < kept < len(data)
    assert data.startswith(part_path_for(dest).read_bytes())

    got = http_download(url, dest, expected_size=len(data))
    assert got.path.read_bytes() == data and got.resumed_from == kept
    assert online.requests_for("/files/big.pth")[-1].range == f"bytes={kept}-"
    assert online.requests_for("/files/big.pth")[-1].bytes_sent == len(data) - kept
    assert not part_path_for(dest).exists()


def test_http_errors_and_endless_drops_end_with_a_clear_error(online, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        http_download(f"{online.url}/files/nope.pth", tmp_path / "nope.pth")
    url = online.add_file("flaky.pth", b"x" * 100_000)
    online.always_drop_after["/files/flaky.pth"] = 0  # never delivers a byte
    with pytest.raises(DownloadError, match="3 times in a row"):
        http_download(url, tmp_path / "flaky.pth", max_attempts=3, retry_delay_s=0.01)
    assert len(online.requests_for("/files/flaky.pth")) == 3  # bounded
    assert not (tmp_path / "flaky.pth").exists()


def test_server_ignoring_range_restarts_cleanly(online, tmp_path):
    data = bytes(range(256)) * 1000
    url = online.add_file("f.pth", data)
    dest = tmp_path / "f.pth"
    part_path_for(dest).write_bytes(data[:1000])
    online.ignore_range = True
    got = http_download(url, dest)
    assert got.path.read_bytes() == data and got.sha256 == hashlib.sha256(data).hexdigest()


def test_hub_download_resumes_a_dropped_connection(online, tiny_manifest, reference_dir):
    """A dropped hub transfer is resumed in the same call with a Range request from exactly
    the bytes already written, from the file's resolve URL pinned to the commit."""
    size = (reference_dir / "tiny_videollama.pth").stat().st_size
    commit = online.commit(VIDEO_REPO)
    online.drop_after[f"/{VIDEO_REPO}/resolve/{commit}/tiny_videollama.pth"] = 200_000
    download_weights(["videollama"])
    first, second = online.requests_for("tiny_videollama.pth")
    assert first.range is None and first.bytes_sent == 200_000
    assert second.range == "bytes=200000-" and second.bytes_sent == size - 200_000
    assert weights_status()[2].state == "ready"


def test_corrupted_download_fails_verification_and_is_not_used(
    online, tiny_manifest, reference_dir
):
    eva = (reference_dir / "tiny_eva_vit.pth").read_bytes()
    online.bad_content["/files/tiny_eva_vit.pth"] = eva[:-1] + bytes([eva[-1] ^ 0xFF])
    with pytest.raises(WeightsCorrupt, match="sha256"):
        download_weights(["eva_vit"])
    assert not list(weights_dir().glob("tiny_eva_vit*"))  # neither the file nor a .part
    assert weights_status()[0].state == "missing"

    video = (reference_dir / "tiny_videollama.pth").read_bytes()
    bad = bytearray(video)
    bad[len(bad) // 2] ^= 0xFF
    commit = online.commit(VIDEO_REPO)
    online.bad_content[f"/{VIDEO_REPO}/resolve/{commit}/tiny_videollama.pth"] = bytes(bad)
    with pytest.raises(WeightsCorrupt, match="deleted"):
        download_weights(["videollama"])
    assert hub_mod.cached_file(tiny_manifest.part("videollama").source) is None
    with pytest.raises(WeightsMissing, match="Video-LLaMA"):
        resolve_model_paths()


def test_offline_mode_says_what_is_missing_and_touches_no_network(fake_hub, tiny_manifest):
    with pytest.raises(DownloadError) as err:
        download_weights()
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message and "weights import" in message
    for part in tiny_manifest.parts:
        assert part.title in message and part.size_label in message
    assert fake_hub.log == []


def test_a_cancelled_hub_download_is_kept_and_resumed_next_time(
    online, tiny_manifest, reference_dir, monkeypatch
):
    """Cancel mid-file: nothing poses as complete, the part shows as partial, and the next
    download asks only for the missing bytes (huggingface_hub alone would start again)."""
    from moviechat_desktop.engine.weights import http_download as http_mod

    monkeypatch.setattr(http_mod, "CHUNK", 16 * 1024)  # the file is 455 KB: cancel inside it
    online.chunk_size = 16 * 1024
    online.chunk_delay_s = 0.01
    token = CancelToken()

    def cancel_midway(progress):
        if progress.part == "videollama" and progress.phase == "download" and progress.done > 0:
            token.cancel()

    with pytest.raises(Cancelled):
        download_weights(["videollama"], progress=cancel_midway, cancel=token)
    size = (reference_dir / "tiny_videollama.pth").stat().st_size
    source = tiny_manifest.part("videollama").source
    assert hub_mod.cached_file(source) is None
    blobs = hub_mod.repo_cache_dir(VIDEO_REPO) / "blobs"
    (partial,) = blobs.iterdir()
    assert partial.name.endswith(".part")
    status = weights_status()[2]
    assert status.state == "partial" and status.partial_bytes == partial.stat().st_size
    assert 0 < status.partial_bytes < size  # cancelled mid-file
    with pytest.raises(WeightsMissing):
        resolve_model_paths()

    online.chunk_delay_s = 0.0
    download_weights(["videollama"])
    resumed = online.requests_for("tiny_videollama.pth")[-1]
    assert resumed.range == f"bytes={status.partial_bytes}-"
    assert resumed.bytes_sent == size - status.partial_bytes  # only what was missing
    assert weights_status()[2].state == "ready"
    assert not list(blobs.glob("*.part"))


def test_hub_files_land_in_huggingface_hubs_own_cache_layout(online, tiny_manifest, tmp_path):
    """What we download, huggingface_hub finds offline: blobs named by etag, the snapshot
    symlinks, refs/main. A second download fetches nothing."""
    import huggingface_hub.constants
    from huggingface_hub import hf_hub_download, snapshot_download

    from moviechat_desktop.engine.weights.store import hub_cache_dir

    download_weights(["videollama", "vicuna"])
    requests_before = len(online.log)
    cache = str(hub_cache_dir())
    offline = {"cache_dir": cache, "local_files_only": True}
    path = hf_hub_download(VIDEO_REPO, "tiny_videollama.pth", **offline)
    assert path == str(hub_mod.cached_file(tiny_manifest.part("videollama").source))
    folder = snapshot_download(LLAMA_REPO, **offline)
    assert folder == str(hub_mod.cached_snapshot(tiny_manifest.part("vicuna").source))
    assert (hub_mod.repo_cache_dir(LLAMA_REPO) / "refs" / "main").read_text() == online.commit(
        LLAMA_REPO
    )
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # the lookups above were local
    download_weights(["videollama", "vicuna"])
    assert len(online.log) == requests_before


def test_cancelled_url_part_shows_as_partial_and_resumes(online, tiny_manifest, reference_dir):
    online.chunk_size = 8 * 1024
    token = CancelToken()

    def cancel_midway(progress):
        if progress.part == "eva_vit" and progress.phase == "download" and progress.done >= 100_000:
            token.cancel()

    with pytest.raises(Cancelled):
        download_weights(["eva_vit"], progress=cancel_midway, cancel=token)
    status = weights_status()[0]
    assert status.state == "partial" and status.partial_bytes >= 100_000 and status.path is None
    with pytest.raises(WeightsMissing, match="downloaded so far"):
        resolve_model_paths()
    download_weights(["eva_vit"])
    resumed = online.requests_for("tiny_eva_vit.pth")[-1]
    assert resumed.range == f"bytes={status.partial_bytes}-"
    size = (reference_dir / "tiny_eva_vit.pth").stat().st_size
    assert resumed.bytes_sent == size - status.partial_bytes  # only what was missing
    assert weights_status()[0].state == "ready"


def test_not_enough_disk_space_is_refused_before_downloading(online, tiny_manifest, monkeypatch):
    from moviechat_desktop.engine.weights import install

    monkeypatch.setattr(install, "free_bytes", lambda path: 1000)
    with pytest.raises(DownloadError, match="not enough disk space"):
        download_weights()
    assert not [r for r in online.log if r.method == "GET"]


def test_a_redirect_to_another_host_keeps_range_but_not_the_token(online, tmp_path):
    """The hub answers a file request with a redirect to its CDN: the Range header must follow
    (or a resume would restart) and the Authorization header must not leave the hub."""
    from test_weights_fakehub import serve

    data = bytes(range(256)) * 400
    with serve() as cdn:
        target = cdn.add_file("blob.bin", data)
        seen = []

        class Redirect(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                seen.append(("hub", self.headers.get("Authorization"), self.headers.get("Range")))
                self.send_response(302)
                self.send_header("Location", target.replace("127.0.0.1", "localhost"))
                self.send_header("Content-Length", "0")
                self.end_headers()

        hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        threading.Thread(target=hub.serve_forever, daemon=True).start()
        try:
            dest = tmp_path / "blob.bin"
            part_path_for(dest).write_bytes(data[:1000])  # an earlier, interrupted download
            url = f"http://127.0.0.1:{hub.server_address[1]}/file"
            got = http_download(url, dest, headers={"Authorization": "Bearer secret"})
        finally:
            hub.shutdown()
            hub.server_close()
    assert got.path.read_bytes() == data and got.resumed_from == 1000
    assert seen == [("hub", "Bearer secret", "bytes=1000-")]
    (fetched,) = cdn.requests_for("blob.bin")
    assert fetched.range == "bytes=1000-" and fetched.bytes_sent == len(data) - 1000
    assert cdn.auth_seen == [None]


def test_cancel_on_a_slow_line_stops_at_the_next_bytes_not_a_full_buffer(online, tmp_path):
    """Reads take what has arrived: on a slow line a cancel does not wait for a 256 KiB read
    to fill (at 40 kB/s that was seconds; seen with the CLI)."""
    data = bytes(range(256)) * 4000  # 1 MB
    url = online.add_file("slow.pth", data)
    online.chunk_size, online.chunk_delay_s = 8 * 1024, 0.05
    token = CancelToken()

    def cancel_on_first_bytes(progress):
        if progress.phase == "download" and progress.done > 0:
            token.cancel()

    dest = tmp_path / "slow.pth"
    with pytest.raises(Cancelled):
        http_download(url, dest, progress=cancel_on_first_bytes, cancel=token)
    assert 0 < part_path_for(dest).stat().st_size <= 64 * 1024
