"""``moviechat-desktop weights status|download|verify|import`` end to end (in process)."""

from __future__ import annotations

import json

import pytest

from moviechat_desktop.cli import main
from moviechat_desktop.engine.weights import resolve_model_paths
from moviechat_desktop.engine.weights.store import hub_cache_dir, weights_dir


def run(capsys, *argv):
    code = main(["weights", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_json_on_a_fresh_machine(capsys):
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["manifest"] == "configs/weights_manifest.json"
    assert not report["ready"] and report["offline"]  # tests run with HF_HUB_OFFLINE=1
    assert [p["id"] for p in report["parts"]] == [
        "eva_vit",
        "blip2_qformer",
        "videollama",
        "vicuna",
    ]
    assert {p["state"] for p in report["parts"]} == {"missing"}
    assert report["missing_bytes"] == sum(p["size"] for p in report["parts"])
    assert {d["path"] for d in report["destinations"]} == {str(weights_dir()), str(hub_cache_dir())}
    assert all(d["free_bytes"] > 0 for d in report["destinations"])


def test_status_text(capsys):
    code, out, _ = run(capsys, "status")
    assert code == 0
    assert "EVA ViT-g visual encoder" in out and "~1.99 GB" in out and "missing" in out
    assert "Not ready" in out and "weights download" in out and "Free disk space" in out


def test_download_offline_is_one_line_and_exit_1(capsys, tiny_manifest):
    code, out, err = run(capsys, "download")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("moviechat-desktop: error: offline mode")
    assert "Vicuna-7B" in err


def test_download_against_the_fake_hub(capsys, online, tiny_manifest):
    code, out, err = run(capsys, "download")
    assert code == 0, err
    assert "All parts are installed." in out
    # stderr is not a terminal here: plain progress lines (tests/test_cli_weights_progress.py)
    assert "eva_vit download: " in err and "(100%)" in err
    code, out, _ = run(capsys, "status", "--json")
    report = json.loads(out)
    assert report["ready"] and {p["state"] for p in report["parts"]} == {"ready"}
    assert resolve_model_paths().eva_vit.suffix == ".safetensors"


def test_download_json_of_one_part(capsys, online, tiny_manifest):
    code, out, err = run(capsys, "download", "--part", "videollama", "--json")
    assert code == 0, err
    states = {p["id"]: p["state"] for p in json.loads(out)["parts"]}
    assert states == {
        "eva_vit": "missing",
        "blip2_qformer": "missing",
        "videollama": "ready",
        "vicuna": "missing",
    }
    assert "videollama download" not in err  # no bars with --json


def test_import_the_tiny_reference_files(capsys, tiny_manifest, reference_dir):
    code, out, err = run(capsys, "import", str(reference_dir), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert sorted(report["imported"]) == ["blip2_qformer", "eva_vit", "vicuna", "videollama"]
    assert report["ready"] and any("reference_outputs" in line for line in report["ignored"])
    code, out, err = run(capsys, "import", str(reference_dir / "tiny_eva_vit.pth"))
    assert code == 0 and "Imported EVA ViT-g" in out


def test_import_errors_are_one_line(capsys, tiny_manifest, reference_dir, tmp_path):
    code, _, err = run(capsys, "import", str(tmp_path / "nothing-here"))
    assert code == 1 and err.count("\n") == 1 and "does not exist" in err
    code, _, err = run(capsys, "import", str(reference_dir / "tiny_llama"), "--part", "eva_vit")
    assert code == 1 and err.count("\n") == 1 and "not the EVA ViT-g" in err


def test_verify_catches_a_corrupted_file(capsys, online, tiny_manifest):
    assert run(capsys, "download", "--json")[0] == 0
    code, out, _ = run(capsys, "verify")
    assert code == 0 and "All parts verified." in out
    blip = resolve_model_paths().blip2_qformer
    data = bytearray(blip.read_bytes())
    data[-5] ^= 0x01
    blip.write_bytes(bytes(data))
    code, out, err = run(capsys, "verify", "--json")
    assert code == 1
    results = {r["id"]: r for r in json.loads(out)["parts"]}
    assert not results["blip2_qformer"]["ok"] and results["eva_vit"]["ok"]
    assert err.count("\n") == 1 and "failed verification" in err and "BLIP-2" in err
    code, out, _ = run(capsys, "status", "--json")
    states = {p["id"]: p["state"] for p in json.loads(out)["parts"]}
    assert states["blip2_qformer"] == "missing"  # the bad file is not used


def test_verify_with_nothing_installed_says_what_is_missing(capsys, tiny_manifest):
    code, out, err = run(capsys, "verify")
    assert code == 1 and "missing" in out
    assert "not installed" in err and "weights download" in err


def test_help_is_instant_and_lists_actions(capsys):
    with pytest.raises(SystemExit) as done:
        main(["weights", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for action in ("status", "download", "verify", "import"):
        assert action in out
