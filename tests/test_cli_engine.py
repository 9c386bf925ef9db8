"""``moviechat-desktop ask`` / ``encode`` end to end with the tiny model (DESIGN §7 inputs)."""

import json
import os
import subprocess
import sys

import pytest

from moviechat_desktop.cli import main


def _write(path, data):
    path.write_bytes(data)
    return path


def _truncated(directory, clip):
    data = clip.read_bytes()
    return _write(directory / "cut.mp4", data[: len(data) // 2])


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_ask_global_json_on_a_real_clip(capsys, reference_dir, bigbuckbunny):
    code, out, err = run_cli(
        capsys, "ask", str(bigbuckbunny), "What is happening?",
        "--model-dir", str(reference_dir), "--greedy", "--max-new-tokens", "6", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["mode"] == "global" and result["at_s"] is None
    assert isinstance(result["answer"], str)
    assert result["frames_sampled"] == 1024 and result["memory_frames"] == 256
    t = result["timings"]
    for key in ("open_s", "encode_s", "first_token_s", "first_text_s", "answer_s"):
        assert t[key] >= 0
    assert 0 < t["first_token_s"] <= t["first_text_s"] <= t["answer_s"]
    # greedy: the same answer again
    code, out2, _ = run_cli(
        capsys, "ask", str(bigbuckbunny), "What is happening?",
        "--model-dir", str(reference_dir), "--greedy", "--max-new-tokens", "6", "--json",
    )  # fmt: skip
    assert json.loads(out2)["answer"] == result["answer"]


def test_ask_breakpoint_streams_text(capsys, reference_dir, vtest_avi):
    code, out, err = run_cli(
        capsys, "ask", str(vtest_avi), "What is he holding?", "--at", "0:00:30",
        "--model-dir", str(reference_dir), "--max-new-tokens", "5", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["mode"] == "breakpoint" and result["at_s"] == 30.0
    # only the fragments up to the breakpoint were encoded
    assert 0 < result["fragments_encoded"] < 128
    assert result["memory_frames"] <= 256
    code, out, err = run_cli(
        capsys, "ask", str(vtest_avi), "What now?", "--at", "12.5",
        "--model-dir", str(reference_dir), "--max-new-tokens", "3",
    )  # fmt: skip
    assert code == 0, err
    assert out.endswith("\n")


def test_encode_json(capsys, reference_dir, make_video):
    clip = make_video("enc.mp4", seconds=4)
    code, out, err = run_cli(
        capsys, "encode", str(clip), "--model-dir", str(reference_dir), "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["frames_sampled"] == 1024 and result["fragments_encoded"] == 128
    assert result["covered"][0][0] == 0.0


@pytest.mark.parametrize(
    ("make", "args", "words"),
    [
        (lambda d, mv: d / "missing.mp4", (), "does not exist"),
        (lambda d, mv: d, (), "folder"),
        (lambda d, mv: _write(d / "empty.mp4", b""), (), "empty"),
        (lambda d, mv: _write(d / "t.mp4", b"hello\n" * 50), (), "not a video"),
        (lambda d, mv: _write(d / "r.mkv", bytes(range(256)) * 64), (), "not a video"),
        (lambda d, mv: mv("a.m4a", seconds=1, audio_only=True), (), "audio"),
        (lambda d, mv: _truncated(d, mv("whole.mp4", seconds=4)), (), "incomplete"),
        (lambda d, mv: mv("ok.mp4", seconds=2), ("--at", "0:05"), "beyond the end"),
    ],
)
def test_bad_inputs_one_line_nonzero(
    capsys, reference_dir, tmp_path, make_video, make, args, words
):
    path = make(tmp_path, make_video)
    code, out, err = run_cli(
        capsys, "ask", str(path), "What?", "--model-dir", str(reference_dir), *args
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("moviechat-desktop: error:")
    assert words in lines[0]
    assert out == ""


def test_missing_or_partial_weights(capsys, tmp_path, reference_dir, make_video):
    clip = make_video("ok.mp4", seconds=2)
    code, _, err = run_cli(capsys, "ask", str(clip), "What?")  # no weights installed here
    assert code == 1 and "weights are not installed" in err
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "tiny_config.json").write_bytes((reference_dir / "tiny_config.json").read_bytes())
    code, _, err = run_cli(capsys, "ask", str(clip), "What?", "--model-dir", str(partial))
    assert code == 1 and "lacks" in err and "tiny_eva_vit.pth" in err


def test_real_process_exit_codes(reference_dir, bigbuckbunny, tmp_path):
    """The installed entry point, in a real process: stdout answer, exit 0; bad file, exit 1."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ok = subprocess.run(
        [sys.executable, "-m", "moviechat_desktop", "ask", str(bigbuckbunny), "Hi?",
         "--at", "2", "--model-dir", str(reference_dir), "--max-new-tokens", "3"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == "", "no progress bars or library noise when stderr is not a terminal"
    bad = subprocess.run(
        [sys.executable, "-m", "moviechat_desktop", "ask", str(tmp_path / "nope.mkv"), "Hi?",
         "--model-dir", str(reference_dir)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.strip() == "moviechat-desktop: error: The file 'nope.mkv' does not exist."
