"""Naming a source in any output: the one function that keeps secrets in URLs (video sources,
Triton servers, study databases) out of logs, error lines, summaries, stats, the live view,
metrics, bags and search results.

Standard library only (no numpy, OpenCV or torch) and in the CLI kit, the lowest shared layer, so
every part of the project imports it without an import circle: the runtime (as
`runtime.naming.redact_source`), the build, the search's database URLs, the servers, the bag and
RTSP sinks; and clikit itself passes every line a command prints through it. Callers pass
whatever they are about to show,
a bare URI or a whole sentence (an FFmpeg or gRPC error that repeats the URL): every URL in it
is redacted, the rest is left as it was.

What is hidden, and why so much: a password in a URL is easy to type in ways a strict URL
parser does not read as a password, yet the text still carries it, so the rules follow what a
user may type, not the RFC:
- the password of a userinfo (`rtsp://user:PW@cam`, `rtsp://:PW@cam`, an unescaped `@` in it:
  `rtsp://u:p@PW@cam` -> everything before the last `@`; an unescaped `/ ? #` in it:
  `rtsp://u:pa/ss@cam/s`); the user name stays, so a log still says which account was used;
- a userinfo without a colon (`https://TOKEN@host/`) as a whole: it is often a token;
- a one-slash or slash-less typo of the scheme (`rtsp:/u:PW@cam`, `u:PW@cam/s`), which then
  reaches "no such file" messages;
- the value of any query or fragment parameter whose name says it is a secret (password,
  passwd, pwd, token, access_token, key, apikey, secret, signature, sig, auth, credential,
  session, jwt, ticket, cookie, X-Amz-Signature, ... and the short p, pw, pin, psk, sid, code).
Hiding a little too much (a path after an `@` that follows a port) is the price of never
printing a password.

A driver that repeats a password outside its URL (a database error quoting the connection's
parameters) is covered by `redact_source(text, source=URL)`: every secret the URL holds is then
hidden wherever it appears in the text.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact_source", "redact_values", "secrets_of"]

MASK = "***"

# a scheme (or, for a slash-less typo, a user name) where a word starts: not inside a path
# such as /data/clip:v1@2x.png
_SCHEME = re.compile(r"(?<![\w.+\-/\\@:%])([A-Za-z][A-Za-z0-9+.\-]*:/*)")
# where a URL ends inside a sentence; a text that starts with the URL (a bare source, whose
# password may hold a space) ends it only at a line break or a quote
_URL_END = re.compile(r"[\s'\"<>`]")
_BARE_URL_END = re.compile(r"[\r\n'\"<>`]")
# name=value pairs after ? & ; or # whose name says they are secret
_SECRET_WORDS = ("pass", "pwd", "token", "secret", "key", "sig", "auth", "cred", "session", "jwt",
                 "ticket", "cookie", "private")
_SECRET_NAMES = ("p", "pw", "pin", "psk", "sid", "code")
# our own synthetic data source ends in @HxW (synthetic:calib:200@240x480): that @ is a size, not
# the end of a userinfo, and there is nothing secret in it
_SIZE_AFTER_AT = re.compile(r"[^@/\s]*@\d+[x\u00d7]\d+(?=$|[\s),.;:'\"])")
_PARAM = re.compile(r"(?<=[?&;#])([A-Za-z0-9_.\-\[\]%]+)=([^&;#\s'\"<>`]*)")


def _is_secret_name(name: str) -> bool:
    low = name.lower()
    return low in _SECRET_NAMES or any(word in low for word in _SECRET_WORDS)


def _hidden_userinfo(rest: str) -> tuple[int, int] | None:
    """`rest` is what follows `scheme://` up to the end of the URL: the span of it to hide (the
    password, or a userinfo without a colon), None if there is none."""
    at = rest.rfind("@")
    if at <= 0:  # no userinfo, or an empty one
        return None
    userinfo = rest[:at]
    end_of_authority = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    colon = userinfo.find(":")
    if at < end_of_authority:  # a userinfo by any parser's reading
        return (colon + 1, at) if colon >= 0 else (0, at)
    # the last @ is beyond a / ? or #: a password holding one of them unescaped, unless the
    # colon (if any) comes only after the first / ? # (then it is a path such as /a:b@c)
    if 0 <= colon < end_of_authority:
        return colon + 1, at
    return None


def _hide_userinfo(rest: str) -> str:
    span = _hidden_userinfo(rest)
    return rest if span is None else rest[: span[0]] + MASK + rest[span[1]:]


def _urls(text: str) -> list[tuple[int, int]]:
    """(start, end) of what follows each scheme in `text` up to the end of its URL, where it holds
    an @. A text that starts with a URL (a bare source, whose password may hold a space) ends it
    only at a line break or a quote; `word: more words` (a log line's `prog: ...`, an error's
    `ValueError: ...`) is not a URL there, as a password never starts with a blank."""
    spans = []
    pos = 0
    for match in _SCHEME.finditer(text):
        start = match.end()
        if start < pos:
            continue
        bare = match.start() == 0 and not text[start:start + 1].isspace()
        end_match = (_BARE_URL_END if bare else _URL_END).search(text, start)
        end = end_match.start() if end_match else len(text)
        url = text[start:end]
        our_size = (match.group(1) == "synthetic:" and url.count("@") == 1
                    and _SIZE_AFTER_AT.match(url))
        if "@" in url and not our_size:
            spans.append((start, end))
            pos = end
    return spans


def _redact_urls(text: str) -> str:
    out, pos = [], 0
    for start, end in _urls(text):
        out.append(text[pos:start])
        out.append(_hide_userinfo(text[start:end]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def secrets_of(source: str) -> list[str]:
    """The secrets `redact_source` hides in `source` (passwords, tokens, secret parameters), longest
    first: what must not appear anywhere else in a text about that source either."""
    found = []
    for start, end in _urls(source):
        span = _hidden_userinfo(source[start:end])
        if span is not None:
            found.append(source[start:end][span[0]:span[1]])
    found += [m.group(2) for m in _PARAM.finditer(source) if m.group(2) and _is_secret_name(m.group(1))]
    # a percent-escaped password may be quoted decoded by a driver
    from urllib.parse import unquote

    found += [unquote(s) for s in found if unquote(s) != s]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def redact_source(text: str, source: str | None = None) -> str:
    """`text` (a source URI, or any line that may hold one) with every password, token and
    secret parameter of a URL in it replaced by ***; anything else unchanged. Idempotent.
    With `source` (the URL the text is about), the secrets of that URL are hidden wherever they
    appear in `text`, in a URL or not (a driver's message quoting a password)."""
    if not text:
        return text
    text = str(text)
    if source:
        for secret in secrets_of(source):
            text = text.replace(secret, MASK)
    text = _redact_urls(text)
    return _PARAM.sub(lambda m: f"{m.group(1)}={MASK}" if m.group(2) and _is_secret_name(m.group(1))
                      else m.group(0), text)


def redact_values(value: object) -> object:
    """`value` (parsed JSON: dicts, lists, strings, numbers) with redact_source applied to every
    string in it, keys included: what a writer of machine-readable results (a manifest, a
    benchmark's JSON, a search's tables) passes its whole record through, so a source, a server or
    a database named anywhere in it cannot carry a secret to disk."""
    if isinstance(value, str):
        return redact_source(value)
    if isinstance(value, dict):
        return {redact_values(k) if isinstance(k, str) else k: redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(v) for v in value]
    return value
