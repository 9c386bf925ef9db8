"""How fast could the plan's frames be decoded at all? Rows for issue 16, per film, one run:

- full sequential decode: ``ffmpeg -threads N -i FILM -f null -`` (every frame, N threads);
- decode limit for the plan: for each keyframe a planned frame needs, seek there and decode
  only the reference frames (``skip_frame=NONREF``) up to the last planned frame of that GOP
  (PyAV, N threads) — what any reader that returns those frames must at least decode;
- bare decord over the plan's frames: ``VideoReader(width=224, height=224)`` + ``get_batch``
  per fragment, opening included (what the exact frames are read with);
- our reader alone: ``ReferenceFrameReader`` (the default, ``exact_frames = false``) over the
  plan, one fragment per call at 224 px, opening included, and how far its pictures moved from
  the planned frames (frames, display order);
- ours, open → memory ready: ``Assistant.open`` + ``encode`` with the tiny test model, no
  cache (model loading excluded), with the default reader and (``--exact``) exact frames;
and ours ÷ each. ``python -m bench.decode_limit FILM [--fragments N] [--threads N]``; the
plan is the app's (``--fragments`` shrinks it, e.g. to keep a short film's plan as sparse as
a long film's).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import decord  # first: the project's import order (decord before torch)

ROOT = Path(__file__).resolve().parent.parent


def plan_indices(path: Path, fragments: int | None) -> list[list[int]]:
    """The app's sampling plan for ``path``: frame indices (display order), per fragment."""
    from moviechat_desktop.engine.settings import load_settings
    from moviechat_desktop.engine.video.frames import probe
    from moviechat_desktop.engine.video.sampling import plan_for_settings

    settings = load_settings(Path("/dev/null"))
    if fragments:
        settings.sampling.n_fragments = fragments
    plan = plan_for_settings(probe(path), settings.sampling)
    return [list(f.frame_indices) for f in plan.fragments]


def full_decode_s(path: Path, threads: int) -> float:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not installed")
    cmd = [ffmpeg, "-v", "error", "-threads", str(threads), "-i", str(path)]
    cmd += ["-map", "0:v:0", "-f", "null", "-"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def decode_limit(path: Path, indices: list[int], threads: int) -> dict[str, float]:
    """Seconds to decode, from each needed keyframe, the reference frames up to the last
    planned frame of its GOP; also how many frames and GOPs that took."""
    import av

    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts, keys = [], []
        for packet in container.demux(stream):  # the index: packets only, nothing decoded
            if packet.pts is not None:
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        pts.sort()
        keys.sort()
        last_in_gop: dict[int, int] = {}  # keyframe pts -> last planned pts in its GOP
        for i in indices:
            target = pts[min(i, len(pts) - 1)]
            key = keys[max(bisect.bisect_right(keys, target) - 1, 0)]
            last_in_gop[key] = max(last_in_gop.get(key, target), target)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        stream.codec_context.skip_frame = "NONREF"
        decoded = 0
        for key in sorted(last_in_gop):
            container.seek(key, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                decoded += 1
                if frame.pts is not None and frame.pts >= last_in_gop[key]:
                    break
    return {
        "limit_s": time.perf_counter() - start,
        "limit_frames_decoded": float(decoded),
        "limit_gops": float(len(last_in_gop)),
        "film_frames": float(len(pts)),
        "film_keyframes": float(len(keys)),
    }


def bare_decord_s(path: Path, fragments: list[list[int]], threads: int) -> float:
    start = time.perf_counter()
    reader = decord.VideoReader(str(path), width=224, height=224, num_threads=threads)
    for indices in fragments:
        reader.get_batch(indices).asnumpy()
    return time.perf_counter() - start


def our_reader(
    path: Path, fragments: list[list[int]], threads: int, skip_loop_filter: bool = False
) -> dict[str, float]:
    """Seconds for the default reader alone over the plan, and how far its pictures moved."""
    from moviechat_desktop.engine.video.probe import probe
    from moviechat_desktop.engine.video.reference_frames import ReferenceFrameReader
    from moviechat_desktop.engine.video.sampling import frame_starts

    info = probe(path)  # not timed: the Assistant has it before it reads a frame
    start = time.perf_counter()
    reader = ReferenceFrameReader(
        path, frame_starts(info), 224, threads, info.rotation, skip_loop_filter=skip_loop_filter
    )
    for indices in fragments:
        reader.decode_array(indices)
    seconds = time.perf_counter() - start
    fallback = float(reader.exact)
    reader.close()
    return {"reader_s": seconds, "reader_exact_fallback": fallback, **moved(reader.moves)}


def moved(moves: list[int]) -> dict[str, float]:
    """The distribution of |chosen - planned| in frames."""
    sizes = [abs(m) for m in moves]
    out = {f"moved_{k}": float(sum(1 for m in sizes if m == k)) for k in (0, 1, 2)}
    out["moved_3_or_more"] = float(sum(1 for m in sizes if m >= 3))
    out["moved_max"] = float(max(sizes, default=0))
    return out


def ours_s(path: Path, fragments: int | None, model_dir: Path, exact: bool = False) -> float:
    from moviechat_desktop.engine.assistant import Assistant
    from moviechat_desktop.engine.settings import load_settings

    settings = load_settings(Path("/dev/null"))
    settings.sampling.exact_frames = exact
    if fragments:
        settings.sampling.n_fragments = fragments
    assistant = Assistant(
        settings=settings, model_dir=model_dir, use_cache=False, keep_history=False
    )
    assistant.load_model()
    start = time.perf_counter()
    assistant.open(path)
    assistant.encode()
    ready = time.perf_counter() - start
    assistant.close()
    return ready


def measure(
    path: Path,
    fragments: int | None,
    threads: int,
    model_dir: Path,
    *,
    exact: bool = False,
    skip_loop_filter: bool = False,
) -> dict:
    plan = plan_indices(path, fragments)
    flat = [i for f in plan for i in f]
    out: dict[str, float] = {"plan_frames": float(len(flat))}
    out["load_before"] = os.getloadavg()[0]
    out["full_decode_s"] = full_decode_s(path, threads)
    out.update(decode_limit(path, flat, threads))
    out["bare_decord_s"] = bare_decord_s(path, plan, threads)
    out.update(our_reader(path, plan, threads))
    if skip_loop_filter:  # the same reader without the deblocking filter (not the app's)
        out["reader_no_deblock_s"] = our_reader(path, plan, threads, True)["reader_s"]
    out["ours_open_to_ready_s"] = ours_s(path, fragments, model_dir)
    if exact:
        out["ours_exact_open_to_ready_s"] = ours_s(path, fragments, model_dir, exact=True)
    out["load_after"] = os.getloadavg()[0]
    for row in ("full_decode_s", "limit_s", "bare_decord_s"):
        out[f"ours_over_{row[:-2]}"] = out["ours_open_to_ready_s"] / out[row]
        out[f"reader_over_{row[:-2]}"] = out["reader_s"] / out[row]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.decode_limit")
    p.add_argument("film", nargs="+")
    p.add_argument("--fragments", type=int, default=None, help="plan fragments (default: app's)")
    p.add_argument("--threads", type=int, default=2, help="decoder threads for every row")
    p.add_argument("--model-dir", default=str(ROOT / "tests" / "data" / "reference"))
    p.add_argument("--exact", action="store_true", help="also ours with exact_frames = true")
    p.add_argument(
        "--no-deblock", action="store_true", help="also our reader without the loop filter"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = {}
    for film in args.film:
        results[film] = measure(
            Path(film),
            args.fragments,
            args.threads,
            Path(args.model_dir),
            exact=args.exact,
            skip_loop_filter=args.no_deblock,
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for film, r in results.items():
        print(
            f"{Path(film).name}: {r['film_frames']:.0f} frames, {r['film_keyframes']:.0f} "
            f"keyframes; plan {r['plan_frames']:.0f} frames in {r['limit_gops']:.0f} GOPs"
        )
        print(
            f"  full sequential decode (ffmpeg) {r['full_decode_s']:8.2f} s   ours ÷ it "
            f"{r['ours_over_full_decode']:.2f}"
        )
        print(
            f"  decode limit for the plan      {r['limit_s']:8.2f} s   ours ÷ it "
            f"{r['ours_over_limit']:.2f}   ({r['limit_frames_decoded']:.0f} frames decoded)"
        )
        print(
            f"  bare decord, plan's frames     {r['bare_decord_s']:8.2f} s   ours ÷ it "
            f"{r['ours_over_bare_decord']:.2f}"
        )
        print(
            f"  our reader alone               {r['reader_s']:8.2f} s   ÷ full "
            f"{r['reader_over_full_decode']:.2f}, ÷ limit {r['reader_over_limit']:.2f}"
        )
        print(
            f"  frames moved 0/1/2/3+ (max)    {r['moved_0']:.0f}/{r['moved_1']:.0f}/"
            f"{r['moved_2']:.0f}/{r['moved_3_or_more']:.0f} ({r['moved_max']:.0f})"
            + ("  EXACT FALLBACK" if r["reader_exact_fallback"] else "")
        )
        if "reader_no_deblock_s" in r:
            print(f"  our reader, no loop filter     {r['reader_no_deblock_s']:8.2f} s")
        print(f"  ours: open -> memory ready     {r['ours_open_to_ready_s']:8.2f} s")
        if "ours_exact_open_to_ready_s" in r:
            print(f"  ours, exact frames             {r['ours_exact_open_to_ready_s']:8.2f} s")
        print(f"  load average before/after      {r['load_before']:.1f} / {r['load_after']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
