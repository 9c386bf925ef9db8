"""``model.position_table``: "trained" (ours) or "original" (the init-time table the original
used, reference README finding 1). With "original" the tiny set reproduces the original's
outputs without any table passed by hand."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from moviechat_desktop.engine.errors import CheckpointMismatch
from moviechat_desktop.engine.memory.consolidation import consolidate
from moviechat_desktop.engine.model.llm import Conversation, GenerationSettings
from moviechat_desktop.engine.model.movie_chat import MovieChatModel
from moviechat_desktop.engine.model.paths import ModelPaths
from moviechat_desktop.engine.model.positions import (
    hierarchical_position_table,
    original_position_table,
    shipped_original_table,
)
from moviechat_desktop.engine.model.streaming import AnswerStream

TOL = {"atol": 1e-4, "rtol": 1e-4}  # the reference set's recommended tolerance


@pytest.fixture(scope="module")
def ref(reference_dir):
    return load_file(str(reference_dir / "reference_outputs.safetensors"))


@pytest.fixture(scope="module")
def original(reference_dir) -> MovieChatModel:
    paths = ModelPaths.from_reference_dir(reference_dir)
    return MovieChatModel.load(paths, device="cpu", position_table="original")


def test_original_mode_reproduces_the_originals_visual_tokens(original, ref):
    torch.testing.assert_close(original.position_table, ref["frame_position_embeddings"], **TOL)
    memory = ref["global_long_memory_after_fragment_4"]  # (10, Q, D)
    torch.testing.assert_close(original.visual_tokens(memory), ref["global_inputs_llama"], **TOL)
    video = torch.cat(
        [
            ref["breakpoint_long_memory"],
            ref["breakpoint_temp_short_memory"],
            ref["breakpoint_cur_image_tokens"],
        ]
    )
    torch.testing.assert_close(original.visual_tokens(video), ref["breakpoint_inputs_llama"], **TOL)


def test_original_mode_end_to_end_gives_the_originals_greedy_answer(original, ref, reference_dir):
    llm = json.loads((reference_dir / "reference_index.json").read_text())["llm"]
    expected = llm["greedy"]["global_new_tokens"]
    settings = GenerationSettings(greedy=True, max_new_tokens=len(expected))
    tokens = original.encode_frames(ref["input_video"][0].permute(1, 0, 2, 3))
    per, keep = (
        original.config.memory.frames_per_fragment,
        original.config.memory.short_memory_merge,
    )
    memory = torch.cat(
        [consolidate(tokens[i : i + per], keep).frames for i in range(0, tokens.shape[0], per)]
    )
    visual = original.visual_tokens(memory)  # the model's own table: no override
    embeds = original.prompt_embeds(visual, Conversation(), llm["question"], settings)
    stream = AnswerStream(original.llm, embeds, settings)
    list(stream)
    assert stream.token_ids == expected


def test_trained_mode_is_the_default_and_differs(reference_dir, ref, original):
    trained = MovieChatModel.load(ModelPaths.from_reference_dir(reference_dir), device="cpu")
    assert trained.position_table_mode == "trained"
    memory = ref["global_long_memory_after_fragment_4"]
    torch.testing.assert_close(
        trained.visual_tokens(memory), ref["global_inputs_llama_ckptpos"], **TOL
    )
    assert not torch.allclose(trained.position_table, original.position_table)


def test_shipped_real_table_is_the_reference_sets_file(reference_dir):
    shipped = shipped_original_table()
    digest = hashlib.sha256(shipped.read_bytes()).hexdigest()
    reference = reference_dir / "full_size_seed42_position_table.safetensors"
    assert digest == hashlib.sha256(reference.read_bytes()).hexdigest()
    table = original_position_table(None, 256, 768)
    init = load_file(str(shipped))["video_frame_position_embedding_init_weight"]  # (32, 768)
    torch.testing.assert_close(table[:16], init[:16], atol=2.4e-7, rtol=0)
    torch.testing.assert_close(table, hierarchical_position_table(init), atol=1e-6, rtol=0)


def test_a_table_of_another_shape_fails_the_load(reference_dir, tmp_path):
    paths = ModelPaths.from_reference_dir(reference_dir)
    real_table = dataclasses.replace(paths, original_positions=None)  # 768 wide, tiny is 64
    with pytest.raises(CheckpointMismatch, match=r"is \[256, 768\], this model needs \[256, 64\]"):
        MovieChatModel.load(real_table, device="cpu", position_table="original")
    empty = tmp_path / "t.safetensors"
    from safetensors.torch import save_file

    save_file({"other": torch.zeros(1)}, str(empty))
    with pytest.raises(CheckpointMismatch, match="holds no frame_position_embeddings"):
        original_position_table(empty, 256, 64)


def test_setting_reaches_the_model_and_a_bad_value_falls_back(reference_dir, caplog):
    from moviechat_desktop.engine.assistant import Assistant
    from moviechat_desktop.engine.settings import load_settings

    settings = load_settings()
    assert settings.model.position_table == "trained"  # configs/defaults.toml
    settings.model.position_table = "original"
    assistant = Assistant(settings, model_dir=reference_dir, use_cache=False, keep_history=False)
    assistant.load_model()
    assert assistant.model.position_table_mode == "original"
    settings.model.position_table = "seed-1"
    with caplog.at_level("WARNING"):
        assert Assistant(settings, model_dir=reference_dir)._position_table_setting() == "trained"
    assert "'seed-1' unknown" in caplog.text
