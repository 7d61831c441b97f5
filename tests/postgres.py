"""A real PostgreSQL server for tests, started in a temp dir on a 127.0.0.1 port, stopped by PID.

Debian's `postgresql` package (scripts/install-system-deps.sh installs it) provides initdb and
postgres under /usr/lib/postgresql/<version>/bin. PostgreSQL refuses to run as root, and CI
runs as root: there the server runs as the package's own `postgres` system user (or `nobody`)
through subprocess's user/group switch, in a temp dir handed to that user. Skips, with the
reason, where no server binary or no unprivileged user is available.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PASSWORD = "pg-secret-5Zq"  # a real password (scram), so tests can prove it never leaks
USER = "pspnet"


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return versions[-1] if versions else None


def _run_as() -> dict:
    """Popen arguments that drop root to an unprivileged user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    pytest.skip("PostgreSQL cannot run as root and no unprivileged user (postgres, nobody) exists")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server(timeout_s: float = 60.0) -> Iterator[str]:
    """Yield `postgresql://pspnet:PASSWORD@127.0.0.1:PORT/optuna` of a fresh server."""
    initdb, server = _binary("initdb"), _binary("postgres")
    if not initdb or not server:
        pytest.skip("PostgreSQL server binaries not found (bash scripts/install-system-deps.sh installs "
                    "Debian's postgresql)")
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install '.[search]')")
    as_user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="pspnet-pg-"))
    proc = None
    try:
        pwfile = root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if as_user:
            for path in (root, pwfile):
                os.chown(path, as_user["user"], as_user["group"])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "LC_ALL": "C"}
        subprocess.run([initdb, "-D", str(root / "data"), "-U", USER, f"--pwfile={pwfile}",
                        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
                       cwd=root, env=env, check=True, capture_output=True, timeout=timeout_s, **as_user)
        port = _free_port()
        log = (root / "server.log").open("wb")
        proc = subprocess.Popen([server, "-D", str(root / "data"), "-h", "127.0.0.1", "-p", str(port),
                                 "-k", str(root), "-c", "fsync=off", "-c", "max_connections=40"],
                                cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, **as_user)
        url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(f"{url}/postgres", autocommit=True, connect_timeout=2) as conn:
                    conn.execute("CREATE DATABASE optuna")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not start: "
                                       + (root / "server.log").read_text(errors="replace")[-2000:]) from None
                time.sleep(0.2)
        yield f"{url}/optuna"
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # 'fast' shutdown, by the PID we started
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
