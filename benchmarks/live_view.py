"""`python -m benchmarks.live_view`: does watching the live view slow the pipeline?

One `pspnet-rt --video demo --loop --serve` process per artefact; the benchmark alternates,
in one run, phases with no viewer, with N viewers that read the MJPEG stream and the SSE
figures as fast as the server sends them, and with N viewers that connect and never read (a
stalled browser tab). Pipeline FPS per phase comes from pspnet-rt's own per-frame stats
(timestamps inside the phase, after a settle time); CPU per frame of the pspnet-rt process is
measured beside it, because on a shared machine it stays put while FPS follows the
neighbours. Target: FPS with 3 viewers >= 0.9 x FPS with none.

The viewers run in this process's threads at nice 19 (no JPEG decoding, kernel socket copies
only), so on these shared cores they take what pspnet-rt leaves; real viewers sit on other
machines. The frame rate each viewer received is reported, so a starved viewer would show.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import clikit
from benchmarks.common import (
    BenchmarkError,
    LoadMonitor,
    environment,
    fmt,
    header_block,
    markdown_table,
    prepare_out,
    run_benchmark,
    save_figure,
    text_table,
    write_json,
    write_text,
)
from benchmarks.probe import child_env
from clikit import positive_int

log = logging.getLogger("benchmarks")
PROG = "benchmarks.live_view"
TARGET_RATIO = 0.9
CONDITIONS = ("none", "viewers", "stalled")
BOUNDARY = b"--pspnet-rt-frame"

EXAMPLES = """\
examples:
  python -m benchmarks.live_view --out results/
      the demo model, OpenVINO INT8 and FP32 at 240x480 (built once, cached), 3 viewers
  python -m benchmarks.live_view --engine a.json --phase-seconds 20 --rounds 4 --viewers 5
exit codes: 0 ok, 1 a run failed, 2 bad arguments
"""


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__, EXAMPLES)
    p.add_argument("--engine", nargs="+", metavar="ARTEFACT", type=clikit.input_path("an artefact manifest"),
                   help="artefact manifests (default: demo OpenVINO int8 and fp32, built once)")
    p.add_argument("--viewers", type=positive_int, default=3, help="viewers per phase (default 3)")
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="rounds of none/viewers/stalled (default 3)")
    p.add_argument("--phase-seconds", type=clikit.float_in(high=3600, what="seconds", above=0), default=10.0,
                   help="length of each phase (default 10)")
    p.add_argument("--settle-seconds", type=clikit.float_in(0, 3600, "seconds"), default=1.5,
                   help="left out at each phase start")
    p.add_argument("--out", type=clikit.output_dir(), default="results",
                   help="DIR for live_view.{json,md,png}")
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(PROG, build_parser(), run, _failures, argv)


def _failures(result: dict[str, Any]) -> str | None:
    failed = [r["engine"] for r in result["runs"] if r["status"] != "ok"]
    return f"failed: {', '.join(failed)}" if failed else None


# ------------------------------------------------------------------------------------ viewers
class Viewer:
    """Reads /stream.mjpg and /events like a browser tab, counting frames; or stalls."""

    def __init__(self, port: int, stalled: bool) -> None:
        self.port, self.stalled = port, stalled
        self.frames = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._read, args=(path,), daemon=True)
                         for path in ("/stream.mjpg", "/events")]

    def start(self) -> Viewer:
        for t in self._threads:
            t.start()
        return self

    def _read(self, path: str) -> None:
        # Real viewers sit on other machines: this thread (Linux nice values are per thread) yields
        # the cores to pspnet-rt, so the figure measures the server's work, not the simulator's.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, 0, 19)
        sock = socket.socket()
        if self.stalled:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._socks.append(sock)
        try:
            sock.settimeout(5)
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            if self.stalled:
                self._stop.wait()
                return
            tail = b""
            while not self._stop.is_set():
                chunk = sock.recv(1 << 16)
                if not chunk:
                    return
                self.bytes += len(chunk)
                if path == "/stream.mjpg":
                    data = tail + chunk
                    self.frames += data.count(BOUNDARY)
                    tail = data[-len(BOUNDARY):]
        except OSError:
            return

    def stop(self) -> None:
        self._stop.set()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(5)


# --------------------------------------------------------------------------------------- run
def default_engines() -> list[str]:
    from benchmarks.contenders import artefact_spec

    engines = []
    for precision in ("int8", "fp32"):
        spec = artefact_spec("demo", "openvino", precision, (240, 480))
        if not spec.manifest:
            raise BenchmarkError(f"cannot build the demo openvino {precision} artefact: {spec.status}")
        engines.append(spec.manifest)
    return engines


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    if args.phase_seconds <= args.settle_seconds + 1:
        raise BenchmarkError("--phase-seconds must exceed --settle-seconds by more than 1 s")
    args.out = prepare_out(args.out)  # before the timing, not after it
    engines = args.engine or default_engines()
    for e in engines:
        if not Path(e).is_file():
            raise BenchmarkError(f"--engine {e}: no such manifest; build one with python -m build_engine")
    env = environment()
    runs = []
    with LoadMonitor() as load:
        for engine in engines:
            print(f"{PROG}: {Path(engine).name} ...", file=sys.stderr, flush=True)
            runs.append(measure(engine, args))
    env["load_during_run"] = load.summary()
    result = {"command": command, "environment": env, "target_ratio": TARGET_RATIO,
              "config": {"viewers": args.viewers, "rounds": args.rounds, "phase_s": args.phase_seconds,
                         "settle_s": args.settle_seconds, "conditions": list(CONDITIONS),
                         "video": "demo --loop (240x480 synthetic street clip)"},
              "runs": runs}
    write_json(args.out / "live_view.json", result)
    write_text(args.out / "live_view.md", markdown_report(result))
    try:
        figure(result, args.out / "live_view.png")
    except ImportError:
        log.warning("matplotlib missing: no live_view.png")
    print(terminal_report(result), flush=True)
    return result


def measure(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    with tempfile.TemporaryDirectory(prefix="pspnet-live-bench-") as tmp:
        stats_path = Path(tmp) / "s.jsonl"
        cmd = [sys.executable, "-m", "runtime", "--video", "demo", "--loop", "--engine", engine,
               "--serve", "127.0.0.1:0", "--stats", str(stats_path)]
        proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        err: list[str] = []
        threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()
        shown = ["pspnet-rt", *cmd[3:]]
        try:
            port = _wait_port(proc, err)
            _wait_frames(proc, stats_path, 40, err)  # warm-up: every infer request ran
            info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10).read())
            ps = psutil.Process(proc.pid)
            phases = []
            for r in range(args.rounds):
                for condition in CONDITIONS:
                    phases.append(_phase(condition, r, port, ps, stats_path, args))
            live = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10).read())
        except BenchmarkError as exc:
            return {"engine": engine, "status": f"failed: {exc}", "command": shown}
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if proc.returncode != 143:
            return {"engine": engine, "status": f"failed: pspnet-rt exited {proc.returncode}: "
                                                f"{''.join(err)[-300:]}", "command": shown}
    backend = info.get("backend", {})
    by = {c: [p for p in phases if p["condition"] == c] for c in CONDITIONS}
    summary = {}
    for c in CONDITIONS:
        fps = [p["fps"] for p in by[c] if p["fps"]]
        cpu = [p["cpu_ms_per_frame"] for p in by[c] if p["cpu_ms_per_frame"]]
        summary[c] = {"fps_mean": round(statistics.fmean(fps), 3) if fps else None,
                      "cpu_ms_per_frame_mean": round(statistics.fmean(cpu), 2) if cpu else None}
    for c in ("viewers", "stalled"):
        # each round's ratio to the no-viewer phase just before it, then the mean
        ratios = [p["fps"] / n["fps"] for p, n in zip(by[c], by["none"]) if p["fps"] and n["fps"]]
        summary[c]["ratio_to_none"] = round(statistics.fmean(ratios), 3) if ratios else None
        summary[c]["ratios"] = [round(x, 3) for x in ratios]
    delivered = [p["viewer_fps"] for p in by["viewers"] if p["viewer_fps"] is not None]
    return {"engine": engine, "name": Path(engine).stem, "status": "ok", "command": shown,
            "precision": backend.get("precision"), "precision_ran": backend.get("precision_ran"),
            "in_flight": backend.get("in_flight"), "frame_size": info.get("frame_size"),
            "jpeg": live.get("jpeg"), "phases": phases, "summary": summary,
            "viewer_fps_mean": round(statistics.fmean(delivered), 2) if delivered else None,
            "meets_target": (summary["viewers"]["ratio_to_none"] or 0) >= TARGET_RATIO}


def _wait_port(proc: subprocess.Popen, err: list[str], timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for line in list(err) if (m := re.search(r"live view http://127\.0\.0\.1:(\d+)/", line))]
        if found:
            return int(found[0].group(1))
        if proc.poll() is not None:
            raise BenchmarkError(f"pspnet-rt exited {proc.returncode}: {''.join(err)[-300:]}")
        time.sleep(0.1)
    raise BenchmarkError("pspnet-rt did not start its live view in time")


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # the line being written
            out.append(json.loads(line))
    return out


def _wait_frames(proc: subprocess.Popen, path: Path, n: int, err: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while len(_records(path)) < n:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BenchmarkError(f"no frames from pspnet-rt: {''.join(err)[-300:]}")
        time.sleep(0.2)


def _phase(condition: str, round_no: int, port: int, ps: Any, stats_path: Path,
           args: argparse.Namespace) -> dict[str, Any]:
    viewers = ([Viewer(port, stalled=condition == "stalled").start() for _ in range(args.viewers)]
               if condition != "none" else [])
    time.sleep(args.settle_seconds)
    t0, cpu0 = time.time(), sum(ps.cpu_times()[:2])
    frames0 = sum(v.frames for v in viewers)
    time.sleep(args.phase_seconds - args.settle_seconds)
    t1, cpu1 = time.time(), sum(ps.cpu_times()[:2])
    frames1 = sum(v.frames for v in viewers)
    for v in viewers:
        v.stop()
    stamps = [r["time"] for r in _records(stats_path) if t0 <= r.get("time", 0) <= t1]
    steady = len(stamps) >= 3 and stamps[-1] > stamps[0]
    fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if steady else None
    n = len(stamps)
    phase = {"condition": condition, "round": round_no, "frames": n, "seconds": round(t1 - t0, 2),
             "fps": round(fps, 3) if fps else None,
             "cpu_ms_per_frame": round((cpu1 - cpu0) / n * 1e3, 2) if n else None,
             "viewer_fps": (round((frames1 - frames0) / len(viewers) / (t1 - t0), 2)
                            if viewers and condition == "viewers" else None)}
    log.info("%s", phase)
    time.sleep(0.5)  # the server notices the closed viewers before the next phase
    return phase


# ------------------------------------------------------------------------------ reporting
LABELS = {"none": "no viewer", "viewers": "{n} viewers reading", "stalled": "{n} stalled viewers"}


def _rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    n = result["config"]["viewers"]
    for r in result["runs"]:
        if r["status"] != "ok":
            rows.append([r["engine"], "FAILED", "", "", "", ""])
            continue
        for c in CONDITIONS:
            s = r["summary"][c]
            ratio = s.get("ratio_to_none")
            rows.append([f"{r['name']} (ran {r['precision_ran']})", LABELS[c].format(n=n),
                         fmt(s["fps_mean"], ".2f"),
                         "1.00" if c == "none" else fmt(ratio, ".3f"), fmt(s["cpu_ms_per_frame_mean"], ".1f"),
                         fmt(r["viewer_fps_mean"], ".1f") if c == "viewers" else ""])
    return rows


HEADER = ["artefact", "phase", "pipeline FPS", "x no viewer", "CPU ms/frame", "FPS each viewer got"]


def terminal_report(result: dict[str, Any]) -> str:
    lines = [text_table(HEADER, _rows(result))]
    for r in result["runs"]:
        if r["status"] == "ok":
            ratio = r["summary"]["viewers"]["ratio_to_none"]
            verdict = "met" if r["meets_target"] else "NOT met"
            lines.append(f"{r['name']}: {result['config']['viewers']} viewers -> {fmt(ratio, '.3f')} x the "
                         f"FPS with none (target >= {TARGET_RATIO}): {verdict}")
    return "\n".join(lines)


def markdown_report(result: dict[str, Any]) -> str:
    cfg = result["config"]
    parts = [header_block("Live view: pipeline FPS with viewers attached", result["environment"],
                          result["command"]), "",
             f"`pspnet-rt --video demo --loop --serve 127.0.0.1:0 --stats ...` per artefact; phases of "
             f"{cfg['phase_s']:g} s (first {cfg['settle_s']:g} s left out) in the order "
             f"{' / '.join(cfg['conditions'])}, {cfg['rounds']} rounds, all in one run. A reading viewer "
             "takes /stream.mjpg and /events as fast as they come; a stalled one connects and never "
             "reads. 'x no viewer' is the mean over rounds of each phase's FPS over the no-viewer phase "
             f"just before it; target >= {TARGET_RATIO}.", "",
             markdown_table(HEADER, _rows(result)), ""]
    for r in result["runs"]:
        if r["status"] != "ok":
            parts += [f"- {r['engine']}: {r['status']}"]
            continue
        jpeg = r.get("jpeg") or {}
        parts.append(f"- {r['name']}: precision ran {r['precision_ran']}, {r['in_flight']} in flight, "
                     f"frames {r['frame_size'][0]}x{r['frame_size'][1]}; JPEG q{jpeg.get('quality')} "
                     f"{fmt(jpeg.get('encode_ms_p50'), '.2f')} ms p50, {jpeg.get('bytes')} bytes; per-round "
                     f"ratios with viewers {r['summary']['viewers']['ratios']}, stalled "
                     f"{r['summary']['stalled']['ratios']}; target "
                     f"{'met' if r['meets_target'] else 'NOT met'}")
    return "\n".join(parts) + "\n"


def figure(result: dict[str, Any], path: Path) -> Path:
    from benchmarks.plots import _pyplot

    plt = _pyplot()
    runs = [r for r in result["runs"] if r["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(CONDITIONS)
    colours = {"none": "#8da0cb", "viewers": "#66c2a5", "stalled": "#fc8d62"}
    n = result["config"]["viewers"]
    for i, c in enumerate(CONDITIONS):
        xs = [j + (i - 1) * width for j in range(len(runs))]
        ys = [r["summary"][c]["fps_mean"] or 0 for r in runs]
        bars = ax.bar(xs, ys, width, label=LABELS[c].format(n=n), color=colours[c])
        for bar, r in zip(bars, runs):
            ratio = r["summary"][c].get("ratio_to_none")
            if ratio:
                ax.annotate(f"x{ratio:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(runs)), [f"{r['name']}\n(ran {r['precision_ran']})" for r in runs], fontsize=8)
    ax.set_ylabel("pipeline FPS")
    ax.set_title(f"pspnet-rt --serve: FPS with viewers vs none (target x{TARGET_RATIO})", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
