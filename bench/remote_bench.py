"""The remote engine's numbers: frame transport (size, speed, drift) and the server over loopback.

    .venv/bin/python -m bench.remote_bench                      # transport table only
    .venv/bin/python -m bench.remote_bench --server             # + a Ray Serve run (tiny model)

Transport: every frame of each film's default plan (128 x 8) decoded at 224 px (the real
model's input) by the client's decoder, then sent through each candidate codec: bytes per
frame, encode/decode time per frame, PSNR against the raw pixels. Drift: the same films at the
tiny model's 56 px, tokens of the codec's frames against tokens of the raw frames (the tiny
model has random weights: an indication, not the real model's number).

Server: ``serve_deployment.start`` in this process (CPU, tiny model), ``RemoteEngine`` over
loopback: bytes uploaded for a whole film and for one breakpoint picture, and the first-token
overhead (the client's time to the first chunk minus the server's own).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VIDEOS = ROOT / ".cache" / "test-videos"
FILMS = ("bigbuckbunny.mp4", "bikes.mp4", "vtest.avi")
REFERENCE = ROOT / "tests" / "data" / "reference"


def _codecs() -> dict:
    from PIL import Image

    def pil(fmt: str, **options):
        def encode(frame: np.ndarray) -> bytes:
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format=fmt, **options)
            return buffer.getvalue()

        def decode(data: bytes, shape) -> np.ndarray:
            with Image.open(io.BytesIO(data)) as image:
                return np.asarray(image.convert("RGB"))

        return encode, decode

    codecs = {
        "raw uint8": (lambda f: f.tobytes(), lambda d, s: np.frombuffer(d, np.uint8).reshape(s))
    }
    try:
        import zstandard

        compressor, decompressor = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
        codecs["raw + zstd-3"] = (
            lambda f: compressor.compress(f.tobytes()),
            lambda d, s: np.frombuffer(decompressor.decompress(d), np.uint8).reshape(s),
        )
    except ImportError:  # not a dependency: the row is left out
        pass
    for quality in (75, 85, 90, 95):
        codecs[f"JPEG q{quality} 4:4:4"] = pil("JPEG", quality=quality, subsampling=0)
    codecs["JPEG q90 4:2:0"] = pil("JPEG", quality=90, subsampling=2)
    codecs["WebP q90"] = pil("WEBP", quality=90, method=4)
    codecs["WebP lossless"] = pil("WEBP", lossless=True, quality=50, method=2)
    return codecs


def _plan_frames(path: Path, size: int, every: int = 1) -> np.ndarray:
    from moviechat_desktop.engine.settings import SamplingSettings
    from moviechat_desktop.engine.video.probe import probe
    from moviechat_desktop.engine.video.sampling import plan_for_settings
    from moviechat_desktop.service.remote_frames import ClientFrames

    plan = plan_for_settings(probe(path), SamplingSettings())
    frames = ClientFrames(path, size)
    try:
        return np.concatenate([frames.fragment(f.frame_indices) for f in plan.fragments[::every]])
    finally:
        frames.close()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def transport(films: list[Path]) -> list[dict]:
    codecs = _codecs()
    rows: dict[str, dict] = {
        name: {"codec": name, "bytes": [], "enc": [], "dec": [], "psnr": []} for name in codecs
    }
    for film in films:
        frames = _plan_frames(film, 224)
        for name, (encode, decode) in codecs.items():
            row = rows[name]
            for frame in frames:
                t0 = time.perf_counter()
                data = encode(frame)
                t1 = time.perf_counter()
                back = decode(data, frame.shape)
                t2 = time.perf_counter()
                row["bytes"].append(len(data))
                row["enc"].append(t1 - t0)
                row["dec"].append(t2 - t1)
            sample = frames[::16]
            back = np.stack([decode(encode(f), f.shape) for f in sample])
            row["psnr"].append(_psnr(sample, back))
    drift = _drift(films, codecs)
    out = []
    for name, row in rows.items():
        out.append(
            {
                "codec": name,
                "kb_per_frame": statistics.mean(row["bytes"]) / 1024,
                "mb_per_film": sum(row["bytes"]) / len(films) / 1e6,
                "encode_ms": 1000 * statistics.median(row["enc"]),
                "decode_ms": 1000 * statistics.median(row["dec"]),
                "psnr_db": min(row["psnr"]),
                **drift[name],
            }
        )
    return out


def _drift(films: list[Path], codecs: dict) -> dict[str, dict]:
    """Tiny-model tokens of each codec's frames against those of the raw frames."""
    import torch

    from moviechat_desktop.engine.model.movie_chat import MovieChatModel
    from moviechat_desktop.engine.model.paths import ModelPaths
    from moviechat_desktop.engine.video.preprocess import normalize

    model = MovieChatModel.load(
        ModelPaths.from_reference_dir(REFERENCE), device="cpu", dtype=torch.float32
    )
    size = model.config.image_size
    result: dict[str, dict] = {name: {"token_rel_l2": 0.0, "token_max_abs": 0.0} for name in codecs}
    with torch.inference_mode():
        for film in films:
            frames = _plan_frames(film, size, every=8)  # 16 fragments x 8 frames
            reference = model.encode_frames(normalize(torch.from_numpy(frames)))
            for name, (encode, decode) in codecs.items():
                moved = np.stack([decode(encode(f), f.shape) for f in frames])
                tokens = model.encode_frames(normalize(torch.from_numpy(moved)))
                delta = tokens - reference
                rel = float(delta.norm() / reference.norm())
                result[name]["token_rel_l2"] = max(result[name]["token_rel_l2"], rel)
                result[name]["token_max_abs"] = max(
                    result[name]["token_max_abs"], float(delta.abs().max())
                )
    return result


def server(film: Path, repeats: int) -> dict:
    """A Ray Serve run over loopback: bytes uploaded, first-token overhead."""
    import socket

    from moviechat_desktop.engine.assistant import Assistant
    from moviechat_desktop.engine.model.llm import GenerationSettings
    from moviechat_desktop.service import serve_deployment
    from moviechat_desktop.service.remote_client import RemoteEngine

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = Path(tempfile.mkdtemp(prefix="mcbench-"))
    dirs = {
        name: str(base / name) for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME")
    }
    os.environ.update(dirs)
    token_file = base / "token"
    token_file.write_text("bench-token")
    greedy = GenerationSettings(greedy=True, max_new_tokens=8)
    t0 = time.perf_counter()
    serve_deployment.start(
        REFERENCE, "bench-token", port=port, num_cpus=2, temp_dir=str(base / "ray"), env_vars=dirs
    )
    start_s = time.perf_counter() - t0
    try:
        remote = RemoteEngine(f"http://127.0.0.1:{port}", token_file)
        remote.open(film)
        t0 = time.perf_counter()
        remote.encode()
        encode_s = time.perf_counter() - t0
        film_bytes = remote.bytes_uploaded
        frames_total = remote.status().frames_total
        overheads, client_first = [], []
        for _ in range(repeats):
            remote.new_conversation()
            "".join(remote.ask("What happens?", settings=greedy))
            info = remote.last_answer
            client_first.append(info.first_token_s)
            overheads.append(info.first_token_s - info.timings["server_first_token_s"])
        before = remote.bytes_uploaded
        remote.new_conversation()
        "".join(remote.ask("And now?", "breakpoint", at_s=film_duration(film) / 2, settings=greedy))
        breakpoint_bytes = remote.bytes_uploaded - before
        remote.shutdown()
    finally:
        serve_deployment.stop()
    local = Assistant(model_dir=REFERENCE, use_cache=False, keep_history=False)
    local.open(film)
    local.encode()
    local_first = []
    for _ in range(repeats):
        local.new_conversation()
        "".join(local.ask("What happens?", settings=greedy))
        local_first.append(local.last_answer.first_token_s)
    return {
        "film": film.name,
        "serve_start_s": start_s,
        "frames": frames_total,
        "uploaded_film_bytes": film_bytes,
        "uploaded_breakpoint_bytes": breakpoint_bytes,
        "remote_encode_s": encode_s,
        "server_first_token_overhead_ms": 1000 * statistics.median(overheads),
        "remote_first_token_ms": 1000 * statistics.median(client_first),
        "in_process_first_token_ms": 1000 * statistics.median(local_first),
        "image_size": 56,
    }


def film_duration(film: Path) -> float:
    from moviechat_desktop.engine.video.probe import probe

    return probe(film).duration_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", action="store_true", help="also run the Ray Serve part")
    parser.add_argument("--no-transport", action="store_true", help="skip the codec table")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    films = [VIDEOS / name for name in FILMS if (VIDEOS / name).exists()]
    if not films:
        raise SystemExit("no test videos: run scripts/fetch_test_videos.sh")
    record: dict = {"transport": [] if args.no_transport else transport(films)}
    print(f"Frame transport: {len(films)} films x 1024 frames at 224 px; drift: tiny model, 56 px")
    print(
        f"{'codec':<18}{'KB/frame':>9}{'MB/film':>9}{'enc ms':>8}{'dec ms':>8}"
        f"{'PSNR dB':>9}{'tok rel L2':>12}{'tok max':>9}"
    )
    for row in record["transport"]:
        print(
            f"{row['codec']:<18}{row['kb_per_frame']:>9.1f}{row['mb_per_film']:>9.2f}"
            f"{row['encode_ms']:>8.2f}{row['decode_ms']:>8.2f}{row['psnr_db']:>9.1f}"
            f"{row['token_rel_l2']:>12.2e}{row['token_max_abs']:>9.2e}"
        )
    if args.server:
        result = server(films[-1] if len(films) < 2 else VIDEOS / "bikes.mp4", args.repeats)
        record["server"] = result
        print()
        for key, value in result.items():
            print(f"{key:<34}{value:.3f}" if isinstance(value, float) else f"{key:<34}{value}")
    out = args.json or ROOT / "bench" / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}-remote.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=str))
    print(f"\nrecord: {out}")


if __name__ == "__main__":
    main()
