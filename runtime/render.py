"""Class maps -> pictures: palette LUT, alpha overlay, side-by-side, and a legend of the classes
present in the frame. The per-frame work is one LUT gather and one blend; legends are drawn
once per set of classes and cached."""

from __future__ import annotations

import threading
from functools import lru_cache

import cv2
import numpy as np

from artefact.manifest import Manifest
from segdata.label_sets import from_manifest
from segdata.labels import palette_lut_bgr

MODES = ("overlay", "mask", "side-by-side", "confidence")
# --visualize confidence: a perceptually uniform map, dark = uncertain, bright = confident
CONFIDENCE_COLORMAP = cv2.COLORMAP_INFERNO
NEUTRAL_BGR = (128, 128, 128)  # ignore / unknown ids: grey, so they read as 'no class'
LEGEND_MAX_ROWS = 12


# cv2.calcHist counts in float32: exact below 2**24 pixels (a 4K frame has 8.3 M)
EXACT_HISTOGRAM_PIXELS = 2**24


def present_classes(labels: np.ndarray, num_classes: int) -> list[int]:
    """Class ids that occur in a label map, most frequent first (ignore and unknown ids left out).
    Counted with cv2.calcHist where its float counts are exact: np.bincount first widens the map
    to int64 (0.9 MB at 240x480), a fresh mapping per frame under runtime.memory's malloc setting."""
    if labels.dtype == np.uint8 and labels.size < EXACT_HISTOGRAM_PIXELS:
        counts = cv2.calcHist([labels], [0], None, [256], [0, 256]).ravel().astype(np.int64)[:num_classes]
    else:
        counts = np.bincount(labels.ravel(), minlength=256)[:num_classes]
    ids = np.flatnonzero(counts)
    return [int(i) for i in ids[np.argsort(-counts[ids], kind="stable")]]


class Renderer:
    """Draws one frame in one of MODES; build once per run (the LUT and legends are cached)."""

    def __init__(self, classes: list[str], palette: list[list[int]], *, mode: str = "overlay",
                 alpha: float = 0.5, legend: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown --visualize {mode!r}; choose {', '.join(MODES)}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"--alpha must be within 0..1, got {alpha}")
        self.classes = list(classes)
        self.palette = [tuple(int(c) for c in p) for p in palette]
        self.mode = mode
        self.alpha = float(alpha)
        self.legend = legend
        self.lut = palette_lut_bgr(self.palette, NEUTRAL_BGR)  # 256x3, ids past the palette -> grey
        self._lut_cv = np.ascontiguousarray(self.lut.reshape(256, 1, 3))
        self._legend = lru_cache(maxsize=256)(self._draw_legend)
        self._scale = lru_cache(maxsize=8)(self._draw_scale)
        self._local = threading.local()  # per render thread: streams share one Renderer

    @property
    def needs_confidence(self) -> bool:
        """Whether render() draws the confidence map (an artefact built with --confidence)."""
        return self.mode == "confidence"

    @classmethod
    def from_manifest(cls, manifest: Manifest, **kwargs: object) -> Renderer:
        labels = from_manifest(manifest)  # the one label-set loader (any class count)
        return cls(labels.classes, labels.palette, **kwargs)  # type: ignore[arg-type]

    def colorize(self, labels: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray:
        """The palette colour of every pixel (BGR). One OpenCV call (a user colour map is a LUT
        from grey), ~6x faster than numpy fancy indexing (lut[labels]); `dst` is reused if given."""
        return cv2.applyColorMap(labels, self._lut_cv, dst=dst)

    def _scratch(self, shape: tuple[int, ...]) -> np.ndarray:
        """This thread's reusable buffer for an intermediate picture: each render would otherwise
        allocate and map a fresh frame-sized block (runtime.memory keeps large blocks unpooled)."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.shape != shape:
            buf = self._local.buf = np.empty(shape, np.uint8)
        return buf

    def render(self, frame: np.ndarray, labels: np.ndarray, present: list[int] | None = None,
               confidence: np.ndarray | None = None) -> np.ndarray:
        """frame (HxWx3 BGR) + labels (HxW, same size) -> the picture for this mode; the confidence
        mode draws `confidence` (HxW uint8, 255 = 1.0) as a heat map over the frame instead."""
        if self.mode == "confidence":
            return self.heat_map(frame, confidence)
        if self.mode == "mask":  # the colours are the picture: a buffer of its own
            out, legend_x = self.colorize(labels), 0
        else:  # the colours are an intermediate: this thread's buffer
            color = self.colorize(labels, self._scratch((*labels.shape[:2], 3)))
            if self.mode == "overlay":
                out, legend_x = cv2.addWeighted(frame, 1.0 - self.alpha, color, self.alpha, 0.0), 0
            else:
                out, legend_x = np.hstack([frame, color]), frame.shape[1]
        if self.legend:
            if present is None:
                present = present_classes(labels, len(self.classes))
            self._blend_legend(out, present, legend_x, frame.shape[0])
        return out

    def heat_map(self, frame: np.ndarray, confidence: np.ndarray | None) -> np.ndarray:
        """The confidence map in CONFIDENCE_COLORMAP, blended over the frame with --alpha, and (with
        the legend on) a 0-100 % scale bar."""
        if confidence is None:
            raise ValueError("--visualize confidence needs the artefact's confidence output")
        heat = cv2.applyColorMap(confidence, CONFIDENCE_COLORMAP)
        out = cv2.addWeighted(frame, 1.0 - self.alpha, heat, self.alpha, 0.0)
        if self.legend:
            row = max(12, min(24, frame.shape[0] // 16))
            patch = self._scale(row)
            h, w = min(patch.shape[0], out.shape[0] - 4), min(patch.shape[1], out.shape[1] - 4)
            if h > 0 and w > 0:
                roi = out[4:4 + h, 4:4 + w]
                roi[:] = cv2.addWeighted(roi, 0.25, patch[:h, :w], 0.75, 0.0)
        return out

    def _draw_scale(self, row: int) -> np.ndarray:
        """A horizontal colour bar from 0 % to 100 % confidence with its ends labelled."""
        font, scale = cv2.FONT_HERSHEY_SIMPLEX, row / 32.0
        bar_w = row * 6
        ramp = np.linspace(0, 255, bar_w).astype(np.uint8)[None].repeat(max(4, row // 2), 0)
        bar = cv2.applyColorMap(ramp, CONFIDENCE_COLORMAP)
        texts = ("0%", "100%", "confidence")
        widths = [cv2.getTextSize(t, font, scale, 1)[0][0] for t in texts]
        patch = np.full((row * 2 + bar.shape[0] + 4, max(bar_w + 8, widths[2] + 8), 3), 32, np.uint8)
        cv2.putText(patch, texts[2], (4, row - 4), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
        top = row
        patch[top:top + bar.shape[0], 4:4 + bar_w] = bar
        y = top + bar.shape[0] + row - 4
        cv2.putText(patch, texts[0], (4, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(patch, texts[1], (4 + bar_w - widths[1], y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
        return patch

    def _blend_legend(self, out: np.ndarray, present: list[int], x0: int, height: int) -> None:
        row = max(12, min(24, height // 16))
        rows = max(1, min(LEGEND_MAX_ROWS, (height - 8) // row))
        shown = tuple(sorted(present[:rows] if len(present) <= rows else present[: rows - 1]))
        more = len(present) - len(shown)
        if not shown:
            return
        patch = self._legend(shown, more, row)
        h = min(patch.shape[0], out.shape[0] - 4)
        w = min(patch.shape[1], out.shape[1] - x0 - 4)
        if h <= 0 or w <= 0:
            return
        roi = out[4:4 + h, x0 + 4:x0 + 4 + w]
        roi[:] = cv2.addWeighted(roi, 0.25, patch[:h, :w], 0.75, 0.0)

    def _draw_legend(self, ids: tuple[int, ...], more: int, row: int) -> np.ndarray:
        font, scale = cv2.FONT_HERSHEY_SIMPLEX, row / 32.0
        texts = [self.classes[i] for i in ids] + ([f"+{more} more"] if more else [])
        width = max(cv2.getTextSize(t, font, scale, 1)[0][0] for t in texts) + row + 12
        patch = np.full((row * len(texts) + 4, width, 3), 32, np.uint8)
        for r, text in enumerate(texts):
            y = 2 + r * row
            if r < len(ids):
                b, g, rr = (int(c) for c in self.lut[ids[r]])
                cv2.rectangle(patch, (3, y + 2), (row - 1, y + row - 2), (b, g, rr), -1)
            cv2.putText(patch, text, (row + 4, y + row - 4), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
        return patch
