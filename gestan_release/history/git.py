"""The one place that runs git: the process, its environment, its errors, and the reads every
other module needs (refs, tags, the log as a stream, temporary worktrees).

Why one seam: git used to be run from seven places with different environments and error
handling; a ref the user typed could reach git as an option (`--from=--all`). Here every ref
that comes from outside goes through `check_ref` before git sees it, and every failure becomes
one `GitError` line that says what happened. What the output *means* (tickets, reverts, picks)
is parsed elsewhere (`history.py`), from the text this module returns.

Why one module: it is that seam, a small function per git question over one runner; splitting
it would make two places that run git again.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from gestan_release.errors import GitError

_HEX = re.compile(r"[0-9a-f]{4,40}")


# --------------------------------------------------------------------------------------------
# The process
# --------------------------------------------------------------------------------------------
def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every git process: C locale (messages we can read), no prompt, no
    pager, no system config (a machine-wide `log.showSignature` must not change the output),
    and fully buffered output: on a pipe, `git log` otherwise flushes after every commit, and
    100,000 small writes and reads cost more than the parsing (GIT_FLUSH=0)."""
    env = dict(os.environ)
    env.update(
        LC_ALL="C",
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_FLUSH="0",
    )
    if extra:
        env.update(extra)
    return env


def _last_line(stderr: bytes, default: str) -> str:
    lines = [ln for ln in stderr.decode("utf-8", "replace").strip().splitlines() if ln.strip()]
    return lines[-1].removeprefix("fatal: ").removeprefix("error: ") if lines else default


def _spawn(
    repo: Path | str,
    args: Sequence[str],
    out: int,
    err: int,
    *,
    stdin: int = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`git -C repo <args>` started, in the environment of `git_env`."""
    try:
        return subprocess.Popen(
            ["git", "-C", str(repo), *args],
            stdin=stdin,
            stdout=out,
            stderr=err,
            env=git_env(env),
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None


def run(
    repo: Path | str,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> str:
    """Run one git command in `repo` and return its stdout; a failure becomes a GitError naming
    the command and git's last line of explanation (`check=False`: return stdout anyway)."""
    pipe = subprocess.PIPE
    stdin = pipe if input is not None else subprocess.DEVNULL
    proc = _spawn(repo, args, pipe, pipe, stdin=stdin, env=env)
    out, err = proc.communicate(input)
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:2])} failed: {_last_line(err, 'no output')}")
    return out.decode("utf-8", "replace")


class Outcome(NamedTuple):
    code: int
    out: str
    err: str


def outcome(repo: Path | str, *args: str) -> Outcome:
    """Run one git command and return its exit status, stdout and stderr, for a caller that reads
    git's report of a partial failure (`git push --porcelain` says what happened to every ref)."""
    pipe = subprocess.PIPE
    proc = _spawn(repo, args, pipe, pipe)
    out, err = proc.communicate()
    return Outcome(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def succeeds(repo: Path | str, *args: str) -> bool:
    """Whether a git command exits 0 (for questions git answers with its exit status)."""
    return _spawn(repo, args, subprocess.DEVNULL, subprocess.DEVNULL).wait() == 0


def stream(repo: Path | str, args: Sequence[str]) -> Iterator[str]:
    """The output of `git <args>` (which must separate records with NUL, e.g. `log -z`), as
    decoded text blocks of whole records (never a record or a character cut in two).

    A reader thread drains git's pipe while the caller parses, so git never waits for Python
    and the two run side by side (wall time near the slower of the two, not their sum).
    """
    proc = _spawn(repo, args, subprocess.PIPE, subprocess.PIPE)
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
            yield data[:cut].decode("utf-8", "replace")
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
        what = " ".join(a for a in args if not a.startswith("--format"))
        raise GitError(f"git {what} failed: {_last_line(b''.join(errors), str(code))}")


def _widen_pipe(fd: int, size: int = 1 << 20) -> None:
    """Let git write up to 1 MiB ahead (Linux): the reader thread then needs the GIL once per
    MiB instead of once per 64 KiB. Not Linux, or over /proc/sys/fs/pipe-max-size: the default
    pipe works too, only slower."""
    with contextlib.suppress(ImportError, OSError):
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)


# --------------------------------------------------------------------------------------------
# The repository
# --------------------------------------------------------------------------------------------
def toplevel(repo: Path | str) -> Path:
    """The top level of the work tree at `repo`; a GitError that says what `repo` is otherwise
    (missing, not a repository, a bare repository, the inside of a `.git` directory)."""
    path = Path(repo).expanduser()
    if not path.is_dir():
        raise GitError(f"{path} does not exist or is not a directory (see --repo)")
    top = run(path, "rev-parse", "--show-toplevel", check=False).strip()
    if top:
        return Path(top)
    # Only on failure: what is it, then?
    answers = run(path, "rev-parse", "--is-bare-repository", "--is-inside-git-dir", check=False)
    bare, inside = ([*answers.split(), "", ""])[:2]
    where = path.resolve()
    if bare == "true":
        raise GitError(
            f"{where} is a bare repository (no work tree): gestan-release works in a clone "
            f"with a work tree (`git clone {where} gestan`, then --repo gestan)"
        )
    if inside == "true":
        raise GitError(f"{where} is inside a .git directory: give --repo the work tree around it")
    raise GitError(f"{where} is not a git repository (use --repo PATH)")


def common_dir(repo: Path | str) -> Path | None:
    """The git directory shared by all worktrees of the work tree whose top level is `repo`
    (where `info/exclude` lives), or None when `repo` is not the top of a work tree."""
    path = Path(repo)
    if not path.is_dir():
        return None
    lines = run(path, "rev-parse", "--show-toplevel", "--git-common-dir", check=False).split("\n")
    if len(lines) < 2 or not lines[0] or Path(lines[0]).resolve() != path.resolve():
        return None
    found = Path(lines[1])
    return found if found.is_absolute() else (path / found).resolve()


# --------------------------------------------------------------------------------------------
# Refs
# --------------------------------------------------------------------------------------------
def check_ref(ref: str, option: str = "ref") -> str:
    """`ref`, once sure git can only read it as a ref: never an option, never a range."""
    if not ref or not ref.strip():
        raise GitError(f"{option} is empty: name a branch, a tag or a commit")
    if ref.startswith("-"):
        raise GitError(
            f"{option} {ref!r} starts with '-': a ref never does (git would read it as an "
            f"option); name a branch, a tag or a commit"
        )
    if ".." in ref:  # never in a ref name (git check-ref-format): a range
        start, _, end = ref.partition("...") if "..." in ref else ref.partition("..")
        how = (
            f"give --from {start or 'REF'} --to {end or 'HEAD'}"
            if option in ("--from", "--to")
            else "name one branch, tag or commit"
        )
        raise GitError(f"{option} {ref!r} is a range, not a ref: {how}")
    return ref


def resolve_commit(repo: Path | str, ref: str, option: str = "ref") -> str:
    """The full sha of the commit `ref` names; a GitError naming an unknown or ambiguous ref."""
    check_ref(ref, option)
    sha = run(
        repo,
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{ref}^{{commit}}",
        check=False,
    ).strip()
    if sha:
        return sha
    if _HEX.fullmatch(ref) and len(ref) < 40:
        candidates = commits_starting_with(repo, ref)
        if len(candidates) > 1:
            shown = ", ".join(f"{sha[:12]} ({subject})" for sha, subject in candidates[:5])
            more = f" and {len(candidates) - 5} more" if len(candidates) > 5 else ""
            raise GitError(
                f"{ref!r} is ambiguous: {len(candidates)} commits start with {ref}: "
                f"{shown}{more}; give more characters of the sha"
            )
    raise GitError(f"unknown ref {ref!r}: no branch, tag or commit of that name in this repository")


def has_commit(repo: Path | str, sha: str) -> bool:
    """Whether the object `sha` (a full sha we recorded) is a commit of this repository."""
    if not _HEX.fullmatch(sha or ""):
        return False
    return bool(run(repo, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}", check=False))


def resolve_commits(repo: Path | str, refs: Sequence[tuple[str, str]]) -> list[str]:
    """The full shas of several (ref, option) at once (one git process when all resolve; else
    the error of `resolve_commit` for the first that does not)."""
    for ref, option in refs:
        check_ref(ref, option)
    out = run(
        repo,
        "rev-parse",
        "--end-of-options",
        *(f"{ref}^{{commit}}" for ref, _ in refs),
        check=False,
    ).split()
    if len(out) == len(refs) and all(len(sha) >= 40 and _HEX.fullmatch(sha) for sha in out):
        return out
    return [resolve_commit(repo, ref, option) for ref, option in refs]


def commits_starting_with(repo: Path | str, prefix: str) -> list[tuple[str, str]]:
    """(sha, subject) of every commit whose sha starts with `prefix` (at least 4 hex digits)."""
    objects = run(repo, "rev-parse", f"--disambiguate={prefix}", check=False).split()
    if len(objects) < 2:
        return [(sha, "") for sha in objects]
    kinds = run(
        repo,
        "cat-file",
        "--batch-check=%(objectname) %(objecttype)",
        input="\n".join(objects).encode(),
    ).split("\n")
    commits = [line.split()[0] for line in kinds if line.endswith(" commit")]
    if not commits:
        return []
    out = run(repo, "log", "--no-walk=unsorted", "--format=%H %s", *commits)
    return [tuple([*line.split(" ", 1), ""])[:2] for line in out.splitlines()]  # type: ignore[misc]


def is_ancestor(repo: Path | str, ancestor: str, descendant: str) -> bool:
    """Whether `ancestor` is in the history of `descendant` (both resolved or checked refs)."""
    check_ref(ancestor)
    check_ref(descendant)
    return succeeds(repo, "merge-base", "--is-ancestor", ancestor, descendant)


def merge_base(repo: Path | str, a: str, b: str) -> str | None:
    """The best common ancestor of two commits, or None when their histories are unrelated."""
    check_ref(a)
    check_ref(b)
    return run(repo, "merge-base", a, b, check=False).strip() or None


def has_parent(repo: Path | str, sha: str) -> bool:
    return bool(run(repo, "rev-list", "--max-count=1", "--skip=1", check_ref(sha)).strip())


def current_branch(repo: Path | str) -> str | None:
    """The checked-out branch, or None on a detached HEAD."""
    out = run(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
    return out or None


def branch_exists(repo: Path | str, branch: str) -> bool:
    name = branch.removeprefix("refs/heads/")
    out = run(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}", check=False)
    return bool(out.strip())


def local_branches(repo: Path | str, prefix: str = "") -> list[str]:
    """Short names of the local branches under `refs/heads/<prefix>`."""
    return run(repo, "for-each-ref", "--format=%(refname:short)", f"refs/heads/{prefix}").split()


# --------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------
class Tag(NamedTuple):
    name: str
    commit: str  # the commit it points at (annotated tags peeled)


def tags(repo: Path | str, pattern: str = "*", merged_into: str | None = None) -> list[Tag]:
    """Tags whose short name matches the glob `pattern` (reachable from `merged_into` only,
    when given), with the commit each points at; one git process."""
    args = ["for-each-ref", "--format=%(refname:strip=2)%00%(objectname)%00%(*objectname)"]
    if merged_into is not None:
        args.append(f"--merged={check_ref(merged_into)}")
    found = []
    for line in run(repo, *args, f"refs/tags/{pattern}").splitlines():
        name, obj, peeled = line.split("\0")
        found.append(Tag(name, peeled or obj))
    return found


def tag_target(repo: Path | str, tag: str) -> str | None:
    """The commit a tag points at, or None when the tag does not exist."""
    out = run(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}", check=False)
    return out.strip() or None


def tag_exists(repo: Path | str, name: str) -> bool:
    return bool(run(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{name}", check=False))


def existing_tags(repo: Path | str, names: Sequence[str]) -> set[str]:
    """Which of `names` are tags (one git process for all)."""
    wanted = [n for n in names if n and not n.startswith("-")]
    if not wanted:
        return set()
    out = run(
        repo, "for-each-ref", "--format=%(refname:strip=2)", *(f"refs/tags/{n}" for n in wanted)
    )
    return set(out.split("\n")) & set(wanted)  # for-each-ref also matches refs/tags/<name>/…


def tags_at(repo: Path | str, sha: str) -> list[str]:
    return run(repo, "tag", "--points-at", check_ref(sha)).split()


# --------------------------------------------------------------------------------------------
# Worktrees
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def worktree(repo: Path | str, sha: str, prefix: str = "gestan-") -> Iterator[Path]:
    """A temporary detached worktree of `repo` at `sha`, removed afterwards whatever happens:
    the release manager's own work tree is never touched."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp) / "wt"
        run(repo, "worktree", "add", "--detach", "--quiet", str(work), check_ref(sha))
        try:
            yield work
        finally:
            run(repo, "worktree", "remove", "--force", str(work), check=False)
            run(repo, "worktree", "prune", check=False)
