"""Prompt layout, truncation, streaming stop handling, cancel, tokenizers and loading errors."""

from __future__ import annotations

import json
import shutil
import threading
import time
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from moviechat_desktop.engine.errors import Cancelled, CheckpointMismatch, OutOfGpuMemory
from moviechat_desktop.engine.model.checkpoints import load_frame_encoder, load_video_qformer
from moviechat_desktop.engine.model.config import ModelConfig
from moviechat_desktop.engine.model.encoder import FrameEncoder
from moviechat_desktop.engine.model.llm import (
    Conversation,
    GenerationSettings,
    LanguageModel,
    postprocess,
)
from moviechat_desktop.engine.model.movie_chat import MovieChatModel
from moviechat_desktop.engine.model.paths import ModelPaths
from moviechat_desktop.engine.model.prompt import PromptTooLong
from moviechat_desktop.engine.model.streaming import AnswerStream, visible_text
from moviechat_desktop.engine.model.tokenizer import ByteTokenizer, HFTokenizer, load_tokenizer
from moviechat_desktop.engine.model.video_qformer import VideoQFormer
from moviechat_desktop.engine.progress import CancelToken


# ---------------------------------------------------------------- fakes
class ScriptedLM:
    """Stands in for ``LlamaForCausalLM.generate``: emits ``script`` token by token with HF's
    order of operations (append → stopping criteria → streamer.put), optional pause per token."""

    def __init__(self, script, pause: float = 0.0, fail: BaseException | None = None) -> None:
        self.embedding = torch.nn.Embedding(600, 4)
        self.generation_config = SimpleNamespace(pad_token_id=0)
        self.script, self.pause, self.fail = list(script), pause, fail
        self.generated = 0
        self.config_seen = None

    def get_input_embeddings(self):
        return self.embedding

    def generate(
        self, inputs_embeds, attention_mask, generation_config, stopping_criteria, streamer
    ):
        self.config_seen = generation_config
        if self.fail is not None:
            raise self.fail
        ids = torch.zeros(1, 0, dtype=torch.long)
        streamer.put(ids)
        for token in self.script[: generation_config.max_new_tokens]:
            time.sleep(self.pause)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            self.generated += 1
            done = bool(stopping_criteria(ids, None)[0]) or token == generation_config.eos_token_id
            streamer.put(torch.tensor([token]))
            if done:
                break
        streamer.end()


class PieceTokenizer:
    """A tokenizer whose ids are multi-character pieces (like SentencePiece's)."""

    eos_id = 2
    stop_id_sequences = ((99,),)

    def __init__(self, pieces: dict[int, str]) -> None:
        self.pieces = pieces

    def encode(self, text: str, add_bos: bool) -> list[int]:
        return [1] if add_bos else []

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces.get(i, "") for i in ids)


def stream(script, tokenizer=None, settings=None, cancel=None, pause=0.0):
    lm = ScriptedLM(script, pause=pause)
    llm = LanguageModel(lm, tokenizer or ByteTokenizer())
    embeds = torch.zeros(1, 3, 4)
    return AnswerStream(llm, embeds, settings or GenerationSettings(greedy=True), cancel), lm


def generation_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "moviechat-generate"]


# ---------------------------------------------------------------- prompt
def test_prompt_is_the_originals(reference_dir):
    settings = json.loads((reference_dir / "inference_settings.json").read_text())
    git = settings["prompt_git_inference_py"]
    question = "Where is the cat?"
    assert Conversation().prompt(question) == git["prompt_1"] + " " + question + git["prompt_3"]


def test_multi_turn_layout():
    conversation = Conversation()
    conversation.add("Who is there?", "A man.")
    conversation.add("What does he hold?", "A cup.")
    head = Conversation().prompt("X").split(" X###")[0]  # system + ###Human: <Video>…</Video>
    assert conversation.prompt("Why?") == (
        head + " Who is there?###Assistant: A man.###Human: What does he hold?###Assistant: "
        "A cup.###Human: Why?###Assistant:"
    )
    assert conversation.prompt("Why?", skip_turns=1) == (
        head + " What does he hold?###Assistant: A cup.###Human: Why?###Assistant:"
    )
    assert conversation.prompt("a <ImageHere> b").count("<ImageHere>") == 1


def test_segments_tokenized_separately_bos_only_first():
    llm = LanguageModel(ScriptedLM([]), ByteTokenizer())
    first, second = llm.segment_ids(Conversation().prompt("Hi"))
    assert first[0] == ByteTokenizer.bos_id and ByteTokenizer.bos_id not in first[1:]
    assert ByteTokenizer.bos_id not in second
    assert ByteTokenizer().decode(second) == "</Video> Hi###Assistant:"


def test_settings_defaults_are_the_originals(reference_dir):
    defaults = json.loads((reference_dir / "inference_settings.json").read_text())[
        "generation_defaults"
    ]
    s = GenerationSettings()
    assert s.greedy is not defaults["do_sample"]
    assert (s.top_p, s.temperature, s.max_new_tokens, s.max_length, s.repetition_penalty) == (
        defaults["top_p"],
        defaults["temperature"],
        defaults["max_new_tokens"],
        defaults["max_length"],
        defaults["repetition_penalty"],
    )
    with pytest.raises(ValueError):
        GenerationSettings(max_new_tokens=10, max_length=10)


def test_old_turns_are_dropped_and_nothing_is_cut_from_the_front():
    """The oldest turns give way; when even the question does not fit beside the video it is
    refused: the embeddings are never left-truncated (the system text and video stay)."""
    lm = ScriptedLM([])
    llm = LanguageModel(lm, ByteTokenizer())
    model = MovieChatModel(
        config=ModelConfig(), encoder=None, video_qformer=None, llm=llm, device="cpu", dtype=None
    )
    width = model.visual_token_count
    conversation = Conversation()
    conversation.add("q" * 50, "a" * 50)
    conversation.add("short", "yes")
    visual = torch.ones(1, width, 4)
    full = llm.prompt_length(conversation.prompt("now?"), width)
    one_dropped = conversation.prompt("now?", skip_turns=1)
    settings = GenerationSettings(max_new_tokens=10, max_length=10 + full - 1)
    embeds = model.prompt_embeds(visual, conversation, "now?", settings)
    torch.testing.assert_close(embeds, llm.prompt_embeds(one_dropped, visual))
    alone = llm.prompt_length(Conversation().prompt("now?"), width)
    tight = GenerationSettings(max_new_tokens=10, max_length=10 + alone)
    embeds = model.prompt_embeds(visual, conversation, "now?", tight)
    torch.testing.assert_close(embeds, llm.prompt_embeds(Conversation().prompt("now?"), visual))
    too_tight = GenerationSettings(max_new_tokens=10, max_length=10 + alone - 1)
    with pytest.raises(PromptTooLong, match="question is too long"):
        model.prompt_embeds(visual, conversation, "now?", too_tight)


def test_postprocess_rules():
    assert postprocess("  A dog.###Human: more") == "A dog."
    assert postprocess("Assistant: It rains. ") == "It rains."


# ---------------------------------------------------------------- streaming
def test_visible_text_holds_back_a_possible_stop_string():
    assert visible_text("Hello #", final=False) == "Hello"
    assert visible_text("Hello ##", final=False) == "Hello"
    assert visible_text("Hello ##x", final=False) == "Hello ##x"
    assert visible_text("Hello ###x", final=False) == "Hello"
    assert visible_text("Hello #", final=True) == "Hello #"
    assert visible_text("  caf\ufffd", final=False) == "caf"


def test_stop_string_split_over_byte_tokens_is_never_shown():
    text = "Hi ##x ok###junk"
    answer, lm = stream(ByteTokenizer().encode(text, add_bos=False))
    chunks = list(answer)
    assert "".join(chunks) == "Hi ##x ok" == answer.answer
    assert lm.generated == len("Hi ##x ok###")  # stopped on the third '#'
    assert all("###" not in "".join(chunks[: i + 1]) for i in range(len(chunks)))


def test_stop_string_split_over_multi_character_pieces():
    pieces = {10: "The", 11: " end", 12: " #", 13: "##", 14: " more"}
    answer, lm = stream([10, 11, 12, 13, 14], tokenizer=PieceTokenizer(pieces))
    assert "".join(answer) == "The end" == answer.answer
    assert lm.generated == 4
    shown, _ = stream([10, 12, 14, 2], tokenizer=PieceTokenizer(pieces))
    assert "".join(shown) == "The # more"  # a lone '#' is text, released when settled


def test_first_token_is_stamped_when_the_decoder_emits_it_not_when_text_shows():
    # " #" is held back (it could become "###") until the third token settles it: the first
    # text comes two tokens after the first token
    pieces = {10: " #", 11: "#", 12: "x"}
    answer, _ = stream([10, 11, 12, 2], tokenizer=PieceTokenizer(pieces), pause=0.05)
    start = time.perf_counter()
    iterator = iter(answer)
    assert answer.first_token_at is None
    first_chunk = next(iterator)
    first_text_at = time.perf_counter()
    assert first_chunk == "##x"
    assert answer.first_token_at is not None
    assert start < answer.first_token_at <= first_text_at - 0.08  # two paused tokens later
    list(iterator)


def test_stop_token_id_sequence_stops_without_text():
    pieces = {10: "a", 11: "b"}
    answer, lm = stream([10, 11, 99, 10, 10], tokenizer=PieceTokenizer(pieces))
    assert "".join(answer) == "ab"
    assert lm.generated == 3
    assert answer.token_ids == [10, 11, 99]


def test_eos_ends_the_answer_and_greedy_config_is_passed():
    answer, lm = stream([*ByteTokenizer().encode("ok", add_bos=False), 2, 70, 70])
    assert "".join(answer) == "ok"
    assert lm.config_seen.do_sample is False and lm.config_seen.max_new_tokens == 300
    sampled, lm2 = stream([70, 2], settings=GenerationSettings(top_p=0.5, temperature=0.7))
    list(sampled)
    assert lm2.config_seen.do_sample is True
    assert (lm2.config_seen.top_p, lm2.config_seen.temperature) == (0.5, 0.7)


def test_cancel_stops_within_a_token_or_two_and_records_nothing():
    cancel = CancelToken()
    answer, lm = stream([70] * 300, cancel=cancel, pause=0.005)
    iterator = iter(answer)
    next(iterator)
    cancel.cancel()
    at_cancel = lm.generated
    with pytest.raises(Cancelled):
        list(iterator)
    assert lm.generated <= at_cancel + 2
    assert answer.answer is None
    assert not generation_threads()


def test_stream_answer_appends_only_complete_answers():
    llm = LanguageModel(
        ScriptedLM(ByteTokenizer().encode("Yes.###", add_bos=False)), ByteTokenizer()
    )
    model = MovieChatModel(
        config=ModelConfig(), encoder=None, video_qformer=None, llm=llm, device="cpu", dtype=None
    )
    conversation = Conversation()
    chunks = list(
        model.stream_answer(torch.ones(1, 2, 4), conversation, "Q?", GenerationSettings())
    )
    assert "".join(chunks) == "Yes."
    assert [(t.question, t.answer) for t in conversation.turns] == [("Q?", "Yes.")]
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        list(
            model.stream_answer(
                torch.ones(1, 2, 4), conversation, "Again?", GenerationSettings(), cancel
            )
        )
    assert len(conversation.turns) == 1


def test_closing_the_stream_early_stops_generation():
    answer, lm = stream([70] * 300, pause=0.002)
    iterator = iter(answer)
    next(iterator)
    iterator.close()
    assert lm.generated < 300
    assert not generation_threads()


def test_generation_errors_reach_the_consumer():
    llm = LanguageModel(
        ScriptedLM([], fail=torch.OutOfMemoryError("CUDA out of memory")), ByteTokenizer()
    )
    model = MovieChatModel(
        config=ModelConfig(), encoder=None, video_qformer=None, llm=llm, device="cpu", dtype=None
    )
    with pytest.raises(OutOfGpuMemory):
        list(model.stream_answer(torch.ones(1, 2, 4), Conversation(), "Q?", GenerationSettings()))
    failing = AnswerStream(
        LanguageModel(ScriptedLM([], fail=RuntimeError("boom")), ByteTokenizer()),
        torch.zeros(1, 1, 4),
        GenerationSettings(),
    )
    with pytest.raises(RuntimeError, match="boom"):
        list(failing)


# ---------------------------------------------------------------- tokenizers
def test_byte_tokenizer_matches_the_fixture_description(reference_dir):
    llm = json.loads((reference_dir / "reference_index.json").read_text())["llm"]
    tok = ByteTokenizer()
    for i, (segment, ids) in enumerate(
        zip(llm["prompt_segments"], llm["prompt_segment_ids"], strict=True)
    ):
        assert tok.encode(segment, add_bos=i == 0) == ids
        assert tok.decode(ids) == segment
    assert tok.encode("<ImageHere>", add_bos=False) == [512]
    assert tok.stop_id_sequences == (tuple(tok.encode("###", add_bos=False)),)


def test_hf_tokenizer_encodes_each_segment_like_sentencepiece(tmp_path):
    """A LLaMA-style SentencePiece model (identity normalization, byte fallback, dummy prefix),
    trained here in milliseconds: our HF path must tokenize each segment exactly as the
    original's slow LlamaTokenizer (= SentencePiece itself) plus BOS on the first."""
    import sentencepiece as spm

    corpus = [Conversation().prompt("What is happening in the video? A man rides a bike.")] * 30
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_prefix=str(tmp_path / "tokenizer"),
        vocab_size=300,
        model_type="bpe",
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
            }
        )
    )
    tokenizer = load_tokenizer(tmp_path)
    assert isinstance(tokenizer, HFTokenizer) and tokenizer.eos_id == 2
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    conversation = Conversation()
    conversation.add("Who?", "A  man, 日本.")
    llm = LanguageModel(ScriptedLM([]), tokenizer)
    first, second = conversation.prompt("Why?").split("<ImageHere>")
    assert llm.segment_ids(conversation.prompt("Why?")) == [
        [1, *sp.encode(first)],
        sp.encode(second),
    ]
    assert tokenizer.decode([*sp.encode(second), 2]) == second


def test_directory_without_tokenizer_files_gets_the_byte_tokenizer(reference_dir):
    assert isinstance(load_tokenizer(reference_dir / "tiny_llama"), ByteTokenizer)


# ---------------------------------------------------------------- loading errors
@pytest.fixture
def tiny_copy(reference_dir, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(reference_dir, target)
    return target


def _rewrite(path, edit) -> None:
    state = torch.load(path, weights_only=True)
    inner = state.get("model", state)
    edit(inner)
    torch.save(state, path)


def _meta_modules(directory):
    config = ModelConfig.from_reference_json(directory / "tiny_config.json")
    with torch.device("meta"):
        encoder = FrameEncoder(config.vision, config.qformer)
        video = VideoQFormer(
            config.video_qformer, config.llm_hidden_size, config.memory.max_frame_pos
        )
    return encoder, video


def test_missing_video_key_fails_the_whole_load(tiny_copy):
    _rewrite(tiny_copy / "tiny_videollama.pth", lambda s: s.pop("llama_proj.bias"))
    with pytest.raises(
        CheckpointMismatch, match=r"missing keys: tiny_videollama.pth: llama_proj.bias"
    ):
        MovieChatModel.load(ModelPaths.from_reference_dir(tiny_copy), device="cpu")


def test_unexpected_key_is_named(tiny_copy):
    key = "video_Qformer.bert.encoder.layer.0.attention.self.rotary.weight"
    _rewrite(tiny_copy / "tiny_videollama.pth", lambda s: s.__setitem__(key, torch.zeros(2)))
    _, video = _meta_modules(tiny_copy)
    with pytest.raises(CheckpointMismatch, match=rf"unexpected keys: tiny_videollama.pth: {key}"):
        load_video_qformer(video, tiny_copy / "tiny_videollama.pth")


def test_shape_mismatch_is_named_in_the_files_naming(tiny_copy):
    key = "blocks.0.mlp.fc1.weight"
    _rewrite(tiny_copy / "tiny_eva_vit.pth", lambda s: s.__setitem__(key, s[key][:-1]))
    encoder, _ = _meta_modules(tiny_copy)
    with pytest.raises(CheckpointMismatch, match=rf"shape mismatches: tiny_eva_vit.pth: {key}"):
        load_frame_encoder(
            encoder, tiny_copy / "tiny_eva_vit.pth", tiny_copy / "tiny_blip2_qformer.pth"
        )


@pytest.mark.parametrize(
    ("file", "key"),
    [
        ("tiny_blip2_qformer.pth", "Qformer.bert.encoder.layer.0.crossattention.self.key.weight"),
        ("tiny_blip2_qformer.pth", "ln_vision.weight"),
        ("tiny_eva_vit.pth", "blocks.1.attn.v_bias"),
    ],
)
def test_missing_frame_encoder_keys_are_named_as_in_the_file(tiny_copy, file, key):
    _rewrite(tiny_copy / file, lambda s: s.pop(key))
    encoder, _ = _meta_modules(tiny_copy)
    with pytest.raises(CheckpointMismatch, match=rf"missing keys: {file}: {key}"):
        load_frame_encoder(
            encoder, tiny_copy / "tiny_eva_vit.pth", tiny_copy / "tiny_blip2_qformer.pth"
        )


def test_missing_decoder_key_fails_the_load(tiny_copy):
    weights = tiny_copy / "tiny_llama" / "model.safetensors"
    state = load_file(str(weights))
    del state["model.norm.weight"]
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatch, match=r"missing keys: .*model\.norm\.weight"):
        MovieChatModel.load(ModelPaths.from_reference_dir(tiny_copy), device="cpu")


def test_conversation_round_trips_through_json():
    conversation = Conversation()
    conversation.add("Who?", "Bob 日本")
    restored = Conversation.from_dict(json.loads(json.dumps(conversation.to_dict())))
    assert restored == conversation
    assert restored.prompt("Next?") == conversation.prompt("Next?")
    with pytest.raises(ValueError):
        Conversation.from_dict({"turns": [["only a question"]]})


def test_decoder_shape_mismatch_and_unexpected_key_are_named(tiny_copy):
    weights = tiny_copy / "tiny_llama" / "model.safetensors"
    state = load_file(str(weights))
    state["model.norm.weight"] = state["model.norm.weight"][:-1]
    state["model.extra.weight"] = torch.ones(3)
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatch) as err:
        MovieChatModel.load(ModelPaths.from_reference_dir(tiny_copy), device="cpu")
    assert "unexpected keys: model.extra.weight" in str(err.value)
    assert "shape mismatches: model.norm.weight (file [" in str(err.value)
