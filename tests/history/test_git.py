"""The git seam: one place runs git; refs never reach it as options; failures are one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import gestan_release
from gestan_release.errors import GitError
from gestan_release.history import git

PACKAGE = Path(gestan_release.__file__).parent


def test_only_the_seam_starts_git() -> None:
    starts_git = re.compile(r"""\[\s*["']git["']""")
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "git.py" and starts_git.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
    assert "gitdir:" not in (PACKAGE / "store" / "db.py").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("--all", "starts with '-'"),
        ("-n1", "starts with '-'"),
        ("", "is empty"),
        ("main..topic", "is a range, not a ref"),
    ],
)
def test_check_ref(ref, message) -> None:
    with pytest.raises(GitError, match=message):
        git.check_ref(ref)
    assert git.check_ref("v1.0.0^{commit}") == "v1.0.0^{commit}"


def test_run_stream_and_errors(git_repo) -> None:
    a = git_repo.commit("A")
    b = git_repo.commit("B")
    assert git.run(git_repo.path, "rev-parse", "HEAD").strip() == b
    with pytest.raises(GitError, match=r"^git cat-file -t failed: .*(nope|Not a valid)"):
        git.run(git_repo.path, "cat-file", "-t", "nope")
    assert git.run(git_repo.path, "cat-file", "-t", "nope", check=False) == ""
    blocks = list(git.stream(git_repo.path, ["log", "--format=%H", "-z", "HEAD"]))
    assert "".join(blocks).split("\0") == [b, a]
    with pytest.raises(GitError, match="git log -z nope failed"):
        list(git.stream(git_repo.path, ["log", "--format=%H", "-z", "nope"]))
    assert git.succeeds(git_repo.path, "merge-base", "--is-ancestor", a, b)
    assert not git.is_ancestor(git_repo.path, b, a)
    assert git.merge_base(git_repo.path, a, b) == a


def test_tags_are_peeled_and_filtered(git_repo) -> None:
    first = git_repo.commit("A")
    git_repo.tag("v1.0.0")  # annotated
    git_repo.git("tag", "v1.0.1-light")  # lightweight
    second = git_repo.commit("B")
    git_repo.tag("v1.1.0")
    assert git.tags(git_repo.path, "v*") == [
        git.Tag("v1.0.0", first),
        git.Tag("v1.0.1-light", first),
        git.Tag("v1.1.0", second),
    ]
    assert [t.name for t in git.tags(git_repo.path, "v*", merged_into=first)] == [
        "v1.0.0",
        "v1.0.1-light",
    ]
    assert git.tag_target(git_repo.path, "v1.1.0") == second
    assert git.tag_target(git_repo.path, "v9") is None
    assert git.tags_at(git_repo.path, first) == ["v1.0.0", "v1.0.1-light"]


def test_a_worktree_is_removed_whatever_happens(git_repo) -> None:
    sha = git_repo.commit("A")
    with pytest.raises(RuntimeError), git.worktree(git_repo.path, sha) as work:
        assert (work / "file1.txt").is_file()
        raise RuntimeError("build failed")
    assert not work.exists()
    listed = git.run(git_repo.path, "worktree", "list", "--porcelain")
    assert str(work) not in listed


def test_toplevel_and_common_dir(git_repo, tmp_path) -> None:
    git_repo.commit("A")
    sub = git_repo.path / "sub"
    sub.mkdir()
    assert git.toplevel(sub) == git_repo.path.resolve()
    assert git.common_dir(git_repo.path) == (git_repo.path / ".git").resolve()
    assert git.common_dir(sub) is None  # not the top of a work tree
    assert git.common_dir(tmp_path / "nowhere") is None
    with pytest.raises(GitError, match="does not exist"):
        git.toplevel(tmp_path / "nowhere")


def test_push_reports_each_ref_with_its_flag_and_says_why_one_was_refused(git_repo, tmp_path):
    from gestan_release.history import gitops

    remote = tmp_path / "remote.git"
    git.run(tmp_path, "init", "-q", "--bare", str(remote))
    git_repo.git("remote", "add", "origin", str(remote))
    first = git_repo.commit("A")
    git_repo.tag("v1.0.0")
    git_repo.branch("release/1.0")

    pushed = gitops.push(git_repo.path, "origin", ["refs/tags/v1.0.0", "refs/heads/release/1.0"])
    assert [(p.flag, p.ref) for p in pushed] == [
        ("*", "refs/tags/v1.0.0"),
        ("*", "refs/heads/release/1.0"),
    ]
    again = gitops.push(git_repo.path, "origin", ["refs/tags/v1.0.0"])
    assert [(p.flag, p.rejected) for p in again] == [("=", False)]

    # Someone else moved the branch on the remote; the tag is made again elsewhere here.
    other = tmp_path / "other"
    git.run(tmp_path, "clone", "-q", "--branch", "release/1.0", str(remote), str(other))
    (other / "f").write_text("theirs")
    git.run(other, "add", "f")
    git.run(other, "-c", "user.name=O", "-c", "user.email=o@x", "commit", "-qm", "theirs")
    git.run(other, "push", "-q", "origin", "release/1.0")
    git_repo.git("tag", "-d", "v1.0.0")
    git_repo.commit("B")
    git_repo.tag("v1.0.0")
    git_repo.git("branch", "-f", "release/1.0", "HEAD")

    with pytest.raises(GitError) as info:
        gitops.push(git_repo.path, "origin", ["refs/tags/v1.0.0", "refs/heads/release/1.0"])
    message = str(info.value)
    assert message.startswith("origin refused ")
    assert (
        "refs/tags/v1.0.0 [rejected] (already exists): the remote has this tag on another "
        "commit" in message
    )
    assert "refs/heads/release/1.0 [rejected]" in message and "fetch, reconcile" in message
    assert git.tag_target(remote, "v1.0.0") == first


def test_push_to_a_missing_remote_is_one_line(git_repo, tmp_path):
    from gestan_release.history import gitops

    git_repo.commit("A")
    with pytest.raises(GitError, match=r"^git push to nowhere failed: .*nowhere"):
        gitops.push(git_repo.path, "nowhere", ["HEAD"])
