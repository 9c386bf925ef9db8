"""The restricted ``.pth`` reader: training checkpoints as LAVIS / Video-LLaMA save them load,
pickled code never runs, tensors that need code are refused, and mutated pickles only ever
produce a clean error."""

from __future__ import annotations

import argparse
import io
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moviechat_desktop.engine.errors import CheckpointMismatch, MovieChatError, UnsafeCheckpoint
from moviechat_desktop.engine.model.checkpoint_io import read_checkpoint, read_checkpoint_contents

EFFECTS: list[str] = []  # anything a pickled object would do when run lands here


def _record(what):
    EFFECTS.append(what)
    return what


class FakeDictConfig:
    """Shaped like OmegaConf's DictConfig: custom state, restored by ``__setstate__``."""

    def __init__(self, content):
        self._content = content

    def __getstate__(self):
        return {"_content": self._content, "_flags": {"readonly": True}}

    def __setstate__(self, state):
        _record("FakeDictConfig.__setstate__")
        self.__dict__.update(state)


class Payload:
    def __reduce__(self):
        return (_record, ("Payload ran",))


@pytest.fixture(autouse=True)
def _no_effects():
    EFFECTS.clear()
    yield
    EFFECTS.clear()


def _state_dict():
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 4)
    state = OrderedDict(
        [
            ("llama_proj.weight", linear.weight.detach().half()),
            ("llama_proj.bias", torch.nn.Parameter(linear.bias.detach().clone())),
            ("video_query_tokens", torch.randn(1, 3, 6)),
            ("position_ids", torch.arange(5).unsqueeze(0)),
            ("bf16", torch.randn(2, 3, dtype=torch.bfloat16)),
            ("scalar", torch.tensor(3.5)),
            ("empty", torch.zeros(0, 4)),
        ]
    )
    base = torch.arange(12.0).reshape(3, 4)
    state["tied_a"] = base
    state["tied_view"] = base[1]  # a view into a shared storage
    state["transposed"] = base.t()
    flagged = torch.ones(2)
    flagged.note = "python attribute"  # pickled through _rebuild_from_type_v2
    state["flagged"] = flagged
    state._metadata = {"": {"version": 1}}  # as nn.Module.state_dict() sets it
    return state


def _training_checkpoint(path, state):
    """``{'model', 'optimizer', 'config', 'scaler', 'epoch'}`` as the LAVIS runner saves it."""
    params = [torch.nn.Parameter(torch.randn(4, 6))]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    params[0].sum().backward()
    optimizer.step()
    config = argparse.Namespace(
        run=FakeDictConfig({"lr": 1e-4, "seed": 42}), amp=True, best=np.float64(0.75)
    )
    torch.save(
        {
            "model": state,
            "optimizer": optimizer.state_dict(),
            "config": config,
            "scaler": {"scale": 65536.0, "growth_tracker": 3},
            "epoch": 4,
            "payload": Payload(),
        },
        path,
    )


def test_training_checkpoint_loads_only_the_state_dict(tmp_path):
    path = tmp_path / "finetune.pth"
    state = _state_dict()
    _training_checkpoint(path, state)
    contents = read_checkpoint_contents(path)
    assert EFFECTS == []  # no __setstate__, no __reduce__ callable ran
    assert list(contents.tensors) == list(state)
    for key, tensor in state.items():
        back = contents.tensors[key]
        assert back.dtype == tensor.dtype and back.shape == tensor.shape, key
        assert torch.equal(back, tensor.detach()), key
    assert contents.tensors["tied_view"].untyped_storage().data_ptr() == (
        contents.tensors["tied_a"].untyped_storage().data_ptr()
    )
    skipped = " ".join(contents.skipped)
    for name in ("optimizer (dict of 2)", "config (argparse.Namespace)", "scaler (dict of 2)"):
        assert name in skipped
    assert "epoch (int)" in skipped and f"payload ({__name__}._record)" in skipped
    assert "argparse.Namespace" in contents.skipped_globals
    assert f"{__name__}.FakeDictConfig" in contents.skipped_globals
    assert any(g.startswith("numpy") for g in contents.skipped_globals)
    # the control: an unrestricted load really would run both
    torch.load(path, weights_only=False)
    assert "Payload ran" in EFFECTS and "FakeDictConfig.__setstate__" in EFFECTS


def test_plain_state_dict_and_extras_inside_it(tmp_path):
    path = tmp_path / "eva.pth"
    state = _state_dict()
    torch.save({**state, "note": Payload(), "step": 7}, path)
    contents = read_checkpoint_contents(path)
    assert set(contents.tensors) == set(state)
    assert sorted(contents.skipped) == sorted([f"note ({__name__}._record)", "step (int)"])
    assert EFFECTS == []


def test_tensor_that_needs_code_is_refused_even_beside_good_ones(tmp_path):
    path = tmp_path / "sparse.pth"
    torch.save({"model": {"good": torch.ones(2), "bad": torch.eye(3).to_sparse()}}, path)
    with pytest.raises(UnsafeCheckpoint, match=r"bad is stored as torch\._utils\._rebuild_sparse"):
        read_checkpoint(path)


def test_unreadable_tensors_outside_the_state_dict_are_only_skipped(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save({"model": {"w": torch.ones(2)}, "optimizer": {"m": torch.eye(3).to_sparse()}}, path)
    contents = read_checkpoint_contents(path)
    assert list(contents.tensors) == ["w"]
    assert "torch._utils._rebuild_sparse_tensor" in contents.skipped_globals


def test_legacy_and_foreign_files_are_refused_clearly(tmp_path):
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpoint, match="plain pickle"):
        read_checkpoint(legacy)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointMismatch, match="not a zip archive"):
        read_checkpoint(text)
    only_config = tmp_path / "config.pth"
    torch.save({"config": argparse.Namespace(a=1)}, only_config)
    with pytest.raises(CheckpointMismatch, match="state dict of tensors"):
        read_checkpoint(only_config)
    listed = tmp_path / "list.pth"
    torch.save([torch.ones(1)], listed)
    with pytest.raises(CheckpointMismatch, match="does not hold a state dict"):
        read_checkpoint(listed)


def _rewrite(path, transform):
    """Copy the zip at ``path`` with each member passed through ``transform(name, data)``."""
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = transform(info.filename, src.read(info))
            if data is not None:
                dst.writestr(info.filename, data)
    path.write_bytes(out.getvalue())


def test_damaged_storages_are_refused(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"w": torch.ones(64)}, path)
    _rewrite(path, lambda name, data: data[:10] if "/data/" in name else data)
    with pytest.raises(UnsafeCheckpoint, match="storage 0 holds 10 bytes, 256 are needed"):
        read_checkpoint(path)
    torch.save({"w": torch.ones(64)}, path)
    _rewrite(path, lambda name, data: None if "/data/" in name else data)
    with pytest.raises(UnsafeCheckpoint, match="storage 0 is missing"):
        read_checkpoint(path)


def test_sizes_beyond_the_storage_are_refused(tmp_path):
    path = tmp_path / "big.pth"
    torch.save({"w": torch.ones(2, 3)}, path)
    # the pickle says (2, 3) with stride (3, 1); claim a bigger first dimension
    _rewrite(
        path,
        lambda n, d: (
            d.replace(b"K\x02K\x03\x86", b"K\x09K\x03\x86", 1) if n.endswith("data.pkl") else d
        ),
    )
    with pytest.raises(UnsafeCheckpoint, match="reaches element"):
        read_checkpoint(path)


# ------------------------------------------------------------------ fuzzing the interpreter
def _seed_archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "seed.pth"
    _training_checkpoint(path, _state_dict())
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    pkl = next(n for n in members if n.endswith("data.pkl"))
    return path.parent, members, pkl


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    return _seed_archive(tmp_path_factory)


mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 16)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
)


def _mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, where, what in edits:
        pos = where % (len(buf) + 1)
        if kind == "set" and buf:
            buf[pos % len(buf)] = what
        elif kind == "insert":
            buf[pos:pos] = what
        elif kind == "delete":
            del buf[pos : pos + what]
        elif kind == "truncate":
            del buf[pos:]
    return bytes(buf)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edits=st.lists(mutation, min_size=1, max_size=6))
def test_mutated_pickles_never_run_code_or_crash(seed, edits):
    folder, members, pkl = seed
    path = folder / "mutated.pth"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, _mutate(data, edits) if name == pkl else data)
    try:
        contents = read_checkpoint_contents(path)
    except MovieChatError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert all(isinstance(t, torch.Tensor) for t in contents.tensors.values())
    assert EFFECTS == []
