"""Tokenizers for the decoder: the real Vicuna one (Hugging Face) or the fixtures' byte fake.

Both expose the small interface the prompt and the streamer need: ``encode(text, add_bos)``,
``decode(ids)``, ``eos_id`` and ``stop_id_sequences`` (token-id spellings of ``###``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

# Files whose presence means a Hugging Face directory ships its own tokenizer.
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")
# The original's StoppingCriteriaSub ids for "###" in the Vicuna (LLaMA) vocabulary:
# [835] is "###" as one token, [2277, 29937] is "##" + "#" (inference_settings.json).
VICUNA_STOP_IDS: tuple[tuple[int, ...], ...] = ((835,), (2277, 29937))


class TextTokenizer(Protocol):
    eos_id: int
    stop_id_sequences: tuple[tuple[int, ...], ...]

    def encode(self, text: str, add_bos: bool) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """The reference fixtures' stand-in for the Vicuna tokenizer (used when a model directory
    has no tokenizer files): id 0 ``<unk>``, 1 BOS, 2 EOS, UTF-8 byte ``b`` → ``3 + b``;
    ``<ImageHere>`` is the added token 512 (never embedded: the prompt is split on it)."""

    unk_id = 0
    bos_id = 1
    eos_id = 2
    offset = 3
    image_token = "<ImageHere>"
    image_id = 512

    def __init__(self) -> None:
        self.stop_id_sequences: tuple[tuple[int, ...], ...] = (
            tuple(self.encode("###", add_bos=False)),
        )

    def encode(self, text: str, add_bos: bool) -> list[int]:
        ids = [self.bos_id] if add_bos else []
        for i, part in enumerate(text.split(self.image_token)):
            if i:
                ids.append(self.image_id)
            ids.extend(self.offset + b for b in part.encode("utf-8"))
        return ids

    def decode(self, ids: list[int]) -> str:
        """Bytes back to text; special ids are skipped; an incomplete UTF-8 tail shows as U+FFFD."""
        data = bytes(i - self.offset for i in ids if self.offset <= i < self.offset + 256)
        return data.decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face tokenizer (Vicuna's SentencePiece LLaMA tokenizer) behind our interface."""

    def __init__(self, tokenizer) -> None:  # transformers.PreTrainedTokenizerBase
        self.hf = tokenizer
        self.eos_id = int(tokenizer.eos_token_id)
        vocab = len(tokenizer)
        self.stop_id_sequences: tuple[tuple[int, ...], ...] = tuple(
            ids
            for ids in VICUNA_STOP_IDS
            if max(ids) < vocab and tokenizer.decode(list(ids)).strip() == "###"
        ) or (tuple(tokenizer.encode("###", add_special_tokens=False)),)

    @classmethod
    def from_dir(cls, directory: str | Path) -> HFTokenizer:
        from transformers import AutoTokenizer

        # add_bos_token: a plain LlamaTokenizer(vocab_file=...) builds a 3-token vocabulary
        # (ENVIRONMENT.md); from_pretrained with the flag reads the real one.
        return cls(AutoTokenizer.from_pretrained(str(directory), add_bos_token=True))

    def encode(self, text: str, add_bos: bool) -> list[int]:
        # Each prompt segment is tokenized on its own, as the original: SentencePiece adds its
        # dummy-prefix space at the start of every segment.
        return list(self.hf(text, add_special_tokens=add_bos).input_ids)

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=True)


def load_tokenizer(llama_dir: str | Path) -> TextTokenizer:
    """The directory's own tokenizer if it ships one, else the byte-level fake."""
    directory = Path(llama_dir)
    if any((directory / name).is_file() for name in TOKENIZER_FILES):
        return HFTokenizer.from_dir(directory)
    log.info("%s has no tokenizer files: using the byte-level test tokenizer", directory)
    return ByteTokenizer()
