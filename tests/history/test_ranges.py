"""The ticket rules of the history module, on real git repositories."""

from __future__ import annotations

import pytest

from gestan_release.errors import GitError, VersionError
from gestan_release.history.git import resolve_commit
from gestan_release.history.git import toplevel as ensure_repo
from gestan_release.history.ranges import (
    Rules,
    fixed_tickets,
    iter_commits,
    previous_release,
    release_tags,
    version_of_explicit_tag,
)
from gestan_release.history.versions import Version

RULES = Rules()


def fixes_of(repo, rev: str) -> dict[int, list[str]]:
    result = fixed_tickets(iter_commits(repo.path, [rev]), RULES)
    return {tid: [c.sha for c in commits] for tid, commits in result.fixes.items()}


# -- message rules (pure) ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("message", "fixed", "mentioned"),
    [
        ("Corrige le calcul de TVA #1234", {1234}, set()),
        ("fix: rounding\n\nThe invoice total was off (#12, #13).", {12, 13}, set()),
        ("fix\n\nTicket: 7", {7}, set()),
        ("fix\n\nfixes: #8, #9 10", {8, 9, 10}, set()),
        ("fix\n\nCLOSES: 11 12", {11, 12}, set()),
        ("Corrige l'export\n\nCorrige: #14\nRefs: #15", {14}, {15}),
        ("refactor\n\nRefs: #16, #17", set(), {16, 17}),
        ("docs: see issue#18 and &#19; colour #ff0000 and a/#20", set(), set()),
        ("no body at all", set(), set()),
        ("Ticket: 21\nTicket: 22", set(), set()),  # the title is never a trailer block
        ("fix\n\nTicket: 21\nTicket: 22", {21, 22}, set()),
    ],
)
def test_message_rules(message: str, fixed: set[int], mentioned: set[int]) -> None:
    assert RULES.tickets(message) == (fixed, mentioned)


def test_merge_message_counts_only_for_trailers() -> None:
    msg = "Merge pull request #45 from gestan/fix-tva\n\nFix #46\n\nTicket: 47"
    assert RULES.tickets(msg, merge=True) == ({47}, set())


def test_patterns_and_trailers_come_from_settings() -> None:
    rules = Rules(patterns=(r"\bGES-(\d+)\b",), fix_trailers=("Resolves",), ref_trailers=("See",))
    assert rules.tickets("GES-12 fixed #13\n\nResolves: 14\nSee: 15") == ({12, 14}, {15})


# -- ranges on real repositories ---------------------------------------------------------------
def test_subject_body_trailers_french_crlf_and_no_body(git_repo) -> None:
    base = git_repo.commit("init")
    git_repo.tag("v15.3.0")
    a = git_repo.commit(
        "Corrige l'édition des factures #101", author="Zoé Lefèvre <zoe@gestan.test>"
    )
    b = git_repo.commit(
        "Améliore l'export\r\n\r\nLe total était faux.\r\n\r\nCorrige: #102, #103\r\n"
    )
    c = git_repo.commit("Nettoyage\n\nRefs: #104")
    d = git_repo.commit("fix: crash\n\nFIXES: 105")
    assert fixes_of(git_repo, "v15.3.0..HEAD") == {101: [a], 102: [b], 103: [b], 105: [d]}
    commits = list(iter_commits(git_repo.path, ["v15.3.0..HEAD"]))
    assert [x.sha for x in commits] == [d, c, b, a]
    by_sha = {x.sha: x for x in commits}
    assert by_sha[a].author == "Zoé Lefèvre"
    assert by_sha[b].subject == "Améliore l'export"
    assert "\r" not in by_sha[b].message
    result = fixed_tickets(iter_commits(git_repo.path, ["v15.3.0..HEAD"]), RULES)
    assert result.mentioned == {104}
    assert result.commit_count == 4
    assert base not in by_sha


def test_a_commit_reverted_in_the_range_fixes_nothing(git_repo) -> None:
    git_repo.commit("init")
    git_repo.tag("v15.3.0")
    bad = git_repo.commit("Corrige #201 et #202")
    git_repo.revert(bad)  # subject 'Revert "Corrige #201 et #202"' must not fix either
    other = git_repo.commit("Vraie correction\n\nTicket: 202")
    assert fixes_of(git_repo, "v15.3.0..HEAD") == {202: [other]}


def test_a_revert_of_a_revert_reapplies(git_repo) -> None:
    git_repo.commit("init")
    git_repo.tag("v1.0.0")
    fix = git_repo.commit("Corrige #210")
    revert = git_repo.revert(fix)
    git_repo.revert(revert)
    assert fixes_of(git_repo, "v1.0.0..HEAD") == {210: [fix]}


def test_a_revert_of_an_older_release_commit_is_listed(git_repo) -> None:
    git_repo.commit("init")
    old = git_repo.commit("Corrige le lettrage #106")
    git_repo.tag("v15.3.0")
    revert = git_repo.revert(old)
    result = fixed_tickets(iter_commits(git_repo.path, ["v15.3.0..HEAD"]), RULES)
    assert result.fixes == {}
    assert [(r.sha, r.reverts, r.tickets) for r in result.reverted] == [(revert, old, (106,))]
    assert result.reverted[0].subject == 'Revert "Corrige le lettrage #106"'


def test_a_cherry_pick_of_a_commit_in_the_range_is_the_same_fix(git_repo) -> None:
    git_repo.commit("init")
    git_repo.tag("v15.3.0")
    git_repo.branch("feature")
    git_repo.checkout("feature")
    fix = git_repo.commit("Corrige #301", file="feature.txt")
    git_repo.checkout("main")
    git_repo.commit("autre chose", file="other.txt")
    pick = git_repo.cherry_pick(fix)
    assert "(cherry picked from commit" in git_repo.git("log", "-1", "--format=%B", pick)
    git_repo.merge("feature", "Merge branch 'feature'")
    assert fixes_of(git_repo, "v15.3.0..HEAD") == {301: [fix]}


def test_two_picks_of_one_outside_commit_are_one_fix(make_repo) -> None:
    repo = make_repo()
    repo.commit("init")
    repo.branch("side")
    repo.checkout("side")
    original = repo.commit("Corrige #302", file="a.txt")
    repo.checkout("main")
    repo.tag("v1.0.0")
    repo.branch("b1")
    repo.branch("b2")
    repo.checkout("b1")
    first = repo.cherry_pick(original)
    repo.checkout("b2")
    repo.cherry_pick(original)
    repo.checkout("main")
    repo.merge("b1", "Merge b1")
    repo.merge("b2", "Merge b2")
    assert fixes_of(repo, "v1.0.0..HEAD") == {302: [first]}


def test_a_merge_message_counts_only_for_its_trailers(git_repo) -> None:
    git_repo.commit("init")
    git_repo.tag("v1.0.0")
    git_repo.branch("topic")
    git_repo.checkout("topic")
    inner = git_repo.commit("Corrige #401", file="t.txt")
    git_repo.checkout("main")
    git_repo.commit("main moves", file="m.txt")
    merge = git_repo.merge("topic", "Merge pull request #45 from gestan/topic\n\nTicket: 402")
    assert fixes_of(git_repo, "v1.0.0..HEAD") == {401: [inner], 402: [merge]}


def test_first_release_reads_the_whole_history(git_repo) -> None:
    a = git_repo.commit("Corrige #1")
    git_repo.tag("build-7")  # outside the scheme: never a release
    assert previous_release(git_repo.path, "HEAD") is None
    assert fixes_of(git_repo, "HEAD") == {1: [a]}


# -- previous release --------------------------------------------------------------------------
def test_previous_release_ignores_nightlies_and_foreign_tags(git_repo) -> None:
    git_repo.commit("init")
    git_repo.tag("v15.3.0")
    git_repo.commit("work")
    git_repo.tag("v15.4.0-nightly.20261120")
    git_repo.tag("v99.0")  # not the scheme
    git_repo.tag("release-candidate")
    git_repo.commit("more")
    prev = previous_release(git_repo.path, "HEAD")
    assert prev is not None and prev.tag == "v15.3.0"
    assert [t.tag for t in release_tags(git_repo.path)] == ["v15.3.0"]


def test_previous_release_of_a_maintenance_branch(git_repo) -> None:
    git_repo.commit("init")
    git_repo.tag("v15.4.0")
    git_repo.branch("release/15.4")
    git_repo.commit("main work")
    git_repo.tag("v15.5.0")
    git_repo.checkout("release/15.4")
    git_repo.commit("flash fix #9")
    git_repo.tag("v15.4.1")
    git_repo.commit("another flash fix #10")
    prev = previous_release(git_repo.path, "release/15.4", line=(15, 4))
    assert prev is not None and prev.version == Version(15, 4, 1)
    # from main, the U on the maintenance branch is not reachable
    main_prev = previous_release(git_repo.path, "main")
    assert main_prev is not None and main_prev.tag == "v15.5.0"


def test_highest_not_newest(git_repo) -> None:
    git_repo.commit("init")
    git_repo.tag("v15.10.0")
    git_repo.commit("x")
    git_repo.tag("v15.9.3")  # tagged later but lower
    prev = previous_release(git_repo.path, "HEAD")
    assert prev is not None and prev.tag == "v15.10.0"


# -- bad input ---------------------------------------------------------------------------------
def test_bad_input(tmp_path, git_repo) -> None:
    git_repo.commit("init")
    git_repo.tag("build-7")
    with pytest.raises(GitError, match="is not a git repository"):
        ensure_repo(tmp_path)
    with pytest.raises(GitError, match="does not exist"):
        ensure_repo(tmp_path / "nowhere")
    with pytest.raises(GitError, match="unknown ref 'nope'"):
        resolve_commit(git_repo.path, "nope")
    with pytest.raises(VersionError, match="'build-7' is not a release tag"):
        version_of_explicit_tag(git_repo.path, "build-7")
    assert version_of_explicit_tag(git_repo.path, "main") is None


def test_an_author_name_is_not_a_message(git_repo) -> None:
    git_repo.commit("init")
    git_repo.tag("v1.0.0")
    plain = git_repo.commit("Nettoyage", author="Équipe #77 <eq@gestan.test>")
    fix = git_repo.commit("Corrige #78", author="Équipe #77 <eq@gestan.test>")
    assert fixes_of(git_repo, "v1.0.0..HEAD") == {78: [fix]}
    assert plain != fix
