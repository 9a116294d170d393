"""Git as a side effect: preflight checks, the version-file bump, tags, branches, push, builds.

Every git process goes through the seam `history.git`; writes are small and each one is
checked first, so that a re-run after a crash finds what was already done (a tag that exists on
the right commit is adopted).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gestan_release.errors import GitError, ReleaseError
from gestan_release.history.git import (
    branch_exists,
    current_branch,
    is_ancestor,
    resolve_commit,
    tag_target,
    tags_at,
    worktree,
)
from gestan_release.history.git import outcome as run_git
from gestan_release.history.git import run as git

__all__ = [  # read helpers of the seam, kept here for their callers
    "branch_exists",
    "current_branch",
    "git",
    "is_ancestor",
    "tag_target",
    "tags_at",
]


# --------------------------------------------------------------------------------------------
# Preflight
# --------------------------------------------------------------------------------------------
def dirty_paths(repo: Path, ignore: Path | None = None) -> list[str]:
    """Tracked files changed and untracked files not ignored by git, except under `ignore`
    (the state dir: ledger and outbox live in the work tree)."""
    out = git(repo, "status", "--porcelain", "--untracked-files=normal")
    skip = ""
    if ignore is not None:
        try:
            skip = ignore.resolve().relative_to(repo.resolve()).as_posix().rstrip("/") + "/"
        except ValueError:
            skip = ""  # outside the work tree
    paths = [line[3:] for line in out.splitlines() if line.strip()]
    return [p for p in paths if not (skip and (p + "/").startswith(skip))]


def check_clean(repo: Path, ignore: Path | None = None) -> None:
    dirty = dirty_paths(repo, ignore)
    if dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise GitError(
            f"the work tree has uncommitted changes ({shown}): commit or stash them first "
            f"(`git stash -u`), a release is cut from committed history only"
        )


def check_attached(repo: Path) -> str:
    branch = current_branch(repo)
    if branch is None:
        raise GitError(
            "HEAD is detached: check out a branch first (`git switch main`, or "
            "`git switch release/X.Y` for a hotfix)"
        )
    return branch


def check_remote(repo: Path, remote: str) -> None:
    names = git(repo, "remote").split()
    if remote not in names:
        raise GitError(
            f"REMOTE is set to {remote!r} but this repository has no such remote "
            f"(remotes: {', '.join(names) or 'none'}); "
            "fix GESTAN_RELEASE_REMOTE or `git remote add`"
        )


# --------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------
def create_tag(repo: Path, tag: str, sha: str, message: str) -> str:
    """Create the annotated tag `tag` on `sha`; an existing tag on `sha` is adopted, on another
    commit refused."""
    existing = tag_target(repo, tag)
    if existing == sha:
        return "adopted"
    if existing is not None:
        raise ReleaseError(
            f"tag {tag} already exists on another commit ({existing[:10]}, not {sha[:10]}): "
            f"if it is wrong, delete it (`git tag -d {tag}`), otherwise release that commit"
        )
    git(repo, "tag", "-a", tag, "-m", message, sha)
    return "created"


def create_branch(repo: Path, branch: str, sha: str) -> str:
    """Create `branch` at `sha`; an existing branch that contains `sha` is fine."""
    if branch_exists(repo, branch):
        if not is_ancestor(repo, sha, f"refs/heads/{branch}"):
            raise ReleaseError(
                f"branch {branch} already exists and does not contain {sha[:10]}: "
                f"rename or delete it, then resume"
            )
        return "exists"
    git(repo, "branch", branch, sha)
    return "created"


@dataclass(frozen=True)
class PushedRef:
    """What `git push --porcelain` says of one ref: its flag (`' '` fast-forward, `'+'` forced,
    `'-'` deleted, `'*'` new, `'='` up to date, `'!'` rejected), the remote ref, git's summary."""

    flag: str
    ref: str
    summary: str

    @property
    def rejected(self) -> bool:
        return self.flag == "!"


# What a release manager can do about each reason git gives for a rejected ref.
_PUSH_ADVICE = (
    (
        "already exists",
        "the remote has this tag on another commit: compare them (`git ls-remote`), delete the "
        "wrong one, then resume",
    ),
    (
        "non-fast-forward",
        "the remote branch has commits this one lacks: fetch, reconcile, then resume",
    ),
    ("fetch first", "the remote branch has commits this one lacks: fetch, reconcile, then resume"),
    ("stale info", "the remote branch moved while pushing: resume"),
    (
        "remote rejected",
        "a hook or a protection rule on the remote refused it: check the remote's rules for "
        "release tags and branches",
    ),
)


def parse_push(porcelain: str) -> list[PushedRef]:
    """The refs of `git push --porcelain` output (`<flag>\t<from>:<to>\t<summary>` lines)."""
    pushed = []
    for line in porcelain.splitlines():
        if len(line) < 2 or line[1] != "\t" or line[0] not in " +-*=!":
            continue  # "To <url>", "Done"
        _, refs, *rest = line.split("\t")
        pushed.append(PushedRef(line[0], refs.partition(":")[2] or refs, " ".join(rest).strip()))
    return pushed


def push(repo: Path, remote: str, refs: list[str]) -> list[PushedRef]:
    """Push refs (tags and branches) to the remote; pushing what is already there is a no-op.
    A rejected ref is a GitError naming it, git's reason and what to do about it."""
    done = run_git(repo, "push", "--porcelain", remote, *refs)
    pushed = parse_push(done.out)
    rejected = [p for p in pushed if p.rejected]
    if rejected:
        lines = []
        for ref in rejected:
            advice = next((a for reason, a in _PUSH_ADVICE if reason in ref.summary), "")
            lines.append(f"{ref.ref} {ref.summary}" + (f": {advice}" if advice else ""))
        raise GitError(f"{remote} refused {'; '.join(lines)}")
    if done.code != 0:
        lines = [ln.strip() for ln in done.err.splitlines() if ln.strip()]
        said = [ln.split(": ", 1)[1] for ln in lines if ln.startswith(("fatal: ", "error: "))]
        reason = "; ".join(said or lines[-1:]) or f"exit {done.code}"
        raise GitError(f"git push to {remote} failed: {reason}")
    return pushed


# --------------------------------------------------------------------------------------------
# Version file
# --------------------------------------------------------------------------------------------
_VERSION_IN_FILE = re.compile(r"\d+\.\d+\.\d+(?:-nightly\.\d{8}(?:\.\d+)?)?")


def bump_version_file(repo: Path, branch: str, relpath: str, version: str, message: str) -> str:
    """Commit `version` into `relpath` on `branch`; return the commit that carries it.

    The first version-looking string of the file is replaced (or the file is written when it
    holds none); when the file already says `version` at the branch head, nothing is committed.
    A branch that is not checked out is bumped in a temporary worktree, then moved with a
    compare-and-swap `update-ref`, so the work tree of the release manager is never touched.
    """
    if not (repo / relpath).resolve().is_relative_to(repo.resolve()):
        raise ReleaseError(f"VERSION_FILE {relpath!r} is outside the repository")
    if current_branch(repo) == branch:
        return _bump_in(repo, relpath, version, message)
    head = resolve_commit(repo, f"refs/heads/{branch}")
    with worktree(repo, head, prefix="gestan-bump-") as work:
        new = _bump_in(work, relpath, version, message)
    if new != head:
        git(repo, "update-ref", "-m", message, f"refs/heads/{branch}", new, head)
    return new


def _bump_in(work: Path, relpath: str, version: str, message: str) -> str:
    path = work / relpath
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if _VERSION_IN_FILE.search(text):
        new = _VERSION_IN_FILE.sub(version, text, count=1)
    else:
        new = f"{version}\n"
    if new == text:
        return resolve_commit(work, "HEAD")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")
    git(work, "add", "--", relpath)
    git(work, "commit", "-q", "-m", message, "--", relpath)
    return resolve_commit(work, "HEAD")


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Artifact:
    name: str
    platform: str
    path: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "platform": self.platform,
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
        }


_PLATFORM = re.compile(r"(win64|win32|windows|linux|macos|darwin|x64|arm64)", re.IGNORECASE)


def hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def build(
    repo: Path,
    sha: str,
    command: str,
    pattern: str,
    out_dir: Path,
    env: dict[str, str],
) -> list[Artifact]:
    """Run `command` in a clean worktree at `sha`, copy the artifacts matching `pattern` to
    `out_dir`, and hash them (sha256, size)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with worktree(repo, sha, prefix="gestan-build-") as work:
        proc = subprocess.run(
            command,
            shell=True,
            cwd=work,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise ReleaseError(
                f"BUILD_COMMAND failed (exit {proc.returncode}): {shlex.quote(command)}\n"
                + "\n".join(tail)
            )
        found = sorted(glob.glob(pattern, root_dir=work, recursive=True))
        if not found:
            raise ReleaseError(f"BUILD_COMMAND produced no file matching ARTIFACTS={pattern!r}")
        artifacts = []
        for rel in found:
            src = work / rel
            if not src.is_file():
                continue
            dest = out_dir / src.name
            dest.write_bytes(src.read_bytes())
            sha256, size = hash_file(dest)
            m = _PLATFORM.search(src.name)
            platform = m.group(1).lower() if m else src.stem
            artifacts.append(Artifact(src.name, platform, str(dest), sha256, size))
        return artifacts
