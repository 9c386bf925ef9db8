""".pth → safetensors conversion, and refusing checkpoints that would run pickled code."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file
from test_weights_fakehub import write_tiny_manifest

from moviechat_desktop.engine.errors import CheckpointMismatch, UnsafeCheckpoint
from moviechat_desktop.engine.weights import (
    MANIFEST_ENV,
    download_weights,
    import_weights,
    weights_status,
)
from moviechat_desktop.engine.weights.convert import convert_checkpoint, save_safetensors
from moviechat_desktop.engine.weights.store import weights_dir
from moviechat_desktop.engine.weights.verify import safetensors_shapes

TINY = ("tiny_eva_vit.pth", "tiny_blip2_qformer.pth", "tiny_videollama.pth")


@pytest.mark.parametrize("name", TINY)
def test_pth_to_safetensors_round_trips_exactly(reference_dir, tmp_path, name):
    raw = torch.load(reference_dir / name, map_location="cpu", weights_only=True)
    flat = raw.get("model", raw)  # the original on-disk layout, unwrapped here
    dest = tmp_path / (name + ".safetensors")
    convert_checkpoint(reference_dir / name, dest)
    back = load_file(str(dest))
    assert set(back) == set(flat)
    for key, tensor in flat.items():
        assert back[key].dtype == tensor.dtype, key
        assert back[key].shape == tensor.shape, key
        assert torch.equal(back[key], tensor), key
    assert safetensors_shapes(dest) == {k: tuple(v.shape) for k, v in flat.items()}


def test_shared_and_view_tensors_are_saved_by_value(tmp_path):
    base = torch.arange(24, dtype=torch.float16).reshape(4, 6)
    state = {
        "a": base,
        "tied": base,  # same storage twice (tied weights)
        "row": base[1],  # a view into a bigger storage
        "t": base.t(),  # not contiguous
        "bf": torch.randn(3, dtype=torch.bfloat16),
        "i": torch.tensor([1, 2, 3]),
    }
    dest = save_safetensors(state, tmp_path / "s.safetensors")
    back = load_file(str(dest))
    for key, tensor in state.items():
        assert back[key].dtype == tensor.dtype and torch.equal(back[key], tensor), key


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious_pth(tmp_path, name="evil.pth"):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    torch.save({"model": {"cls_token": torch.zeros(1), "payload": _Evil(marker)}}, path)
    assert not marker.exists()  # saving does not run it
    return path, marker


def _unsafe_tensor_pth(tmp_path, name="unsafe.pth"):
    """A state dict whose tensor is stored in a form only pickled code can rebuild."""
    path = tmp_path / name
    sparse = torch.eye(4).to_sparse()  # rebuilt by torch._utils._rebuild_sparse_tensor
    torch.save({"model": {"cls_token": sparse}}, path)
    return path


def test_malicious_object_beside_the_tensors_never_runs(tmp_path):
    path, marker = _malicious_pth(tmp_path)
    state = convert_checkpoint(path, tmp_path / "out.safetensors")
    assert not marker.exists()
    assert set(state) == {"cls_token"}  # the payload was skipped, not run
    assert set(load_file(str(tmp_path / "out.safetensors"))) == {"cls_token"}
    with pytest.raises(CheckpointMismatch, match="missing keys pos_embed"):
        import_weights(path, "eva_vit")  # the tiny manifest's eva part needs more keys
    assert not marker.exists()
    assert weights_status()[0].state == "missing"
    # the payload is live: an unrestricted load runs it (the control for the checks above)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_tensor_that_needs_code_is_refused(tmp_path):
    path = _unsafe_tensor_pth(tmp_path)
    with pytest.raises(
        UnsafeCheckpoint, match=r"cls_token is stored as torch\._utils\._rebuild_sparse_tensor"
    ):
        convert_checkpoint(path, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    with pytest.raises(UnsafeCheckpoint):
        import_weights(path, "eva_vit")
    assert weights_status()[0].state == "missing"


def test_unsafe_download_is_refused_and_deleted(online, tmp_path, reference_dir, monkeypatch):
    manifest_path = write_tiny_manifest(tmp_path / "m.json", online, reference_dir, exact=False)
    monkeypatch.setenv(MANIFEST_ENV, str(manifest_path))
    online.files["tiny_eva_vit.pth"] = _unsafe_tensor_pth(tmp_path).read_bytes()
    with pytest.raises(UnsafeCheckpoint, match="deleted"):
        download_weights(["eva_vit"])
    assert not list(weights_dir().glob("tiny_eva_vit*"))
    assert weights_status()[0].state == "missing"


def test_real_manifest_refuses_the_tiny_files_by_shape(reference_dir):
    with pytest.raises(
        CheckpointMismatch, match=r"pos_embed is \[1, 17, 64\], expected \[1, 257, 1408\]"
    ):
        import_weights(reference_dir / "tiny_eva_vit.pth", "eva_vit")
    assert weights_status()[0].state == "missing"


def test_training_checkpoint_imports_and_verify_lists_what_was_skipped(
    online, reference_dir, tmp_path, monkeypatch
):
    import argparse

    from moviechat_desktop.engine.weights import verify_weights

    manifest_path = write_tiny_manifest(tmp_path / "m.json", online, reference_dir, exact=False)
    monkeypatch.setenv(MANIFEST_ENV, str(manifest_path))
    marker = tmp_path / "pwned"
    state = torch.load(reference_dir / "tiny_videollama.pth", weights_only=True)["model"]
    path = tmp_path / "finetune-vicuna7b-v2.pth"
    torch.save(
        {
            "model": state,
            "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": []},
            "config": argparse.Namespace(lr=1e-4, evil=_Evil(marker)),
            "scaler": None,
            "epoch": 4,
        },
        path,
    )
    imported = import_weights(path, "videollama").imported
    assert [s.id for s in imported] == ["videollama"]
    assert set(load_file(str(imported[0].path))) == set(state)
    (result,) = verify_weights(["videollama"])
    assert result.ok, result.detail
    assert "skipped without running" in result.detail
    for listed in ("optimizer (dict of 2)", "config (argparse.Namespace)", "epoch (int)"):
        assert listed in result.detail
    assert "placeholders never imported: argparse.Namespace, posix.system" in result.detail
    assert not marker.exists()
