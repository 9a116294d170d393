"""The secret scrubber: every error text that comes from a peer passes through `scrub` before it is
logged, raised or stored (the ledger's `last_error`, Prefect's database, the terminal).

A peer may quote what we sent it — X, the forum, an update server or an SMTP server that echoes the
`Authorization` header or the AUTH exchange in its error. `scrub` removes:
- every secret this process knows: each `Secret` setting registers itself when it is loaded, and
  each sender registers the credentials it is given (and the forms it sends them in: URL-encoded,
  base64, SMTP's AUTH PLAIN blob);
- the user information of a URL (`https://user:token@host/…`, which git and HTTP libraries quote
  back in their errors);
- any `Bearer …`, `Basic …`, `Token …` or OAuth 1.0a `OAuth k="v", …` credential, and the values
  of `access_token`, `refresh_token`, `client_secret`, `password`, `oauth_token` and
  `oauth_signature` fields, whether or not we know the secret (a token rotated by the peer).

Stdlib only: the CLI prints every error through it.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

MASK = "**********"
MIN_SECRET = 4  # shorter values would mask ordinary words; no real credential is that short

_known: set[str] = set()
_ordered: list[str] = []
_lock = threading.Lock()

_AUTH_SCHEME = re.compile(
    r"\b(Bearer|Basic|Token|Digest)(\s+|=|%20)([A-Za-z0-9._~+/=:%-]{8,})", re.IGNORECASE
)
_OAUTH1 = re.compile(r"\bOAuth\s+(?:[a-z_]+=\"[^\"]*\"\s*,?\s*)+", re.IGNORECASE)
_FIELDS = re.compile(
    r"(\b(?:access_token|refresh_token|client_secret|password|passwd|oauth_token|"
    r"oauth_signature|oauth_consumer_key|api_key|apikey|secret)\b[\"']?\s*[:=]\s*[\"']?)"
    r"([^\s\"',&;}]+)",
    re.IGNORECASE,
)

# `scheme://userinfo@`: what a URL carries before its host (git, httpx and SQLAlchemy echo it).
_URL_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)


def url_without_credentials(url: str) -> str:
    """`url` fit to show: its user information, if any, masked (`https://***@host/…`)."""
    return _URL_USERINFO.sub(r"\1***@", url)


def _value(secret: Any) -> str | None:
    getter = getattr(secret, "get_secret_value", None)
    value = getter() if getter is not None else secret
    return value if isinstance(value, str) else None


def remember(*secrets: Any) -> None:
    """Add secrets (strings or `Secret`s; None and very short values are ignored) and the forms
    they travel in to what `scrub` removes."""
    forms: list[str] = []
    for secret in secrets:
        value = _value(secret)
        if not value or len(value) < MIN_SECRET:
            continue
        forms += [value, quote(value, safe=""), base64.b64encode(value.encode()).decode()]
    if not forms:
        return
    with _lock:
        new = [f for f in forms if f not in _known and len(f) >= MIN_SECRET]
        if not new:
            return
        _known.update(new)
        _ordered[:] = sorted(_known, key=len, reverse=True)  # longest first: no partial masks


def remember_smtp_login(username: str | None, password: Any) -> None:
    """The SMTP password and the AUTH PLAIN / AUTH LOGIN blobs a server could echo back."""
    value = _value(password)
    if not value:
        return
    remember(value)
    user = username or ""
    blobs = [
        base64.b64encode(f"\0{user}\0{value}".encode()).decode(),
        base64.b64encode(f"{user}\0{user}\0{value}".encode()).decode(),
    ]
    remember(*blobs)


def forget_all() -> None:
    """Forget every remembered secret: for tests, where one process plays many configurations."""
    with _lock:
        _known.clear()
        _ordered.clear()


def scrub(text: str, extra: Iterable[Any] = ()) -> str:
    """`text` without any known secret (nor `extra` ones) and without credential-looking values."""
    if not text:
        return text
    with _lock:
        secrets = list(_ordered)
    for secret in [*(v for e in extra if (v := _value(e)) and len(v) >= MIN_SECRET), *secrets]:
        if secret in text:
            text = text.replace(secret, MASK)
    text = url_without_credentials(text)
    text = _OAUTH1.sub(f"OAuth {MASK}", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _FIELDS.sub(lambda m: f"{m.group(1)}{MASK}", text)
