"""A malformed ``--at`` is a usage error (exit 2), decided before any file is opened."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moviechat_desktop.cli import main
from moviechat_desktop.timefmt import parse_time


@pytest.mark.parametrize(
    "bad",
    ["1:99", "nan", "-5", "inf", "1e400", "9" * 400, "", "soon", "1:2:3:4", "-0:05", "0x10"],
)
def test_a_malformed_at_is_a_usage_error_before_the_file_is_opened(capsys, tmp_path, bad):
    missing = tmp_path / "not-there.mp4"  # opened first, this would be exit 1 "does not exist"
    with pytest.raises(SystemExit) as exit_info:
        main(["ask", str(missing), "What?", "--at", bad])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "--at" in err and "does not exist" not in err
    assert "Traceback" not in err


def test_parse_time_refuses_what_is_no_time():
    for bad in ("9" * 400, "1" + "0" * 309):
        with pytest.raises(ValueError):
            parse_time(bad)
    assert parse_time("01:12:30") == 4350.0 and parse_time("95s") == 95.0


def test_the_real_process_exits_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "moviechat_desktop", "ask", str(tmp_path / "x.mp4"), "Hi?",
         "--at", "1:99"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--at" in done.stderr.splitlines()[-1]
