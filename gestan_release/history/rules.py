"""What a commit message says: the ticket rules as data (cf. git-cliff's commit_parsers and
skip), and their reference reading of one message.

`history.scan_block` reads thousands of messages at once with the same rules and must agree with
`Rules.references`, the plain reading kept here (tests check that they do).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from gestan_release.errors import ConfigError
from gestan_release.history.trailers import trailers

__all__ = [
    "DEFAULT_SKIP_PATTERNS",
    "DEFAULT_TICKET_PATTERN",
    "PR_SUFFIX",
    "TICKET_LIST",
    "Reference",
    "Rules",
    "normalise",
    "quoted_subject",
    "reverted_subject",
    "strip_pr",
]

# How commits name tickets: what a commit means is data, not code (cf. git-cliff's
# commit_parsers and skip); the defaults of `settings`.
# `#1234`, not `issue#12`, `&#233;`, `a/#3` or `org/repo#12`; the lookbehind follows the `#` so
# that the pattern starts with a literal (fast scanning).
DEFAULT_TICKET_PATTERN = r"#(?<![\w&/]#)(\d+)\b"
DEFAULT_FIX_TRAILERS = ("Ticket", "Fixes", "Closes", "Corrige")
DEFAULT_REF_TRAILERS = ("Refs",)
# Release and bump commits often quote the previous notes: they fix nothing (on the subject).
DEFAULT_SKIP_PATTERNS = (
    r"^Version \d+\.\d+(?:\.\d+)?(?: U\d+)?(?: \([^)]*\))?$",  # ours: Version 15.4 U2 (15.4.2)
    r"^chore\(release\)",  # semantic-release, release-please: chore(release): 1.2.3
    r"^chore(?:\([^)]*\))?!?: (?:release|bump version)\b",  # chore: release 1.2.3
    r"(?i)^release:? v?\d+\.\d+",  # Release 1.2.3, release: v1.2.3
    r"(?i)^bump version\b",  # Bump version to 1.2.3, Bump version: 1.2.2 → 1.2.3
)
MERGE_REFS = ("trailers", "all")  # a merge's own "#45": ignored (trailers only) or counted

_ID_RE = re.compile(r"\d+", re.ASCII)


def normalise(text: str) -> str:
    """Line breaks as `\\n` (some tools on Windows write CRLF)."""
    if "\r" not in text:
        return text
    text = text.replace("\r\n", "\n")
    return text.replace("\r", "\n") if "\r" in text else text


# A trailer value is a list of ticket refs: `12`, `#12`, `#12, #13`, `#12 et #13` (and
# another project's `org/repo#12`, which is not ours) -- nothing else (`v14 regression`).
TICKET_LIST = re.compile(
    r"[ \t]*#?\d+(?:(?:[ \t]*[,;&][ \t]*|[ \t]+(?:(?:and|et)[ \t]+)?)#?\d+)*[ \t]*[.,;]?[ \t]*",
    re.ASCII,
)
_LIST_SEP = re.compile(r"\s*(?:[,;&]|\band\b|\bet\b)\s*|\s+")
_OUR_ITEM = re.compile(r"#?(\d+)", re.ASCII)
_FOREIGN_ITEM = re.compile(r"[\w.-]+(?:/[\w.-]+)?#[0-9]+")
_QUOTED = re.compile(r'(Revert|Reapply) "(.*)"\Z', re.S)
_CONVENTIONAL_REVERT = re.compile(r"(?i:revert)(?:\([^)]*\))?!?:\s*(.*)\Z", re.S)
PR_SUFFIX = re.compile(r" \(#\d+\)\Z", re.ASCII)


def strip_pr(subject: str) -> str:
    """A subject without GitHub's trailing ` (#N)` (added by squash merges)."""
    return PR_SUFFIX.sub("", subject.strip())


def quoted_subject(subject: str) -> str | None:
    """What a revert commit's subject quotes, as written (`Revert "Corrige (#52)" (#53)` →
    `Corrige (#52)`), or None when `subject` is not a revert's."""
    s = strip_pr(subject)
    m = _QUOTED.match(s)
    if m:
        return m.group(2)
    m = _CONVENTIONAL_REVERT.match(s)
    return m.group(1).strip().strip('"') if m else None


def reverted_subject(subject: str) -> str | None:
    """The subject of the commit a revert undoes, normalised for matching (` (#N)` dropped), or
    None when `subject` is not a revert's. `Reapply "X"` (git's revert of a revert) undoes
    `Revert "X"`."""
    quoted = quoted_subject(subject)
    if quoted is None:
        return None
    if subject.startswith("Reapply"):
        return f'Revert "{strip_pr(quoted)}"'
    return strip_pr(quoted)


def combine(patterns: Iterable[str]) -> str:
    """One alternation of several patterns, their leading global flags (`(?i)`) made local."""
    parts = []
    for p in patterns:
        m = re.match(r"\(\?([aiLmsux]+)\)", p)
        parts.append(f"(?{m.group(1)}:{p[m.end() :]})" if m else f"(?:{p})")
    return "|".join(parts)


@dataclass(frozen=True)
class Rules:
    """How messages name tickets; built from settings (cf. git-cliff's commit_parsers and
    skip)."""

    patterns: tuple[str, ...] = (DEFAULT_TICKET_PATTERN,)
    fix_trailers: tuple[str, ...] = DEFAULT_FIX_TRAILERS
    ref_trailers: tuple[str, ...] = DEFAULT_REF_TRAILERS
    skip_patterns: tuple[str, ...] = DEFAULT_SKIP_PATTERNS
    merge_refs: str = "trailers"

    @classmethod
    def from_settings(cls, settings: object) -> Rules:
        return cls(
            patterns=tuple(settings.ticket_patterns),  # type: ignore[attr-defined]
            fix_trailers=tuple(settings.fix_trailers),  # type: ignore[attr-defined]
            ref_trailers=tuple(settings.ref_trailers),  # type: ignore[attr-defined]
            skip_patterns=tuple(getattr(settings, "skip_patterns", DEFAULT_SKIP_PATTERNS)),
            merge_refs=str(getattr(settings, "merge_refs", "trailers")).strip().lower(),
        )

    def check(self, sources: dict[str, str] | None = None) -> Rules:
        """The rules, once every one of them is usable; else a ConfigError naming the setting
        (and, from `sources`, where it was set: the environment variable or the toml file)."""

        def q(text: str) -> str:  # a pattern as the user typed it (repr doubles backslashes)
            return f"'{text}'"

        def bad(setting: str, why: str) -> ConfigError:
            where = (sources or {}).get(setting.lower(), "the defaults")
            return ConfigError(f"setting {setting} from {where} is invalid: {why}")

        if not self.patterns:
            raise bad("TICKET_PATTERNS", "it is empty; give at least one pattern, e.g. #(\\d+)")
        for setting, patterns in (
            ("TICKET_PATTERNS", self.patterns),
            ("SKIP_PATTERNS", self.skip_patterns),
        ):
            for p in patterns:
                try:
                    compiled = re.compile(p, re.ASCII if setting == "TICKET_PATTERNS" else 0)
                except re.error as exc:
                    raise bad(setting, f"{q(p)} is not a regular expression ({exc})") from None
                if compiled.fullmatch("") is not None:
                    raise bad(setting, f"{q(p)} matches an empty text, so it would match anywhere")
                if setting == "TICKET_PATTERNS" and compiled.groups != 1:
                    raise bad(
                        setting,
                        f"{q(p)} has {compiled.groups} capturing groups; it needs exactly one, "
                        f"around the ticket number (e.g. GES-(\\d+); write (?:…) for the others)",
                    )
        for setting, names in (
            ("FIX_TRAILERS", self.fix_trailers),
            ("REF_TRAILERS", self.ref_trailers),
        ):
            for name in names:
                if not re.fullmatch(r"[A-Za-z0-9-]+", name):
                    raise bad(
                        setting,
                        f"{q(name)} is not a trailer name (letters, digits and '-', e.g. Fixes)",
                    )
        fixing = {n.lower() for n in self.fix_trailers}
        both = [n for n in self.ref_trailers if n.lower() in fixing]
        if both:
            raise bad(
                "REF_TRAILERS",
                f"{', '.join(both)} is also in FIX_TRAILERS: a trailer fixes or mentions",
            )
        if self.merge_refs not in MERGE_REFS:
            raise bad("MERGE_REFS", f"{self.merge_refs!r}: use trailers or all")
        for setting, compiled in (
            ("TICKET_PATTERNS", "_inline"),
            ("SKIP_PATTERNS", "_skip"),
            ("SKIP_PATTERNS", "_skip_subjects"),
        ):
            try:
                getattr(self, compiled)
            except re.error as exc:
                raise bad(setting, f"the patterns do not combine into one ({exc})") from None
        return self

    # The regexes run over whole blocks of `git log` output at once (one call per block, not
    # per commit: per-call overhead was most of the parsing time on big histories), and each
    # starts with a literal so that the engine jumps from candidate to candidate. Messages are
    # read as `%n%B`, so that every line, the subject included, follows a line break.
    @cached_property
    def _trailer(self) -> re.Pattern[str]:
        names = "|".join(re.escape(n) for n in (*self.fix_trailers, *self.ref_trailers))
        return re.compile(rf"\n(?i:({names}))[ \t]*:([^\n\0]*)")

    @cached_property
    def _inline(self) -> re.Pattern[str]:
        # ASCII: a ticket id is ASCII digits; `\d` would also read `#٣٤` as ticket 34.
        return re.compile(combine(self.patterns), re.ASCII)

    @cached_property
    def _skip(self) -> re.Pattern[str] | None:
        return re.compile(combine(self.skip_patterns)) if self.skip_patterns else None

    @cached_property
    def _skip_subjects(self) -> re.Pattern[str] | None:
        """SKIP_PATTERNS as one pass over a block: each pattern right after the line break that
        starts a subject (`\\x1f\\n`), its `^` dropped, `$` an end of line."""
        if not self.skip_patterns:
            return None
        parts = []
        for p in self.skip_patterns:
            m = re.match(r"\(\?([aiLmsux]+)\)", p)
            flags, rest = (m.group(1), p[m.end() :]) if m else ("", p)
            anchored = rest.startswith("^")
            rest = rest[1:] if anchored else rest
            group = f"(?{flags}:{rest})" if flags else f"(?:{rest})"
            parts.append(group if anchored else f"[^\\n\\0]*?{group}")
        return re.compile("\x1f\n(?:" + "|".join(parts) + ")", re.M)

    @cached_property
    def _fix_names(self) -> frozenset[str]:
        return frozenset(n.lower() for n in self.fix_trailers)

    @cached_property
    def _ref_names(self) -> frozenset[str]:
        return frozenset(n.lower() for n in self.ref_trailers)

    @property
    def merges_count_whole(self) -> bool:
        return self.merge_refs == "all"

    def skips(self, subject: str) -> bool:
        """Whether a commit with this subject is a release commit that fixes nothing."""
        return self._skip is not None and self._skip.search(subject) is not None

    def _inline_id(self, m: re.Match[str]) -> int | None:
        """The number a TICKET_PATTERNS match caught (None if its group caught more)."""
        number = m.group(1) if self._inline.groups == 1 else next(g for g in m.groups() if g)
        return int(number) if number.isascii() and number.isdigit() else None

    def trailer_ids(self, value: str) -> tuple[int, ...]:
        """The ticket ids a trailer value gives: only when it is a list of ticket refs."""
        if TICKET_LIST.fullmatch(value):
            return tuple(map(int, _ID_RE.findall(value)))
        ids = []
        for item in _LIST_SEP.split(value.strip().rstrip(".,;")):
            if not item:
                continue
            if m := _OUR_ITEM.fullmatch(item):
                ids.append(int(m.group(1)))
            elif (m := self._inline.fullmatch(item)) and (tid := self._inline_id(m)) is not None:
                ids.append(tid)
            elif not _FOREIGN_ITEM.fullmatch(item):
                return ()
        return tuple(ids)

    def references(self, message: str, merge: bool = False) -> list[Reference]:
        """Every ticket reference of one message, where it is and what it does: the reference
        reading of the rules (`scan_block` is the fast one and must agree with it)."""
        message = normalise(message).strip("\n")
        refs: list[Reference] = []
        spans = []
        for t in trailers(message):
            key = t.token.lower()
            spans.append((t.start, t.end))
            if key in self._fix_names or key in self._ref_names:
                fixes = key in self._fix_names
                kind = "merge-trailer" if merge else "trailer"
                refs += [Reference(i, kind, fixes, t.token) for i in self.trailer_ids(t.value)]
        subject_end = message.find("\n")
        subject_end = len(message) if subject_end < 0 else subject_end
        text = "\n" + message  # as in a block: a line break before the subject
        for m in self._inline.finditer(text):
            at = m.start() - 1
            if any(s <= at <= e for s, e in spans):
                continue
            tid = self._inline_id(m)
            if tid is None:
                continue
            kind = "subject" if at < subject_end else "body"
            if merge and not self.merges_count_whole:
                refs.append(Reference(tid, f"merge-{kind}", False, ""))
            else:
                refs.append(Reference(tid, kind, True, ""))
        return refs

    def tickets(self, message: str, merge: bool = False) -> tuple[set[int], set[int]]:
        """(ids fixed, ids only mentioned) by one commit message."""
        fixed: set[int] = set()
        mentioned: set[int] = set()
        for r in self.references(message, merge):
            if r.fixes:
                fixed.add(r.ticket)
            elif r.kind.endswith("trailer"):
                mentioned.add(r.ticket)
        return fixed, mentioned - fixed


class Reference(NamedTuple):
    """One ticket named by a message: `kind` is subject, body, trailer, merge-trailer, or
    merge-subject / merge-body (ignored unless MERGE_REFS = all); `trailer` its key."""

    ticket: int
    kind: str
    fixes: bool
    trailer: str
