"""What each of `pspnet-rt`'s options accepts: one rule per RunOptions field.

`pspnet-rt`'s parser (runtime/cli.py) takes every flag's `type=` / `choices=` from RULES
(`**arg("alpha")`), and RunOptions checks a Python caller's values with the same objects
(clikit.fields.check_fields), so `RunOptions(alpha=-1)` and `pspnet-rt --alpha -1` are refused
by one rule with the same words. A new flag with a value rule: its rule here, `**arg(field)` on
its add_argument line (tests/test_option_rules.py holds the parser to that).
"""

from __future__ import annotations

import argparse
from typing import Any

import clikit
from artefact.fields import MAX_SIDE
from clikit.fields import Rule
from runtime.temporal import config as tc

MODES_TEXT = "off, adaptive or fixed:N (N from 1 to 1000)"


def _bind_value(value: Any) -> tuple[str, int]:
    """serve=8080 or serve=("0.0.0.0", 8080) from Python: the flag's own parser decides."""
    if isinstance(value, int) and not isinstance(value, bool):
        return serve_address(str(value))
    if (isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool)):
        host, port = value
        return serve_address(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, a port or (host, port), got {value!r}")


@clikit.option_type("[HOST:]PORT", good="8080", bad=("", "abc", "70000", "-1", ":8080", "::1:8080"),
                    typed=_bind_value, bad_values=(70000, -1, ("", 8080), ("::1", "x"), (1, 2, 3), 8080.5))
def serve_address(text: str) -> tuple[str, int]:
    from runtime.live.address import parse_bind

    try:
        return parse_bind(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@clikit.option_type("a host name or IP address", good="box.local",
                    bad=("", "  ", "http://box.local", "box.local:8080", "a b"), bad_values=(3,))
def allowed_host(text: str) -> str:
    from runtime.live.hosts import parse_allowed_host

    try:
        return parse_allowed_host(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@clikit.option_type("an artefact manifest, model file or folder, or triton://HOST:PORT/MODEL",
                    good=__file__, bad=("", "/nonexistent/pspnet-rt-fault", "triton://"), bad_values=(3,))
def engine_location(text: str) -> str:
    if text.startswith("triton://"):
        if not text[len("triton://"):].strip("/"):
            raise argparse.ArgumentTypeError(f"{text!r}: give triton://HOST:PORT/MODEL")
        return text
    return clikit.input_path("an artefact manifest, model file or folder")(text)


@clikit.option_type("rtsp://[USER:PASSWORD@]HOST:PORT/PATH to serve", good="rtsp://127.0.0.1:8554/seg",
                    bad=("", "rtsp://", "rtsp://127.0.0.1:99999/seg", "out.mp4"), bad_values=(3,))
def rtsp_url(text: str) -> str:
    from runtime.errors import OutputError
    from runtime.rtsp_sink import RtspSink

    try:
        RtspSink.parse(text)
    except OutputError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
    return text


_video_file = clikit.output_file("a video file such as out.mp4")


@clikit.option_type("a video file such as out.mp4, or rtsp://[USER:PASSWORD@]HOST:PORT/PATH to serve",
                    good="out.mp4", bad=("", "/", "/dev/null/x", "rtsp://", "rtsp://127.0.0.1:99999/seg"),
                    bad_values=(3,))
def video_output(text: str) -> str:
    return rtsp_url(text) if text.lower().startswith("rtsp://") else _video_file(text)


@clikit.option_type("a ROS topic name such as /pspnet/class_map", good="/pspnet/class_map",
                    bad=("", "/", "a b", "/1x"), bad_values=(3,))
def ros_topic(text: str) -> str:
    from runtime.ros.bag_sink import check_topic

    try:
        return check_topic(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@clikit.option_type(MODES_TEXT, good="fixed:3", bad=("", "sometimes", "fixed:0", "fixed:x"), bad_values=(3,))
def temporal_mode(text: str) -> str:
    from runtime.errors import UsageError
    from runtime.temporal.config import parse_temporal

    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected {MODES_TEXT}, got an empty value")
    try:
        parse_temporal(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


@clikit.option_type("a web origin such as https://foxglove.example.com",
                    good="https://foxglove.example.com",
                    bad=("", "foxglove.example.com", "https://h/path", "ftp://h", "https://u@h"),
                    bad_values=(3,))
def web_origin(text: str) -> str:
    from runtime.ros.foxglove_guard import parse_origin

    try:
        return parse_origin(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


RATE = clikit.float_in(high=1000, what="a frame rate", above=0)

RULES: dict[str, Rule] = {
    # -- input and model
    "videos": Rule("--video", clikit.non_empty("a source ([NAME=]SRC)"), each=True),
    "engine": Rule("--engine", engine_location),
    "model": Rule("--model", clikit.non_empty("a model zoo name")),
    "precision": Rule("--precision", choices=("auto", "fp32", "fp16", "int8")),
    "backend": Rule("--backend", choices=("auto", "openvino", "onnxruntime", "tensorrt")),
    "input_size": Rule("--input-size", clikit.size_type("HxW", max_side=MAX_SIDE)),
    "max_frames": Rule("--max-frames", clikit.positive_int),
    # -- outputs
    "output": Rule("--output", video_output),  # --output is repeatable: one file and one rtsp:// URL
    "rtsp_out": Rule("--output", rtsp_url),  # where pspnet-rt puts an rtsp:// --output
    "masks": Rule("--masks", clikit.output_dir("a folder for mask PNGs")),
    "stats": Rule("--stats", clikit.output_file("a file such as stats.jsonl")),
    "summary_json": Rule("--summary-json", clikit.output_file("a file such as summary.json")),
    "confidence": Rule("--confidence", clikit.output_dir("a folder for confidence PNGs")),
    "visualize": Rule("--visualize", choices=("overlay", "mask", "side-by-side", "confidence")),
    "alpha": Rule("--alpha", clikit.float_in(0.0, 1.0, "an opacity")),
    "fps": Rule("--fps", RATE),
    "x264_preset": Rule("--x264-preset",
                        choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")),
    # -- live view, ROS
    "serve": Rule("--serve", serve_address),
    "serve_token": Rule("--serve-token", clikit.non_empty("a token")),
    "serve_clients": Rule("--serve-clients", clikit.positive_int),
    "serve_allow_host": Rule("--serve-allow-host", allowed_host, each=True),
    "topic": Rule("--topic", clikit.non_empty("an image topic")),
    "bag": Rule("--bag", clikit.output_file("a bag file such as seg.mcap")),
    "bag_topic": Rule("--bag-topic", ros_topic),
    "foxglove": Rule("--foxglove", serve_address),
    "foxglove_token": Rule("--foxglove-token", clikit.non_empty("a token")),
    "foxglove_allow_origin": Rule("--foxglove-allow-origin", web_origin, each=True),
    # -- runtime tuning
    "device": Rule("--device", clikit.non_empty("a device name or CUDA index")),
    "hint": Rule("--hint", choices=("auto", "latency", "throughput")),
    "requests": Rule("--requests", clikit.int_in(1, 256)),
    # -- live sources
    "capture_size": Rule("--capture-size", clikit.size_type("WxH")),
    "capture_fps": Rule("--capture-fps", RATE),
    "rtsp_transport": Rule("--rtsp-transport", choices=("auto", "tcp", "udp")),
    "reconnect": Rule("--reconnect", clikit.non_negative_int),
    "reconnect_delay": Rule("--reconnect-delay", clikit.float_in(high=60, what="a delay", above=0)),
    "timeout": Rule("--timeout", clikit.float_in(high=86400, what="a timeout", above=0)),
    "demo_frames": Rule("--demo-frames", clikit.int_in(1, 100_000)),
    "demo_seed": Rule("--demo-seed", clikit.int_in(0, 2**32 - 1)),
    # -- video-aware inference
    "temporal": Rule("--temporal", temporal_mode),
    "temporal_threshold": Rule("--temporal-threshold",
                               clikit.float_in(*tc.THRESHOLD_RANGE, what="a change score")),
    "temporal_max_interval": Rule("--temporal-max-interval", clikit.int_in(*tc.INTERVAL_RANGE)),
    "temporal_direction": Rule("--temporal-direction", choices=tc.DIRECTIONS),
    "temporal_flow_scale": Rule("--temporal-flow-scale",
                                clikit.float_in(*tc.FLOW_SCALE_RANGE, what="a fraction of the input")),
    "verbose": Rule("-v", clikit.non_negative_int),
}


def arg(field: str) -> dict[str, Any]:
    """The add_argument keywords of a field's rule: `type=` or `choices=`."""
    rule = RULES[field]
    return {"choices": rule.choices} if rule.choices is not None else {"type": rule.type}
