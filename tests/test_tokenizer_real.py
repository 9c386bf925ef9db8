"""The real tokenizer's path: a SentencePiece model in the Vicuna repository's layout, loaded
as the app loads it, splits MovieChat's prompt exactly as the original's slow tokenizer did."""

from __future__ import annotations

import pytest
import sentencepiece
from sp_tokenizer import write_vicuna_style_tokenizer

from moviechat_desktop.engine.errors import CheckpointMismatch
from moviechat_desktop.engine.model.tokenizer import HFTokenizer, load_tokenizer
from moviechat_desktop.engine.model.tokenizer_check import (
    PROBE_QUESTIONS,
    check_tokenizer,
    prompt_segments,
)


@pytest.fixture(scope="module")
def vicuna_dir(tmp_path_factory):
    return write_vicuna_style_tokenizer(tmp_path_factory.mktemp("vicuna") / "MovieChat-vicuna")


def test_slow_and_fast_split_the_prompt_identically(vicuna_dir):
    tokenizer = load_tokenizer(vicuna_dir)
    assert isinstance(tokenizer, HFTokenizer)
    slow = sentencepiece.SentencePieceProcessor(model_file=str(vicuna_dir / "tokenizer.model"))
    for question in PROBE_QUESTIONS:
        first, second = prompt_segments(question)
        # the original: slow LlamaTokenizer = SentencePiece encode, BOS on segment 0 only
        assert tokenizer.encode(first, add_bos=True) == [slow.bos_id(), *slow.encode(first)]
        assert tokenizer.encode(second, add_bos=False) == slow.encode(second)
        assert tokenizer.decode(tokenizer.encode(second, add_bos=False)) == second


def test_bos_is_added_once(vicuna_dir):
    tokenizer = load_tokenizer(vicuna_dir)
    first, _ = prompt_segments("Hi?")
    ids = tokenizer.encode(first, add_bos=True)
    assert ids[0] == 1 and ids[1] != 1
    assert 1 not in tokenizer.encode(first, add_bos=False)


def test_check_tokenizer_passes_and_says_what_it_checked(vicuna_dir):
    summary = check_tokenizer(vicuna_dir)
    assert "BOS once" in summary
    assert (
        f"slow and fast tokenizers agree on {2 * len(PROBE_QUESTIONS)} prompt segments" in summary
    )
    assert "835" not in summary  # a 400-token vocabulary is not Vicuna's: no stop-id check


def test_check_tokenizer_catches_a_double_bos(vicuna_dir, monkeypatch):
    """A tokenizer that prepends BOS itself on top of the one asked for (a template, a
    hand-edited config): the first segment would start BOS BOS."""
    plain = HFTokenizer.encode

    def twice(self, text, add_bos):
        ids = plain(self, text, add_bos)
        return [self.hf.bos_token_id, *ids] if add_bos else ids

    monkeypatch.setattr(HFTokenizer, "encode", twice)
    with pytest.raises(CheckpointMismatch, match="does not add BOS exactly once"):
        check_tokenizer(vicuna_dir)


def test_check_tokenizer_catches_a_mismatched_pair(vicuna_dir, tmp_path):
    """transformers reads tokenizer.json when present: one converted from another model than
    the tokenizer.model beside it splits differently from the original's SentencePiece."""
    from transformers import AutoTokenizer

    other = write_vicuna_style_tokenizer(tmp_path / "other", vocab_size=600)
    mixed = tmp_path / "mixed"
    AutoTokenizer.from_pretrained(str(vicuna_dir)).save_pretrained(str(mixed))
    assert (mixed / "tokenizer.json").is_file()
    (mixed / "tokenizer.model").write_bytes((other / "tokenizer.model").read_bytes())
    with pytest.raises(CheckpointMismatch, match="split prompt segment 0 differently"):
        check_tokenizer(mixed)


@pytest.mark.real_weights
def test_installed_vicuna_tokenizer_matches_the_original():
    from moviechat_desktop.engine.weights import resolve_model_paths

    try:
        paths = resolve_model_paths()
    except Exception as err:  # any reason the weights are not there
        pytest.skip(f"real weights not installed: {err}")
    summary = check_tokenizer(paths.llama_dir)
    assert "'###' is [835] or [2277, 29937]" in summary
    tokenizer = load_tokenizer(paths.llama_dir)
    assert set(tokenizer.stop_id_sequences) >= {(835,)} or (2277, 29937) in (
        tokenizer.stop_id_sequences
    )
