"""Property-based tests (Hypothesis) of every parser of outside data: settings TOML, chat
history lines, memory-cache headers, safetensors headers, ffprobe's JSON, time strings,
subtitle files, hub response headers and the remote engine's request bodies.

Each property says what the parser promises for ANY input: a value that satisfies the
documented invariants, or the one documented error — never another exception, a hang or an
unbounded value. Bounded (``FUZZ``: derandomized, a fixed number of examples) so that the whole
file adds well under a minute to the suite; ``MOVIECHAT_FUZZ_EXAMPLES=2000`` explores more
(randomly) by hand. Inputs that once broke a parser are kept as ``@example`` regressions.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

_EXTRA = int(os.environ.get("MOVIECHAT_FUZZ_EXAMPLES", "0"))


def FUZZ(examples: int):
    return settings(
        max_examples=_EXTRA or examples,
        derandomize=not _EXTRA,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# JSON values of any shape, including the awkward numbers Python's json accepts
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


# --------------------------------------------------------------------------- settings TOML
def _toml_scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)  # a JSON string is a valid TOML basic string (mostly)


setting_keys = st.sampled_from(
    [
        ("sampling", "n_fragments"),
        ("sampling", "frames_per_fragment"),
        ("sampling", "fps"),
        ("sampling", "plan"),
        ("generation", "max_new_tokens"),
        ("generation", "top_p"),
        ("generation", "temperature"),
        ("generation", "greedy"),
        ("cache", "limit_gb"),
        ("model", "model_dir"),
        ("model", "device"),
        ("dialogue", "enabled"),
        ("nope", "x"),
    ]
)
setting_values = (
    st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)


def _check_settings(loaded) -> None:
    from moviechat_desktop.engine.settings import RANGES

    for (section, key), (low, high) in RANGES.items():
        value = getattr(getattr(loaded, section), key)
        assert math.isfinite(value) and low <= value <= high, (section, key, value)


@FUZZ(48)
@given(st.lists(st.tuples(setting_keys, setting_values), max_size=8))
@example([(("sampling", "n_fragments"), 0), (("sampling", "fps"), float("nan"))])
@example([(("cache", "limit_gb"), float("inf")), (("generation", "top_p"), 5.0)])
def test_settings_from_any_toml_values_are_in_range(tmp_path_factory, pairs):
    from moviechat_desktop.engine.settings import load_settings

    sections: dict[str, list[str]] = {}
    for (section, key), value in pairs:
        sections.setdefault(section, []).append(f"{key} = {_toml_scalar(value)}")
    text = "".join(
        f"[{s}]\n" + "\n".join(dict.fromkeys(lines)) + "\n" for s, lines in sections.items()
    )
    path = tmp_path_factory.mktemp("settings") / "settings.toml"
    path.write_text(text, "utf-8")
    _check_settings(load_settings(path))


@FUZZ(48)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@example(b"a = " + b"[" * 5000)  # tomllib recursed into a RecursionError
@example(b"[sampling]\nn_fragments = 0\n")
def test_settings_from_any_bytes_never_fail(tmp_path_factory, data):
    from moviechat_desktop.engine.settings import load_settings

    path = tmp_path_factory.mktemp("settings") / "settings.toml"
    path.write_bytes(data)
    _check_settings(load_settings(path))


@FUZZ(32)
@given(
    model_dir=st.text(max_size=40).filter(lambda s: "\0" not in s),
    device=st.text(max_size=10).filter(lambda s: "\0" not in s),
    n_fragments=st.integers(1, 4096),
    fps=st.floats(0.05, 30.0),
    limit_gb=st.floats(0.0, 1e6),
)
@example(model_dir='C:\\films\n"quoted"\x1b', device="cpu", n_fragments=1, fps=1.0, limit_gb=0.0)
def test_settings_round_trip_through_the_file(
    tmp_path_factory, model_dir, device, n_fragments, fps, limit_gb
):
    """A path with a newline or a quote used to be written as TOML that did not read back."""
    from moviechat_desktop.engine.settings import AppSettings, load_settings, save_settings

    saved = AppSettings()
    saved.model.model_dir, saved.model.device = model_dir, device
    saved.sampling.n_fragments, saved.sampling.fps, saved.cache.limit_gb = (
        n_fragments,
        fps,
        limit_gb,
    )
    path = save_settings(saved, tmp_path_factory.mktemp("settings") / "settings.toml")
    assert load_settings(path) == saved


# --------------------------------------------------------------------------- chat history
chat_fields = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 2, "1", None]),
        "conversation": json_values,
        "role": st.sampled_from(["user", "assistant", "system"]) | json_values,
        "text": json_values,
        "mode": st.sampled_from(["global", "breakpoint"]) | json_values,
        "at_s": json_values,
        "timestamp": json_values,
        "film": json_values,
        "settings": json_values,
        "id": st.sampled_from(["m1", "L3", ""]) | json_values,
        "replaces": st.sampled_from(["m1", "L3", None]) | json_values,
        "stopped": st.booleans() | json_values,
        "coverage": st.sampled_from(["Answered from 5% of the film (up to 00:00:03)."])
        | json_values,
    },
)


def _usable(record) -> None:
    """What the app does with a record read back: list, export, show it in the window."""
    from moviechat_desktop.engine.store.chat_history import export_markdown, summarize
    from moviechat_desktop.ui.chat_transcript import entries_from_records

    summarize([record])
    export_markdown([record], "Film.mkv")
    entries_from_records([record])


@FUZZ(120)
@given(chat_fields)
@example(
    {"v": 1, "conversation": "c", "role": "user", "text": "t", "mode": "global", "timestamp": 1e300}
)
@example(
    {
        "v": 1,
        "conversation": "c",
        "role": "user",
        "text": "t",
        "mode": "breakpoint",
        "at_s": 1e300,
        "timestamp": 1.0,
    }
)
def test_chat_records_are_valid_or_refused(data):
    from moviechat_desktop.engine.store.chat_history import ChatRecord, parse_line

    line = json.dumps(data).encode()
    try:
        record = parse_line(line)
    except ValueError:
        return
    assert isinstance(record, ChatRecord)
    assert math.isfinite(record.timestamp) and (record.at_s is None or math.isfinite(record.at_s))
    _usable(record)
    assert parse_line(json.dumps(record.to_json()).encode()) == record


@FUZZ(80)
@given(st.binary(max_size=200))
@example(b'{"v": 1, "text": ' + b"[" * 100_000)
def test_chat_lines_of_any_bytes_raise_only_value_error(line):
    from moviechat_desktop.engine.store.chat_history import parse_line

    try:
        _usable(parse_line(line.replace(b"\n", b" ")))
    except ValueError:
        pass


# --------------------------------------------------------------------------- cache headers
header_fields = st.fixed_dictionaries(
    {},
    optional={
        "format": json_values,
        "memory_version": json_values,
        "film_name": json_values,
        "fragments_total": json_values,
        "last_used": json_values,
        "created": json_values,
        "fragments": json_values | st.dictionaries(st.text(max_size=6), json_values, max_size=3),
        "covered": json_values,
        "plan": json_values,
    },
)


@FUZZ(60)
@given(header_fields | json_values)
@example({"last_used": 1e300, "film_name": "x"})
@example({"last_used": float("nan"), "fragments_total": True})
def test_cache_status_survives_any_header(tmp_path_factory, capsys, header):
    from moviechat_desktop import cli_cache
    from moviechat_desktop.engine.store.cache_entry import HEADER_NAME
    from moviechat_desktop.engine.store.film_cache import FilmCache

    root = tmp_path_factory.mktemp("cache")
    (root / "entry").mkdir()
    (root / "entry" / HEADER_NAME).write_text(json.dumps(header))
    cache = FilmCache(root)
    [info] = cache.entries()
    assert 0 <= info.last_used <= 32_503_680_000 and info.fragments_total >= 0
    cli_cache._cache = lambda: cache  # what `cache status` prints, text and JSON
    cli_cache.run_status(type("A", (), {"json": False})())
    cli_cache.run_status(type("A", (), {"json": True})())
    capsys.readouterr()


@FUZZ(24)
@given(header_fields | json_values | st.just("[" * 50_000))
def test_opening_a_cache_entry_survives_any_header(tmp_path_factory, header):
    """A header that is not ours is moved aside and a fresh entry starts — no traceback."""
    from moviechat_desktop.engine.store.cache_entry import HEADER_NAME, CacheEntry

    class Key:
        digest = "k"

        def as_dict(self):
            return {"film": "f"}

    root = tmp_path_factory.mktemp("cache")
    (root / "k").mkdir()
    raw = header if isinstance(header, str) else json.dumps(header)
    (root / "k" / HEADER_NAME).write_text(raw)
    entry = CacheEntry(root / "k", key=Key(), film_name="f", plan_digest="p", fragments_total=4)
    try:
        assert entry.saved_fragments == []
    finally:
        entry.close()


# --------------------------------------------------------------------------- safetensors
def _st_file(header: bytes, data_bytes: int) -> bytes:
    return struct.pack("<Q", len(header)) + header + b"\0" * data_bytes


entries = st.dictionaries(
    st.text(max_size=8),
    st.fixed_dictionaries(
        {},
        optional={
            "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "X"])
            | json_values,
            "shape": st.lists(st.integers(-2, 5), max_size=3) | json_values,
            "data_offsets": st.lists(st.integers(-4, 80), min_size=2, max_size=2) | json_values,
        },
    )
    | json_values,
    max_size=4,
)


@FUZZ(120)
@given(entries | json_values, st.integers(0, 80))
@example([{"dtype": "F32"}], 8)
@example({"w": {"dtype": "F32", "shape": [2]}}, 8)
def test_safetensors_headers_are_valid_or_weights_corrupt(header, data_bytes):
    from moviechat_desktop.engine.errors import WeightsCorrupt
    from moviechat_desktop.engine.model.safetensors_header import DTYPE_BITS, parse_header

    try:
        parsed = parse_header(json.dumps(header).encode(), data_bytes)
    except WeightsCorrupt as err:
        assert "\n" not in str(err)
        return
    covered = 0
    for entry in sorted(parsed.tensors.values(), key=lambda e: e.start):
        assert entry.start == covered and entry.dtype in DTYPE_BITS
        assert (
            entry.end - entry.start == (math.prod(entry.shape) * DTYPE_BITS[entry.dtype] + 7) // 8
        )
        covered = entry.end
    assert covered == data_bytes


@FUZZ(20)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.tuples(
            st.sampled_from(["float32", "float16", "int64", "uint8"]),
            st.lists(st.integers(0, 4), max_size=3),
        ),
        max_size=4,
    )
)
def test_real_safetensors_files_always_pass(tmp_path_factory, spec):
    import torch
    from safetensors.torch import save_file

    from moviechat_desktop.engine.model.safetensors_header import read_header

    tensors = {
        k: torch.zeros(shape, dtype=getattr(torch, dtype)) for k, (dtype, shape) in spec.items()
    }
    path = tmp_path_factory.mktemp("st") / "w.safetensors"
    save_file(tensors, str(path))
    assert read_header(path).shapes() == {k: tuple(v.shape) for k, v in tensors.items()}


@FUZZ(60)
@given(st.binary(max_size=120))
def test_safetensors_files_of_any_bytes(tmp_path_factory, data):
    from moviechat_desktop.engine.errors import WeightsCorrupt
    from moviechat_desktop.engine.model.safetensors_header import read_header

    path = tmp_path_factory.mktemp("st") / "w.safetensors"
    path.write_bytes(data)
    try:
        read_header(path)
    except WeightsCorrupt:
        pass


# --------------------------------------------------------------------------- ffprobe JSON
streams = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "codec_type": st.sampled_from(["video", "audio", "subtitle"]) | json_values,
            "codec_name": json_values,
            "width": json_values | st.integers(-5, 70_000),
            "height": json_values | st.integers(-5, 70_000),
            "side_data_list": st.lists(
                st.fixed_dictionaries({}, optional={"rotation": json_values}), max_size=2
            )
            | json_values,
        },
    )
    | json_values,
    max_size=3,
)


@FUZZ(80)
@given(st.fixed_dictionaries({}, optional={"streams": streams | json_values}) | json_values)
@example({"streams": [{"codec_type": "video", "width": 640}]})  # no height: a KeyError
@example(
    {
        "streams": [
            {
                "codec_type": "video",
                "width": 64,
                "height": 48,
                "side_data_list": [{"rotation": "x"}],
            }
        ]
    }
)
@example(["not", "an", "object"])
def test_ffprobe_answers_are_cleaned_or_unknown(data):
    from moviechat_desktop.engine.video.ffprobe import parse_ffprobe_json

    result = parse_ffprobe_json(json.dumps(data).encode())
    if result is None:
        return
    for stream in result["streams"]:
        assert isinstance(stream, dict)
        if "width" in stream:
            assert 0 < stream["width"] <= 65536 and 0 < stream["height"] <= 65536
            rotation = float(stream.get("side_data_list", [{}])[0].get("rotation", 0))
            assert math.isfinite(rotation)


@FUZZ(40)
@given(st.binary(max_size=100))
@example(b"[" * 100_000)
def test_ffprobe_garbage_is_unknown(data):
    from moviechat_desktop.engine.video.ffprobe import parse_ffprobe_json

    result = parse_ffprobe_json(data)
    assert result is None or isinstance(result["streams"], list)


# --------------------------------------------------------------------------- time strings
@FUZZ(120)
@given(st.text(max_size=30) | st.from_regex(r"\A-?\d{0,400}(:\d{0,3}){0,3}(\.\d*)?s?\Z"))
@example("9" * 400)
@example("1:99")
@example("nan")
def test_parse_time_gives_a_finite_time_or_value_error(text):
    from moviechat_desktop.timefmt import parse_time

    try:
        seconds = parse_time(text)
    except ValueError:
        return
    assert math.isfinite(seconds) and seconds >= 0


@FUZZ(80)
@given(st.floats(0, 3_599_999.0))  # parse_time reads at most 999 hours
def test_format_then_parse_time_round_trips(seconds):
    from moviechat_desktop.timefmt import format_time, parse_time

    assert parse_time(format_time(seconds, hours=True)) == math.floor(seconds)


@FUZZ(40)
@given(st.text(max_size=200))
def test_find_times_in_any_text(text):
    from moviechat_desktop.timefmt import find_times

    for mention in find_times(text):
        assert text[mention.start : mention.end] == mention.text and mention.seconds >= 0


# --------------------------------------------------------------------------- subtitle files
subtitle_text = st.lists(
    st.tuples(
        st.integers(0, 10**6),
        st.from_regex(r"\A\d{1,3}:\d{1,3}:\d{1,3}[,.]\d{1,4}\Z"),
        st.from_regex(r"\A\d{1,3}:\d{1,3}:\d{1,3}[,.]\d{1,4}\Z"),
        st.text(max_size=30),
    ),
    max_size=4,
).map(lambda cues: "\n\n".join(f"{n}\n{a} --> {b}\n{t}" for n, a, b, t in cues) + "\n")


@FUZZ(60)
@given(
    st.binary(max_size=300) | subtitle_text.map(str.encode),
    st.sampled_from([None, 60.0, 3600.0]),
)
@example(b"1\n00:00:01,000 --> 00:00:02,000\nhello\n", 60.0)
def test_subtitle_files_parse_or_raise_dialogue_error(data, duration_s):
    from moviechat_desktop.engine.dialogue.subtitle_file import parse_subtitles
    from moviechat_desktop.engine.errors import DialogueError

    try:
        parsed = parse_subtitles(data, "film.srt", duration_s=duration_s)
    except DialogueError as err:
        assert "\n" not in str(err)
        return
    for line in parsed.lines:
        assert math.isfinite(line.start_s) and math.isfinite(line.end_s)
        assert 0 <= line.start_s <= line.end_s
        assert duration_s is None or line.start_s <= duration_s


# --------------------------------------------------------------------------- hub headers
@FUZZ(120)
@given(st.text(max_size=70), st.text(max_size=70))
@example("../../escaped", "a" * 40)
@example("a" * 64, "../" * 10)
def test_hub_versions_are_hex_digests_or_refused(etag, commit):
    from moviechat_desktop.engine.errors import DownloadError
    from moviechat_desktop.engine.weights.hub import _checked_version

    try:
        etag, commit = _checked_version("repo/file", etag, commit)
    except DownloadError:
        return
    assert len(etag) in (40, 64) and len(commit) == 40
    assert set(etag + commit) <= set("0123456789abcdef")


@FUZZ(120)
@given(
    st.text(max_size=40)
    | st.lists(st.sampled_from(["..", ".", "", "a", "b.json", "/", "\\"]), max_size=6).map("/".join)
)
@example("../../etc/passwd")
@example("a/../../b")
def test_hub_file_names_stay_inside_the_repo_folder(tmp_path_factory, name):
    from moviechat_desktop.engine.errors import DownloadError
    from moviechat_desktop.engine.weights.hub import _checked_name, _inside

    repo = tmp_path_factory.mktemp("repo")
    try:
        _checked_name("repo", name)
        real = _inside(repo, repo / "snapshots" / ("a" * 40) / name, "repo")
    except (DownloadError, ValueError):
        return
    assert Path(os.path.normpath(real)).is_relative_to(repo.resolve())


# --------------------------------------------------------------------------- remote bodies
@FUZZ(80)
@given(
    json_values
    | st.fixed_dictionaries(
        {},
        optional={
            k: json_values
            for k in (
                "path",
                "duration_s",
                "fps",
                "n_frames",
                "width",
                "height",
                "rotation",
                "codec",
                "size_bytes",
            )
        },
    )
)
def test_remote_video_info_bodies_are_checked(data):
    remote_wire = pytest.importorskip("moviechat_desktop.service.remote_wire")
    from moviechat_desktop.engine.errors import MovieChatError

    try:
        info = remote_wire.info_from_wire(data)
    except MovieChatError:
        return
    assert math.isfinite(info.duration_s) and info.duration_s > 0


@FUZZ(60)
@given(json_values)
def test_remote_sampling_bodies_are_checked(data):
    remote_wire = pytest.importorskip("moviechat_desktop.service.remote_wire")
    from moviechat_desktop.engine.errors import MovieChatError

    try:
        sampling = remote_wire.sampling_from_wire(data)
    except MovieChatError:
        return
    assert sampling.n_fragments >= 1
