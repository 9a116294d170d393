"""X's weighted length of a text, and the URLs X finds in it, by twitter-text (`twitter_text`).

twitter-text-parser is the reference (its conformance suite runs in `tests/test_tweet_length.py`),
but every release builds an X post and the library is slow to import: it reads its emoji table
with `pkg_resources` (setuptools' deprecated resource API, whose import alone scans every
installed distribution) and compiles its URL and emoji expressions. So it is imported on first
use only, and given the one function of `pkg_resources` it calls, `resource_string`, as a stdlib
read of the file next to its module (`_twitter_text`): a third of the import time saved, the same
table, the same counts.
"""

from __future__ import annotations

import sys
import threading
from functools import cache, lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

_importing = threading.Lock()


def _resource_string(module: str, name: str) -> bytes:
    """`pkg_resources.resource_string(module, name)`: the bytes of the file `name` next to the
    (loaded) module `module`."""
    origin = sys.modules[module].__file__
    assert origin is not None
    return Path(origin).with_name(name).read_bytes()


@cache
def _twitter_text() -> ModuleType:
    """The `twitter_text` package, imported without `pkg_resources` unless something else
    imported that already. The stand-in sits in `sys.modules` only while the package loads (a
    tenth of a second, once per process; nothing of ours imports `pkg_resources` meanwhile)."""
    with _importing:
        if "pkg_resources" in sys.modules or "twitter_text" in sys.modules:
            import twitter_text

            return twitter_text
        stand_in = ModuleType("pkg_resources", "gestan_release.tweet_length's stand-in")
        stand_in.resource_string = _resource_string  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = stand_in
        try:
            import twitter_text
        finally:
            if sys.modules.get("pkg_resources") is stand_in:
                del sys.modules["pkg_resources"]
        return twitter_text


@lru_cache(maxsize=256)
def weighted_length(text: str) -> int:
    """X's weighted length of `text` (URLs count 23, CJK and emoji 2), by twitter-text."""
    return _twitter_text().parse_tweet(text).weightedLength


def extract_urls(text: str) -> list[dict[str, Any]]:
    """The URLs X would link in `text`, scheme or not (`{"url", "indices"}`), by twitter-text."""
    return _twitter_text().extract_urls_with_indices(text)
