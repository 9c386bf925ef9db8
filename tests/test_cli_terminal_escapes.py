"""Outside text printed by the CLI — file names, film names from cache headers, error messages,
weights paths, answers, log messages — shows control characters escaped: a crafted name cannot
set the terminal's title or clear the screen. Answers keep their newlines and tabs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from moviechat_desktop.cli import main

EVIL = "\x1b]0;pwned\x07\x1b[2J\x9b31m"  # set the title, clear the screen, 8-bit CSI


def _no_controls(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text, repr(text)


@pytest.fixture
def evil_clip(make_video, tmp_path):
    clip = make_video("escapes.mp4", seconds=2)
    target = tmp_path / f"film{EVIL}.mp4"
    shutil.copy(clip, target)
    return target


def test_encode_and_cache_status_escape_the_film_name(capsys, reference_dir, evil_clip):
    assert main(["encode", str(evil_clip), "--model-dir", str(reference_dir)]) == 0
    out, err = capsys.readouterr()
    _no_controls(out + err)
    assert "film\\e]0;pwned\\x07" in out
    assert main(["encode", str(evil_clip), "--model-dir", str(reference_dir), "--json"]) == 0
    out, err = capsys.readouterr()
    _no_controls(out + err)
    assert json.loads(out)["video"] == str(evil_clip)  # still the exact name, as valid JSON
    assert main(["cache", "status"]) == 0
    out, err = capsys.readouterr()
    _no_controls(out + err)
    assert "film\\e]0;pwned" in out
    assert main(["cache", "status", "--json"]) == 0
    out, err = capsys.readouterr()
    _no_controls(out + err)
    assert json.loads(out)["entries"][0]["film"] == evil_clip.name


def test_error_messages_escape_the_names_they_quote(capsys, tmp_path):
    assert main(["encode", str(tmp_path / f"missing{EVIL}.mp4")]) == 1
    out, err = capsys.readouterr()
    _no_controls(out + err)
    assert err.count("\n") == 1 and "missing\\e]0;pwned" in err


def test_answers_are_escaped_but_keep_newlines_and_tabs(
    capsys, reference_dir, evil_clip, monkeypatch
):
    from moviechat_desktop.engine.assistant import Assistant

    def fake_ask(self, question, *args, **kwargs):
        yield "first line\n\tindented"
        yield f" then {EVIL} end"

    monkeypatch.setattr(Assistant, "ask", fake_ask)
    code = main(["ask", str(evil_clip), "q", "--model-dir", str(reference_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    _no_controls(out + err)
    assert "first line\n\tindented then \\e]0;pwned\\x07" in out


def test_weights_import_and_status_escape_file_names(
    capsys, tiny_manifest, reference_dir, tmp_path
):
    folder = tmp_path / f"dir{EVIL}"
    folder.mkdir()
    shutil.copy(reference_dir / "tiny_eva_vit.pth", folder)
    (folder / f"w{EVIL}.safetensors").write_bytes(b"\x00" * 16)
    (folder / "tiny.pth").write_bytes(b"not a checkpoint")
    assert main(["weights", "import", str(folder)]) == 0
    out, err = capsys.readouterr()
    _no_controls(out + err)
    assert "Ignored w\\e]0;pwned" in out
    assert main(["weights", "import", str(folder / "tiny.pth")]) == 1
    out, err = capsys.readouterr()
    _no_controls(out + err)
    main(["weights", "status"])
    out, err = capsys.readouterr()
    _no_controls(out + err)


def test_log_messages_on_the_terminal_are_escaped(tmp_path):
    script = (
        "import logging, sys\n"
        "from moviechat_desktop.cli import configure_logging\n"
        "configure_logging(False)\n"
        f"logging.getLogger('x').warning('opening %s', {EVIL!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    _no_controls(done.stderr)
    assert "opening \\e]0;pwned" in done.stderr
