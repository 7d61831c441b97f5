#!/usr/bin/env bash
# A real Triton Inference Server (the tritonserver that the nvidia-pytriton wheel bundles, Python
# backend only) for a model repository, bound to 127.0.0.1, stopped by PID:
#   scripts/triton-server.sh install                 # its own venv (~20 s, ~170 MB), once
#   scripts/triton-server.sh start models/ [--grpc-port 8001 --http-port 8000 --metrics-port 8002]
#   scripts/triton-server.sh stop models/
#   scripts/triton-server.sh run models/             # foreground, Ctrl-C stops it
# Write the repository with `python -m build_engine --triton-repo models/`. See --help.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m serving.triton_server "$@"
