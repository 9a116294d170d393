"""The release, hotfix, nightly and resume flows, run for real under one Prefect test harness, on
a real repository with a bare remote, a real SQLite ledger, the outbox and the local update store.
"""

from __future__ import annotations

import email
import email.policy
import threading

import pytest
import sqlalchemy as sa

pytest.register_assert_rewrite("flow_fixtures")  # its asserts explain themselves too

from flow_fixtures import (  # noqa: E402
    FORUM_TICKETS,
    MAILS,
    VERSION,
    Sandbox,
    failed,
    git,
    ok,
    run_flow,
    summary_rows,
)

from gestan_release.errors import GestanReleaseError, ReleaseError  # noqa: E402
from gestan_release.release.lock import ReleaseLock  # noqa: E402
from gestan_release.store.tables import OverrideRecord, ReleaseTicketRecord  # noqa: E402

pytestmark = pytest.mark.slow
# The fixtures (session harness, sandbox) live in flow_fixtures.py, beside this file.
pytest_plugins = ("flow_fixtures",)

TAG = f"v{VERSION}"
BEFORE_TAGS = ["v15.3.0", "v15.4.0", "v15.4.1"]


def released_world() -> dict:
    """The world after 15.5.0 went out once, completely."""
    return {
        "tags": [*BEFORE_TAGS, TAG],
        "remote": sorted(
            [
                "refs/heads/main",
                "refs/heads/release/15.4",
                "refs/heads/release/15.5",
                *(f"refs/tags/{t}" for t in [*BEFORE_TAGS, TAG]),
            ]
        ),
        "x": ["x_15.5.0.json"],
        "forum": sorted(
            ["forum_15.5.0.json", *(f"forum_15.5.0_ticket_{t}.json" for t in FORUM_TICKETS)]
        ),
        "mail": sorted(MAILS),
        "stable": [VERSION],
        "nightly": [],
    }


def assert_released(box: Sandbox) -> None:
    """15.5.0 went out completely, each side effect exactly once."""
    assert box.world() == released_world()
    ledger = box.ledger()
    assert ledger.release(VERSION).state == "released"
    states = box.deliveries()
    assert states and set(states.values()) == {"done"}, states
    # the remote's tag is the very tag object made here (pushed once, never re-created)
    assert box.remote_refs()[f"refs/tags/{TAG}"] == git(box.path, "rev-parse", f"refs/tags/{TAG}")


# --------------------------------------------------------------------------------------------
# 1. Happy path
# --------------------------------------------------------------------------------------------
def test_full_release_happy_path(sandbox: Sandbox) -> None:
    head = sandbox.repo.head("main")
    result = ok(run_flow("release", sandbox.path))

    assert result["version"] == VERSION and result["tag"] == TAG and result["label"] == "15.5"
    assert_released(sandbox)
    path = sandbox.path
    # annotated tag on the commit released, maintenance branch there too, both on the remote
    assert git(path, "cat-file", "-t", TAG) == "tag"
    assert git(path, "rev-parse", f"{TAG}^{{commit}}") == head
    assert git(path, "rev-parse", "refs/heads/release/15.5") == head
    assert sandbox.remote_refs()["refs/heads/release/15.5"] == head

    # one mail per reporter: Alice's two tickets in one mail; Zoé (#101 already in 15.4 U1) and
    # the non-forum #106 get none
    mails = {}
    for p in sandbox.maildir():
        msg = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        mails[email.utils.parseaddr(msg["To"])[1]] = msg
    alice = mails["alice@example.com"].get_body(("plain",)).get_content()
    assert "#102" in alice and "#103" in alice and "#105" not in alice

    # the forum topic lists every ticket, #101 as already available since 15.4 U1
    topic = sandbox.state / "outbox" / "forum" / "forum_15.5.0.json"
    body = __import__("json").loads(topic.read_text())["body"]["body"]
    for t in (101, 102, 103, 104, 105, 106):
        assert f"#{t}" in body
    assert "déjà disponible depuis 15.4 U1" in body

    # tickets released (not #107, which waits on release/15.4)
    status = {t.id: t.status for t in sandbox.tickets().list()}
    assert status == {
        101: "released",
        102: "released",
        103: "released",
        104: "released",
        105: "released",
        106: "released",
        107: "open",
    }

    # the manifest entry carries the built artifact
    entry = sandbox.settings()
    from gestan_release.updates.publisher import publisher_for

    rel = publisher_for(entry).manifest("stable")["releases"][0]
    win = rel["artifacts"]["win64"]
    assert win["size"] > 0 and len(win["sha256"]) == 64 and rel["kind"] == "full"

    # summary artifact, in Prefect and in the result
    assert "publiée" in result["summary"]
    assert summary_rows(result["summary"])["mail"] == [3, 0, 0, 0]
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
        keys = {a.key: a for a in artifact}
    assert "release-15-5-0" in keys
    assert "| mail | 3 |" in keys["release-15-5-0"].data


# --------------------------------------------------------------------------------------------
# 2. Crash and resume, for each side effect in turn
# --------------------------------------------------------------------------------------------
KEYS = {
    "tag": f"tag:{TAG}",
    "push": f"push:{TAG}",
    "updates": f"updates:stable:{VERSION}",
    "x": f"x:{VERSION}",
    "forum": f"forum:{VERSION}",
    "mail": f"mail:{VERSION}:{MAILS[1]}",  # the second of three mails
}


class Faults:
    """Failures injected in the real functions, lasting the whole first run (retries included),
    and a count of every message each outbox really sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed = True
        self.sent: dict[str, int] = {}
        self.mp = monkeypatch
        from gestan_release.channels.outbox import MaildirOutbox, PostOutbox

        for cls in (PostOutbox, MaildirOutbox):
            self._spy(cls)

    def _spy(self, cls: type) -> None:
        real = cls.send

        def send(sender, message):  # type: ignore[no-untyped-def]
            if self.armed and message.key == getattr(self, "fail_key", None):
                from gestan_release.errors import DeliveryError

                raise DeliveryError(f"simulated: {message.key} refused for now")
            # what `send` would write afresh (the outbox's own check is not a duplicate send)
            if sender.find_existing(message) is None:
                receipt = real(sender, message)
                self.sent[message.key] = self.sent.get(message.key, 0) + 1
                return receipt
            return real(sender, message)

        self.mp.setattr(cls, "send", send)

    def fail(self, effect: str) -> None:
        """Make `effect` fail (a clean failure: nothing happened)."""
        from gestan_release.errors import GitError
        from gestan_release.history import gitops
        from gestan_release.updates.publisher import LocalPublisher, PublishError

        def failing(real, exc):  # type: ignore[no-untyped-def]
            def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
                if self.armed:
                    raise exc
                return real(*args, **kwargs)

            return wrapper

        if effect == "tag":
            self.mp.setattr(
                gitops, "create_tag", failing(gitops.create_tag, GitError("simulated: no tag"))
            )
        elif effect == "push":
            self.mp.setattr(
                gitops, "push", failing(gitops.push, GitError("simulated: remote unreachable"))
            )
        elif effect == "updates":
            self.mp.setattr(
                LocalPublisher,
                "publish",
                failing(LocalPublisher.publish, PublishError("simulated: update server down")),
            )
        else:
            self.fail_key = KEYS[effect]

    def crash_after(self, key: str) -> None:
        """The side effect happens, then the process 'dies' before the ledger records it."""
        from gestan_release.store.ledger import Ledger

        real = Ledger.mark_done

        def mark_done(ledger, k, *args, **kwargs):  # type: ignore[no-untyped-def]
            if self.armed and k == key:
                raise RuntimeError(f"simulated crash after {k}, before the ledger knew")
            return real(ledger, k, *args, **kwargs)

        self.mp.setattr(Ledger, "mark_done", mark_done)


def rerun(box: Sandbox, how: str) -> dict:
    if how == "resume":
        return ok(run_flow("resume", box.path, version=VERSION))
    return ok(run_flow("release", box.path))


def assert_each_message_sent_once(faults: Faults) -> None:
    expected = {KEYS["x"], KEYS["forum"], *(f"forum:{VERSION}:ticket:{t}" for t in FORUM_TICKETS)}
    expected |= {f"mail:{VERSION}:{m}" for m in MAILS}
    assert faults.sent == dict.fromkeys(expected, 1)


@pytest.mark.parametrize(
    ("effect", "how"),
    [
        ("tag", "release"),
        ("tag", "resume"),
        ("push", "release"),
        ("updates", "release"),
        ("updates", "resume"),
        ("x", "release"),
        ("forum", "resume"),
        ("mail", "release"),
        ("mail", "resume"),
    ],
)
def test_failure_then_run_again(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, effect: str, how: str
) -> None:
    faults = Faults(monkeypatch)
    faults.fail(effect)
    exc = failed(run_flow("release", sandbox.path))
    # the flow says what failed and how to finish; the ledger knows what is left
    assert isinstance(exc, GestanReleaseError)
    assert f"resume {VERSION}" in str(exc) and len(str(exc).splitlines()) == 1
    states = sandbox.deliveries()
    assert states[KEYS[effect]] == "failed"
    assert sandbox.ledger().release(VERSION).state == "incomplete"
    if effect in ("tag", "push"):
        # git failed: nothing was published or announced, and the flow says why
        assert "simulated" in str(exc)
        assert sandbox.outbox_files("x") == [] and sandbox.manifest() == []
        if effect == "tag":
            assert TAG not in sandbox.tags()
    else:
        # one failing channel does not stop the others; the flow names what is left
        assert f"resume {VERSION}" in str(exc)
        # tickets are released once the update endpoint has the version, not before
        waiting = {f"tickets:{VERSION}"} if effect == "updates" else set()
        assert {k for k, s in states.items() if s == "failed"} == {KEYS[effect], *waiting}
        if effect == "mail":
            assert states[f"mail:{VERSION}:{MAILS[0]}"] == "done"
            assert states[f"mail:{VERSION}:{MAILS[2]}"] == "done"

    faults.armed = False
    result = rerun(sandbox, how)
    assert "publiée" in result["summary"]
    assert_released(sandbox)
    assert_each_message_sent_once(faults)


@pytest.mark.parametrize(
    ("effect", "how"),
    [
        ("tag", "resume"),
        ("push", "release"),
        ("updates", "resume"),
        ("x", "release"),
        ("forum", "resume"),
        ("mail", "release"),
    ],
)
def test_crash_after_side_effect_then_run_again(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, effect: str, how: str
) -> None:
    faults = Faults(monkeypatch)
    key = KEYS[effect]
    faults.crash_after(key)
    exc = failed(run_flow("release", sandbox.path))
    assert "simulated crash" in str(exc)
    assert sandbox.deliveries()[key] == "sending"  # the ledger does not know it happened

    faults.armed = False
    rerun(sandbox, how)
    assert_released(sandbox)
    # the channels were asked (`find_existing`) instead of sending again
    assert_each_message_sent_once(faults)


# --------------------------------------------------------------------------------------------
# 3. A second run changes nothing; a tagged commit is resumed, never cut again
# --------------------------------------------------------------------------------------------
def test_second_runs_change_nothing_and_say_so(sandbox: Sandbox) -> None:
    ok(run_flow("release", sandbox.path))
    before = sandbox.world()
    again = ok(run_flow("release", sandbox.path))
    assert again["version"] == VERSION  # not 15.6.0
    assert sandbox.world() == before
    rows = summary_rows(again["summary"])
    assert rows and all(done == 0 and failed_ == 0 for done, _, _, failed_ in rows.values())
    assert rows["mail"][1] == 3 and rows["git"][1] == 3  # "déjà fait"

    hot = ok(run_flow("hotfix", sandbox.path, branch="release/15.4"))
    assert hot["version"] == "15.4.2"  # #107, the flash fix waiting on release/15.4
    assert git(sandbox.path, "rev-parse", "v15.4.2^{commit}") == sandbox.flash
    assert sorted(sandbox.world()["stable"]) == sorted([VERSION, "15.4.2"])
    before = sandbox.world()
    # a hotfix of the newest branch, release/15.5, whose head is 15.5.0 itself: no U cut there
    exc = failed(run_flow("hotfix", sandbox.path))
    assert isinstance(exc, ReleaseError) and "already released as 15.5 (tag v15.5.0)" in str(exc)
    assert sandbox.world() == before
    assert "v15.5.1" not in sandbox.tags()


def test_hotfix_again_on_its_tagged_commit_resumes_it(sandbox: Sandbox) -> None:
    ok(run_flow("hotfix", sandbox.path, branch="release/15.4"))
    before = sandbox.world()
    again = ok(run_flow("hotfix", sandbox.path, branch="release/15.4"))
    assert again["version"] == "15.4.2"  # not 15.4.3
    assert sandbox.world() == before
    assert all(done == 0 for done, *_ in summary_rows(again["summary"]).values())


# --------------------------------------------------------------------------------------------
# 4. Nightly
# --------------------------------------------------------------------------------------------
def test_nightly_is_untagged_on_its_channel_and_numbered(sandbox: Sandbox) -> None:
    # a nightly-looking tag in history is never taken as the previous release
    sandbox.repo.tag("v15.5.0-nightly.20200101", "main~1")
    tags = sandbox.tags()
    first = ok(run_flow("nightly", sandbox.path))
    second = ok(run_flow("nightly", sandbox.path))
    assert first["version"].startswith("15.5.0-nightly.")
    assert second["version"] == first["version"] + ".2"
    world = sandbox.world()
    assert world["tags"] == tags  # no git tag
    assert world["nightly"] == [first["version"], second["version"]]
    assert world["stable"] == [] and world["x"] == world["forum"] == world["mail"] == []
    assert {t.status for t in sandbox.tickets().list()} == {"open"}
    plan = sandbox.ledger().release(first["version"]).plan
    assert plan["previous"] == "15.4.0" and plan["from_ref"] == "v15.4.0"
    assert {t["id"] for t in plan["changelog"]["tickets"]} == {101, 102, 103, 104, 105, 106}
    # The nightly also measures the promises: the HTML report and its summary artifact.
    from pathlib import Path

    from prefect.client.orchestration import get_client

    assert Path(second["report"]).is_file()
    assert "<svg" in Path(second["report"]).read_text(encoding="utf-8")
    with get_client(sync_client=True) as client:
        keys = {a.key: a for a in client.read_latest_artifacts()}
    assert "promesses" in keys
    assert "| flash : toujours dans la version suivante |" in keys["promesses"].data


# --------------------------------------------------------------------------------------------
# 5. Bad input: one clear line, nothing half-done
# --------------------------------------------------------------------------------------------
def _nothing_done(box: Sandbox, before: dict) -> None:
    assert box.world() == before
    assert box.ledger().releases() == []


def test_bad_input_is_refused_before_anything_happens(sandbox: Sandbox) -> None:
    path = sandbox.path
    before = sandbox.world()

    (path / "file3.txt").write_text("edited\n")
    exc = failed(run_flow("release", path))
    assert isinstance(exc, GestanReleaseError) and "uncommitted changes (file3.txt)" in str(exc)
    git(path, "checkout", "--", "file3.txt")

    git(path, "checkout", "-q", "--detach", "main")
    exc = failed(run_flow("release", path))
    assert isinstance(exc, GestanReleaseError) and "HEAD is detached" in str(exc)
    git(path, "checkout", "-q", "main")

    # the next version, tagged by hand on a commit outside main's history
    git(path, "checkout", "-q", "-b", "feature", "main~1")
    sandbox.repo.commit("Essai")
    git(path, "tag", "-a", TAG, "-m", "by hand")
    git(path, "checkout", "-q", "main")
    exc = failed(run_flow("release", path))
    assert isinstance(exc, ReleaseError)
    assert f"tag {TAG} already exists on another commit" in str(exc)
    assert "v15.6.0" not in sandbox.tags()
    git(path, "tag", "-d", TAG)

    exc = failed(run_flow("release", path, allow_missing=[101]))
    assert isinstance(exc, ReleaseError) and "--allow-missing needs --reason" in str(exc)

    for e in (exc,):
        assert len(str(e).splitlines()) == 1
    _nothing_done(sandbox, before)


def test_u_with_no_fix_is_refused(sandbox: Sandbox) -> None:
    sandbox.repo.checkout("release/15.4")
    sandbox.repo.commit("Nettoyage des imports")
    sandbox.repo.tag("v15.4.2", "HEAD~1", message="15.4 U2 by hand")  # leaves nothing but this
    sandbox.repo.checkout("main")
    before = sandbox.world()
    exc = failed(run_flow("hotfix", sandbox.path, branch="release/15.4"))
    assert isinstance(exc, ReleaseError) and "would fix no ticket" in str(exc)
    _nothing_done(sandbox, before)


def test_unknown_ticket_refs_are_released_warned_and_listed(sandbox: Sandbox) -> None:
    sandbox.repo.commit("Stock : nettoyage #999")
    result = ok(run_flow("release", sandbox.path))
    assert "#999" in result["summary"] and "not in the ticket store" in result["summary"]
    with sandbox.ledger().engine.connect() as connection:
        unknown = connection.execute(
            sa.select(ReleaseTicketRecord.ticket_id).where(
                ReleaseTicketRecord.version == VERSION, ReleaseTicketRecord.known.is_(False)
            )
        )
        assert unknown.scalars().all() == [999]
    assert sandbox.ledger().release(VERSION).state == "released"


# --------------------------------------------------------------------------------------------
# 6. Dry run
# --------------------------------------------------------------------------------------------
def test_dry_run_shows_everything_and_changes_nothing(sandbox: Sandbox) -> None:
    before = sandbox.world()
    result = ok(run_flow("release", sandbox.path, dry_run=True))
    text = result["dry_run"]
    assert result["version"] == VERSION and "15.5" in text
    for t in (101, 102, 103, 104, 105, 106):
        assert f"#{t}" in text
    assert "déjà disponible depuis 15.4 U1" in text
    assert "3 mail(s)" in text
    for name in ("Alice Martin", "Carole Roux", "Bob Girard"):
        assert f"### {name}" in text
    assert "### Zoé" not in text and "### Support" not in text
    # #101 came to main as a cherry-pick of the U1 fix: the release manager is shown why it is
    # in, in the dry run and in its Prefect artifact (issue 8, point 10)
    tocheck = text.split("## Tickets à vérifier avant l'envoi", 1)[1].split("\n## ", 1)[0]
    assert "**#101**" in tocheck and "cherry-pick de" in tocheck
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_latest_artifacts()}
    assert "Tickets à vérifier avant l'envoi" in artifacts["dry-run-15-5-0"].data
    _nothing_done(sandbox, before)
    assert not (sandbox.state / "outbox").exists()
    assert not (sandbox.state / "updates").exists()


def test_dry_run_creates_no_database(make_repo, tmp_path, monkeypatch, prefect_harness) -> None:
    from flow_fixtures import build_sandbox

    box = build_sandbox(make_repo, tmp_path)
    monkeypatch.setenv("GESTAN_RELEASE_REMOTE", "origin")
    tags = box.tags()
    result = ok(run_flow("release", box.path, dry_run=True))
    assert result["version"] == VERSION
    # nothing at all: no state directory, no database, no exclude line, no tag
    assert not box.state.exists()
    exclude = box.path / git(box.path, "rev-parse", "--git-path", "info/exclude")
    assert not exclude.exists() or ".gestan-release" not in exclude.read_text()
    assert box.tags() == tags


# --------------------------------------------------------------------------------------------
# 7. Gestan's rule: a flash fix shipped in a U is in the next full version
# --------------------------------------------------------------------------------------------
def test_flash_fix_of_a_u_missing_from_the_next_full_version(
    make_repo, tmp_path, monkeypatch, prefect_harness, fast_retries
) -> None:
    from flow_fixtures import build_sandbox

    box = build_sandbox(make_repo, tmp_path, pick_u1=False)
    monkeypatch.setenv("GESTAN_RELEASE_REMOTE", "origin")
    box.import_tickets()
    before = box.world()
    exc = failed(run_flow("release", box.path))
    assert isinstance(exc, ReleaseError)
    assert "#101 (15.4 U1) not fixed in v15.4.0..main" in str(exc)
    _nothing_done(box, before)

    reason = "le correctif #101 est remplacé par la refonte des remises"
    ok(run_flow("release", box.path, allow_missing=[101], reason=reason))
    with box.ledger().engine.connect() as connection:
        overrides = connection.execute(
            sa.select(OverrideRecord).where(OverrideRecord.version == VERSION)
        ).all()
    assert [(o.ticket_id, o.rule, o.reason) for o in overrides] == [
        (101, "flash-in-next-full", reason)
    ]
    assert box.ledger().release(VERSION).state == "released"
    assert "zoe@example.com" not in box.mail_recipients()


# --------------------------------------------------------------------------------------------
# 8. Developers tagging commits
# --------------------------------------------------------------------------------------------
def test_developer_tag_on_the_released_commit_is_adopted(sandbox: Sandbox) -> None:
    sandbox.repo.tag("v15.4.2", "release/15.4", message="15.4 U2, tagged by Marc")
    git(sandbox.path, "push", "-q", "origin", "v15.4.2")
    tag_object = git(sandbox.path, "rev-parse", "refs/tags/v15.4.2")
    tags = sandbox.tags()
    result = ok(run_flow("hotfix", sandbox.path, branch="release/15.4"))
    assert result["version"] == "15.4.2"
    assert sandbox.tags() == tags  # adopted: no second tag
    assert git(sandbox.path, "rev-parse", "refs/tags/v15.4.2") == tag_object
    assert sandbox.remote_refs()["refs/tags/v15.4.2"] == tag_object
    assert sandbox.manifest() == ["15.4.2"]
    assert sandbox.mail_recipients() == ["marc@example.com"]
    assert sandbox.ledger().release("15.4.2").state == "released"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("v15.4.5", "next U sub-version is 15.4.2"), ("v15.6.1", "not a U sub-version of 15.4")],
)
def test_developer_tag_naming_the_wrong_version_is_refused(
    sandbox: Sandbox, tag: str, expected: str
) -> None:
    sandbox.repo.tag(tag, "release/15.4")
    before = sandbox.world()
    exc = failed(run_flow("hotfix", sandbox.path, branch="release/15.4"))
    assert isinstance(exc, ReleaseError)
    assert f"tag {tag}" in str(exc) and expected in str(exc)
    _nothing_done(sandbox, before)


# --------------------------------------------------------------------------------------------
# 9. Concurrency
# --------------------------------------------------------------------------------------------
def test_release_while_another_holds_the_lock(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = sandbox.ledger()
    lock = f"repo:{sandbox.path.resolve()}"
    holder = ReleaseLock(ledger.engine, lock).acquire().holder
    before = sandbox.world()
    exc = failed(run_flow("release", sandbox.path))
    assert isinstance(exc, ReleaseError) and "another release is running" in str(exc)
    assert sandbox.world() == before

    # with LOCK_WAIT, the second run waits for the first to finish, then goes on
    monkeypatch.setenv("GESTAN_RELEASE_LOCK_WAIT", "60")
    timer = threading.Timer(2.0, ReleaseLock(ledger.engine, lock, holder=holder).release)
    timer.start()
    try:
        ok(run_flow("release", sandbox.path))
    finally:
        timer.cancel()
    assert_released(sandbox)


def assert_two_release_processes_take_turns(box: Sandbox, prefect_harness: str) -> None:
    """Two `gestan-release release` processes at once: a slow build keeps the first inside its
    lock while the second starts; the second waits or fails clearly, the release happens once."""
    from flow_fixtures import cli

    env = {
        **box.env,
        "GESTAN_RELEASE_BUILD_COMMAND": "sleep 5; " + box.env["GESTAN_RELEASE_BUILD_COMMAND"],
    }
    procs = [cli(["--repo", str(box.path), "release"], env, prefect_harness) for _ in "ab"]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 1]), outs
    if codes == [0, 1]:
        err = next(e for p, (_, e) in zip(procs, outs, strict=True) if p.returncode == 1)
        assert "another release is running" in err
        assert err.strip().splitlines()[-1].startswith("gestan-release: error: another release")
    assert_released(box)


def test_two_release_processes_at_once(sandbox: Sandbox, prefect_harness: str) -> None:
    assert_two_release_processes_take_turns(sandbox, prefect_harness)


# --------------------------------------------------------------------------------------------
# 10. status
# --------------------------------------------------------------------------------------------
def _status(box: Sandbox, capsys: pytest.CaptureFixture[str]) -> dict:
    import json

    from gestan_release.cli import main

    capsys.readouterr()
    assert main(["--repo", str(box.path), "status", "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_before_and_after_a_failed_release(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _status(sandbox, capsys)
    assert data["releases"] == [] and data["undone"] == []
    unreleased = {p: [t["id"] for t in items] for p, items in data["unreleased"].items()}
    assert unreleased == {
        "flash": [101],
        "haute": [102, 105, 106],
        "normale": [103],
        "basse": [104],
    }
    assert [
        (r["branch"], r["advice"], [t["id"] for t in r["tickets"]]) for r in data["recommended_u"]
    ] == [("release/15.4", "U version recommended", [107])]

    faults = Faults(monkeypatch)
    faults.fail("x")
    failed(run_flow("release", sandbox.path))
    data = _status(sandbox, capsys)
    assert [(r["version"], r["state"]) for r in data["releases"]] == [(VERSION, "incomplete")]
    assert [(d["key"], d["state"]) for d in data["undone"]] == [(KEYS["x"], "failed")]
    assert "simulated" in data["undone"][0]["error"]
    assert data["unreleased"] == {}
