"""Our X length is the official one, checked against twitter-text's conformance suite
(`tests/contracts/twitter-text/validate.yml`).

X counts with twitter-text's v3 configuration (an emoji sequence, ZWJ and skin tones included,
weighs 2): that is `WeightedTweetsWithDiscountedEmojiCounterTest`, matched case for case. The older
`WeightedTweetsCounterTest` (v2, every code point of an emoji sequence counted) agrees on every case
without emoji sequences; on those, v3 is never longer, so a text within 280 under v2 is too."""

from __future__ import annotations

import pytest
import yaml
from fakes.contracts import contracts_dir

from gestan_release.text.tweet_length import weighted_length

_SUITE = yaml.safe_load(
    (contracts_dir() / "twitter-text" / "validate.yml").read_text(encoding="utf-8")
)["tests"]
V3 = (
    _SUITE["WeightedTweetsWithDiscountedEmojiCounterTest"]
    + _SUITE["UnicodeDirectionalMarkerCounterTest"]
)
V2 = _SUITE["WeightedTweetsCounterTest"]


def _ids(cases: list[dict]) -> list[str]:
    return [c["description"][:60] for c in cases]


def test_the_suites_are_there() -> None:
    assert len(V3) >= 20 and len(V2) >= 20


@pytest.mark.parametrize("case", V3, ids=_ids(V3))
def test_weighted_length_is_x_v3_count(case: dict) -> None:
    assert weighted_length(case["text"]) == case["expected"]["weightedLength"]


@pytest.mark.parametrize("case", V2, ids=_ids(V2))
def test_v2_cases_agree_except_emoji_sequences(case: dict) -> None:
    ours, theirs = weighted_length(case["text"]), case["expected"]["weightedLength"]
    if "emoji" in case["description"].lower() or "\u200d" in case["text"]:
        assert ours <= theirs
    else:
        assert ours == theirs


def test_twitter_text_is_loaded_on_first_use_only() -> None:
    """In a process of its own: importing the module loads no twitter_text (the commands that
    build no X text never pay for it); the first count does, and counts right."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from gestan_release.text.tweet_length import weighted_length\n"
        "print('twitter_text' in sys.modules)\n"
        "print(weighted_length('english text 日本語 😷 https://example.com'),\n"
        "      weighted_length('🙋🏽👨\\u200d🎤'), 'twitter_text' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False", "46", "4", "True"]
