"""The cockpit's plain parts: progress artifacts (with recording stand-ins for the two Prefect
calls), the approval request a release manager reads, the typed answer, the published event's
id, and forgetting a release rejected before it did anything."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from gestan_release.prefect import cockpit
from gestan_release.release.notes import release_notes
from gestan_release.release.plan import plan_release
from gestan_release.settings import load
from gestan_release.store.ledger import Ledger
from gestan_release.store.tables import OverrideRecord


class Recorder:
    """Stands for create_progress_artifact / update_progress_artifact."""

    def __init__(self) -> None:
        self.created: list[dict] = []
        self.updates: list[dict] = []

    def create(self, **kwargs) -> str:
        self.created.append(kwargs)
        return f"artifact-{len(self.created)}"

    def update(self, **kwargs) -> None:
        self.updates.append(kwargs)

    @property
    def hooks(self) -> dict:
        return {"create": self.create, "update": self.update}


class Inner:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def track(self, label, total):
        self.calls.append(("track", label, total))
        return self

    def advance(self, n=1, *, failed=False):
        self.calls.append(("advance", n, failed))

    def close(self):
        self.calls.append(("close",))

    def step(self, name, outcome, *, status="ok"):
        self.calls.append(("step", name, outcome, status))

    def running(self, name, attempt=1):
        self.calls.append(("running", name, attempt))

    def warn(self, message):
        self.calls.append(("warn", message))


def test_a_fan_out_is_a_progress_artifact_updated_every_5_percent() -> None:
    rec = Recorder()
    with cockpit.ArtifactTracker("mail", 300, **rec.hooks) as bar:
        for n in range(300):
            bar.advance(failed=n == 7)
    assert rec.created == [{"progress": 0.0, "description": "mail : 0/300"}]
    assert len(rec.updates) == 20  # not 300 API calls
    assert [u["artifact_id"] for u in rec.updates] == ["artifact-1"] * 20
    assert rec.updates[-1]["progress"] == 100.0
    assert rec.updates[-1]["description"] == "mail : 300/300, 1 en échec"
    assert [u["progress"] for u in rec.updates] == sorted(u["progress"] for u in rec.updates)


def test_the_last_update_is_shown_when_the_fan_out_ends_early() -> None:
    rec = Recorder()
    bar = cockpit.ArtifactTracker("forum", 50, **rec.hooks)
    bar.advance(1)
    bar.close()
    assert rec.updates == [
        {"artifact_id": "artifact-1", "progress": 2.0, "description": "forum : 1/50"}
    ]
    nothing = cockpit.ArtifactTracker("sync", None, **rec.hooks)  # unknown total: no bar
    nothing.advance(3)
    nothing.close()
    assert len(rec.created) == 1


def test_the_reporter_passes_everything_on_to_the_display() -> None:
    rec, inner = Recorder(), Inner()
    progress = cockpit.ArtifactProgress(inner, **rec.hooks)
    with progress.track("mail", 2) as bar:
        bar.advance()
        bar.advance(failed=True)
    progress.step("mail", "2 done", status="warn")
    progress.running("forum", 2)
    progress.warn("attention")
    assert inner.calls == [
        ("track", "mail", 2),
        ("advance", 1, False),
        ("advance", 1, True),
        ("close",),
        ("step", "mail", "2 done", "warn"),
        ("running", "forum", 2),
        ("warn", "attention"),
    ]
    assert rec.updates[-1]["description"] == "mail : 2/2, 1 en échec"


def test_keys_and_event_ids_are_stable() -> None:
    assert cockpit.approval_key("15.4.1") == "approval-15-4-1"
    assert cockpit.approval_key("15.5.0-nightly.20261127") == "approval-15-5-0-nightly-20261127"
    a = cockpit.published_event_id("15.5.0")
    assert a == cockpit.published_event_id("15.5.0") != cockpit.published_event_id("15.5.1")


def test_a_rejection_needs_a_reason() -> None:
    from pydantic import ValidationError

    answer = cockpit.approval_input()
    assert answer(approve=True).approve
    assert answer(approve=False, reason="le changelog oublie #102").reason
    with pytest.raises(ValidationError, match="a rejection needs a reason"):
        answer(approve=False, reason="  ")


@pytest.fixture
def plan(git_repo):
    """15.5.0 from main: #101 already shipped in 15.4 U1, #102 out of the forum, #999 unknown."""
    from datetime import UTC, datetime

    from gestan_release.store.db import ensure_state_dir
    from gestan_release.tickets.store import TicketStore
    from gestan_release.tickets.values import Ticket

    r = git_repo
    r.commit("Gestan 15.4")
    r.tag("v15.4.0")
    r.branch("release/15.4")
    r.checkout("release/15.4")
    u1 = r.commit("Corrige le plantage\n\nCorrige: #101\n")
    r.tag("v15.4.1")
    r.checkout("main")
    r.cherry_pick(u1)
    r.commit("Relances (#102)")
    r.commit("Articles <script> (#103, #999)")
    settings = load(r.path, env={})
    ensure_state_dir(settings)
    TicketStore(settings.database_url).import_rows(
        [
            Ticket(101, "Plantage", "flash", "Zoé", "zoe@example.com", "https://f/d/101"),
            Ticket(102, "Relances", "haute", "Bob", "bob@example.com", None, False),
            Ticket(103, "Articles *gras*", "basse", "Alice", "alice@example.com", "https://f/d/3"),
        ]
    )
    plan = plan_release(settings, "full", "main")
    return settings, plan, datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


def test_the_approval_request_says_what_is_not_plain(plan) -> None:
    settings, p, deadline = plan
    text = cockpit.approval_request(settings, p, deadline)
    assert text.startswith("# Gestan 15.5 attend votre accord")
    assert "| Version | 15.5.0 (15.5) |" in text
    from gestan_release.release.messages import release_messages

    sent = release_messages(release_notes(settings, p), category="c", mail_from=settings.mail_from)
    assert f"| Mails | {len(sent.mails)} auteur(s) de signalement prévenu(s) |" in text
    assert "28/11/2026 à 09:30" in text
    assert "gestan-release approve 15.5.0" in text and "reject 15.5.0 --reason" in text
    assert "#101 : déjà livré dans 15.4 U1" in text
    assert "#102 : hors forum" in text
    assert "#999 : cité dans un commit mais absent des tickets" in text
    assert "## Annonce X" in text and "15.5" in text.split("## Annonce X")[1]
    assert "<script>" not in text  # ticket text is escaped in the markdown


def test_a_release_is_forgotten_only_while_it_did_nothing(database_url: str) -> None:
    ledger = Ledger(database_url)
    for version in ("15.5.0", "15.5.1"):
        ledger.start_release(
            version=version,
            kind="full",
            label=version,
            tag=f"v{version}",
            channel="stable",
            previous_version="15.4.0",
            plan={},
            tickets=[(1, "haute", None, True)],
            overrides=[(2, "flash-in-next-full", "raison")],
        )
    ledger.mark_sending("approval:15.5.0", "15.5.0", "approval")  # asked, never answered
    assert ledger.forget_release("15.5.0") is True
    assert ledger.release("15.5.0") is None
    with ledger.engine.connect() as connection:
        kept = sa.select(OverrideRecord).where(OverrideRecord.version == "15.5.0")
        assert connection.execute(kept).all() == []
    ledger.mark_sending("tag:v15.5.1", "15.5.1", "git")
    ledger.mark_done("tag:v15.5.1", "abc")
    assert ledger.forget_release("15.5.1") is False
    assert ledger.release("15.5.1") is not None
    assert ledger.forget_release("9.9.9") is True
