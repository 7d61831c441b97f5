"""/metrics: the run's figures in Prometheus' text format, through prometheus_client.

Every series carries a `stream` label so several streams of one process (and many boxes in one
Grafana) stay apart. Stage latencies are histograms fed with every frame by the write stage
(a lock and a bisect per stage, microseconds); frame and drop counts, FPS, viewers and the
class shares are read from the streams when Prometheus scrapes, so nothing else is added to
the pipeline's path. Process CPU and memory come from prometheus_client's own collectors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from runtime.stats import E2E

if TYPE_CHECKING:
    from runtime.live.stream import LiveStream

disable_created_metrics()  # *_created series double what Grafana has to skip; our process, our choice
PREFIX = "pspnet_rt"
# 0.5 ms (pre/post on small frames) .. 5 s (a 713x713 PSPNet101 on a CPU)
BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0,
             2.5, 5.0, float("inf"))


class LiveMetrics:
    """One registry per server; `observer(stream)` gives the write stage its per-frame hook."""

    def __init__(self, streams: Callable[[], Iterable[LiveStream]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.stage_seconds = Histogram(
            f"{PREFIX}_stage_seconds", "Time per frame in each pipeline stage (end-to-end: frame "
            "available -> written)", ["stream", "stage"], buckets=BUCKETS_S, registry=self.registry)
        self.registry.register(_StreamCollector(streams))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def observer(self, stream: str) -> Callable[[dict[str, float], float], None]:
        children: dict[str, object] = {}

        def observe(times: dict[str, float], e2e_ms: float) -> None:
            for stage, ms in (*times.items(), (E2E, e2e_ms)):
                child = children.get(stage)
                if child is None:
                    child = children[stage] = self.stage_seconds.labels(stream=stream, stage=stage)
                child.observe(ms / 1e3)  # type: ignore[attr-defined]

        return observe

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition the scraper asked for (text 0.0.4 or OpenMetrics) and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _StreamCollector:
    """Counters and gauges read from the streams at scrape time."""

    def __init__(self, streams: Callable[[], Iterable[LiveStream]]) -> None:
        self._streams = streams

    def collect(self) -> Iterator[Metric]:
        frames = CounterMetricFamily(f"{PREFIX}_frames_processed", "Frames written by the pipeline",
                                     labels=["stream"])
        dropped = CounterMetricFamily(f"{PREFIX}_frames_dropped", "Frames not processed, by reason",
                                      labels=["stream", "reason"])
        fps = GaugeMetricFamily(f"{PREFIX}_fps", "Frames per second over the last seconds", labels=["stream"])
        running = GaugeMetricFamily(f"{PREFIX}_stream_running", "1 while the stream's pipeline runs",
                                    labels=["stream"])
        viewers = GaugeMetricFamily(f"{PREFIX}_live_viewers", "Live-view clients streaming frames now",
                                    labels=["stream"])
        encoded = CounterMetricFamily(f"{PREFIX}_live_jpeg_encoded", "Frames encoded to JPEG for the "
                                      "live view (once per frame, whatever the number of viewers)",
                                      labels=["stream"])
        shares = GaugeMetricFamily(f"{PREFIX}_class_pixel_share", "Share of the latest live frame's pixels "
                                   "in each class", labels=["stream", "class"])
        info = InfoMetricFamily(f"{PREFIX}_model", "What runs: backend, device, precision, model",
                                labels=["stream"])
        for s in self._streams():
            fig = s.figures()
            frames.add_metric([s.name], fig["frames"])
            for reason, n in fig["dropped"].items():
                dropped.add_metric([s.name, reason], n)
            fps.add_metric([s.name], fig["fps"])
            running.add_metric([s.name], 1.0 if fig["state"] == "running" else 0.0)
            viewers.add_metric([s.name], fig["viewers"])
            encoded.add_metric([s.name], fig["jpeg"]["encoded"])
            for c in fig["classes"]:
                if c["share"] is not None:
                    shares.add_metric([s.name, c["name"]], c["share"])
            b = s.backend
            if b:
                keys = ("backend", "device", "precision", "precision_ran", "model", "artefact")
                labels = {k: str(b.get(k, "")) for k in keys}
                labels["input_size"] = "x".join(str(v) for v in b.get("input_size", []))
                info.add_metric([s.name], labels)
        yield from (frames, dropped, fps, running, viewers, encoded, shares, info)
