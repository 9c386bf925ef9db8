"""A stretch of the film's sound as Opus (for a server's speech recognition), and back.

The remote engine's client has the film, the server has the speech model: the client cuts the
same ~30 s chunks ``audio.decode_audio`` reads (ffmpeg input seeking, first audio track, mono,
16 kHz) but encodes them as Opus in Ogg (speech at ``BITRATE``: ~0.18 MB per minute instead of
3.8 MB as float32 samples), and the server decodes the upload back to 16 kHz mono float32.
Both are one short ffmpeg run. What the server is sent is checked: only an Ogg Opus stream is
decoded (ffmpeg is told the container and the decoder), and never more than ``max_s`` of it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from moviechat_desktop.engine.dialogue.audio import SAMPLE_RATE, TIMEOUT_S, run_on_audio_track
from moviechat_desktop.engine.errors import DialogueError

if TYPE_CHECKING:
    import numpy as np

BITRATE = "24k"  # Opus at 16 kHz mono: speech stays clear to Whisper (bench/README)
CONTENT_TYPE = "audio/ogg; codecs=opus"


class AudioUploadError(DialogueError):
    """Uploaded audio that is not a decodable Ogg Opus stream."""


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise DialogueError("speech recognition needs ffmpeg to handle the audio (install ffmpeg)")
    return exe


def encode_opus(film: str | Path, start_s: float, duration_s: float) -> bytes:
    """``duration_s`` seconds of the film's first audio track from ``start_s`` as Ogg Opus
    (mono, 16 kHz, ``BITRATE``). Shorter at the film's end; ``DialogueError`` for a film
    without audio or an audio track ffmpeg cannot decode (its reason)."""
    output = ["-c:a", "libopus", "-b:a", BITRATE, "-application", "voip", "-f", "ogg", "-"]
    data, messages = run_on_audio_track(film, start_s, duration_s, output, "encode")
    if not data:
        name = Path(film).name
        raise DialogueError(f"the audio track of {name} cannot be decoded: {messages[-1:]}")
    return data


def decode_opus(data: bytes, max_s: float) -> np.ndarray:
    """An uploaded Ogg Opus stream → float32 16 kHz mono samples (at most ``max_s`` seconds);
    ``AudioUploadError`` with ffmpeg's reason when it is anything else."""
    import numpy as np

    if not data.startswith(b"OggS"):
        raise AudioUploadError("the audio chunk is not an Ogg stream (Opus in Ogg is expected)")
    cmd = [
        _ffmpeg(), "-v", "error", "-f", "ogg", "-c:a", "opus", "-i", "pipe:0",
        "-map", "0:a:0", "-t", f"{max_s:.3f}",
        "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "pipe:1",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as err:
        raise AudioUploadError("decoding the audio chunk took too long") from err
    except OSError as err:
        raise DialogueError(f"cannot run ffmpeg to decode the audio chunk: {err}") from err
    messages = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    usable = len(proc.stdout) - len(proc.stdout) % 4
    if proc.returncode != 0 or (usable == 0 and messages):
        why = messages[-1] if messages else f"ffmpeg exit status {proc.returncode}"
        raise AudioUploadError(f"the audio chunk is not decodable Ogg Opus ({why})")
    return np.frombuffer(proc.stdout[:usable], dtype=np.float32).copy()
