"""Subtitle files lying next to a film, and which of them to use.

``film.mkv`` finds ``film.srt``, ``film.ass``, ``film.ssa``, ``film.vtt``, ``film.sub`` and the
language-tagged ones media players understand: ``film.en.srt``, ``film.eng.forced.srt``,
``film.pt-BR.sdh.srt``… (suffixes compared without case). The best one comes first: not
"forced" (forced subtitles only translate signs and foreign lines), then in the user's language
(when known), then untagged, then others; plain before SDH/CC; SubRip before ASS, SSA, WebVTT
and MicroDVD.
"""

from __future__ import annotations

import locale
import os
from dataclasses import dataclass
from pathlib import Path

from moviechat_desktop.engine.dialogue.subtitle_file import SUFFIXES

FORCED = {"forced", "foreign"}
HEARING = {"sdh", "cc", "hi"}
NEUTRAL = {"default", "full", "dialog", "dialogue"}
# ISO 639-2 (B and T) to 639-1 for the languages subtitle files are most often tagged with.
ISO3 = {
    "eng": "en", "fre": "fr", "fra": "fr", "ger": "de", "deu": "de", "spa": "es", "ita": "it",
    "por": "pt", "rus": "ru", "jpn": "ja", "chi": "zh", "zho": "zh", "kor": "ko", "dut": "nl",
    "nld": "nl", "swe": "sv", "nor": "no", "nob": "no", "dan": "da", "fin": "fi", "pol": "pl",
    "cze": "cs", "ces": "cs", "hun": "hu", "gre": "el", "ell": "el", "tur": "tr", "ara": "ar",
    "heb": "he", "hin": "hi", "tha": "th", "vie": "vi", "ind": "id", "ukr": "uk", "rum": "ro",
    "ron": "ro", "bul": "bg", "hrv": "hr", "srp": "sr", "slv": "sl", "slo": "sk", "slk": "sk",
    "cat": "ca", "per": "fa", "fas": "fa", "may": "ms", "msa": "ms",
}  # fmt: skip


@dataclass(frozen=True)
class Sidecar:
    path: Path
    language: str  # ISO 639-1 code when the name carries one, else ""
    forced: bool
    hearing_impaired: bool


def normalise_language(tag: str) -> str:
    """``"eng"`` / ``"en"`` / ``"en-US"`` / ``"pt_BR"`` → ``"en"`` / ``"pt"``; ``""`` if none."""
    tag = tag.strip().lower().replace("_", "-").split("-")[0]
    if len(tag) == 2 and tag.isalpha():
        return tag
    return ISO3.get(tag, "")


def user_language(setting: str = "auto") -> str:
    """The language the user reads: the speech setting when set, else the system locale's."""
    if setting and setting != "auto":
        return normalise_language(setting)
    for var in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = os.environ.get(var, "")
        if value and value not in ("C", "POSIX") and not value.startswith("C."):
            return normalise_language(value.split(":")[0].split(".")[0])
    try:
        code = locale.getlocale()[0] or ""
    except ValueError:
        code = ""
    return normalise_language(code.split(".")[0])


def describe_tags(tags: list[str]) -> tuple[str, bool, bool] | None:
    """(language, forced, hearing-impaired) from the name's middle parts; None: not a sidecar."""
    language, forced, hearing = "", False, False
    for tag in (t.lower() for t in tags):
        if tag in FORCED:
            forced = True
        elif tag in HEARING:
            hearing = True
        elif tag in NEUTRAL or tag.isdigit():
            continue
        elif not language and normalise_language(tag):
            language = normalise_language(tag)
        else:
            return None  # "film.part2.srt" belongs to another film
    return language, forced, hearing


def find_sidecars(film: str | Path, language: str = "") -> list[Sidecar]:
    """The subtitle files next to ``film``, best first (see module docstring)."""
    film = Path(film)
    stem = film.stem.lower()
    try:
        siblings = list(film.parent.iterdir())
    except OSError:
        return []
    found = []
    for path in siblings:
        name = path.name.lower()
        suffix = path.suffix.lower()
        if suffix not in SUFFIXES or not name.startswith(stem + "."):
            continue
        middle = name[len(stem) + 1 : -len(suffix)]
        tags = [t for t in middle.split(".") if t] if middle else []
        described = describe_tags(tags)
        if described is None or not path.is_file():
            continue
        found.append(Sidecar(path, *described))

    def rank(s: Sidecar) -> tuple[int, int, int, int, str]:
        lang_rank = 0 if language and s.language == language else 1 if not s.language else 2
        kind = SUFFIXES.index(s.path.suffix.lower())
        return (int(s.forced), lang_rank, int(s.hearing_impaired), kind, s.path.name)

    return sorted(found, key=rank)
