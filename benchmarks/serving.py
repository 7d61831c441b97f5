"""`python -m benchmarks.serving`: many streams, in-process vs through a real Triton server.

One run, the same preloaded demo frames for every contender: for 1, 2 and 4 concurrent streams in
one pspnet-rt process (runtime.streams: one shared backend, each stream lossless and in order),
throughput summed over the streams and p50/p99 per frame (submit -> class map), for

- in-process: the artefact on the runtime's own OpenVINO backend (throughput hint, as for files);
- Triton, the repository's Python variant (our OpenVINO backend inside Triton's stub processes),
  1 or 2 instances, dynamic batching off or on; the client is `--engine triton://`.

The Triton hop per frame is measured on its own, one frame at a time: the client's round trip
minus the server's own compute time for it (Triton's statistics), beside the in-process time of
the same frame. Output: OUT/serving.{json,md,png}. The server is nvidia-pytriton's tritonserver
(CPU, Python backend), started here on 127.0.0.1 and stopped by PID.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import clikit
from benchmarks.common import (
    BenchmarkError,
    LoadMonitor,
    environment,
    fmt,
    header_block,
    load_note,
    markdown_table,
    prepare_out,
    run_benchmark,
    summarize_ms,
    write_json,
    write_text,
)
from clikit import positive_int

PROG = "benchmarks.serving"


@dataclass(frozen=True)
class Contender:
    name: str
    model: str | None  # Triton model name; None = in-process
    instances: int = 0
    dynamic_batching: bool = False


CONTENDERS = (
    Contender("in-process", None),
    Contender("triton 1 instance", "t1", 1, False),
    Contender("triton 2 instances", "t2", 2, False),
    Contender("triton 1 instance + batching", "t1b", 1, True),
    Contender("triton 2 instances + batching", "t2b", 2, True),
)

EXAMPLES = """\
examples:
  python -m benchmarks.serving
      the INT8 OpenVINO demo artefact (built once, cached), 60 frames per stream, 1/2/4 streams
  flock -x /tmp/pspnet-cpu.lock python -m benchmarks.serving --out results/
      what the figures in docs/serving.md come from (nobody else on the CPU)
  python -m benchmarks.serving --engine m.json --frames 30 --streams 1,4
"""


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__.split("\n")[0], EXAMPLES)
    p.add_argument("--engine", metavar="ARTEFACT.json", type=clikit.input_file("an artefact manifest"),
                   help="an OpenVINO or ONNX Runtime artefact (default: demo INT8 OpenVINO, built once)")
    p.add_argument("--frames", type=positive_int, default=30, help="frames per stream and round (default 30)")
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="rounds over every contender (default 3; FPS is their median)")
    p.add_argument("--streams", default="1,2,4", type=_stream_counts,
                   help="concurrent stream counts (default 1,2,4)")
    p.add_argument("--hop-frames", type=positive_int, default=40,
                   help="frames timed one at a time for the Triton hop (default 40)")
    p.add_argument("--client-requests", type=positive_int, default=None,
                   help="Triton client requests in flight (default: the client backend's)")
    p.add_argument("--out", default="results", type=clikit.output_dir(),
                   help="folder for serving.{json,md,png}")
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(PROG, build_parser(), run, _failures, argv)


def _failures(result: dict[str, Any]) -> str | None:
    failed = sorted({r["contender"] for r in result["runs"] if r.get("status") != "ok"})
    return f"these runs failed: {', '.join(failed)} (see the status column)" if failed else None


@clikit.option_type("stream counts such as 1,2,4", good="1,2,4", bad=("", "0", "a,b", "1,-2"))
def _stream_counts(text: str) -> str:
    """--streams checked while parsing (the value stays text: run() reads it with stream_counts)."""
    try:
        stream_counts(text)
    except BenchmarkError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def stream_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise BenchmarkError(f"--streams {text!r}: give counts such as 1,2,4")
    return counts


# ------------------------------------------------------------------------------ the streams
class _Preloaded:
    """A file-like (lossless) source of frames already in memory: what the streams replay."""

    live = False
    fps = 25.0
    frame_size = None
    end_reason = None
    reconnects = 0

    def __init__(self, frames: list[np.ndarray]) -> None:
        from collections import Counter

        self._frames = frames
        self.drops: Counter[str] = Counter()

    def describe(self) -> str:
        return f"{len(self._frames)} preloaded demo frames"

    def frames(self, stop: threading.Event | None = None) -> Any:
        from runtime.sources import Frame

        for i, image in enumerate(self._frames):
            if stop is not None and stop.is_set():
                return
            yield Frame(i, image, time.perf_counter(), 0.0)


def run_streams(backend: Any, frames: list[np.ndarray], n_streams: int) -> dict[str, Any]:
    """N streams of the same frames through runtime.streams' shared inference, no sinks."""
    from runtime.pipeline import Outputs, SharedInference
    from runtime.streams import merge_stats

    stop = threading.Event()
    shared = SharedInference(backend, stop)
    for i in range(n_streams):
        shared.add(_Preloaded(frames), Outputs(), None, str(i))
    t0 = time.perf_counter()
    shared.start()
    shared.wait()
    wall = time.perf_counter() - t0
    if shared.errors or any(p.errors for p in shared.pipes):
        stage, exc = (shared.errors or [e for p in shared.pipes for e in p.errors])[0]
        return {"status": f"failed: {stage}: {type(exc).__name__}: {exc}"}
    total = merge_stats([p.stats for p in shared.pipes])
    return {"status": "ok", "frames": total.frames, "wall_s": round(wall, 3),
            "fps": round(total.frames / wall, 3), "per_frame": list(total.stages["inference"].values),
            "end_to_end": list(total.stages["end-to-end"].values),
            "per_stream_fps": [round(p.stats.fps, 3) for p in shared.pipes]}


def combine_rounds(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from its rounds: median FPS (the spread beside it), percentiles over every frame."""
    failed = [p for p in parts if p["status"] != "ok"]
    if failed:
        return {"status": failed[0]["status"]}
    fps = [p["fps"] for p in parts]
    return {"status": "ok", "frames": sum(p["frames"] for p in parts), "fps": round(float(np.median(fps)), 3),
            "fps_rounds": fps,
            "per_frame_ms": summarize_ms([v for p in parts for v in p["per_frame"]]),
            "end_to_end_ms": summarize_ms([v for p in parts for v in p["end_to_end"]])}


# ------------------------------------------------------------------------------ the hop
def _server_compute_ns(client: Any, model: str) -> tuple[int, int, int]:
    """(successful inferences, compute_infer ns, queue ns) from Triton's statistics."""
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]["inference_stats"]
    return (int(stats["success"].get("count", 0)), int(stats["compute_infer"].get("ns", 0)),
            int(stats["queue"].get("ns", 0)))


def measure_hop(manifest: Path, engine: str, model: str, frames: list[np.ndarray]) -> dict[str, Any]:
    """One frame at a time: in-process infer() vs the Triton round trip, and the server's share."""
    from runtime.backends import connect_backend, load_backend

    local_ms, remote_ms = [], []
    with load_backend(manifest, hint="latency") as local, connect_backend(engine, timeout=60) as remote:
        for f in frames[:3]:
            local.infer(f)
            remote.infer(f)
        client = remote._client
        n0, compute0, queue0 = _server_compute_ns(client, model)
        for f in frames:  # interleaved, so both see the same machine load
            t0 = time.perf_counter()
            local.infer(f)
            t1 = time.perf_counter()
            remote.infer(f)
            t2 = time.perf_counter()
            local_ms.append((t1 - t0) * 1e3)
            remote_ms.append((t2 - t1) * 1e3)
        n1, compute1, queue1 = _server_compute_ns(client, model)
    count = max(1, n1 - n0)
    server_ms = (compute1 - compute0) / count / 1e6
    queue_ms = (queue1 - queue0) / count / 1e6
    round_trip = summarize_ms(remote_ms)
    return {"frames": len(frames), "in_process_ms": summarize_ms(local_ms),
            "triton_round_trip_ms": round_trip,
            "server_compute_ms": round(server_ms, 3), "server_queue_ms": round(queue_ms, 3),
            "hop_ms": round(round_trip["mean"] - server_ms, 3),
            "hop_vs_in_process_ms": round(round_trip["mean"] - summarize_ms(local_ms)["mean"], 3)}


# ------------------------------------------------------------------------------ the run
def _artefact(args: argparse.Namespace) -> Path:
    if args.engine:
        return Path(args.engine)
    print("artefact demo int8 openvino: building or finding in the cache ...", file=sys.stderr, flush=True)
    from build_engine.api import build_artefact

    return build_artefact("demo", "int8", "openvino")


def _frames(manifest: Any, n: int) -> list[np.ndarray]:
    from runtime.sources import SourceOptions, parse_source
    from segdata.frames import to_model_input

    h, w = manifest.input_size
    with parse_source("demo", SourceOptions(demo_frames=n, demo_size=(h, w))) as source:
        return [to_model_input(f.image, h, w) for f in source.frames()]


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from tqdm import tqdm

    from artefact.manifest import ArtefactError, load_manifest
    from build_engine.triton_repo import RepoOptions, write_repository
    from runtime.backends import connect_backend, load_backend
    from serving.triton_server import ServerError, TritonServer

    counts = stream_counts(args.streams)
    out = prepare_out(args.out)
    try:
        manifest_path = _artefact(args)
        manifest = load_manifest(manifest_path)
    except ArtefactError as exc:
        raise BenchmarkError(str(exc)) from None
    if manifest.backend == "tensorrt":
        raise BenchmarkError("this benchmark serves OpenVINO/ONNX Runtime artefacts on the CPU Triton")
    frames = _frames(manifest, max(args.frames, args.hop_frames))
    env = environment()
    work = Path(tempfile.mkdtemp(prefix=".serving-", dir=out))
    runs: list[dict[str, Any]] = []
    try:
        repo = work / "models"
        for c in CONTENDERS:
            if c.model:
                write_repository(manifest_path, repo, RepoOptions(name=c.model, variant="python",
                                                                  instances=c.instances,
                                                                  dynamic_batching=c.dynamic_batching))
        try:
            server = TritonServer(repo, log_file=work / "server.log").start(timeout=180)
        except ServerError as exc:
            raise BenchmarkError(f"the Triton server did not start: {exc}") from None
        with server, LoadMonitor() as monitor:
            hop = measure_hop(manifest_path, server.engine("t1"), "t1", frames[: args.hop_frames])
            backends: dict[str, Any] = {}
            try:
                for c in CONTENDERS:
                    if c.model:
                        backends[c.name] = connect_backend(server.engine(c.model), timeout=60,
                                                           requests=args.client_requests)
                    else:
                        backends[c.name] = load_backend(manifest_path, hint="throughput")
                    for f in frames[:4]:  # warm: first requests compile/allocate
                        backends[c.name].infer(f)
                # rounds, each contender once per stream count per round, who goes first rotating:
                # a neighbour's load that comes and goes lands on every contender alike
                plan = [(rnd, n, CONTENDERS[(k + rnd + j) % len(CONTENDERS)])
                        for rnd in range(args.rounds) for j, n in enumerate(counts)
                        for k in range(len(CONTENDERS))]
                parts: dict[tuple[int, str], list[dict[str, Any]]] = {}
                for _, n, c in tqdm(plan, desc="serving", unit="run", disable=None):
                    parts.setdefault((n, c.name), []).append(
                        run_streams(backends[c.name], frames[: args.frames], n))
                for n in counts:
                    for c in CONTENDERS:
                        r = combine_rounds(parts[(n, c.name)])
                        r.update(contender=c.name, streams=n, instances=c.instances,
                                 dynamic_batching=c.dynamic_batching,
                                 in_flight=backends[c.name].max_in_flight)
                        runs.append(r)
            finally:
                for backend in backends.values():
                    backend.close()
        env["load_during_run"] = monitor.summary()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"command": command, "environment": env, "artefact": str(manifest_path),
              "precision": manifest.precision, "backend": manifest.backend,
              "input_size": manifest.input_size, "frames_per_stream": args.frames, "rounds": args.rounds,
              "stream_counts": counts, "hop": hop, "runs": runs,
              "server": "tritonserver 2.51 from nvidia-pytriton 0.7.0 (CPU, Python backend), 127.0.0.1"}
    result["best"] = best_configs(runs)
    write_json(out / "serving.json", result)
    write_text(out / "serving.md", markdown(result))
    figure(result, out / "serving.png")
    print(markdown(result))
    return result


def best_configs(runs: list[dict[str, Any]]) -> dict[str, str]:
    """The Triton configuration with the most FPS at each stream count (what the defaults follow)."""
    best = {}
    for n, group in itertools.groupby(sorted(runs, key=lambda r: r["streams"]), key=lambda r: r["streams"]):
        triton = [r for r in group if r["contender"] != "in-process" and r.get("status") == "ok"]
        if triton:
            best[str(n)] = max(triton, key=lambda r: r["fps"])["contender"]
    return best


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    hop = result["hop"]
    lines = [header_block("Serving: many streams, in-process vs Triton", env, result["command"]), "",
             f"- artefact: `{Path(result['artefact']).name}` ({result['backend']} {result['precision']}, "
             f"{result['input_size'][0]}x{result['input_size'][1]}), the same {result['frames_per_stream']} "
             f"demo frames per stream for every row, {result['rounds']} rounds with the order rotating",
             f"- server: {result['server']}; Triton rows run the repository's Python variant (pspnet-rt's "
             "OpenVINO backend inside Triton); streams share one backend in one pspnet-rt process",
             "- per frame = submit to class map (queueing included); FPS = frames of all streams / wall time",
             ""]
    rows = []
    for r in result["runs"]:
        pf = r.get("per_frame_ms") or {}
        spread = r.get("fps_rounds") or []
        rows.append([r["contender"], r["streams"], r.get("in_flight", ""), fmt(r.get("fps"), ".1f"),
                     f"{min(spread):.1f}–{max(spread):.1f}" if spread else "–",
                     fmt(pf.get("p50")), fmt(pf.get("p99")), r.get("status")])
    header = ["contender", "streams", "in flight", "FPS (sum, median)", "rounds' FPS", "p50 ms", "p99 ms",
              "status"]
    lines.append(markdown_table(header, rows, align="lrrrrrrl"))
    lines += ["", "**The Triton hop**, one frame at a time (1 instance, latency hint; "
              f"{hop['frames']} frames, interleaved with in-process):", "",
              markdown_table(["in-process infer", "Triton round trip", "server compute (execute)",
                              "hop = round trip - server compute", "round trip - in-process"],
                             [[f"{fmt(hop['in_process_ms']['mean'])} ms",
                               f"{fmt(hop['triton_round_trip_ms']['mean'])} ms",
                               f"{fmt(hop['server_compute_ms'])} ms", f"{fmt(hop['hop_ms'])} ms",
                               f"{fmt(hop['hop_vs_in_process_ms'])} ms"]]),
              "", "Server compute is Triton's compute_infer for the model: the Python model's execute(), "
              "i.e. OpenVINO plus the tensors' trip between the server and its stub process; the hop is "
              "gRPC, serialisation and Triton's scheduling.", ""]
    if result.get("best"):
        lines.append("Fastest Triton configuration per stream count: " +
                     ", ".join(f"{n} stream(s): {c}" for n, c in result["best"].items()))
    note = load_note(env.get("load_during_run"))
    if note:
        lines.append(f"\n**{note}**")
    return "\n".join(lines) + "\n"


def figure(result: dict[str, Any], path: Path) -> Path:
    from benchmarks.plots import _pyplot

    plt = _pyplot()
    ok = [r for r in result["runs"] if r.get("status") == "ok"]
    names = [c.name for c in CONTENDERS if any(r["contender"] == c.name for r in ok)]
    counts = result["stream_counts"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        mine = {r["streams"]: r for r in ok if r["contender"] == name}
        xs = [i + j * width for i in range(len(counts))]
        axes[0].bar(xs, [mine[n]["fps"] if n in mine else 0 for n in counts], width, label=name)
        p50 = [mine[n]["per_frame_ms"]["p50"] if n in mine else 0 for n in counts]
        p99 = [mine[n]["per_frame_ms"]["p99"] if n in mine else 0 for n in counts]
        axes[1].bar(xs, p50, width, label=name)
        axes[1].scatter(xs, p99, marker="_", s=120, color="black", zorder=3)
    for ax, title in zip(axes, ("throughput, FPS summed over streams", "per frame ms: bars p50, marks p99")):
        ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(counts))])
        ax.set_xticklabels([f"{n} stream{'s' if n > 1 else ''}" for n in counts])
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    hop = result["hop"]
    fig.suptitle(f"{Path(result['artefact']).name}: Triton hop {hop['hop_ms']:.1f} ms/frame beside "
                 f"{hop['server_compute_ms']:.1f} ms inference", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
