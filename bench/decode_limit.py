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
and ours ÷ each, in wall seconds and in CPU seconds (this process's threads and its finished
children: on a shared machine the CPU ratios hold while wall times follow the other jobs).
``python -m bench.decode_limit FILM [--fragments N] [--threads N]``; the
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


def cpu_s() -> float:
    """CPU seconds of this process (all threads) and its finished children (ffmpeg, ffprobe):
    much less sensitive than wall time to the other jobs of a shared machine."""
    import resource

    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


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
    start, cpu = time.perf_counter(), cpu_s()
    reader = ReferenceFrameReader(
        path, frame_starts(info), 224, threads, info.rotation, skip_loop_filter=skip_loop_filter
    )
    for indices in fragments:
        reader.decode_array(indices)
    seconds, cpu = time.perf_counter() - start, cpu_s() - cpu
    fallback = float(reader.exact)
    reader.close()
    return {
        "reader_s": seconds,
        "reader_cpu_s": cpu,
        "reader_exact_fallback": fallback,
        **moved(reader.moves),
    }


def moved(moves: list[int]) -> dict[str, float]:
    """The distribution of |chosen - planned| in frames."""
    sizes = [abs(m) for m in moves]
    out = {f"moved_{k}": float(sum(1 for m in sizes if m == k)) for k in (0, 1, 2)}
    out["moved_3_or_more"] = float(sum(1 for m in sizes if m >= 3))
    out["moved_max"] = float(max(sizes, default=0))
    return out


def ours_s(
    path: Path, fragments: int | None, model_dir: Path, exact: bool = False
) -> tuple[float, float]:
    """(wall, CPU) seconds from ``open`` to the memory ready."""
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
    start, cpu = time.perf_counter(), cpu_s()
    assistant.open(path)
    assistant.encode()
    ready, cpu = time.perf_counter() - start, cpu_s() - cpu
    assistant.close()
    return ready, cpu


def measure(
    path: Path,
    fragments: int | None,
    threads: int,
    model_dir: Path,
    *,
    exact: bool = False,
    skip_loop_filter: bool = False,
    decord_row: bool = True,
) -> dict:
    plan = plan_indices(path, fragments)
    flat = [i for f in plan for i in f]
    out: dict[str, float] = {"plan_frames": float(len(flat))}
    out["load_before"] = os.getloadavg()[0]
    cpu = cpu_s()
    out["full_decode_s"] = full_decode_s(path, threads)
    out["full_decode_cpu_s"], cpu = cpu_s() - cpu, cpu_s()
    out.update(decode_limit(path, flat, threads))
    out["limit_cpu_s"], cpu = cpu_s() - cpu, cpu_s()
    if decord_row:
        out["bare_decord_s"] = bare_decord_s(path, plan, threads)
        out["bare_decord_cpu_s"] = cpu_s() - cpu
    out.update(our_reader(path, plan, threads))
    if skip_loop_filter:  # the same reader without the deblocking filter (not the app's)
        row = our_reader(path, plan, threads, True)
        out["reader_no_deblock_s"], out["reader_no_deblock_cpu_s"] = (
            row["reader_s"],
            row["reader_cpu_s"],
        )
    out["ours_open_to_ready_s"], out["ours_open_to_ready_cpu_s"] = ours_s(
        path, fragments, model_dir
    )
    if exact:
        wall, used = ours_s(path, fragments, model_dir, exact=True)
        out["ours_exact_open_to_ready_s"], out["ours_exact_open_to_ready_cpu_s"] = wall, used
    out["load_after"] = os.getloadavg()[0]
    for row in ("full_decode", "limit", "bare_decord")[: 3 if decord_row else 2]:
        for kind in ("_s", "_cpu_s"):
            ours, reader = out["ours_open_to_ready" + kind], out["reader" + kind]
            out[f"ours_over_{row}{kind[:-2]}"] = ours / out[row + kind]
            out[f"reader_over_{row}{kind[:-2]}"] = reader / out[row + kind]
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
    p.add_argument("--no-decord", action="store_true", help="skip the bare decord row")
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
            decord_row=not args.no_decord,
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for film, r in results.items():
        print(
            f"{Path(film).name}: {r['film_frames']:.0f} frames, {r['film_keyframes']:.0f} "
            f"keyframes; plan {r['plan_frames']:.0f} frames in {r['limit_gops']:.0f} GOPs; "
            f"load average {r['load_before']:.1f} -> {r['load_after']:.1f}"
        )
        print(f"  {'row':34} {'wall s':>8} {'CPU s':>8} {'ours/it wall':>13} {'ours/it CPU':>12}")
        rows = [
            ("full sequential decode (ffmpeg)", "full_decode"),
            ("decode limit for the plan", "limit"),
            ("bare decord, plan's frames", "bare_decord"),
        ]
        for label, key in rows:
            if f"{key}_s" in r:
                print(
                    f"  {label:34} {r[key + '_s']:8.2f} {r[key + '_cpu_s']:8.2f} "
                    f"{r['ours_over_' + key]:13.2f} {r['ours_over_' + key + '_cpu']:12.2f}"
                )
        for label, key in (
            ("our reader alone", "reader"),
            ("our reader, no loop filter", "reader_no_deblock"),
            ("ours: open -> memory ready", "ours_open_to_ready"),
            ("ours, exact frames", "ours_exact_open_to_ready"),
        ):
            if f"{key}_s" in r:
                print(f"  {label:34} {r[key + '_s']:8.2f} {r[key + '_cpu_s']:8.2f}")
        print(
            f"  frames moved 0/1/2/3+ (max): {r['moved_0']:.0f}/{r['moved_1']:.0f}/"
            f"{r['moved_2']:.0f}/{r['moved_3_or_more']:.0f} ({r['moved_max']:.0f})"
            + ("  EXACT FALLBACK" if r["reader_exact_fallback"] else "")
            + f"; limit decoded {r['limit_frames_decoded']:.0f} frames"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
