"""X's weighted length of a text, and the URLs X finds in it, by twitter-text (`twitter_text`).

twitter-text-parser is the reference (its conformance suite runs in
`tests/text/test_tweet_length.py`), but it is slow to import (it reads its emoji table through
setuptools' `pkg_resources` and compiles its URL and emoji expressions): it is imported on first
use only, so that commands that build no X text (`changelog`, `tickets sync`, `status`…) never
pay for it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=256)
def weighted_length(text: str) -> int:
    """X's weighted length of `text` (URLs count 23, CJK and emoji 2), by twitter-text."""
    from twitter_text import parse_tweet

    return parse_tweet(text).weightedLength


def extract_urls(text: str) -> list[dict[str, Any]]:
    """The URLs X would link in `text`, scheme or not (`{"url", "indices"}`), by twitter-text."""
    from twitter_text import extract_urls_with_indices

    return extract_urls_with_indices(text)
