"""Commit trailers exactly as git finds them: the final trailer block of a message.

A port of `trailer.c` (git 2.39) without the "---" divider, which is what `git log
--format=%(trailers)` and `git interpret-trailers --no-divider` read in a commit message: the last
paragraph (never the title), when it is only trailers (`Token: value`, continuation lines
indented), or holds a git-generated one (`Signed-off-by: `, `(cherry picked from commit `) and at
least 25 % trailers. Pure functions; tests compare them with git itself.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import NamedTuple

_GIT_GENERATED = ("Signed-off-by: ", "(cherry picked from commit ")
_CUT_LINE = "\n# ------------------------ >8 ------------------------\n"
_SPACE = " \t\n\v\f\r"


def _separator_at(line: str) -> int:
    """git's find_separator: where the ':' after a token (ASCII letters, digits, '-', then
    optional blanks) is, or -1."""
    blank = False
    for i, ch in enumerate(line):
        if ch == ":":
            return i
        if not blank and ch.isascii() and (ch.isalnum() or ch == "-"):
            continue
        if i and ch in " \t":
            blank = True
            continue
        break
    return -1


def _is_blank(line: str) -> bool:
    return not line.strip(_SPACE)


def _ignored_tail(msg: str) -> int:
    """Where the comments, empty lines and old "Conflicts:" block that end a message start."""
    cut = msg.find(_CUT_LINE)
    cutoff = 0 if msg.startswith(_CUT_LINE[1:]) else (cut + 1 if cut >= 0 else len(msg))
    boc = 0
    bol = 0
    in_conflicts = False
    while bol < cutoff:
        nl = msg.find("\n", bol, cutoff)
        nxt = cutoff if nl < 0 else nl + 1
        ch = msg[bol]
        if ch in "#\n":
            if not boc:
                boc = bol
        elif msg.startswith("Conflicts:\n", bol):
            in_conflicts = True
            if not boc:
                boc = bol
        elif in_conflicts and ch == "\t":
            pass
        elif boc:
            boc = 0
            in_conflicts = False
        bol = nxt
    return boc if boc else cutoff


def trailer_block(message: str) -> tuple[int, int] | None:
    """(start, end) of the final trailer block of `message`, or None when it has none."""
    end = _ignored_tail(message)
    lines = message[:end].split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    starts = list(accumulate((len(s) + 1 for s in lines), initial=0))
    title_end = len(lines)
    for i, line in enumerate(lines):
        if line.startswith("#"):
            continue
        if _is_blank(line):
            title_end = i
            break
    only_spaces = True
    recognized = False
    trailers = non_trailers = continuations = 0
    for i in range(len(lines) - 1, title_end - 1, -1):
        line = lines[i]
        if line.startswith("#"):
            non_trailers += continuations
            continuations = 0
            continue
        if _is_blank(line):
            if only_spaces:
                continue
            non_trailers += continuations
            if (recognized and trailers * 3 >= non_trailers) or (trailers and not non_trailers):
                return starts[i + 1], end
            return None
        only_spaces = False
        if line.startswith(_GIT_GENERATED):
            trailers += 1
            continuations = 0
            recognized = True
            continue
        if _separator_at(line) >= 1 and line[0] not in _SPACE:
            trailers += 1
            continuations = 0
        elif line[:1] and line[0] in _SPACE:
            continuations += 1
        else:
            non_trailers += 1 + continuations
            continuations = 0
    return None


class Trailer(NamedTuple):
    token: str
    value: str  # continuation lines unfolded
    start: int  # where its lines are in the message
    end: int


def trailers(message: str) -> list[Trailer]:
    """The trailers of the final trailer block of `message` (what `%(trailers:only,unfold)`
    prints), with where each one's lines are."""
    found = trailer_block(message)
    if found is None:
        return []
    start, end = found
    items: list[list] = []  # [text, start, end, is_trailer]
    at = start
    for line in message[start:end].split("\n"):
        line_end = at + len(line)
        if items and items[-1][3] and line[:1] and line[0] in _SPACE:
            items[-1][0] += "\n" + line
            items[-1][2] = line_end
        elif line or at < end:
            items.append([line, at, line_end, _separator_at(line) >= 1])
        at = line_end + 1
    result = []
    for text, s, e, is_trailer in items:
        if not is_trailer:
            continue
        sep = _separator_at(text)
        value = re.sub(r"\n[" + _SPACE + "]*", " ", text[sep + 1 :]).strip(_SPACE)
        result.append(Trailer(text[:sep].strip(_SPACE), value, s, e))
    return result
