"""The browser live view and Prometheus /metrics: sinks fed by the renderer and the stats.

`open_server()` is the one door the CLI uses; it needs the `serve` extra (prometheus_client)
and says so in one line when it is missing. The HTTP server itself is the standard library's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runtime.errors import UsageError

if TYPE_CHECKING:
    from runtime.live.server import LiveServer

log = logging.getLogger("pspnet-rt")
SERVE_EXTRA = "pip install 'pspnet-rt[serve]'"


def check_extra() -> None:
    """Fail early (before any model work) when the serve extra is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise UsageError(f"--serve needs the serve extra (prometheus_client): {SERVE_EXTRA}") from None


def open_server(host: str, port: int, *, token: str | None = None, max_clients: int = 32,
                allowed_hosts: Sequence[str] = ()) -> LiveServer:
    """Bind HOST:PORT (UsageError when taken or not ours), warn when it is not loopback, serve.
    `allowed_hosts`: names besides its own addresses that may appear in Host headers."""
    check_extra()
    from runtime.live.address import is_loopback
    from runtime.live.server import LiveServer

    server = LiveServer(host, port, token=token, max_clients=max_clients, allowed_hosts=allowed_hosts)
    if not is_loopback(host):
        log.warning("--serve %s: listening beyond this machine; anyone who can reach it sees the stream%s",
                    host, "" if token else " (set --serve-token to require a token)")
    server.start()
    return server
