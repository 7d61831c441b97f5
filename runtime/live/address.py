"""`--serve [HOST:]PORT`: parsing the address and telling loopback from the rest (no imports
beyond the standard library, so the CLI can check the flag before anything loads)."""

from __future__ import annotations

import ipaddress


def parse_bind(text: str) -> tuple[str, int]:
    """'8080' -> ('127.0.0.1', 8080); 'HOST:PORT'; '[::1]:8080' for IPv6. Port 0 picks a free one."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:8080")
    if sep and not host:
        raise ValueError(f"{text!r}: give HOST:PORT (0.0.0.0:PORT for every interface) or just PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r}: the port must be a number, e.g. --serve 8080 or --serve 0.0.0.0:8080"
                         ) from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: the port must be within 0..65535")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
