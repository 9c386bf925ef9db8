"""Reading a subtitle file (or an extracted track) into clean dialogue lines.

pysubs2 parses every text format it knows (SubRip, ASS/SSA, WebVTT, MicroDVD, SAMI, TTML, MPL2,
TMP…), detecting the format from the content. Before it sees the text, the bytes are checked and
decoded: a size limit, byte-order marks (UTF-8/16/32), strict UTF-8, else charset-normalizer's
best guess (cp1252, latin-1, cp1251, Shift-JIS…). A ``.sub`` file is sniffed: MicroDVD text, or a
VobSub (DVD bitmap) stream, which holds pictures of text and is refused with that reason. Every
problem is a ``DialogueError`` whose message names the file and says what is wrong.
"""

from __future__ import annotations

import codecs
import logging
from dataclasses import dataclass
from pathlib import Path

from moviechat_desktop.engine.dialogue.cleaning import clean_text, tidy_lines
from moviechat_desktop.engine.dialogue.lines import DialogueLine
from moviechat_desktop.engine.errors import DialogueError

log = logging.getLogger(__name__)

MAX_BYTES = 20 * 1000 * 1000  # a feature film's SRT is ~100 kB, a heavily styled ASS a few MB
SUFFIXES = (".srt", ".ass", ".ssa", ".vtt", ".sub")
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# The legacy code page subtitles in a language are usually written in; breaks charset-normalizer's
# ties (a short file in cp1252 reads just as well as cp1250).
LEGACY_BY_LANGUAGE = {
    **dict.fromkeys(("pl", "cs", "sk", "hu", "sl", "hr", "ro", "bs"), "cp1250"),
    **dict.fromkeys(("ru", "uk", "bg", "sr", "mk", "be"), "cp1251"),
    "el": "cp1253",
    "tr": "cp1254",
    "he": "cp1255",
    "ar": "cp1256",
    "fa": "cp1256",
}
MPEG_PACK = b"\x00\x00\x01\xba"  # how a VobSub .sub (an MPEG program stream) begins
BITMAP_HINT = (
    "it holds pictures of the text, not text; choose speech recognition instead, or add a text "
    "subtitle file (.srt, .ass, .vtt)"
)


@dataclass(frozen=True)
class ParsedSubtitles:
    lines: tuple[DialogueLine, ...]
    format: str  # pysubs2's format identifier: "srt", "ass", "vtt", "microdvd"…
    encoding: str
    past_end: int  # lines dropped because they start after the film's end


def read_subtitle_file(
    path: str | Path,
    duration_s: float | None = None,
    fps: float | None = None,
    language: str = "",
) -> ParsedSubtitles:
    """Parse the subtitle file at ``path``; ``DialogueError`` when it cannot be used."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise DialogueError(f"{path.name} is not a file")
        if size > MAX_BYTES:
            raise DialogueError(
                f"{path.name} is {size / 1e6:.1f} MB: too large for a subtitle file "
                f"(at most {MAX_BYTES / 1e6:.0f} MB)"
            )
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise DialogueError(f"subtitle file {path} does not exist") from err
    except OSError as err:
        raise DialogueError(f"cannot read subtitle file {path}: {err.strerror or err}") from err
    return parse_subtitles(data, path.name, duration_s=duration_s, fps=fps, language=language)


def parse_subtitles(
    data: bytes,
    name: str,
    *,
    duration_s: float | None = None,
    fps: float | None = None,
    format_hint: str | None = None,
    language: str = "",
) -> ParsedSubtitles:
    """Parse subtitle bytes; ``name`` is used in messages; ``language`` (ISO 639-1, when known)
    decides between equally plausible legacy encodings."""
    if len(data) > MAX_BYTES:
        raise DialogueError(f"{name} is too large for subtitles (at most {MAX_BYTES / 1e6:.0f} MB)")
    if not data.strip():
        raise DialogueError(f"{name} is empty")
    if data.startswith(MPEG_PACK):
        raise DialogueError(f"{name} is a VobSub (DVD bitmap) subtitle: {BITMAP_HINT}")
    text, encoding = decode_text(data, name, language)
    return parse_text(
        text, name, encoding=encoding, duration_s=duration_s, fps=fps, format_hint=format_hint
    )


def decode_text(data: bytes, name: str, language: str = "") -> tuple[str, str]:
    """``(text, encoding)``: BOM, strict UTF-8, else charset-normalizer's best match (among
    equally good matches, the usual code page for ``language``, else cp1252)."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding.removesuffix("-sig")
            except UnicodeDecodeError as err:
                raise DialogueError(f"{name} starts like {encoding} text, but is not") from err
    if b"\x00" not in data:
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    results = from_bytes(data[:2_000_000])
    best = results.best()
    if best is None or best.encoding is None:
        raise DialogueError(f"{name} is not text in any encoding that could be recognised")
    preferred = LEGACY_BY_LANGUAGE.get(language, "cp1252")
    for match in results:
        tie = match.chaos <= best.chaos + 1e-3 and match.coherence >= best.coherence - 1e-2
        if tie and preferred in match.could_be_from_charset:
            best = match
            break
    try:
        encoding = preferred if preferred in best.could_be_from_charset else best.encoding
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as err:
        raise DialogueError(f"{name} cannot be decoded as {best.encoding}") from err
    controls = sum(1 for ch in text[:200_000] if ch < " " and ch not in "\t\n\r\f")
    if "\x00" in text or controls > max(8, len(text[:200_000]) // 100):
        raise DialogueError(f"{name} is a binary file, not subtitles")
    log.info("%s decoded as %s", name, encoding)
    return text, encoding


def parse_text(
    text: str,
    name: str,
    *,
    encoding: str = "utf-8",
    duration_s: float | None = None,
    fps: float | None = None,
    format_hint: str | None = None,
) -> ParsedSubtitles:
    """Parse decoded subtitle text into tidy lines (see ``cleaning``)."""
    import pysubs2

    text = text.lstrip("\ufeff")
    if not text.strip():
        raise DialogueError(f"{name} is empty")
    try:
        fmt = format_hint or pysubs2.formats.autodetect_format(text)
        # SubRip/WebVTT: keep the tags pysubs2 does not know (WebVTT's <v Speaker>, which
        # ``clean_text`` reads and removes); its default drops them with the speaker's name
        keep = {"keep_unknown_html_tags": True} if fmt in ("srt", "vtt") else {}
        subs = pysubs2.SSAFile.from_string(text, format_=fmt, fps=fps, **keep)
    except pysubs2.exceptions.FormatAutodetectionError as err:
        raise DialogueError(
            f"{name} is not in a subtitle format that can be read "
            "(SubRip .srt, ASS/SSA, WebVTT, MicroDVD .sub, SAMI, TTML…)"
        ) from err
    except pysubs2.exceptions.UnknownFPSError as err:
        raise DialogueError(
            f"{name} is a MicroDVD file timed in frames and the film's frame rate is unknown"
        ) from err
    except Exception as err:  # a third-party parser on untrusted input
        raise DialogueError(f"{name} could not be parsed as subtitles: {err}") from err
    raw: list[DialogueLine] = []
    for event in subs:
        if event.is_comment:
            continue
        body, speaker = clean_text(event.text)
        if body:
            start, end = event.start / 1000, event.end / 1000
            raw.append(DialogueLine(start, end, body, event.name or speaker))
    lines, past_end = tidy_lines(raw, duration_s)
    if not lines:
        if past_end:
            raise DialogueError(
                f"every line of {name} starts after the film ends: subtitles for another film?"
            )
        raise DialogueError(f"{name} holds no dialogue lines")
    if past_end:
        log.info("%s: %d lines start after the film's end and were left out", name, past_end)
    return ParsedSubtitles(tuple(lines), subs.format or "", encoding, past_end)
