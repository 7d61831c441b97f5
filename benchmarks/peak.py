"""This machine's own peak multiply-accumulate rates, per precision, through each contender's library.

Why: a latency figure says how fast a contender is, not how fast it could be. One large GEMM
per precision, run through the library the contender uses (torch for the PyTorch contenders;
a large 1x1 Conv, which OpenVINO and ONNX Runtime run as a GEMM, through that library's own
loader for the artefacts; INT8 as the same symmetric Q/DQ Conv our quantizer writes), gives
the rate that library reaches on the best-case shape. A contender's sustained rate (its work
per frame over its time per frame) divided by that peak is its share of the hardware; the rest
of its time goes to work that is not a large GEMM (pooling, resizes, the ArgMax, quantize /
dequantize steps, small or memory-bound layers) and to the framework itself.

The probe is short (a few seconds per library) and the benchmarks run it before and after
their timing loop, so a machine that drifted during the run shows as a before/after gap.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# library -> the precisions probed there (the float types its contenders run)
PROBES: dict[str, tuple[str, ...]] = {"torch": ("fp32", "bf16", "int8"),
                                      "openvino": ("fp32", "bf16", "int8"),
                                      "onnxruntime": ("fp32", "int8")}
CONV_LAYERS = 1
SMALL_SIDE, CALL_S = 512, 0.4  # a slow precision gets a GEMM that takes about CALL_S per call
MIN_CALLS = 3


@dataclass(frozen=True)
class ProbeSize:
    """How big the probes are. The defaults reach each library's best rate here in a few seconds;
    tests shrink them."""

    gemm_side: int = 2048  # torch: NxNxN matmul, 8.6 GMAC (as fast per MAC as 4096^3, 8x shorter)
    conv_channels: int = 1024  # OpenVINO / ORT: CONV_LAYERS x 1x1 Conv C->C at SxS, 4.3 GMAC
    conv_side: int = 64
    budget_s: float = 0.6  # timed seconds per probe after one warm-up call (at least MIN_CALLS calls)


SIZE = ProbeSize()


def probe_key(library: str, precision: str) -> str:
    return f"{library}/{precision}"


# ------------------------------------------------------------------------------- the probes
def _time_calls(call: Callable[[], Any], gmac: float, budget_s: float) -> dict[str, Any]:
    """One warm-up call, then calls until the budget is spent; the best call is the peak."""
    call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < MIN_CALLS or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    # three significant digits: a precision emulated in software runs at well under 0.1 GMAC/s
    return {"gmac_per_s": float(f"{gmac / min(times):.3g}"),
            "median_gmac_per_s": float(f"{gmac / statistics.median(times):.3g}"),
            "calls": len(times), "gmac_per_call": round(gmac, 2)}


def torch_probe(precision: str, budget_s: float, side: int) -> dict[str, Any]:
    """An NxNxN torch GEMM with all usable cores: matmul in FP32 or BF16 (oneDNN, the kernels the
    eager model and the BF16 autocast peer reach), torch._int_mm for INT8 (int8 x int8 -> int32).
    N is `side`, or smaller where this CPU is so slow at the precision (BF16 without BF16 units)
    that one call would take more than CALL_S: a 512^3 call first tells."""
    import torch

    from devices import usable_cores

    torch.set_num_threads(usable_cores())
    g = torch.Generator().manual_seed(0)

    def operands(n: int) -> tuple[Any, Any]:
        if precision == "int8":
            return (torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=g),
                    torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=g))
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        return torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)

    op = torch._int_mm if precision == "int8" else torch.matmul
    with torch.inference_mode():
        a, b = operands(SMALL_SIDE)
        op(a, b)
        t0 = time.perf_counter()
        op(a, b)
        rate = SMALL_SIDE ** 3 / max(time.perf_counter() - t0, 1e-9)
        fits = int((rate * CALL_S) ** (1 / 3)) // 256 * 256
        side = max(SMALL_SIDE, min(side, fits))
        a, b = operands(side)
        result = _time_calls(lambda: op(a, b), side ** 3 / 1e9, budget_s)
    what = (f"torch._int_mm {side}x{side}x{side} int8 -> int32" if precision == "int8"
            else f"torch.matmul {side}x{side}x{side} {precision}")
    if precision == "bf16" and not _has_bf16_units():
        what += " (no BF16 units on this CPU: converted in software)"
    return {**result, "what": what, "threads": torch.get_num_threads()}


def _has_bf16_units() -> bool:
    from devices import cpu_info

    flags = cpu_info()["flags"]
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def conv_model(path: Path, int8: bool, channels: int, side: int, layers: int = CONV_LAYERS) -> Path:
    """An ONNX chain of 1x1 Convs (float in, float out); `int8` puts symmetric int8 Q/DQ on every
    activation and per-channel int8 Q/DQ on every weight, the format calib.quantize writes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from artefact.manifest import INPUT_NAME, LABELS_NAME

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = INPUT_NAME
    if int8:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "act_scale"),
                  numpy_helper.from_array(np.array(0, np.int8), "act_zero")]
    for i in range(layers):
        w = (rng.standard_normal((channels, channels, 1, 1)) / np.sqrt(channels)).astype(np.float32)
        out = LABELS_NAME if i == layers - 1 else f"y{i}"
        if not int8:
            inits.append(numpy_helper.from_array(w, f"w{i}"))
            nodes.append(helper.make_node("Conv", [x, f"w{i}"], [out]))
        else:
            scale = (np.abs(w).reshape(channels, -1).max(1) / 127).astype(np.float32)
            q = np.clip(np.round(w / scale[:, None, None, None]), -127, 127).astype(np.int8)
            inits += [numpy_helper.from_array(q, f"wq{i}"), numpy_helper.from_array(scale, f"ws{i}"),
                      numpy_helper.from_array(np.zeros(channels, np.int8), f"wz{i}")]
            nodes += [helper.make_node("QuantizeLinear", [x, "act_scale", "act_zero"], [f"xq{i}"]),
                      helper.make_node("DequantizeLinear", [f"xq{i}", "act_scale", "act_zero"], [f"xd{i}"]),
                      helper.make_node("DequantizeLinear", [f"wq{i}", f"ws{i}", f"wz{i}"], [f"wd{i}"],
                                       axis=0),
                      helper.make_node("Conv", [f"xd{i}", f"wd{i}"], [out])]
        x = out
    shape = [1, channels, side, side]
    graph = helper.make_graph(nodes, "peak_conv",
                              [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(LABELS_NAME, TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def library_probe(library: str, precision: str, folder: Path, budget_s: float, channels: int,
                  side: int) -> dict[str, Any]:
    """The Conv chain on OpenVINO or ONNX Runtime, opened by the runtime's own loader with the
    settings the artefacts get (OpenVINO's precision hint pinned: f32, or bf16 as FP16/INT8
    artefacts run on this CPU; ORT's non-spinning threads)."""
    from devices import openvino_capabilities
    from runtime.backends import open_runner

    if library == "openvino" and precision == "bf16" and "BF16" not in (openvino_capabilities() or []):
        return {"error": "not available here: OpenVINO runs f32 on this CPU (no BF16 units)"}
    int8 = precision == "int8"
    path = folder / f"peak-conv-{'int8' if int8 else 'fp32'}-{channels}x{side}.onnx"
    if not path.is_file():
        conv_model(path, int8, channels, side)
    opts: dict[str, Any] = {"hint": "latency"}
    if library == "openvino":
        opts["precision_hint"] = "f32" if precision == "fp32" else None if int8 else "bf16"
    artefact_precision = {"fp32": "fp32", "bf16": "fp16", "int8": "int8"}[precision]
    gmac = CONV_LAYERS * channels ** 2 * side ** 2 / 1e9
    x = np.random.default_rng(1).standard_normal((channels, side, side)).astype(np.float32)
    with open_runner(library, path, artefact_precision, **opts) as runner:
        ran = runner.precision_ran
        result = _time_calls(lambda: runner.infer(x), gmac, budget_s)
    layers = f"{CONV_LAYERS} x " if CONV_LAYERS > 1 else ""
    what = f"{layers}Conv 1x1 {channels}->{channels} at {side}x{side}{' with int8 Q/DQ' if int8 else ''}"
    return {**result, "what": what, "precision_ran": ran}


def measure_peaks(libraries: Iterable[str], size: ProbeSize | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """{"library/precision": {gmac_per_s (best call), median_gmac_per_s, what, ...}} for every
    probe of the named libraries that is installed here; a probe that fails says why."""
    from devices import backend_usable

    size = size or SIZE
    peaks: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="pspnet-peak-") as tmp:
        for library in libraries:
            for precision in PROBES.get(library, ()):
                key = probe_key(library, precision)
                if progress:
                    progress(key)
                if library != "torch" and not backend_usable(library):
                    peaks[key] = {"error": f"not available here: `pip install {library}`"}
                    continue
                try:
                    peaks[key] = (torch_probe(precision, size.budget_s, size.gemm_side) if library == "torch"
                                  else library_probe(library, precision, Path(tmp), size.budget_s,
                                                     size.conv_channels, size.conv_side))
                except Exception as exc:  # a probe that cannot run is reported, never fatal
                    peaks[key] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return peaks


def bracket(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Peaks measured before and after a run, combined: the mean of the two best-call rates is
    the peak a share is read against, the after/before ratio shows drift during the run."""
    out: dict[str, Any] = {}
    for key in before:
        a, b = before[key], after.get(key, {})
        if "gmac_per_s" not in a or "gmac_per_s" not in b:
            out[key] = {"error": a.get("error") or b.get("error") or "not measured"}
            continue
        out[key] = {"gmac_per_s": round((a["gmac_per_s"] + b["gmac_per_s"]) / 2, 1),
                    "before": a["gmac_per_s"], "after": b["gmac_per_s"],
                    "drift": round(b["gmac_per_s"] / a["gmac_per_s"] - 1, 3), "what": a["what"],
                    **({"precision_ran": a["precision_ran"]} if "precision_ran" in a else {})}
    return out


class PeakBracket:
    """`with PeakBracket(libraries):` around a benchmark's timing loop measures the peaks before and
    after it; `.peaks` is what shares are read against, `.to_dict()` what the result file keeps."""

    def __init__(self, libraries: Iterable[str], enabled: bool = True) -> None:
        self.libraries = list(libraries) if enabled else []
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}
        self.seconds = 0.0

    def _measure(self, when: str) -> dict[str, Any]:
        import sys

        if not self.libraries:
            return {}
        print(f"peak rates {when} ({', '.join(self.libraries)}) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        peaks = measure_peaks(self.libraries)
        self.seconds += time.perf_counter() - t0
        return peaks

    def __enter__(self) -> PeakBracket:
        self.before = self._measure("before the run")
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.after = self._measure("after the run")

    @property
    def peaks(self) -> dict[str, Any]:
        return bracket(self.before, self.after) if self.before and self.after else {}

    def to_dict(self) -> dict[str, Any] | None:
        if not self.libraries:
            return None
        return {"probes": self.peaks, "before": self.before, "after": self.after,
                "seconds": round(self.seconds, 1),
                "method": f"best call of one warm-up + >= {SIZE.budget_s:g} s of calls per probe, before and "
                          "after the timing loop; a share is read against the mean of the two"}


# ------------------------------------------------------------------------------------ shares
def libraries_for(entries: Iterable[dict[str, Any]]) -> list[str]:
    """The libraries a run's contenders use, in PROBES order (torch first: its INT8 GEMM is the
    machine-wide reference for the INT8 ceiling even where no PyTorch contender runs INT8)."""
    used = {"torch" if e["backend"] == "pytorch" else e["backend"] for e in entries}
    return [lib for lib in PROBES if lib in used]


def peak_for(backend: str, precision: str, precision_ran: str | None) -> str | None:
    """The probe a contender's share is read against: its own library, at the precision its
    big convolutions really ran (INT8 artefacts: int8; OpenVINO FP16 on a CPU without FP16 units:
    bf16). None where no probe exists (TensorRT without a GPU, ORT's FP16 casts)."""
    ran = (precision_ran or precision).lower()
    if backend == "pytorch":
        return probe_key("torch", "bf16" if ran == "bf16" else "fp32")
    if backend not in PROBES:
        return None
    if precision == "int8":
        return probe_key(backend, "int8")
    float_type = {"f32": "fp32", "fp32": "fp32", "bf16": "bf16"}.get(ran)
    key = probe_key(backend, float_type) if float_type else None
    return key if key and float_type in PROBES[backend] else None


def add_shares(entries: Sequence[dict[str, Any]], peaks: dict[str, Any], gmac: float) -> None:
    """Per timed entry: sustained GMAC/s (work per frame / mean inference time) and the share of
    its own library's peak, with the probe named."""
    from benchmarks.work import gmac_per_second

    for e in entries:
        if e.get("status") != "ok" or "latency_ms" not in e:
            continue
        rate = gmac_per_second(gmac, e["latency_ms"]["inference"]["mean"])
        e["gmac_per_s"] = round(rate, 1) if rate else None
        key = peak_for(e["backend"], e["precision"], e.get("precision_ran"))
        peak = (peaks.get(key) or {}).get("gmac_per_s") if key else None
        e["peak"] = {"probe": key, "gmac_per_s": peak,
                     "share": round(rate / peak, 3) if rate and peak else None}


def best_rate(peaks: dict[str, Any], precision: str) -> tuple[str | None, float | None]:
    """The fastest probe of a precision over every library: the machine's peak as far as we
    can reach it."""
    rates = [(k, v["gmac_per_s"]) for k, v in peaks.items()
             if k.endswith("/" + precision) and isinstance(v, dict) and v.get("gmac_per_s")]
    return max(rates, key=lambda kv: kv[1]) if rates else (None, None)


def int8_ceiling(entries: Sequence[dict[str, Any]], peaks: dict[str, Any]) -> dict[str, Any] | None:
    """How much faster per frame INT8 can be than the fastest PyTorch contender at most (the BF16
    peer where the CPU has BF16 units, else eager FP32): the fastest INT8 probe over that
    contender's sustained rate (an INT8 model at 100 % of the peak against PyTorch as it ran),
    beside what the fastest INT8 contender of the run reached."""
    best = max((e for e in entries if e.get("backend") == "pytorch" and e.get("gmac_per_s")),
               key=lambda e: e["gmac_per_s"], default=None)
    key, int8_peak = best_rate(peaks, "int8")
    if best is None or not int8_peak:
        return None
    int8 = max((e for e in entries if e.get("precision") == "int8" and e.get("gmac_per_s")),
               key=lambda e: e["gmac_per_s"], default=None)
    rate = int8["gmac_per_s"] if int8 else None
    return {"pytorch": best["name"], "pytorch_label": best.get("label"),
            "pytorch_gmac_per_s": best["gmac_per_s"],
            "int8_probe": key, "int8_peak_gmac_per_s": int8_peak,
            "max_speedup_int8_vs_pytorch": round(int8_peak / best["gmac_per_s"], 2),
            "best_int8": int8["name"] if int8 else None,
            "best_int8_label": int8.get("label") if int8 else None,
            "best_int8_speedup_vs_pytorch": round(rate / best["gmac_per_s"], 2) if rate else None,
            "best_int8_share_of_machine_int8_peak": round(rate / int8_peak, 3) if rate else None}


# --------------------------------------------------------------------------------- reporting
def peak_rows(peaks: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, p in peaks.items():
        if "error" in p:
            rows.append([key, p["error"][:70], "", "", ""])
            continue
        drift = p.get("drift")
        rows.append([key, p["what"] + (f" (ran {p['precision_ran']})" if p.get("precision_ran") else ""),
                     rate_text(p["gmac_per_s"]),
                     f"{rate_text(p.get('before'))} / {rate_text(p.get('after'))}",
                     "" if drift is None else f"{drift * 100:+.0f} %"])
    return rows


PEAK_HEADER = ["probe", "what", "peak GMAC/s", "before / after", "drift"]


def rate_text(x: float | None) -> str:
    """A GMAC/s figure with enough digits to tell slow paths apart (0.4, 7.3, 182)."""
    if x is None:
        return "–"
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}" if x >= 0.1 else f"{x:.2f}"


def share_text(entry: dict[str, Any]) -> str:
    """'62 % of openvino/int8' for a table cell; over 100 % is flagged: that library reached a
    faster kernel in the model than in the probe, so the probe is not its peak here."""
    p = entry.get("peak") or {}
    if p.get("share") is None:
        return "–"
    return f"{p['share'] * 100:.0f} % of {p['probe']}" + (" (!)" if p["share"] > 1.0 else "")


def ceiling_line(c: dict[str, Any] | None) -> str | None:
    if not c:
        return None
    text = (f"INT8 ceiling: the fastest INT8 GEMM here ({c['int8_probe']}, "
            f"{rate_text(c['int8_peak_gmac_per_s'])} GMAC/s) is {c['max_speedup_int8_vs_pytorch']:.2f}x "
            f"the rate the fastest PyTorch contender sustained "
            f"({c['pytorch_label']}, {rate_text(c['pytorch_gmac_per_s'])} GMAC/s), so per frame INT8 can "
            f"beat it by {c['max_speedup_int8_vs_pytorch']:.1f}x at most")
    if c.get("best_int8"):
        text += (f"; {c['best_int8_label']} reached {c['best_int8_speedup_vs_pytorch']:.2f}x "
                 f"({c['best_int8_share_of_machine_int8_peak'] * 100:.0f} % of that INT8 peak)")
    return text
