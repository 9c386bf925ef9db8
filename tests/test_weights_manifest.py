"""The shipped weights manifest and its loader."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest

from moviechat_desktop.engine.errors import MovieChatError
from moviechat_desktop.engine.model.paths import ModelPaths
from moviechat_desktop.engine.weights import MANIFEST_ENV, format_bytes, load_manifest


def test_shipped_manifest_loads_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = load_manifest()
    assert manifest.origin == "configs/weights_manifest.json"
    fields = {p.field for p in manifest.parts}
    assert fields == {"eva_vit", "blip2_qformer", "videollama", "llama_dir"}
    assert fields <= set(ModelPaths.__dataclass_fields__)
    by_id = {p.id: p for p in manifest.parts}
    lavis = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/"
    assert by_id["eva_vit"].source.url == lavis + "eva_vit_g.pth"
    assert by_id["blip2_qformer"].source.url == lavis + "blip2_pretrained_flant5xxl.pth"
    video = by_id["videollama"].source
    assert (video.type, video.repo, video.filename) == (
        "hf_file",
        "DAMO-NLP-SG/Video-LLaMA-Series",
        "finetune-vicuna7b-v2.pth",
    )
    llama = by_id["vicuna"]
    assert llama.source.repo == "Enxin/MovieChat-vicuna" and llama.is_dir
    assert {"config.json", "tokenizer.model"} <= set(llama.source.allow_patterns)
    for part in manifest.parts:
        assert part.size > 0 and part.license and part.destination in ("user_cache", "hf_cache")
        # nothing here could be checked offline: estimates are marked, no hash is invented
        assert not part.size_exact and part.size_note and part.sha256 is None
        assert part.size_label.startswith("~")
    assert 15e9 < manifest.total_size < 17.5e9


def test_manifest_override_and_errors(tmp_path, monkeypatch):
    shipped = json.loads(
        files("moviechat_desktop.configs").joinpath("weights_manifest.json").read_text()
    )
    shipped["parts"][0]["title"] = "Custom EVA"
    shipped["model_config"] = "tiny_config.json"
    path = tmp_path / "m.json"
    path.write_text(json.dumps(shipped))
    monkeypatch.setenv(MANIFEST_ENV, str(path))
    manifest = load_manifest()
    assert manifest.parts[0].title == "Custom EVA"
    assert manifest.model_config == tmp_path / "tiny_config.json"  # relative to the manifest

    shipped["parts"][0]["sha256"] = "ABC"
    path.write_text(json.dumps(shipped))
    with pytest.raises(MovieChatError, match="sha256"):
        load_manifest()
    shipped["parts"].pop()
    shipped["parts"][0]["sha256"] = None
    path.write_text(json.dumps(shipped))
    with pytest.raises(MovieChatError, match="one part for each"):
        load_manifest()
    path.write_text("{ not json")
    with pytest.raises(MovieChatError, match="not valid JSON"):
        load_manifest()


def test_unreadable_manifest_and_unknown_part(tmp_path):
    with pytest.raises(MovieChatError, match="cannot read weights manifest"):
        load_manifest(tmp_path / "missing.json")
    with pytest.raises(MovieChatError, match="unknown weights part 'nope'"):
        load_manifest().part("nope")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1500, "1.50 kB"),
        (433e6, "433 MB"),
        (1.989e9, "1.99 GB"),
        (13.5e9, "13.5 GB"),
    ],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text
