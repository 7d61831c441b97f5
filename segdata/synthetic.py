"""Procedural street scenes with pixel-exact Cityscapes trainId labels.

Why: tests, the `demo` source, calibration and the demo model need street images with exact
labels, made on the spot, offline and without torch. Every scene is a small 3-D world (a road
with lanes, sidewalks, terrain, buildings, vegetation, street furniture and traffic) seen by a
pinhole camera. Shapes are projected polygons filled with `cv2.fillPoly` on the image and the
label map at once, far to near, so the label is written exactly where the pixels are drawn.
Texture, haze, lighting, sensor noise and blur touch the image only.

Geometry is in metres and normalised image units (the focal length is a fraction of the
width), so one seed renders the same scene at any resolution. All randomness comes from
`np.random.default_rng` seeded by the scene seed (and a chunk or lane index), so any frame of
a clip can be rendered alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from segdata.dynamics import Dynamics, camera_offset

# Cityscapes trainIds used here.
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, CAR, TRUCK, BUS = 11, 13, 14, 15

FPS = 15.0  # clip frame rate: frame i is at t = i / FPS seconds
CHUNK = 40.0  # metres of world generated per random chunk
VIEW_FAR = 260.0  # static objects beyond this depth are not drawn
# Compact objects further than this are not drawn: no swarm of specks at the vanishing point.
# A person at 22 m is about 25 px tall and 3 px wide per limb at 240x480: further away it is
# a fraction of one stride-8 feature cell, which the demo model cannot label.
_FAR = {"sign": 32.0, "tlight": 30.0, "lamp": 100.0, "person": 22.0, "car": 150.0, "bush": 120.0}
# Bumped whenever the same seed renders differently, so cached clips are rendered again.
GENERATOR_VERSION = 2
SHIFT = 4  # fillPoly sub-pixel bits: vertices are exact to 1/16 px at any resolution
_ONE = 1 << SHIFT

SPLITS: dict[str, int] = {"train": 0, "val": 10_000_000, "calib": 20_000_000, "test": 30_000_000}
_SPLIT_SIZE = 10_000_000


def split_seeds(split: str, n: int) -> list[int]:
    """`n` scene seeds of a split; the ranges are disjoint, so held-out never meets training."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    if not 0 <= n <= _SPLIT_SIZE:
        raise ValueError(f"n must be between 0 and {_SPLIT_SIZE}, got {n}")
    return list(range(SPLITS[split], SPLITS[split] + n))


# Texture amplitude (grey levels of the shared noise field) per trainId: leafy things are
# busy, sky and signs are smooth. Indexed by the label map, so it costs one lookup per pixel.
_TEXTURE = np.zeros(256, np.int16)
for _cls, _amp in {ROAD: 9, SIDEWALK: 10, BUILDING: 8, WALL: 12, FENCE: 8, POLE: 4, LIGHT: 3,
                   SIGN: 3, VEGETATION: 30, TERRAIN: 22, SKY: 2, PERSON: 6, CAR: 4, TRUCK: 5,
                   BUS: 4}.items():
    _TEXTURE[_cls] = _amp
_GROUND = np.zeros(256, np.float32)
_GROUND[[ROAD, SIDEWALK, TERRAIN]] = 1.0


def _rng(*keys: int) -> np.random.Generator:
    """A generator for one (seed, purpose, index...) key; negative indices are folded in."""
    return np.random.default_rng([2 * k if k >= 0 else -2 * k - 1 for k in keys])


def _jit(rng: np.random.Generator, bgr, amount: float, tint: float | None = None) -> np.ndarray:
    """A class colour with brightness and per-channel jitter (kept plausible for the class)."""
    base = np.asarray(bgr, np.float64)
    tint = amount * 40 if tint is None else tint
    return np.clip(base * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, tint, 3), 0, 255)


# ----------------------------------------------------------------------------------- scene
@dataclass
class _Side:
    """Lateral layout of one side of the street (metres from the road centre, outward > 0)."""

    style: str  # urban | green | rural
    road: float  # road edge (kerb)
    sidewalk: float  # outer sidewalk edge
    terrain: float  # outer terrain edge (== sidewalk where none)
    build: float  # building facade line
    parking: bool
    base_cls: int
    base_col: np.ndarray
    terrain_col: np.ndarray
    sidewalk_col: np.ndarray
    kerb_col: np.ndarray
    fence_kind: str  # none | fence | wall | hedge


@dataclass
class _Scene:
    seed: int
    horizon: float  # horizon row as a fraction of the height
    focal: float  # focal length as a fraction of the width
    cam_h: float
    cam_x: float
    curve: float  # lateral road offset = curve * depth**2
    speed: float  # camera speed, m/s
    lanes: int
    lane_w: float
    half: float  # road half width without parking
    sides: dict[int, _Side]
    road_col: np.ndarray
    mark_col: np.ndarray
    centre_col: np.ndarray
    sky_top: np.ndarray
    sky_bottom: np.ndarray
    cloudiness: float
    haze_col: np.ndarray
    haze_dist: float
    gain: np.ndarray
    gamma: float
    skyline: np.ndarray  # (N, 2) normalised u, height above horizon (fraction of height)
    skyline_cls: int
    skyline_col: np.ndarray
    lane_speeds: dict[int, float] = field(default_factory=dict)  # lane index -> world speed
    sun: int = 0  # side the sun shines from (-1 left, 1 right), 0 = overcast, no shadows
    shadow_k: float = 0.5  # shadow length per metre of height
    shadow_dark: float = 0.6  # brightness factor inside shadows
    dyn: Dynamics = field(default_factory=Dynamics)  # camera motion and traffic knobs


def _make_scene(seed: int, dyn: Dynamics | None = None) -> _Scene:
    rng = _rng(seed, 0)
    lanes = int(rng.choice([2, 2, 3, 4]))
    lane_w = rng.uniform(3.0, 3.6)
    half = lanes * lane_w / 2
    # Drive on the right: the camera sits in one of the right-hand lanes.
    right_lanes = [i for i in range(lanes) if (i + 0.5) * lane_w - half > 0]
    my_lane = int(rng.choice(right_lanes))
    cam_x = (my_lane + 0.5) * lane_w - half + rng.uniform(-0.3, 0.3)
    road_col = _jit(rng, (92, 90, 90), 0.25, tint=3.0)
    sides: dict[int, _Side] = {}
    for s in (-1, 1):
        style = str(rng.choice(["urban", "urban", "green", "rural"], p=[0.3, 0.2, 0.3, 0.2]))
        parking = style != "rural" and rng.random() < 0.45
        road = half + (2.3 if parking else 0.0)
        sw = rng.uniform(2.0, 4.5) if style != "rural" else rng.uniform(0.0, 1.5)
        tw = 0.0 if style == "urban" else rng.uniform(2.0, 9.0)
        build = road + sw + tw + (rng.uniform(0.0, 2.0) if style == "urban" else rng.uniform(2.0, 12.0))
        sidewalk_col = _jit(rng, rng.choice([(150, 150, 150), (120, 130, 165), (140, 160, 175)]), 0.12)
        terrain_col = _jit(rng, rng.choice([(80, 150, 120), (70, 140, 110), (90, 130, 140)]), 0.12)
        base_cls = SIDEWALK if style == "urban" else TERRAIN
        sides[s] = _Side(
            style=style, road=road, sidewalk=road + sw, terrain=road + sw + tw, build=build,
            parking=parking, base_cls=base_cls,
            base_col=sidewalk_col if base_cls == SIDEWALK else terrain_col,
            terrain_col=terrain_col, sidewalk_col=sidewalk_col,
            kerb_col=np.clip(sidewalk_col * 1.15 + 15, 0, 255),
            fence_kind=str(rng.choice(["none", "fence", "wall", "hedge"], p=[0.3, 0.3, 0.2, 0.2])),
        )
    overcast = rng.random() < 0.3
    if overcast:
        sky_top = _jit(rng, (185, 175, 170), 0.08)
        sky_bottom = _jit(rng, (215, 210, 205), 0.05)
    else:
        sky_top = _jit(rng, (200, 130, 70), 0.12)
        sky_bottom = _jit(rng, (235, 205, 170), 0.06)
    haze_col = np.clip(sky_bottom * rng.uniform(0.85, 1.0), 0, 255)
    ws = np.cumsum(rng.uniform(0.01, 0.05, 80))
    ws = ws[ws < 1.05]
    rural = all(sd.style == "rural" for sd in sides.values())
    heights = rng.uniform(0.015, 0.07, len(ws)) * (0.5 if rural else 1.0)
    speed = rng.uniform(6.0, 13.0)
    lane_speeds: dict[int, float] = {}
    for i in range(lanes):
        centre = (i + 0.5) * lane_w - half
        if i == my_lane:
            lane_speeds[i] = speed
        elif centre > 0:
            lane_speeds[i] = speed + rng.uniform(-3.0, 3.0)
        else:
            lane_speeds[i] = -rng.uniform(7.0, 14.0)
    scene = _Scene(
        seed=seed, horizon=rng.uniform(0.38, 0.5), focal=rng.uniform(0.7, 0.95),
        cam_h=rng.uniform(1.2, 1.7), cam_x=cam_x, curve=rng.uniform(-1.0, 1.0) * 8e-4,
        speed=speed, lanes=lanes, lane_w=lane_w, half=half, sides=sides, road_col=road_col,
        mark_col=_jit(rng, (215, 220, 220), 0.08),
        centre_col=_jit(rng, (70, 190, 220) if rng.random() < 0.4 else (215, 220, 220), 0.08),
        sky_top=sky_top, sky_bottom=sky_bottom, cloudiness=rng.uniform(0.0, 0.9) * (0.5 if overcast else 1),
        haze_col=haze_col, haze_dist=rng.uniform(150.0, 600.0),
        gain=rng.uniform(0.92, 1.08, 3) * rng.uniform(0.7, 1.25), gamma=rng.uniform(0.8, 1.25),
        skyline=np.stack([ws, heights], 1),
        skyline_cls=VEGETATION if rural else BUILDING,
        skyline_col=_jit(rng, (90, 120, 80) if rural else (150, 140, 135), 0.15),
        lane_speeds=lane_speeds,
    )
    if not overcast and rng.random() < 0.75:
        scene.sun = int(rng.choice([-1, 1]))
        scene.shadow_k = rng.uniform(0.3, 1.2)
        scene.shadow_dark = rng.uniform(0.45, 0.7)
    if dyn is not None and not dyn.is_default:
        _apply_dynamics(scene, dyn)
    return scene


def _apply_dynamics(scene: _Scene, dyn: Dynamics) -> None:
    """Faster camera: same-direction lanes keep their speed relative to the camera."""
    scene.dyn = dyn
    extra = scene.speed * (dyn.speed_scale - 1.0)
    scene.speed += extra
    for lane, v in scene.lane_speeds.items():
        if v > 0:
            scene.lane_speeds[lane] = v + extra


# ----------------------------------------------------------------------------------- canvas
class _View:
    """Camera at depth `cam_z` plus the image and label being drawn."""

    def __init__(self, scene: _Scene, cam_z: float, height: int, width: int,
                 offset: tuple[float, float] = (0.0, 0.0)) -> None:
        self.s = scene
        self.h, self.w = height, width
        self.f = scene.focal * width
        self.cx = 0.5 * width + offset[0]  # offset: pan and shake (segdata.dynamics)
        self.cy = scene.horizon * height + offset[1]
        self.cam_z = cam_z
        self.img = np.empty((height, width, 3), np.uint8)
        self.lab = np.empty((height, width), np.uint8)
        # The nearest ground depth worth drawing: just below the bottom image row.
        self.d_near = 0.9 * self.f * scene.cam_h / (height - self.cy)

    def proj(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """World (lateral from road centre, height, depth) -> (N, 2) pixel coordinates."""
        d = np.maximum(np.asarray(z, np.float64) - self.cam_z, 1e-3)
        xs = np.asarray(x, np.float64) + self.s.curve * d * d - self.s.cam_x
        return np.stack([self.cx + self.f * xs / d, self.cy + self.f * (self.s.cam_h - y) / d], -1)

    def scale(self, z: float) -> float:
        """Pixels per metre for something fronto-parallel at world depth z."""
        return self.f / max(z - self.cam_z, 1e-3)

    def screen_x(self, x: float, z: float) -> float:
        d = max(z - self.cam_z, 1e-3)
        return self.cx + self.f * (x + self.s.curve * d * d - self.s.cam_x) / d

    def ground_y(self, z: float) -> float:
        return self.cy + self.f * self.s.cam_h / max(z - self.cam_z, 1e-3)

    def haze(self, col: np.ndarray, z: float) -> tuple[float, float, float]:
        a = math.exp(-max(z - self.cam_z, 0.0) / self.s.haze_dist)
        c = col * a + self.s.haze_col * (1 - a)
        return (float(c[0]), float(c[1]), float(c[2]))

    def fill(self, polys: list[np.ndarray], col, cls: int | None) -> None:
        """Fill polygons on the image and (unless cls is None) the label, same pixels exactly."""
        if not polys:
            return
        pts = [np.round(p * _ONE).astype(np.int32) for p in polys]
        cv2.fillPoly(self.img, pts, col, cv2.LINE_8, SHIFT)
        if cls is not None:
            cv2.fillPoly(self.lab, pts, cls, cv2.LINE_8, SHIFT)

    def rect(self, x0: float, y0: float, x1: float, y1: float, col, cls: int | None) -> None:
        self.fill([np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])], col, cls)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, col, cls: int | None, n: int = 20
                ) -> None:
        self.fill([_ellipse(cx, cy, rx, ry, n)], col, cls)


_ANG = {n: np.linspace(0, 2 * np.pi, n, endpoint=False) for n in (6, 8, 12, 16, 20, 24)}


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
    a = _ANG.get(n)
    if a is None:
        a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], -1)


# ----------------------------------------------------------------------------------- objects
@dataclass
class _Obj:
    """A compact thing standing at world depth z; drawn far to near."""

    kind: str
    x: float
    z: float
    p: dict

    def depth(self, t: float) -> float:
        return self.z + self.p.get("v", 0.0) * t


def _chunk_objects(scene: _Scene, k: int) -> tuple[list[dict], list[_Obj]]:
    """Static things of world chunk k: (buildings, compact objects)."""
    rng = _rng(scene.seed, 1, k)
    z0, z1 = k * CHUNK, (k + 1) * CHUNK
    buildings: list[dict] = []
    objs: list[_Obj] = []
    for s, sd in scene.sides.items():
        # Buildings: a row of facades along the street.
        z = z0 + rng.uniform(0, 4)
        p_build = {"urban": 0.95, "green": 0.6, "rural": 0.15}[sd.style]
        while z < z1 - 4:
            length = rng.uniform(8, 30) if sd.style == "urban" else rng.uniform(8, 16)
            length = min(length, z1 - z)
            if rng.random() < p_build:
                tall = sd.style == "urban"
                height = rng.uniform(7, 28) if tall else rng.uniform(4.5, 9)
                col = _jit(rng, rng.choice([(140, 150, 160), (110, 130, 170), (160, 170, 180),
                                            (80, 90, 150), (120, 120, 120), (185, 195, 205)]), 0.18)
                buildings.append({
                    "side": s, "x": s * (sd.build + rng.uniform(0, 1.5)), "z0": z, "z1": z + length,
                    "h": height, "col": col, "win_col": _jit(rng, (85, 70, 60), 0.3),
                    "floor": rng.uniform(2.8, 3.6), "win_w": rng.uniform(0.8, 1.6),
                    "win_gap": rng.uniform(1.4, 3.0), "win_h": rng.uniform(1.2, 1.8),
                    "band": rng.random() < 0.4,
                })
            z += length + (rng.uniform(0, 3) if sd.style == "urban" else rng.uniform(2, 12))
        # Fence / wall / hedge between the sidewalk and the terrain (or facade line).
        if sd.fence_kind != "none" and rng.random() < 0.7:
            fx = s * (sd.sidewalk + 0.15 if sd.style != "urban" else sd.build - 0.3)
            fz0 = z0 + rng.uniform(0, 15)
            fz1 = min(z1, fz0 + rng.uniform(10, 40))
            fh = {"fence": rng.uniform(1.4, 2.4), "wall": rng.uniform(1.4, 2.6),
                  "hedge": rng.uniform(0.9, 1.8)}[sd.fence_kind]
            base = {"fence": rng.choice([(60, 90, 120), (70, 110, 80), (120, 120, 120), (50, 60, 80)]),
                    "wall": rng.choice([(160, 165, 170), (130, 140, 150), (110, 120, 140)]),
                    "hedge": (40, 100, 50)}[sd.fence_kind]
            col = _jit(rng, base, 0.15)
            cls = {"fence": FENCE, "wall": WALL, "hedge": VEGETATION}[sd.fence_kind]
            seg = 2.5
            zz = fz0
            while zz < fz1 - 0.5:
                ze = min(zz + seg, fz1)
                objs.append(_Obj("panel", fx, zz, {
                    "z1": ze, "h": fh * (rng.uniform(0.85, 1.1) if cls == VEGETATION else 1.0),
                    "col": col * rng.uniform(0.93, 1.07), "cls": cls, "kind": sd.fence_kind}))
                zz = ze
        # Trees along the sidewalk or on the terrain.
        p_tree = {"urban": 0.35, "green": 0.9, "rural": 0.9}[sd.style]
        if rng.random() < p_tree:
            zt = z0 + rng.uniform(0, 12)
            while zt < z1:
                if sd.style == "urban":
                    tx = sd.road + 0.8
                else:
                    tx = rng.uniform(sd.sidewalk + 1.0, max(sd.sidewalk + 1.2, sd.build - 2.0))
                objs.append(_Obj("tree", s * tx, zt, {
                    "trunk_h": rng.uniform(1.8, 3.5), "trunk_r": rng.uniform(0.15, 0.3),
                    "crown": rng.uniform(1.6, 3.4), "col": _jit(rng, (50, 120, 70), 0.25),
                    "trunk_col": _jit(rng, (50, 65, 85), 0.2),
                    "blobs": rng.uniform(-1, 1, (5, 3))}))
                zt += rng.uniform(7, 18)
        # Bushes on terrain.
        if sd.terrain > sd.sidewalk + 1.0:
            for _ in range(rng.poisson(1.5)):
                objs.append(_Obj("bush", s * rng.uniform(sd.sidewalk + 0.8, sd.terrain),
                                 rng.uniform(z0, z1), {"r": rng.uniform(0.5, 1.3),
                                                       "col": _jit(rng, (45, 110, 60), 0.25)}))
        # Street lamps.
        if sd.style != "rural" or rng.random() < 0.3:
            zl = z0 + rng.uniform(0, CHUNK)
            objs.append(_Obj("lamp", s * (sd.road + 0.45), zl, {
                "h": rng.uniform(6.0, 9.0), "w": rng.uniform(0.22, 0.32),
                "col": _jit(rng, rng.choice([(130, 130, 130), (60, 70, 60), (150, 150, 150)]), 0.15),
                "arm": rng.uniform(1.0, 2.2)}))
        # Traffic signs.
        for _ in range(rng.poisson(0.8)):
            objs.append(_Obj("sign", s * (sd.road + rng.uniform(0.3, 0.8)), rng.uniform(z0, z1), {
                "h": rng.uniform(2.0, 2.8), "r": rng.uniform(0.32, 0.45),
                "shape": str(rng.choice(["circle", "triangle", "rect", "octagon", "diamond"])),
                "style": int(rng.integers(0, 4)), "w": rng.uniform(0.1, 0.14)}))
        # Traffic lights.
        if rng.random() < (0.45 if sd.style == "urban" else 0.15):
            objs.append(_Obj("tlight", s * (sd.road + 0.5), rng.uniform(z0, z1), {
                "h": rng.uniform(2.6, 3.6), "w": rng.uniform(0.14, 0.2), "on": int(rng.integers(0, 3)),
                "arm": rng.random() < 0.5}))
        # Parked cars.
        if sd.parking:
            zc = z0 + rng.uniform(0, 6)
            while zc < z1 - 4:
                if rng.random() < 0.6:
                    car = _car_params(rng, oncoming=False, kind="car")
                    objs.append(_Obj("car", s * (sd.road - 1.15), zc, car))
                zc += rng.uniform(5.2, 9.0)
    if rng.random() < 0.2:
        objs.append(_Obj("xwalk", 0.0, rng.uniform(z0 + 5, z1 - 5), {"w": rng.uniform(2.5, 4.0)}))
    return buildings, objs


def _car_params(rng: np.random.Generator, oncoming: bool, kind: str | None = None) -> dict:
    if kind is None:
        kind = str(rng.choice(["car", "truck", "bus"], p=[0.84, 0.08, 0.08]))
    body = rng.choice([(40, 40, 40), (200, 200, 200), (230, 230, 230), (40, 40, 160), (140, 60, 30),
                       (120, 120, 120), (30, 90, 40), (60, 140, 200), (90, 50, 50)])
    if kind == "car":
        dims = (rng.uniform(1.7, 1.95), rng.uniform(1.35, 1.65), rng.uniform(3.9, 4.8))
        cls = CAR
    elif kind == "truck":
        dims = (rng.uniform(2.3, 2.5), rng.uniform(2.8, 3.6), rng.uniform(6.5, 9.0))
        cls = TRUCK
        body = rng.choice([(210, 210, 210), (40, 60, 160), (160, 100, 40), (200, 200, 200)])
    else:
        dims = (2.5, rng.uniform(2.9, 3.2), rng.uniform(10.0, 12.0))
        cls = BUS
        body = rng.choice([(40, 180, 230), (50, 50, 200), (220, 220, 220), (160, 110, 40)])
    return {"kind": kind, "cls": cls, "w": dims[0], "h": dims[1], "l": dims[2],
            "col": _jit(rng, body, 0.1), "oncoming": oncoming}


def _lane_objects(scene: _Scene, lane: int, k: int) -> list[_Obj]:
    """Vehicles of one lane in chunk k of lane coordinates (s = z - lane_speed * t)."""
    rng = _rng(scene.seed, 2, lane, k)
    x = (lane + 0.5) * scene.lane_w - scene.half
    oncoming = x < 0
    mine = abs(x - scene.cam_x) < scene.lane_w / 2
    dense = scene.dyn.traffic
    out = []
    s = k * CHUNK + rng.uniform(0, 15)
    while s < (k + 1) * CHUNK:
        if rng.random() < min(0.95, (0.45 if mine else 0.55) * dense):
            p = _car_params(rng, oncoming)
            p["v"] = scene.lane_speeds[lane]
            p["wob"] = (rng.uniform(0, 3.0) if mine else 0.0, rng.uniform(0.2, 0.8), rng.uniform(0, 6.3))
            out.append(_Obj("car", x + rng.uniform(-0.25, 0.25), s, p))
            s += p["l"] + rng.uniform(8, 30) / dense
        else:
            s += rng.uniform(10, 25) / dense
    return out


def _walkers(scene: _Scene, side: int, flow: int, k: int) -> list[_Obj]:
    """Pedestrians of one sidewalk flow (direction `flow`) in chunk k of flow coordinates."""
    sd = scene.sides[side]
    if sd.sidewalk - sd.road < 1.0:
        return []
    rng = _rng(scene.seed, 3, side, flow, k)
    lam = {"urban": 1.6, "green": 0.7, "rural": 0.2}[sd.style]
    out = []
    for _ in range(rng.poisson(lam * scene.dyn.walkers)):
        skin = rng.choice(_SKINS)
        out.append(_Obj("person", side * rng.uniform(sd.road + 0.6, sd.sidewalk - 0.4),
                        rng.uniform(k * CHUNK, (k + 1) * CHUNK),
                        {"v": flow * rng.uniform(0.9, 1.6), **_person_look(rng, skin)}))
    return out


_SKINS = [(150, 180, 225), (110, 150, 200), (70, 100, 150), (40, 60, 95)]


def _person_look(rng: np.random.Generator, skin) -> dict:
    """Height, gait and colours of one person (draw order kept: seeds render as before)."""
    return {"h": rng.uniform(1.55, 1.95), "phase": rng.uniform(0, 6.3), "skin": _jit(rng, skin, 0.1),
            "top": _jit(rng, rng.uniform(20, 230, 3), 0.2),
            "legs": _jit(rng, rng.choice([(110, 60, 40), (40, 40, 40), (140, 140, 130), (60, 90, 110)]), 0.2),
            "hair": _jit(rng, (30, 40, 50), 0.3), "walk": rng.random() < 0.8}


def _crossers(scene: _Scene, k: int) -> list[_Obj]:
    """People walking across the road in chunk k (only with Dynamics.crossers > 0).

    Each walks back and forth between the two kerbs at a fixed world depth; `x0`/`v` give its
    lateral position at t = 0 along a path of length 2 * span (a triangle wave).
    """
    rng = _rng(scene.seed, 4, k)
    span = scene.sides[-1].road + scene.sides[1].road
    out = []
    for _ in range(rng.poisson(scene.dyn.crossers)):
        skin = rng.choice(_SKINS)
        p = {"v": rng.uniform(1.0, 1.8), "x0": rng.uniform(0, 2 * span), "span": span,
             "left": -scene.sides[-1].road, **_person_look(rng, skin)}
        p["walk"] = True
        out.append(_Obj("person", 0.0, rng.uniform(k * CHUNK, (k + 1) * CHUNK), p))
    return out


def _crosser_at(o: _Obj, t: float) -> _Obj:
    """The crosser's lateral position at time t (a new object: the drawers read o.x)."""
    p = o.p
    u = (p["x0"] + p["v"] * t) % (2 * p["span"])
    return _Obj("person", p["left"] + (u if u < p["span"] else 2 * p["span"] - u), o.z, p)


# ----------------------------------------------------------------------------------- drawing
def _draw_sky(v: _View) -> None:
    hz = int(min(max(math.ceil(v.cy + 2), 1), v.h))
    a = np.linspace(0.0, 1.0, hz, dtype=np.float32)[:, None] ** 0.7
    col = v.s.sky_top[None, :] * (1 - a) + v.s.sky_bottom[None, :] * a
    v.img[:hz] = col.astype(np.uint8)[:, None, :]
    v.img[hz:] = v.s.sky_bottom.astype(np.uint8)
    v.lab[:] = SKY
    # Far skyline (buildings or a tree line) sitting on the horizon.
    sk = v.s.skyline
    us = sk[:, 0] * v.w
    tops = v.cy - sk[:, 1] * v.h
    xs = np.repeat(us, 2)[1:]
    ys = np.repeat(tops, 2)[:-1]
    if v.s.skyline_cls == VEGETATION:
        xs, ys = us, tops
    pts = np.concatenate([[[xs[0], v.cy + 3]], np.stack([xs, ys], 1), [[xs[-1], v.cy + 3]]])
    shift = v.cx - 0.5 * v.w
    polys = [pts]
    if shift:  # a panned camera: the skyline moves with the pan, repeated so no edge shows
        period = xs[-1] - xs[0]
        polys = [pts + np.array([shift + n * period, 0.0]) for n in (-1, 0, 1)]
    v.fill(polys, v.haze(v.s.skyline_col, v.cam_z + 0.8 * v.s.haze_dist), v.s.skyline_cls)


def _strip(v: _View, xa: float, xb: float, depths: np.ndarray) -> np.ndarray:
    z = v.cam_z + depths
    a = v.proj(np.full_like(z, xa), np.zeros_like(z), z)
    b = v.proj(np.full_like(z, xb), np.zeros_like(z), z)
    return np.concatenate([a, b[::-1]])


def _draw_ground(v: _View) -> None:
    s = v.s
    depths = v.d_near * np.geomspace(1.0, 600.0 / v.d_near, 28)
    # Base ground of each side, then terrain, sidewalk (with kerb), road, lane marks.
    for side, sd in s.sides.items():
        v.fill([_strip(v, 0.0, side * 400.0, depths)], sd.base_col, sd.base_cls)
    for side, sd in s.sides.items():
        if sd.terrain > sd.sidewalk:
            v.fill([_strip(v, side * sd.sidewalk, side * sd.terrain, depths)], sd.terrain_col, TERRAIN)
        if sd.sidewalk > sd.road:
            v.fill([_strip(v, side * sd.road, side * sd.sidewalk, depths)], sd.sidewalk_col, SIDEWALK)
            v.fill([_strip(v, side * sd.road, side * (sd.road + 0.25), depths)], sd.kerb_col, SIDEWALK)
    v.fill([_strip(v, -s.sides[-1].road, s.sides[1].road, depths)], s.road_col, ROAD)
    # Paving joints on sidewalks (image only): lines across at fixed world z.
    for side, sd in s.sides.items():
        if sd.sidewalk - sd.road < 1.0:
            continue
        zs = np.arange(math.ceil(v.cam_z + v.d_near), v.cam_z + 60.0, 1.5)
        if len(zs):
            polys = []
            for z in zs:
                p = v.proj(np.array([side * sd.road, side * sd.sidewalk]), np.zeros(2), np.array([z, z]))
                polys.append(np.array([p[0], p[1], p[1] + [0, 0.8], p[0] + [0, 0.8]]))
            v.fill(polys, sd.sidewalk_col * 0.82, None)
    # Lane marks (labelled road): dashed between lanes, solid centre line and edge lines.
    marks: list[np.ndarray] = []
    centre: list[np.ndarray] = []
    wm = 0.14
    zst = math.floor((v.cam_z + v.d_near) / 10.0) * 10.0
    dash_z = np.arange(zst, v.cam_z + 130.0, 10.0)
    for i in range(1, s.lanes):
        x = i * s.lane_w - s.half
        if abs(x) < 1e-6:
            d = np.linspace(v.d_near, 300.0, 24)
            centre.append(_strip(v, x - wm, x + wm, d))
            continue
        for z in dash_z:
            za, zb = max(z, v.cam_z + v.d_near), z + 3.5
            if zb <= za:
                continue
            d = np.array([za, zb]) - v.cam_z
            marks.append(_strip(v, x - wm / 2, x + wm / 2, d))
    d = np.linspace(v.d_near, 300.0, 24)
    for side in (-1, 1):
        marks.append(_strip(v, side * (s.half - 0.3), side * (s.half - 0.3 - wm), d))
    v.fill(marks, v.haze(s.mark_col, v.cam_z + 30), ROAD)
    v.fill(centre, v.haze(s.centre_col, v.cam_z + 30), ROAD)


def _draw_crosswalks(v: _View, zs: list[float]) -> None:
    """Zebra stripes across the road (image only: a crossing is road)."""
    s = v.s
    polys = []
    for z in zs:
        z0, z1 = max(z, v.cam_z + v.d_near), z + 3.0
        if z1 <= z0 or z0 - v.cam_z > 90:
            continue
        d = np.array([z0, z1]) - v.cam_z
        for x in np.arange(-s.half + 0.4, s.half - 0.5, 1.0):
            polys.append(_strip(v, x, x + 0.5, d))
    v.fill(polys, v.haze(s.mark_col, v.cam_z + 30), None)


def _draw_shadows(v: _View, buildings: list[dict], objs: list[tuple[float, _Obj]]) -> None:
    """Cast shadows on the ground (image only), before anything stands on it.

    The sun shines from side `sun`, so buildings on that side throw a strip of shadow towards
    the street and trees, poles and cars throw theirs away from the sun.
    """
    s = v.s
    polys = []
    away = -s.sun
    for b in buildings:
        if b["side"] != s.sun:
            continue
        z0, z1 = max(b["z0"], v.cam_z + v.d_near), min(b["z1"], v.cam_z + 150)
        if z1 <= z0:
            continue
        n = max(2, int((z1 - z0) / 8) + 2)
        d = np.linspace(z0, z1, n) - v.cam_z
        polys.append(_strip(v, b["x"], b["x"] + away * b["h"] * s.shadow_k, d))
    for z, o in objs:
        if z - v.cam_z > 80 or z - v.cam_z < v.d_near:
            continue
        if o.kind == "tree":
            r = o.p["crown"]
            cx = o.x + away * (o.p["trunk_h"] + r) * s.shadow_k
            ring = _ellipse(cx, z, r, r * 0.8, 12)
        elif o.kind == "lamp":
            ln = o.p["h"] * s.shadow_k
            ring = np.array([[o.x, z - 0.12], [o.x + away * ln, z - 0.12], [o.x + away * ln, z + 0.12],
                             [o.x, z + 0.12]])
        else:
            continue
        zz = np.maximum(ring[:, 1], v.cam_z + v.d_near)
        polys.append(v.proj(ring[:, 0], np.zeros(len(ring)), zz))
    if not polys:
        return
    hz = int(min(max(math.floor(v.cy), 0), v.h))
    mask = np.zeros((v.h - hz, v.w), np.uint8)
    pts = [np.round((p - [0, hz]) * _ONE).astype(np.int32) for p in polys]
    cv2.fillPoly(mask, pts, 1, cv2.LINE_8, SHIFT)
    sub = v.img[hz:]
    dark = (sub * np.float32(s.shadow_dark)).astype(np.uint8)
    np.copyto(sub, dark, where=mask[:, :, None].astype(bool))


def _draw_building(v: _View, b: dict) -> None:
    s = b["side"]
    z0, z1 = max(b["z0"], v.cam_z + 0.3), b["z1"]
    if z1 <= z0 + 0.1:
        return
    x, h = b["x"], b["h"]
    col = b["col"]
    # Front face (perpendicular to the road) when it is ahead of the camera.
    if b["z0"] > v.cam_z + 0.3:
        p = v.proj(np.array([x, x + s * 12, x + s * 12, x]), np.array([0, 0, h, h]), np.full(4, b["z0"]))
        v.fill([p], v.haze(col * (0.9 if v.s.sun == s else 0.7), b["z0"]), BUILDING)
    n = max(2, int((z1 - z0) / 6) + 2)
    zs = np.linspace(z0, z1, n)
    bottom = v.proj(np.full(n, x), np.zeros(n), zs)
    top = v.proj(np.full(n, x), np.full(n, h), zs)
    lit = 1.0 if v.s.sun == 0 else (v.s.shadow_dark + 0.1 if v.s.sun == s else 1.1)
    col = np.minimum(col * lit, 255)
    v.fill([np.concatenate([bottom, top[::-1]])], v.haze(col, z0), BUILDING)
    # Windows and floor bands (image only: they are building).
    if z0 - v.cam_z > 150:
        return
    floors = int((h - 1.0) // b["floor"])
    wins: list[np.ndarray] = []
    bands: list[np.ndarray] = []
    step = b["win_w"] + b["win_gap"]
    wz = np.arange(b["z0"] + b["win_gap"], z1 - b["win_w"], step)
    wz = wz[wz > v.cam_z + 0.5]
    if len(wz) and floors > 0:
        ys = 1.0 + np.arange(floors) * b["floor"] + 0.6
        zz, yy = np.meshgrid(wz, ys)
        zz, yy = zz.ravel(), yy.ravel()
        xw = np.full(zz.shape, x - s * 0.02)
        p00 = v.proj(xw, yy, zz)
        p01 = v.proj(xw, yy, zz + b["win_w"])
        p11 = v.proj(xw, yy + b["win_h"], zz + b["win_w"])
        p10 = v.proj(xw, yy + b["win_h"], zz)
        quads = np.stack([p00, p01, p11, p10], 1)
        wins = list(quads)
    if b["band"] and floors > 1:
        for f in range(1, floors + 1):
            y = 1.0 + f * b["floor"] - 0.25
            if y + 0.3 > h:
                break
            lo = v.proj(np.full(n, x - s * 0.02), np.full(n, y), zs)
            hi = v.proj(np.full(n, x - s * 0.02), np.full(n, y + 0.3), zs)
            bands.append(np.concatenate([lo, hi[::-1]]))
    v.fill(bands, v.haze(col * 0.8, z0), None)
    v.fill(wins, v.haze(b["win_col"], z0 + 5), None)


def _draw_panel(v: _View, o: _Obj, z: float) -> None:
    z0, z1 = max(z, v.cam_z + 0.3), o.p["z1"]
    if z1 <= z0:
        return
    h = o.p["h"]
    zs = np.array([z0, z1])
    lo = v.proj(np.full(2, o.x), np.zeros(2), zs)
    hi = v.proj(np.full(2, o.x), np.full(2, h), zs)
    v.fill([np.concatenate([lo, hi[::-1]])], v.haze(o.p["col"], z0), o.p["cls"])
    if z0 - v.cam_z > 60:
        return
    kind = o.p["kind"]
    if kind == "fence":  # posts and a rail: darker, still fence
        post = v.proj(np.full(2, o.x), np.array([0.0, h]), np.array([z0, z0]))
        w = max(0.08 * v.scale(z0), 1.0)
        v.rect(post[0, 0] - w, post[1, 1], post[0, 0] + w, post[0, 1], v.haze(o.p["col"] * 0.6, z0), None)
        for yr in (0.3 * h, 0.85 * h):
            a = v.proj(np.full(2, o.x), np.full(2, yr), zs)
            b = v.proj(np.full(2, o.x), np.full(2, yr + 0.08), zs)
            v.fill([np.concatenate([a, b[::-1]])], v.haze(o.p["col"] * 0.7, z0), None)
    elif kind == "wall":  # lighter coping on top
        a = v.proj(np.full(2, o.x), np.full(2, h - 0.12), zs)
        v.fill([np.concatenate([a, hi[::-1]])], v.haze(np.minimum(o.p["col"] * 1.2, 255), z0), None)


def _draw_tree(v: _View, o: _Obj, z: float) -> None:
    sc = v.scale(z)
    bx, by = v.screen_x(o.x, z), v.ground_y(z)
    tr = max(o.p["trunk_r"] * sc, 0.004 * v.w)
    th = o.p["trunk_h"] * sc
    v.rect(bx - tr, by - th - 0.3 * sc, bx + tr, by, v.haze(o.p["trunk_col"], z), VEGETATION)
    cr = o.p["crown"] * sc
    cy = by - th - 0.7 * cr
    col = o.p["col"]
    for i, (dx, dy, ds) in enumerate(o.p["blobs"]):
        r = cr * (0.6 + 0.15 * ds)
        shade = 0.8 + 0.06 * i
        v.ellipse(bx + dx * 0.5 * cr, cy + dy * 0.35 * cr, r, r * 0.9, v.haze(col * shade, z), VEGETATION)


def _draw_bush(v: _View, o: _Obj, z: float) -> None:
    sc = v.scale(z)
    bx, by = v.screen_x(o.x, z), v.ground_y(z)
    r = o.p["r"] * sc
    v.ellipse(bx, by - 0.6 * r, 1.3 * r, 0.75 * r, v.haze(o.p["col"], z), VEGETATION)


def _pole_w(v: _View, w_m: float, z: float) -> float:
    """Half width in px of a pole: true size, but never thinner than ~13 px in all at 480 wide.

    At output stride 8 a thinner pole is a fraction of one feature cell, and no model of the
    demo's size could segment it; the demo trades a little realism for a learnable class.
    """
    return max(0.5 * w_m * v.scale(z), 0.014 * v.w)


def _draw_lamp(v: _View, o: _Obj, z: float) -> None:
    sc = v.scale(z)
    bx, by = v.screen_x(o.x, z), v.ground_y(z)
    hw = _pole_w(v, o.p["w"], z)
    top = by - o.p["h"] * sc
    col = v.haze(o.p["col"], z)
    v.rect(bx - hw, top, bx + hw, by, col, POLE)
    # Arm towards the road and a lamp head, both pole.
    ax = bx - math.copysign(o.p["arm"] * sc, o.x)
    v.rect(min(ax, bx), top, max(ax, bx), top + max(0.12 * sc, 0.014 * v.h), col, POLE)
    v.rect(ax - 0.3 * sc, top, ax + 0.3 * sc, top + max(0.22 * sc, 0.01 * v.h), col, POLE)


def _draw_sign(v: _View, o: _Obj, z: float) -> None:
    sc = v.scale(z)
    bx, by = v.screen_x(o.x, z), v.ground_y(z)
    hw = _pole_w(v, o.p["w"], z)
    cy = by - o.p["h"] * sc
    r = max(o.p["r"] * sc, 0.021 * v.w)
    v.rect(bx - hw, cy, bx + hw, by, v.haze(np.array([140.0, 140, 140]), z), POLE)
    shape, style = o.p["shape"], o.p["style"]
    if shape == "circle":
        poly = _ellipse(bx, cy, r, r, 20)
    elif shape == "triangle":
        poly = np.array([[bx, cy - r], [bx + 1.05 * r, cy + 0.8 * r], [bx - 1.05 * r, cy + 0.8 * r]])
    elif shape == "octagon":
        poly = _ellipse(bx, cy, r, r, 8)
    elif shape == "diamond":
        poly = _ellipse(bx, cy, r * 1.1, r * 1.1, 4)
    else:
        poly = np.array([[bx - r, cy - 0.8 * r], [bx + r, cy - 0.8 * r], [bx + r, cy + 0.8 * r],
                         [bx - r, cy + 0.8 * r]])
    rim, inner = [((40, 40, 200), (240, 240, 240)), ((160, 80, 20), (230, 230, 230)),
                  ((30, 190, 230), (20, 20, 20)), ((40, 40, 200), (40, 40, 200))][style]
    v.fill([poly], v.haze(np.array(rim, float), z), SIGN)
    c = poly.mean(0)
    v.fill([c + (poly - c) * 0.7], v.haze(np.array(inner, float), z), None)
    if style == 1:  # a white arrow-ish bar on blue signs
        v.rect(c[0] - 0.15 * r, c[1] - 0.45 * r, c[0] + 0.15 * r, c[1] + 0.45 * r, v.haze(np.array(
            [160.0, 80, 20]), z), None)


def _draw_tlight(v: _View, o: _Obj, z: float) -> None:
    sc = v.scale(z)
    bx, by = v.screen_x(o.x, z), v.ground_y(z)
    hw = _pole_w(v, o.p["w"], z)
    top = by - o.p["h"] * sc
    col = v.haze(np.array([60.0, 60, 60]), z)
    v.rect(bx - hw, top, bx + hw, by, col, POLE)
    hx = bx
    if o.p["arm"]:
        hx = bx - math.copysign(2.5 * sc, o.x)
        v.rect(min(hx, bx), top, max(hx, bx), top + max(0.12 * sc, 0.014 * v.h), col, POLE)
    bw, bh = max(0.2 * sc, 0.016 * v.w), max(0.55 * sc, 0.045 * v.h)
    y0 = top - (0.1 * sc if o.p["arm"] else bh)
    v.rect(hx - bw, y0, hx + bw, y0 + 2 * bh, v.haze(np.array([35.0, 40, 40]), z), LIGHT)
    lamps = [(40, 40, 230), (30, 180, 240), (60, 220, 60)]
    for i in range(3):
        c = lamps[i] if i == o.p["on"] else (50, 55, 55)
        lamp = v.haze(np.array(c, float), z)
        v.ellipse(hx, y0 + (0.35 + 0.65 * i) * bh, 0.6 * bw, 0.6 * bw, lamp, None, 12)


def _draw_person(v: _View, o: _Obj, z: float, t: float) -> None:
    sc = v.scale(z)
    bx, by = v.screen_x(o.x, z), v.ground_y(z)
    h = o.p["h"] * sc
    ph = o.p["phase"] + (t * 2 * math.pi * 0.9 if o.p["walk"] else 0.0)
    swing = 0.13 * h * math.sin(ph) if o.p["walk"] else 0.0
    hip = by - 0.48 * h
    sho = by - 0.82 * h
    lw = 0.055 * h
    legs, top, skin = v.haze(o.p["legs"], z), v.haze(o.p["top"], z), v.haze(o.p["skin"], z)
    polys = []
    for sgn in (-1, 1):
        fx = bx + sgn * swing + sgn * 0.02 * h
        hx = bx + sgn * 0.045 * h
        polys.append(np.array([[hx - lw, hip], [hx + lw, hip], [fx + lw, by], [fx - lw, by]]))
    v.fill(polys, legs, PERSON)
    tw = 0.13 * h
    v.fill([np.array([[bx - tw, sho], [bx + tw, sho], [bx + 0.11 * h, hip + 0.03 * h],
                      [bx - 0.11 * h, hip + 0.03 * h]])], top, PERSON)
    arms = []
    for sgn in (-1, 1):
        ax = bx + sgn * (tw + 0.02 * h)
        hx = ax - sgn * 0.4 * swing + sgn * 0.02 * h
        arms.append(np.array([[ax - 0.035 * h, sho], [ax + 0.035 * h, sho], [hx + 0.03 * h, hip + 0.02 * h],
                              [hx - 0.03 * h, hip + 0.02 * h]]))
    v.fill(arms, top, PERSON)
    hr = 0.065 * h
    v.ellipse(bx, sho - 0.9 * hr, 0.85 * hr, hr, skin, PERSON, 16)
    v.fill([_ellipse(bx, sho - 1.25 * hr, 0.88 * hr, 0.65 * hr, 12)], v.haze(o.p["hair"], z), PERSON)


def _draw_vehicle(v: _View, o: _Obj, z: float) -> None:
    p = o.p
    w, h, ln, cls = p["w"], p["h"], p["l"], p["cls"]
    col = p["col"]
    x = o.x
    zn = z  # near face
    if zn - v.cam_z < 1.0:
        return
    zf = zn + ln
    # Which side faces the camera.
    d = zn - v.cam_z
    rel = x + v.s.curve * d * d - v.s.cam_x
    sx = x - math.copysign(w / 2, rel) if abs(rel) > w / 2 else None
    dark = v.haze(np.array([30.0, 30, 32]), zn)
    glass = v.haze(np.array([70.0, 60, 55]) if p["kind"] != "bus" else np.array([60.0, 50, 40]), zn)
    # Shadow on the road (image only).
    sh = v.proj(np.array([x - w / 2 - 0.1, x + w / 2 + 0.1, x + w / 2 + 0.1, x - w / 2 - 0.1]), np.zeros(4),
                np.array([zn - 0.2, zn - 0.2, zf, zf]))
    v.fill([sh], v.haze(v.s.road_col * 0.45, zn), None)
    low = 0.28
    body_h = h * (0.62 if p["kind"] == "car" else 1.0)
    if sx is not None:
        # Side: wheels, lower body, cabin with window.
        wheels = []
        for zc in (zn + 0.8, zf - 0.8 if p["kind"] == "car" else zf - 1.5):
            c = _ellipse(zc, 0.34, 0.34, 0.34, 12)
            wheels.append(v.proj(np.full(12, sx), c[:, 1], c[:, 0]))
        v.fill(wheels, dark, cls)
        side = v.proj(np.full(4, sx), np.array([low, low, body_h, body_h]), np.array([zn, zf, zf, zn]))
        v.fill([side], v.haze(col * 0.8, zn), cls)
        if p["kind"] == "car":
            cx = sx + math.copysign(0.12, x - sx)
            cab = v.proj(np.array([sx, sx, cx, cx]), np.array([body_h, body_h, h, h]),
                         np.array([zn, zf - 0.9, zf - 1.6, zn + 1.2]))
            v.fill([cab], v.haze(col * 0.75, zn), cls)
            win = v.proj(np.full(4, cx), np.array([body_h + 0.05, body_h + 0.05, h - 0.07, h - 0.07]),
                         np.array([zn + 0.65, zf - 1.05, zf - 1.65, zn + 1.3]))
            v.fill([win], glass, None)
        else:
            win = v.proj(np.full(4, sx), np.array([h * 0.55, h * 0.55, h * 0.85, h * 0.85]),
                         np.array([zn + (2.5 if p["kind"] == "truck" else 0.3), zf - 0.3, zf - 0.3,
                                   zn + (2.5 if p["kind"] == "truck" else 0.3)]))
            if p["kind"] == "bus":
                v.fill([win], glass, None)
    # Roof of the cabin when the camera looks down on it.
    if p["kind"] == "car" and v.s.cam_h > h:
        roof = v.proj(np.array([x - w / 2 + 0.12, x + w / 2 - 0.12, x + w / 2 - 0.12, x - w / 2 + 0.12]),
                      np.full(4, h), np.array([zn + 1.2, zn + 1.2, zf - 1.6, zf - 1.6]))
        v.fill([roof], v.haze(col * 1.05, zn), cls)
    # Near face.
    sc = v.scale(zn)
    cxp = v.screen_x(x, zn)
    gy = v.ground_y(zn)
    hw = w / 2 * sc
    v.rect(cxp - hw, gy - 0.38 * sc, cxp - hw + 0.32 * sc, gy, dark, cls)  # wheels
    v.rect(cxp + hw - 0.32 * sc, gy - 0.38 * sc, cxp + hw, gy, dark, cls)
    v.rect(cxp - hw, gy - body_h * sc, cxp + hw, gy - low * sc, v.haze(col, zn), cls)
    v.rect(cxp - hw, gy - (low + 0.15) * sc, cxp + hw, gy - low * sc, dark, None)  # bumper
    if p["kind"] == "car":
        # Cabin (rear or front window), slanted: drawn at the near face, slightly narrower.
        scb = v.scale(zn + 1.2)
        cxb = v.screen_x(x, zn + 1.2)
        gb = v.ground_y(zn + 1.2)
        top_w = (w / 2 - 0.12) * scb  # same corners as the side cabin and the roof: no gaps
        cab = np.array([[cxp - hw, gy - body_h * sc], [cxp + hw, gy - body_h * sc],
                        [cxb + top_w, gb - h * scb], [cxb - top_w, gb - h * scb]])
        v.fill([cab], v.haze(col * 0.9, zn), cls)
        c = cab.mean(0)
        v.fill([c + (cab - c) * np.array([0.85, 0.75])], glass, None)
    else:
        if p["kind"] == "bus" or p["oncoming"]:
            v.rect(cxp - hw * 0.9, gy - h * 0.9 * sc, cxp + hw * 0.9, gy - h * 0.55 * sc, glass, None)
        else:  # truck box rear: door seam
            v.rect(cxp - 0.03 * sc, gy - h * 0.95 * sc, cxp + 0.03 * sc, gy - low * sc,
                   v.haze(col * 0.7, zn), None)
    # Lights: red at the back, pale at the front.
    lc = v.haze(np.array([200.0, 220, 230]) if p["oncoming"] else np.array([30.0, 30, 200]), zn)
    ly = gy - (body_h - 0.25) * sc
    lh = max(0.12 * sc, 1.0)
    v.rect(cxp - hw + 0.05 * sc, ly, cxp - hw + 0.3 * sc, ly + lh, lc, None)
    v.rect(cxp + hw - 0.3 * sc, ly, cxp + hw - 0.05 * sc, ly + lh, lc, None)


# ----------------------------------------------------------------------------------- world
# Object kind -> its drawer (view, object, depth, time): far to near, one call each. Only people
# move with time (their gait); the rest are drawn where the world put them.
_DRAWERS: dict[str, Callable[[_View, _Obj, float, float], None]] = {
    "car": lambda v, o, z, t: _draw_vehicle(v, o, z),
    "panel": lambda v, o, z, t: _draw_panel(v, o, z),
    "tree": lambda v, o, z, t: _draw_tree(v, o, z),
    "bush": lambda v, o, z, t: _draw_bush(v, o, z),
    "lamp": lambda v, o, z, t: _draw_lamp(v, o, z),
    "sign": lambda v, o, z, t: _draw_sign(v, o, z),
    "tlight": lambda v, o, z, t: _draw_tlight(v, o, z),
    "person": _draw_person,
}


class _World:
    """The (infinite, lazily generated) world of one seed; renders any time t."""

    def __init__(self, seed: int, dynamics: Dynamics | None = None) -> None:
        self.seed = int(seed)
        self.dyn = dynamics or Dynamics()
        self.scene = _make_scene(self.seed, self.dyn)
        self._chunks: dict[int, tuple[list[dict], list[_Obj]]] = {}
        self._lanes: dict[tuple[int, int], list[_Obj]] = {}
        self._walk: dict[tuple[int, int, int], list[_Obj]] = {}
        self._cross: dict[int, list[_Obj]] = {}
        self._noise: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _chunk(self, k: int) -> tuple[list[dict], list[_Obj]]:
        if k not in self._chunks:
            self._chunks[k] = _chunk_objects(self.scene, k)
        return self._chunks[k]

    def _visible(self, t: float) -> tuple[list[dict], list[tuple[float, _Obj]]]:
        s = self.scene
        cam_z = s.speed * t
        lo, hi = cam_z - 45.0, cam_z + VIEW_FAR
        buildings: list[dict] = []
        objs: list[tuple[float, _Obj]] = []
        for k in range(math.floor(lo / CHUNK), math.floor(hi / CHUNK) + 1):
            bs, os_ = self._chunk(k)
            buildings += [b for b in bs if b["z1"] > cam_z and b["z0"] < hi]
            objs += [(o.z, o) for o in os_ if cam_z + 0.5 < o.z < cam_z + _FAR.get(o.kind, 160.0)]
        for lane, vl in s.lane_speeds.items():
            off = vl * t
            k0, k1 = math.floor((cam_z - off - 10) / CHUNK), math.floor((cam_z - off + 200) / CHUNK)
            for k in range(k0, k1 + 1):
                key = (lane, k)
                if key not in self._lanes:
                    self._lanes[key] = _lane_objects(s, lane, k)
                for o in self._lanes[key]:
                    a, om, ph = o.p["wob"]
                    z = o.z + off + a * math.sin(om * t + ph)
                    if abs(o.x - s.cam_x) < s.lane_w / 2 and z - cam_z < 8.0:
                        continue  # never inside or right on top of the camera's own car
                    if cam_z + 1.0 < z < cam_z + _FAR["car"]:
                        objs.append((z, o))
        for side in (-1, 1):
            for flow in (-1, 1):
                # Walker speeds are flow * [0.9, 1.6]: the flow-coordinate window that can be in view.
                vs = (flow * 0.9 * t, flow * 1.6 * t)
                k0 = math.floor((cam_z - max(vs)) / CHUNK)
                k1 = math.floor((cam_z + _FAR["person"] - min(vs)) / CHUNK)
                for k in range(k0, k1 + 1):
                    key = (side, flow, k)
                    if key not in self._walk:
                        self._walk[key] = _walkers(s, side, flow, k)
                    for o in self._walk[key]:
                        z = o.z + o.p["v"] * t
                        if cam_z + 1.5 < z < cam_z + _FAR["person"]:
                            objs.append((z, o))
        if self.dyn.crossers > 0:
            for k in range(math.floor(cam_z / CHUNK), math.floor((cam_z + _FAR["person"]) / CHUNK) + 1):
                if k not in self._cross:
                    self._cross[k] = _crossers(s, k)
                objs += [(o.z, _crosser_at(o, t)) for o in self._cross[k]
                         if cam_z + 1.5 < o.z < cam_z + _FAR["person"]]
        return buildings, objs

    def _fields(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-scene texture field, cloud field and a sensor-noise bank, cached per size."""
        key = (height, width)
        if key not in self._noise:
            rng = _rng(self.seed, 9)
            fine = cv2.resize(rng.standard_normal((96, 192)).astype(np.float32), (width, height),
                              interpolation=cv2.INTER_CUBIC)
            coarse = cv2.resize(rng.standard_normal((16, 32)).astype(np.float32), (width, height),
                                interpolation=cv2.INTER_CUBIC)
            tex = np.clip((0.8 * fine + 0.5 * coarse) * 0.6, -1.5, 1.5)
            tex16 = (tex * 32).astype(np.int16)
            c1 = rng.standard_normal((6, 12)).astype(np.float32)
            c2 = rng.standard_normal((20, 40)).astype(np.float32)
            cloud = (cv2.resize(c1, (width, height), interpolation=cv2.INTER_CUBIC)
                     + 0.5 * cv2.resize(c2, (width, height), interpolation=cv2.INTER_CUBIC))
            bank = rng.standard_normal((height + 16, width + 16, 3), dtype=np.float32)
            self._noise[key] = (tex16, cloud, bank)
        return self._noise[key]

    def render(self, t: float, height: int, width: int, frame_key: int = 0) -> tuple[np.ndarray, np.ndarray]:
        if height < 8 or width < 8:
            raise ValueError(f"image size must be at least 8x8, got {height}x{width}")
        s = self.scene
        offset = camera_offset(self.dyn, self.seed, t, s.focal * width, width)
        v = _View(s, s.speed * t, height, width, offset)
        _draw_sky(v)
        _draw_ground(v)
        buildings, objs = self._visible(t)
        _draw_crosswalks(v, [z for z, o in objs if o.kind == "xwalk"])
        if s.sun:
            _draw_shadows(v, buildings, [(z, o) for z, o in objs if o.kind in ("tree", "lamp", "car")])
        for side in (-1, 1):
            for b in sorted((b for b in buildings if b["side"] == side), key=lambda b: -b["z0"]):
                _draw_building(v, b)
        objs.sort(key=lambda zo: -zo[0])
        for z, o in objs:
            draw = _DRAWERS.get(o.kind)  # crosswalks were drawn with the ground
            if draw is not None:
                draw(v, o, z, t)
        return self._finish(v, frame_key), v.lab

    def _finish(self, v: _View, frame_key: int) -> np.ndarray:
        """Image-only effects: texture, clouds, haze, exposure, sensor noise and blur."""
        s = self.scene
        h, w = v.h, v.w
        tex16, cloud, bank = self._fields(h, w)
        img = v.img.astype(np.float32)
        img += (tex16 * _TEXTURE[v.lab]).astype(np.float32)[:, :, None] * (1.0 / 32)
        hz = int(min(max(math.ceil(v.cy + 2), 0), h))
        if hz > 0 and s.cloudiness > 0:
            sky = (v.lab[:hz] == SKY).astype(np.float32)
            a = np.clip((cloud[:hz] - 1.2 + 1.5 * s.cloudiness) * 0.6, 0, 0.85) * sky
            img[:hz] += (np.array([235.0, 235, 235], np.float32) - img[:hz]) * a[:, :, None]
        if hz < h:
            rows = np.arange(hz, h, dtype=np.float32) + 0.5 - v.cy
            depth = v.f * s.cam_h / np.maximum(rows, 1e-3)
            a = (1.0 - np.exp(-depth / s.haze_dist)).astype(np.float32)
            a = a[:, None] * _GROUND[v.lab[hz:]]
            img[hz:] += (s.haze_col.astype(np.float32) - img[hz:]) * a[:, :, None]
        # Exposure, white balance and gamma as one LUT per channel, after clipping.
        rng = _rng(self.seed, 10, frame_key)
        oy, ox = rng.integers(0, 16, 2)
        sigma = 3.0 + 2.0 * (s.gain.mean() < 0.9)
        img += bank[oy:oy + h, ox:ox + w] * sigma
        img8 = np.clip(img, 0, 255).astype(np.uint8)
        x = np.arange(256, dtype=np.float64) / 255.0
        lut = np.stack([np.clip(255.0 * g * x ** s.gamma, 0, 255) for g in s.gain], -1)
        img8 = cv2.LUT(img8, lut.astype(np.uint8).reshape(256, 1, 3))
        sig = 0.0011 * w
        if sig > 0.3:
            img8 = cv2.GaussianBlur(img8, (0, 0), sig)
        return img8


def render_scene(seed: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: (BGR uint8 HxWx3, Cityscapes trainId uint8 HxW). Same as StreetClip(seed)[0]."""
    return _World(seed).render(0.0, height, width, 0)


class StreetClip:
    """A drive down one seed's street: frame i shows the camera at z = speed * i / FPS.

    `dynamics` makes the drive harder to follow (faster, panning, shaking, busier); the default
    renders the original clip byte for byte.

    Frames are independent renders of a fixed world, so random access is deterministic and
    cheap; the world and noise fields are cached on the instance.
    """

    def __init__(self, seed: int = 0, height: int = 240, width: int = 480, frames: int = 300,
                 dynamics: Dynamics | None = None) -> None:
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        self.seed, self.height, self.width, self.frames = int(seed), int(height), int(width), int(frames)
        self.dynamics = dynamics or Dynamics()  # camera motion and traffic (segdata.dynamics)
        self._world = _World(self.seed, self.dynamics)
        self.fps = FPS

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"frame index must be an int, got {type(i).__name__}")
        if i < 0:
            i += self.frames
        if not 0 <= i < self.frames:
            raise IndexError(f"frame {i} out of range for a {self.frames}-frame clip")
        return self._world.render(i / FPS, self.height, self.width, int(i))

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(self.frames):
            yield self[i]
