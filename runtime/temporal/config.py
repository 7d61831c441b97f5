"""`--temporal` and its knobs: parsed and checked in one place, before any model work.

The values are strings from the command line (or a caller), validated here so that a bad
one ends the run with exit 2 and one line naming the option and what it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.errors import UsageError

# Defaults chosen on six tuning clips the benchmark never scores (`benchmarks.temporal --tune`):
# adaptive 0.05 / max 4 lost 0.97 mIoU points on average (worst clip 1.69) with 49 % key frames,
# against 1.21 (worst 3.17) for fixed:2 at 50 %. Flow at 0.5x (120x240 for 240x480, DIS finest
# scale 1, see motion.py) was the best accuracy per millisecond of the flows tried.
DEFAULT_THRESHOLD = 0.05
DEFAULT_MAX_INTERVAL = 4
DEFAULT_FLOW_SCALE = 0.5
MODES = "off, adaptive or fixed:N"
# accepted ranges (the parser's types and parse_temporal read these)
THRESHOLD_RANGE = (1e-4, 10.0)
INTERVAL_RANGE = (1, 1000)  # fixed:N and --temporal-max-interval
FLOW_SCALE_RANGE = (0.05, 1.0)
DIRECTIONS = ("auto", "forward", "both")


@dataclass(frozen=True)
class TemporalConfig:
    mode: str  # "adaptive" or "fixed"
    interval: int = 1  # fixed:N
    threshold: float = DEFAULT_THRESHOLD
    max_interval: int = DEFAULT_MAX_INTERVAL
    flow_scale: float = DEFAULT_FLOW_SCALE
    direction: str = "auto"  # both: from the key frames before and after; forward: before only

    def both_ways(self, live: bool) -> bool:
        """auto = both for files (order kept, latency is free), forward for live sources."""
        return self.direction == "both" or (self.direction == "auto" and not live)

    def scheduler(self):
        from runtime.temporal.scheduler import Adaptive, FixedInterval

        if self.mode == "fixed":
            return FixedInterval(self.interval)
        return Adaptive(self.threshold, self.max_interval)

    def label(self) -> str:
        return f"fixed:{self.interval}" if self.mode == "fixed" else f"adaptive@{self.threshold:g}"


def parse_temporal(mode: str | None, threshold: str | float | None = None,
                   max_interval: str | int | None = None,
                   flow_scale: str | float | None = None,
                   direction: str | None = None) -> TemporalConfig | None:
    """None for `off`; else the config. Raises UsageError with one line on a bad value."""
    text = (mode or "off").strip().lower()
    if text == "off":
        if threshold is not None or max_interval is not None:
            raise UsageError("--temporal-threshold and --temporal-max-interval need --temporal adaptive")
        return None
    scale = _number("--temporal-flow-scale", flow_scale, DEFAULT_FLOW_SCALE, float, *FLOW_SCALE_RANGE)
    way = (direction or "auto").strip().lower()
    if way not in DIRECTIONS:
        raise UsageError(f"--temporal-direction {direction!r}: expected {', '.join(DIRECTIONS)}")
    if text.startswith("fixed:"):
        if threshold is not None or max_interval is not None:
            raise UsageError("--temporal fixed:N takes no --temporal-threshold or --temporal-max-interval; "
                             "use --temporal adaptive")
        n = _number("--temporal fixed:N", text.split(":", 1)[1], None, int, *INTERVAL_RANGE)
        return TemporalConfig("fixed", interval=n, flow_scale=scale, direction=way)
    if text == "adaptive":
        return TemporalConfig(
            "adaptive", flow_scale=scale, direction=way,
            threshold=_number("--temporal-threshold", threshold, DEFAULT_THRESHOLD, float, *THRESHOLD_RANGE),
            max_interval=_number("--temporal-max-interval", max_interval, DEFAULT_MAX_INTERVAL, int,
                                 *INTERVAL_RANGE))
    raise UsageError(f"--temporal {mode!r}: expected {MODES} (e.g. --temporal fixed:3)")


def _number(name: str, value, default, kind, lo, hi):
    if value is None:
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise UsageError(f"{name}: expected {what} from {lo:g} to {hi:g}, got {value!r}") from None
    if not lo <= number <= hi:
        raise UsageError(f"{name}: expected a value from {lo:g} to {hi:g}, got {value}")
    return number
