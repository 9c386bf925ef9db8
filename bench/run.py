"""MovieChat Desktop benchmark: ``python -m bench.run [options]`` (or ``python bench/run.py``).

Measures on the machine at hand and prints one table; the full record (machine, libraries,
model, plan, every number) goes to ``bench/results/<timestamp>-<device>.json`` or ``--json``.
``bench/README.md`` says what each number means. Examples::

    python -m bench.run --model-dir tests/data/reference            # tiny model, CPU
    python -m bench.run --model-dir tests/data/reference --long-film  # + the 2-hour film
    python -m bench.run                # the installed real model (needs CUDA and the weights)
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import decord  # noqa: F401  (before anything imports Qt: ENVIRONMENT.md, "decord before Qt")

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import decode_bench, engine_bench, films, report, system
from bench.userdirs import BenchDirs
from moviechat_desktop.engine.errors import MovieChatError
from moviechat_desktop.engine.model.llm import GenerationSettings
from moviechat_desktop.engine.settings import AppSettings, load_settings

log = logging.getLogger("bench")

SCHEMA = 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--video", action="append", default=[], metavar="PATH", help="repeatable")
    p.add_argument("--long-film", action="store_true", help="add the generated 2-hour film")
    p.add_argument("--model-dir", help="reference-layout model dir (tests/data/reference: tiny)")
    p.add_argument("--quick", action="store_true", help="one film, one repetition")
    p.add_argument("--json", type=Path, metavar="PATH", help="where to write the JSON record")
    p.add_argument("--repeats", type=int, help="repetitions of decode and questions (3; quick 1)")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N", help="(default 64)")
    p.add_argument("--frame-size", type=int, default=224, help="decode benchmark size (224)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--precision", default="auto", help="auto|fp16|int8|int4|fp32|bf16")
    p.add_argument("--torch-threads", type=int, metavar="N", help="torch.set_num_threads(N)")
    p.add_argument("--no-ui", action="store_true", help="skip the GUI event-loop probe")
    p.add_argument(
        "--speech-small",
        action="store_true",
        help="also time speech recognition with a Whisper-small-sized model (builds ~250 MB once)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.torch_threads is not None and args.torch_threads < 1:
        p.error("--torch-threads must be at least 1")
    if args.max_new_tokens < 2:
        p.error("--max-new-tokens must be at least 2")
    return args


def bench_settings(args: argparse.Namespace) -> AppSettings:
    """The shipped defaults (never the user's settings.toml), with the options applied."""
    settings = load_settings(Path(os.devnull))
    settings.model.model_dir = str(Path(args.model_dir).resolve()) if args.model_dir else ""
    settings.model.device = args.device
    settings.model.precision = args.precision
    return settings


def model_skip_reason(args: argparse.Namespace) -> str | None:
    """Why the model phases cannot run here (None: they can)."""
    import torch

    if args.model_dir or args.device == "cpu" or torch.cuda.is_available():
        return None
    return (
        "no CUDA GPU: the real model is measured on CUDA only (on a CPU it needs ~33 GB of RAM, "
        "~20 GB with a bf16 decoder, and hours per film; force it with --device cpu; "
        "bench/full_size.py rehearses it). For the engine numbers with "
        "the tiny model use --model-dir tests/data/reference."
    )


def measure_startup(
    settings: AppSettings, film: Path | None = None
) -> tuple[dict[str, float], str | None]:
    """``bench.startup_probe`` in a fresh process (torch not yet imported, as in the app),
    the engine in a child process as the app runs it; with ``film``, also the stalls while
    it is encoded and a question answered, and the time to quit while encoding."""
    command = [sys.executable, "-m", "bench.startup_probe", "--model-dir"]
    command += [settings.model.model_dir, "--device", settings.model.device]
    command += ["--precision", settings.model.precision, "--engine", "process"]
    if film is not None:  # a short plan: enough to see encoding's stalls and to quit mid-way
        command += ["--film", str(film), "--fragments", "32"]
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=1900)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError) as err:
        return {}, f"no result ({err})"
    if result.get("error"):
        return {}, result["error"]
    keys = ("startup_ready_s", "ui_max_stall_startup_ms", "ui_stalls_over_budget_startup")
    keys += ("ui_max_stall_encode_ms", "ui_stalls_over_budget_encode", "ui_max_stall_answer_ms")
    keys += ("ui_stalls_over_budget_answer", "quit_while_encoding_s")
    return {key: float(result[key]) for key in keys if key in result}, None


def describe_video(path: Path, info: Any) -> dict[str, Any]:
    return {
        "name": path.name,
        "path": str(path),
        "bytes": path.stat().st_size,
        "duration_s": round(info.duration_s, 3),
        "size": f"{info.width}x{info.height}",
        "fps": round(info.fps, 3),
        "frame_count": info.frame_count,
        "codec": info.codec,
    }


def measure_films(
    args: argparse.Namespace,
    settings: AppSettings,
    assistant: Any,
    *,
    generation: GenerationSettings,
    repeats: int,
    tracker: system.PeakTracker,
    errors: list[str],
) -> tuple[list[dict], list[str]]:
    """Decode numbers for every film, engine numbers too when ``assistant`` is loaded; what
    goes wrong with a film is appended to ``errors`` and the next film is measured."""
    from moviechat_desktop.engine.video.frames import plan_fragments, probe

    out, notes = [], []
    sampling = settings.sampling
    for path in films.choose_videos(args.video, args.long_film, args.quick):
        log.info("film %s", path.name)
        try:
            info = probe(path)
        except MovieChatError as err:
            errors.append(f"{path.name}: {err}")
            continue
        plan = plan_fragments(info, sampling.n_fragments, sampling.frames_per_fragment)
        film = {
            "video": describe_video(path, info),
            "plan": {
                "kind": plan.kind,
                "fragments": len(plan.fragments),
                "frames": plan.total_frames,
                "decode_size": args.frame_size,
            },
            "samples": {},
        }
        film["metrics"] = decode_bench.measure_decode(
            path, plan, args.frame_size, repeats, film["samples"]
        )
        if assistant is not None:
            try:
                with tracker.phase() as peaks:
                    metrics, film_notes = engine_bench.measure_film(
                        assistant, path, generation, repeats, film["samples"]
                    )
            except MovieChatError as err:
                errors.append(f"{path.name}: {type(err).__name__}: {err}")
            else:
                film["metrics"].update(metrics)
                film["metrics"].update(peaks)
                notes.extend(film_notes)
        out.append(film)
    return out, notes


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb" if os.environ.get("DISPLAY") else "offscreen")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    repeats = args.repeats or (1 if args.quick else 3)
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    settings = bench_settings(args)
    generation = GenerationSettings(greedy=True, max_new_tokens=args.max_new_tokens)
    machine = system.machine_info()  # the load average before the run
    tracker = system.PeakTracker()
    notes: list[str] = []
    errors: list[str] = []
    run_metrics: dict[str, float] = {}
    model_desc = assistant = None
    with BenchDirs() as dirs:
        skip = model_skip_reason(args)
        if skip is None:
            try:
                with tracker.phase() as peaks:
                    assistant, load_metrics, model_desc = engine_bench.load(settings)
            except MovieChatError as err:  # WeightsMissing, WeightsCorrupt, CheckpointMismatch
                skip = f"the model cannot be loaded: {err}"
            else:
                run_metrics.update(load_metrics)
                run_metrics["load_peak_rss_mb"] = peaks["rss_peak_mb"]
                if "cuda_peak_mb" in peaks:
                    run_metrics["load_peak_cuda_mb"] = peaks["cuda_peak_mb"]
        if skip is not None:
            notes.append(f"model phases skipped: {skip}")
            print(f"bench: {notes[-1]}", file=sys.stderr)
        films_out, film_notes = measure_films(
            args,
            settings,
            assistant,
            generation=generation,
            repeats=repeats,
            tracker=tracker,
            errors=errors,
        )
        notes.extend(film_notes)
        if assistant is not None and not args.no_ui and films_out:
            del assistant  # the UI run loads its own, in the worker thread, like the app
            gc.collect()
            system.release_cuda_cache()
            dirs.fresh()  # so the UI run encodes rather than reading the cache
            from bench import ui_bench

            # the longest film: the most seeking, the worst case for the GUI thread
            ui_video = max((f["video"] for f in films_out), key=lambda v: v["duration_s"])
            ui_film = Path(ui_video["path"])
            try:
                with tracker.phase() as peaks:
                    ui_metrics, ui_notes = ui_bench.measure_ui(
                        lambda: ui_bench.engine_process(settings), ui_film
                    )
            except RuntimeError as err:
                errors.append(f"UI probe: {err}")
            else:
                run_metrics.update(ui_metrics)
                run_metrics["ui_peak_rss_mb"] = peaks["rss_peak_mb"]
                notes.append(f"UI probe ran on {ui_film.name}")
                notes.extend(ui_notes)
    if not args.no_ui:
        from bench import chat_bench

        run_metrics.update(chat_bench.measure_chat())
        if model_desc is not None:
            probe_film = Path(films_out[0]["video"]["path"]) if films_out else None
            startup, problem = measure_startup(settings, probe_film)
            run_metrics.update(startup)
            if problem:
                errors.append(f"startup probe: {problem}")
            if probe_film is not None and not args.quick:  # fresh CLI processes (cli_startup)
                from bench.cli_startup import measure_cli_ask

                try:
                    figures = measure_cli_ask(probe_film, settings.model.model_dir, repeats)
                except RuntimeError as err:
                    errors.append(f"CLI start-up: {err}")
                else:
                    run_metrics.update(
                        {k: v for k, v in figures.items() if "load_av" not in k and " " not in k}
                    )
    from bench import dialogue_bench

    run_metrics.update(dialogue_bench.measure_prompt(repeats=max(5, repeats * 5)))
    real = dialogue_bench.real_tokenizer()
    if real is not None:
        run_metrics.update(dialogue_bench.measure_prompt(real, repeats, prefix="real_prompt_"))
    from bench import speech_bench

    run_metrics.update(speech_bench.measure_extraction(repeats))
    if args.quick and not args.speech_small:
        notes.append("speech recognition not timed (--quick); a full run or --speech-small does")
    else:
        speech_metrics, speech_notes = speech_bench.measure_speech(small=args.speech_small)
        run_metrics.update(speech_metrics)
        notes.extend(speech_notes)
    run_metrics.update(tracker.run)
    if model_desc is not None and model_desc["frame_tokens"] != [32, 768]:
        notes.append("tiny reference model: engine and answer numbers show the app's overhead")
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": ["python", "-m", "bench.run", *sys.argv[1:]],
        "machine": {**machine, "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "model": model_desc,
        "settings": {
            "plan": settings.sampling.plan,
            "n_fragments": settings.sampling.n_fragments,
            "frames_per_fragment": settings.sampling.frames_per_fragment,
            "decode_size": args.frame_size,
            "repeats": repeats,
            "greedy": generation.greedy,
            "max_new_tokens": generation.max_new_tokens,
            "questions": [engine_bench.GLOBAL_QUESTION, engine_bench.BREAKPOINT_QUESTION],
            "breakpoint_at": "middle of the film",
            "film_cache": engine_bench.cache_supported(),
        },
        "films": films_out,
        "run_metrics": run_metrics,
        "notes": notes,
        "errors": errors,
        "units": {m.key: m.unit for m in report.FILM_METRICS + report.RUN_METRICS},
    }


def header(result: dict[str, Any]) -> str:
    m, model, s = result["machine"], result["model"], result["settings"]
    what = "no model" if model is None else f"{model['device_label']}, {model['weights']}"
    load = f"load average {m['load_average'][0]:.1f} before, {m['load_average_after'][0]:.1f} after"
    return (
        f"MovieChat Desktop benchmark, {result['created']}, {m['cpu']} ({m['cores']} cores, "
        f"{load})\n"
        f"model: {what}\nplan: {s['plan']} {s['n_fragments']}x{s['frames_per_fragment']}, "
        f"decode benchmark at {s['decode_size']} px, {s['repeats']} repetition(s), greedy "
        f"answers of up to {s['max_new_tokens']} tokens, {m['torch_threads']} torch thread(s)\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    result = run(args)
    print(header(result))
    print(report.format_table(result))
    for note in result["notes"]:
        print(f"note: {note}")
    for error in result["errors"]:
        print(f"error: {error}")
    model = result["model"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    device = system.device_slug(result["machine"], model["device"] if model else "cpu")
    path = report.write_json(result, args.json, stamp, device)
    print(f"\nwritten: {path}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
