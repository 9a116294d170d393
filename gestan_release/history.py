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

import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from gestan_release.errors import GitError, VersionError
from gestan_release.versions import Version, parse_tag, release_version

_REVERT_RE = re.compile(r"This reverts commit ([0-9a-f]{7,40})")
_PICK_RE = re.compile(r"\(cherry picked from commit ([0-9a-f]{7,40})\)")
_ID_RE = re.compile(r"\d+")
_FORMAT = "%H%x1f%P%x1f%an%x1f%B"


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


def iter_commits(repo: Path | str, rev_range: list[str]) -> Iterator[Commit]:
    """Stream the commits of a range, newest first, from one `git log` process."""
    cmd = [
        "git",
        "-C",
        str(repo),
        "log",
        f"--format={_FORMAT}",
        "-z",
        "--end-of-options",
        *rev_range,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_git_env())
    assert proc.stdout is not None
    pending = b""
    try:
        while chunk := proc.stdout.read(1 << 20):
            records = (pending + chunk).split(b"\0")
            pending = records.pop()
            for raw in records:
                yield _parse_record(raw)
        if pending:
            yield _parse_record(pending)
    finally:
        proc.stdout.close()
        err = proc.stderr.read() if proc.stderr else b""
        code = proc.wait()
    if code != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git log {' '.join(rev_range)} failed: {lines[-1] if lines else code}")


def _parse_record(raw: bytes) -> Commit:
    text = raw.decode("utf-8", "replace")
    sha, parents, author, message = text.split("\x1f", 3)
    if "\r" in message:
        message = message.replace("\r\n", "\n").replace("\r", "\n")
    return Commit(sha.lstrip("\n"), tuple(parents.split()), author, message.strip("\n"))


# --------------------------------------------------------------------------------------------
# What a message says
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rules:
    """How messages name tickets; built from settings (cf. git-cliff's commit_parsers)."""

    patterns: tuple[str, ...] = (r"(?<![\w&/])#(\d+)\b",)
    fix_trailers: tuple[str, ...] = ("Ticket", "Fixes", "Closes", "Corrige")
    ref_trailers: tuple[str, ...] = ("Refs",)

    @classmethod
    def from_settings(cls, settings: object) -> Rules:
        return cls(
            patterns=tuple(settings.ticket_patterns),  # type: ignore[attr-defined]
            fix_trailers=tuple(settings.fix_trailers),  # type: ignore[attr-defined]
            ref_trailers=tuple(settings.ref_trailers),  # type: ignore[attr-defined]
        )

    @cached_property
    def _inline(self) -> re.Pattern[str]:
        return re.compile("|".join(f"(?:{p})" for p in self.patterns))

    @cached_property
    def _trailer(self) -> re.Pattern[str]:
        names = "|".join(re.escape(n) for n in (*self.fix_trailers, *self.ref_trailers))
        return re.compile(rf"^[ \t]*({names})[ \t]*:[ \t]*(.*)$", re.IGNORECASE | re.MULTILINE)

    @cached_property
    def _fix_names(self) -> frozenset[str]:
        return frozenset(n.lower() for n in self.fix_trailers)

    def tickets(self, message: str, merge: bool = False) -> tuple[set[int], set[int]]:
        """(ids fixed, ids only mentioned) by one commit message."""
        fixed: set[int] = set()
        mentioned: set[int] = set()
        inline_text = message
        if ":" in message:
            for m in self._trailer.finditer(message):
                ids = {int(x) for x in _ID_RE.findall(m.group(2))}
                (fixed if m.group(1).lower() in self._fix_names else mentioned).update(ids)
                # A trailer line is read as a trailer, never again as inline refs.
                inline_text = inline_text.replace(m.group(0), "")
        if not merge and "#" in inline_text:
            for m in self._inline.finditer(inline_text):
                fixed.add(int(next(g for g in m.groups() if g is not None)))
        return fixed, mentioned - fixed


# --------------------------------------------------------------------------------------------
# Fixed tickets of a range
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommitRef:
    sha: str
    subject: str
    author: str

    def to_json(self) -> dict[str, str]:
        return {"sha": self.sha, "subject": self.subject, "author": self.author}


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


def _matches(short_or_full: str, shas: dict[str, object]) -> str | None:
    if short_or_full in shas:
        return short_or_full
    if len(short_or_full) < 40:
        for sha in shas:
            if sha.startswith(short_or_full):
                return sha
    return None


def fixed_tickets(commits: Iterable[Commit], rules: Rules) -> RangeFixes:
    """Apply the rules of the module docstring to the commits of a range (newest first)."""
    result = RangeFixes()
    in_range: dict[str, Commit] = {}
    reverts: dict[str, str] = {}  # revert commit → the commit it reverts
    picks: dict[str, str] = {}  # cherry-pick → the commit it was picked from
    for commit in commits:
        in_range[commit.sha] = commit
        msg = commit.message
        if "This reverts commit" in msg and (m := _REVERT_RE.search(msg)):
            reverts[commit.sha] = m.group(1)
        if "cherry picked from" in msg and (m := _PICK_RE.search(msg)):
            picks[commit.sha] = m.group(1)
    result.commit_count = len(in_range)

    # A commit is undone when a revert of it stands, i.e. is not itself undone. Reverts point
    # to older commits, so deciding newest first settles each revert before its target.
    undone: set[str] = set()
    for sha, target_ref in reverts.items():  # newest first
        if sha not in undone and (target := _matches(target_ref, in_range)):
            undone.add(target)

    seen_fix: set[str] = set()  # the commit that each fix stands for (cherry-picks folded)
    for commit in reversed(list(in_range.values())):  # oldest first
        sha = commit.sha
        if sha in reverts:
            target = _matches(reverts[sha], in_range)
            if target is None and sha not in undone:
                ids, _ = rules.tickets(commit.message)
                result.reverted.append(
                    RevertedCommit(sha, commit.subject, reverts[sha], tuple(sorted(ids)))
                )
            continue
        if sha in undone:
            continue
        origin = sha
        if sha in picks:
            origin = _matches(picks[sha], in_range) or picks[sha]
            if origin in undone:
                continue
        if origin in seen_fix:
            continue
        fixed, mentioned = rules.tickets(commit.message, merge=commit.is_merge)
        result.mentioned |= mentioned
        if not fixed:
            continue
        seen_fix.add(origin)
        ref = CommitRef(sha, commit.subject, commit.author)
        for ticket_id in fixed:
            result.fixes.setdefault(ticket_id, []).append(ref)
    result.mentioned -= set(result.fixes)
    return result
