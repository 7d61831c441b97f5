"""Start, probe and stop a real `tritonserver` (from the nvidia-pytriton wheel) on 127.0.0.1.

The wheel goes into a venv of its own (`--no-deps`: only its bundled server binary, libraries and
Python-backend stubs are used, never its Python package, which wants numpy<2 while our OpenCV wants
numpy>=2). The server is started directly (no PyTriton), the way it was measured to work here:

- a backends folder holding the wheel's `python` backend plus the stub for the Python that will
  run the models (`python_backend_stubs/3.X/triton_python_backend_stub`);
- LD_LIBRARY_PATH = the wheel's `nvidia_pytriton.libs` + the folder of that Python's libpython;
- that Python first on PATH: the stub embeds the first `python3` it finds, so model.py imports
  pspnet-rt's runtime (numpy 2 is fine there because model.py passes tensors by DLPack);
- PYTHONPATH is ignored by the stub, so pspnet-rt's model.py applies it itself; this module puts
  the pspnet-rt tree it belongs to first, so server and client run the same code.

Ready in 1-4 s; SIGTERM ends it (exit 0) in 2-4 s and leaves nothing in /dev/shm.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artefact.files import atomic_write_bytes, cache_root

log = logging.getLogger(__name__)

PYTRITON = "nvidia-pytriton==0.7.0"  # bundles tritonserver 2.51 (r24.10) with the Python backend
PROG = "triton-server"
ROOT = Path(__file__).resolve().parents[1]  # the pspnet-rt tree the server's model.py should import
CACHE = cache_root()


class ServerError(RuntimeError):
    """The server could not be installed, started or reached; the message says why."""


def default_venv() -> Path:
    return Path(os.environ.get("PSPNET_RT_TRITON_VENV", CACHE / "triton-venv"))


@dataclass
class Install:
    """Where the wheel's server pieces are inside its venv."""

    venv: Path
    site: Path = field(init=False)

    def __post_init__(self) -> None:
        libs = sorted(self.venv.glob("lib/python3*/site-packages/pytriton"))
        self.site = libs[0].parent if libs else self.venv / "lib" / "missing"

    @property
    def tritonserver(self) -> Path:
        return self.site / "pytriton" / "tritonserver" / "bin" / "tritonserver"

    @property
    def libs(self) -> Path:
        return self.site / "nvidia_pytriton.libs"

    def ok(self) -> bool:
        return self.tritonserver.is_file() and self.libs.is_dir()

    def stub(self, python_version: str) -> Path:
        return self.site / "pytriton" / "tritonserver" / "python_backend_stubs" / python_version / \
            "triton_python_backend_stub"


def install(venv: Path | None = None, python: str = sys.executable, quiet: bool = True) -> Install:
    """Make sure the server's venv holds the wheel (a few seconds when it does; ~20 s and 170 MB
    when it does not). Raises ServerError when pip cannot get it."""
    venv = venv or default_venv()
    found = Install(venv)
    if found.ok():
        return found
    t0 = time.perf_counter()
    base = getattr(sys, "_base_executable", python) or python
    fresh = not (venv / "bin" / "python").exists()
    steps = [[base, "-m", "venv", "--without-pip", str(venv)]] if fresh else []
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    pip = [python, "-m", "pip", "--disable-pip-version-check", *(["-q"] if quiet else []), "install",
           "--no-deps", "--upgrade", "--target", str(site), PYTRITON]
    steps.append(pip)
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = " ".join((proc.stderr or proc.stdout).split())[-400:]
            raise ServerError(f"could not install {PYTRITON} into {venv}: {tail}")
    found = Install(venv)
    if not found.ok():
        raise ServerError(f"{PYTRITON} installed into {venv} but holds no tritonserver binary")
    log.info("installed %s into %s in %.1f s", PYTRITON, venv, time.perf_counter() - t0)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def libpython_dir(python: str) -> str:
    """Folder of the shared libpython the stub links against, from the interpreter itself."""
    code = ("import sysconfig as s, os; d = s.get_config_var('LIBDIR'); "
            "print(d if s.get_config_var('Py_ENABLE_SHARED') else '')")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    if not out:
        raise ServerError(f"{python} is not built with a shared libpython, which Triton's Python backend "
                          "stub needs; use a Python built with --enable-shared (pyenv, Debian's python3)")
    return out


def python_version(python: str) -> str:
    if python == sys.executable:
        return f"{sys.version_info[0]}.{sys.version_info[1]}"
    code = "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def backends_dir(inst: Install, version: str) -> Path:
    """The wheel's python backend with the stub for `version` inside (built once per venv)."""
    target = inst.venv / "backends" / f"py{version}"
    stub = inst.stub(version)
    if not stub.is_file():
        raise ServerError(f"{PYTRITON} has no Python-backend stub for Python {version}")
    if not (target / "python" / "triton_python_backend_stub").is_file():
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(inst.site / "pytriton" / "tritonserver" / "backends" / "python", tmp / "python")
        shutil.copy2(stub, tmp / "python" / "triton_python_backend_stub")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def servable_models(repo: Path, backends: Path) -> tuple[list[str], list[str]]:
    """(models this server can load, models it cannot) of a repository: a CPU Triton from the
    wheel has the python backend only, so native OpenVINO/ORT/TensorRT models are skipped."""
    from build_engine.triton_repo import check_published, validate_config  # Triton's own schema

    check_published(repo)  # what we wrote there is what we wrote
    platforms = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt"}
    can, cannot = [], []
    for config_path in sorted(repo.glob("*/config.pbtxt")):
        config = validate_config(config_path.read_text())
        name = config.name or config_path.parent.name
        backend = config.backend or platforms.get(config.platform, config.platform)
        (can if (backends / backend).is_dir() else cannot).append(name)
    return can, cannot


class TritonServer:
    """One tritonserver process for a repository, on 127.0.0.1. Use as a context manager, or
    start()/stop(); stop() sends SIGTERM to its PID (SIGKILL after `grace` s)."""

    def __init__(self, repo: str | Path, *, grpc_port: int | None = None, http_port: int | None = None,
                 metrics_port: int | None = None, python: str | None = None, venv: Path | None = None,
                 log_file: str | Path | None = None, models: list[str] | None = None,
                 host: str = "127.0.0.1") -> None:
        self.repo = Path(repo).resolve()
        self.host = host
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.python = python or sys.executable
        self.venv = venv
        self.log_file = Path(log_file) if log_file else None
        self.models = models
        self.skipped: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._log_fh = None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def engine(self, model: str) -> str:
        """The `--engine` value that streams through `model` on this server."""
        return f"triton://{self.grpc_url}/{model}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        inst = install(self.venv)
        version = python_version(self.python)
        backends = backends_dir(inst, version)
        models = self.models
        if models is not None:
            from build_engine.triton_repo import check_published

            check_published(self.repo, models)
        if models is None:
            models, self.skipped = servable_models(self.repo, backends)
            for name in self.skipped:
                log.info("not loading %s: its backend is not in this CPU Triton (python backend only)", name)
        if not models:
            raise ServerError(f"{self.repo} has no model this server can load (python backend only); write "
                              "one with `python -m build_engine --triton-repo DIR` (the NAME-python model)")
        cmd = [str(inst.tritonserver), "--model-repository", str(self.repo),
               "--backend-directory", str(backends), "--model-control-mode", "explicit",
               *(f"--load-model={m}" for m in models),
               "--http-address", self.host, "--http-port", str(self.http_port),
               "--grpc-address", self.host, "--grpc-port", str(self.grpc_port),
               "--metrics-address", self.host, "--metrics-port", str(self.metrics_port),
               "--allow-cpu-metrics", "false", "--allow-gpu-metrics", "false", "--log-verbose", "0"]
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(inst.libs), libpython_dir(self.python), env.get("LD_LIBRARY_PATH", "")) if p)
        env["PATH"] = os.pathsep.join((str(Path(self.python).parent), env.get("PATH", "")))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        return cmd, env

    def start(self, timeout: float = 60.0) -> TritonServer:
        cmd, env = self.command()
        out = subprocess.DEVNULL
        if self.log_file:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log_fh = out = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
        try:  # a signal as soon as the server exists stops it (stop() with no process is a no-op)
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("tritonserver pid %d ready: grpc %s, http %s:%d", self.proc.pid, self.grpc_url, self.host,
                 self.http_port)
        return self

    def ready(self) -> bool:
        try:
            url = f"http://{self.host}:{self.http_port}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=1.0) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                where = f"; see {self.log_file}" if self.log_file else " (pass a log file to see why)"
                raise ServerError(f"tritonserver exited with {self.proc.returncode} while starting{where}")
            if self.ready():
                return
            time.sleep(0.1)
        raise ServerError(f"tritonserver not ready within {timeout:g} s" +
                          (f"; see {self.log_file}" if self.log_file else ""))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def kill(self) -> None:
        """SIGKILL to the server and its stubs (its process group), as a crash of the box would:
        what a client sees when its server dies. The stubs' shared-memory regions, which a dying
        server cannot unlink, are removed."""
        if self.proc is None or self.proc.poll() is not None:
            return
        regions = [args[2] for args in _group_cmdlines(self.proc.pid)
                   if len(args) > 2 and args[2].startswith("triton_python_backend_shm_region_")]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        for region in regions:
            Path("/dev/shm", Path(region).name).unlink(missing_ok=True)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM by PID, then SIGKILL after `grace` seconds; returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is not None:
            code = stop_pid(proc.pid, grace, proc)
        else:
            code = None
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        return code

    def __enter__(self) -> TritonServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_pid(pid: int, grace: float = 15.0, proc: subprocess.Popen | None = None) -> int | None:
    """Stop one server by its PID (its own session, so the stubs it started go with it)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return proc.returncode
        elif not _alive(pid):
            return 0
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # the server leads its own session (start_new_session)
    if proc is not None:
        return proc.wait(10)
    return None


def _group_cmdlines(pgid: int) -> list[list[str]]:
    """Command lines of the processes in process group `pgid` (the server and its stubs)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                found.append((stat.parent / "cmdline").read_bytes().decode(errors="replace").split("\0"))
        except (OSError, ValueError, IndexError):
            continue
    return found


def server_pid(pid_file: Path) -> int | None:
    """The PID a PID file names, if that process is a tritonserver; None when it is gone. A PID
    file is hand-editable and PIDs are reused, so a process that is not a tritonserver is never
    signalled (UsageError naming the file)."""
    from clikit import UsageError

    text = pid_file.read_text(errors="replace").split()
    if not text or not text[0].isdigit() or int(text[0]) < 2:
        raise UsageError(f"{pid_file} does not hold a tritonserver PID (got {' '.join(text)[:40]!r}); "
                         "stop the server by hand and remove the file")
    pid = int(text[0])
    if not _alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if not _is_tritonserver(pid):
        what = cmdline[0].decode(errors="replace")[:60]
        raise UsageError(f"PID {pid} in {pid_file} is not a tritonserver (it is {what!r}); not stopping it - "
                         "remove the stale file")
    return pid


def _is_tritonserver(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and Path(cmdline[0].decode(errors="replace")).name.startswith("tritonserver")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


EXAMPLES = """\
examples:
  python -m serving.triton_server install
      put nvidia-pytriton's tritonserver into its venv ($PSPNET_RT_TRITON_VENV or CACHE/triton-venv)
  python -m serving.triton_server start models/ --grpc-port 8001
      start it in the background for the repository models/, wait until ready, print its PID
      (written to tritonserver.pid beside models/, log in tritonserver.log)
  pspnet-rt --video demo --engine triton://127.0.0.1:8001/demo-python --output demo.mp4
  python -m serving.triton_server stop models/
  python -m serving.triton_server run models/
      in the foreground until Ctrl-C

Binds 127.0.0.1 unless --host says otherwise. Loads the models its Python backend can serve
(native openvino/onnxruntime/tensorrt models need NVIDIA's full Triton, see docs/serving.md).
exit codes: 0 ok, 1 the server failed to install/start/stop, 2 bad input
"""


def build_parser() -> argparse.ArgumentParser:
    import clikit

    p = clikit.parser(PROG, __doc__.split("\n")[0], EXAMPLES)
    port = clikit.int_in(1, 65535)
    p.add_argument("action", choices=("install", "start", "run", "stop"))
    p.add_argument("repo", nargs="?", type=clikit.input_path("a model repository folder"),
                   help="model repository (start, run; stop finds the PID file beside it)")
    p.add_argument("--grpc-port", type=port, default=8001)
    p.add_argument("--http-port", type=port, default=8000)
    p.add_argument("--metrics-port", type=port, default=8002)
    p.add_argument("--host", default="127.0.0.1", type=clikit.non_empty("an address to bind"),
                   help="address to bind (default 127.0.0.1 only)")
    p.add_argument("--pid-file", type=clikit.output_file("a PID file such as tritonserver.pid"),
                   help="start: write the PID here; stop: the PID to stop (default REPO/../tritonserver.pid)")
    p.add_argument("--log", type=clikit.output_file("a log file such as tritonserver.log"),
                   help="server log file (start default: REPO/../tritonserver.log)")
    p.add_argument("--timeout", type=clikit.float_in(high=3600, what="a timeout", above=0), default=60.0,
                   help="seconds to wait until ready (> 0)")
    p.add_argument("--venv", type=clikit.output_dir("the server's venv folder"),
                   help="the server's venv (default $PSPNET_RT_TRITON_VENV or CACHE/triton-venv)")
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    import clikit

    signals = clikit.Signals(PROG)
    from artefact.manifest import ArtefactError

    return clikit.run(PROG, build_parser(), lambda args: _main(args, signals), argv, failure=(ServerError,),
                      usage=(ArtefactError,), signals=signals)


def _check_outputs(log_file: str | Path, pid_file: Path | None) -> None:
    """Before a server starts: its log goes to a file (or /dev/null, a terminal, stdout), never a
    FIFO whose reader could stall the server, nor a device; the PID file is a regular file that
    holds no other live server's PID and nothing that is not a PID (it is not ours to replace)."""
    from clikit import UsageError
    from runtime.output_target import FILE, check_name_length, resolve

    where = resolve(log_file, "--log")
    if where.kind != FILE and where.what in ("a FIFO", "/dev/full"):
        raise UsageError(f"--log {log_file} is {where.what}: the server writes its log there for as long as "
                         "it runs, and a FIFO whose reader stops would stall it; give a file or /dev/null")
    if pid_file is None:
        return
    where = resolve(pid_file, "--pid-file")
    if where.kind != FILE:
        raise UsageError(f"--pid-file {pid_file} is {where.what}: `stop` reads the PID back from it; give a "
                         "regular file such as tritonserver.pid")
    check_name_length(where.path, "--pid-file", pid_file)
    if where.path.exists():
        text = where.path.read_text(errors="replace").split()
        if len(text) != 1 or not text[0].isdigit():
            raise UsageError(f"--pid-file {pid_file} exists and does not hold a PID (it is not ours to "
                             "replace); give another file")
        pid = int(text[0])
        if _alive(pid) and not _is_tritonserver(pid):
            raise UsageError(f"--pid-file {pid_file} names PID {pid}, a live process that is not a "
                             "tritonserver (the file is not ours to replace); give another file")
        if _alive(pid):
            raise UsageError(f"--pid-file {pid_file}: tritonserver PID {pid} runs from it; stop it first "
                             f"(python -m serving.triton_server stop --pid-file {pid_file}) or give another "
                             "file")


def _main(args: argparse.Namespace, signals: Any) -> int:
    from clikit import UsageError

    if args.action == "install":
        inst = install(Path(args.venv) if args.venv else None, quiet=not args.verbose)
        print(inst.tritonserver)
        return 0
    pid_file = Path(args.pid_file) if args.pid_file else \
        (Path(args.repo).resolve().parent / "tritonserver.pid" if args.repo else None)
    if args.action == "stop":
        if pid_file is None or not pid_file.is_file():
            raise UsageError("stop needs the repository (or --pid-file FILE) that start was given")
        pid = server_pid(pid_file)
        if pid is None:
            pid_file.unlink(missing_ok=True)
            print(f"tritonserver of {pid_file} was not running (PID file removed)")
            return 0
        stop_pid(pid)
        pid_file.unlink(missing_ok=True)
        print(f"stopped tritonserver pid {pid}")
        return 0
    ports = {"--grpc-port": args.grpc_port, "--http-port": args.http_port,
             "--metrics-port": args.metrics_port}
    if len(set(ports.values())) < len(ports):
        raise UsageError(f"{', '.join(f'{k} {v}' for k, v in ports.items())}: give each its own port")
    if not args.repo or not Path(args.repo).is_dir():
        raise UsageError(f"{args.action} needs a model repository folder (got {args.repo!r}); write one with "
                "`python -m build_engine --triton-repo DIR`")
    log_file = args.log or (Path(args.repo).resolve().parent / "tritonserver.log")
    _check_outputs(log_file, pid_file if args.action == "start" else None)
    venv = Path(args.venv) if args.venv else None
    server = TritonServer(args.repo, grpc_port=args.grpc_port, http_port=args.http_port,
                          metrics_port=args.metrics_port, host=args.host, venv=venv, log_file=log_file)
    server.start(args.timeout)
    # from here a signal or an error anywhere (even before the JSON line is out) stops the server
    # in `finally`; only a `start` that hands it over (proc = None) leaves it running
    try:
        signals.on_abort(server.kill)  # a third signal must not leave the server running on its own
        info = {"pid": server.pid, "grpc": server.grpc_url, "http": f"{args.host}:{args.http_port}",
                "log": str(log_file), "skipped": server.skipped}
        if args.action == "start":
            try:  # without its PID file nobody could stop it by name: never leave it running then
                atomic_write_bytes(pid_file, f"{server.pid}\n".encode())
            except OSError as exc:
                raise ServerError(f"cannot write the PID file {pid_file}: {exc.strerror or exc}; the server "
                                  "was stopped - give a writable --pid-file") from None
            info["pid_file"] = str(pid_file)
            server.proc = None  # leave it running: it leads its own session
            print(json.dumps(info))
            return 0
        print(json.dumps(info), flush=True)
        # until a signal (exit 128+N, the server stopped first; a second one does not cut that short)
        while server.proc is not None and server.proc.poll() is None:
            time.sleep(0.5)
    finally:
        code = server.stop()
    raise ServerError(f"tritonserver exited by itself (exit {code}); see {log_file}")


if __name__ == "__main__":
    raise SystemExit(main())
