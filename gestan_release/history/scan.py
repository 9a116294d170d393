"""The fast reading of `git log` output: a block of thousands of commits at a time.

A handful of regex passes over the whole block, not one per commit: per-call overhead was most of
the parsing time on big histories, so commits whose message says nothing cost only their share of
those C-level passes. What a message says is decided by `rules.Rules`; this reading must agree
with its plain reading `Rules.references` (tests check that it does), and hands the records it
cannot settle cheaply (a trailer block that is not only trailers) to it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate
from typing import NamedTuple

from gestan_release.history.rules import PR_SUFFIX, TICKET_LIST, Rules, normalise, reverted_subject

_REVERT_RE = re.compile(r"This reverts commit ([0-9a-f]{7,40})")
_ID_RE = re.compile(r"\d+", re.ASCII)
_PICK_RE = re.compile(r"\(cherry picked from commit ([0-9a-f]{7,40})\)")
# A line that may be a trailer (git's token, then ':') or a continuation of one.
_TRAILER_LIKE = re.compile(r"[A-Za-z0-9-]+[ \t]*:|[ \t]|\(cherry picked from commit ")
# A final paragraph made only of trailer lines: what nearly every trailer block looks like. The
# exact reading (`trailer_block`) is used for the records this does not settle.
_FINAL_TRAILERS = re.compile(
    r"\n\n((?:(?:[A-Za-z0-9-]+[ \t]*:|\(cherry picked from commit )[^\n\0]*(?:\n|(?=\0)))+)\n*\0"
)
_REVERT_SUBJECT = re.compile(r'\x1f\n(?:(?:Revert|Reapply) "|(?i:revert)(?:\([^)\n]*\))?!?:)')


_NONE: frozenset[int] = frozenset()


class CommitRef(NamedTuple):
    """A commit as a changelog shows it (a tuple: thousands are made on big ranges)."""

    sha: str
    subject: str
    author: str

    def to_json(self) -> dict[str, str]:
        return {"sha": self.sha, "subject": self.subject, "author": self.author}


class Scanned(NamedTuple):
    """A commit whose message says something: tickets it names (fixed or mentioned), what it
    reverts or was cherry-picked from, whether it is a release commit to skip."""

    ref: CommitRef  # made while git is still writing: what _analyse does after it is not
    message: str  # as git printed it (line breaks around it not stripped)
    fixed: frozenset[int] | set[int]
    mentioned: frozenset[int] | set[int]
    reverts: str | None  # the sha of its "This reverts commit" line (a revert's only)
    picked_from: str | None
    revert_of: str | None = None  # a revert: the subject it quotes (normalised)
    skipped: bool = False
    merge: bool = False
    ignored: frozenset[int] | set[int] = _NONE  # a merge's own refs, not counted

    @property
    def sha(self) -> str:
        return self.ref.sha

    @property
    def is_revert(self) -> bool:
        return self.revert_of is not None


class ScanState:
    """What reading earlier (newer) blocks taught the reading of the next ones: the subjects
    that sha-less reverts quote and have not met yet (with how many such reverts wait), whose
    commits must be read even if they name no ticket."""

    def __init__(self) -> None:
        self.quoted: dict[str, int] = {}


def scan_block(
    block: str, rules: Rules, state: ScanState | None = None
) -> tuple[list[str], list[Scanned]]:
    """The shas of a block of records (NUL-separated, newest first) and, for the commits whose
    message says something, what it says.

    A handful of regex passes over the whole block, not one per commit (per-call overhead was
    most of the parsing time on big histories): commits whose message says nothing cost only
    their share of those C-level passes. Records that the fast passes cannot settle (a trailer
    block that is not only trailers) are read again with `Rules.references`.
    """
    state = state if state is not None else ScanState()
    # Each record: sha US parents US author US message (`%n%B`: it starts with a line break, so
    # that every line, the subject included, follows one); a NUL before and after each.
    text = "".join(("\0", normalise(block), "\0"))
    records = text.split("\0")[1:-1]
    # nuls[k] is the NUL before record k; nuls[-1] is the end of the block.
    nuls = list(accumulate(map((1).__add__, map(len, records)), initial=0))
    shas = [record.partition("\x1f")[0] for record in records]

    def head(k: int) -> list[str]:
        """[sha, parents, author, message] of record k."""
        return records[k].split("\x1f", 3)

    def is_merge(k: int) -> bool:
        """Whether record k has two parents or more (the first parent's sha is followed by a
        space), read in place: merges are rare, the question is asked for every ref."""
        at = nuls[k] + len(shas[k]) + 2  # after the NUL, the sha and the unit separator
        return text[at] != "\x1f" and text[at + len(shas[k])] == " "

    rfind = text.rfind
    startswith = text.startswith
    final_match = _FINAL_TRAILERS.match
    final: dict[int, int] = {}  # record -> where its final trailer block starts (-1: none)

    def final_block(k: int, line: int) -> int:
        """Where the final paragraph of record k starts, when it holds the line at `line` and
        is made only of trailer lines; else -1 (the exact reading decides)."""
        start = final.get(k)
        if start is None:
            para = rfind("\n\n", nuls[k], line)
            m = final_match(text, para) if para >= 0 else None
            start = final[k] = m.start(1) if m else -1
        return start

    slow: set[int] = set()  # records read again with the reference reading
    fixed: dict[int, set[int]] = {}
    mentioned: dict[int, set[int]] = {}
    fix_names = rules._fix_names
    id_list = TICKET_LIST.fullmatch
    find_ids = _ID_RE.findall
    trailer_ids = rules.trailer_ids
    for m in rules._trailer.finditer(text):
        at = m.start(1)
        k = bisect_right(nuls, at) - 1
        start = final.get(k)
        if start is None:
            start = final_block(k, at)
        if start < 0 or at < start:
            slow.add(k)  # a trailer-looking line that is not in a plain trailer block
            continue
        key, value = m.group(1, 2)
        ids = set(map(int, find_ids(value))) if id_list(value) else set(trailer_ids(value))
        if not ids:
            continue
        target = fixed if key.lower() in fix_names else mentioned
        found = target.get(k)
        if found is None:
            target[k] = ids
        else:
            found |= ids
    one_group = rules._inline.groups == 1
    count_merges = rules.merges_count_whole
    ignored: dict[int, set[int]] = {}
    trailer_like = _TRAILER_LIKE.match
    for m in rules._inline.finditer(text):
        at = m.start()
        k = bisect_right(nuls, at) - 1
        start = final.get(k)
        if start is not None and 0 <= start <= at:
            continue  # in a plain trailer block: read as a trailer, never as inline refs
        line = rfind("\n", 0, at) + 1
        if line <= nuls[k]:
            continue  # in the head (an author's name), not in the message
        if not startswith("\x1f\n", line - 2) and trailer_like(text, line):
            # Not the subject, and maybe a trailer line (of another key).
            if start is None:
                start = final_block(k, line)
            if start < 0 or line < start:
                slow.add(k)  # not in a plain trailer block: the exact reading decides
            continue
        number = m.group(1) if one_group else next(g for g in m.groups() if g is not None)
        if not (number.isascii() and number.isdigit()):
            continue  # a TICKET_PATTERNS group that caught more than a number (or `٣٤`)
        ticket = int(number)
        if not count_merges and is_merge(k):  # a merge's own message counts for its trailers
            ignored.setdefault(k, set()).add(ticket)
            continue
        ids = fixed.get(k)
        if ids is None:
            fixed[k] = {ticket}
        else:
            ids.add(ticket)
    reverts: dict[int, str] = {}
    for m in _REVERT_RE.finditer(text):
        reverts.setdefault(bisect_right(nuls, m.start()) - 1, m.group(1))
    picks: dict[int, str] = {}
    for m in _PICK_RE.finditer(text):
        picks.setdefault(bisect_right(nuls, m.start()) - 1, m.group(1))
    revert_of: dict[int, str] = {}
    waiting = state.quoted
    search_from = dict.fromkeys(waiting, 0)  # where to look for each quoted subject
    for m in _REVERT_SUBJECT.finditer(text):
        k = bisect_right(nuls, m.start()) - 1
        quoted = reverted_subject(head(k)[3].lstrip("\n").split("\n", 1)[0])
        if quoted is not None:
            revert_of[k] = quoted
            if k not in reverts:
                waiting[quoted] = waiting.get(quoted, 0) + 1
                search_from.setdefault(quoted, nuls[k + 1])
    # The commits whose subject a sha-less revert quotes, after it (older): read even if they
    # say nothing else. A revert undoes one: once each waiting revert met one, stop looking.
    quoted_hits: set[int] = set()
    for quoted, at in search_from.items():
        needle = "\x1f\n" + quoted
        at = text.find(needle, at)
        while at >= 0:
            end = at + len(needle)
            k = bisect_right(nuls, at) - 1
            stop = text.find("\n", end, nuls[k + 1])
            rest = text[end : stop if stop >= 0 else nuls[k + 1]]
            if not rest or PR_SUFFIX.fullmatch(rest):
                quoted_hits.add(k)
                waiting[quoted] -= 1
                if not waiting[quoted]:
                    del waiting[quoted]
                    break
            at = text.find(needle, end)
    skipped: set[int] = set()
    if rules._skip_subjects is not None:
        for m in rules._skip_subjects.finditer(text):
            k = bisect_right(nuls, m.start()) - 1
            eol = text.find("\n", m.start() + 2, nuls[k + 1])
            if eol < 0 or m.end() <= eol:
                skipped.add(k)
            elif rules.skips(head(k)[3].lstrip("\n").split("\n", 1)[0]):
                skipped.add(k)  # the match ran past the subject: ask the subject alone
    for k in slow:
        message = head(k)[3]
        fixed.pop(k, None)
        mentioned.pop(k, None)
        ignored.pop(k, None)
        fix, mention = set(), set()
        for r in rules.references(message, is_merge(k)):
            if r.fixes:
                fix.add(r.ticket)
            elif r.kind.endswith("trailer"):
                mention.add(r.ticket)
            else:
                ignored.setdefault(k, set()).add(r.ticket)
        if fix:
            fixed[k] = fix
        if mention:
            mentioned[k] = mention
    hits = []
    for k in sorted({*fixed, *mentioned, *reverts, *picks, *revert_of, *quoted_hits, *ignored}):
        sha, parents, author, message = records[k].split("\x1f", 3)
        eol = message.find("\n", 1)  # the message is `%n%B`: it starts with a line break
        subject = (message[1:] if eol < 0 else message[1:eol]).strip()
        fix = fixed.get(k, _NONE)
        mention = mentioned.get(k)
        quoted = revert_of.get(k)
        hits.append(
            Scanned(
                CommitRef(sha, subject, author),
                message,
                fix,
                mention - fix if mention else _NONE,
                reverts.get(k) if quoted is not None else None,
                picks.get(k),
                quoted,
                k in skipped,
                " " in parents,
                ignored.get(k, _NONE),
            )
        )
    return shas, hits
