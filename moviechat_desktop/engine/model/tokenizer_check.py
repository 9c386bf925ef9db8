"""Checks that a Vicuna directory's tokenizer splits MovieChat's prompt as the original did.

The original ran transformers 4.28's slow ``LlamaTokenizer``: SentencePiece's own ``encode`` of
each prompt segment (its dummy-prefix space included), BOS prepended to the first segment only.
We load the directory through transformers 5's (fast, ``tokenizers``-backed) tokenizer, which
is converted from ``tokenizer.model`` and can differ from SentencePiece at the edges (a segment
starting with a space, for one). ``check_tokenizer`` compares the two on real prompt segments,
checks BOS is added exactly once, and — for the real 32000-token vocabulary — that the stop
string ``###`` comes out as the ids the original stops on (``[835]`` or ``[2277, 29937]``).
"""

from __future__ import annotations

from pathlib import Path

from moviechat_desktop.engine.errors import CheckpointMismatch
from moviechat_desktop.engine.model.tokenizer import VICUNA_STOP_IDS, HFTokenizer

# Questions that exercise what a prompt meets: punctuation, digits (split one by one in
# LLaMA), non-Latin text, repeated spaces and newlines, the stop string inside the text.
PROBE_QUESTIONS = (
    "What happens in this video?",
    "Who speaks at 01:15:42, and what does « Émile » say? 東京で何が起きた",
    "Describe  the\tscene\nline by line: 1) colours 2) people",
)
REAL_VOCAB_SIZE = 32000
STOP_PROBES = ("###", "Sure, the man rides a bike.###")


def prompt_segments(question: str) -> list[str]:
    """The two segments the original tokenizes for ``question`` (split at ``<ImageHere>``)."""
    from moviechat_desktop.engine.model.llm import IMAGE_PLACEHOLDER, Conversation

    return Conversation().prompt(question).split(IMAGE_PLACEHOLDER)


def check_tokenizer(directory: str | Path) -> str:
    """Run the checks (module docstring) on ``directory``; return a one-line summary.

    Raises ``CheckpointMismatch`` naming the first difference.
    """
    directory = Path(directory)
    name = directory.name
    try:
        fast = HFTokenizer.from_dir(directory)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise CheckpointMismatch(f"{name}: its tokenizer cannot be loaded: {err}") from err
    hf = fast.hf
    bos = hf.bos_token_id
    segments = [seg for q in PROBE_QUESTIONS for seg in prompt_segments(q)]
    for index, segment in enumerate(segments):
        first = index % 2 == 0
        ids = fast.encode(segment, add_bos=first)
        bos_count = sum(1 for i in ids[:2] if i == bos)
        if first and (bos is None or not ids or ids[0] != bos or bos_count != 1):
            raise CheckpointMismatch(
                f"{name}: the tokenizer does not add BOS exactly once to the prompt's first "
                f"segment (it starts {ids[:3]}, BOS is {bos})"
            )
        if not first and bos is not None and bos in ids:
            raise CheckpointMismatch(f"{name}: the tokenizer adds BOS to the second segment")
    checked = ["BOS once"]
    model_file = directory / "tokenizer.model"
    if model_file.is_file():
        import sentencepiece

        slow = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        if bos is not None and slow.bos_id() != bos:
            raise CheckpointMismatch(
                f"{name}: BOS is {bos} for transformers but {slow.bos_id()} in tokenizer.model"
            )
        for index, segment in enumerate(segments):
            ours = fast.encode(segment, add_bos=False)
            original = slow.encode(segment)
            if ours != original:
                at = next(
                    (i for i, (a, b) in enumerate(zip(ours, original, strict=False)) if a != b),
                    min(len(ours), len(original)),
                )
                raise CheckpointMismatch(
                    f"{name}: transformers and SentencePiece split prompt segment {index} "
                    f"differently from token {at} ({ours[at : at + 4]} vs "
                    f"{original[at : at + 4]}): the original's slow tokenizer would differ"
                )
        checked.append(f"slow and fast tokenizers agree on {len(segments)} prompt segments")
    else:
        checked.append("no tokenizer.model: slow/fast comparison skipped")
    if len(hf) >= REAL_VOCAB_SIZE:
        for probe in STOP_PROBES:
            ids = tuple(fast.encode(probe, add_bos=False))
            if not any(ids[-len(stop) :] == stop for stop in VICUNA_STOP_IDS):
                raise CheckpointMismatch(
                    f"{name}: {probe!r} ends in ids {list(ids[-3:])}, not the original's stop "
                    f"ids {' or '.join(str(list(s)) for s in VICUNA_STOP_IDS)}"
                )
        checked.append("'###' is [835] or [2277, 29937]")
    return "tokenizer: " + ", ".join(checked)
