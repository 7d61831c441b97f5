"""`pspnet-rt --video demo --loop --serve` as users run it, watched by a real headless chromium.

One pspnet-rt subprocess for the module (the tiny demo artefact, a token from the environment,
masks and stats written beside the live view); the last test stops it with SIGHUP by PID and
checks every output was finished. Set PSPNET_RT_SCREENSHOT=docs/live-view.png to keep the
screenshot (PSPNET_RT_LIVE_ENGINE picks another artefact, e.g. the 240x480 demo build).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.browser import browser_page, require_browser

pytest.importorskip("prometheus_client", reason="the serve extra (prometheus_client) is not installed")
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LiveRun:
    proc: subprocess.Popen
    url: str
    token: str
    folder: Path
    err: list[str] = field(default_factory=list)

    def get(self, path: str, token: str | None = "header") -> tuple[int, bytes, str]:
        request = urllib.request.Request(self.url.rstrip("/") + path)
        if token == "header":
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")

    def stats_lines(self) -> int:
        path = self.folder / "s.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def live(demo_artefacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRun]:
    require_browser()
    engine = os.environ.get("PSPNET_RT_LIVE_ENGINE") or str(demo_artefacts["openvino"])
    folder = tmp_path_factory.mktemp("live")
    token = secrets.token_urlsafe(12)
    env = {**os.environ, "PSPNET_RT_SERVE_TOKEN": token}  # the token stays out of the process list
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "--video", "demo", "--loop",
                             "--demo-frames", "60", "--engine", engine, "--serve", "127.0.0.1:0",
                             "--stats", str(folder / "s.jsonl"), "--masks", str(folder / "m")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()
    try:
        deadline = time.monotonic() + 240
        url = None
        while url is None:
            assert proc.poll() is None, "".join(err)
            assert time.monotonic() < deadline, "no live view line: " + "".join(err)
            found = [m for line in list(err) if (m := re.search(r"live view (http://\S+/)", line))]
            url = found[0].group(1) if found else None
            time.sleep(0.1)
        run = LiveRun(proc, url, token, folder, err)
        while run.stats_lines() < 3:  # the model runs
            assert proc.poll() is None and time.monotonic() < deadline, "".join(err)
            time.sleep(0.2)
        yield run
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_page_shows_live_frames_and_figures(live: LiveRun, tmp_path: Path) -> None:
    with browser_page() as page:  # functions, not strings, for waits: the page's CSP forbids eval
        response = page.goto(f"{live.url}?token={live.token}")
        assert response.status == 200
        page.wait_for_function("() => document.getElementById('state').textContent === 'running'",
                               timeout=60_000)
        page.wait_for_function("() => document.getElementById('live').naturalWidth > 0", timeout=60_000)
        # frames arrive and keep changing: the <img> (MJPEG) drawn into a canvas, hashed
        sampled = page.evaluate("""async () => {
            const img = document.getElementById('live');
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d', {willReadFrequently: true});
            const seen = new Set();
            for (let i = 0; i < 24; i++) {
                g.drawImage(img, 0, 0);
                const d = g.getImageData(0, 0, c.width, c.height).data;
                let h = 0;
                for (let j = 0; j < d.length; j += 4)
                    h = (Math.imul(h, 31) + d[j] + 3 * d[j + 1] + 7 * d[j + 2]) >>> 0;
                seen.add(h);
                await new Promise(r => setTimeout(r, 250));
            }
            return {distinct: seen.size, width: c.width, height: c.height};
        }""")
        assert sampled["distinct"] >= 4, sampled
        assert sampled["width"] >= 64 and sampled["height"] >= 32
        # the figures update without reloading
        first = int(page.text_content("#frames"))
        page.wait_for_function(f"() => Number(document.getElementById('frames').textContent) > {first}",
                               timeout=30_000)
        assert float(page.text_content("#fps")) > 0
        stages = page.locator("#stages tr td:first-child").all_text_contents()
        assert {"inference", "render", "end-to-end"} <= set(stages)
        assert "openvino" in page.text_content("#backend")
        legend = page.locator("#legend li")
        assert legend.count() >= 2
        shares = [t for t in page.locator("#legend .pct").all_text_contents() if t.endswith("%")]
        assert shares and sum(float(t[:-1]) for t in shares) == pytest.approx(100, abs=1.0)
        assert page.problems == []  # no script errors, no CSP violations
        shot = tmp_path / "live-view.png"
        page.screenshot(path=str(shot))
        assert cv2.imread(str(shot)).shape[:2] == (760, 1280)
        if os.environ.get("PSPNET_RT_SCREENSHOT"):
            target = Path(os.environ["PSPNET_RT_SCREENSHOT"])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, target)


def test_page_needs_the_token(live: LiveRun) -> None:
    with browser_page() as page:
        assert page.goto(live.url).status == 401
        assert page.goto(f"{live.url}?token=wrong").status == 401
        assert page.goto(f"{live.url}nope?token={live.token}").status == 404
    for path in ("/", "/stats", "/metrics", "/snapshot.jpg"):
        assert live.get(path, token=None)[0] == 401


def test_metrics_and_snapshot_of_a_real_run(live: LiveRun) -> None:
    status, body, ctype = live.get("/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["pspnet_rt_frames_processed"].samples[0].value >= 3
    inference = [s for s in families["pspnet_rt_stage_seconds"].samples
                 if s.name.endswith("_count") and s.labels["stage"] == "inference"]
    assert inference and inference[0].value >= 3
    info = families["pspnet_rt_model_info"].samples[0].labels
    assert info["backend"] == "openvino" and info["model"] == "demo" and info["precision_ran"]
    status, body, ctype = live.get("/snapshot.jpg")
    picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and ctype == "image/jpeg" and picture is not None and picture.shape[2] == 3
    stats = json.loads(live.get("/stats")[1])
    assert stats["state"] == "running" and stats["frames"] >= 3 and stats["backend"]["backend"] == "openvino"


def test_sighup_stops_cleanly_with_every_output(live: LiveRun) -> None:
    """The last test: SIGHUP (a closed terminal) finishes the outputs and closes the server."""
    live.proc.send_signal(signal.SIGHUP)
    live.proc.wait(timeout=120)
    out = live.proc.stdout.read()  # stderr is read by the fixture's thread
    err = "".join(live.err)
    assert live.proc.returncode == 129, err
    assert "pspnet-rt summary" in out and "Traceback" not in err
    lines = [json.loads(line) for line in (live.folder / "s.jsonl").read_text().splitlines()]
    masks = sorted((live.folder / "m").glob("*.png"))
    assert len(masks) == len(lines) >= 3
    with pytest.raises(OSError):
        live.get("/healthz")  # the server went with the rest
