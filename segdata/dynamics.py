"""How hard a synthetic clip is to follow: camera motion and traffic beyond the default drive.

Why: video-aware inference reuses a key frame's result on later frames, and how well that works
depends on how fast the picture changes. The default clip drives straight at 6-13 m/s; these
knobs make faster camera motion (speed, a swerving pan, shake) and busier traffic (denser lanes
and sidewalks, people crossing the road) so a benchmark can show where propagation breaks.

The defaults change nothing: a clip with `Dynamics()` renders byte for byte what it rendered
before these knobs existed (tests/test_segdata_synthetic.py checks it), so the demo model, its
accuracy floor and every cached default clip stay valid.

Pan and shake are small camera rotations. They are rendered as a shift of the principal point,
which is what a rotation of a few degrees does to a pinhole image up to the perspective term
(under 1 % of the shift at the image edge for 6 degrees), and the labels move with the pixels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np


@dataclass(frozen=True)
class Dynamics:
    """Explicit clip parameters; every default reproduces the original generator."""

    speed_scale: float = 1.0  # camera speed (and same-direction traffic) x this
    yaw_deg: float = 0.0  # amplitude of a sinusoidal pan (swerving, looking around)
    yaw_period_s: float = 4.0  # period of that pan
    shake: float = 0.0  # camera shake amplitude as a fraction of the image width (2-6 Hz)
    traffic: float = 1.0  # density of vehicles in the lanes x this
    walkers: float = 1.0  # pedestrians on the sidewalks x this
    crossers: float = 0.0  # mean number of people crossing the road per 40 m of street

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Dynamics.{f.name} must be finite and >= 0, got {value}")
        if self.speed_scale == 0 or self.traffic == 0 or self.yaw_period_s == 0:
            raise ValueError("speed_scale, traffic and yaw_period_s must be > 0")

    @property
    def is_default(self) -> bool:
        return self == Dynamics()

    def tag(self) -> str:
        """A short stable name of the non-default knobs, for cache file names ('' by default)."""
        default = Dynamics()
        parts = [f"{f.name}{getattr(self, f.name):g}" for f in fields(self)
                 if getattr(self, f.name) != getattr(default, f.name)]
        return "-".join(parts)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def camera_offset(dyn: Dynamics, seed: int, t: float, focal_px: float, width: int) -> tuple[float, float]:
    """Principal-point shift in pixels (dx, dy) at time t: the pan plus the shake.

    Deterministic in (seed, t), so any frame renders alone. Shake is a sum of three sinusoids
    at 2-6 Hz with seeded phases, scaled so its peak is about `shake * width` pixels.
    """
    if dyn.yaw_deg == 0 and dyn.shake == 0:
        return 0.0, 0.0
    rng = np.random.default_rng([2 * int(seed), 2 * 11])
    phase = rng.uniform(0, 2 * math.pi)
    freqs = rng.uniform(2.0, 6.0, (2, 3))
    phases = rng.uniform(0, 2 * math.pi, (2, 3))
    yaw = math.radians(dyn.yaw_deg) * math.sin(2 * math.pi * t / dyn.yaw_period_s + phase)
    dx = focal_px * math.tan(yaw)
    dy = 0.0
    if dyn.shake > 0:
        amp = dyn.shake * width / 3.0
        dx += amp * float(np.sin(2 * math.pi * freqs[0] * t + phases[0]).sum())
        dy += 0.6 * amp * float(np.sin(2 * math.pi * freqs[1] * t + phases[1]).sum())
    return dx, dy


# Named presets the benchmark and tests use (the CLI of a benchmark can name them).
PRESETS: dict[str, Dynamics] = {
    "normal": Dynamics(),
    "fast": Dynamics(speed_scale=2.0, yaw_deg=8.0, yaw_period_s=3.0, shake=0.006),
    "busy": Dynamics(traffic=2.0, walkers=3.0, crossers=6.0),
}
