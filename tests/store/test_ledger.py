"""The release ledger on a real SQLite file and on PostgreSQL: releases, tickets, overrides,
deliveries, flow runs (the lock: test_lock.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from gestan_release.errors import ReleaseError
from gestan_release.store import db
from gestan_release.store.delivery_book import DeliveryState
from gestan_release.store.ledger import Ledger
from gestan_release.store.release_book import ReleaseState
from gestan_release.store.tables import DeliveryRecord, OverrideRecord, ReleaseTicketRecord


@pytest.fixture
def ledger(database_url: str) -> Ledger:
    return Ledger(database_url)


def start(ledger: Ledger, version: str = "15.4.1", kind: str = "u") -> None:
    ledger.start_release(
        version=version,
        kind=kind,
        label="15.4 U1" if kind == "u" else version,
        tag=f"v{version}",
        channel="stable",
        previous_version="15.4.0",
        plan={"version": version},
        tickets=[(101, "flash", None, True), (999, None, None, False)],
        overrides=[(102, "flash-in-next-full", "remplacé par la refonte")],
    )


def test_missing_database_is_not_created_by_existing(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'none' / 'gestan.db'}"
    assert Ledger.existing(url) is None
    assert not (tmp_path / "none").exists()


def test_schema_is_migrated_to_head(ledger: Ledger) -> None:
    assert db.current_revision(ledger.url) is not None
    assert Ledger(ledger.url).releases() == []  # a second open migrates nothing


def test_release_is_recorded_once_with_tickets_and_overrides(ledger: Ledger) -> None:
    start(ledger)
    start(ledger)  # idempotent
    r = ledger.release("15.4.1")
    assert (r.kind, r.state, r.plan, r.finished_at) == (
        "u",
        ReleaseState.IN_PROGRESS,
        {"version": "15.4.1"},
        None,
    )
    with ledger.engine.connect() as connection:
        tickets = connection.execute(
            sa.select(
                ReleaseTicketRecord.ticket_id,
                ReleaseTicketRecord.priority,
                ReleaseTicketRecord.known,
            ).order_by(ReleaseTicketRecord.ticket_id)
        )
        assert tickets.all() == [(101, "flash", True), (999, None, False)]
        overrides = connection.execute(sa.select(OverrideRecord.ticket_id, OverrideRecord.reason))
        assert overrides.all() == [(102, "remplacé par la refonte")]
    ledger.set_commit("15.4.1", "abc")
    ledger.finish_release("15.4.1", False)
    assert ledger.release("15.4.1").state is ReleaseState.INCOMPLETE
    ledger.finish_release("15.4.1", True)
    r = ledger.release("15.4.1")
    assert r.state is ReleaseState.RELEASED and r.commit_sha == "abc" and r.finished_at is not None
    with pytest.raises(ReleaseError, match="not in the ledger"):
        ledger.set_commit("9.9.9", "abc")


def test_delivery_lifecycle(ledger: Ledger) -> None:
    start(ledger)
    assert ledger.delivery("x:15.4.1") is None
    ledger.mark_sending("x:15.4.1", "15.4.1", "x")
    assert ledger.delivery("x:15.4.1").state is DeliveryState.SENDING
    ledger.mark_failed("x:15.4.1", "boom " * 1000)
    d = ledger.delivery("x:15.4.1")
    assert d.state is DeliveryState.FAILED and d.attempts == 1 and len(d.last_error) == 2000
    ledger.mark_sending("x:15.4.1", "15.4.1", "x")
    ledger.mark_done("x:15.4.1", "1234", "https://x.com/gestan/status/1234")
    d = ledger.delivery("x:15.4.1")
    assert (d.state, d.attempts, d.external_id, d.last_error) == (
        DeliveryState.DONE,
        2,
        "1234",
        None,
    )
    assert d.finished
    ledger.mark_sending("mail:15.4.1:a@example.com", "15.4.1", "mail")
    ledger.mark_done("mail:15.4.1:a@example.com", None, None, DeliveryState.PENDING_APPROVAL)
    assert ledger.delivery("mail:15.4.1:a@example.com").finished
    assert ledger.deliveries("15.4.1", undone=True) == []
    with pytest.raises(ReleaseError, match="never started"):
        ledger.mark_done("forum:15.4.1", "1")


def test_mark_sending_many_records_a_batch_in_one_go(ledger: Ledger) -> None:
    start(ledger)
    ledger.mark_sending("mail:15.4.1:a@x.fr", "15.4.1", "mail")
    ledger.mark_failed("mail:15.4.1:a@x.fr", "451 try later")
    keys = ["mail:15.4.1:a@x.fr", "mail:15.4.1:b@x.fr", "mail:15.4.1:c@x.fr"]
    ledger.mark_sending_many(keys, "15.4.1", "mail")
    rows = {d.key: d for d in ledger.deliveries("15.4.1")}
    assert sorted(rows) == keys
    assert all(d.state is DeliveryState.SENDING and d.channel == "mail" for d in rows.values())
    assert [rows[k].attempts for k in keys] == [2, 1, 1]


def test_the_flow_run_of_a_release(ledger: Ledger) -> None:
    start(ledger)
    assert ledger.release_of_flow_run("run-1") is None
    ledger.set_flow_run("15.4.1", "run-1")
    ledger.set_flow_run("15.4.1", None)  # outside Prefect: nothing recorded, nothing lost
    assert ledger.release_of_flow_run("run-1").version == "15.4.1"
    ledger.set_flow_run("15.4.1", "run-2")  # resumed by another run: the newest one counts
    assert ledger.release_of_flow_run("run-1") is None
    assert ledger.release("15.4.1").flow_run_id == "run-2"
    ledger.set_flow_run("9.9.9", "run-3")  # no such release: nothing to record
    assert ledger.release_of_flow_run("run-3") is None


def test_states_are_stored_as_their_plain_values(ledger: Ledger) -> None:
    """The enums changed nothing in the tables: no migration, and older rows still read."""
    start(ledger)
    ledger.mark_sending("x:15.4.1", "15.4.1", "x")
    ledger.mark_done("x:15.4.1", "1", None, DeliveryState.PENDING_APPROVAL)
    ledger.mark_sending("mail:15.4.1:a@example.com", "15.4.1", "mail")
    ledger.finish_release("15.4.1", False)
    with ledger.engine.connect() as connection:
        stored = connection.execute(sa.select(DeliveryRecord.key, DeliveryRecord.state)).all()
        release = connection.execute(sa.text("SELECT state FROM releases")).scalar_one()
    assert sorted(stored) == [
        ("mail:15.4.1:a@example.com", "sending"),
        ("x:15.4.1", "pending_approval"),
    ]
    assert release == "incomplete"
    assert [d.key for d in ledger.deliveries("15.4.1", undone=True)] == [
        "mail:15.4.1:a@example.com"
    ]
