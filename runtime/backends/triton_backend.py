"""Triton client backend: `--engine triton://HOST:PORT/MODEL` streams frames to a Triton server.

gRPC (tritonclient, the `[triton]` extra, imported only here). Several requests in flight
(`async_infer`), results collected in submission order, like the OpenVINO backend, so the pipeline,
sinks, stats and summary are those of a local backend. The artefact's manifest comes from the
served model's config (parameter `pspnet_rt_manifest`, written by `python -m build_engine
--triton-repo`), so the client needs no file: classes, palette and input size are the server's.

Failures: an unreachable server (within the timeout), an unknown model, a model whose tensors do
not fit the fused contract, or one that carries no manifest -> UsageError (exit 2). A server lost
mid-run: the frame is retried on a fresh connection up to `reconnect` times (backoff 0.5 s
doubling, at most 8 s, as for live sources); then TritonLost (exit 1, outputs finalised).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from artefact.files import parse_json_text
from artefact.manifest import ArtefactError, manifest_from_dict
from runtime.backends.base import Backend, Collected, labels_2d, map_2d, require_confidence
from runtime.errors import BackendUnavailable, UsageError
from runtime.naming import redact_source

log = logging.getLogger(__name__)

SCHEME = "triton://"
MANIFEST_PARAMETER = "pspnet_rt_manifest"  # written by build_engine.triton_repo
INSTALL = "pip install 'pspnet-rt[triton]'"
DEFAULT_IN_FLIGHT = 4  # the server always has the next requests queued behind the one it runs
LOST = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED")


class TritonLost(RuntimeError):
    """The server stopped answering mid-run and did not come back within the reconnect budget."""


@dataclass(frozen=True)
class TritonURL:
    host: str
    port: int
    model: str
    version: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{SCHEME}{self.address}/{self.model}" + (f"/{self.version}" if self.version else "")


def parse_url(url: str) -> TritonURL:
    """triton://HOST:PORT/MODEL[/VERSION] (gRPC port; default 8001)."""
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    try:
        port = parts.port or 8001
    except ValueError:
        port = -1
    if parts.username is not None or parts.password is not None:  # Triton's gRPC takes no credentials
        raise UsageError(f"--engine {redact_source(url)}: a triton:// URL carries no user or password "
                         "(Triton's gRPC endpoint has none); give triton://HOST:PORT/MODEL")
    if parts.scheme != "triton" or not parts.hostname or port <= 0 or not 1 <= len(path) <= 2:
        raise UsageError(f"--engine {redact_source(url)!r} is not triton://HOST:PORT/MODEL (gRPC port, e.g. "
                         "triton://127.0.0.1:8001/demo-python)")
    return TritonURL(parts.hostname, port, path[0], path[1] if len(path) == 2 else "")


def _grpc() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as exc:
        raise BackendUnavailable(f"--engine triton://... needs tritonclient ({INSTALL}): {exc}") from None
    return grpcclient


def _status(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    return str(status() if callable(status) else status or "")


def _one_line(exc: BaseException) -> str:
    text = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    return redact_source(" ".join(str(text).split()))[:300]


class _Completions:
    """Where tritonclient's callback thread drops finished results, by sequence number: the raw
    outputs named in `names` (the labels, and the confidence when asked for)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.cond = threading.Condition()
        self.results: dict[int, tuple[list[np.ndarray] | BaseException, float]] = {}

    def callback(self, seq: int, result: Any, error: BaseException | None) -> None:
        try:
            value: list[np.ndarray] | BaseException = (error if error is not None
                                                       else [result.as_numpy(n) for n in self.names])
        except BaseException as exc:
            value = exc
        with self.cond:
            self.results[seq] = (value, time.perf_counter())
            self.cond.notify_all()


class TritonBackend(Backend):
    name = "triton"
    OPTIONS = ("requests", "timeout", "reconnect", "reconnect_delay", "confidence")

    def __init__(self, url: str, *, requests: int | None = None, timeout: float = 10.0, reconnect: int = 5,
                 reconnect_delay: float = 0.5, confidence: bool = False) -> None:
        self.url = parse_url(url)
        self._grpc = _grpc()
        self.timeout = float(timeout)
        self.reconnect = max(0, int(reconnect))
        self.reconnect_delay = reconnect_delay
        t0 = time.perf_counter()
        self._client = self._connect(self.timeout)
        config = self._model_config()
        super().__init__(self._manifest(config))
        if confidence:  # the served model's manifest says whether it was built with --confidence
            try:
                self.confidence_name = require_confidence(self.manifest)
            except ArtefactError as exc:
                raise UsageError(f"model {self.url.model!r} on {self.url.address}: {exc}, then write its "
                                 "repository again (--triton-repo)") from None
        self._check_tensors(config)
        self._check_contract()
        self.config = config
        self.device = f"{self.url.address}"
        self.precision_ran = self.manifest.precision
        self.max_in_flight = max(1, requests or DEFAULT_IN_FLIGHT)
        self.connect_s = time.perf_counter() - t0
        self._done_box = _Completions(self._output_names())
        self._pending: collections.deque[tuple[int, Any, float, np.ndarray]] = collections.deque()
        self._seq = 0
        self.reconnects = 0
        log.info("triton: %s serves %s (%s %s, %d instance(s)%s), %d requests in flight, connected in %.2f s",
                 self.url, self.manifest.name, self.manifest.backend, self.manifest.precision, self.instances,
                 ", dynamic batching" if self.dynamic_batching else "", self.max_in_flight, self.connect_s)

    # -- connection and model checks --------------------------------------------------------
    def _connect(self, timeout: float) -> Any:
        """A client whose server answers `live` within `timeout` s, else UsageError."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            client = self._grpc.InferenceServerClient(self.url.address)
            remaining = deadline - time.monotonic()
            try:
                if client.is_server_live(client_timeout=max(0.2, min(2.0, remaining))):
                    return client
                last = "server not live"
            except Exception as exc:  # InferenceServerException: refused, timed out, not gRPC
                last = _one_line(exc)
            client.close()
            if time.monotonic() + 0.2 >= deadline:
                raise BackendUnavailable(
                    f"no Triton server answers at {self.url.address} (gRPC) within {timeout:g} s ({last}); "
                    "start one (scripts/triton-server.sh start DIR) or fix --engine / --timeout")
            time.sleep(0.2)

    def _model_config(self) -> dict[str, Any]:
        url, client = self.url, self._client
        try:
            ready = client.is_model_ready(url.model, url.version, client_timeout=self.timeout)
        except Exception as exc:
            ready, why = False, _one_line(exc)
        else:
            why = "not ready"
        if not ready:
            try:
                index = client.get_model_repository_index(as_json=True, client_timeout=self.timeout)
                models = [m["name"] for m in index.get("models", []) if m.get("state") == "READY"]
            except Exception:
                models = []
            raise UsageError(f"Triton at {url.address} has no ready model {url.model!r} ({why}); ready "
                             f"models: {', '.join(models) or 'none'}; fix --engine triton://{url.address}/MODEL")
        return client.get_model_config(url.model, url.version, as_json=True,
                                       client_timeout=self.timeout)["config"]

    def _manifest(self, config: dict[str, Any]) -> Any:
        raw = config.get("parameters", {}).get(MANIFEST_PARAMETER, {}).get("string_value")
        where = f"model {self.url.model!r} on {self.url.address}"
        if not raw:
            raise UsageError(f"{where} carries no pspnet-rt manifest (config parameter "
                             f"{MANIFEST_PARAMETER}); serve a repository written by "
                             "`python -m build_engine --triton-repo DIR`")
        try:
            return manifest_from_dict(parse_json_text(raw), where)
        except (ValueError, ArtefactError) as exc:
            raise UsageError(f"{where}: its manifest is unusable: {exc}") from None

    def _check_tensors(self, config: dict[str, Any]) -> None:
        """The served model must take uint8 NHWC frames of the manifest's size and return uint8 labels."""
        m = self.manifest
        batched = int(config.get("max_batch_size", 0)) > 0
        h, w = (-1, -1) if m.dynamic_shape else m.input_size
        want_in = [h, w, 3] if batched else [1, h, w, 3]
        inputs = {t["name"]: t for t in config.get("input", [])}
        outputs = {t["name"]: t for t in config.get("output", [])}
        problems = []
        image = inputs.get(m.input_name)
        if image is None or image.get("data_type") != "TYPE_UINT8" or \
                [int(d) for d in image.get("dims", [])] != want_in:
            dims = [int(d) for d in image.get("dims", [])] if image else []
            got = f"{image.get('data_type')} {dims}" if image else "missing"
            problems.append(f"input {m.input_name!r} should be TYPE_UINT8 {want_in}, is {got}")
        for name in self._output_names():
            out = outputs.get(name)
            if out is None or out.get("data_type") != "TYPE_UINT8":
                problems.append(f"output {name!r} should be TYPE_UINT8, is "
                                f"{out.get('data_type') if out else 'missing'}")
        if problems:
            raise UsageError(f"model {self.url.model!r} on {self.url.address} does not fit the fused "
                             f"contract (uint8 BGR frames in, uint8 class ids out): {'; '.join(problems)}; "
                             "re-export it with `python -m build_engine --triton-repo DIR`")
        self.instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
        self.dynamic_batching = "dynamic_batching" in config

    def _check_contract(self) -> None:
        """The manifest the server carries must describe the model the server runs: the same
        contract an artefact is held to when opened locally (runtime.backends.contract), checked
        against the server's own metadata for the model (the shapes its backend reports, which a
        native ONNX Runtime or OpenVINO model takes from the model file itself). A Triton model
        does not say how many classes its ArgMax chooses from unless it returns logits, so there
        the labels check (an id beyond the manifest's classes is refused) stands in, as for TensorRT."""
        from runtime.backends.contract import ModelFacts, contract_problem

        try:
            meta = self._client.get_model_metadata(self.url.model, self.url.version, as_json=True,
                                                   client_timeout=self.timeout)
        except Exception as exc:  # InferenceServerException: the server stopped answering
            where = f"Triton at {self.url.address}"
            raise BackendUnavailable(f"{where} does not describe model {self.url.model!r} "
                                     f"({_one_line(exc)}); fix --engine or --timeout") from None

        def dims(tensor: dict[str, Any]) -> list[int | None]:
            return [int(d) if int(d) > 0 else None for d in tensor.get("shape", [])]

        inputs = {t.get("name"): dims(t) for t in meta.get("inputs", [])}
        outputs = {t.get("name"): dims(t) for t in meta.get("outputs", [])}
        shape = inputs.get(self.manifest.input_name, [])
        if len(shape) == 3:  # a batching model without the batch axis in its metadata
            shape = [None, *shape]
        facts = ModelFacts(shape, outputs, classes=None, can_tell_classes=False)
        problem = contract_problem(self.manifest, facts)
        if problem:
            raise UsageError(f"model {self.url.model!r} on {self.url.address}: {problem}, so the manifest it "
                             "carries does not describe the model it serves; re-export it with `python -m "
                             "build_engine --engine ARTEFACT.json --triton-repo DIR`")

    # -- inference ---------------------------------------------------------------------------
    def _output_names(self) -> list[str]:
        """The outputs requested per frame: the labels, and the confidence when asked for."""
        return [self.manifest.output_name] + ([self.confidence_name] if self.confidence_name else [])

    def _inputs(self, batch: np.ndarray) -> tuple[list[Any], list[Any]]:
        inp = self._grpc.InferInput(self.manifest.input_name, list(batch.shape), "UINT8")
        inp.set_data_from_numpy(batch)
        return [inp], [self._grpc.InferRequestedOutput(n) for n in self._output_names()]

    def _maps(self, raw: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """(labels, confidence or None) of one result's raw outputs."""
        confidence = map_2d(raw[1], self.manifest, self.confidence_name) if self.confidence_name else None
        return labels_2d(raw[0], self.manifest), confidence

    def infer(self, frame: np.ndarray) -> np.ndarray:
        self._check_frame(frame)
        raw = self._retry_or_raise(np.ascontiguousarray(frame[None]), None)
        labels, self.last_confidence = self._maps(raw)
        return labels

    def _infer_once(self, batch: np.ndarray) -> list[np.ndarray]:
        inputs, outputs = self._inputs(batch)
        result = self._client.infer(self.url.model, inputs, self.url.version, outputs=outputs,
                                    client_timeout=self.timeout)
        return [result.as_numpy(n) for n in self._output_names()]

    def _retry_or_raise(self, batch: np.ndarray, error: BaseException | None) -> list[np.ndarray]:
        """Run one frame synchronously; while the server is unreachable, reconnect with backoff."""
        attempt = 0
        while True:
            if error is not None:
                if _status(error) not in LOST:
                    raise RuntimeError(f"Triton {self.url} refused a frame: {_one_line(error)}")
                if attempt >= self.reconnect:
                    raise TritonLost(f"Triton server {self.url.address} lost ({_one_line(error)}); gave up "
                                     f"after {self.reconnect} reconnect attempts")
                delay = min(8.0, self.reconnect_delay * 2 ** attempt)
                attempt += 1
                log.warning("triton: %s lost (%s); reconnect %d/%d in %.1f s", self.url.address,
                            _status(error), attempt, self.reconnect, delay)
                time.sleep(delay)
                self._client.close()
                self._client = self._grpc.InferenceServerClient(self.url.address)
            try:
                raw = self._infer_once(batch)
            except Exception as exc:
                error = exc
                continue
            if attempt:
                self.reconnects += 1
                log.warning("triton: %s answers again after %d attempt(s)", self.url.address, attempt)
            return raw

    def submit(self, frame: np.ndarray, tag: Any) -> None:
        self._check_frame(frame)
        if len(self._pending) >= self.max_in_flight:
            raise RuntimeError("submit() with every request slot busy; collect() first")
        seq = self._seq
        self._seq += 1
        batch = np.ascontiguousarray(frame[None])
        self._pending.append((seq, tag, time.perf_counter(), batch))
        inputs, outputs = self._inputs(batch)
        box = self._done_box
        try:
            self._client.async_infer(self.url.model, inputs,
                                     lambda result, error: box.callback(seq, result, error), self.url.version,
                                     outputs=outputs, client_timeout=self.timeout)
        except Exception as exc:  # the channel itself refused: collect() retries it
            box.callback(seq, None, exc)

    def collect_result(self) -> Collected:
        seq, tag, t0, batch = self._pending[0]
        box = self._done_box
        with box.cond:
            box.cond.wait_for(lambda: seq in box.results)
            result, t_done = box.results.pop(seq)
        self._pending.popleft()
        if isinstance(result, BaseException):
            result = self._retry_or_raise(batch, result)
            t_done = time.perf_counter()
        labels, confidence = self._maps(result)
        return Collected(tag, labels, (t_done - t0) * 1e3, confidence=confidence)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        if self._closed:
            return
        box = getattr(self, "_done_box", None)
        deadline = time.monotonic() + min(self.timeout, 5.0)
        if box is not None:  # let requests still on the wire land before the channel goes
            with box.cond:
                box.cond.wait_for(lambda: all(s in box.results for s, *_ in self._pending),
                                  timeout=max(0.0, deadline - time.monotonic()))
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
        super().close()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(backend=f"triton ({self.manifest.backend} {self.url.model})", artefact=str(self.url),
                    server_instances=self.instances, dynamic_batching=self.dynamic_batching,
                    connect_s=round(self.connect_s, 3), reconnects=self.reconnects)
        return info
