"""Where dialogue comes from, timed: embedded subtitle extraction and speech recognition.

- Embedded track: list the subtitle streams (ffprobe) and extract + parse a 2-hour film's worth
  of SubRip lines (1800) muxed into Big Buck Bunny as a track, as ``FilmDialogue`` does.
- Speech: the real-time factor (wall seconds per second of audio; below 1 is faster than the
  film plays) of faster-whisper on this CPU, 30 s chunks as the engine runs them, on a 2-minute
  film with real speech (espeak-ng) and silence, with two random-weight Whisper models built
  offline: the tiny test model (d_model 64, 2+2 layers: the pipeline's own overhead — audio
  decoding, features, VAD) and, with ``--speech-small``, one with the real ``small``
  dimensions (768 wide, 12+12 layers, 51865-token vocabulary, int8: the real model's compute,
  though not its words; its decoder is capped at ``SMALL_TOKENS`` tokens per chunk, about
  what 30 s of talk needs). The first chunk (which loads the model) is reported apart.
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parent.parent
BUNNY = ROOT / ".cache" / "test-videos" / "bigbuckbunny.mp4"
FILM_S = 90.0  # three chunks: the first loads the model, the other two are the steady state
SMALL_TOKENS = 96  # ~3 tokens/s of speech over a 30 s chunk
WORDS = (
    "Where is Marla? She left yesterday and took the car. I told you not to trust him. "
    "We have to find the box before the police do. Are you angry with me? "
)


def measure_extraction(repeats: int = 3) -> dict[str, float]:
    """Wall/CPU time to list and extract a 1800-line subtitle track; {} without the clip."""
    from moviechat_desktop.engine.dialogue.embedded import extract_track, list_subtitle_tracks

    if not BUNNY.is_file():
        log.warning("subtitle extraction not timed: %s is missing", BUNNY)
        return {}

    with tempfile.TemporaryDirectory(prefix="bench-subs-") as tmp:
        srt, mkv = Path(tmp) / "lines.srt", Path(tmp) / "film.mkv"
        srt.write_text(_srt(1800, 7200.0), "utf-8")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(BUNNY), "-i", str(srt), "-map", "0",
             "-map", "1", "-c", "copy", "-c:s", "srt", str(mkv)],
            check=True, capture_output=True,
        )  # fmt: skip
        listed, extracted, cpu, lines = [], [], [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            [track] = list_subtitle_tracks(mkv)
            listed.append(time.perf_counter() - t0)
            t0, c0 = time.perf_counter(), _cpu_s()
            lines = len(extract_track(mkv, track).lines)
            extracted.append(time.perf_counter() - t0)
            cpu.append(_cpu_s() - c0)
    return {
        "subs_list_ms": statistics.median(listed) * 1000,
        "subs_extract_ms": statistics.median(extracted) * 1000,
        "subs_extract_cpu_ms": statistics.median(cpu) * 1000,
        "subs_extract_lines": lines,
    }


def _cpu_s() -> float:
    """CPU seconds used so far by this process and its finished children (ffmpeg)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _srt(count: int, span_s: float) -> str:
    from moviechat_desktop.timefmt import format_time

    def stamp(t: float) -> str:
        whole = format_time(t, hours=True)
        return f"{whole},{int((t % 1) * 1000):03d}"

    step = span_s / count
    rows = []
    for i in range(count):
        start = i * step
        rows.append(f"{i + 1}\n{stamp(start)} --> {stamp(start + step * 0.8)}\n{WORDS[:60]} {i}\n")
    return "\n".join(rows)


def measure_speech(small: bool = False) -> tuple[dict[str, float], list[str]]:
    """Real-time factors with the tiny test model (and the small-sized one when asked)."""
    import sys

    sys.path.insert(0, str(ROOT))
    from tests.tiny_whisper import SMALL, speech_film, tiny_whisper_dir, whisper_dir

    notes: list[str] = []
    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-speech-") as tmp:
        film = speech_film(Path(tmp) / "talk.mp4", FILM_S, words=WORDS * 12)  # talk throughout
        models = [("speech_tiny_", tiny_whisper_dir(), SMALL_TOKENS)]
        if small:
            small_dir = whisper_dir("small-random-whisper", SMALL)
            models.append(("speech_small_", small_dir, SMALL_TOKENS))
        for prefix, folder, cap in models:
            result = _recognise(film, folder, cap, Path(tmp) / prefix)
            metrics.update({prefix + key: value for key, value in result.items()})
    notes.append(
        "speech: random-weight Whisper models built offline (tests/tiny_whisper.py); 'small' has "
        f"the real small dimensions, its decoder capped at {SMALL_TOKENS} tokens per 30 s chunk"
    )
    return metrics, notes


def _recognise(film: Path, folder: Path, cap: int, cache: Path) -> dict[str, Any]:
    from moviechat_desktop.engine.dialogue import speech_session
    from moviechat_desktop.engine.dialogue.speech import SpeechModel
    from moviechat_desktop.engine.video.probe import probe

    model = SpeechModel(folder, device="cpu")
    original = model.transcribe

    def capped(audio, lang, cancel=None):
        # one pass: a random model fails every quality check, and the temperature fallback
        # would decode each chunk six times, which a real model rarely does
        return original(audio, lang, cancel, cap, temperature=0.0)

    model.transcribe = capped  # type: ignore[method-assign]
    duration = probe(film).duration_s
    session = speech_session.SpeechSession(
        film, None, duration, model, language="en", cache_dir=cache
    )
    times, cpu = [], []
    while True:
        t0, c0 = time.perf_counter(), _cpu_s()
        if not session.step():
            break
        times.append(time.perf_counter() - t0)
        cpu.append(_cpu_s() - c0)
    per_chunk = statistics.median(times[1:] or times)
    rtf = per_chunk / speech_session.CHUNK_S
    return {
        "first_chunk_s": times[0],
        "chunk_s": per_chunk,
        "chunk_cpu_s": statistics.median(cpu[1:] or cpu),
        "rtf": rtf,
        "film_2h_min": rtf * 7200 / 60,
    }
