"""What ``resolve_model_paths`` returns loads exactly like the reference set (tiny model, CPU)."""

from __future__ import annotations

import pytest
import torch
from test_weights_fakehub import go_online, serve, use_tiny_manifest

from moviechat_desktop.engine.errors import WeightsMissing
from moviechat_desktop.engine.model.paths import ModelPaths
from moviechat_desktop.engine.weights import download_weights, resolve_model_paths


@pytest.fixture
def online(monkeypatch, tmp_path, reference_dir):
    with serve() as hub:
        go_online(monkeypatch, hub)
        use_tiny_manifest(tmp_path, hub, reference_dir, monkeypatch)
        yield hub


def test_shipped_manifest_with_nothing_installed_names_every_part():
    with pytest.raises(WeightsMissing) as err:
        resolve_model_paths()
    message = str(err.value)
    for words in ("EVA ViT-g", "~1.99 GB", "BLIP-2", "~433 MB", "Video-LLaMA", "Vicuna-7B"):
        assert words in message
    assert "moviechat-desktop weights download" in message and "Assistant ▸ Weights…" in message


def test_downloaded_weights_load_like_the_reference_set(online, reference_dir):
    from moviechat_desktop.engine.model.movie_chat import MovieChatModel

    download_weights()
    paths = resolve_model_paths()
    assert {p.suffix for p in (paths.eva_vit, paths.blip2_qformer, paths.videollama)} == {
        ".safetensors"
    }
    ours = MovieChatModel.load(paths, device="cpu")
    reference = MovieChatModel.load(ModelPaths.from_reference_dir(reference_dir), device="cpu")
    for name in ("encoder", "video_qformer"):
        mine, theirs = getattr(ours, name).state_dict(), getattr(reference, name).state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name
    mine, theirs = ours.llm.hf.state_dict(), reference.llm.hf.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
