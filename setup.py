"""pspnet-rt: PyTorch PSPNet -> fused ONNX -> TensorRT / OpenVINO / ONNX Runtime, on live video.

The base install is the runtime alone (numpy, OpenCV, tqdm; no torch, no inference library),
so a device carries only the backend it runs. Extras:
  openvino     OpenVINO (the CPU default)
  onnxruntime  ONNX Runtime (CPU; onnxruntime-gpu works in its place)
  tensorrt     TensorRT + CUDA bindings (NVIDIA GPUs only; see README for NVIDIA's index)
  triton       tritonclient (gRPC) for `--engine triton://...` and `--triton-repo`
  serve        `pspnet-rt --serve`: the browser live view and Prometheus /metrics (prometheus_client)
  ros          ROS bags in and out and the Foxglove live view without a ROS install (rosbags, mcap,
               mcap-ros2-support, foxglove-sdk); docs/ros.md
  export       building artefacts: torch (CPU build: install `torch==2.13.0` from the CPU index
               first), onnx, onnxslim, ONNX Runtime (verification and INT8 quantization)
  search       `python -m pspnet.search`: Optuna, and psycopg (PostgreSQL) for a study shared by
               several workers (SQLite needs nothing more)
  test         pytest and friends, Playwright (drives the system chromium; no browser download), and
               tritonclient (the tests run a real Triton server)
"""

from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).with_name("README.md")

RUNTIME = [
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    "tqdm>=4.66",
]
OPENVINO = ["openvino>=2024.4"]
ONNXRUNTIME = ["onnxruntime>=1.18"]
TENSORRT = ["tensorrt>=10.0", "cuda-python>=12.0"]
EXPORT = [
    *ONNXRUNTIME,  # the builder verifies every export and quantizes INT8 with ONNX Runtime
    # A bare `torch` on a CPU machine pulls a multi-GB CUDA build; the README installs the CPU
    # wheel first, and this range is satisfied by it, so nothing more is downloaded.
    "torch>=2.4",
    "onnx>=1.16",
    "onnxscript>=0.1",
    "onnxslim>=0.1.30",
    "onnxconverter-common>=1.14",
    "h5py>=3.8",
    "google-crc32c>=1.5",  # the TF seed checkpoints' checksums (pspnet/tf_checkpoint.py)
]
BENCH = ["matplotlib>=3.7", "psutil>=5.9"]
TRITON = ["tritonclient[grpc]>=2.40"]  # the server itself: scripts/triton-server.sh install (own venv)
SERVE = ["prometheus_client>=0.20"]  # the HTTP server is the standard library's
SEARCH = ["optuna>=4.0", "psycopg[binary]>=3.1"]  # Optuna brings SQLAlchemy; psycopg 3 for postgresql://
# foxglove-sdk 0.30 speaks the Foxglove WebSocket protocol as 'foxglove.sdk.v1' (tests/test_ros.py)
ROS = ["rosbags>=0.11.9", "mcap>=1.6", "mcap-ros2-support>=0.6", "foxglove-sdk>=0.30,<0.31"]
# the ROS tests: a Foxglove WebSocket client (websockets) decoding images with protobuf
TEST = ["pytest>=8", "pytest-timeout>=2.2", "ruff>=0.5", "playwright>=1.40", *BENCH, *TRITON, *SERVE, *ROS,
        "websockets>=13", "protobuf>=4"]

setup(
    name="pspnet-rt",
    version="0.1.0",
    description="PSPNet to the edge: fused ONNX export, FP32/FP16/INT8 engines, streaming runtime",
    long_description=README.read_text(encoding="utf-8") if README.is_file() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["pspnet*", "segdata*", "artefact*", "devices*", "clikit*",
                                    "build_engine*", "calib*", "runtime*", "benchmarks*", "serving*"]),
    package_data={"pspnet": ["weights/*.pth", "weights/*.json"], "runtime": ["live/*.html"]},
    install_requires=RUNTIME,
    extras_require={
        "openvino": OPENVINO,
        "onnxruntime": ONNXRUNTIME,
        "tensorrt": TENSORRT,
        "export": EXPORT,
        "bench": BENCH,
        "serve": SERVE,
        "ros": ROS,
        "pycuda": ["pycuda>=2024.1"],
        "triton": TRITON,
        "search": [*SEARCH, *BENCH],
        "test": TEST,
        "all": [*EXPORT, *OPENVINO, *BENCH, *SERVE, *TEST, *TRITON, *ROS, *SEARCH],
    },
    entry_points={"console_scripts": ["pspnet-rt=runtime.cli:main"]},
)
