"""Which Host headers the live view answers: the guard against DNS rebinding.

A web page on attacker.example can make its name resolve to 127.0.0.1 after the page loaded;
the visitor's browser then sends the page's requests to our loopback server, with
`Host: attacker.example`, and lets the page read the answers (same origin). A name is the only
thing such a request cannot fake, so the server answers only Host headers that name it:
- an IP address it is bound to (any address of this machine when bound to 0.0.0.0 / ::; a
  loopback address when bound to one), with any port: an IP literal in Host cannot be
  rebound, whatever the page's origin;
- `localhost` when bound to loopback or to every interface (browsers never ask DNS for it);
- the names the user allowed (`--serve-allow-host box.local`, e.g. behind a reverse proxy).
Everything else gets 421 Misdirected Request. A request without Host is HTTP/1.0 from a
script (browsers always send one): served; HTTP/1.1 without Host, or two Host headers: 400.
Standard library only: the CLI parses --serve-allow-host with it before anything loads.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from http import HTTPStatus

_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
WILDCARDS = ("0.0.0.0", "::", "")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def split_host(header: str) -> tuple[str, str] | None:
    """'Name:8080' -> ('name', '8080'); '[::1]:80' -> ('::1', '80'); None when malformed."""
    header = header.strip()
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None
        name, rest = header[1:end], header[end + 1:]
        if _ip(name) is None or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        name, _, port = header.partition(":")
        if ":" in port:
            return None
    if not name or (port and not (port.isdigit() and 0 < int(port) <= 65535)):
        return None
    return name.lower(), port


def parse_allowed_host(text: str) -> str:
    """A host name or IP address the user allows in Host headers (no port, no scheme)."""
    value = text.strip().lower()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    if _ip(value) is not None or _NAME.match(value):
        return value
    raise ValueError(f"{text!r} is not a host name or IP address (e.g. box.local or 192.168.1.20; "
                     "no scheme, port or path)")


class HostCheck:
    """The Host headers a server bound to `bound` answers, plus `allowed` names."""

    def __init__(self, bound: str, allowed: Sequence[str] = ()) -> None:
        self.bound = bound
        self.wildcard = bound in WILDCARDS
        bound_ip = _ip(bound)
        self.loopback = bound == "localhost" or (bound_ip is not None and bound_ip.is_loopback)
        self.bound_ip = bound_ip
        self.allowed = {parse_allowed_host(name) for name in allowed}

    def allows(self, name: str) -> bool:
        if name in self.allowed:
            return True
        if name == "localhost":
            return self.loopback or self.wildcard
        ip = _ip(name)
        if ip is None:
            return False
        if self.wildcard:
            return True
        if ip == self.bound_ip:
            return True
        return self.loopback and ip.is_loopback

    def refusal(self, headers: list[str] | None, version: str) -> tuple[int, str] | None:
        """None to serve the request; else (status, one line saying why and what to do)."""
        if not headers:
            if version >= "HTTP/1.1":
                return HTTPStatus.BAD_REQUEST, "HTTP/1.1 needs a Host header"
            return None
        if len(headers) > 1:
            return HTTPStatus.BAD_REQUEST, "one Host header, please"
        parsed = split_host(headers[0])
        if parsed is None:
            return HTTPStatus.BAD_REQUEST, "malformed Host header"
        if self.allows(parsed[0]):
            return None
        return (HTTPStatus.MISDIRECTED_REQUEST,
                "this live view answers only for the addresses it listens on (a guard against DNS "
                "rebinding); to reach it by a name, start pspnet-rt with --serve-allow-host NAME")
