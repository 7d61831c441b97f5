"""The accuracy gate: a reduced-precision model is measured against FP32 on held-out frames.

mIoU vs ground truth (when labels exist), mIoU and pixel agreement vs FP32's own predictions,
and per-class IoU drop. A build whose drop exceeds the limit fails and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calib.sources import FrameSet
from segdata.evaluation import agreement, confusion


@dataclass
class GateReport:
    images: int
    fp32_miou: float | None
    miou: float | None
    miou_drop_points: float | None  # 100 x (fp32 - candidate) on ground truth
    miou_vs_fp32: float  # candidate scored against FP32's predictions as if they were labels
    pixel_agreement: float
    per_class: dict[str, dict] = field(default_factory=dict)
    passed: bool = True
    limit_points: float = 1.0
    note: str = ""
    precision_ran: str | None = None  # what the gate's runner reported it ran
    # artefacts with a confidence output: its error against FP32's (segdata.confidence.confidence_error);
    # reported, not gated (the mIoU limit decides)
    confidence: dict | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def table(self) -> str:
        rows = [f"{'class':16s} {'FP32 IoU':>9s} {'IoU':>9s} {'drop':>7s}"]
        for name, c in self.per_class.items():
            if c["fp32"] is None:
                continue
            rows.append(f"{name:16s} {c['fp32'] * 100:9.2f} {c['candidate'] * 100:9.2f} "
                        f"{c['drop_points']:7.2f}")
        if self.miou is not None:
            rows.append(f"{'mIoU':16s} {self.fp32_miou * 100:9.2f} {self.miou * 100:9.2f} "
                        f"{self.miou_drop_points:7.2f}")
        rows.append(f"pixel agreement with FP32: {self.pixel_agreement * 100:.2f} %  "
                    f"(mIoU vs FP32 predictions {self.miou_vs_fp32 * 100:.2f})")
        if self.confidence is not None:
            c = self.confidence
            rows.append(f"confidence vs FP32 (levels of 255): mean |Δ| {c['mean_abs_levels']:.2f}, "
                        f"p99 {c['p99_abs_levels']:g}, max {c['max_abs_levels']}, "
                        f"mean Δ {c['mean_signed_levels']:+.2f}")
        return "\n".join(rows)


def _iou_or_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def gate(fp32_preds: list[np.ndarray], preds: list[np.ndarray], evalset: FrameSet,
         classes: list[str], limit_points: float) -> GateReport:
    n = len(classes)
    vs_fp32 = confusion(preds, fp32_preds, n)
    report = GateReport(images=len(preds), fp32_miou=None, miou=None, miou_drop_points=None,
                        miou_vs_fp32=float(vs_fp32.miou()),
                        pixel_agreement=agreement(preds, fp32_preds), limit_points=limit_points)
    if any(label is not None for label in evalset.labels):
        ref = confusion(fp32_preds, evalset.labels, n, evalset.ignore_index)
        cand = confusion(preds, evalset.labels, n, evalset.ignore_index)
        report.fp32_miou, report.miou = float(ref.miou()), float(cand.miou())
        report.miou_drop_points = round((report.fp32_miou - report.miou) * 100, 3)
        for name, a, b in zip(classes, ref.iou(), cand.iou()):
            a, b = _iou_or_none(a), _iou_or_none(b)
            report.per_class[name] = {"fp32": a, "candidate": b,
                                      "drop_points": round((a - (b or 0.0)) * 100, 3)
                                      if a is not None else None}
        report.passed = report.miou_drop_points <= limit_points
    else:
        # No ground truth: the drop is measured against FP32's predictions instead.
        report.note = "no labels: gate on mIoU vs FP32 predictions"
        report.passed = (1 - report.miou_vs_fp32) * 100 <= limit_points
    return report
