"""Issue 21, the run side, for secrets: a password or token in a source URL reaches no output,
whatever way it was typed, wherever the source is named (the printed summary, error lines and
logs, --summary-json, --stats, the live page, /stats, /metrics, command lines recorded in
reports and manifests). One function does it: runtime.naming.redact_source."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime.naming import redact_source
from tests.faults.helpers import call_main, free_port, rt, run, spawn, stop, wait_for

SECRET = "S3cretPW"

TYPED = {  # how a user may type a URL with a secret -> what of it must survive
    "user:password@": ("rtsp://admin:S3cretPW@10.0.0.2:554/stream", "rtsp://admin:***@10.0.0.2:554/stream"),
    "empty user": ("rtsp://:S3cretPW@cam/s", "rtsp://:***@cam/s"),
    "an @ in the password": ("rtsp://u:p@S3cretPW@cam/s", "rtsp://u:***@cam/s"),
    "a / in the password": ("rtsp://u:pa/S3cretPW@cam/s", "rtsp://u:***@cam/s"),
    "a # and ? in the password": ("rtsp://u:p#S3cret?PW@cam/s", "rtsp://u:***@cam/s"),
    "a space in the password": ("rtsp://u:S3cret PW@cam/s", "rtsp://u:***@cam/s"),
    "percent-encoded": ("rtsp://u:S3cret%40PW@cam/s", "rtsp://u:***@cam/s"),
    "a token as the user": ("https://S3cretPW@host/clip.mp4", "https://***@host/clip.mp4"),
    "?password=": ("rtsp://cam/s?user=admin&password=S3cretPW", "rtsp://cam/s?user=admin&password=***"),
    "?token=": ("http://h/live.m3u8?token=S3cretPW", "http://h/live.m3u8?token=***"),
    "signed S3 URL": ("https://b.s3.amazonaws.com/c.mp4?X-Amz-Credential=AK&X-Amz-Signature=S3cretPW",
                      "https://b.s3.amazonaws.com/c.mp4?X-Amz-Credential=***&X-Amz-Signature=***"),
    "#access_token=": ("https://h/v.mp4#access_token=S3cretPW&x=1", "https://h/v.mp4#access_token=***&x=1"),
    "srt passphrase": ("srt://h:9000?passphrase=S3cretPW&latency=20", "srt://h:9000?passphrase=***&latency=20"),
    "a one-slash typo": ("rtsp:/u:S3cretPW@cam/s", "rtsp:/u:***@cam/s"),
    "no scheme at all": ("u:S3cretPW@cam/s", "u:***@cam/s"),
    "IPv6 host": ("rtsp://u:S3cretPW@[fe80::1]:554/s", "rtsp://u:***@[fe80::1]:554/s"),
    "inside a sentence": ("cannot open 'rtsp://u:S3cretPW@h/x' (refused)",
                          "cannot open 'rtsp://u:***@h/x' (refused)"),
    "twice in a line": ("a rtsp://u:S3cretPW@h b rtsp://v:S3cretPW@h", "a rtsp://u:***@h b rtsp://v:***@h"),
    "a typo whose host looks like a size": ("rtsp:u:S3cretPW@240x480", "rtsp:u:***@240x480"),
    "not our synthetic source": ("synthetic:u:S3cretPW@cam", "synthetic:u:***@cam"),
}
UNTOUCHED = ["demo", "cam0", "/dev/video2", "frames/*.png", "/data/clip:v1@2x.png", "udp://@:5000",
             "rtsp://cam:554/Streaming/Channels/101?transportmode=unicast", "http://h/a:b@c",
             # our synthetic data source's @HxW is a size (the main command's summary names it)
             "synthetic:calib:200@240x480", "calibrated on synthetic:calib:200@240x480",
             "--eval-data synthetic:val:40@240x480, 48 frames", "(synthetic:val@96x192)"]


@pytest.mark.fault("secrets-in-urls")
@pytest.mark.parametrize("case", list(TYPED))
def test_the_one_function_hides_every_way_a_secret_is_typed(case: str) -> None:
    given, wanted = TYPED[case]
    assert redact_source(given) == wanted
    assert SECRET not in redact_source(given) and "S3cret" not in redact_source(given)
    assert redact_source(wanted) == wanted  # idempotent


@pytest.mark.fault("secrets-in-urls")
def test_what_holds_no_secret_is_left_as_it_is() -> None:
    for text in UNTOUCHED:
        assert redact_source(text) == text


REFUSED_SOURCES = {  # a source that fails to open, each way of naming a secret
    "a refused rtsp stream": "rtsp://admin:S3cretPW@127.0.0.1:{closed}/s",
    "an @ in the password": "rtsp://u:p@S3cretPW@127.0.0.1:{closed}/s",
    "an empty user": "rtsp://:S3cretPW@127.0.0.1:{closed}/s",
    "a token parameter": "rtsp://127.0.0.1:{closed}/s?token=S3cretPW",
    "a one-slash typo": "rtsp:/u:S3cretPW@127.0.0.1/s",
    "an unknown scheme": "ftp://u:S3cretPW@127.0.0.1/x.mp4",
    "an HTTP 404": "http://u:S3cretPW@127.0.0.1:{http}/missing.mp4?password=S3cretPW",
}


class _Clip(http.server.BaseHTTPRequestHandler):
    """Serves one mp4 at /clip.mp4 (query ignored, basic auth accepted and ignored), 404 else."""

    body = b""

    def log_message(self, *args: object) -> None:
        pass

    def _head(self) -> bool:
        if self.path.split("?")[0] != "/clip.mp4":
            self.send_error(404)
            return False
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        return True

    def do_HEAD(self) -> None:
        self._head()

    def do_GET(self) -> None:
        if self._head():
            with contextlib.suppress(OSError):
                self.wfile.write(self.body)


@pytest.fixture(scope="module")
def clip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    from runtime.sinks import VideoSink

    folder = tmp_path_factory.mktemp("clip")
    sink = VideoSink(folder / "clip.mp4", 10)
    sink.open((192, 96))
    rng = np.random.default_rng(3)
    for _ in range(40):
        sink.write(rng.integers(0, 255, (96, 192, 3), dtype=np.uint8))
    sink.close()
    handler = type("Clip", (_Clip,), {"body": (folder / "clip.mp4").read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.fault("secrets-in-urls")
@pytest.mark.parametrize("case", list(REFUSED_SOURCES))
def test_a_source_that_fails_names_no_secret(ov: str, clip_server: int, case: str,
                                             capsys: pytest.CaptureFixture) -> None:
    uri = REFUSED_SOURCES[case].format(closed=free_port(), http=clip_server)
    code, out, err, _ = rt(["--video", uri, "--engine", ov, "--timeout", "2", "-v"], capsys)
    assert code == 2, err
    assert "S3cret" not in out + err, err
    assert "***" in err, err  # the source is still named, its secret hidden


@pytest.mark.fault("secrets-in-urls")
def test_ffmpegs_own_log_never_prints_the_secret(ov: str) -> None:
    """FFmpeg logs from C, straight to the process's stderr (past any Python redaction): with a
    secret in the URL it stays quiet even with -vv. A real process, so fd 2 is what is read."""
    done = run("runtime", "--video", f"tcp://u:{SECRET}@127.0.0.1:{free_port()}", "--engine", ov,
               "--timeout", "1", "-vv", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "S3cret" not in done.stdout + done.stderr and "tcp://u:***@" in done.stderr


@pytest.mark.fault("secrets-in-urls")
def test_a_triton_url_with_credentials_is_refused_without_them(capsys: pytest.CaptureFixture) -> None:
    code, out, err, _ = rt(["--video", "demo", "--engine", "triton://u:S3cretPW@127.0.0.1:1/demo"], capsys)
    assert code == 2, err
    assert "S3cret" not in out + err and "no user or password" in err


@pytest.mark.fault("secrets-in-urls")
def test_recorded_command_lines_hide_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    import build_engine.cli as build_cli
    from benchmarks.common import command_line
    from calib.sources import FrameSet

    url = "rtsp://u:S3cretPW@127.0.0.1:1/s?token=S3cretPW"
    assert "S3cret" not in command_line("benchmarks.latency", ["--video", url])
    recorded: list[str] = []
    monkeypatch.setattr(build_cli, "_build", lambda args, command, *rest: recorded.append(command) or 0)
    assert call_main(build_cli.main, ["--calib-data", url, "--precision", "int8"]) == 0
    assert recorded and "S3cret" not in recorded[0] and "rtsp://u:***@" in recorded[0]
    frames = FrameSet([np.zeros((2, 2, 3), np.uint8)], [None], url, 1)
    assert "S3cret" not in json.dumps(frames.describe())


@pytest.mark.fault("secrets-in-urls", "serve-host")
def test_a_served_run_shows_no_secret_and_no_path(ov: str, clip_server: int, tmp_path: Path) -> None:
    """An mp4 behind basic auth and a signed URL, through the whole run with -v and the live view:
    no output holds the secret; /metrics and /stats name the artefact by file name only; the
    live view answers a name given by --serve-allow-host and refuses another."""
    url = f"http://viewer:{SECRET}@127.0.0.1:{clip_server}/clip.mp4?token={SECRET}&X-Amz-Signature={SECRET}"
    port = free_port()
    stats, summary = tmp_path / "s.jsonl", tmp_path / "sum.json"
    proc = spawn("runtime", "--video", url, "--loop", "--engine", ov, "--serve", str(port),
                 "--serve-allow-host", "box.local", "--stats", str(stats), "--summary-json", str(summary),
                 "-v")
    served: dict[str, bytes] = {}
    try:
        wait_for(lambda: stats.exists() and len(stats.read_text().splitlines()) >= 3, "frames", proc=proc)
        for path in ("/", "/stats", "/metrics", "/streams/0/stats"):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": "box.local"})
            with urllib.request.urlopen(request, timeout=10) as response:
                served[path] = response.read()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/stats", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 421
        proc.terminate()
        out, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 143, err
    assert "http://viewer:***@127.0.0.1" in json.loads(served["/stats"])["title"]
    artefact_dir = str(Path(ov).resolve().parent)
    for name, text in {**{p: b.decode() for p, b in served.items()}, "stdout": out, "stderr": err,
                       "summary": summary.read_text(), "stats": stats.read_text()}.items():
        assert SECRET not in text, name
    for path in ("/stats", "/metrics"):
        assert artefact_dir not in served[path].decode(), path
    assert f'artefact="{Path(ov).name}"' in served["/metrics"].decode()
