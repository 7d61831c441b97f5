"""PNG figures (matplotlib, Agg): distributions, per-stage breakdown, drift over time, scaling.

Why these three views of latency: a mean hides jitter (the distribution shows it), an
inference-only figure hides pre/post cost (the stacked breakdown shows the whole frame), and
a single number hides drift or thermal throttling during the run (the time series shows it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import save_figure

STAGE_COLOURS = {"pre": "#8da0cb", "inference": "#fc8d62", "post": "#66c2a5"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ok(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r.get("status") == "ok" and r.get("per_frame_ms")]


def latency_figure(result: dict[str, Any], path: Path) -> Path:
    """Three panels: total-latency distribution, mean stage breakdown, per-frame latency."""
    plt = _pyplot()
    runs = _ok(result["contenders"])
    labels = [r["label"] for r in runs]
    totals = [[sum(v) for v in zip(*(r["per_frame_ms"][s] for s in ("pre", "inference", "post")))]
              for r in runs]
    fig, axes = plt.subplots(3, 1, figsize=(11, 4 + 1.6 * max(len(runs), 1) + 4))
    cfg = result["config"]
    fig.suptitle(f"{cfg['model']} at {cfg['input_size'][0]}x{cfg['input_size'][1]}, {cfg['frames']} frames "
                 f"of {cfg['video']} (interleaved), {result['environment']['cpu']['model']} "
                 f"x{result['environment']['cpu']['usable_cores']} cores", fontsize=10)

    ax = axes[0]
    if runs:
        parts = ax.violinplot(totals, vert=False, showmedians=True, showextrema=True)
        for body in parts["bodies"]:
            body.set_alpha(0.5)
        ax.set_yticks(range(1, len(runs) + 1), labels, fontsize=8)
        for i, r in enumerate(runs, 1):
            med = r["latency_ms"]["total"]["p50"]
            ax.annotate(f"p50 {med:.1f} ms", (med, i), xytext=(4, 6), textcoords="offset points", fontsize=7)
        ax.invert_yaxis()  # first contender on top, as in the breakdown below
    ax.set_xscale("log")
    ax.set_xlabel("whole-frame latency per frame, ms (pre + inference + post, log scale)")
    ax.set_title("latency distribution", fontsize=9)
    ax.grid(True, axis="x", which="both", alpha=0.3)

    ax = axes[1]
    left = [0.0] * len(runs)
    for stage in ("pre", "inference", "post"):
        widths = [r["latency_ms"][stage]["mean"] for r in runs]
        ax.barh(range(len(runs)), widths, left=left, color=STAGE_COLOURS[stage], label=stage)
        left = [a + b for a, b in zip(left, widths)]
    for i, r in enumerate(runs):
        fps = r["fps"]["pipeline_sequential"]
        speed = (r.get("speedup") or {}).get("vs_pytorch_eager_fp32")
        text = f" {left[i]:.1f} ms, {fps:.1f} FPS" + (f", x{speed:.1f} vs eager" if speed else "")
        ax.text(left[i], i, text, va="center", fontsize=7)
    ax.set_yticks(range(len(runs)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(left or [1]) * 1.45)
    ax.set_xlabel("mean ms per frame")
    ax.set_title("where a frame's time goes (mean per stage)", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)

    ax = axes[2]
    for label, t in zip(labels, totals):
        ax.plot(range(len(t)), t, label=label, linewidth=0.9)
    ax.set_yscale("log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("frame")
    ax.set_ylabel("ms (log)")
    ax.set_title("per-frame whole-frame latency over the run (drift, outliers)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if runs:
        ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # leave the suptitle its own line
    save_figure(fig, path)
    plt.close(fig)
    return path


def scaling_figure(result: dict[str, Any], path: Path) -> Path:
    """Latency vs input size (log-log over megapixels) and vs backbone (grouped bars); a
    memory-only run (no sweep, only the RSS targets) gets the memory figure instead."""
    if not result.get("sizes") and not result.get("backbones"):
        return memory_figure(result, path)
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    fig.suptitle(f"inference latency, mean ms per frame ({result['environment']['cpu']['model']} "
                 f"x{result['environment']['cpu']['usable_cores']} cores)", fontsize=10)
    sizes = [p for p in result.get("sizes", []) if p.get("contenders")]
    series: dict[str, list[tuple[float, float, str]]] = {}
    for point in sizes:
        h, w = point["input_size"]
        for c in point["contenders"]:
            if c.get("status") == "ok":
                series.setdefault(c["label"], []).append((h * w / 1e6, c["latency_ms"]["inference"]["mean"],
                                                          f"{h}x{w}"))
    for label, pts in series.items():
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    ticks = sorted({(p[0], p[2]) for pts in series.values() for p in pts})
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    if ticks:
        ax1.set_xticks([t[0] for t in ticks], [t[1] for t in ticks], fontsize=8, rotation=35, ha="right")
        ax1.minorticks_off()
    model = sizes[0]["model"] if sizes else ""
    ax1.set_title(f"vs input size ({model})", fontsize=9)
    ax1.set_xlabel("input size (log pixels)")
    ax1.set_ylabel("ms (log)")
    ax1.grid(True, which="both", alpha=0.3)
    if series:
        ax1.legend(fontsize=8)

    points = [p for p in result.get("backbones", []) if p.get("contenders")]
    if not points:
        ax2.axis("off")
        ax2.text(0.5, 0.5, "backbone sweep not run", ha="center", va="center", transform=ax2.transAxes)
    labels = sorted({c["label"] for p in points for c in p["contenders"] if c.get("status") == "ok"},
                    key=lambda s: (not s.startswith("PyTorch"), s))
    width = 0.8 / max(len(labels), 1)
    lowest, highest = 300.0, 300.0
    for j, label in enumerate(labels):
        xs, ys = [], []
        for i, p in enumerate(points):
            c = next((c for c in p["contenders"] if c["label"] == label and c.get("status") == "ok"), None)
            if c:
                xs.append(i + j * width - 0.4 + width / 2)
                ys.append(c["latency_ms"]["inference"]["mean"])
        lowest, highest = min([lowest, *ys]), max([highest, *ys])
        bars = ax2.bar(xs, ys, width, label=label)
        ax2.bar_label(bars, fmt="%.0f", fontsize=7)
    if not points:
        fig.tight_layout()
        save_figure(fig, path)
        plt.close(fig)
        return path
    ax2.set_xticks(range(len(points)),
                   [f"{p['model']}\n{p['input_size'][0]}x{p['input_size'][1]}\n({p['weights']})"
                    for p in points], fontsize=7)
    ax2.set_yscale("log")
    ax2.set_ylim(lowest / 3, highest * 4)  # log bars need a floor below the shortest; room for the legend
    ax2.axhline(300, color="red", linestyle="--", linewidth=0.8)
    ax2.text(0.01, 310, "0.3 s/frame target", color="red", fontsize=7, transform=ax2.get_yaxis_transform())
    ax2.set_ylabel("ms (log)")
    ax2.set_title("vs backbone", fontsize=9)
    ax2.grid(True, axis="y", which="both", alpha=0.3)
    if labels:
        ax2.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def memory_figure(result: dict[str, Any], path: Path) -> Path:
    """pspnet-rt's peak RSS per RSS target, one request (--hint latency) and the throughput hint's
    several, against the target: where each model stands, in one glance."""
    plt = _pyplot()
    targets = [(k, t) for k, t in result.get("targets", {}).items()
               if k.endswith("_runtime_rss") and t.get("peak_rss_mb") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cpu = result["environment"]["cpu"]
    fig.suptitle(f"pspnet-rt peak RSS, INT8 ({cpu['model']} x{cpu['usable_cores']} cores)", fontsize=10)
    for i, (_, t) in enumerate(targets):
        high = t.get("throughput_hint") or {}
        bars = ax.bar([i - 0.2, i + 0.2], [t["peak_rss_mb"], high.get("peak_rss_mb") or 0], 0.38,
                      color=["#fc8d62", "#8da0cb"])
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
        limit = t.get("limit_mb")
        if limit:
            ax.hlines(limit, i - 0.45, i + 0.45, colors="red", linestyles="--", linewidth=1)
            ax.text(i + 0.45, limit, f" {limit:.0f} MB", color="red", fontsize=7, va="center")
    ax.set_xticks(range(len(targets)), [t["what"].split(" INT8")[0].replace(" ", "\n") for _, t in targets],
                  fontsize=8)
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in ("#fc8d62", "#8da0cb")],
              labels=["one request (--hint latency): the target", "throughput hint (several requests)"],
              fontsize=8, loc="upper left")
    ax.set_ylabel("peak RSS MB")
    highest = max([(t.get("throughput_hint") or {}).get("peak_rss_mb") or 0 for _, t in targets] + [400])
    ax.set_ylim(0, highest * 1.25)  # room for the legend
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def temporal_figure(result: dict[str, Any], path: Path) -> Path:
    """mIoU vs pipeline FPS per clip: every frame, fixed intervals, adaptive thresholds, with
    the target box (>= 2x the every-frame FPS at <= 1 point below its mIoU) dashed."""
    plt = _pyplot()
    clips = list(dict.fromkeys(r["clip"] for r in result["rows"]))
    cols = min(3, len(clips) + 1)
    rows_n = (len(clips) + 1 + cols - 1) // cols  # one panel per clip, then the mean over clips
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.2 * cols, 4.2 * rows_n), squeeze=False)
    eng = result["engine"]
    fig.suptitle(f"video-aware inference: mIoU vs pipeline FPS per held-out clip (key frames: "
                 f"{eng['backend']} {eng['precision_ran']}; {result['environment']['cpu']['model']} "
                 f"x{result['environment']['cpu']['usable_cores']} cores)", fontsize=10)
    for ax, clip in zip(axes.ravel(), clips):
        rs = {r["mode"]: r for r in result["rows"] if r["clip"] == clip}
        base = rs["off"]
        fixed = [base] + [rs[m] for m in sorted((m for m in rs if m.startswith("fixed:")),
                                                key=lambda m: int(m.split(":")[1]))]
        adaptive = sorted((r for m, r in rs.items() if m.startswith("adaptive@") and "/" not in m),
                          key=lambda r: float(r["mode"].split("@")[1]))
        forward = [r for m, r in rs.items() if m.endswith("/forward")]
        ax.plot([r["fps"] for r in fixed], [r["miou"] * 100 for r in fixed], "s-", color="#8da0cb",
                label="every frame, then fixed:N")
        for r in fixed:
            n = "1" if r["mode"] == "off" else r["mode"].split(":")[1]
            ax.annotate(n, (r["fps"], r["miou"] * 100), xytext=(3, 3), textcoords="offset points", fontsize=7)
        ax.plot([r["fps"] for r in adaptive], [r["miou"] * 100 for r in adaptive], "o-", color="#fc8d62",
                label="adaptive (threshold)")
        for r in adaptive:
            ax.annotate(r["mode"].split("@")[1], (r["fps"], r["miou"] * 100), xytext=(3, -9),
                        textcoords="offset points", fontsize=7, color="#d95f02")
        for r in forward:
            ax.plot([r["fps"]], [r["miou"] * 100], "^", color="#66c2a5",
                    label=f"adaptive {r['mode'].split('@')[1].split('/')[0]}, forward only (live)")
        ax.axhline(base["miou"] * 100 - 1.0, color="grey", linestyle="--", linewidth=0.8)
        ax.axvline(base["fps"] * 2.0, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(clip, fontsize=9)
        ax.set_xlabel("pipeline FPS")
        ax.set_ylabel("mIoU % (classes in the clip)")
        ax.grid(True, alpha=0.3)
    _temporal_mean_panel(axes.ravel()[len(clips)], result)
    for ax in axes.ravel()[len(clips) + 1:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7, loc="lower left")
    fig.text(0.01, 0.005, "dashed: 1 mIoU point below every frame, and twice its FPS "
             "(the issue's target box)", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    save_figure(fig, path)
    plt.close(fig)
    return path


def _temporal_mean_panel(ax: Any, result: dict[str, Any]) -> None:
    """Mean over clips: mIoU drop (points) vs speed-up, with the target corner shaded."""
    modes = result["summary"]["modes"]
    series = {"every frame, then fixed:N": [m for m in modes if m == "off" or m.startswith("fixed:")],
              "adaptive (threshold)": sorted((m for m in modes if m.startswith("adaptive@") and "/" not in m),
                                             key=lambda m: float(m.split("@")[1]))}
    for (label, names), style in zip(series.items(), (("s-", "#8da0cb"), ("o-", "#fc8d62"))):
        xs = [modes[m]["mean_speedup"] for m in names]
        ys = [modes[m]["mean_drop_points"] for m in names]
        ax.plot(xs, ys, style[0], color=style[1], label=label)
        for m, x, y in zip(names, xs, ys):
            tag = "1" if m == "off" else m.split(":")[1] if m.startswith("fixed:") else m.split("@")[1]
            ax.annotate(tag, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
    for m in (m for m in modes if m.endswith("/forward")):
        ax.plot([modes[m]["mean_speedup"]], [modes[m]["mean_drop_points"]], "^", color="#66c2a5",
                label=f"adaptive {m.split('@')[1].split('/')[0]}, forward only (live)")
    top = max(max(v["mean_drop_points"] for v in modes.values()), 1.5)
    right = max(max(v["mean_speedup"] for v in modes.values()), 2.5)
    ax.fill_between([2.0, right * 1.05], -0.5, 1.0, color="#66c2a5", alpha=0.15,
                    label="target: >= 2x at <= 1 point")
    ax.set_xlim(0.8, right * 1.05)
    ax.set_ylim(top * 1.05, -0.5)  # down is worse
    ax.set_title(f"mean over {len(set(r['clip'] for r in result['rows']))} clips", fontsize=9)
    ax.set_xlabel("speed-up vs every frame (pipeline FPS)")
    ax.set_ylabel("mIoU drop, points (down = worse)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
