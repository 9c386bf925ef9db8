"""The full-size rehearsal's setup (bench/full_size.py): scaled depths, and the manifest and
model config it writes are ones the app itself accepts. The rehearsal itself is not run here
(it writes gigabytes); bench/README.md records its runs."""

from __future__ import annotations

import json

from bench.full_size import REAL_DEPTHS, _kept, depths, write_scaled_manifest
from moviechat_desktop.engine.model.config import ModelConfig
from moviechat_desktop.engine.weights.manifest import load_manifest


def test_depths_keep_at_least_one_layer_and_the_real_ones_at_full_scale():
    assert depths(1.0) == REAL_DEPTHS
    assert depths(0.03) == {"vit": 1, "qformer": 2, "llama": 1}
    assert _kept({"blocks.0.x": 1, "blocks.3.x": 2, "cls_token": 3}, 1) == {
        "blocks.0.x": 1,
        "cls_token": 3,
    }


def test_scaled_manifest_and_config_are_accepted_by_the_app(tmp_path):
    d = {"vit": 2, "qformer": 2, "llama": 3}
    write_scaled_manifest(tmp_path, d)
    manifest = load_manifest(tmp_path / "scaled_manifest.json")
    assert manifest.model_config == tmp_path / "scaled_config.json"
    config = ModelConfig.from_reference_json(manifest.model_config)
    assert config.vision.num_layers == 2 and config.qformer.num_layers == 2
    assert config.vision.hidden_size == 1408 and config.llm_hidden_size == 4096  # real widths
    parts = {p.id: p for p in manifest.parts}
    assert all("blocks.38" not in k for k in parts["eva_vit"].expect_keys)
    assert parts["vicuna"].expect_config["num_hidden_layers"] == 3
    raw = json.loads((tmp_path / "scaled_manifest.json").read_text())
    assert raw["model_config"] == "scaled_config.json"
