"""A SentencePiece tokenizer trained at test time and saved in the real Vicuna repository's
layout: ``tokenizer.model`` + ``tokenizer_config.json`` + ``special_tokens_map.json`` (the
files the weights manifest fetches), with LLaMA's trainer settings (BPE, byte fallback, digits
split, dummy prefix, no normalisation; unk 0, BOS 1, EOS 2, no pad)."""

from __future__ import annotations

import io
import json
from pathlib import Path

CORPUS = (
    "You are able to understand the visual content that the user provides."
    "Follow the instructions carefully and explain your answers in details.",
    "###Human: <Video></Video> What happens in this video?###Assistant: A man rides a bike.",
    "Who speaks at 01:15:42, and what does « Émile » say? 東京で何が起きた",
    "Describe the scene line by line: colours, people, 1) 2) 3) ## # ###",
)
_TOKEN = {"__type": "AddedToken", "lstrip": False, "normalized": False, "rstrip": False}


def write_vicuna_style_tokenizer(folder: Path, vocab_size: int = 400) -> Path:
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 40),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": {**_TOKEN, "content": "<s>", "single_word": False},
        "eos_token": {**_TOKEN, "content": "</s>", "single_word": False},
        "unk_token": {**_TOKEN, "content": "<unk>", "single_word": False},
        "pad_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 2048,
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    return folder
