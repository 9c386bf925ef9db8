"""``weights download`` / ``import`` with stderr not a terminal (a log, a pipe, CI): plain
progress lines every few seconds, no bars, no carriage returns or escape sequences."""

from __future__ import annotations

import re

from moviechat_desktop import cli_weights
from moviechat_desktop.cli import main

LINE = re.compile(r"^[a-z_0-9]+ (download|verify|convert): .+$")


def _progress_lines(err: str) -> list[str]:
    assert "\r" not in err and "\x1b" not in err, repr(err[:300])
    lines = err.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    return lines


def test_download_to_a_pipe_prints_plain_lines_every_few_seconds(
    capsys, online, tiny_manifest, monkeypatch
):
    monkeypatch.setattr(cli_weights, "PLAIN_INTERVAL_S", 0.2)
    online.chunk_size = 8 * 1024
    online.chunk_delay_s = 0.01  # the EVA part (~0.6 MB) takes about a second
    assert main(["weights", "download"]) == 0
    out, err = capsys.readouterr()
    assert "All parts are installed." in out
    lines = _progress_lines(err)
    eva = [line for line in lines if line.startswith("eva_vit download: ")]
    assert 3 <= len(eva) <= 20, eva  # throttled: far fewer lines than the ~80 chunks
    assert eva[-1].endswith("(100%)") and "B/s" in eva[1]
    assert len({line for line in lines if line.endswith("(100%)")}) == len(
        [line for line in lines if line.endswith("(100%)")]
    ), "each phase says it finished once"


def test_import_to_a_pipe_prints_plain_lines(capsys, tiny_manifest, reference_dir):
    assert main(["weights", "import", str(reference_dir)]) == 0
    _, err = capsys.readouterr()
    lines = _progress_lines(err)
    assert any(line.startswith("eva_vit verify: ") for line in lines)
    assert any(line == "eva_vit convert: converting" for line in lines)
