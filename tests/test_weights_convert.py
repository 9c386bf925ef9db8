""".pth → safetensors conversion, and refusing checkpoints that would run pickled code."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file
from test_weights_fakehub import write_tiny_manifest

from moviechat_desktop.engine.errors import UnsafeCheckpoint
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


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    path, marker = _malicious_pth(tmp_path)
    with pytest.raises(UnsafeCheckpoint):
        convert_checkpoint(path, tmp_path / "out.safetensors")
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()
    with pytest.raises(UnsafeCheckpoint):
        import_weights(path, "eva_vit")
    assert not marker.exists()
    assert weights_status()[0].state == "missing"


def test_malicious_download_is_refused_and_deleted(online, tmp_path, reference_dir, monkeypatch):
    manifest_path = write_tiny_manifest(tmp_path / "m.json", online, reference_dir, exact=False)
    monkeypatch.setenv(MANIFEST_ENV, str(manifest_path))
    evil, marker = _malicious_pth(tmp_path)
    online.files["tiny_eva_vit.pth"] = evil.read_bytes()
    with pytest.raises(UnsafeCheckpoint, match="deleted"):
        download_weights(["eva_vit"])
    assert not marker.exists()
    assert not list(weights_dir().glob("tiny_eva_vit*"))
    assert weights_status()[0].state == "missing"


def test_real_manifest_refuses_the_tiny_files_by_shape(reference_dir):
    from moviechat_desktop.engine.errors import CheckpointMismatch

    with pytest.raises(
        CheckpointMismatch, match=r"pos_embed is \[1, 17, 64\], expected \[1, 257, 1408\]"
    ):
        import_weights(reference_dir / "tiny_eva_vit.pth", "eva_vit")
    assert weights_status()[0].state == "missing"
