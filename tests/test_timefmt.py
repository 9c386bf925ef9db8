import math

import pytest

from moviechat_desktop.timefmt import find_times, format_time, parse_time


@pytest.mark.parametrize(
    ("seconds", "kwargs", "text"),
    [
        (0, {}, "00:00"),
        (5.9, {}, "00:05"),  # floors: a label never shows a second not yet reached
        (65, {}, "01:05"),
        (3599.99, {}, "59:59"),
        (3600, {}, "01:00:00"),
        (4350, {}, "01:12:30"),
        (245, {"hours": True}, "00:04:05"),
        (4350, {"hours": False}, "72:30"),
        (65.26, {"fraction": True}, "01:05.3"),
        (59.96, {"fraction": True}, "01:00.0"),  # rounding carries into the next second
        (-3, {}, "00:00"),
        (math.nan, {}, "00:00"),
        (math.inf, {}, "00:00"),
    ],
)
def test_format_time(seconds, kwargs, text):
    assert format_time(seconds, **kwargs) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("01:12:30", 4350.0),
        ("1:12:30", 4350.0),
        ("72:30", 4350.0),
        ("0:05", 5.0),
        ("00:04:05.5", 245.5),
        ("95", 95.0),
        ("95.25", 95.25),
        ("95s", 95.0),
        (" 12 sec ", 12.0),
        (".5", 0.5),
    ],
)
def test_parse_time(text, seconds):
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "abc", "1:2", "1:60", "1:75:00", "-5", "10:30:45:12", "1::2"])
def test_parse_time_rejects(bad):
    with pytest.raises(ValueError, match="not a time"):
        parse_time(bad)


@pytest.mark.parametrize("seconds", [0, 1, 59, 60, 61, 599, 3599, 3600, 4350, 86399, 360000])
@pytest.mark.parametrize("hours", [None, True, False])
def test_format_then_parse_round_trip(seconds, hours):
    assert parse_time(format_time(seconds, hours=hours)) == seconds


def test_find_times_locates_each_mention_with_its_span():
    text = "He sits at 01:05, stands at 1:02:03 (not 3.14 or 12:5) and leaves by 02:10."
    found = find_times(text)
    assert [m.text for m in found] == ["01:05", "1:02:03", "02:10"]
    assert [m.seconds for m in found] == [65.0, 3723.0, 130.0]
    for mention in found:
        assert text[mention.start : mention.end] == mention.text


def test_find_times_skips_ratios_long_chains_and_times_past_the_end():
    assert find_times("a ratio 16:9 and a chain 10:30:45:12") == []
    assert [m.text for m in find_times("at 00:03 and at 12:45", max_seconds=300)] == ["00:03"]


def test_find_times_ignores_bare_numbers():
    assert find_times("there are 3 rabbits and 120 trees") == []
