"""Film fingerprints and cache keys: content decides, not the path; every input of the tokens
changes the key."""

import builtins
import dataclasses
import os
import shutil

import pytest

from moviechat_desktop.engine.model.config import ModelConfig
from moviechat_desktop.engine.model.paths import ModelPaths
from moviechat_desktop.engine.settings import SamplingSettings
from moviechat_desktop.engine.store.fingerprint import (
    BLOCK_SIZE,
    SAMPLED_BLOCKS,
    CacheKey,
    file_fingerprint,
    model_identity,
    sampled_offsets,
    sampling_identity,
)


@pytest.fixture
def big_file(tmp_path):
    """5 MB of pseudo-random bytes: the sampled path (bigger than all the blocks together)."""
    path = tmp_path / "film.bin"
    path.write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    return path


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_offsets_cover_small_files_whole_and_sample_big_ones():
    assert sampled_offsets(0) == []
    assert sampled_offsets(100) == [0]
    small = BLOCK_SIZE * SAMPLED_BLOCKS
    assert sampled_offsets(small) == list(range(0, small, BLOCK_SIZE))
    size = 4 * 1024**3  # 4 GB
    offsets = sampled_offsets(size)
    assert len(offsets) == SAMPLED_BLOCKS
    assert offsets[0] == 0 and offsets[-1] == size - BLOCK_SIZE
    assert offsets == sorted(offsets) and all(0 <= o <= size - BLOCK_SIZE for o in offsets)


def test_renamed_copy_has_the_same_fingerprint(big_file, tmp_path):
    moved = tmp_path / "sub dir" / "Renamed film é.bin"
    moved.parent.mkdir()
    shutil.copy(big_file, moved)  # a copy: new path, new mtime
    assert file_fingerprint(moved) == file_fingerprint(big_file)


def test_a_changed_sampled_byte_or_an_append_changes_it(big_file):
    before = file_fingerprint(big_file)
    offsets = sampled_offsets(big_file.stat().st_size)
    _flip(big_file, offsets[3] + 17)
    changed = file_fingerprint(big_file)
    assert changed != before
    _flip(big_file, offsets[3] + 17)  # back
    assert file_fingerprint(big_file) == before
    with open(big_file, "ab") as fh:
        fh.write(b"\0")
    assert file_fingerprint(big_file) not in (before, changed)


def test_a_byte_outside_the_sampled_blocks_is_not_seen(big_file):
    """The documented price of reading 512 KiB instead of the whole film."""
    before = file_fingerprint(big_file)
    offsets = sampled_offsets(big_file.stat().st_size)
    gap = offsets[1] + BLOCK_SIZE + 5  # between the 2nd and 3rd blocks
    assert gap < offsets[2]
    _flip(big_file, gap)
    assert file_fingerprint(big_file) == before


def test_fingerprint_reads_only_the_sampled_blocks(tmp_path, monkeypatch):
    """A 4 GB film costs 8 reads of 64 KiB (a sparse file: no 4 GB on disk)."""
    path = tmp_path / "huge.mkv"
    with open(path, "wb") as fh:
        fh.truncate(4 * 1024**3)
    read_sizes = []
    real_open = builtins.open

    class CountingFile:
        def __init__(self, handle):
            self._h = handle

        def read(self, n=-1):
            data = self._h.read(n)
            read_sizes.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self._h, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._h.close()

    monkeypatch.setattr(builtins, "open", lambda *a, **k: CountingFile(real_open(*a, **k)))
    file_fingerprint(path)
    assert read_sizes == [BLOCK_SIZE] * SAMPLED_BLOCKS


def test_model_identity_follows_encoder_weights_config_and_dtype(reference_dir, tmp_path):
    paths = ModelPaths.from_reference_dir(reference_dir)
    config = ModelConfig.from_reference_json(paths.config)
    base = model_identity(paths, config, "float32")
    assert model_identity(paths, config, "float32") == base
    assert model_identity(paths, config, "float16") != base
    merged = dataclasses.replace(
        config, memory=dataclasses.replace(config.memory, short_memory_merge=3)
    )
    assert model_identity(paths, merged, "float32") != base
    # the same weights moved elsewhere (times kept): the same identity
    moved = tmp_path / "moved.pth"
    shutil.copy2(paths.eva_vit, moved)
    assert model_identity(dataclasses.replace(paths, eva_vit=moved), config, "float32") == base
    # edited in place, even outside the sampled blocks: another identity
    stat = moved.stat()
    data = bytearray(moved.read_bytes())
    offsets = sampled_offsets(len(data))
    outside = offsets[1] + BLOCK_SIZE + 1
    assert outside < offsets[2]
    data[outside] ^= 0x01
    moved.write_bytes(bytes(data))
    assert file_fingerprint(moved) == file_fingerprint(paths.eva_vit)  # the blocks agree
    assert model_identity(dataclasses.replace(paths, eva_vit=moved), config, "float32") != base
    # other content under the same time: another identity
    os.utime(moved, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    data[offsets[1] + 3] ^= 0x01
    moved.write_bytes(bytes(data))
    os.utime(moved, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert model_identity(dataclasses.replace(paths, eva_vit=moved), config, "float32") != base
    # the decoder and the video Q-Former do not shape the memory
    decoder = dataclasses.replace(paths, videollama=tmp_path / "x.pth", llama_dir=tmp_path)
    assert model_identity(decoder, config, "float32") == base


def test_cache_key_digest_covers_every_part():
    sampling = sampling_identity(SamplingSettings())
    key = CacheKey("film", {"m": 1}, sampling)
    assert key.digest == CacheKey("film", {"m": 1}, dict(sampling)).digest
    assert len(key.digest) == 32
    others = [
        CacheKey("film2", {"m": 1}, sampling),
        CacheKey("film", {"m": 2}, sampling),
        CacheKey("film", {"m": 1}, sampling_identity(SamplingSettings(n_fragments=64))),
        CacheKey("film", {"m": 1}, sampling_identity(SamplingSettings(frames_per_fragment=4))),
        CacheKey("film", {"m": 1}, sampling_identity(SamplingSettings(plan="fps"))),
    ]
    assert len({key.digest, *(k.digest for k in others)}) == 1 + len(others)
    # the unused rate of the other plan does not matter
    assert sampling_identity(SamplingSettings(fps=2.0)) == sampling
    assert sampling_identity(SamplingSettings(plan="fps", n_fragments=3)) == sampling_identity(
        SamplingSettings(plan="fps")
    )
