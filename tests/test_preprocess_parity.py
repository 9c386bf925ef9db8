"""Preprocessing parity with the original's processors (reference README, section D)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from moviechat_desktop.engine.video.preprocess import (
    MEAN,
    STD,
    normalize,
    preprocess_image,
    resize_bicubic,
)


@pytest.fixture(scope="module")
def index(reference_dir):
    return json.loads((reference_dir / "preprocessing_index.json").read_text())


@pytest.fixture(scope="module")
def tensors(reference_dir, index):
    loaded = load_file(reference_dir / index["file"])
    for key, spec in index["tensors"].items():  # the fixture is what its index says it is
        assert list(loaded[key].shape) == spec["shape"]
        assert str(loaded[key].dtype) == f"torch.{spec['dtype']}"
    return loaded


def _key(index, key):
    assert key in index["tensors"], f"{key} is not described in preprocessing_index.json"
    return key


def test_constants_match_the_reference(index):
    assert index["constants"]["mean"] == list(MEAN)
    assert index["constants"]["std"] == list(STD)


def test_breakpoint_resize_is_pillow_bicubic_bit_exact(index, tensors):
    frame = tensors[_key(index, "frame_uint8")].numpy()
    size = index["constants"]["image_size"]
    resized = resize_bicubic(frame, size)
    expected = tensors[_key(index, "blip2_image_eval_resized_uint8")].numpy()
    assert resized.dtype == np.uint8
    assert resized.shape == expected.shape
    assert np.array_equal(resized, expected)


def test_preprocess_image_equals_blip2_image_eval_processor(index, tensors):
    frame = tensors[_key(index, "frame_uint8")].numpy()
    out = preprocess_image(frame, index["constants"]["image_size"])
    expected = tensors[_key(index, "blip2_image_eval_output")]
    assert out.dtype == torch.float32
    assert torch.equal(out, expected)  # the README says bitwise


def test_normalize_equals_alpro_video_eval_processor(index, tensors):
    frame = tensors[_key(index, "alpro_video_eval_input_uint8")]  # (H, W, 3) uint8
    expected = tensors[_key(index, "alpro_video_eval_output")]  # (C, T, H, W)
    out = normalize(frame.unsqueeze(0))  # (T, C, H, W)
    assert out.dtype == torch.float32
    assert torch.equal(out, expected.permute(1, 0, 2, 3))


def test_other_sizes_follow_the_same_formula(index, tensors):
    """size is a parameter (the tiny model uses 56 px): Pillow bicubic then (u8/255-mean)/std."""
    frame = tensors[_key(index, "frame_uint8")].numpy()
    out = preprocess_image(frame, 56)
    assert out.shape == (3, 56, 56)
    pil = np.asarray(Image.fromarray(frame).resize((56, 56), Image.Resampling.BICUBIC))
    expected = (pil.astype(np.float32) / np.float32(255) - np.array(MEAN, np.float32)) / np.array(
        STD, np.float32
    )
    assert np.allclose(out.numpy(), expected.transpose(2, 0, 1), atol=1e-6)


def test_normalize_batches_and_keeps_frames_apart(index, tensors):
    frame = tensors[_key(index, "alpro_video_eval_input_uint8")]
    batch = torch.stack([frame, 255 - frame, frame.flip(0)])  # (3, H, W, 3)
    out = normalize(batch)
    assert out.shape == (3, 3, *frame.shape[:2])
    for i in range(3):
        assert torch.equal(out[i], normalize(batch[i : i + 1])[0])


@pytest.mark.parametrize(
    "bad",
    [torch.zeros((2, 8, 8, 3), dtype=torch.float32), torch.zeros((8, 8, 3), dtype=torch.uint8)],
)
def test_normalize_refuses_wrong_input(bad):
    with pytest.raises(ValueError, match="uint8"):
        normalize(bad)


def test_resize_refuses_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        resize_bicubic(np.zeros((8, 8), np.uint8), 4)
