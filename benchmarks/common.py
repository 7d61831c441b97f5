"""What every benchmark shares: the machine's description, latency summaries, output files.

Why one module: a figure is only worth reporting next to the machine that produced it (CPU
flags decide whether VNNI INT8 and BF16 kernels exist at all) and the load the machine was
under, so every JSON carries the same `environment` block, and every table is written the
same way.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import logging
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import clikit
from devices import cpu_info, device_info, openvino_capabilities, version

log = logging.getLogger("benchmarks")

LIBRARIES = ("torch", "onnxruntime", "openvino", "onnx", "numpy", "opencv-python-headless",
             "opencv-python", "tensorrt", "matplotlib")


class BenchmarkError(RuntimeError):
    """A benchmark that cannot run as asked (the message says what to change)."""


# ----------------------------------------------------------------------------- environment
def gpu_info() -> dict[str, Any] | None:
    """The CUDA device TensorRT would use, or None (never raises: absence is the common case)."""
    info = device_info()
    if info is None and shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
            info = {"name": out} if out else None
        except (OSError, subprocess.SubprocessError):
            info = None
    return info


def gpu_memory_used_mb() -> float | None:
    """Device memory in use (nvidia-smi), for GPU contenders; None without a GPU."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout.split()
        return float(out[0]) if out else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def library_versions() -> dict[str, str | None]:
    return {"python": platform.python_version(), **{dist: version(dist) for dist in LIBRARIES}}


def busy_processes() -> list[str]:
    """Other processes using CPU right now (e.g. a training job): their load skews timings."""
    try:
        import psutil
    except ImportError:
        return []
    me = os.getpid()
    procs = list(psutil.process_iter(["pid", "cmdline"]))
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(0.3)
    busy = []
    for p in procs:
        try:
            pct = p.cpu_percent(None)
            if p.pid != me and pct >= 20:
                cmd = " ".join(p.info["cmdline"] or [])[:120]
                busy.append(f"pid {p.pid} {pct:.0f}% {cmd}")
        except psutil.Error:
            pass
    return busy


class LoadMonitor:
    """Samples, every `interval` s, how much CPU processes other than this one (and its children)
    use while a benchmark runs. On a shared 2-core box that is what makes one run's figures 3x
    another's, so the result files state it rather than leave the reader to guess."""

    def __init__(self, interval: float = 2.0) -> None:
        import threading

        self.interval = interval
        self.samples: list[float] = []
        self.culprits: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)

    def __enter__(self) -> LoadMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        me = psutil.Process()
        procs: dict[int, Any] = {}
        psutil.cpu_percent(None)
        while not self._stop.wait(self.interval):
            total = psutil.cpu_percent(None) * (psutil.cpu_count() or 1)
            ours = {me.pid} | {c.pid for c in _children(me)}
            others = 0.0
            for p in psutil.process_iter(["pid", "cmdline"]):
                proc = procs.setdefault(p.pid, p)
                try:
                    pct = proc.cpu_percent(None)
                except psutil.Error:
                    continue
                if p.pid not in ours and pct >= 5:
                    others += pct
                    cmd = " ".join(p.info.get("cmdline") or [])[:100]
                    self.culprits[cmd] = max(self.culprits.get(cmd, 0.0), pct)
            self.samples.append(min(others, total) if total else others)

    def summary(self) -> dict[str, Any]:
        s = self.samples
        top = sorted(self.culprits.items(), key=lambda kv: -kv[1])[:3]
        return {"samples": len(s), "interval_s": self.interval,
                "other_cpu_percent_mean": round(float(np.mean(s)), 1) if s else None,
                "other_cpu_percent_max": round(float(np.max(s)), 1) if s else None,
                "top_other_processes": [f"{pct:.0f}% {cmd}" for cmd, pct in top],
                "unit": "percent of one core (200 = both cores of a 2-core machine)"}


def _children(proc: Any) -> list[Any]:
    try:
        return proc.children(recursive=True)
    except Exception:
        return []


def load_note(load: dict[str, Any] | None) -> str | None:
    """A warning line when other processes used noticeable CPU during the run."""
    if not load or load.get("other_cpu_percent_mean") is None:
        return None
    mean = load["other_cpu_percent_mean"]
    if mean < 10:
        return None
    peak = load["other_cpu_percent_max"]
    return (f"other processes used {mean:.0f}% of a core on average (max {peak:.0f}%) during the run: "
            f"figures are slower and noisier than on an idle machine "
            f"({'; '.join(load['top_other_processes'][:2])})")


def environment() -> dict[str, Any]:
    """The `environment` block of every result file."""
    try:
        import psutil

        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        memory_gb = None
    env = {
        "cpu": cpu_info(), "memory_gb": memory_gb, "os": platform.platform(),
        "libraries": library_versions(), "openvino_cpu_capabilities": openvino_capabilities(),
        "gpu": gpu_info(), "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "busy_processes": busy_processes(),
        "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "PSPNET_RT_THREADS")
                        if k in os.environ},
    }
    if env["busy_processes"]:
        log.warning("other processes are using the CPU, timings will be slower and noisier: %s",
                    "; ".join(env["busy_processes"]))
    return env


def describe_cpu(env: dict[str, Any]) -> str:
    cpu = env["cpu"]
    flags = ", ".join(f for f, on in cpu["flags"].items() if on and f.startswith(("avx512_", "amx")))
    return f"{cpu['model']}, {cpu['usable_cores']} cores ({flags or 'no AVX-512 VNNI/BF16, no AMX'})"


# --------------------------------------------------------------------------------- numbers
def summarize_ms(values: Sequence[float]) -> dict[str, float | None]:
    """mean/p50/p90/p99/min/max/std of a latency list in ms (None when empty)."""
    if len(values) == 0:
        return dict.fromkeys(("mean", "p50", "p90", "p99", "min", "max", "std"))
    a = np.asarray(values, np.float64)
    p50, p90, p99 = np.percentile(a, (50, 90, 99))
    return {"mean": _r(a.mean()), "p50": _r(p50), "p90": _r(p90), "p99": _r(p99), "min": _r(a.min()),
            "max": _r(a.max()), "std": _r(a.std())}


def _r(x: float, digits: int = 3) -> float:
    return round(float(x), digits)


def fps_of(mean_ms: float | None) -> float | None:
    return round(1000.0 / mean_ms, 3) if mean_ms else None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None where either is missing (JSON cannot hold NaN)."""
    if a is None or b is None or b == 0 or (isinstance(a, float) and math.isnan(a)):
        return None
    return round(a / b, 3)


def fmt(x: float | None, spec: str = ".1f", none: str = "–") -> str:
    return none if x is None else format(x, spec)


# --------------------------------------------------------------------------------- outputs
def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured table; `align` is one char per column (l/r)."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same table for the terminal: columns padded, first left-aligned, rest right."""
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for n, row in enumerate(cells):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write_json(path: Path, data: dict[str, Any]) -> Path:
    from artefact.files import atomic_write_json

    atomic_write_json(path, _jsonable(data))
    return path


def write_text(path: Path, text: str) -> Path:
    from artefact.files import atomic_write_bytes

    atomic_write_bytes(path, text.encode())
    return path


def save_figure(fig: Any, path: Path, dpi: int = 110) -> Path:
    """A matplotlib figure written whole (temp file + rename), as the JSON and Markdown are."""
    from artefact.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path


def _jsonable(obj: Any) -> Any:
    """numpy scalars/arrays and NaN -> plain JSON (NaN becomes null)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def header_block(title: str, env: dict[str, Any], command: str) -> str:
    libs = env["libraries"]
    lib_text = ", ".join(f"{k} {v}" for k, v in libs.items() if v and k in
                         ("torch", "onnxruntime", "openvino", "tensorrt"))
    gpu = env.get("gpu")
    lines = [f"# {title}", "", f"- command: `{command}`", f"- created: {now()}",
             f"- CPU: {describe_cpu(env)}", f"- GPU: {gpu['name'] if gpu else 'none'}",
             f"- libraries: {lib_text}",
             f"- load average at start: {', '.join(f'{x:.2f}' for x in env['load_average'] or [])}"]
    if env.get("busy_processes"):
        lines.append(f"- **other CPU load at start**: {'; '.join(env['busy_processes'])}")
    note = load_note(env.get("load_during_run"))
    if note:
        lines.append(f"- **{note}**")
    return "\n".join(lines) + "\n"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def command_line(prog: str, argv: Sequence[str] | None) -> str:
    """The command as the reports record it (a --video URL's password hidden)."""
    from runtime.naming import redact_source

    return redact_source(shlex.join(["python", "-m", prog, *(sys.argv[1:] if argv is None else argv)]))


# ------------------------------------------------------------------------------------- CLI
parse_size = clikit.size_type("HxW", min_side=33)  # the exporter's smallest side


def zoo_model(name: str) -> Any:
    """The model zoo's spec, or a BenchmarkError naming the choices (bad --model)."""
    from pspnet.zoo import get_spec

    try:
        return get_spec(name)
    except KeyError as exc:
        raise BenchmarkError(str(exc.args[0])) from None


REPORT_SUFFIXES = (".json", ".md", ".png", ".csv", ".txt")


def prepare_out(folder: str | Path) -> Path:
    """Create --out, prove it takes files and claim it for this run (a second benchmark writing
    the same folder at once is refused: one run's reports, not a mix of two), before any timing
    work (BenchmarkError or OutputError, exit 2, otherwise)."""
    from artefact.files import probe_writable
    from runtime.output_target import claim_folder

    out = Path(folder)
    try:
        probe_writable(out)
    except OSError as exc:
        why = exc.strerror or exc
        raise BenchmarkError(f"cannot write to --out {out}: {why}; choose a writable folder") from None
    with os.scandir(out) as entries:  # a report's name taken by something a rename would destroy
        for entry in entries:
            if entry.name.endswith(REPORT_SUFFIXES) and not (entry.is_symlink() or entry.is_dir()
                                                              or entry.is_file(follow_symlinks=False)):
                raise BenchmarkError(f"--out {out}: {entry.name} there is not a file (a device, FIFO or "
                                     "socket) and a report would replace it; choose another folder")
    claim_folder(out, "--out")
    return out


def run_benchmark(prog: str, parser: argparse.ArgumentParser,
                  run: Callable[[argparse.Namespace, str], dict[str, Any]],
                  failures: Callable[[dict[str, Any]], str | None], argv: Sequence[str] | None = None) -> int:
    """Every benchmark's main(): parse, run, write; exit 1 when `failures(result)` names any,
    2 on a BenchmarkError (bad arguments or data), the signal's code when interrupted."""

    def body(args: argparse.Namespace) -> int:
        from runtime.output_target import release_all

        try:
            problems = failures(run(args, command_line(prog, argv)))
        finally:
            release_all()  # --out is ours until the reports are written
        return clikit.fail(prog, problems, clikit.EXIT_FAIL) if problems else clikit.EXIT_OK

    # builds log the random-weights warning once per artefact; the result files say it once
    from runtime.naming import redact_source

    return clikit.run(prog, parser, body, argv, usage=(BenchmarkError,), quiet=("pspnet.build",),
                      scrub=redact_source)
