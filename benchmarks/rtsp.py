"""`python -m benchmarks.rtsp`: an RTSP camera against the same clip from a file, and the cost of
serving the segmented stream as RTSP, measured in one run.

In: a simulated IP camera (benchmarks.rtsp_camera: GStreamer's gst-rtsp-server on 127.0.0.1,
the demo street clip at the artefact's size, 25 fps, each frame's index burned into its corner)
is read by `pspnet-rt --video rtsp://...` for --seconds (60 by default). Glass-to-mask latency of
a frame = when pspnet-rt wrote its stats line (after its mask) minus when the camera handed that
frame to its server; the frame is known by the index read back from the left half of the
side-by-side video the run writes. Targets: latency does not creep (p99 of the last 10 s <= 1.2x
p99 of the first 10 s, the first 2 s of FFmpeg's opening burst left out) and its p50 is within
one frame interval of the end-to-end p50 of the same frames read from a file by the same
pipeline (--file-frames of them, every frame, as fast as it goes).

Out: the same file with --loop, in rounds: one pspnet-rt with --output clip.mp4 only, one with
--output clip.mp4 --output rtsp://127.0.0.1:0/seg, first with no RTSP client, then with
--clients RTSP clients (ffmpeg receiving the stream over TCP without decoding it: real clients
sit on other machines). Pipeline FPS per phase comes from the run's own per-frame stats after a settle time.
Target: FPS with the clients >= 0.9 x FPS without RTSP out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
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
    markdown_table,
    prepare_out,
    run_benchmark,
    text_table,
    write_json,
    write_text,
)
from benchmarks.probe import child_env

log = logging.getLogger("benchmarks")
PROG = "benchmarks.rtsp"
CREEP_RATIO = 1.2  # p99 of the last window over p99 of the first
OUT_COST = 0.10  # RTSP out with the clients may cost at most this share of pipeline FPS
WINDOW_S = 10.0
SETTLE_S = 2.0

EXAMPLES = """\
examples:
  python -m benchmarks.rtsp --out results/
      the demo model, OpenVINO INT8 at 240x480 (built once, cached): 60 s from the RTSP camera,
      600 frames from the file, 2 rounds of RTSP out with 0 and 3 clients
  python -m benchmarks.rtsp --engine a.json --seconds 30 --file-frames 300 --rounds 1
exit codes: 0 ok, 1 a run failed, 2 bad arguments
"""


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__, EXAMPLES)
    p.add_argument("--engine", metavar="ARTEFACT", type=clikit.input_path("an artefact manifest"),
                   help="artefact manifest (default: the demo OpenVINO INT8 artefact at 240x480, built once)")
    p.add_argument("--seconds", type=clikit.float_in(high=3600, what="seconds", above=0), default=60.0,
                   help="how long the RTSP camera is read (default 60)")
    p.add_argument("--camera-fps", type=clikit.float_in(high=120, what="a frame rate", above=0), default=25.0,
                   help="the camera's frame rate (default 25)")
    p.add_argument("--file-frames", type=clikit.positive_int, default=600,
                   help="frames of the same clip read from a file (default 600)")
    p.add_argument("--clients", type=clikit.positive_int, default=3,
                   help="RTSP clients of RTSP out (default 3)")
    p.add_argument("--rounds", type=clikit.positive_int, default=2,
                   help="rounds of the RTSP out phases (default 2)")
    p.add_argument("--phase-seconds", type=clikit.float_in(high=3600, what="seconds", above=0), default=20.0,
                   help="length of each RTSP out phase (default 20)")
    p.add_argument("--settle-seconds", type=clikit.float_in(0, 3600, "seconds"), default=3.0,
                   help="left out at each RTSP out phase's start (default 3)")
    p.add_argument("--out", type=clikit.output_dir(), default="results", help="DIR for rtsp.{json,md,png}")
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(PROG, build_parser(), run, _failures, argv)


def _failures(result: dict[str, Any]) -> str | None:
    failed = [f"{k}: {v['status']}" for k, v in result["parts"].items() if v["status"] != "ok"]
    return "; ".join(failed) or None


def default_engine() -> str:
    from benchmarks.contenders import artefact_spec

    spec = artefact_spec("demo", "openvino", "int8", (240, 480))
    if not spec.manifest:
        raise BenchmarkError(f"cannot build the demo openvino int8 artefact: {spec.status}")
    return spec.manifest


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from runtime.rtsp_server import RtspUnavailable, gst_python

    if args.phase_seconds <= args.settle_seconds + 1:
        raise BenchmarkError("--phase-seconds must exceed --settle-seconds by more than 1 s")
    if args.seconds <= 2 * WINDOW_S + SETTLE_S:
        raise BenchmarkError(f"--seconds must exceed {2 * WINDOW_S + SETTLE_S:g} (two {WINDOW_S:g} s windows "
                             "after the settle time)")
    try:
        gst_python()
    except RtspUnavailable as exc:
        raise BenchmarkError(str(exc)) from None
    args.out = prepare_out(args.out)  # before the timing, not after it
    engine = args.engine or default_engine()
    from artefact.manifest import load_manifest

    manifest = load_manifest(engine)
    h, w = manifest.input_size if min(manifest.input_size) > 0 else (240, 480)
    env = environment()
    parts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pspnet-rtsp-bench-") as tmp, LoadMonitor() as load:
        tmp = Path(tmp)
        from benchmarks.rtsp_camera import demo_clip

        clip = demo_clip(h, w, frames=300)
        clip_file = write_clip(clip, args.file_frames, args.camera_fps, tmp / "clip.mp4")
        for name, fn in (("rtsp_in", lambda: measure_in(engine, clip, args, tmp)),
                         ("file", lambda: measure_file(engine, clip_file, tmp)),
                         ("rtsp_out", lambda: measure_out(engine, clip_file, args, tmp))):
            print(f"{PROG}: {name} ...", file=sys.stderr, flush=True)
            try:
                parts[name] = {"status": "ok", **fn()}
            except BenchmarkError as exc:
                parts[name] = {"status": f"failed: {exc}"}
    env["load_during_run"] = load.summary()
    result = {"command": command, "environment": env, "engine": engine, "model": manifest.model,
              "precision": manifest.precision, "frame_size": [w, h],
              "config": {"seconds": args.seconds, "camera_fps": args.camera_fps,
                         "file_frames": args.file_frames,
                         "clients": args.clients, "rounds": args.rounds, "phase_s": args.phase_seconds,
                         "settle_s": args.settle_seconds, "window_s": WINDOW_S, "rtsp_settle_s": SETTLE_S},
              "parts": parts}
    result["verdicts"] = verdicts(result)
    write_json(args.out / "rtsp.json", result)
    write_text(args.out / "rtsp.md", markdown_report(result))
    try:
        figure(result, args.out / "rtsp.png")
    except ImportError:
        log.warning("matplotlib missing: no rtsp.png")
    print(terminal_report(result), flush=True)
    return result


# ---------------------------------------------------------------------------- the runs
def write_clip(clip: np.ndarray, frames: int, fps: float, path: Path) -> Path:
    """The camera's first `frames` frames (index burned in) as an H.264 file."""
    from benchmarks.rtsp_camera import burn_index
    from runtime.sinks import VideoSink

    sink = VideoSink(path, fps)
    sink.open((clip.shape[2], clip.shape[1]))
    for k in range(frames):
        sink.write(burn_index(np.array(clip[k % len(clip)]), k))
    sink.close()
    return path


class Child:
    """A pspnet-rt process whose stderr is collected as it comes; stopped by its PID."""

    def __init__(self, argv: list[str]) -> None:
        import psutil

        self.argv = ["pspnet-rt", *argv]
        self.proc = subprocess.Popen([sys.executable, "-m", "runtime", *argv], env=child_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self.out: list[str] = []
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()
        threading.Thread(target=lambda: self.out.extend(self.proc.stdout), daemon=True).start()
        self.ps = psutil.Process(self.proc.pid)

    def cpu_s(self) -> float:
        """CPU seconds of pspnet-rt and its children (the ffmpeg encoder, the RTSP server)."""
        import psutil

        total = 0.0
        try:
            family = [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return 0.0
        for p in family:
            with contextlib.suppress(psutil.Error):
                total += sum(p.cpu_times()[:2])
        return total

    def tail(self) -> str:
        return "".join(self.err)[-400:]

    def wait_stats(self, path: Path, n: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while len(records(path)) < n:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkError(f"no frames from pspnet-rt (exit {self.proc.poll()}): {self.tail()}")
            time.sleep(0.2)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise BenchmarkError(f"pspnet-rt did not end within {timeout:.0f} s: {self.tail()}") from None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # the line being written
            out.append(json.loads(line))
    return out


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def _window_fps(stamps: list[float]) -> float | None:
    if len(stamps) < 3 or stamps[-1] <= stamps[0]:
        return None
    return round((len(stamps) - 1) / (stamps[-1] - stamps[0]), 3)


def measure_in(engine: str, clip: np.ndarray, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """pspnet-rt reading the RTSP camera for args.seconds; glass-to-mask latency per frame."""
    from benchmarks.rtsp_camera import RtspCamera, video_indices

    stats, video = tmp / "in.jsonl", tmp / "in.mp4"
    with RtspCamera(clip, fps=args.camera_fps) as cam:
        child = Child(["--video", cam.url(), "--engine", engine, "--reconnect", "0", "--timeout", "10",
                       "--visualize", "side-by-side", "--output", str(video), "--stats", str(stats),
                       "--summary-json", str(tmp / "in.json")])
        try:
            child.wait_stats(stats, 1)
            t_first = records(stats)[0]["time"]
            cpu0 = child.cpu_s()
            time.sleep(max(0.0, t_first + args.seconds - time.time()))
            cpu1 = child.cpu_s()
        except BaseException:
            child.stop()
            raise
        cam.stop()  # the camera goes away; with --reconnect 0 the run ends, exit 0
        sent = dict(cam.sent)
    code = child.wait(120)
    if code != 0:
        raise BenchmarkError(f"pspnet-rt exited {code}: {child.tail()}")
    lines = records(stats)
    indices = video_indices(video, clip.shape[2])
    if len(indices) != len(lines):
        raise BenchmarkError(f"the video holds {len(indices)} frames, the stats {len(lines)}")
    t0 = lines[0]["time"]
    series = [(round(line["time"] - t0, 3), round((line["time"] - sent[i]) * 1e3, 2))
              for line, i in zip(lines, indices) if i is not None and i in sent]
    unread = len(lines) - len(series)
    start, end = SETTLE_S, series[-1][0]
    first = [ms for t, ms in series if start <= t < start + WINDOW_S]
    last = [ms for t, ms in series if end - WINDOW_S < t <= end]
    steady = [ms for t, ms in series if t >= start]
    stamps = [line["time"] for line in lines if line["time"] - t0 >= start]
    summary = json.loads((tmp / "in.json").read_text())
    return {"command": child.argv, "frames": len(lines), "unreadable_indices": unread,
            "seconds": round(end, 2), "fps": _window_fps(stamps), "dropped": summary.get("dropped"),
            "cpu_ms_per_frame": round((cpu1 - cpu0) / max(1, len(lines)) * 1e3, 2),
            "glass_to_mask_ms": {"p50": _pct(steady, 50), "p99": _pct(steady, 99),
                                 "first_p50": _pct(first, 50), "first_p99": _pct(first, 99),
                                 "last_p50": _pct(last, 50), "last_p99": _pct(last, 99),
                                 "first_frames": len(first), "last_frames": len(last)},
            "pipeline_e2e_ms": summary.get("latency_ms", {}).get("end-to-end"),
            "series": series}


def measure_file(engine: str, clip_file: Path, tmp: Path) -> dict[str, Any]:
    """The same frames from a file: every frame, in order, as fast as the pipeline goes."""
    stats = tmp / "file.jsonl"
    child = Child(["--video", str(clip_file), "--engine", engine, "--visualize", "side-by-side",
                   "--output", str(tmp / "file.mp4"), "--stats", str(stats), "--summary-json",
                   str(tmp / "file.json")])
    code = child.wait(3600)
    if code != 0:
        raise BenchmarkError(f"pspnet-rt exited {code}: {child.tail()}")
    lines = records(stats)
    summary = json.loads((tmp / "file.json").read_text())
    e2e = [line["e2e_ms"] for line in lines]
    t0 = lines[0]["time"]
    return {"command": child.argv, "frames": len(lines), "fps": _window_fps([r["time"] for r in lines
                                                                             if r["time"] - t0 >= SETTLE_S]),
            "summary_fps": summary.get("fps"), "cpu_ms_per_frame": summary.get("cpu_ms_per_frame"),
            "e2e_ms": {"p50": _pct(e2e, 50), "p99": _pct(e2e, 99)}}


class Client:
    """An RTSP client receiving the stream (ffmpeg, TCP, no decoding: a few ms of CPU a second),
    counting frames. Not niced: at nice 19 on a busy 2-core box it never got through the RTSP
    handshake, and the phase measured no client at all."""

    def __init__(self, url: str) -> None:
        self.frames = 0
        self.proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-progress", "pipe:1",
             "-rtsp_transport", "tcp", "-i", url, "-c", "copy", "-f", "null", "-"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("frame="):
                with contextlib.suppress(ValueError):
                    self.frames = int(line.split("=", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _phase(child: Child, stats: Path, condition: str, round_no: int, args: argparse.Namespace,
           url: str | None) -> dict[str, Any]:
    clients = [Client(url) for _ in range(args.clients)] if condition == "clients" else []
    time.sleep(args.settle_seconds)
    t0, cpu0, got0 = time.time(), child.cpu_s(), [c.frames for c in clients]
    time.sleep(args.phase_seconds - args.settle_seconds)
    t1, cpu1, got1 = time.time(), child.cpu_s(), [c.frames for c in clients]
    for c in clients:
        c.stop()
    if clients and min(got1) == 0:
        raise BenchmarkError(f"an RTSP client received no frame from {url} in {t1 - t0:.0f} s")
    stamps = [r["time"] for r in records(stats) if t0 <= r.get("time", 0) <= t1]
    n = len(stamps)
    phase = {"condition": condition, "round": round_no, "frames": n, "fps": _window_fps(stamps),
             "cpu_ms_per_frame": round((cpu1 - cpu0) / n * 1e3, 2) if n else None,
             "client_fps": [round((b - a) / (t1 - t0), 2) for a, b in zip(got0, got1)] or None}
    log.info("%s", phase)
    time.sleep(0.5)
    return phase


def measure_out(engine: str, clip_file: Path, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    phases: list[dict[str, Any]] = []
    served: list[dict[str, Any] | None] = []
    for r in range(args.rounds):
        for rtsp in (False, True):
            stats = tmp / f"out-{r}-{int(rtsp)}.jsonl"
            argv = ["--video", str(clip_file), "--loop", "--engine", engine, "--output", str(tmp / "o.mp4"),
                    "--stats", str(stats)]
            summary = tmp / f"out-{r}.json"
            if rtsp:
                argv += ["--output", "rtsp://127.0.0.1:0/seg", "--summary-json", str(summary)]
            child = Child(argv)
            try:
                child.wait_stats(stats, 20)  # warm-up: every infer request ran
                url = None
                if rtsp:
                    found = [m for line in child.err if (m := re.search(r"serving (rtsp://\S+)", line))]
                    if not found:
                        raise BenchmarkError(f"pspnet-rt did not say where it serves RTSP: {child.tail()}")
                    url = found[0].group(1)
                for condition in (("none", "clients") if rtsp else ("no rtsp out",)):
                    phases.append(_phase(child, stats, condition, r, args, url))
            finally:
                code = child.stop()
            if code != 143:
                raise BenchmarkError(f"pspnet-rt exited {code}: {child.tail()}")
            if rtsp:  # what the server said it did: frames, drops, clients at once
                served.append(json.loads(summary.read_text()).get("rtsp_out"))
    by: dict[str, list[dict[str, Any]]] = {}
    for p in phases:
        by.setdefault(p["condition"], []).append(p)
    summary = {c: {"fps_mean": _mean([p["fps"] for p in ps]),
                   "cpu_ms_per_frame_mean": _mean([p["cpu_ms_per_frame"] for p in ps])}
               for c, ps in by.items()}
    base = by["no rtsp out"]
    for c in ("none", "clients"):
        ratios = [p["fps"] / b["fps"] for p, b in zip(by[c], base) if p["fps"] and b["fps"]]
        summary[c]["ratio_to_no_rtsp_out"] = _mean(ratios)
        summary[c]["ratios"] = [round(x, 3) for x in ratios]
    delivered = [f for p in by["clients"] for f in (p["client_fps"] or [])]
    return {"phases": phases, "summary": summary, "client_fps_mean": _mean(delivered), "served": served}


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.fmean(values), 3) if values else None


# ------------------------------------------------------------------------------ reporting
def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    parts, cfg = result["parts"], result["config"]
    out: dict[str, Any] = {}
    rin, rfile, rout = parts.get("rtsp_in", {}), parts.get("file", {}), parts.get("rtsp_out", {})
    if rin.get("status") == "ok":
        g = rin["glass_to_mask_ms"]
        out["creep_ratio"] = round(g["last_p99"] / g["first_p99"], 3) if g["first_p99"] else None
        out["no_creep"] = out["creep_ratio"] is not None and out["creep_ratio"] <= CREEP_RATIO
    if rin.get("status") == "ok" and rfile.get("status") == "ok":
        interval = 1e3 / cfg["camera_fps"]
        diff = rin["glass_to_mask_ms"]["p50"] - rfile["e2e_ms"]["p50"]
        out["p50_minus_file_p50_ms"] = round(diff, 2)
        out["p50_within_one_interval"] = diff <= interval
    if rout.get("status") == "ok":
        ratio = rout["summary"]["clients"]["ratio_to_no_rtsp_out"]
        out["out_cost"] = round(1 - ratio, 3) if ratio is not None else None
        out["out_cost_met"] = out["out_cost"] is not None and out["out_cost"] <= OUT_COST
    return out


def _rows(result: dict[str, Any]) -> list[list[str]]:
    parts, cfg = result["parts"], result["config"]
    rows = []
    rin, rfile, rout = parts["rtsp_in"], parts["file"], parts["rtsp_out"]
    if rin["status"] == "ok":
        g = rin["glass_to_mask_ms"]
        rows.append([f"RTSP camera ({cfg['camera_fps']:g} fps), {rin['seconds']:.0f} s",
                     fmt(rin["fps"], ".2f"),
                     f"{fmt(g['p50'])} / {fmt(g['p99'])} (glass-to-mask)",
                     f"first 10 s {fmt(g['first_p99'])}, last 10 s {fmt(g['last_p99'])}",
                     fmt(rin["cpu_ms_per_frame"], ".0f")])
    else:
        rows.append(["RTSP camera", "FAILED", rin["status"], "", ""])
    if rfile["status"] == "ok":
        rows.append([f"the same clip from a file, {rfile['frames']} frames", fmt(rfile["fps"], ".2f"),
                     f"{fmt(rfile['e2e_ms']['p50'])} / {fmt(rfile['e2e_ms']['p99'])} (pipeline)", "",
                     fmt(rfile["cpu_ms_per_frame"], ".0f")])
    else:
        rows.append(["file", "FAILED", rfile["status"], "", ""])
    if rout["status"] == "ok":
        s = rout["summary"]
        for c, label in (("no rtsp out", "file --loop, --output clip.mp4"),
                         ("none", "  + --output rtsp://, no client"),
                         ("clients", f"  + --output rtsp://, {cfg['clients']} clients")):
            ratio = s[c].get("ratio_to_no_rtsp_out")
            rows.append([label, fmt(s[c]["fps_mean"], ".2f"), "", "" if ratio is None else f"x{ratio:.3f}",
                         fmt(s[c]["cpu_ms_per_frame_mean"], ".0f")])
    else:
        rows.append(["RTSP out", "FAILED", rout["status"], "", ""])
    return rows


HEADER = ["run", "pipeline FPS", "latency p50 / p99 ms", "creep / FPS ratio", "CPU ms/frame"]


def _verdict_lines(result: dict[str, Any]) -> list[str]:
    v, cfg = result["verdicts"], result["config"]
    lines = []
    if "creep_ratio" in v:
        lines.append(f"latency creep: p99 last 10 s / first 10 s = {fmt(v['creep_ratio'], '.3f')} "
                     f"(target <= {CREEP_RATIO}): {'met' if v['no_creep'] else 'NOT met'}")
    if "p50_minus_file_p50_ms" in v:
        lines.append(f"RTSP glass-to-mask p50 - file end-to-end p50 = {v['p50_minus_file_p50_ms']:+.1f} ms "
                     f"(target <= one frame interval, {1e3 / cfg['camera_fps']:.0f} ms): "
                     f"{'met' if v['p50_within_one_interval'] else 'NOT met'}")
    if "out_cost" in v:
        cost = None if v["out_cost"] is None else v["out_cost"] * 100
        lines.append(f"RTSP out with {cfg['clients']} clients costs {fmt(cost, '.1f')} % of pipeline FPS "
                     f"(target <= {OUT_COST * 100:.0f} %): {'met' if v['out_cost_met'] else 'NOT met'}")
    return lines


def terminal_report(result: dict[str, Any]) -> str:
    return "\n".join([text_table(HEADER, _rows(result)), *_verdict_lines(result)])


def markdown_report(result: dict[str, Any]) -> str:
    cfg, parts = result["config"], result["parts"]
    w, h = result["frame_size"]
    parts_md = [header_block("RTSP: a camera vs a file, and the cost of RTSP out", result["environment"],
                             result["command"]), "",
                f"Artefact `{Path(result['engine']).name}` ({result['model']}, {result['precision']}), "
                f"frames {w}x{h} (side-by-side output {2 * w}x{h}). The camera is GStreamer's "
                "gst-rtsp-server on 127.0.0.1 (x264 ultrafast, zerolatency) serving the demo street clip "
                f"at {cfg['camera_fps']:g} fps with each frame's index burned in; glass-to-mask = the run's "
                "stats line of a frame minus the time the camera handed that frame to its server (first "
                f"{cfg['rtsp_settle_s']:g} s left out: the frames FFmpeg buffers while opening). The file "
                f"holds the camera's first {cfg['file_frames']} frames. RTSP out: {cfg['rounds']} rounds of "
                f"{cfg['phase_s']:g} s phases (first {cfg['settle_s']:g} s left out), the clients are ffmpeg "
                "over TCP without decoding. CPU ms/frame includes pspnet-rt's children (the "
                "video encoder, the RTSP server).", "",
                markdown_table(HEADER, _rows(result)), "", *[f"- {line}" for line in _verdict_lines(result)]]
    rin, rout = parts["rtsp_in"], parts["rtsp_out"]
    if rin["status"] == "ok":
        parts_md.append(f"- RTSP camera: {rin['frames']} frames written, dropped {rin['dropped']}; "
                        f"{rin['unreadable_indices']} frames whose index could not be read back")
    if rout["status"] == "ok":
        s = rout["summary"]
        parts_md.append(f"- RTSP out: per-round FPS ratios, no client {s['none']['ratios']}, with clients "
                        f"{s['clients']['ratios']}; each client received "
                        f"{fmt(rout['client_fps_mean'], '.1f')} frames/s on average; the server's own "
                        f"account per round: {rout['served']}")
    return "\n".join(parts_md) + "\n"


def figure(result: dict[str, Any], path: Path) -> Path:
    from benchmarks.plots import _pyplot

    plt = _pyplot()
    parts, cfg = result["parts"], result["config"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    rin, rfile = parts["rtsp_in"], parts["file"]
    if rin["status"] == "ok":
        ts, ms = zip(*rin["series"])
        left.plot(ts, ms, ".", markersize=2, color="#66c2a5", label="RTSP camera: glass-to-mask")
        for a, b, key in ((cfg["rtsp_settle_s"], cfg["rtsp_settle_s"] + WINDOW_S, "first_p99"),
                          (ts[-1] - WINDOW_S, ts[-1], "last_p99")):
            left.hlines(rin["glass_to_mask_ms"][key], a, b, color="#1b7837", linewidth=2)
    if rfile["status"] == "ok":
        left.axhline(rfile["e2e_ms"]["p50"], color="#8da0cb", linestyle="--", label="file: pipeline e2e p50")
    left.set_xlabel("seconds into the run")
    left.set_ylabel("ms")
    left.set_title("latency over the run (bars: p99 of the first / last 10 s)", fontsize=9)
    left.legend(fontsize=8)
    labels, fps = [], []
    if rin["status"] == "ok":
        labels.append("RTSP in")
        fps.append(rin["fps"] or 0)
    if rfile["status"] == "ok":
        labels.append("file")
        fps.append(rfile["fps"] or 0)
    if parts["rtsp_out"]["status"] == "ok":
        s = parts["rtsp_out"]["summary"]
        for c, label in (("no rtsp out", "file --loop"), ("none", "+RTSP out"),
                         ("clients", f"+RTSP out\n{cfg['clients']} clients")):
            labels.append(label)
            fps.append(s[c]["fps_mean"] or 0)
    right.bar(range(len(fps)), fps, color=["#66c2a5", "#8da0cb", "#8da0cb", "#fc8d62", "#fc8d62"][:len(fps)])
    right.set_xticks(range(len(fps)), labels, fontsize=8)
    right.set_ylabel("pipeline FPS")
    right.set_title("FPS", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
