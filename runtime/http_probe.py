"""Is an http(s):// source a finite file or a live stream?

An mp4 served by any web server (`python -m http.server`, nginx, S3) is a file: it must be read
to its end, every frame, once. A camera's MJPEG feed or a live HLS playlist never ends and is
read like any live stream (newest frame, drops counted, reconnects). The headers tell them
apart before OpenCV opens anything: a live feed has no length (chunked or multipart), a file
has a Content-Length or byte ranges; an HLS playlist is finite when it carries #EXT-X-ENDLIST.
"""

from __future__ import annotations

import base64
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from runtime.errors import SourceError
from runtime.naming import redact_source

FILE, LIVE = "file", "live"
LIVE_TYPES = ("multipart/x-mixed-replace",)
HLS_TYPES = ("application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl")
PLAYLIST_LIMIT = 1 << 20


@dataclass
class Probe:
    kind: str  # FILE or LIVE
    why: str  # what decided it, for the log


def _request(uri: str, method: str) -> urllib.request.Request:
    """A request without the URL's user:password, which go in an Authorization header instead."""
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    request = urllib.request.Request(clean, method=method, headers={"User-Agent": "pspnet-rt"})
    if parts.username is not None:
        token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
    return request


def probe(uri: str, timeout: float, shown: str) -> Probe:
    """Ask the server what `uri` is; SourceError (naming the URL, the reason and how long it took)
    when it refuses, does not answer within `timeout` or says the resource is not there."""
    t0 = time.monotonic()
    try:
        try:
            response = urllib.request.urlopen(_request(uri, "HEAD"), timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code not in (400, 403, 405, 501):
                raise
            response = urllib.request.urlopen(_request(uri, "GET"), timeout=timeout)  # no HEAD here
        with response:
            headers = response.headers
            ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype in HLS_TYPES or urllib.parse.urlsplit(uri).path.lower().endswith(".m3u8"):
                with urllib.request.urlopen(_request(uri, "GET"), timeout=timeout) as playlist:
                    body = playlist.read(PLAYLIST_LIMIT)
                if b"#EXT-X-ENDLIST" in body:
                    return Probe(FILE, "HLS playlist with #EXT-X-ENDLIST (video on demand)")
                return Probe(LIVE, "HLS playlist without #EXT-X-ENDLIST (live)")
            if ctype in LIVE_TYPES:
                return Probe(LIVE, f"Content-Type {ctype}")
            length = headers.get("Content-Length")
            if length and length.isdigit() and int(length) > 0:
                return Probe(FILE, f"Content-Length {length}")
            if (headers.get("Accept-Ranges") or "").lower() == "bytes":
                return Probe(FILE, "Accept-Ranges: bytes")
            return Probe(LIVE, "no length (a stream)")
    except urllib.error.HTTPError as exc:
        raise SourceError(redact_source(f"cannot open {shown}: the server answered HTTP {exc.code} "
                                        f"{exc.reason}; check the URL")) from None
    except (urllib.error.URLError, OSError) as exc:
        elapsed = time.monotonic() - t0
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            what = f"no answer within {timeout:g} s (raise the wait with --timeout)"
        else:
            what = f"{getattr(reason, 'strerror', None) or reason} after {elapsed:.1f} s"
        raise SourceError(redact_source(f"cannot open {shown}: {what}; check the URL and that the server "
                                        "is up")) from None
