"""What a reporter wrote, made fit to publish from the official account (pure).

A title or a name is flattened to one line without the characters `validation` refuses (`flat`),
and made inert for X and the forum (`neutralise`: no link, mention, hashtag or cashtag; the URLs
X would find come from `tweet_length`). A forum URL names its discussion
(`discussion_id`). `messages` and `acks` build their texts from these.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from gestan_release.core.validation import without_unsafe
from gestan_release.text.tweet_length import extract_urls

# Vanilla discussion URLs: https://forum.gestan.fr/discussion/3226/slug (the slug is optional).
_DISCUSSION_RE = re.compile(r"/discussion/([0-9]{1,18})(?:[/?#]|$)")
# What a reporter's title may hold that X or the forum would turn into a link or a mention.
_SCHEME_URL = re.compile(
    r"\b[A-Za-z][A-Za-z0-9+.-]*:(?://|[^\s]*@)[^\s<>\"]*|(?<![:\w])//[^\s<>\"]+"
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_WWW = re.compile(r"\bwww\.[^\s<>\"]*", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Only an ASCII letter, digit or "_" before the sign spares it: X takes "é@x" or "²@x" for a
# mention (twitter-text), so anything else before it is neutralised.
_MENTION = re.compile(r"(?<![A-Za-z0-9_])([@＠])(?=[\w\"])")
_TAG = re.compile(r"(?<![A-Za-z0-9_])([#＃$＄])(?=[^\W\d])")
_NBSP = "\u00a0"


def discussion_id(forum_url: str | None) -> int | None:
    """The Vanilla discussion id of a forum URL (`/discussion/3226/slug` → 3226), else None."""
    if not forum_url:
        return None
    m = _DISCUSSION_RE.search(urlsplit(forum_url.strip()).path)
    return int(m.group(1)) if m else None


def neutralise(text: str) -> str:
    """A reporter's title made inert for the official account: the X post and the forum posts
    must not mention, tag or link what a reporter wrote.

    - URLs (with a scheme, `//` or `www.`, e-mail addresses, and bare domains as X detects them)
      are defanged: `https[:]//evil[.]example/fix[.]exe`, `mailto[:]toto@exemple[.]fr`;
    - `@name`, `#tag` and `$TAG` get a no-break space after the sign (`@ name`): no mention, no
      hashtag, no cashtag, and the text still reads the same. `#3226` (digits) is left alone.
    """
    spans = [m.span() for regex in (_SCHEME_URL, _WWW, _EMAIL) for m in regex.finditer(text)]
    if "." in text:
        spans += [tuple(u["indices"]) for u in extract_urls(text)]
    out, pos = [], 0
    for start, end in _merged(spans):
        out.append(text[pos:start])
        url = _SCHEME.sub(r"\1[:]", text[start:end], count=1)
        out.append(url.replace(".", "[.]"))
        pos = end
    out.append(text[pos:])
    defanged = "".join(out)
    unmentioned = _MENTION.sub(lambda m: m.group(1) + _NBSP, defanged)
    return _TAG.sub(lambda m: m.group(1) + _NBSP, unmentioned)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def flat(text: str) -> str:
    """User text on one line (a title or a name cannot add lines to a message), without the
    characters `gestan_release.core.validation` refuses (data stored before it was validated)."""
    return " ".join(without_unsafe(str(text)).split())
