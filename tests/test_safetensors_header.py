"""Crafted safetensors headers: a one-line ``WeightsCorrupt`` from every reader (never a
traceback), and a folder import that reports each bad file and imports the good ones."""

from __future__ import annotations

import json
import shutil
import struct

import pytest

from moviechat_desktop.cli import main
from moviechat_desktop.engine.errors import MovieChatError, WeightsCorrupt
from moviechat_desktop.engine.model.checkpoint_io import read_checkpoint
from moviechat_desktop.engine.model.safetensors_header import MAX_HEADER_BYTES, read_header
from moviechat_desktop.engine.weights import import_weights, weights_status
from moviechat_desktop.engine.weights.verify import safetensors_shapes

GOOD_ENTRY = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def write_raw(path, header: bytes, data: bytes = b"\0" * 8):
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def write_header(path, header, data: bytes = b"\0" * 8):
    return write_raw(path, json.dumps(header).encode(), data)


BAD_HEADERS = {
    "list": [GOOD_ENTRY],
    "string": "weights",
    "number": 12,
    "no_offsets": {"w": {"dtype": "F32", "shape": [2]}},
    "no_dtype": {"w": {"shape": [2], "data_offsets": [0, 8]}},
    "unknown_dtype": {"w": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}},
    "entry_is_list": {"w": [0, 8]},
    "offsets_past_end": {"w": {"dtype": "F32", "shape": [2**40], "data_offsets": [0, 2**42]}},
    "offsets_reversed": {"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}},
    "offsets_strings": {"w": {"dtype": "F32", "shape": [2], "data_offsets": ["0", "8"]}},
    "shape_mismatch": {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
    "negative_shape": {"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}},
    "bool_shape": {"w": {"dtype": "U8", "shape": [True], "data_offsets": [0, 8]}},
    "overlap": {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
    },
    "metadata_not_strings": {"__metadata__": {"k": [1]}, "w": GOOD_ENTRY},
}


def _bad_files(folder):
    files = {}
    for name, header in BAD_HEADERS.items():
        files[name] = write_header(folder / f"{name}.safetensors", header)
    deep = b'{"w": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    files["deep"] = write_raw(folder / "deep.safetensors", deep)
    files["not_json"] = write_raw(folder / "not_json.safetensors", b"\xff\xfe{")
    files["short"] = folder / "short.safetensors"
    files["short"].write_bytes(b"\x01\x02")
    huge = folder / "huge.safetensors"  # a header over the format's 100 MB (a sparse file)
    with open(huge, "wb") as fh:
        fh.write(struct.pack("<Q", MAX_HEADER_BYTES + 1))
        fh.truncate(8 + MAX_HEADER_BYTES + 1 + 8)
    files["huge"] = huge
    return files


@pytest.fixture
def bad_files(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    return _bad_files(folder)


def test_every_crafted_header_is_a_one_line_weights_corrupt(bad_files):
    for name, path in bad_files.items():
        with pytest.raises(WeightsCorrupt, match="not a valid safetensors file") as info:
            safetensors_shapes(path)
        assert "\n" not in str(info.value), name


def test_reading_a_crafted_checkpoint_is_a_clear_error(bad_files):
    for path in bad_files.values():
        with pytest.raises(MovieChatError, match="not a valid safetensors file"):
            read_checkpoint(path)


def test_real_files_pass_and_match_safetensors_own_reading(reference_dir):
    from safetensors import safe_open

    for path in (
        reference_dir / "reference_outputs.safetensors",
        reference_dir / "tiny_llama" / "model.safetensors",
    ):
        header = read_header(path)
        with safe_open(str(path), "pt") as fh:
            assert set(header.tensors) == set(fh.keys())
            for key in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                assert header.tensors[key].shape == tuple(fh.get_slice(key).get_shape())


def test_empty_tensors_and_metadata_are_valid(tmp_path):
    path = write_header(
        tmp_path / "ok.safetensors",
        {
            "__metadata__": {"format": "pt"},
            "empty": {"dtype": "F16", "shape": [0, 3], "data_offsets": [0, 0]},
            "w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
        },
    )
    header = read_header(path)
    assert header.shapes() == {"empty": (0, 3), "w": (2, 2)}
    assert header.metadata == {"format": "pt"}


def test_a_folder_import_reports_each_bad_file_and_imports_the_good_ones(
    tiny_manifest, reference_dir, bad_files
):
    folder = next(iter(bad_files.values())).parent
    shutil.copy(reference_dir / "tiny_eva_vit.pth", folder)
    shutil.copy(reference_dir / "tiny_videollama.pth", folder)
    result = import_weights(folder)
    assert sorted(s.id for s in result.imported) == ["eva_vit", "videollama"]
    reported = {line.split(":")[0] for line in result.ignored}
    assert reported == {f"{name}.safetensors" for name in bad_files}
    assert all("not a valid safetensors file" in line for line in result.ignored)
    assert [s.state for s in weights_status()] == ["ready", "missing", "ready", "missing"]


def test_cli_weights_import_of_a_bad_file_and_a_mixed_folder(
    capsys, tiny_manifest, reference_dir, bad_files
):
    folder = next(iter(bad_files.values())).parent
    assert main(["weights", "import", str(bad_files["list"])]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a valid safetensors file" in err
    assert "Traceback" not in err
    shutil.copy(reference_dir / "tiny_eva_vit.pth", folder)
    assert main(["weights", "import", str(folder)]) == 0
    out, err = capsys.readouterr()
    for name in bad_files:
        assert f"{name}.safetensors" in out + err
    assert "Traceback" not in out + err


def test_read_checkpoint_checks_the_header_itself(tmp_path):
    """Our checks run before safetensors' own (the same one-line reasons as `weights import`)."""
    path = write_header(tmp_path / "list.safetensors", [GOOD_ENTRY])
    with pytest.raises(WeightsCorrupt, match="its header is a JSON list, not an object"):
        read_checkpoint(path)
