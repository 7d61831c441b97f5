"""Everything a machine with an NVIDIA GPU can run of pspnet-rt, part by part, in one report.

Run through scripts/gpu-check.sh (which picks the Python). Each part says "ran", "skipped: why"
or "failed: why", and one part's failure never stops the next. Offline: nothing is downloaded;
what is not installed is skipped and named. Parts:

  environment   nvidia-smi, Python, the libraries this machine has
  gpu tests     pytest -m "gpu or cuda" (TensorRT tests; devices/cuda.py: pinned buffers, both
                streams, events, CUDA-graph capture of a copy, through cuda-bindings and pycuda)
  ort cuda      ONNX Runtime's CUDA execution provider on the demo model vs its CPU provider
  torch cuda    PyTorch CUDA eager (FP32, FP16 autocast) on the demo model: the baseline
  tensorrt      FP32/FP16/INT8 engine builds of the demo model with the accuracy gate, then the
                latency benchmark and the mIoU table on them

Writes OUT/report.md and OUT/report.json (OUT defaults to gpu-check/). Without a GPU it says so
and exits 0 (--all-parts runs every part anyway, each saying why it cannot).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 9 * 60  # the whole check stays under 10 minutes
DEMO_HW = (240, 480)


class Skip(Exception):
    """The part cannot run here; the message says why (details, when given, go in the report)."""

    def __init__(self, why: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(why)
        self.details = details or {}


@dataclass
class Part:
    name: str
    status: str = "skipped"  # ran | skipped: why | failed: why
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def run(cmd: list[str], timeout: float, out: Path | None = None) -> subprocess.CompletedProcess:
    """A child command with the repository importable; its output kept in `out` when given."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if out is not None:
        out.write_text(f"$ {' '.join(cmd)}\n# exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


# ---------------------------------------------------------------------------------- parts
def gpu_present() -> tuple[bool, str]:
    smi = shutil.which("nvidia-smi")
    if smi:
        proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 and "GPU" in proc.stdout:
            return True, proc.stdout.strip()
        return False, f"nvidia-smi found no GPU ({last_line(proc.stderr or proc.stdout)})"
    if any(Path("/dev").glob("nvidia[0-9]*")):
        return True, "/dev/nvidia* present (no nvidia-smi)"
    return False, "no nvidia-smi and no /dev/nvidia* device"


def version(dist: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def environment(ctx: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable,
                             "gpu": ctx["gpu_text"], "setup": ctx["setup"]}
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,compute_cap",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        facts["nvidia_smi"] = q.stdout.strip() or last_line(q.stderr)
    facts["libraries"] = {d: version(d) for d in ("numpy", "opencv-python-headless", "torch", "onnx",
                                                  "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt",
                                                  "cuda-python", "cuda-bindings", "pycuda", "pytest")}
    return facts


def gpu_tests(ctx: dict[str, Any]) -> dict[str, Any]:
    if not has("pytest"):
        raise Skip("pytest is not installed (pip install 'pspnet-rt[test]')")
    junit = ctx["out"] / "gpu-tests.xml"
    proc = run([sys.executable, "-m", "pytest", "-q", "-m", "gpu or cuda", "-p", "no:cacheprovider",
                f"--junitxml={junit}", "tests"], timeout=ctx["left"](), out=ctx["out"] / "gpu-tests.log")
    cases = []
    if junit.is_file():
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome, why = "passed", ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome, why = tag, (node.get("message") or "")[:200]
            cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                          "why": why})
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failure", "error", "skipped")}
    details = {"counts": counts, "tests": cases, "log": "gpu-tests.log"}
    if proc.returncode not in (0, 5) or counts["failure"] or counts["error"]:
        raise RuntimeError(f"{counts['failure']} failed, {counts['error']} errors "
                           f"({last_line(proc.stdout)}); see gpu-tests.log")
    if cases and counts["skipped"] == len(cases):
        reasons = sorted({c["why"] for c in cases})
        raise Skip(f"all {len(cases)} gpu/cuda tests skipped: {'; '.join(reasons)[:300]}", details)
    return details


def demo_fp32_onnx(ctx: dict[str, Any]) -> Path:
    """The demo model's fused FP32 ONNX (exported once here; needs torch and onnx)."""
    if "onnx" in ctx:
        return ctx["onnx"]
    for module in ("torch", "onnx", "onnxslim"):
        if not has(module):
            raise Skip(f"exporting the demo model needs {module} (the export extra), not installed")
    out = ctx["out"] / "export"
    proc = run([sys.executable, "-m", "build_engine", "--precision", "fp32", "--backend", "onnxruntime",
                "--output", str(out), "--stop-after", "slim"], timeout=min(300, ctx["left"]()),
               out=ctx["out"] / "export.log")
    if proc.returncode != 0:
        raise RuntimeError(f"export failed: {last_line(proc.stderr)}")
    ctx["onnx"] = Path(last_line(proc.stdout))
    return ctx["onnx"]


def timed(fn: Callable[[], Any], n: int = 30, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return {"p50_ms": round(samples[n // 2], 3), "p99_ms": round(samples[min(n - 1, int(n * 0.99))], 3),
            "frames": n}


def demo_frames(n: int = 4) -> list:
    from segdata.synthetic import render_scene, split_seeds

    return [render_scene(s, *DEMO_HW)[0] for s in split_seeds("test", n)]


def ort_cuda(ctx: dict[str, Any]) -> dict[str, Any]:
    if not has("onnxruntime"):
        raise Skip("ONNX Runtime is not installed")
    import numpy as np
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        raise Skip(f"this ONNX Runtime has no CUDAExecutionProvider (has {', '.join(providers)}; "
                   "onnxruntime-gpu provides it)")
    from runtime.backends import open_runner

    path = demo_fp32_onnx(ctx)
    frames = demo_frames()
    with open_runner("onnxruntime", path) as cpu:
        ref = [cpu.predict(f)[0] for f in frames]
        cpu_t = timed(lambda: cpu.predict(frames[0]), n=10, warmup=2)
    session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"the session fell back to {session.get_providers()}")
    name = session.get_inputs()[0].name
    outputs = [session.get_outputs()[0].name]

    def predict(frame):
        return session.run(outputs, {name: frame[None]})[0][0]

    agree = float(np.mean([np.mean(predict(f) == r) for f, r in zip(frames, ref)]))
    return {"cuda_ep": timed(lambda: predict(frames[0])), "cpu_ep": cpu_t,
            "pixel_agreement_with_cpu": round(agree, 5), "onnxruntime": ort.__version__}


def torch_cuda(ctx: dict[str, Any]) -> dict[str, Any]:
    if not has("torch"):
        raise Skip("PyTorch is not installed (the export extra)")
    import numpy as np
    import torch

    if not torch.cuda.is_available():
        build = torch.version.cuda or "a CPU-only build"
        raise Skip(f"torch {torch.__version__} ({build}) sees no CUDA device")
    from pspnet.build import load_model
    from pspnet.zoo import get_spec

    spec = get_spec("demo")
    net, _ = load_model(spec)
    frames = demo_frames()
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)

    def batch(frame, device):
        x = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1])).permute(2, 0, 1)[None].float()
        return ((x - mean) / std).to(device)

    with torch.inference_mode():
        ref = [net(batch(f, "cpu")).argmax(1)[0].numpy() for f in frames]
        gpu = net.to("cuda").eval()
        x = batch(frames[0], "cuda")

        def run_fp32():
            gpu(x).argmax(1)
            torch.cuda.synchronize()

        def run_fp16():
            with torch.autocast("cuda", dtype=torch.float16):
                gpu(x).argmax(1)
            torch.cuda.synchronize()

        agree = float(np.mean([np.mean(gpu(batch(f, "cuda")).argmax(1)[0].cpu().numpy() == r)
                               for f, r in zip(frames, ref)]))
        return {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                "fp32_eager": timed(run_fp32), "fp16_autocast_eager": timed(run_fp16),
                "fp32_pixel_agreement_with_cpu": round(agree, 5),
                "note": "network only (normalised float input on the GPU; no pre/post-processing)"}


def tensorrt(ctx: dict[str, Any]) -> dict[str, Any]:
    from devices import tensorrt_usable

    if not has("tensorrt"):
        raise Skip("TensorRT is not importable (pip install 'pspnet-rt[tensorrt]' with NVIDIA's index)")
    if not tensorrt_usable():
        raise Skip("TensorRT imports but no CUDA device answers through cuda-python/pycuda")
    out = ctx["out"] / "tensorrt"
    builds: dict[str, Any] = {}
    manifests = []
    for precision in ("fp32", "fp16", "int8"):
        proc = run([sys.executable, "-m", "build_engine", "--backend", "tensorrt", "--precision", precision,
                    "--output", str(out)], timeout=min(240, ctx["left"]()),
                   out=out.parent / f"trt-{precision}.log")
        if proc.returncode == 0:
            manifests.append(last_line(proc.stdout))
            m = json.loads(Path(manifests[-1]).read_text())
            gate = (m.get("accuracy") or {}).get("gate") or {}
            builds[precision] = {"status": "ran", "gate_passed": gate.get("passed"),
                                 "miou_drop_points": gate.get("miou_drop_points"),
                                 "seconds": m.get("build", {}).get("seconds")}
        else:
            builds[precision] = {"status": f"failed: {last_line(proc.stderr)}"}
    details: dict[str, Any] = {"builds": builds}
    if not manifests:
        raise RuntimeError(f"no engine built: {builds}")
    for bench, args in (("latency", ["--frames", "100", "--no-rss"]), ("accuracy", ["--images", "100"])):
        proc = run([sys.executable, "-m", f"benchmarks.{bench}", "--engine", *manifests, *args, "--out",
                    str(out / bench)], timeout=min(240, ctx["left"]()), out=out.parent / f"trt-{bench}.log")
        table = out / bench / f"{bench}.md"
        details[bench] = ("ran: " + str(table)) if proc.returncode == 0 and table.is_file() else \
            f"failed: {last_line(proc.stderr)}"
    return details


PARTS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    ("environment", environment), ("gpu tests", gpu_tests), ("ort cuda", ort_cuda),
    ("torch cuda", torch_cuda), ("tensorrt", tensorrt)]


# --------------------------------------------------------------------------------- report
def markdown(parts: list[Part], header: str) -> str:
    lines = ["# pspnet-rt GPU check", "", header, "", "| part | status | seconds |", "| --- | --- | ---: |"]
    lines += [f"| {p.name} | {p.status} | {p.seconds:.1f} |" for p in parts]
    for p in parts:
        if p.details:
            lines += ["", f"## {p.name}", "", "```json", json.dumps(p.details, indent=1, default=str)[:4000],
                      "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="gpu-check", help="report folder (default gpu-check/)")
    ap.add_argument("--all-parts", action="store_true", help="run every part even without a GPU")
    ap.add_argument("--setup", default="", help=argparse.SUPPRESS)  # what gpu-check.sh did about Python
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    present, gpu_text = gpu_present()
    ctx: dict[str, Any] = {"out": out, "gpu_text": gpu_text, "setup": args.setup,
                           "left": lambda: max(30.0, BUDGET_S - (time.perf_counter() - started))}
    parts = []
    for name, fn in PARTS:
        part = Part(name)
        t0 = time.perf_counter()
        try:
            if not present and not args.all_parts and name != "environment":
                raise Skip(f"no NVIDIA GPU here ({gpu_text})")
            if time.perf_counter() - started > BUDGET_S:
                raise Skip("the 9-minute budget is spent")
            part.details = fn(ctx)
            part.status = "ran"
        except Skip as exc:
            part.status = f"skipped: {exc}"
            part.details = exc.details
        except subprocess.TimeoutExpired as exc:
            part.status = f"failed: timed out after {exc.timeout:.0f} s"
        except Exception as exc:  # one part's failure is reported, never the end of the check
            part.status = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        part.seconds = time.perf_counter() - t0
        parts.append(part)
        print(f"{part.name:12s} {part.status}", flush=True)
    header = (f"{time.strftime('%Y-%m-%d %H:%M')} on {platform.node()}; GPU: {gpu_text}; "
              f"Python {platform.python_version()} ({sys.executable}); {args.setup or 'no setup notes'}; "
              f"{time.perf_counter() - started:.0f} s in all")
    (out / "report.json").write_text(json.dumps({"header": header, "gpu": present,
                                                 "parts": [asdict(p) for p in parts]}, indent=1, default=str))
    (out / "report.md").write_text(markdown(parts, header))
    print(f"report: {out / 'report.md'} and report.json")
    if not present:
        print("no NVIDIA GPU on this machine: nothing GPU-specific could run (exit 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
