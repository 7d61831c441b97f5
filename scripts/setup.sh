#!/usr/bin/env bash
# Set up pspnet-rt in ./.venv on a CPU machine without pulling a multi-GB CUDA torch.
#   bash scripts/setup.sh          runtime + OpenVINO + ONNX Runtime + export (torch CPU build) + test tools
#                                  + search (Optuna, psycopg)
# Idempotent: a second run only checks. Needs python3 (3.10+) with venv; as root it also
# installs ffmpeg (H.264 output and the stream tests) and, optionally, chromium (the live-view
# browser tests) through scripts/install-system-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PY="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # A plain `pip install torch` on Linux x86-64 fetches the CUDA build (several GB). Take a CPU
  # wheel already on this machine's pip find-links if there is one, else PyTorch's CPU index.
  if ! "${PIP[@]}" install --no-index --no-deps "torch==${TORCH_VERSION}" 2>/dev/null; then
    "${PIP[@]}" install --no-deps "torch==${TORCH_VERSION}" \
      --index-url https://download.pytorch.org/whl/cpu
  fi
fi
# torch is now satisfied, so this only adds its small pure-Python dependencies. The CPU backends
# (OpenVINO, ONNX Runtime) are extras: the tests and the README's main command use both.
"${PIP[@]}" install -e ".[export,openvino,onnxruntime,test,search]"

if [ "$(id -u)" = "0" ] && [ -x scripts/install-system-deps.sh ]; then
  bash scripts/install-system-deps.sh || echo "warning: ffmpeg could not be installed; H.264 output and stream tests will be skipped" >&2
fi
# Optional: the real Triton server the serving tests use (nvidia-pytriton's tritonserver, in its
# own venv). A failure here only makes those tests skip with the reason.
SECONDS=0
if .venv/bin/python -m serving.triton_server install; then
  echo "triton server ready (${SECONDS} s)"
else
  echo "warning: nvidia-pytriton could not be installed; the Triton serving tests will be skipped" >&2
fi
.venv/bin/python - <<'PY'
import importlib.metadata as md
print("pspnet-rt ready:", ", ".join(f"{d} {md.version(d)}" for d in
      ("torch", "onnxruntime", "openvino", "opencv-python-headless")))
PY
