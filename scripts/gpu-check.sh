#!/usr/bin/env bash
# Run everything this machine's NVIDIA GPU can run of pspnet-rt and write a report:
#   bash scripts/gpu-check.sh [OUT [--all-parts]]   OUT/report.md + OUT/report.json (default gpu-check/);
#   --all-parts runs every part even without a GPU (each says why it cannot)
# Offline and part by part (see scripts/gpu_check.py): the gpu/cuda tests, devices/cuda.py through
# cuda-bindings, ONNX Runtime's CUDA provider, PyTorch CUDA eager, TensorRT builds + benchmarks.
# Each part says "ran", "skipped: why" or "failed: why". Without a GPU it says so and exits 0.
# Python: ./.venv when it exists; else $PYTHON or python3, with what it has installed; if that
# lacks the runtime's own packages (numpy, OpenCV, tqdm) it tries a pip install from local
# wheels only (--no-index: never the network) into ./.venv-gpu-check, and says what it did.
# Under 10 minutes: the Python part keeps a 9-minute budget and gives each command a timeout.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu-check}"
shift $(( $# > 0 ? 1 : 0 ))
SETUP=""

has_runtime() { "$1" -c "import numpy, cv2, tqdm" 2>/dev/null; }

if [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
  SETUP="used ./.venv"
else
  PY="${PYTHON:-python3}"
  if ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu-check: no Python here (no ./.venv, no ${PY}); nothing can run" >&2
    exit 1
  fi
  SETUP="no ./.venv: used $(command -v "$PY") as it is"
  if ! has_runtime "$PY"; then
    # Offline set-up: local wheels only (pip's find-links, e.g. PIP_FIND_LINKS), never an index.
    if "$PY" -m venv --system-site-packages .venv-gpu-check 2>/dev/null \
        && .venv-gpu-check/bin/python -m pip install -q --no-index numpy opencv-python-headless tqdm 2>/dev/null \
        && has_runtime .venv-gpu-check/bin/python; then
      PY=.venv-gpu-check/bin/python
      SETUP="no ./.venv: made ./.venv-gpu-check from local wheels (offline)"
    else
      rm -rf .venv-gpu-check
      SETUP="no ./.venv, $(command -v "$PY") lacks numpy/OpenCV/tqdm and no local wheels: parts that need them are skipped"
    fi
  fi
fi
echo "gpu-check: ${SETUP}"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec timeout 590 "$PY" scripts/gpu_check.py --out "$OUT" --setup "$SETUP" "$@"
