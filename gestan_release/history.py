"""Git history: the previous release of a ref, and the tickets a range of commits fixes.

The range is read with one `git log` process whose output is parsed in Python while git is still
writing it (no process or object lookup per commit). What a message means is data (patterns and
trailer names from settings), not code:

- `#1234` in the subject or body, and the trailers `Ticket:`, `Fixes:`, `Closes:`, `Corrige:`
  (case-insensitive, several ids separated by commas or spaces) fix a ticket; `Refs:` only
  mentions it;
- a commit reverted inside the range fixes nothing; a revert commit itself fixes nothing; a commit
  of the range that reverts a commit from before the range is reported under `reverted`;
- a cherry-pick of a commit also in the range is the same fix (one commit entry); two cherry-picks
  of one outside commit are one fix too;
- a merge commit's own message counts only for its trailers (its "#45" is a pull request).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate
from pathlib import Path
from typing import NamedTuple

from gestan_release.errors import GitError, VersionError
from gestan_release.versions import Version, parse_tag, release_version

_REVERT_RE = re.compile(r"This reverts commit ([0-9a-f]{7,40})")
_PICK_RE = re.compile(r"\(cherry picked from commit ([0-9a-f]{7,40})\)")
_ID_RE = re.compile(r"\d+")
# `#1234`, not `issue#12`, `&#233;` or `a/#3`; the lookbehind follows the `#` so that the pattern
# starts with a literal (fast scanning).
DEFAULT_TICKET_PATTERN = r"#(?<![\w&/]#)(\d+)\b"
_FORMAT = "%H%x1f%P%x1f%an%x1f%n%B"


# --------------------------------------------------------------------------------------------
# Running git
# --------------------------------------------------------------------------------------------
def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat", GIT_CONFIG_NOSYSTEM="1")
    return env


def git(repo: Path | str, *args: str, check: bool = True) -> str:
    """Run one git command in `repo` and return its stdout; failures become a GitError."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            env=_git_env(),
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {' '.join(args[:2])} failed: {err[-1] if err else 'no output'}")
    return proc.stdout.decode("utf-8", "replace")


def ensure_repo(repo: Path | str) -> Path:
    """The top level of the work tree at `repo`, or a GitError saying it is not a repository."""
    path = Path(repo).expanduser()
    if not path.is_dir():
        raise GitError(f"{path} does not exist or is not a directory (see --repo)")
    proc = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--show-toplevel"],
        capture_output=True,
        env=_git_env(),
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(f"{path.resolve()} is not a git repository (use --repo PATH)")
    return Path(proc.stdout.decode().strip())


def resolve_commit(repo: Path | str, ref: str) -> str:
    """The full sha of the commit `ref` names, or a GitError naming the unknown ref."""
    out = git(
        repo,
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{ref}^{{commit}}",
        check=False,
    )
    sha = out.strip()
    if not sha:
        raise GitError(
            f"unknown ref {ref!r}: no branch, tag or commit of that name in this repository"
        )
    return sha


# --------------------------------------------------------------------------------------------
# Releases in the tags
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReleaseTag:
    tag: str
    version: Version


def release_tags(
    repo: Path | str, prefix: str = "v", merged_into: str | None = None
) -> list[ReleaseTag]:
    """Release tags (full or U, never nightlies or foreign tags), highest version first."""
    args = ["tag", "--list", f"{prefix}*"]
    if merged_into:
        args += ["--merged", merged_into]
    found = []
    for name in git(repo, *args).split():
        version = release_version(name, prefix)
        if version is not None:
            found.append(ReleaseTag(name, version))
    found.sort(key=lambda t: t.version, reverse=True)
    return found


def previous_release(
    repo: Path | str, ref: str, prefix: str = "v", line: tuple[int, int] | None = None
) -> ReleaseTag | None:
    """The highest release tag reachable from `ref` (on the `line` X.Y when given), or None."""
    for tag in release_tags(repo, prefix, merged_into=ref):
        if line is None or tag.version.line == line:
            return tag
    return None


def version_of_explicit_tag(repo: Path | str, ref: str, prefix: str = "v") -> Version | None:
    """The version named by `ref` when it is a tag; a tag outside the scheme is refused."""
    if not git(repo, "tag", "--list", ref).strip():
        return None
    try:
        return parse_tag(ref, prefix)
    except VersionError as exc:
        raise VersionError(f"{exc}; name a release tag, a branch or a commit instead") from None


# --------------------------------------------------------------------------------------------
# Reading the range
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    author: str
    message: str

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0].strip()

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


def _stream_blocks(repo: Path | str, rev_range: list[str]) -> Iterator[str]:
    """`git log` over a range, newest first, from one process, as decoded text blocks of whole
    records separated by NUL (each record: sha US parents US author US message).

    A reader thread drains git's pipe while the caller parses, so git never waits for Python and
    the two run side by side (wall time ≈ the slower of the two, not their sum).
    """
    cmd = ["git", "-C", str(repo), "log", f"--format={_FORMAT}", "-z", "--end-of-options"]
    proc = subprocess.Popen(
        [*cmd, *rev_range], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_git_env()
    )
    assert proc.stdout is not None and proc.stderr is not None
    _widen_pipe(proc.stdout.fileno())
    chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    errors: list[bytes] = []

    def drain() -> None:
        try:
            while chunk := proc.stdout.read(1 << 20):  # type: ignore[union-attr]
                chunks.put(chunk)
        finally:
            chunks.put(None)

    def drain_err() -> None:
        errors.append(proc.stderr.read())  # type: ignore[union-attr]

    readers = [threading.Thread(target=f, daemon=True) for f in (drain, drain_err)]
    for t in readers:
        t.start()
    pending = b""
    try:
        while (chunk := chunks.get()) is not None:
            data = pending + chunk if pending else chunk
            cut = data.rfind(b"\0")
            if cut < 0:
                pending = data
                continue
            pending = data[cut + 1 :]
            yield data[:cut].decode("utf-8", "replace")  # whole records: no character is split
        if pending:
            yield pending.decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        for t in readers:
            t.join()
        proc.stdout.close()
        proc.stderr.close()
    if code != 0:
        lines = b"".join(errors).decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git log {' '.join(rev_range)} failed: {lines[-1] if lines else code}")


def _widen_pipe(fd: int, size: int = 1 << 20) -> None:
    """Let git write up to 1 MiB ahead (Linux): the reader thread then needs the GIL once per
    MiB instead of once per 64 KiB, and git rarely waits while Python parses. Not Linux, or over
    /proc/sys/fs/pipe-max-size: the default pipe works too, only slower."""
    with contextlib.suppress(ImportError, OSError):
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def iter_commits(repo: Path | str, rev_range: list[str]) -> Iterator[Commit]:
    """Stream the commits of a range, newest first, from one `git log` process."""
    for block in _stream_blocks(repo, rev_range):
        for record in _normalise(block).split("\0"):
            sha, parents, author, message = record.split("\x1f", 3)
            yield Commit(sha.lstrip("\n"), tuple(parents.split()), author, message.strip("\n"))


# --------------------------------------------------------------------------------------------
# What a message says
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rules:
    """How messages name tickets; built from settings (cf. git-cliff's commit_parsers)."""

    patterns: tuple[str, ...] = (DEFAULT_TICKET_PATTERN,)
    fix_trailers: tuple[str, ...] = ("Ticket", "Fixes", "Closes", "Corrige")
    ref_trailers: tuple[str, ...] = ("Refs",)

    @classmethod
    def from_settings(cls, settings: object) -> Rules:
        return cls(
            patterns=tuple(settings.ticket_patterns),  # type: ignore[attr-defined]
            fix_trailers=tuple(settings.fix_trailers),  # type: ignore[attr-defined]
            ref_trailers=tuple(settings.ref_trailers),  # type: ignore[attr-defined]
        )

    # The regexes run over whole blocks of `git log` output at once (one call per block, not
    # per commit: per-call overhead was most of the parsing time on big histories), and each
    # starts with a literal so that the engine jumps from candidate to candidate. Messages are
    # read as `%n%B`, so that every line, the subject included, follows a line break.
    @cached_property
    def _trailer(self) -> re.Pattern[str]:
        names = "|".join(re.escape(n) for n in (*self.fix_trailers, *self.ref_trailers))
        return re.compile(rf"\n[ \t]*(?i:({names}))[ \t]*:[ \t]*([^\n\0]*)")

    @cached_property
    def _inline(self) -> re.Pattern[str]:
        return re.compile("|".join(f"(?:{p})" for p in self.patterns))

    @cached_property
    def _fix_names(self) -> frozenset[str]:
        return frozenset(n.lower() for n in self.fix_trailers)

    def tickets(self, message: str, merge: bool = False) -> tuple[set[int], set[int]]:
        """(ids fixed, ids only mentioned) by one commit message."""
        block = f"0000000\x1f{'0 1' if merge else '0'}\x1f\x1f\n{message}"
        _, hits = scan_block(block, self)
        return (set(hits[0].fixed), set(hits[0].mentioned)) if hits else (set(), set())


_NONE: frozenset[int] = frozenset()
# The head of each record in a block: sha, parents, author; the message follows (from `%n%B`,
# so that it starts with a line break like every other line).
# Each head follows a NUL (one is put before the first): a literal first, for fast scanning.
_SHA_RE = re.compile(r"\0([0-9a-f]{7,64})\x1f")


class CommitRef(NamedTuple):
    """A commit as a changelog shows it (a tuple: thousands are made on big ranges)."""

    sha: str
    subject: str
    author: str

    def to_json(self) -> dict[str, str]:
        return {"sha": self.sha, "subject": self.subject, "author": self.author}


class Scanned(NamedTuple):
    """A commit whose message says something: tickets it fixes or mentions, what it reverts or
    was cherry-picked from."""

    ref: CommitRef  # made while git is still writing: what _analyse does after it is not
    message: str
    fixed: frozenset[int] | set[int]
    mentioned: frozenset[int] | set[int]
    reverts: str | None
    picked_from: str | None

    @property
    def sha(self) -> str:
        return self.ref.sha


def scan_block(block: str, rules: Rules) -> tuple[list[str], list[Scanned]]:
    """The shas of a block of records (NUL-separated, newest first) and, for the commits whose
    message says something, what it says.

    A handful of regex passes over the whole block, not one per commit (per-call overhead was
    most of the parsing time on big histories): commits whose message says nothing cost only
    their share of those C-level passes.
    """
    text = "\0" + _normalise(block)
    records = text.split("\0")
    del records[0]
    # nuls[k] is the NUL before record k; nuls[-1] is the end of the block.
    nuls = list(accumulate(map(len, records), lambda at, n: at + n + 1, initial=0))
    shas = _SHA_RE.findall(text)
    heads: dict[int, list[str]] = {}

    def head(k: int) -> list[str]:
        """[sha, parents, author, message] of record k (split once, when needed)."""
        fields = heads.get(k)
        if fields is None:
            fields = heads[k] = records[k].split("\x1f", 3)
        return fields

    fixed: dict[int, set[int]] = {}
    mentioned: dict[int, set[int]] = {}
    trailer_starts: list[int] = []
    trailer_ends: list[int] = []
    fix_names = rules._fix_names
    find_ids = _ID_RE.findall
    # A trailer starts with a line break: never in a record's head (sha, parents, author).
    for m in rules._trailer.finditer(text):
        k = bisect_right(nuls, m.start()) - 1
        key, value = m.group(1, 2)
        target = fixed if key.lower() in fix_names else mentioned
        ids = target.get(k)
        if ids is None:
            ids = target[k] = set()
        ids.update(map(int, find_ids(value)))
        trailer_starts.append(m.start())
        trailer_ends.append(m.end())
    one_group = rules._inline.groups == 1
    merges: dict[int, bool] = {}
    for m in rules._inline.finditer(text):
        at = m.start()
        # A trailer line is read as a trailer, never again as inline references.
        t = bisect_right(trailer_starts, at) - 1
        if t >= 0 and at < trailer_ends[t]:
            continue
        k = bisect_right(nuls, at) - 1
        if text.find("\x1f", at, nuls[k + 1]) >= 0:
            continue  # in the head (an author's name), not in the message
        merge = merges.get(k)
        if merge is None:
            merge = merges[k] = " " in head(k)[1].strip()
        if merge:  # a merge's own message counts only for its trailers
            continue
        ticket = m.group(1) if one_group else next(g for g in m.groups() if g is not None)
        ids = fixed.get(k)
        if ids is None:
            fixed[k] = {int(ticket)}
        else:
            ids.add(int(ticket))
    reverts: dict[int, str] = {}
    picks: dict[int, str] = {}
    for regex, found in ((_REVERT_RE, reverts), (_PICK_RE, picks)):
        for m in regex.finditer(text):
            found.setdefault(bisect_right(nuls, m.start()) - 1, m.group(1))
    hits = []
    for k in sorted({*fixed, *mentioned, *reverts, *picks}):
        sha, _parents, author, message = head(k)
        message = message.strip("\n")
        fix = fixed.get(k, _NONE)
        mention = mentioned.get(k)
        hits.append(
            Scanned(
                CommitRef(sha, message.split("\n", 1)[0].strip(), author),
                message,
                fix,
                mention - fix if mention else _NONE,
                reverts.get(k),
                picks.get(k),
            )
        )
    return shas, hits


# --------------------------------------------------------------------------------------------
# Fixed tickets of a range
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RevertedCommit:
    """A commit of the range that reverts one from before it."""

    sha: str
    subject: str
    reverts: str
    tickets: tuple[int, ...]

    def to_json(self) -> dict[str, object]:
        return {"sha": self.sha, "subject": self.subject, "tickets": list(self.tickets)}


@dataclass
class RangeFixes:
    """What a range of commits fixes: ticket id → its commits (oldest first), plus reverts."""

    fixes: dict[int, list[CommitRef]] = field(default_factory=dict)
    mentioned: set[int] = field(default_factory=set)
    reverted: list[RevertedCommit] = field(default_factory=list)
    commit_count: int = 0


def _matches(short_or_full: str, shas: set[str], ordered: list[str]) -> str | None:
    """The full sha in the range that `short_or_full` names (a revert may cite a short one)."""
    if short_or_full in shas:
        return short_or_full
    if len(short_or_full) < 40:
        for sha in ordered:
            if sha.startswith(short_or_full):
                return sha
    return None


def scan_range(repo: Path | str, rev_range: list[str], rules: Rules) -> RangeFixes:
    """What a range fixes, read with one `git log` and parsed while git is still writing."""
    shas: list[str] = []
    hits: list[Scanned] = []
    for block in _stream_blocks(repo, rev_range):
        block_shas, block_hits = scan_block(block, rules)
        shas += block_shas
        hits += block_hits
    return _analyse(shas, hits, rules)


def fixed_tickets(commits: Iterable[Commit], rules: Rules) -> RangeFixes:
    """Apply the rules of the module docstring to the commits of a range (newest first)."""
    block = "\0".join(
        f"{c.sha}\x1f{' '.join(c.parents)}\x1f{c.author}\x1f\n{c.message}" for c in commits
    )
    return _analyse(*scan_block(block, rules), rules) if block else RangeFixes()


def _analyse(shas: list[str], commits: list[Scanned], rules: Rules) -> RangeFixes:
    """The fixes of a range from the shas of all its commits and the commits whose message says
    something, both newest first."""
    result = RangeFixes(commit_count=len(shas))
    ordered = shas
    in_range = set(shas)
    reverts = {c.ref.sha: c.reverts for c in commits if c.reverts}
    picks = {c.ref.sha: c.picked_from for c in commits if c.picked_from}

    # A commit is undone when a revert of it stands, i.e. is not itself undone. Reverts point
    # to older commits, so deciding newest first settles each revert before its target.
    undone: set[str] = set()
    for sha, target_ref in reverts.items():  # newest first
        if sha not in undone and (target := _matches(target_ref, in_range, ordered)):
            undone.add(target)

    seen_fix: set[str] = set()  # the commit that each fix stands for (cherry-picks folded)
    fixes = result.fixes
    for c in reversed(commits):  # oldest first
        ref = c.ref
        sha = ref.sha
        if c.reverts:
            target = _matches(c.reverts, in_range, ordered)
            if target is None and sha not in undone:
                ids = rules.tickets(c.message)[0]
                result.reverted.append(
                    RevertedCommit(sha, ref.subject, c.reverts, tuple(sorted(ids)))
                )
            continue
        if sha in undone:
            continue
        origin = sha
        if sha in picks:
            origin = _matches(picks[sha], in_range, ordered) or picks[sha]
            if origin in undone:
                continue
        if origin in seen_fix:
            continue
        if c.mentioned:
            result.mentioned |= c.mentioned
        if not c.fixed:
            continue
        seen_fix.add(origin)
        for ticket_id in c.fixed:
            if ticket_id in fixes:
                fixes[ticket_id].append(ref)
            else:
                fixes[ticket_id] = [ref]
    result.mentioned -= set(fixes)
    return result
