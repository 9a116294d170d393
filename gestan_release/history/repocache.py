"""Stateless workers: the Gestan repository cloned from `REPO_URL` into a cache on the worker and
brought up to date on every run, so that any worker can run (or resume) any release.

The cache is a plain clone whose local branches and tags mirror the remote's exactly (fetched with
`+refs/heads/*:refs/heads/*`, pruned): `release/15.4` names the same commit as on the remote, and
a tag made by a worker that vanished before pushing it is not there (the release's git step then
makes it again, see `steps.git_step`). Work-tree leftovers are wiped; ignored files (the state
directory) are kept. One run at a time per clone on a worker (a file lock), which the kernel frees
if the process dies.

Git runs through the seam (`gestan_release.history.git`); errors never show the URL's credentials.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gestan_release.core.scrub import scrub, url_without_credentials
from gestan_release.errors import GitError
from gestan_release.history import git

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/gestan-release`, else `~/.cache/gestan-release`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "gestan-release"


def clone_path(cache_dir: Path, url: str) -> Path:
    """Where the clone of `url` lives in the cache: readable name plus a hash of the URL."""
    name = _SAFE.sub("-", url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")) or "repo"
    digest = hashlib.sha256(url.encode()).hexdigest()[:10]
    return cache_dir / "repos" / f"{name}-{digest}"


def _git(cwd: Path | None, *args: str, url: str = "") -> str:
    try:
        return git.run(cwd or Path.cwd(), *args)
    except GitError as exc:
        detail = scrub(str(exc).replace(url, url_without_credentials(url)) if url else str(exc))
        raise GitError(
            f"{detail} (REPO_URL {url_without_credentials(url)})" if url else detail
        ) from None


def sync(url: str, path: Path, branch: str) -> Path:
    """Clone `url` at `path` if missing, else fetch; check out `branch` as on the remote."""
    if not (path / ".git").is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Clone beside it, then rename: a clone interrupted half-way is never taken for a cache.
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        try:
            clone = ("clone", "--quiet", "--no-checkout", "--origin", "origin", url, str(tmp))
            _git(None, *clone, url=url)
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        _git(path, "remote", "set-url", "origin", url, url=url)
    _git(
        path,
        "fetch",
        "--quiet",
        "--prune",
        "--force",
        "--update-head-ok",
        "--no-tags",
        "origin",
        "+refs/heads/*:refs/heads/*",
        "+refs/tags/*:refs/tags/*",
        url=url,
    )
    _git(path, "checkout", "--quiet", "--force", branch, url=url)
    _git(path, "reset", "--quiet", "--hard", branch, url=url)
    _git(path, "clean", "-fdq", url=url)  # untracked leftovers; ignored files (state dir) stay
    return path


@contextmanager
def checkout(url: str, cache_dir: Path | None, branch: str) -> Iterator[Path]:
    """The up-to-date clone of `url` on this worker, held for the whole run (one run per clone
    on a worker at a time; runs on other workers are kept apart by the release lock)."""
    path = clone_path(cache_dir or default_cache_dir(), url)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f"{path.name}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            yield sync(url, path, branch)
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)
