"""Which branch a hotfix cuts from without --branch, on a real repository: the checked-out
maintenance branch, else the newest one, and it says why."""

from __future__ import annotations

import pytest

from gestan_release.errors import ReleaseError
from gestan_release.release.plan import default_branch
from gestan_release.settings import load


@pytest.fixture
def repo(git_repo):
    git_repo.commit("Gestan 15.4")
    git_repo.tag("v15.4.0")
    git_repo.branch("release/15.4")
    git_repo.commit("Gestan 15.5")
    git_repo.tag("v15.5.0")
    git_repo.branch("release/15.5")
    git_repo.branch("release/candidate")  # not X.Y: not a maintenance branch
    return git_repo


def choice(repo, kind: str = "u", ref: str | None = None) -> tuple[str, str]:
    branch = default_branch(load(repo.path), kind, ref)
    return str(branch), branch.reason


def test_on_a_maintenance_branch_the_hotfix_is_cut_from_it(repo) -> None:
    repo.checkout("release/15.4")  # the manager is on 15.4 to fix 15.4, not on the newest
    assert choice(repo) == ("release/15.4", "the maintenance branch checked out")
    repo.checkout("release/15.5")
    assert choice(repo) == ("release/15.5", "the maintenance branch checked out")


def test_elsewhere_the_newest_maintenance_branch_and_why(repo) -> None:
    assert choice(repo) == (
        "release/15.5",
        "the newest maintenance branch: main is checked out; --branch to choose another",
    )
    repo.checkout("release/candidate")
    assert choice(repo)[0] == "release/15.5"
    repo.checkout(repo.head("release/15.4"))  # detached, even on a maintenance commit
    assert choice(repo) == (
        "release/15.5",
        "the newest maintenance branch: HEAD is detached; --branch to choose another",
    )


def test_an_explicit_branch_wins_and_full_versions_use_main(repo) -> None:
    repo.checkout("release/15.4")
    assert choice(repo, ref="refs/heads/release/15.5") == ("release/15.5", "as asked")
    assert choice(repo, kind="full") == ("main", "MAIN_BRANCH")


def test_no_maintenance_branch_is_a_clear_error(git_repo) -> None:
    git_repo.commit("Gestan 15.4")
    with pytest.raises(ReleaseError, match=r"no maintenance branch release/X\.Y"):
        default_branch(load(git_repo.path), "u", None)
