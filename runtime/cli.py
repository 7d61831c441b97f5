"""`pspnet-rt`: segment a video source with a PSPNet artefact and write what it saw."""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

import clikit

if TYPE_CHECKING:
    from runtime.options import RunOptions
    from runtime.summary import RunSummary

EXAMPLES = """\
examples:
  pspnet-rt --video demo --output demo.mp4
      the built-in synthetic street clip through the default artefact: built once (cached) at
      the fastest precision that passes the accuracy gate (--precision auto; INT8 for the demo)
  pspnet-rt --video drive.mp4 --engine artefacts/demo-240x480-fp32-openvino.json \\
            --output out.mp4 --masks masks/ --stats stats.jsonl
      every frame of a file, in order: overlay video, class-id PNGs, per-frame timings
  pspnet-rt --video cam0 --engine model.engine --show
      a V4L2 camera (/dev/video0) on TensorRT; stale frames are dropped, never queued
  pspnet-rt --video 'frames/*.png' --engine m.json --visualize side-by-side --output sbs.mp4
  pspnet-rt --video udp://0.0.0.0:5000 --engine m.json --output live.mp4 --reconnect 3
  pspnet-rt --video 'rtsp://admin:PASS@10.0.0.2/stream1' --rtsp-transport tcp --engine m.json \\
            --output seg.mp4 --output rtsp://127.0.0.1:8554/seg
      an IP camera in (the password never printed), the segmented stream out to RTSP clients
      (ffplay rtsp://127.0.0.1:8554/seg) and to a file
  pspnet-rt --video demo --engine m.json --max-frames 100 --benchmark
      bare inference FPS before and after the whole pipeline on the same frames
  pspnet-rt --video demo --engine triton://127.0.0.1:8001/demo-python --output demo.mp4
      frames segmented by a Triton server (`python -m build_engine --triton-repo DIR`,
      `scripts/triton-server.sh start DIR`); classes and palette come from the server
  pspnet-rt --video gate=rtsp://cam1/s --video dock=cam0 --engine m.json --output out.mp4 \\
            --masks masks/ --stats stats.jsonl
      two streams sharing one backend: out-gate.mp4, out-dock.mp4, masks/gate/, masks/dock/,
      stats lines with "stream": "gate" / "dock"
  pspnet-rt --video drive.mp4 --engine m.json --stats /dev/stdout | jq .e2e_ms
      outputs may be /dev/stdout, a FIFO or /dev/null (written in place; the summary goes to
      stderr); one run writes an output at a time, a second one is refused
  pspnet-rt --video demo --loop --serve 8080
      live view in a browser at http://127.0.0.1:8080/ (stream, legend, FPS, stage latency,
      drops), MJPEG at /stream.mjpg, /snapshot.jpg, /stats JSON, Prometheus text at /metrics
  pspnet-rt --video cam0 --serve 0.0.0.0:8080 --serve-token "$TOKEN"
      reachable from other machines (a warning says so); every endpoint then needs the token
  pspnet-rt --video drive.mcap#/camera/image_raw --bag seg.mcap --masks masks/ --stats s.jsonl
      a ROS 2 bag in, a bag out: class maps, overlays and timings with the camera's stamps
      (the ros extra; a rosbag2 folder or a ROS 1 .bag work the same; docs/ros.md)
  pspnet-rt --video drive.mcap --realtime --foxglove 8765
      the bag at its recorded rate, live in Foxglove (Open connection -> ws://127.0.0.1:8765)
  pspnet-rt --video drive.mp4 --engine m.json --temporal adaptive --output out.mp4 --stats s.jsonl
      video-aware: the full network on key frames only, motion-warped results in between
      (s.jsonl says per frame whether it was a key frame and why)

several --video: one process, one backend, each stream lossless (files) or newest-frame (live)
as alone. NAME=SRC names a stream (letters, digits, _ . -), else streams are named 0, 1, ...;
--output X.mp4 -> X-NAME.mp4, --masks DIR -> DIR/NAME/, --stats one file whose lines carry
"stream"; the summary gives each stream and the throughput summed over them. --temporal
chooses key frames per stream (each stream gets the masks it would get alone).

SRC: camN, /dev/videoN, a video file, an image folder or glob, rtsp:// http(s):// udp:// URLs,
or demo; an http(s) URL that serves a file (clip.mp4) is read like a file, every frame.
Ctrl-C / SIGTERM / SIGHUP stop cleanly: the video is closed and playable, every PNG is whole,
the stats are flushed and the summary is printed; a second signal does not cut that short, a
third aborts (removing this run's temp files). Exit 0 means every output was verified whole at
close; what was at an output path stays until a verified file replaces it.
A live stream that stays lost after its --reconnect attempts ends the run with exit 1 (the
outputs are closed whole, the frames lost while reconnecting are counted as drops); with
--reconnect 0 the stream's end is the run's end (exit 0). Other FFmpeg options for network
sources go in OPENCV_FFMPEG_CAPTURE_OPTIONS, e.g. 'analyzeduration;500000'.
--output rtsp://HOST:PORT/PATH serves the rendered stream to RTSP clients (docs/rtsp.md).
exit codes: 0 ok, 1 runtime failure, 2 bad input (source, artefact, option, output path),
130 Ctrl-C, 143 SIGTERM, 129 SIGHUP
"""

log = logging.getLogger("pspnet-rt")
PROG = "pspnet-rt"


@clikit.option_type("[HOST:]PORT", good="8080", bad=("", "abc", "70000", "-1", ":8080", "::1:8080"))
def _serve_address(text: str) -> tuple[str, int]:
    from runtime.live.address import parse_bind

    try:
        return parse_bind(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_video_file = clikit.output_file("a video file such as out.mp4")


@clikit.option_type("a video file such as out.mp4, or rtsp://[USER:PASSWORD@]HOST:PORT/PATH to serve",
                    good="out.mp4", bad=("", "/", "/dev/null/x", "rtsp://", "rtsp://127.0.0.1:99999/seg"))
def _output(text: str) -> str:
    if text.lower().startswith("rtsp://"):
        from runtime.errors import OutputError
        from runtime.rtsp_sink import RtspSink

        try:
            RtspSink.parse(text)
        except OutputError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
        return text
    return _video_file(text)


def split_outputs(given: list[str] | None) -> tuple[str | None, str | None]:
    """--output may be given twice: one video file and one rtsp:// URL to serve -> (file, url)."""
    from runtime.errors import UsageError

    urls = [o for o in given or [] if o.lower().startswith("rtsp://")]
    files = [o for o in given or [] if o not in urls]
    if len(files) > 1 or len(urls) > 1:
        raise UsageError("--output takes one video file and one rtsp:// URL at most; got "
                         + ", ".join(repr(o) for o in (files if len(files) > 1 else urls)))
    return (files[0] if files else None), (urls[0] if urls else None)


@clikit.option_type("a host name or IP address", good="box.local",
                    bad=("", "  ", "http://box.local", "box.local:8080", "a b"))
def _allowed_host(text: str) -> str:
    from runtime.live.hosts import parse_allowed_host

    try:
        return parse_allowed_host(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@clikit.option_type("an artefact manifest, model file or folder, or triton://HOST:PORT/MODEL",
                    good=__file__, bad=("", "/nonexistent/pspnet-rt-fault", "triton://"))
def _engine(text: str) -> str:
    if text.startswith("triton://"):
        if not text[len("triton://"):].strip("/"):
            raise argparse.ArgumentTypeError(f"{text!r}: give triton://HOST:PORT/MODEL")
        return text
    return clikit.input_path("an artefact manifest, model file or folder")(text)


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(PROG, __doc__, EXAMPLES)
    rate = clikit.float_in(high=1000, what="a frame rate", above=0)
    io = p.add_argument_group("input and model")
    io.add_argument("--video", required=True, action="append", metavar="[NAME=]SRC",
                    type=clikit.non_empty("a source ([NAME=]SRC)"),
                    help="camN, /dev/videoN, file, folder, glob, URL or demo; repeat for several "
                         "streams sharing one backend")
    io.add_argument("--engine", metavar="ARTEFACT", type=_engine,
                    help="artefact manifest (.json), its model file, a folder holding one, or "
                         "triton://HOST:PORT/MODEL (a Triton server's gRPC port)")
    io.add_argument("--model", default="demo", type=clikit.non_empty("a model zoo name"),
                    help="build (once, cached) this zoo model when no --engine is given")
    io.add_argument("--precision", choices=("auto", "fp32", "fp16", "int8"), default="auto",
                    help="precision of the artefact to build when no --engine is given; auto (default): "
                         "the fastest that passes the accuracy gate (the summary says which and why)")
    io.add_argument("--backend", choices=("auto", "openvino", "onnxruntime", "tensorrt"), default="auto",
                    help="auto = the artefact's own backend")
    io.add_argument("--input-size", type=clikit.hw_size, metavar="HxW",
                    help="model input size for --model builds and dynamic-shape artefacts")
    io.add_argument("--max-frames", type=clikit.positive_int, metavar="N", help="stop after N frames")
    io.add_argument("--loop", action="store_true", help="replay files, folders and demo until stopped")

    out = p.add_argument_group("outputs")
    out.add_argument("--output", metavar="FILE.mp4|rtsp://HOST:PORT/PATH", type=_output, action="append",
                     help="rendered video (H.264 via ffmpeg when present); an rtsp:// URL serves it to RTSP "
                          "clients instead (GStreamer's RTSP server; 127.0.0.1 by default, port 0 = a free "
                          "one; docs/rtsp.md); give both to do both")
    out.add_argument("--masks", metavar="DIR", type=clikit.output_dir("a folder for mask PNGs"),
                     help="lossless class-id PNG per frame, DIR/NNNNNN.png by frame index")
    out.add_argument("--show", action="store_true",
                     help="show a window (needs a display and OpenCV with GUI)")
    out.add_argument("--stats", metavar="FILE.jsonl", type=clikit.output_file("a file such as stats.jsonl"),
                     help="one JSON object per frame with per-stage ms")
    out.add_argument("--summary-json", metavar="FILE", type=clikit.output_file("a file such as summary.json"),
                     help="also write the exit summary as JSON")
    out.add_argument("--visualize", choices=("overlay", "mask", "side-by-side"), default="overlay")
    out.add_argument("--alpha", type=clikit.float_in(0.0, 1.0, "an opacity"), default=0.5,
                     help="overlay opacity 0..1 (default 0.5)")
    out.add_argument("--no-legend", action="store_true", help="do not draw the class legend")
    out.add_argument("--fps", type=rate, metavar="F", help="output video frame rate (default: the source's)")
    out.add_argument("--x264-preset", default="superfast",
                     choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium"),
                     help="H.264 speed/size trade-off (default superfast: cheap next to inference)")

    srv = p.add_argument_group("live view and metrics (the serve extra: pip install 'pspnet-rt[serve]')")
    srv.add_argument("--serve", type=_serve_address, metavar="[HOST:]PORT",
                     help="serve the live page, MJPEG, snapshots, /stats and Prometheus /metrics on "
                          "HOST:PORT (127.0.0.1 unless a host is given; port 0 picks a free one)")
    srv.add_argument("--serve-token", metavar="TOKEN", type=clikit.non_empty("a token"),
                     help="require TOKEN on every endpoint (?token=TOKEN or 'Authorization: Bearer TOKEN'); "
                          "default $PSPNET_RT_SERVE_TOKEN, which keeps it out of the process list")
    srv.add_argument("--serve-clients", type=clikit.positive_int, default=32, metavar="N",
                     help="open connections served at once (a page uses two); more get 503 (default 32)")
    srv.add_argument("--serve-allow-host", type=_allowed_host, action="append", metavar="NAME",
                     help="also answer requests whose Host header is NAME (e.g. box.local, or a reverse "
                          "proxy's name); repeatable. By default only the addresses it listens on (and "
                          "localhost) are answered, 421 otherwise: a guard against DNS rebinding")

    _add_ros_options(p)

    rt = p.add_argument_group("runtime tuning")
    rt.add_argument("--device", type=clikit.non_empty("a device name or CUDA index"),
                    help="OpenVINO device (CPU, GPU, AUTO) or CUDA device index for tensorrt")
    rt.add_argument("--hint", choices=("auto", "latency", "throughput"), default="auto",
                    help="OpenVINO performance hint; auto = throughput for files, latency for live")
    rt.add_argument("--requests", type=clikit.int_in(1, 256), metavar="N",
                    help="requests in flight (OpenVINO infer requests, Triton client requests)")
    rt.add_argument("--cuda-graph", action="store_true", help="TensorRT: replay inference as CUDA graphs")
    rt.add_argument("--benchmark", action="store_true",
                    help="measure bare inference on the same frames before and after the run")

    live = p.add_argument_group("live sources")
    live.add_argument("--capture-size", type=clikit.size_type("WxH"), metavar="WxH",
                      help="camera resolution")
    live.add_argument("--capture-fps", type=rate, metavar="F", help="camera frame rate")
    live.add_argument("--reconnect", type=clikit.non_negative_int, default=5, metavar="N",
                      help="reopen a lost live stream up to N times (backoff 0.5 s doubling, max 8 s)")
    live.add_argument("--reconnect-delay", type=clikit.float_in(high=60, what="a delay", above=0),
                      default=0.5, metavar="S", help=argparse.SUPPRESS)
    live.add_argument("--rtsp-transport", choices=("auto", "tcp", "udp"), default="auto",
                      help="rtsp:// sources: auto (default: FFmpeg tries UDP, then TCP), tcp (through "
                           "firewalls and NAT; no packet loss) or udp (lowest latency on a clean network)")
    live.add_argument("--timeout", type=clikit.float_in(high=86400, what="a timeout", above=0), default=10.0,
                      metavar="S", help="network stream and Triton server open/read timeout in seconds (> 0)")
    live.add_argument("--demo-frames", type=clikit.int_in(1, 100_000), default=300, metavar="N",
                      help="length of the demo clip")
    live.add_argument("--demo-seed", type=clikit.int_in(0, 2**32 - 1), default=0, metavar="N",
                      help="seed of the demo street")
    _add_temporal_options(p)
    clikit.add_verbose(p)
    return p


@clikit.option_type("a ROS topic name such as /pspnet/class_map", good="/pspnet/class_map",
                    bad=("", "/", "a b", "/1x"))
def _ros_topic(text: str) -> str:
    from runtime.ros.bag_sink import check_topic

    try:
        return check_topic(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_ros_options(p: argparse.ArgumentParser) -> None:
    ros = p.add_argument_group(
        "ROS bags and Foxglove (the ros extra: pip install 'pspnet-rt[ros]'; no ROS install needed)",
        "--video takes a bag: drive.mcap, a rosbag2 folder (.mcap or .db3) or a ROS 1 .bag, with "
        "BAG#TOPIC choosing the image topic (sensor_msgs/Image or CompressedImage). See docs/ros.md.")
    ros.add_argument("--topic", metavar="TOPIC", type=clikit.non_empty("an image topic"),
                     help="image topic of every bag source that does not name one with BAG#TOPIC")
    ros.add_argument("--realtime", action="store_true",
                     help="replay bags at their recorded rate, like a live camera (stale frames dropped); "
                          "default: every frame as fast as possible, like a file")
    ros.add_argument("--bag", metavar="FILE.mcap", type=clikit.output_file("a bag file such as seg.mcap"),
                     help="write a ROS 2 MCAP bag: the class map (sensor_msgs/Image mono8), the overlay "
                          "(CompressedImage jpeg), per-frame timings and the class names + palette, each "
                          "with the source message's stamp and frame id")
    ros.add_argument("--bag-topic", metavar="TOPIC", type=_ros_topic, default="/pspnet/class_map",
                     help="class map topic of --bag; the other topics sit beside it (default "
                          "/pspnet/class_map: /pspnet/overlay/compressed, /pspnet/frame_stats, ...)")
    ros.add_argument("--foxglove", type=_serve_address, metavar="[HOST:]PORT",
                     help="serve the overlay, class map and stats live to the Foxglove app (foxglove-sdk's "
                          "WebSocket server; 127.0.0.1 unless a host is given; port 0 picks a free one)")


MODES_TEXT = "off, adaptive or fixed:N (N from 1 to 1000)"


@clikit.option_type(MODES_TEXT, good="fixed:3",
                    bad=("", "sometimes", "fixed:0", "fixed:x"))
def _temporal_mode(text: str) -> str:
    from runtime.errors import UsageError
    from runtime.temporal.config import parse_temporal

    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected {MODES_TEXT}, got an empty value")
    try:
        parse_temporal(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_temporal_options(p: argparse.ArgumentParser) -> None:
    from runtime.temporal import config as tc  # light: the defaults live with their parser

    tm = p.add_argument_group(
        "video-aware inference",
        "Key frames run the full artefact; the frames in between get a key frame's classes moved "
        "by dense optical flow (OpenCV DIS on a small grey copy), at a fraction of the cost. Every "
        "frame still gets a mask; --stats says which frames were key frames and why. Measured "
        "trade-off (mIoU vs FPS): python -m benchmarks.temporal.")
    tm.add_argument("--temporal", default="off", metavar="MODE", type=_temporal_mode,
                    help="off (default: every frame through the network); fixed:N = a key frame every "
                         "N frames; adaptive = a key frame when the change score (the share of pixels "
                         "the warped key frame fails to explain), a scene cut or the max interval says "
                         "the propagated result is no longer trustworthy")
    tm.add_argument("--temporal-threshold", metavar="T",
                    type=clikit.float_in(*tc.THRESHOLD_RANGE, what="a change score"),
                    help=f"adaptive: change score that forces a key frame, 0..10 (default "
                         f"{tc.DEFAULT_THRESHOLD}; lower = more key frames, more accurate, slower)")
    tm.add_argument("--temporal-max-interval", metavar="N", type=clikit.int_in(*tc.INTERVAL_RANGE),
                    help=f"adaptive: a key frame at least every N frames (default {tc.DEFAULT_MAX_INTERVAL})")
    tm.add_argument("--temporal-direction", metavar="D", choices=tc.DIRECTIONS,
                    help="both = a frame between two key frames takes each pixel from the one that "
                         "explains it better (waits for the next key frame: more accurate, an interval "
                         "of latency); forward = from the last key frame only; auto (default) = both "
                         "for files, folders and demo, forward for live sources")
    tm.add_argument("--temporal-flow-scale", metavar="S",
                    type=clikit.float_in(*tc.FLOW_SCALE_RANGE, what="a fraction of the input"),
                    help=f"optical flow resolution as a fraction of the model input, 0.05..1 "
                         f"(default {tc.DEFAULT_FLOW_SCALE}: 120x240 for a 240x480 model)")


def _quiet_native_logs(verbose: int, secret: bool = False) -> None:
    """OpenCV and FFmpeg print their own warnings to stderr; keep them for -v, so that by default
    an error is the one line we print. (FFmpeg's level is read at its first use, i.e. later.)
    `secret`: a source URL holds a password or token. FFmpeg prints URLs as they are, from C,
    past our redaction, so its log stays quiet then, whatever -v says."""
    import cv2

    if secret and verbose:
        log.warning("FFmpeg's own log stays quiet: a --video URL holds a secret it would print")
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "8"  # AV_LOG_FATAL
    elif verbose == 0:
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL
    levels = cv2.utils.logging
    levels.setLogLevel(levels.LOG_LEVEL_ERROR if verbose == 0 or secret else levels.LOG_LEVEL_WARNING)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see EXAMPLES)."""
    from artefact.manifest import ArtefactError
    from runtime.default_build import BuildFailed
    from runtime.errors import SourceDamaged, WriteError
    from runtime.naming import redact_source
    from runtime.output_target import open_standard_descriptors

    open_standard_descriptors()  # before any file is opened: a closed stdout must not become one
    signals = clikit.Signals(PROG)
    return clikit.run(PROG, build_parser(), lambda args: _run(args, signals), argv, signals=signals,
                      usage=(ArtefactError,), failure=(WriteError, BuildFailed, SourceDamaged),
                      interrupted="interrupted: stopped before streaming, no output was written",
                      scrub=redact_source)


def run_options(args: argparse.Namespace) -> RunOptions:
    """The parsed flags as the run's options (same names; --video is `videos`, --no-legend `legend`)."""
    from runtime.options import RunOptions

    output, rtsp_out = split_outputs(args.output)
    return RunOptions.from_fields(args, videos=list(args.video), legend=not args.no_legend, output=output,
                                  rtsp_out=rtsp_out)


def _run(args: argparse.Namespace, signals: clikit.Signals) -> int:
    from runtime.finish import show_summary
    from runtime.naming import redact_source
    from runtime.run import run

    _quiet_native_logs(args.verbose, secret=any(redact_source(v) != v for v in args.video))
    summary = run(run_options(args), signals)
    show_summary(summary.table)  # --summary-json is written already: a closed stdout cannot lose it
    return exit_code(summary, signals)


def exit_code(summary: RunSummary, signals: clikit.Signals) -> int:
    """Exit 1 with one line (the first failure, the others after it) when a stage failed or an
    output is not whole; else the signal's code; else 1 when no frame came; else 0."""
    lines = summary.errors
    if lines:
        more = f" (also: {'; '.join(lines[1:])})" if len(lines) > 1 else ""
        return clikit.fail(PROG, lines[0] + more, clikit.EXIT_FAIL)
    if signals.code is not None:
        return signals.code
    if summary.frames == 0:
        return clikit.fail(PROG, summary.no_frames, clikit.EXIT_FAIL)
    return clikit.EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
