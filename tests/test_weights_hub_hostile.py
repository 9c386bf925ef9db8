"""A lying download server (HF_ENDPOINT) cannot make the hub cache write, link or delete
anything outside the repo's cache folder: the ETag and X-Repo-Commit headers name files, so
only hex digests are accepted, and every destination is resolved and kept inside."""

from __future__ import annotations

import os

import pytest

from moviechat_desktop.engine.errors import DownloadError
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.weights import hub as hub_mod
from moviechat_desktop.engine.weights.manifest import Source
from moviechat_desktop.engine.weights.store import hub_cache_dir

REPO = "evil-org/model"
DATA = b"weights!" * 1000


def _fetch_one(filename: str = "model.safetensors"):
    source = Source(type="hf_file", repo=REPO, filename=filename)
    return hub_mod.download_file(source, part="p", progress=lambda *a: None, cancel=CancelToken())


def _files_outside(root, repo_dir) -> list[str]:
    """Every file under ``root`` that is not inside ``repo_dir``."""
    found = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if not os.path.realpath(path).startswith(os.path.realpath(repo_dir) + os.sep):
                found.append(path)
    return found


@pytest.mark.parametrize(
    "headers",
    [
        {"ETag": '"../../../../escaped"'},  # blobs/<etag> climbs out
        {"ETag": '"/tmp/absolute-etag"'},
        {"ETag": '"' + "A" * 64 + '"'},  # not lowercase hex
        {"ETag": '"' + "a" * 63 + '"'},  # hex but not a digest length
        {"X-Repo-Commit": "../../../../escaped"},  # snapshots/<commit>/<name> climbs out
        {"X-Repo-Commit": "a" * 64},  # a commit is 40 hex characters
        {"X-Repo-Commit": "main\x1b]0;pwned\x07"},
    ],
)
def test_a_lying_server_header_is_refused_and_nothing_escapes(online, tmp_path, headers):
    online.add_repo(REPO, {"model.safetensors": DATA})
    online.lying_headers[REPO] = headers
    cache = hub_cache_dir()
    repo_dir = hub_mod.repo_cache_dir(REPO)
    with pytest.raises(DownloadError, match="invalid"):
        _fetch_one()
    assert _files_outside(cache.parent.parent, repo_dir) == []
    assert not online.requests_for("model.safetensors", "GET")  # refused before downloading


def test_a_lying_commit_does_not_unlink_a_file_outside_the_cache(online, tmp_path):
    """The pointer path used to be unlinked whatever it was: a commit climbing out of the
    cache pointed it at the user's own file."""
    online.add_repo(REPO, {"model.safetensors": DATA})
    repo_dir = hub_mod.repo_cache_dir(REPO)
    victim = repo_dir.parent.parent / "victim" / "model.safetensors"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"precious")
    rel = os.path.relpath(victim.parent, repo_dir / "snapshots")
    online.lying_headers[REPO] = {"X-Repo-Commit": rel}
    with pytest.raises(DownloadError):
        _fetch_one()
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("name", ["../../../escaped.bin", "/etc/escaped.bin", "a/../../b.bin"])
def test_a_filename_that_climbs_out_is_refused(online, name):
    online.add_repo(REPO, {name: DATA})
    repo_dir = hub_mod.repo_cache_dir(REPO)
    with pytest.raises(DownloadError, match=r"outside|invalid"):
        _fetch_one(name)
    assert _files_outside(hub_cache_dir().parent.parent, repo_dir) == []


def test_a_snapshot_folder_symlinked_out_of_the_cache_is_not_written_through(online, tmp_path):
    """A planted link inside the cache cannot redirect a download (nor an unlink) outside."""
    online.add_repo(REPO, {"sub/model.safetensors": DATA})
    repo_dir = hub_mod.repo_cache_dir(REPO)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.safetensors").write_bytes(b"precious")
    snap = repo_dir / "snapshots" / online.commit(REPO)
    snap.mkdir(parents=True)
    (snap / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DownloadError, match="outside"):
        _fetch_one("sub/model.safetensors")
    assert (outside / "model.safetensors").read_bytes() == b"precious"


def test_an_honest_server_still_downloads(online):
    online.add_repo(REPO, {"model.safetensors": DATA, "sub/config.json": b"{}"})
    got = _fetch_one()
    assert got.path.read_bytes() == DATA
    assert got.path.resolve().parent == hub_mod.repo_cache_dir(REPO).resolve() / "blobs"
    assert _fetch_one("sub/config.json").path.read_bytes() == b"{}"


def test_a_tampered_ref_file_is_not_followed_out_of_the_cache(tmp_path):
    repo_dir = hub_mod.repo_cache_dir(REPO)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "snapshots").mkdir()
    outside = repo_dir.parent / "elsewhere"
    outside.mkdir()
    (repo_dir / "refs" / "main").write_text("../../elsewhere")
    assert hub_mod.cached_snapshot(Source(type="hf_snapshot", repo=REPO)) is None


def test_removing_a_cached_file_never_deletes_outside_the_hub_cache(tmp_path):
    outside = tmp_path / "blobs" / "target"
    outside.parent.mkdir()
    outside.write_bytes(b"precious")
    link = hub_mod.repo_cache_dir(REPO) / "snapshots" / ("a" * 40) / "w.bin"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    hub_mod.remove_cached(link)
    assert outside.read_bytes() == b"precious"
    assert not link.is_symlink()


@pytest.mark.parametrize(
    ("files", "lie"),
    [
        ({"../../../escaped.safetensors": DATA}, {}),  # a file list naming a path outside
        ({"model.safetensors": DATA}, {"X-Repo-Commit": "../../../escaped"}),
    ],
)
def test_a_lying_snapshot_listing_is_refused_before_any_download(online, files, lie):
    online.add_repo(REPO, files)
    online.lying_headers[REPO] = lie
    source = Source(type="hf_snapshot", repo=REPO, allow_patterns=("*",))
    with pytest.raises(DownloadError, match=r"(?i)invalid"):  # huggingface_hub checks too
        hub_mod.plan_snapshot(source)
    assert not [r for r in online.log if r.method == "GET" and "/resolve/" in r.path]
