"""Shared fixtures: real git repositories made by the test, an isolated environment."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from fakes.contracts import CONTRACTS, contracts_dir  # noqa: F401


class GitRepo:
    """A real git repository in a temporary directory, with helpers to write history."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._n = 0
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.name", "Équipe Gestan")
        self.git("config", "user.email", "dev@gestan.test")
        self.git("config", "commit.gpgsign", "false")
        self.git("config", "tag.gpgsign", "false")

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        full_env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", **(env or {})}
        proc = subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True,
            text=True,
            env=full_env,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout.strip()

    def commit(self, message: str, author: str | None = None, file: str | None = None) -> str:
        """Commit a change with exactly `message` (CRLF and accents kept); return its sha."""
        self._n += 1
        name = file or f"file{self._n}.txt"
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a", encoding="utf-8") as fh:
            fh.write(f"change {self._n}\n")
        self.git("add", name)
        msg_file = self.path.parent / f".msg-{self.path.name}"
        msg_file.write_bytes(message.encode("utf-8"))
        args = ["commit", "-q", "--cleanup=verbatim", "-F", str(msg_file)]
        if author:
            args += ["--author", author]
        self.git(*args)
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref)

    def tag(self, name: str, ref: str = "HEAD", message: str | None = None) -> None:
        self.git("tag", "-a", name, "-m", message or name, ref)

    def branch(self, name: str, ref: str = "HEAD") -> None:
        self.git("branch", name, ref)

    def checkout(self, ref: str) -> None:
        self.git("checkout", "-q", ref)

    def revert(self, sha: str) -> str:
        self.git("revert", "--no-edit", sha)
        return self.head()

    def cherry_pick(self, sha: str) -> str:
        self.git("cherry-pick", "-x", sha)
        return self.head()

    def merge(self, branch: str, message: str) -> str:
        self.git("merge", "--no-ff", "-q", "-m", message, branch)
        return self.head()


@pytest.fixture
def git_repo(tmp_path: Path) -> Iterator[GitRepo]:
    yield GitRepo(tmp_path / "repo")


@pytest.fixture
def make_repo(tmp_path: Path):
    def factory(name: str = "repo") -> GitRepo:
        return GitRepo(tmp_path / name)

    return factory


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No GESTAN_RELEASE_* variable of the developer's shell leaks into a test, nor a secret that
    an earlier test registered with the scrubber (a wrong token "nope" would mask that word)."""
    from gestan_release.scrub import forget_all

    for name in list(os.environ):
        if name.startswith("GESTAN_RELEASE_"):
            monkeypatch.delenv(name)
    forget_all()
    yield
    forget_all()
