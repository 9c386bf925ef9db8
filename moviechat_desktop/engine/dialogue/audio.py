"""The film's sound as Whisper wants it: 16 kHz mono float32, one stretch at a time.

``ffmpeg`` seeks to the stretch (input seeking: fast on any container) and writes raw samples to
a pipe, so a two-hour film is never decoded at once and each speech-recognition chunk costs one
short ffmpeg run (~0.05-0.2 s for 30 s of audio). A film without audio, or an audio track ffmpeg
cannot decode, is a ``DialogueError`` with ffmpeg's reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from moviechat_desktop.engine.errors import DialogueError

if TYPE_CHECKING:
    import numpy as np

SAMPLE_RATE = 16_000
TIMEOUT_S = 300.0


def decode_audio(film: str | Path, start_s: float, duration_s: float) -> np.ndarray:
    """``duration_s`` seconds of the first audio track from ``start_s``: float32, 16 kHz, mono.

    Shorter (or empty) at the film's end.
    """
    import numpy as np

    output = ["-f", "f32le", "-"]
    data, messages = run_on_audio_track(film, start_s, duration_s, output, "decode")
    usable = len(data) - len(data) % 4
    if usable == 0 and messages:  # ffmpeg gave up on every packet but exited 0
        raise DialogueError(
            f"the audio track of {Path(film).name} cannot be decoded: {messages[-1]}"
        )
    return np.frombuffer(data[:usable], dtype=np.float32).copy()


def run_on_audio_track(
    film: str | Path, start_s: float, duration_s: float, output: list[str], verb: str
) -> tuple[bytes, list[str]]:
    """One ffmpeg run over ``duration_s`` seconds of the film's first audio track from
    ``start_s``, as 16 kHz mono, written with the ``output`` arguments to a pipe: its output and
    its messages. ``verb`` ("decode", "encode") words the errors: no ffmpeg, a timeout, a film
    without audio, a track ffmpeg cannot read (its last message) are ``DialogueError``s."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise DialogueError(f"speech recognition needs ffmpeg to {verb} the audio (install ffmpeg)")
    name = Path(film).name
    cmd = [
        exe, "-nostdin", "-v", "error",
        "-ss", f"{max(0.0, start_s):.3f}", "-t", f"{duration_s:.3f}",
        "-i", os.fspath(film), "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-ac", "1", "-ar", str(SAMPLE_RATE), *output,
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as err:
        raise DialogueError(f"{verb[:-1]}ing the audio of {name} took too long") from err
    except OSError as err:
        raise DialogueError(f"cannot run ffmpeg to {verb} the audio of {name}: {err}") from err
    messages = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    if proc.returncode != 0:
        if any("matches no streams" in m for m in messages):
            raise DialogueError(f"{name} has no audio track: there is no speech to recognise")
        why = messages[-1] if messages else f"ffmpeg exit status {proc.returncode}"
        if "unknown encoder" in why.lower() and "libopus" in why.lower():
            raise DialogueError("this ffmpeg has no Opus encoder (libopus) for the server's speech")
        raise DialogueError(f"the audio track of {name} cannot be decoded: {why}")
    return proc.stdout, messages
