"""Parity with the ORIGINAL MovieChat on the decoder side: prompt, embeddings, logits, greedy.

Loads the tiny model through ``MovieChatModel.load`` (tiny_llama/ has no tokenizer files, so the
byte-level fake of the fixtures is used, as the harness did). Every expected value is read from
the fixture files.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from moviechat_desktop.engine.memory.film_memory import consolidate
from moviechat_desktop.engine.model.llm import Conversation, GenerationSettings
from moviechat_desktop.engine.model.movie_chat import MovieChatModel
from moviechat_desktop.engine.model.paths import ModelPaths
from moviechat_desktop.engine.model.streaming import AnswerStream
from moviechat_desktop.engine.model.tokenizer import ByteTokenizer

TOL = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(scope="module")
def ref(reference_dir):
    return load_file(str(reference_dir / "reference_outputs.safetensors"))


@pytest.fixture(scope="module")
def llm_index(reference_dir):
    return json.loads((reference_dir / "reference_index.json").read_text())["llm"]


@pytest.fixture(scope="module")
def model(reference_dir) -> MovieChatModel:
    return MovieChatModel.load(ModelPaths.from_reference_dir(reference_dir), device="cpu")


def _greedy(llm_index) -> GenerationSettings:
    return GenerationSettings(
        greedy=True, max_new_tokens=len(llm_index["greedy"]["global_new_tokens"])
    )


def test_tokenizer_is_the_fixture_fake(model):
    assert isinstance(model.llm.tokenizer, ByteTokenizer)


def test_prompt_text_and_segment_ids(model, llm_index):
    prompt = Conversation().prompt(llm_index["question"])
    assert prompt.split("<ImageHere>") == llm_index["prompt_segments"]
    assert model.llm.segment_ids(prompt) == llm_index["prompt_segment_ids"]


@pytest.mark.parametrize("mode", ["global", "breakpoint"])
def test_prompt_embeds(model, ref, llm_index, mode):
    embeds = model.prompt_embeds(
        ref[f"{mode}_inputs_llama"], Conversation(), llm_index["question"], _greedy(llm_index)
    )
    expected = ref[f"{mode}_prompt_embeds"]
    assert embeds.shape == expected.shape
    # Layout: seg0 (with BOS) ; visual tokens ; seg1 — exactly.
    first, second = (len(ids) for ids in llm_index["prompt_segment_ids"])
    visual = ref[f"{mode}_inputs_llama"].shape[1]
    assert first + visual + second == expected.shape[1]
    torch.testing.assert_close(embeds[:, first : first + visual], ref[f"{mode}_inputs_llama"])
    torch.testing.assert_close(embeds, expected, **TOL)


def test_prompt_logits(model, ref):
    with torch.inference_mode():
        logits = model.llm.hf(inputs_embeds=ref["global_prompt_embeds"]).logits
        last = model.llm.hf(inputs_embeds=ref["breakpoint_prompt_embeds"]).logits[:, -1]
    torch.testing.assert_close(logits, ref["global_prompt_logits"], **TOL)
    torch.testing.assert_close(last, ref["breakpoint_prompt_logits_last"], **TOL)


def test_fixed_input_embeds_and_logits(model, ref, llm_index):
    ids = llm_index["llm_fixed_input_ids"]
    with torch.inference_mode():
        embeds = model.llm.embed_ids(ids)
        logits = model.llm.hf(input_ids=torch.tensor([ids])).logits
    torch.testing.assert_close(embeds, ref["llm_fixed_input_embeds"], **TOL)
    torch.testing.assert_close(logits, ref["llm_fixed_input_logits"], **TOL)


@pytest.mark.parametrize("mode", ["global", "breakpoint"])
def test_greedy_tokens_exactly(model, ref, llm_index, mode):
    stream = AnswerStream(model.llm, ref[f"{mode}_prompt_embeds"], _greedy(llm_index))
    chunks = list(stream)
    assert stream.token_ids == llm_index["greedy"][f"{mode}_new_tokens"]
    # What was streamed is the post-processed answer, piece by piece.
    assert "".join(chunks) == stream.answer
    assert stream.answer == model.llm.tokenizer.decode(stream.token_ids).strip()


def test_end_to_end_from_pixels_to_greedy_tokens(model, ref, llm_index, reference_dir):
    """Pixels → our memory → the original's table (fed explicitly) → the same greedy answer."""
    frames = ref["input_video"][0].permute(1, 0, 2, 3)  # (T, 3, S, S)
    tokens = model.encode_frames(frames)
    per = model.config.memory.frames_per_fragment
    memory = torch.cat(
        [
            consolidate(tokens[i : i + per], model.config.memory.short_memory_merge).frames
            for i in range(0, tokens.shape[0], per)
        ]
    )
    visual = model.visual_tokens(memory, ref["frame_position_embeddings"])
    conversation = Conversation()
    embeds = model.prompt_embeds(visual, conversation, llm_index["question"], _greedy(llm_index))
    stream = AnswerStream(model.llm, embeds, _greedy(llm_index))
    list(stream)
    assert stream.token_ids == llm_index["greedy"]["global_new_tokens"]
    # stream_answer gives the same text and records the turn.
    text = "".join(
        model.stream_answer(visual, conversation, llm_index["question"], _greedy(llm_index))
    )
    assert text == stream.answer
    assert [(t.question, t.answer) for t in conversation.turns] == [(llm_index["question"], text)]
