"""Serving: a real Triton Inference Server for a model repository, started and stopped by PID.

`serving.triton_server` gets the `tritonserver` binary that the `nvidia-pytriton` wheel bundles
(Triton 2.51, Python backend only) into its own venv, starts it bound to 127.0.0.1 and waits until
it is ready. Tests, benchmarks and `scripts/triton-server.sh` share it. No torch here.
"""
