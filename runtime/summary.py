"""What a run did, as a value: `RunSummary` (the table printed on exit, the --summary-json
object, the failures), made once for one stream or several."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.stats import RunStats


@dataclass
class RunSummary:
    """The result of `runtime.run.run` (and `pspnet_rt.run`).

    `ok` is True when frames were segmented and every output was verified whole at close;
    `errors` are the failures, one line each (the first is what `pspnet-rt` prints);
    `exit_signal` the exit code of the signal that stopped the run, if one did.
    """

    frames: int
    fps: float
    errors: list[str]
    table: str  # the human table (`pspnet-rt` prints it)
    data: dict[str, Any]  # the --summary-json object
    exit_signal: int | None = None
    no_frames: str = ""  # why no frame came, said when `frames` is 0
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)  # per stream, several streams only

    @property
    def ok(self) -> bool:
        return not self.errors and self.frames > 0


def stream_line(stats: RunStats, source: Any) -> str:
    """One stream's row in a several-stream summary."""
    e2e = stats.stages["end-to-end"]
    p50, _, p99 = e2e.percentiles() if e2e.seen else (float("nan"),) * 3
    dropped = sum(stats.drops.values())
    ended = f", ended: {source.end_reason}" if source.end_reason else ""
    return (f"{stats.frames} frames, {stats.fps:.2f} FPS, end-to-end p50 {p50:.1f} / p99 {p99:.1f} ms, "
            f"{dropped} dropped - {source.describe()}{ended}")


def summarize(total: RunStats, streams: list[tuple[str, Any, RunStats]], backend: Any, cpu_ms: float,
              errors: list[str], exit_signal: int | None,
              bench: tuple[str, dict[str, Any]] | None = None, sinks: list[Any] | None = None) -> RunSummary:
    """The summary of a finished run: `streams` are (name, source, its stats); `total` is all of
    them as one run (runtime.streams.merge_stats); `errors` the failures found so far. One stream
    is said as `source`, several as a row each and a `streams` object in the JSON."""
    several = len(streams) > 1
    info = backend.describe()
    choice = backend.manifest.build.get("precision_choice") or {}
    shared = f", shared by {len(streams)} streams" if several else ""
    extra = [("backend", f"{info['backend']} on {info['device']}, precision {info['precision_ran']} "
                         f"(manifest {info['precision']}), {info['in_flight']} in flight{shared}")]
    if choice:
        extra.append(("precision", f"--precision auto chose {choice.get('chosen')}: {choice.get('why')}"))
    data: dict[str, Any] = {**total.to_dict(), "backend": info, "precision_choice": choice or None}
    per_stream: dict[str, dict[str, Any]] = {}
    if several:
        extra += [(f"stream {name}", stream_line(stats, source)) for name, source, stats in streams]
        per_stream = {name: {**stats.to_dict(), **_source_facts(source)} for name, source, stats in streams}
        no_frames = "no frames came from any stream"
    else:
        _, source, _ = streams[0]
        ended = f", ended: {source.end_reason}" if source.end_reason else ""
        reconnects = f", {source.reconnects} reconnects" if source.reconnects else ""
        extra.append(("source", source.describe() + ended + reconnects))
        data.update(_source_facts(source))
        no_frames = f"no frames came from {source.describe()} ({source.end_reason or 'empty'})"
    extra += backend.summary_lines()
    for sink in sinks or []:  # an output with figures of its own (RTSP out: frames, drops, clients)
        if hasattr(sink, "report"):
            label, line, key, facts = sink.report()
            extra.append((label, line))
            data[key] = facts
    if bench is not None:
        extra.append(("vs bare", bench[0]))
    if errors:
        extra.append(("outputs", "NOT all written: " + errors[0]))
    title = "pspnet-rt summary"
    if several:
        title += f" ({len(streams)} streams, throughput summed over them)"
    data["cpu_ms_per_frame"] = round(cpu_ms, 2)
    if not several:
        data["benchmark"] = bench[1] if bench is not None else None
    data["exit_signal"] = exit_signal
    if several:
        data["streams"] = per_stream
    return RunSummary(total.frames, total.fps, errors, total.summary(title, extra, outputs_whole=not errors),
                      data, exit_signal, no_frames, per_stream)


def _source_facts(source: Any) -> dict[str, Any]:
    return {"source": source.describe(), "end_reason": source.end_reason, "reconnects": source.reconnects}
