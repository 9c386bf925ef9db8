"""User settings: shipped defaults (``configs/defaults.toml``) overlaid by the user's file.

The user's file is ``settings.toml`` in the platformdirs user config dir. Unknown keys are
ignored with a warning; wrong types and numbers out of range (``RANGES``, the settings
dialog's limits; NaN and infinity never pass) fall back to the default with a warning: a
hand-edited file can never stop the app from starting.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tomllib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import platformdirs

log = logging.getLogger(__name__)

APP_NAME = "moviechat-desktop"


def user_config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def user_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def user_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass
class ModelSettings:
    model_dir: str = ""  # a reference-layout directory; "" = the installed real weights
    device: str = "auto"  # "auto" | "cuda" | "cpu"
    precision: str = "auto"  # "auto" | "fp16" | "int8" | "int4" | "fp32" | "bf16"
    position_table: str = "trained"  # "trained" | "original" (the original's init-time table)


@dataclass
class SamplingSettings:
    plan: str = "fragments"  # "fragments" (the original's) | "fps"
    n_fragments: int = 128  # equal-duration fragments per film
    frames_per_fragment: int = 8  # frames sampled uniformly in each fragment
    fps: float = 1.0  # rate of the "fps" plan
    # True: the planned frames themselves (the original's, slower on long films); False: the
    # nearest reference picture to each (engine/video/reference_frames.py)
    exact_frames: bool = False


@dataclass
class GenerationDefaults:
    greedy: bool = False  # greedy decoding instead of nucleus sampling
    max_new_tokens: int = 300
    top_p: float = 0.9
    temperature: float = 1.0


@dataclass
class CacheSettings:
    limit_gb: float = 20.0  # memory-cache size limit (LRU eviction)


@dataclass
class DialogueSettings:
    enabled: bool = True  # put the film's dialogue (subtitles or speech) into the prompts
    source: str = "auto"  # "auto" | "file" | "sidecar" | "embedded" | "speech" | "none"
    speech_model: str = "small"  # faster-whisper model size for speech recognition
    language: str = "auto"  # speech language ("auto": detected), e.g. "en"


@dataclass
class PlayerSettings:
    always_resume: bool = False  # reopening a film continues where it was left, without asking
    snapshot_dir: str = ""  # where Shift+S saves pictures; "" = Pictures/MovieChat
    one_window: bool = True  # a file launched while a window is open opens in that window


@dataclass
class EngineSettings:
    mode: str = "local"  # "local" (a child process of the app) | "server" (a MovieChat server)
    server_url: str = ""  # e.g. "http://gpu-box:8000" (mode "server")
    token_file: str = ""  # the server's token; "" = server-token in the user config dir
    # the CLI's engine stays loaded this many seconds after its last call (service/warm_engine.py);
    # 0: every call loads its own. $MOVIECHAT_KEEP_WARM_S overrides it.
    keep_warm_s: int = 300


@dataclass
class AppSettings:
    model: ModelSettings = field(default_factory=ModelSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    generation: GenerationDefaults = field(default_factory=GenerationDefaults)
    cache: CacheSettings = field(default_factory=CacheSettings)
    dialogue: DialogueSettings = field(default_factory=DialogueSettings)
    player: PlayerSettings = field(default_factory=PlayerSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)


_SECTIONS = {f.name: f.type for f in dataclasses.fields(AppSettings)}

# the allowed range of every number (the settings dialog offers the same)
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("sampling", "n_fragments"): (1, 4096),
    ("sampling", "frames_per_fragment"): (2, 64),
    ("sampling", "fps"): (0.05, 30.0),
    ("generation", "max_new_tokens"): (1, 4096),
    ("generation", "top_p"): (0.01, 1.0),
    ("generation", "temperature"): (0.01, 5.0),
    ("cache", "limit_gb"): (0.0, 1_000_000.0),
    ("engine", "keep_warm_s"): (0, 86400),
}
_MAX_TEXT = 4096  # longest string setting (a path)


def _out_of_range(section: str, key: str, value: object) -> bool:
    if isinstance(value, str):
        return len(value) > _MAX_TEXT or "\0" in value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not math.isfinite(value):
        return True
    low, high = RANGES.get((section, key), (-math.inf, math.inf))
    return not low <= value <= high


def _apply(settings: AppSettings, data: dict, source: str) -> None:
    for section_name, values in data.items():
        section = getattr(settings, section_name, None)
        if section is None or not isinstance(values, dict):
            log.warning("%s: unknown section [%s] ignored", source, section_name)
            continue
        for key, value in values.items():
            if not hasattr(section, key):
                log.warning("%s: unknown key %s.%s ignored", source, section_name, key)
                continue
            default = getattr(section, key)
            if isinstance(default, float) and type(value) is int:
                value = float(value)  # noqa: PLW2901 (TOML writes 20 for 20.0)
            if type(value) is not type(default) or _out_of_range(section_name, key, value):
                log.warning(
                    "%s: %s.%s should be %s%s, got %.80r; using %r",
                    source,
                    section_name,
                    key,
                    type(default).__name__,
                    _range_words(section_name, key),
                    value,
                    default,
                )
                continue
            setattr(section, key, value)


def _range_words(section: str, key: str) -> str:
    bounds = RANGES.get((section, key))
    return "" if bounds is None else f" from {bounds[0]:g} to {bounds[1]:g}"


def settings_path() -> Path:
    return user_config_dir() / "settings.toml"


def load_settings(path: Path | None = None) -> AppSettings:
    """Defaults from ``configs/defaults.toml`` overlaid by the user's settings file."""
    settings = AppSettings()
    defaults = files("moviechat_desktop.configs").joinpath("defaults.toml").read_text("utf-8")
    _apply(settings, tomllib.loads(defaults), "defaults.toml")
    path = settings_path() if path is None else path
    if path.is_file():
        try:
            _apply(settings, tomllib.loads(path.read_text("utf-8")), str(path))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError, RecursionError) as err:
            log.warning("%s unreadable (%.200s); using defaults", path, err)
    return settings


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or c in '"\\\x7f' else c for c in str(value)
    )  # every character TOML needs escaped in a basic string (a newline in a path…)
    return f'"{text}"'


def save_settings(settings: AppSettings, path: Path | None = None) -> Path:
    """Write every setting atomically (temp file + fsync + rename)."""
    path = settings_path() if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# MovieChat Desktop settings (written by the app; safe to edit)."]
    for section_name in _SECTIONS:
        lines.append(f"\n[{section_name}]")
        for key, value in dataclasses.asdict(getattr(settings, section_name)).items():
            lines.append(f"{key} = {_toml_value(value)}")
    from moviechat_desktop.engine.store.atomic_io import atomic_write

    atomic_write(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path
