"""``verify_weights``: deep checks that catch corruption after installation and retire bad parts."""

from __future__ import annotations

import shutil

import pytest
from test_weights_fakehub import VIDEO_REPO

from moviechat_desktop.engine.errors import WeightsMissing
from moviechat_desktop.engine.weights import (
    download_weights,
    import_weights,
    resolve_model_paths,
    verify_weights,
    weights_status,
)
from moviechat_desktop.engine.weights import hub as hub_mod


def _flip_a_byte_at_the_end(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the tensor data: same size, header intact
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def test_verify_passes_a_clean_install(online, tiny_manifest):
    download_weights()
    results = verify_weights()
    assert [(r.id, r.ok) for r in results] == [(p.id, True) for p in tiny_manifest.parts]


def test_verify_catches_a_corrupted_file_and_retires_it(online, tiny_manifest):
    download_weights()
    eva = resolve_model_paths().eva_vit
    _flip_a_byte_at_the_end(eva)
    assert weights_status()[0].state == "ready"  # cheap checks cannot see it…
    results = {r.id: r for r in verify_weights()}
    assert not results["eva_vit"].ok and "sha256" in results["eva_vit"].detail  # …verify does
    assert all(results[p].ok for p in ("blip2_qformer", "videollama", "vicuna"))
    assert not eva.exists() and weights_status()[0].state == "missing"
    with pytest.raises(WeightsMissing, match="EVA ViT-g"):
        resolve_model_paths()
    download_weights(["eva_vit"])  # and it can be fetched again
    assert verify_weights(["eva_vit"])[0].ok


def test_verify_checks_hub_files_against_their_etag(online, tiny_manifest):
    download_weights()
    weights = resolve_model_paths().llama_dir / "model.safetensors"
    _flip_a_byte_at_the_end(weights.resolve())
    [result] = verify_weights(["vicuna"])
    assert not result.ok and "hub says" in result.detail
    assert not weights.exists()  # removed from the hub cache so the next download refetches
    assert weights_status()[3].state in ("partial", "missing")
    download_weights(["vicuna"])
    assert verify_weights(["vicuna"])[0].ok


def test_verify_converts_a_pth_found_in_the_hub_cache(online, tiny_manifest):
    from huggingface_hub import hf_hub_download

    from moviechat_desktop.engine.weights.store import hub_cache_dir

    hf_hub_download(
        VIDEO_REPO, "tiny_videollama.pth", cache_dir=str(hub_cache_dir()), endpoint=online.url
    )  # fetched by another tool: no record of ours
    status = weights_status()[2]
    assert status.state == "unconverted" and status.origin == "hub cache"
    [result] = verify_weights(["videollama"])
    assert result.ok and result.state == "ready" and result.path.suffix == ".safetensors"
    assert hub_mod.cached_file(tiny_manifest.part("videollama").source) is not None


def test_verify_of_a_damaged_import_stops_using_it_but_keeps_the_users_file(
    tiny_manifest, reference_dir, tmp_path
):
    mine = tmp_path / "tiny_eva_vit.pth"
    shutil.copy(reference_dir / "tiny_eva_vit.pth", mine)
    import_weights(mine)
    _flip_a_byte_at_the_end(weights_status()[0].path)
    [result] = verify_weights(["eva_vit"])
    assert not result.ok and result.state == "missing"
    assert mine.read_bytes() == (reference_dir / "tiny_eva_vit.pth").read_bytes()


def test_verify_reports_missing_parts(tiny_manifest):
    results = verify_weights()
    assert all(not r.ok and r.state == "missing" for r in results)


def test_verify_checks_the_decoders_tokenizer(tiny_manifest, reference_dir, tmp_path):
    """A decoder directory with a SentencePiece tokenizer in Vicuna's layout: verify runs the
    slow/fast and BOS checks on it (tokenizer_check) and says so."""
    from sp_tokenizer import write_vicuna_style_tokenizer

    folder = tmp_path / "MovieChat-vicuna"
    shutil.copytree(reference_dir / "tiny_llama", folder)
    write_vicuna_style_tokenizer(folder)
    import_weights(folder, "vicuna")
    [result] = verify_weights(["vicuna"])
    assert result.ok, result.detail
    assert "tokenizer: BOS once, slow and fast tokenizers agree on 6 prompt segments" in (
        result.detail
    )
