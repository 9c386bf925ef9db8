"""Using local files instead of downloading: detection, verification, records, resolve."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from moviechat_desktop.engine.errors import CheckpointMismatch, WeightsCorrupt, WeightsMissing
from moviechat_desktop.engine.model.checkpoint_io import read_checkpoint
from moviechat_desktop.engine.settings import user_config_dir
from moviechat_desktop.engine.weights import (
    forget_imports,
    import_weights,
    resolve_model_paths,
    weights_status,
)
from moviechat_desktop.engine.weights.store import imported_dir


def test_import_the_reference_directory(tiny_manifest, reference_dir):
    result = import_weights(reference_dir)
    assert sorted(s.id for s in result.imported) == [
        "blip2_qformer",
        "eva_vit",
        "vicuna",
        "videollama",
    ]
    assert all(s.state == "ready" and s.origin == "imported" for s in result.imported)
    ignored = " ".join(result.ignored)
    assert "reference_outputs.safetensors" in ignored and "match no part" in ignored

    paths = resolve_model_paths()
    assert paths.llama_dir == reference_dir / "tiny_llama"  # directories are used in place
    for field, name in (("eva_vit", "tiny_eva_vit.pth"), ("videollama", "tiny_videollama.pth")):
        converted = getattr(paths, field)
        assert converted.parent == imported_dir() and converted.suffix == ".safetensors"
        original, again = read_checkpoint(reference_dir / name), read_checkpoint(converted)
        assert all(torch.equal(again[k], v) for k, v in original.items())
    record = json.loads((user_config_dir() / "weights.json").read_text())["parts"]
    assert record["eva_vit"]["source_path"] == str(reference_dir / "tiny_eva_vit.pth")
    assert record["vicuna"]["files"] == {"model.safetensors": 384288}


def test_import_single_files_by_name_and_by_keys(tiny_manifest, reference_dir, tmp_path):
    # a converted .safetensors named like the manifest's file is used in place
    state = read_checkpoint(reference_dir / "tiny_blip2_qformer.pth")
    from moviechat_desktop.engine.weights.convert import save_safetensors

    named = save_safetensors(state, tmp_path / "tiny_blip2_qformer.safetensors")
    [status] = import_weights(named).imported
    assert status.id == "blip2_qformer" and status.path == named
    # an oddly named .pth is recognised by its keys
    odd = tmp_path / "downloaded (1).pth"
    shutil.copy(reference_dir / "tiny_videollama.pth", odd)
    [status] = import_weights(odd).imported
    assert status.id == "videollama"
    # a file that is no part at all, given alone, is an error naming the way out
    with pytest.raises(CheckpointMismatch, match="--part"):
        import_weights(reference_dir / "reference_outputs.safetensors")


def test_import_one_part_from_a_folder(tiny_manifest, reference_dir):
    result = import_weights(reference_dir, "videollama")
    assert [s.id for s in result.imported] == ["videollama"]
    assert any("tiny_eva_vit.pth: not the Video-LLaMA" in line for line in result.ignored)
    assert [s.state for s in weights_status()] == ["missing", "missing", "ready", "missing"]
    [status] = import_weights(reference_dir / "tiny_llama", "vicuna").imported
    assert status.state == "ready" and status.path == reference_dir / "tiny_llama"


def test_import_verifies_size_keys_and_directories(tiny_manifest, reference_dir, tmp_path):
    with pytest.raises(CheckpointMismatch, match="missing keys"):
        import_weights(reference_dir / "tiny_videollama.pth", "blip2_qformer")
    truncated = tmp_path / "tiny_eva_vit.pth"
    truncated.write_bytes((reference_dir / "tiny_eva_vit.pth").read_bytes()[:-10])
    with pytest.raises(WeightsCorrupt, match="bytes"):  # the manifest knows its exact size
        import_weights(truncated)
    empty_model = tmp_path / "model"
    empty_model.mkdir()
    (empty_model / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(WeightsMissing, match="no model weights"):
        import_weights(empty_model)
    wrong = tmp_path / "bert"
    shutil.copytree(reference_dir / "tiny_llama", wrong)
    (wrong / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointMismatch, match="model_type"):
        import_weights(wrong)
    with pytest.raises(WeightsMissing, match="does not exist"):
        import_weights(tmp_path / "nope")
    assert {s.state for s in weights_status()} == {"missing"}


def test_imported_file_damaged_later_is_refused_until_forgotten(tiny_manifest, reference_dir):
    import_weights(reference_dir / "tiny_eva_vit.pth")
    status = weights_status()[0]
    assert status.state == "ready"
    status.path.write_bytes(status.path.read_bytes() + b"junk")  # damaged after the import
    assert weights_status()[0].state == "invalid"
    with pytest.raises(WeightsCorrupt, match="weights verify"):
        resolve_model_paths()
    forget_imports(["eva_vit"])
    assert weights_status()[0].state == "missing"
    assert (reference_dir / "tiny_eva_vit.pth").is_file()  # the user's own file is untouched


def test_a_folder_scan_skips_bad_files_and_says_why(tiny_manifest, reference_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(reference_dir / "tiny_eva_vit.pth", folder)
    blip = (reference_dir / "tiny_blip2_qformer.pth").read_bytes()
    (folder / "tiny_blip2_qformer.pth").write_bytes(blip[: len(blip) // 2])  # truncated
    result = import_weights(folder)
    assert [s.id for s in result.imported] == ["eva_vit"]
    [reason] = result.ignored
    assert reason.startswith("tiny_blip2_qformer.pth: ") and "not a readable checkpoint" in reason
    assert [s.state for s in weights_status()][:2] == ["ready", "missing"]
