"""The pure parts of the runbook (plan, guard, preview, summary) and its decisions (resume or plan
anew, a reason to leave a fix out, approval once, the order of the steps and what a failure stops)
on real git repositories and a real ticket store and ledger (SQLite and PostgreSQL), without
Prefect."""

from __future__ import annotations

import pytest

from gestan_release.errors import GitError, ReleaseError
from gestan_release.release.delivery import StepResult, record_start
from gestan_release.release.notes import preview
from gestan_release.release.plan import Plan, guard, plan_release, preflight
from gestan_release.release.runbook import summary
from gestan_release.settings import load
from gestan_release.tickets.store import TicketStore
from gestan_release.tickets.values import Ticket


@pytest.fixture(autouse=True)
def _database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test of the runbook on SQLite and on PostgreSQL (`DATABASE_URL`)."""
    monkeypatch.setenv("GESTAN_RELEASE_DATABASE_URL", database_url)
    # one machine: the outbox and the local update store are fine with PostgreSQL here
    monkeypatch.setenv("GESTAN_RELEASE_ALLOW_OUTBOX", "true")


def _tickets(settings, ids=(101, 102, 103)) -> None:
    from gestan_release.store.db import ensure_state_dir

    ensure_state_dir(settings)
    TicketStore(settings.database_url).import_rows(
        [
            Ticket(
                id=i,
                title=f"Ticket {i}",
                priority="flash" if i == 101 else "haute",
                reporter_name="Alice Martin",
                reporter_email="alice@example.com",
                forum_url=f"https://forum.gestan.fr/discussion/{i}/t",
            )
            for i in ids
        ]
    )


@pytest.fixture
def repo(git_repo):
    """15.4.0 on main, 15.4 U1 (#101) on release/15.4, main with #102 and #103."""
    r = git_repo
    r.commit("Gestan 15.4")
    r.tag("v15.4.0")
    r.branch("release/15.4")
    r.checkout("release/15.4")
    r.u1 = r.commit("Corrige le plantage\n\nCorrige: #101\n")
    r.tag("v15.4.1")
    r.checkout("main")
    r.commit("Relances (#102)")
    r.commit("Articles\n\nCloses: 103\n")
    return r


def settings_of(r):
    s = load(r.path)
    _tickets(s)
    return s


def test_plan_of_a_full_version(repo) -> None:
    repo.cherry_pick(repo.u1)
    s = settings_of(repo)
    plan = plan_release(s, "full", "main")
    assert (plan.version, plan.previous, plan.from_ref, plan.tag) == (
        "15.5.0",
        "15.4.0",
        "v15.4.0",
        "v15.5.0",
    )
    assert sorted(plan.ticket_ids) == [101, 102, 103]
    assert plan.already_in == {101: "15.4 U1"}
    assert plan.commit == repo.head("main") and not plan.adopted_tag
    assert Plan.from_json(plan.to_json()) == plan
    assert guard(s, plan) == []


def test_a_nightly_tag_is_never_the_previous_release(repo) -> None:
    repo.cherry_pick(repo.u1)
    repo.tag("v15.5.0-nightly.20200101")
    repo.commit("Encore (#102)")
    s = settings_of(repo)
    plan = plan_release(s, "full", "main")
    assert plan.version == "15.5.0" and plan.previous == "15.4.0"
    nightly = plan_release(s, "nightly", "main")
    assert nightly.version.startswith("15.5.0-nightly.") and nightly.tag is None
    assert nightly.previous == "15.4.0" and nightly.channel == "nightly"


def test_guard_keeps_u_fixes_in_the_next_full_version(repo) -> None:
    s = settings_of(repo)
    plan = plan_release(s, "full", "main")
    with pytest.raises(ReleaseError, match=r"#101 \(15.4 U1\) not fixed in v15.4.0..main") as e:
        guard(s, plan)
    assert len(str(e.value).splitlines()) == 1
    allowed = plan_release(s, "full", "main", allow_missing={101: "remplacé"})
    assert guard(s, allowed) == []


def test_guard_refuses_a_u_with_no_fix_and_warns_a_full_with_none(git_repo) -> None:
    git_repo.commit("Gestan 15.4")
    git_repo.tag("v15.4.0")
    git_repo.branch("release/15.4")
    git_repo.commit("Nettoyage")
    s = load(git_repo.path)
    full = plan_release(s, "full", "main")
    assert full.ticket_ids == []
    assert guard(s, full) == ["15.5 fixes no ticket (allowed for a full version)"]
    git_repo.checkout("release/15.4")
    git_repo.commit("Refactor")
    u = plan_release(s, "u", "release/15.4")
    with pytest.raises(ReleaseError, match=r"15\.4 U1 would fix no ticket"):
        guard(s, u)


def test_unknown_refs_are_released_warned_and_previewed(repo) -> None:
    repo.cherry_pick(repo.u1)
    repo.commit("Stock #999")
    s = settings_of(repo)
    plan = plan_release(s, "full", "main")
    assert plan.changelog["unknown"] == [999]
    assert any("#999" in w for w in guard(s, plan))
    text = preview(s, plan)  # the markdown changelog lists the unknown ref's commit
    assert "#999" in text and "15.5" in text
    assert preview(s, Plan.from_json(plan.to_json())) == text


def test_preflight_refuses_dirty_tree_and_detached_head(repo) -> None:
    s = load(repo.path)
    assert preflight(s, "full", None) == "main"
    (repo.path / "file1.txt").write_text("edited\n")
    with pytest.raises(GitError, match=r"uncommitted changes \(file1.txt\)"):
        preflight(s, "full", None)
    repo.git("checkout", "--", "file1.txt")
    repo.git("checkout", "-q", "--detach", "main")
    with pytest.raises(GitError, match="HEAD is detached"):
        preflight(s, "full", None)
    assert preflight(s, "nightly", None) == "main"  # a nightly may build a detached HEAD


def test_tags_on_the_commit_or_elsewhere(repo) -> None:
    repo.cherry_pick(repo.u1)
    s = settings_of(repo)
    repo.tag("v15.5.0")  # a developer tagged main's head: adopted
    plan = plan_release(s, "full", "main")
    assert plan.version == "15.5.0" and plan.adopted_tag and plan.previous == "15.4.0"
    repo.git("tag", "-d", "v15.5.0")
    repo.git("checkout", "-q", "-b", "side", "main~1")
    repo.commit("Essai")
    repo.tag("v15.5.0")
    repo.checkout("main")
    with pytest.raises(ReleaseError, match=r"tag v15\.5\.0 already exists on another commit"):
        plan_release(s, "full", "main")
    repo.tag("v15.7.0", "main")
    with pytest.raises(ReleaseError, match=r"tag v15\.7\.0 on main names 15\.7\.0, but the next"):
        plan_release(s, "full", "main")


def test_summary_lists_what_is_left(repo) -> None:
    from gestan_release.store.ledger import Ledger

    repo.cherry_pick(repo.u1)
    s = settings_of(repo)
    plan = plan_release(s, "full", "main")
    ledger = Ledger(s.database_url)
    record_start(ledger, plan)
    ok = StepResult("X")
    ledger.mark_sending("x:15.5.0", plan.version, "x")
    ledger.mark_failed("x:15.5.0", "HTTP 503 | retry later")
    complete, text = summary(ledger, plan, [ok])
    assert not complete and "INCOMPLÈTE" in text
    assert "| `x:15.5.0` | failed | 1 | HTTP 503 \\| retry later |" in text
    assert "gestan-release resume 15.5.0" in text
    assert "Adresses refusées" not in text
    ledger.mark_sending("mail:15.5.0:bob@example.com", plan.version, "mail")
    ledger.mark_failed("mail:15.5.0:bob@example.com", "550 no such user")
    ledger.mark_sending("mail:15.5.0:carol@example.com", plan.version, "mail")  # crashed: sending
    _, text = summary(ledger, plan, [ok])
    assert "### Adresses refusées\n\n- bob@example.com\n" in text
    assert "- carol@example.com" not in text
    ledger.mark_sending("mail:15.5.0:bob@example.com", plan.version, "mail")
    ledger.mark_done("mail:15.5.0:bob@example.com", "<id@x>", None)
    ledger.mark_sending("mail:15.5.0:carol@example.com", plan.version, "mail")
    ledger.mark_done("mail:15.5.0:carol@example.com", "<id2@x>", None)
    ledger.mark_sending("x:15.5.0", plan.version, "x")
    ledger.mark_done("x:15.5.0", "1", None)
    ok.done = 1
    complete, text = summary(ledger, plan, [ok])
    assert complete and "publiée" in text and "Reste à faire" not in text
    assert "| X | 1 | 0 | 0 | 0 |" in text


def test_the_preview_lists_the_tickets_whose_story_is_not_plain(repo) -> None:
    """#101 comes to main as a cherry-pick of the U1 fix, #102 is reverted then fixed again,
    #104 is only mentioned: the release manager sees why, before any mail goes out."""
    repo.cherry_pick(repo.u1)
    bad = repo.commit("Relances, autre essai\n\nFixes: #102\n")
    revert = repo.revert(bad)
    repo.commit("Nettoyage\n\nRefs: #104\n")
    s = settings_of(repo)
    plan = plan_release(s, "full", "main")
    assert [story["id"] for story in plan.changelog["stories"]] == [101, 102, 104]
    text = preview(s, plan)
    section = text.split("## Tickets à vérifier avant l'envoi (3)", 1)[1].split("\n## ", 1)[0]
    assert "**#101** Ticket 101 : corrigé" in section and "cherry-pick de" in section
    assert "**#102** Ticket 102 : corrigé" in section
    assert f"`{bad[:10]}`" in section and f"annulé par le revert `{revert[:10]}`" in section
    assert "**#104** : seulement mentionné : pas corrigé, aucun mail" in section
    assert "**#103**" not in section  # a plain fix
    assert preview(s, Plan.from_json(plan.to_json())) == text


def test_a_nightly_plan_warns_of_releases_tagged_elsewhere(repo) -> None:
    repo.cherry_pick(repo.u1)
    repo.git("checkout", "-q", "-b", "releases", "main~1")
    repo.commit("Gestan 15.5 sur une autre branche")
    repo.tag("v15.5.0")
    repo.checkout("main")
    s = settings_of(repo)
    plan = plan_release(s, "nightly", "main")
    assert plan.previous == "15.4.0" and plan.version.startswith("15.6.0-nightly.")
    assert any("release tag v15.5.0 is newer than v15.4.0" in w for w in plan.warnings)


def test_leaving_a_fix_out_needs_a_reason() -> None:
    from gestan_release.release.plan import allow_missing_overrides

    with pytest.raises(ReleaseError, match="--allow-missing needs --reason"):
        allow_missing_overrides([101], None)
    assert allow_missing_overrides(["101", 102], "remplacé") == {101: "remplacé", 102: "remplacé"}
    assert allow_missing_overrides(None, None) == {}


def test_a_release_in_the_ledger_is_resumed_as_planned_not_planned_anew(repo) -> None:
    from gestan_release.release.plan import plan_or_resume
    from gestan_release.store.ledger import Ledger

    s = settings_of(repo)
    ledger = Ledger(s.database_url)
    fresh, known = plan_or_resume(s, "full", "main", ledger=ledger)
    assert known is None
    recorded = Plan.from_json(fresh.to_json() | {"warnings": ["recorded then"]})
    record_start(ledger, recorded)
    repo.commit("Encore (#104)")  # the branch moved on since
    again, known = plan_or_resume(s, "full", "main", ledger=ledger)
    assert known is not None and again == recorded


class Scripted:
    """A runner whose steps return what the test says (or raise it), recording the order."""

    def __init__(self, outcomes: dict[str, Exception | StepResult] | None = None) -> None:
        from gestan_release.release.runbook import Runner

        self.runner = Runner()
        self.outcomes = outcomes or {}
        self.called: list[str] = []
        self.reports: list[str] = []
        self.runner.step = self.step  # type: ignore[method-assign]
        self.runner.report = lambda plan, text: self.reports.append(text)  # type: ignore[method-assign]

    def step(self, step, release) -> StepResult:
        self.called.append(step.name)
        got = self.outcomes.get(step.name, StepResult(step.name))
        if isinstance(got, Exception):
            raise got
        return got


def test_the_runbook_order_and_a_channel_failure_leaves_the_release_incomplete(repo) -> None:
    from gestan_release.errors import IncompleteRelease
    from gestan_release.release.runbook import STEPS, ship
    from gestan_release.store.ledger import Ledger

    s = settings_of(repo)
    plan = plan_release(s, "full", "main")
    failed = StepResult("forum", failed=[("forum:15.5.0", "HTTP 503")])
    script = Scripted({"forum": failed})
    with pytest.raises(IncompleteRelease, match=r"15\.5 is incomplete: forum: 0 done, 1 failed"):
        ship(s, plan, runner=script.runner)
    assert script.called == [step.name for step in STEPS] == [
        "git", "build", "update endpoint", "tickets released", "X", "forum", "mail",
    ]  # fmt: skip
    assert "INCOMPLÈTE" in script.reports[-1]
    assert Ledger(s.database_url).release(plan.version).state == "incomplete"


def test_a_failing_git_step_stops_before_publishing(repo) -> None:
    from gestan_release.errors import IncompleteRelease
    from gestan_release.release.runbook import ship

    s = settings_of(repo)
    plan = plan_release(s, "full", "main")
    script = Scripted({"git": GitError("tag refused")})
    with pytest.raises(IncompleteRelease, match="stopped before publishing: tag refused") as info:
        ship(s, plan, runner=script.runner)
    assert script.called == ["git"]
    assert info.value.outcome["state"] == "incomplete" and len(script.reports) == 1


def test_a_nightly_stops_at_the_update_endpoint(repo) -> None:
    from gestan_release.release.runbook import ship

    s = settings_of(repo)
    plan = plan_release(s, "nightly", "main")
    script = Scripted()
    result = ship(s, plan, runner=script.runner)
    assert script.called == ["git", "build", "update endpoint"]
    assert result["state"] == "released"


def test_approval_is_asked_once_per_release_and_a_rejection_forgets_it(repo) -> None:
    from gestan_release.release.steps import approval
    from gestan_release.store.ledger import Ledger

    s = settings_of(repo)
    plan = plan_release(s, "full", "main")
    ledger = Ledger(s.database_url)
    record_start(ledger, plan)
    asked: list[str] = []

    def ask(settings, p) -> str:
        asked.append(p.version)
        return "Claire (RM)"

    assert approval(s, ledger, plan, ask) is None and asked == []  # APPROVAL=none
    required = s.replace(approval="required")
    assert approval(required, ledger, plan, ask) == "Claire (RM)"
    assert approval(required, ledger, plan, ask) is None and asked == ["15.5.0"]  # recorded
    assert ledger.delivery("approval:15.5.0").external_id == "approved by Claire (RM)"

    def reject(settings, p) -> str:
        raise ReleaseError("rejected")

    u = plan_release(s, "u", "release/15.4")  # another release, nothing approved yet
    record_start(ledger, u)
    with pytest.raises(ReleaseError, match="rejected"):
        approval(required, ledger, u, reject)
    assert ledger.release(u.version) is None  # planned afresh next time


def test_a_first_nightly_on_an_empty_database_takes_the_lock(
    repo, empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock's table is in the ledger's database: a first run before any `tickets import`
    migrates it before taking the lock (nothing else touched the database yet)."""
    from gestan_release.release.runbook import cut

    monkeypatch.setenv("GESTAN_RELEASE_DATABASE_URL", empty_database_url)
    s = load(repo.path)
    script = Scripted()
    result = cut(s, "nightly", "main", runner=script.runner)
    assert script.called == ["git", "build", "update endpoint"]
    assert result["state"] == "released"
