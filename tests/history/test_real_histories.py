"""Fixed tickets counted right on the histories real teams have (issue 8): each test builds a real
git repository with exactly the shape that was counted wrong, and reads it the way `changelog`
does (one `git log`, the fast block reading, the analysis)."""

from __future__ import annotations

import json
import subprocess

import pytest

from gestan_release.cli import main
from gestan_release.history.analysis import RangeFixes, Rule
from gestan_release.history.ranges import Rules, scan_range
from gestan_release.history.stories import stories_of

RULES = Rules()


def scan(repo, rev: str = "v1.0.0..HEAD", rules: Rules = RULES) -> RangeFixes:
    return scan_range(repo.path, [rev], rules)


def fixed(repo, rev: str = "v1.0.0..HEAD", rules: Rules = RULES) -> dict[int, list[str]]:
    return {t: [c.sha for c in cs] for t, cs in scan(repo, rev, rules).fixes.items()}


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def commit_on(repo, branch: str, message: str) -> str:
    """A commit on a new branch `branch` from HEAD, then back on main."""
    repo.branch(branch)
    repo.checkout(branch)
    sha = repo.commit(message, file=f"{branch.replace('/', '-')}.txt")
    repo.checkout("main")
    return sha


@pytest.fixture
def repo(git_repo):
    git_repo.commit("init")
    git_repo.tag("v1.0.0")
    return git_repo


# --------------------------------------------------------------------------------------------
# 1. Release commits fix nothing
# --------------------------------------------------------------------------------------------
NOTES = (
    "\n\n## Tickets corrigés\n\n- #101 Facture fausse\n- #102 Export FEC\n- #99 Ancien\n\n"
    "Ticket: 98\nRefs: #97\n"
)


@pytest.mark.parametrize(
    "subject",
    [
        "Version 15.4 U2 (15.4.2)",
        "Version 15.5 (15.5.0)",
        "chore(release): 1.2.3",
        "chore: release 1.2.3",
        "Release 1.2.3",
        "release: v1.2.3",
        "Bump version to 1.2.3",
        "Bump version: 1.2.2 → 1.2.3",
    ],
)
def test_a_release_commit_quoting_the_notes_fixes_nothing(repo, subject) -> None:
    a = repo.commit("Corrige la facture #101")
    bad = repo.commit("Export FEC\n\nFixes: #102\n")
    repo.revert(bad)  # 102 is reverted in the range: the notes quoting it must not revive it
    bump = repo.commit(subject + NOTES)
    result = scan(repo)
    assert {t: [c.sha for c in cs] for t, cs in result.fixes.items()} == {101: [a]}
    assert result.mentioned == set()  # its Refs: #97 is not a mention either
    assert all(bump not in [c.sha for c in cs] for cs in result.fixes.values())
    assert result.decisions[bump] == (Rule.SKIPPED, "")


def test_skip_patterns_are_a_setting(capsys, repo, monkeypatch) -> None:
    repo.commit("Corrige #101")
    repo.commit("Préparation de la 2.0\n\nReprend #102 et #103")
    code, out, _ = run(capsys, "--repo", str(repo.path), "changelog", "--format", "json")
    assert code == 0 and json.loads(out)["unknown"] == [101, 102, 103]
    monkeypatch.setenv("GESTAN_RELEASE_SKIP_PATTERNS", '["^Préparation de la \\\\d+\\\\.\\\\d+"]')
    code, out, _ = run(capsys, "--repo", str(repo.path), "changelog", "--format", "json")
    assert code == 0 and json.loads(out)["unknown"] == [101]
    # the defaults are replaced, not extended: our own bump commit then counts again
    repo.commit("Version 2.0 (2.0.0)\n\n- #104")
    code, out, _ = run(capsys, "--repo", str(repo.path), "changelog", "--format", "json")
    assert json.loads(out)["unknown"] == [101, 104]


# --------------------------------------------------------------------------------------------
# 2. A squash is not a revert
# --------------------------------------------------------------------------------------------
def test_a_squash_quoting_a_revert_is_not_a_revert(repo) -> None:
    first = repo.commit("Ajoute la colonne TVA #11")
    squash = repo.commit(
        "Export FEC: TVA intracommunautaire (#12)\n\n"
        "* Ajoute la colonne\n\n"
        '* Revert "Ajoute la colonne"\n\n'
        f"This reverts commit {first}.\n\n"
        "* Ajoute la colonne, enfin\n"
    )
    result = scan(repo)
    assert {t: [c.sha for c in cs] for t, cs in result.fixes.items()} == {
        11: [first],
        12: [squash],
    }
    assert result.reverted == []


@pytest.mark.parametrize(
    "subject",
    ['Revert "{s}"', "revert: {s}", "revert(export): {s}", 'Revert "{s}" (#40)'],
)
def test_a_revert_is_a_revert_by_its_subject(repo, subject) -> None:
    bad = repo.commit("Corrige l'export #21")
    revert = repo.commit(
        subject.format(s="Corrige l'export #21") + f"\n\nThis reverts commit {bad}.\n"
    )
    result = scan(repo)
    assert result.fixes == {}  # neither the reverted commit nor the revert itself fixes #21
    assert result.decisions[revert] == (Rule.REVERT, bad)
    assert result.decisions[bad] == (Rule.CANCELLED, revert)


def test_nested_reverts_by_subject(repo) -> None:
    fix = repo.commit("Corrige #22")
    r1 = repo.revert(fix)
    r2 = repo.revert(r1)
    assert repo.git("log", "-1", "--format=%s", r2).startswith('Revert "Revert "Corrige #22""')
    assert fixed(repo) == {22: [fix]}
    r3 = repo.revert(r2)  # and reverted once more: not fixed
    assert fixed(repo) == {}
    assert scan(repo).decisions[r3] == (Rule.REVERT, r2)


# --------------------------------------------------------------------------------------------
# 3. Reverts without a sha
# --------------------------------------------------------------------------------------------
def test_a_github_squash_of_a_revert_cancels_by_subject(repo) -> None:
    original = repo.commit("Ajoute l'export FEC (#31)\n\nTicket: 32\n")
    other = repo.commit("Corrige l'arrondi (#33)")
    revert = repo.commit('Revert "Ajoute l\'export FEC (#31)" (#34)\n\nReverts gestan/erp#31\n')
    result = scan(repo)
    # the original is cancelled, and the revert's own refs (#31 quoted, #34 its PR) fix nothing
    assert {t: [c.sha for c in cs] for t, cs in result.fixes.items()} == {33: [other]}
    assert result.decisions[original] == (Rule.CANCELLED, revert)
    assert result.decisions[revert] == (Rule.REVERT, original)
    assert result.reverted == []


def test_a_conventional_revert_without_sha(repo) -> None:
    feat = repo.commit("feat(export): colonne TVA (#35)")
    repo.commit("revert: feat(export): colonne TVA\n\nRefs: 676104e, a215868\n")
    assert fixed(repo) == {}
    assert scan(repo).decisions[feat][0] is Rule.CANCELLED


def test_a_sha_less_revert_cancels_the_newest_earlier_commit_with_that_subject(repo) -> None:
    older = repo.commit("Corrige la relance\n\nTicket: 41\n")
    newer = repo.commit("Corrige la relance\n\nTicket: 42\n")
    revert = repo.commit('Revert "Corrige la relance"')
    after = repo.commit("Corrige la relance\n\nTicket: 43\n")  # newer than the revert: stands
    result = scan(repo)
    assert {t: [c.sha for c in cs] for t, cs in result.fixes.items()} == {
        41: [older],
        43: [after],
    }
    assert result.decisions[newer] == (Rule.CANCELLED, revert)


def test_a_sha_less_revert_matching_nothing_is_listed_as_reverted(repo) -> None:
    kept = repo.commit("Corrige #51")
    revert = repo.commit('Revert "Corrige le lettrage (#52)" (#53)')
    result = scan(repo)
    assert {t: [c.sha for c in cs] for t, cs in result.fixes.items()} == {51: [kept]}
    # the tickets it undoes: those it quotes, not its own pull request's number
    assert [(r.sha, r.reverts, r.tickets) for r in result.reverted] == [(revert, "", (52,))]


def test_the_target_of_a_sha_less_revert_may_name_no_ticket_in_its_subject(repo) -> None:
    """The matched commit names its ticket in a trailer only, and another commit with the same
    subject but no ticket sits in between: the nearest one is cancelled."""
    with_ticket = repo.commit("Nettoyage du stock\n\nCorrige: 61\n")
    repo.commit("Nettoyage du stock")  # no ticket: the nearest, so the one the revert undoes
    repo.commit('Revert "Nettoyage du stock"')
    assert fixed(repo) == {61: [with_ticket]}


# --------------------------------------------------------------------------------------------
# 4. Reverts and cherry-picks
# --------------------------------------------------------------------------------------------
def test_reverting_the_original_cancels_its_pick_in_the_range(repo) -> None:
    original = commit_on(repo, "release/1.0", "Corrige le plantage\n\nCorrige: #301\n")
    pick = repo.cherry_pick(original)
    repo.commit("Autre chose #302", file="other.txt")
    revert = repo.revert(original)  # "This reverts commit <original>", not of the pick
    result = scan(repo, "v1.0.0..main")
    assert list(result.fixes) == [302]
    assert result.decisions[pick] == (Rule.CANCELLED, revert)
    # the original is not in the range: the revert is listed, with the tickets it undoes
    assert [(r.sha, r.reverts, r.tickets) for r in result.reverted] == [(revert, original, (301,))]


def test_reverting_the_pick_cancels_the_original_too(repo) -> None:
    original = commit_on(repo, "topic", "Corrige #311")
    pick = repo.cherry_pick(original)
    repo.merge("topic", "Merge branch 'topic'")  # the original is in the range as well
    revert = repo.revert(pick)
    result = scan(repo)
    assert result.fixes == {}
    assert result.decisions[pick] == (Rule.CANCELLED, revert)
    assert result.decisions[original] == (Rule.CANCELLED, revert)
    assert result.reverted == []


def test_a_pick_after_the_revert_fixes_again(repo) -> None:
    original = commit_on(repo, "topic", "Corrige #321")
    repo.merge("topic", "Merge branch 'topic'")
    repo.revert(original)
    again = repo.cherry_pick(original)
    assert fixed(repo) == {321: [again]}


# --------------------------------------------------------------------------------------------
# 5. Trailers are trailers
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("message", "fix", "mention"),
    [
        # only the final trailer block counts, never the title
        ("Ticket: 401\n\nCorps", set(), set()),
        ("Corrige\n\nTicket: 402\n\nDernier paragraphe en prose.", set(), set()),
        ("Corrige\n\nProse.\n\nTicket: 403\nSigned-off-by: A <a@b.c>", {403}, set()),
        # a value gives ids only when it is a list of ticket refs
        ("Corrige\n\nFixes: v14 regression in 2 reports", set(), set()),
        ('Corrige\n\nFixes: 676104e5 ("Export")', set(), set()),
        ("Corrige\n\nFixes: #404, #405 406", {404, 405, 406}, set()),
        ("Corrige\n\nCorrige: #407 et #408", {407, 408}, set()),
        # another project's ref is not ours, in trailers as inline
        ("Corrige\n\nFixes: gestan/connecteur#409", set(), set()),
        ("Corrige gestan/connecteur#410 et #411", {411}, set()),
        # a trailer line is never read again as inline refs
        ("Corrige\n\nRefs: #412\nCo-authored-by: Équipe #413 <e@g.fr>", set(), {412}),
        # a continuation line belongs to its trailer
        ("Corrige\n\nFixes: #414,\n  #415\nRefs: #416", {414, 415}, {416}),
        # 25 % of trailers with a git-generated one: the prose line counts as inline
        (
            "Corrige\n\nVoir #417 pour le contexte\nencore du texte\nFixes: 418\n"
            "Signed-off-by: A <a@b.c>",
            {417, 418},
            set(),
        ),
    ],
)
def test_trailers_are_read_as_git_reads_them(repo, message, fix, mention) -> None:
    repo.commit(message)
    result = scan(repo)
    assert set(result.fixes) == fix
    assert result.mentioned == mention
    assert RULES.tickets(message) == (fix, mention)  # the reference reading agrees


# --------------------------------------------------------------------------------------------
# 6. Merges
# --------------------------------------------------------------------------------------------
def test_merge_refs_trailers_or_all(capsys, repo, monkeypatch) -> None:
    inner = commit_on(repo, "topic", "Corrige l'export")
    repo.commit("main avance", file="m.txt")
    merge = repo.merge("topic", "Merge pull request #45 from gestan/export\n\nTicket: 46")
    assert fixed(repo) == {46: [merge]}
    assert fixed(repo, rules=Rules(merge_refs="all")) == {45: [merge], 46: [merge]}
    monkeypatch.setenv("GESTAN_RELEASE_MERGE_REFS", "all")
    code, out, _ = run(capsys, "--repo", str(repo.path), "changelog", "--format", "json")
    assert code == 0 and json.loads(out)["unknown"] == [45, 46]
    assert inner  # the merged commit itself names nothing


# --------------------------------------------------------------------------------------------
# 7. Refs are never options; errors say what happened
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["changelog", "--from=--all"], "--from '--all' starts with '-'"),
        (["changelog", "--to=--output=/tmp/x"], "--to '--output=/tmp/x' starts with '-'"),
        (["changelog", "--from", "v1.0.0..main"], "give --from v1.0.0 --to main"),
        (["changelog", "--to", "v1.0.0...HEAD"], "give --from v1.0.0 --to HEAD"),
        (["next-version", "--ref=--all"], "--ref '--all' starts with '-'"),
        (["changelog", "--release=--all"], "'--all' is not a Gestan version"),
    ],
)
def test_refs_are_never_options(capsys, repo, tmp_path, args, message) -> None:
    repo.commit("Corrige #1")
    code, out, err = run(capsys, "--repo", str(repo.path), *args)
    assert code == 1, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert out == ""
    assert not (tmp_path / "x").exists()


def test_an_ambiguous_short_sha_names_its_candidates(capsys, git_repo) -> None:
    """Enough commits that two share their first four hex digits (a fast-import, deterministic
    dates, so the same shas on every run)."""
    stream = "".join(
        f"commit refs/heads/main\ncommitter T <t@e.st> {1700000000 + n} +0000\n"
        f"data {len(f'commit {n}')}\ncommit {n}\n"
        for n in range(1, 1201)
    )
    subprocess.run(
        ["git", "-C", str(git_repo.path), "fast-import", "--quiet"],
        input=stream.encode(),
        check=True,
    )
    shas = git_repo.git("rev-list", "main").split()
    seen: dict[str, str] = {}
    prefix = next(s[:4] for s in shas if s[:4] in seen or seen.setdefault(s[:4], s) is None)
    same = sorted(s for s in shas if s.startswith(prefix))
    code, out, err = run(capsys, "--repo", str(git_repo.path), "changelog", "--to", prefix)
    assert code == 1 and out == "" and err.count("\n") == 1
    assert f"ambiguous: {len(same)} commits start with {prefix}" in err
    for sha in same:
        assert sha[:12] in err
    # a longer prefix of one of them is fine
    code, _, _ = run(capsys, "--repo", str(git_repo.path), "changelog", "--to", same[0][:12])
    assert code == 0


def test_a_reversed_range_warns_with_the_merge_base(capsys, repo) -> None:
    repo.commit("Corrige #71")
    repo.tag("v1.1.0")
    code, out, err = run(
        capsys, "--repo", str(repo.path), "changelog", "--from", "v1.1.0", "--to", "v1.0.0"
    )
    assert code == 0 and "Aucun ticket corrigé" in out  # the reversed range is empty...
    assert "--from v1.1.0 is not an ancestor of --to v1.0.0" in err  # ...and now it says so
    assert "did you mean --from v1.0.0 --to v1.1.0?" in err
    # crossed branches: the warning names the merge base
    base = repo.head()
    repo.branch("other")
    repo.commit("Sur main #72")
    repo.checkout("other")
    repo.commit("Sur other #73", file="o.txt")
    repo.checkout("main")
    code, _, err = run(
        capsys, "--repo", str(repo.path), "changelog", "--from", "other", "--to", "main"
    )
    assert code == 0 and f"merge base {base[:10]}" in err and "--from other" in err
    assert err.count("\n") == 2  # that warning, and the one about unknown tickets


def test_a_bare_repository_is_called_bare(capsys, repo, tmp_path) -> None:
    bare = tmp_path / "bare.git"
    repo.git("clone", "-q", "--bare", str(repo.path), str(bare))
    code, _, err = run(capsys, "--repo", str(bare), "changelog")
    assert code == 1 and "is a bare repository" in err and "not a git repository" not in err
    code, _, err = run(capsys, "--repo", str(repo.path / ".git"), "changelog")
    assert code == 1 and "inside a .git directory" in err


# --------------------------------------------------------------------------------------------
# 8. Which previous release
# --------------------------------------------------------------------------------------------
@pytest.fixture
def tagged_elsewhere(git_repo):
    """main has 15.6.0; the team tags 15.7.0 and 15.9.0 on a branch main never merged; and
    15.6.1 on the maintenance branch release/15.6 (the normal case)."""
    r = git_repo
    r.commit("init")
    r.tag("v15.6.0")
    r.branch("release/15.6")
    r.branch("releases")
    r.checkout("release/15.6")
    r.commit("Corrige #1 (U1)", file="u.txt")
    r.tag("v15.6.1")
    r.checkout("releases")
    r.commit("15.7", file="r.txt")
    r.tag("v15.7.0")
    r.commit("15.9", file="r.txt")
    r.tag("v15.9.0")
    r.checkout("main")
    r.commit("Corrige #2")
    return r


def test_release_tags_on_another_branch_are_named(capsys, tagged_elsewhere) -> None:
    path = str(tagged_elsewhere.path)
    code, out, err = run(capsys, "--repo", path, "changelog", "--format", "json")
    assert code == 0 and json.loads(out)["from"] == "v15.6.0"
    warning = [line for line in err.splitlines() if "v15.9.0" in line]
    assert len(warning) == 1
    assert "not in the history of HEAD" in warning[0] and "--from v15.9.0" in warning[0]
    assert "v15.6.1" not in err  # a U on its maintenance branch is not news
    code, out, err = run(capsys, "--repo", path, "next-version", "--format", "json")
    assert json.loads(out)["previous"] == "15.9.0" and json.loads(out)["version"] == "15.10.0"
    assert "computed from v15.9.0, which is not in the history of main" in err
    code, out, err = run(capsys, "--repo", path, "next-version")
    assert out == "15.10.0\n" and "after 15.9.0" in err


def test_no_warning_when_the_tags_are_all_in_the_history(capsys, git_repo) -> None:
    git_repo.commit("init")
    git_repo.tag("v15.6.0")
    git_repo.branch("release/15.6")
    git_repo.checkout("release/15.6")
    git_repo.commit("U1 #1", file="u.txt")
    git_repo.tag("v15.6.1")
    git_repo.checkout("main")
    git_repo.commit("Corrige #2")
    code, _, err = run(capsys, "--repo", str(git_repo.path), "changelog")
    assert code == 0 and err.count("\n") == 1 and "#2" in err  # only the unknown ticket
    assert "not in the history" not in err
    code, out, err = run(capsys, "--repo", str(git_repo.path), "next-version", "--format", "json")
    assert json.loads(out)["previous"] == "15.6.0" and "computed from" not in err


# --------------------------------------------------------------------------------------------
# 9. Past releases
# --------------------------------------------------------------------------------------------
@pytest.fixture
def released(git_repo):
    r = git_repo
    r.commit("init")
    r.tag("v15.4.0")
    r.branch("release/15.4")
    r.commit("Corrige #81")
    r.checkout("release/15.4")
    u1 = r.commit("U1 #82", file="u.txt")
    r.tag("v15.4.1")
    r.commit("U2 #83", file="u.txt")
    r.commit("Version 15.4 U2 (15.4.2)\n\n- #82 déjà livré\n- #83", file="VERSION")
    r.tag("v15.4.2")
    r.checkout("main")
    r.cherry_pick(u1)
    r.commit("Corrige #84")
    r.tag("v15.5.0")
    return r


def test_changelog_of_a_past_release(capsys, released) -> None:
    path = str(released.path)
    code, out, _ = run(
        capsys, "--repo", path, "changelog", "--release", "15.4.2", "--format", "json"
    )
    data = json.loads(out)
    assert code == 0 and data["from"] == "v15.4.1" and data["unknown"] == [83]
    assert data["to"] == released.head("v15.4.2^{commit}")
    code, out, _ = run(
        capsys, "--repo", path, "changelog", "--release", "v15.5.0", "--format", "json"
    )
    assert json.loads(out)["from"] == "v15.4.0" and json.loads(out)["unknown"] == [81, 82, 84]
    code, out, _ = run(
        capsys, "--repo", path, "changelog", "--release", "15.4.0", "--format", "json"
    )
    assert json.loads(out)["from"] is None  # the first release: the whole history
    code, out, err = run(capsys, "--repo", path, "changelog", "--release", "15.4.9")
    assert code == 1 and "no release 15.4.9: tag v15.4.9 does not exist" in err and out == ""
    code, out, err = run(
        capsys, "--repo", path, "changelog", "--release", "15.4.2", "--from", "v15.4.0"
    )
    assert code == 1 and "either --release VERSION or --from/--to" in err


def test_head_at_a_release_tag_points_to_release(capsys, released) -> None:
    code, out, err = run(capsys, "--repo", str(released.path), "changelog")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "HEAD is exactly release 15.5 (tag v15.5.0)" in err
    assert "changelog --release 15.5.0" in err


# --------------------------------------------------------------------------------------------
# 10. Explain
# --------------------------------------------------------------------------------------------
@pytest.fixture
def stories(repo):
    """One range, one ticket per kind of story."""
    r = repo
    sha = {"plain": r.commit("Corrige la facture #501")}
    sha["bad"] = r.commit("Export FEC\n\nFixes: #502\n")
    sha["revert"] = r.revert(sha["bad"])
    sha["again"] = r.commit("Export FEC, vraiment\n\nFixes: #502\n")
    sha["original"] = commit_on(r, "topic", "Corrige le lettrage #503")
    sha["pick"] = r.cherry_pick(sha["original"])
    sha["merge"] = r.merge("topic", "Merge pull request #509 from gestan/topic")
    sha["mention"] = r.commit("Nettoyage\n\nRefs: #504\n")
    sha["bump"] = r.commit("Version 1.1 (1.1.0)\n\n- #505 ancien")
    return r, sha


def test_explain_tells_each_commit_and_its_rule(capsys, stories) -> None:
    r, sha = stories

    def explain(tid: int) -> dict:
        code, out, _ = run(
            capsys, "--repo", str(r.path), "changelog", "--explain", str(tid), "--format", "json"
        )
        assert code == 0
        return json.loads(out)

    def steps(story: dict) -> list[tuple[str, str, list[str], str | None]]:
        return [
            (s["sha"], s["rule"], s["how"], s["other"]["sha"] if s["other"] else None)
            for s in story["steps"]
        ]

    plain = explain(501)
    assert (
        plain["fixed"]
        and plain["plain"]
        and steps(plain) == [(sha["plain"], "fix", ["subject"], None)]
    )
    again = explain(502)
    assert again["fixed"] and not again["plain"]
    assert steps(again) == [
        (sha["bad"], "cancelled", ["trailer Fixes"], sha["revert"]),
        (sha["revert"], "revert", [""], sha["bad"]),
        (sha["again"], "fix", ["trailer Fixes"], None),
    ]
    picked = explain(503)
    assert picked["fixed"] and [s[:2] for s in steps(picked)] == [
        (sha["original"], "fix"),
        (sha["pick"], "pick"),
    ]
    assert steps(picked)[1][3] == sha["original"]  # folded into the original
    mention = explain(504)
    assert mention["verdict"] == "mentioned" and steps(mention) == [
        (sha["mention"], "mention", ["trailer Refs"], None)
    ]
    skipped = explain(505)
    assert skipped["verdict"] == "not-fixed" and skipped["plain"]
    assert steps(skipped) == [(sha["bump"], "skipped", ["body"], None)]
    merge = explain(509)
    assert steps(merge) == [(sha["merge"], "merge-ignored", ["merge-subject"], None)]
    nobody = explain(599)
    assert nobody["verdict"] == "not-named" and nobody["steps"] == []


def test_explain_as_text(capsys, stories) -> None:
    r, sha = stories
    code, out, _ = run(
        capsys, "--repo", str(r.path), "changelog", "--explain", "502", "--format", "text"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "#502 : corrigé (de v1.0.0 à HEAD)"
    assert f"{sha['bad'][:10]} « Export FEC »" in lines[1]
    assert f"annulé par le revert {sha['revert'][:10]}" in lines[1]
    assert "trailer « Fixes: »" in lines[1]
    assert "ne corrige rien" in lines[2] and "le corrige" in lines[3]
    code, out, _ = run(capsys, "--repo", str(r.path), "changelog", "--explain", "#504")
    assert code == 0 and "**#504** : seulement mentionné" in out


def test_the_stories_that_are_not_plain(stories) -> None:
    r, _ = stories
    result = scan(r)
    assert [s.ticket for s in stories_of(result)] == [502, 503, 504]


# --------------------------------------------------------------------------------------------
# 11. Rules validated at load
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "toml", "message"),
    [
        (
            {"GESTAN_RELEASE_TICKET_PATTERNS": "#(\\d+"},
            "",
            "setting TICKET_PATTERNS from GESTAN_RELEASE_TICKET_PATTERNS is invalid: '#(\\d+' "
            "is not a regular expression (missing ), unterminated subpattern",
        ),
        (
            {},
            'ticket_patterns = ["(GES|GST)-(\\\\d+)"]\n',
            "setting TICKET_PATTERNS from gestan-release.toml is invalid: '(GES|GST)-(\\d+)' "
            "has 2 capturing groups; it needs exactly one",
        ),
        ({}, 'ticket_patterns = ["GES-\\\\d+"]\n', "has 0 capturing groups"),
        ({}, 'fix_trailers = ["Fixes", ""]\n', "setting FIX_TRAILERS from gestan-release.toml"),
        ({"GESTAN_RELEASE_REF_TRAILERS": "See also"}, "", "'See also' is not a trailer name"),
        ({"GESTAN_RELEASE_SKIP_PATTERNS": "[x"}, "", "SKIP_PATTERNS from GESTAN_RELEASE_SKIP_PAT"),
        ({"GESTAN_RELEASE_SKIP_PATTERNS": '["a", 1]'}, "", "not a JSON array of strings"),
        ({"GESTAN_RELEASE_SKIP_PATTERNS": '["(?i)release", ".*"]'}, "", "matches an empty text"),
        ({"GESTAN_RELEASE_MERGE_REFS": "some"}, "", "MERGE_REFS from GESTAN_RELEASE_MERGE_REFS"),
        ({"GESTAN_RELEASE_REF_TRAILERS": "Fixes"}, "", "Fixes is also in FIX_TRAILERS"),
    ],
)
def test_bad_rules_are_one_line_naming_the_setting(capsys, repo, monkeypatch, env, toml, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if toml:
        (repo.path / "gestan-release.toml").write_text(toml, encoding="utf-8")
    code, out, err = run(capsys, "--repo", str(repo.path), "changelog")
    assert code == 1 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_pattern_group_catching_more_than_a_number_is_not_a_crash(repo) -> None:
    repo.commit("Corrige GES-abc et GES-12\n\nFixes: GES-13, GES-xyz\n")
    rules = Rules(patterns=(r"\bGES-(\w+)",)).check()
    assert set(scan(repo, rules=rules).fixes) == {12}  # the trailer is not a list of refs
    repo.commit("Corrige\n\nFixes: GES-14, #15\n")
    assert set(scan(repo, rules=rules).fixes) == {12, 14, 15}


def test_short_shas_written_by_hand_are_resolved_in_the_range(repo) -> None:
    bad = repo.commit("Corrige #331")
    revert = repo.commit(f'Revert "Corrige #331"\n\nThis reverts commit {bad[:9]}.\n')
    original = commit_on(repo, "topic", "Corrige #332")
    pick = repo.commit(f"Corrige #332\n\n(cherry picked from commit {original[:12]})\n")
    repo.merge("topic", "Merge branch 'topic'")
    result = scan(repo)
    assert {t: [c.sha for c in cs] for t, cs in result.fixes.items()} == {332: [original]}
    assert result.decisions[bad] == (Rule.CANCELLED, revert)
    assert result.decisions[pick] == (Rule.PICK, original)


def test_ticket_ids_are_ascii_digits_only(repo) -> None:
    # `\d` also matches Arabic-Indic and other Unicode digits: `#٣٤` must not become ticket 34.
    plain = repo.commit("Corrige l'export #35")
    repo.commit("Corrige le lettrage #٣٤")
    repo.commit("Corrige la TVA\n\nFixes: ٣٦\n")
    repo.commit("Corrige les acomptes\n\nFixes: #٣٧, #38\n")
    assert fixed(repo) == {35: [plain]}
