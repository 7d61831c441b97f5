"""Naming a source in any output: the one function that keeps secrets in source URLs out of
logs, error lines, summaries, stats, the live view, metrics and bags.

Standard library only (no numpy, OpenCV or torch), so every part of the project imports it:
the runtime, the servers, the bag and RTSP sinks. Callers pass whatever they are about to show,
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
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact_source"]

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
_PARAM = re.compile(r"(?<=[?&;#])([A-Za-z0-9_.\-\[\]%]+)=([^&;#\s'\"<>`]*)")


def _is_secret_name(name: str) -> bool:
    low = name.lower()
    return low in _SECRET_NAMES or any(word in low for word in _SECRET_WORDS)


def _hide_userinfo(rest: str) -> str:
    """`rest` is what follows `scheme://` up to the end of the URL: hide its userinfo."""
    at = rest.rfind("@")
    if at <= 0:  # no userinfo, or an empty one
        return rest
    userinfo, after = rest[:at], rest[at:]
    end_of_authority = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    colon = userinfo.find(":")
    if at < end_of_authority:  # a userinfo by any parser's reading
        return (userinfo[: colon + 1] + MASK if colon >= 0 else MASK) + after
    # the last @ is beyond a / ? or #: a password holding one of them unescaped, unless the
    # colon (if any) comes only after the first / ? # (then it is a path such as /a:b@c)
    if 0 <= colon < end_of_authority:
        return userinfo[: colon + 1] + MASK + after
    return rest


def _redact_urls(text: str) -> str:
    out, pos = [], 0
    for match in _SCHEME.finditer(text):
        start = match.end()
        if start < pos:
            continue
        end_match = (_BARE_URL_END if match.start() == 0 else _URL_END).search(text, start)
        end = end_match.start() if end_match else len(text)
        rest = text[start:end]
        if "@" not in rest:
            continue
        out.append(text[pos:start])
        out.append(_hide_userinfo(rest))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def redact_source(text: str) -> str:
    """`text` (a source URI, or any line that may hold one) with every password, token and
    secret parameter of a URL in it replaced by ***; anything else unchanged. Idempotent."""
    if not text:
        return text
    text = _redact_urls(str(text))
    return _PARAM.sub(lambda m: f"{m.group(1)}={MASK}" if m.group(2) and _is_secret_name(m.group(1))
                      else m.group(0), text)
