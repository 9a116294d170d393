"""A forum post longer than the forum takes, cut into parts: the discussion (or reply) gets the
first, each following part is a comment on it. Every part carries the message's marker;
follow-ups also carry `<!-- gestan-release-part:K/N -->`, so that a resume posts only the parts
that are missing. Pure functions: what `ForumSender` posts, tested on their own.
"""

from __future__ import annotations

import re

PART_TAG = "<!-- gestan-release-part:{k}/{n} -->"
_PART_TAG_ROOM = len(PART_TAG.format(k=9999, n=9999))


def _pieces(text: str, limit: int) -> list[str]:
    """Cut `text` into pieces of at most `limit` characters, at the coarsest boundary that works:
    blank line (paragraph), then line, then space; a single word longer than the limit is cut."""
    if len(text) <= limit:
        return [text]
    for sep in ("\n\n", "\n", " "):
        if sep not in text:
            continue
        out: list[str] = []
        current = ""
        for unit in text.split(sep):
            candidate = unit if not current else current + sep + unit
            if len(candidate) <= limit:
                current = candidate
                continue
            if current:
                out.append(current)
            if len(unit) <= limit:
                current = unit
            else:
                *full, current = _pieces(unit, limit)
                out.extend(full)
        if current:
            out.append(current)
        return [p for p in out if p.strip()]
    return [text[i : i + limit] for i in range(0, len(text), limit)]


def split_body(
    body: str,
    marker: str,
    first_limit: int,
    rest_limit: int,
    continuation: str = "*(suite {k}/{n})*",
) -> list[str]:
    """The parts to post: each at most its limit, each carrying `marker`, follow-ups (part 2..n)
    starting with `continuation` and ending with their part tag. A body that fits is returned
    as is (with the marker appended if it was missing)."""
    if len(body) <= first_limit:
        return [body if marker in body else f"{body.rstrip()}\n\n{marker}"]
    text = body.replace(marker, "").strip()
    head_room = len(continuation.format(k=9999, n=9999)) + 2
    tail_room = 2 + len(marker) + 1 + _PART_TAG_ROOM
    limit = min(first_limit, rest_limit) - head_room - tail_room
    if limit < 100:
        raise ValueError("forum size limits are too small to split a body")
    chunks = _pieces(text, limit)
    n = len(chunks)
    parts = [f"{chunks[0]}\n\n{marker}"]
    for k, chunk in enumerate(chunks[1:], 2):
        head = continuation.format(k=k, n=n)
        parts.append(f"{head}\n\n{chunk}\n\n{marker}\n{PART_TAG.format(k=k, n=n)}")
    return parts


def part_number(body: str) -> int | None:
    match = re.search(r"<!-- gestan-release-part:(\d+)/(\d+) -->", body)
    return int(match.group(1)) if match else None
