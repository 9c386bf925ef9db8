"""Subtitle files: real ones from other projects' test data, generated ones, and bad inputs."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from moviechat_desktop.engine.dialogue.cleaning import clean_text, tidy_lines
from moviechat_desktop.engine.dialogue.lines import DialogueLine
from moviechat_desktop.engine.dialogue.sidecars import find_sidecars, normalise_language
from moviechat_desktop.engine.dialogue.subtitle_file import MAX_BYTES, read_subtitle_file
from moviechat_desktop.engine.errors import DialogueError, MovieChatError

DATA = Path(__file__).parent / "data" / "subtitles"

SRT = """1
00:00:01,000 --> 00:00:03,000
<i>Where</i> is {\\an8}Marla &amp; <font color="#ff0000">Tyler</font>?

2
00:00:04,000 --> 00:00:06,500
I don&#39;t know.
She left &lt;yesterday&gt;.

3
00:00:04,000 --> 00:00:06,500
I don&#39;t know.
She left &lt;yesterday&gt;.
"""

ASS = r"""[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,2,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:01.00,0:00:02.50,Default,Marla,0,0,0,,{\i1}I want{\i0}\Nto go home.
Dialogue: 1,0:00:01.00,0:00:02.50,Default,Marla,0,0,0,,{\blur3}I want\Nto go home.
Comment: 0,0:00:02.00,0:00:03.00,Default,,0,0,0,,a translator's note
Dialogue: 0,0:00:03.00,0:00:04.00,Default,,0,0,0,,{\p1}m 0 0 l 100 0 100 100 0 100{\p0}
Dialogue: 0,0:00:03.00,0:00:05.00,Default,Tyler,0,0,0,,{\pos(320,50)\fad(200,200)}Not yet.
"""  # noqa: E501


def write(tmp_path: Path, name: str, data: str | bytes, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


# --------------------------------------------------------------------------- real files
def test_netflix_webvtt_from_webvtt_py_is_cleaned_and_ordered():
    parsed = read_subtitle_file(DATA / "netflix_chicas_del_cable.vtt")
    lines = parsed.lines
    assert parsed.format == "vtt" and len(lines) > 800
    assert lines[0].text == "[Alba] En 1928,"
    starts = [line.start_s for line in lines]
    assert starts == sorted(starts)
    assert all(line.end_s >= line.start_s for line in lines)
    joined = "\n".join(line.text for line in lines)
    assert "<" not in joined and "&amp;" not in joined and "{\\" not in joined
    assert "é" in joined or "ó" in joined  # Spanish accents survived decoding


def test_rolling_youtube_captions_are_merged_and_inline_tags_removed():
    lines = read_subtitle_file(DATA / "youtube_dl.vtt").lines
    texts = [line.text for line in lines]
    assert texts.count("this will happen is I'm telling") == 1  # shown twice back to back
    assert not any("<" in t or "c.color" in t for t in texts)
    merged = next(line for line in lines if line.text == "this will happen is I'm telling")
    assert merged.start_s == pytest.approx(304.08) and merged.end_s == pytest.approx(305.4)


def test_webvtt_cue_timestamps_inside_text_are_removed():
    texts = [line.text for line in read_subtitle_file(DATA / "cue_tags.vtt").lines]
    assert texts == ["When the moon hits your eye", "Like a big-a pizza pie", "That's amore"]


def test_webvtt_voice_tags_name_the_speaker(tmp_path):
    """pysubs2 drops tags it does not know, <v Name> with them: the speaker was lost."""
    vtt = tmp_path / "voices.vtt"
    vtt.write_text(
        "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n<v Marla>Hello <i>there</i></v>\n\n"
        "00:00:04.000 --> 00:00:05.000\n<v.loud Tyler Durden>Fight! <3\n\n"
        "00:00:06.000 --> 00:00:07.000\nNobody speaks here.\n",
        encoding="utf-8",
    )
    lines = read_subtitle_file(vtt).lines
    assert [(line.speaker, line.text) for line in lines] == [
        ("Marla", "Hello there"),
        ("Tyler Durden", "Fight! <3"),
        ("", "Nobody speaks here."),
    ]


def test_real_srt_with_font_colours_and_bom_vtt():
    french = read_subtitle_file(DATA / "styles_colours.srt").lines
    assert french[0].text == "Musique douce"
    assert french[-1].text == "-Euh, là-bas, au chêne."
    assert not any("<font" in line.text for line in french)
    bom = read_subtitle_file(DATA / "captions_with_bom.vtt")
    assert bom.lines[0].text == "Caption text #1" and len(bom.lines) == 4


def test_ttml_from_pysubs2_and_sample_srt():
    ttml = read_subtitle_file(DATA / "ttml_example.ttml")
    assert ttml.format == "ttml" and ttml.lines[0].text.startswith("It seems a paradox")
    sample = read_subtitle_file(DATA / "sample.srt").lines
    assert [line.text for line in sample] == [f"Caption text #{i}" for i in range(1, 6)]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.vtt", "is empty"),
        ("invalid_format1.srt", "not in a subtitle format that can be read"),
        ("subtitle_with_attached_images_aegisub.ass", "holds no dialogue lines"),
    ],
)
def test_real_bad_files_are_refused_with_a_reason(name, message):
    with pytest.raises(DialogueError, match=message) as info:
        read_subtitle_file(DATA / name)
    assert isinstance(info.value, MovieChatError) and name in str(info.value)


# --------------------------------------------------------------------------- cleaning
def test_srt_markup_entities_and_exact_duplicates(tmp_path):
    lines = read_subtitle_file(write(tmp_path, "a.srt", SRT)).lines
    assert [line.text for line in lines] == [
        "Where is Marla & Tyler?",
        "I don't know.\nShe left <yesterday>.",
    ]


def test_ass_speakers_layers_comments_and_drawings(tmp_path):
    lines = read_subtitle_file(write(tmp_path, "a.ass", ASS)).lines
    assert [(line.speaker, line.text) for line in lines] == [
        ("Marla", "I want\nto go home."),
        ("Tyler", "Not yet."),
    ]
    assert (lines[1].start_s, lines[1].end_s) == (3.0, 5.0)


def test_zero_length_reversed_overlapping_and_past_the_end():
    raw = [
        DialogueLine(10.0, 10.0, "zero"),
        DialogueLine(10.4, 12.0, "next one"),
        DialogueLine(20.0, 19.0, "reversed"),
        DialogueLine(30.0, 33.0, "Marla speaks"),
        DialogueLine(31.0, 32.0, "Tyler interrupts"),  # overlapping: both kept
        DialogueLine(58.0, 65.0, "runs past the end"),
        DialogueLine(70.0, 71.0, "after the end"),
        DialogueLine(-3.0, -1.0, "before the start"),
    ]
    lines, past_end = tidy_lines(raw, duration_s=60.0)
    got = {line.text: (line.start_s, line.end_s) for line in lines}
    assert got["zero"] == (10.0, 10.4)  # until the next line starts
    assert got["reversed"] == (20.0, 21.0)  # a second
    assert "Marla speaks" in got and "Tyler interrupts" in got
    assert got["runs past the end"] == (58.0, 60.0)
    assert "after the end" not in got and "before the start" not in got
    assert past_end == 1


def test_every_line_after_the_film_end_means_another_film(tmp_path):
    late = "1\n00:10:00,000 --> 00:10:02,000\nLate\n"
    with pytest.raises(DialogueError, match=r"after the film ends"):
        read_subtitle_file(write(tmp_path, "late.srt", late), duration_s=60.0)


def test_clean_text_keeps_words_drops_controls():
    assert clean_text("a\x1b[2Jb\\hc\x07") == ("a[2Jb c", "")  # the control bytes go
    assert clean_text("&lt;i&gt;shout&lt;/i&gt;") == ("shout", "")
    assert clean_text("<v Bob>Hi there") == ("Hi there", "Bob")


# --------------------------------------------------------------------------- encodings
TEXT = "1\n00:00:01,000 --> 00:00:02,000\nCafé crème, garçon — très bien.\n\n"


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
    ],
)
def test_unicode_with_and_without_bom(tmp_path, encoding, bom):
    path = write(tmp_path, "u.srt", bom + TEXT.encode(encoding))
    assert read_subtitle_file(path).lines[0].text == "Café crème, garçon — très bien."


def test_cp1252_western_and_cp1251_russian_are_detected(tmp_path):
    western = (TEXT * 3).replace("—", "-").encode("cp1252")
    path = write(tmp_path, "film.fr.srt", western)
    parsed = read_subtitle_file(path, language="fr")
    assert parsed.encoding == "cp1252"
    assert parsed.lines[0].text == "Café crème, garçon - très bien."
    russian = "1\n00:00:01,000 --> 00:00:02,000\nГде Марла? Она ушла вчера вечером.\n"
    parsed = read_subtitle_file(write(tmp_path, "ru.srt", russian.encode("cp1251")))
    assert parsed.lines[0].text == "Где Марла? Она ушла вчера вечером."


# --------------------------------------------------------------------------- bad inputs
def test_binary_undecodable_empty_missing_and_directory(tmp_path):
    import random

    noise = bytes(random.Random(7).randrange(256) for _ in range(4096))
    with pytest.raises(DialogueError, match=r"bin.srt"):
        read_subtitle_file(write(tmp_path, "bin.srt", noise))
    with pytest.raises(DialogueError, match=r"binary|not text"):
        read_subtitle_file(write(tmp_path, "nul.srt", b"1\n\x00\x00\x01\x02" * 500))
    with pytest.raises(DialogueError, match=r"is empty"):
        read_subtitle_file(write(tmp_path, "blank.srt", b"\n \r\n\t"))
    with pytest.raises(DialogueError, match=r"does not exist"):
        read_subtitle_file(tmp_path / "missing.srt")
    with pytest.raises(DialogueError, match=r"not a file"):
        read_subtitle_file(tmp_path)
    with pytest.raises(DialogueError, match=r"not in a subtitle format"):
        read_subtitle_file(write(tmp_path, "prose.srt", "Just some prose.\nNo times here.\n"))


def test_a_50_mb_file_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "huge.srt"
    with open(big, "wb") as handle:
        handle.truncate(50 * 1000 * 1000)  # sparse: nothing is written
    assert big.stat().st_size > MAX_BYTES
    with pytest.raises(DialogueError, match=r"huge.srt is 50.0 MB: too large"):
        read_subtitle_file(big)


def test_sub_files_are_sniffed_microdvd_text_or_vobsub_bitmap(tmp_path):
    micro = write(tmp_path, "m.sub", "{25}{50}Hello|world\n{75}{100}{y:i}Bye\n")
    lines = read_subtitle_file(micro, fps=25.0).lines
    assert [(line.start_s, line.text) for line in lines] == [(1.0, "Hello\nworld"), (3.0, "Bye")]
    with pytest.raises(DialogueError, match=r"frame rate is unknown"):
        read_subtitle_file(micro)
    declared = write(tmp_path, "d.sub", "{1}{1}10.000\n{10}{20}At ten fps\n")
    assert read_subtitle_file(declared).lines[0].start_s == pytest.approx(1.0)
    vobsub = write(tmp_path, "v.sub", b"\x00\x00\x01\xba" + bytes(2044))
    with pytest.raises(DialogueError, match=r"VobSub .*pictures of the text"):
        read_subtitle_file(vobsub)


# --------------------------------------------------------------------------- sidecars
def test_sidecars_are_found_and_ranked(tmp_path):
    film = write(tmp_path, "Fight Club.mkv", b"")
    for name in (
        "Fight Club.srt",
        "Fight Club.en.srt",
        "Fight Club.eng.forced.srt",
        "Fight Club.fr.sdh.srt",
        "Fight Club.FR.SRT",
        "Fight Club.de.ass",
        "Fight Club.part2.srt",  # another film of a set
        "Fight Club Extras.srt",
        "Fight Club.nfo",
    ):
        write(tmp_path, name, "x")
    english = [s.path.name for s in find_sidecars(film, "en")]
    assert english == [
        "Fight Club.en.srt",
        "Fight Club.srt",
        "Fight Club.FR.SRT",  # other languages: SubRip before ASS
        "Fight Club.de.ass",
        "Fight Club.fr.sdh.srt",  # plain before SDH
        "Fight Club.eng.forced.srt",  # forced last
    ]
    french = [s.path.name for s in find_sidecars(film, "fr")]
    assert french[:2] == ["Fight Club.FR.SRT", "Fight Club.fr.sdh.srt"]
    assert french[-1] == "Fight Club.eng.forced.srt"
    assert find_sidecars(tmp_path / "nowhere" / "film.mkv") == []


def test_language_codes():
    assert [normalise_language(t) for t in ("eng", "en", "en_US", "pt-BR", "fre", "xx1", "")] == [
        "en",
        "en",
        "en",
        "pt",
        "fr",
        "",
        "",
    ]
