"""Hostile records through the real release flow (issue 9): one bad reporter never blocks a release,
and tickets are released when the update endpoint has the version, whatever the announcements do.
"""

from __future__ import annotations

import sqlite3

import pytest

pytest.register_assert_rewrite("flow_fixtures")

from flow_fixtures import VERSION, Sandbox, failed, ok, run_flow  # noqa: E402

from gestan_release.errors import DeliveryError, ReleaseError  # noqa: E402
from gestan_release.tickets.values import Ticket  # noqa: E402

pytestmark = pytest.mark.slow
pytest_plugins = ("flow_fixtures",)

CAROL = f"mail:{VERSION}:carol@example.com"
RELEASED_IDS = (102, 103, 104, 105, 106)


def statuses(box: Sandbox) -> dict[int, str]:
    return {t.id: t.status for t in box.tickets().list() if t.id in RELEASED_IDS}


def test_a_bad_reporter_fails_alone_and_resume_finishes(sandbox: Sandbox, capsys) -> None:
    # Legacy data, written before names were validated: `\v` became a header line.
    with sqlite3.connect(sandbox.state / "gestan.db") as conn:
        conn.execute(
            "UPDATE tickets SET reporter_name = ? WHERE id = 105",
            ("Carole\vReply-To : x@evil.example",),
        )
    exc = failed(run_flow("release", sandbox.path))
    assert isinstance(exc, ReleaseError) and len(str(exc).splitlines()) == 1
    assert f"resume {VERSION}" in str(exc)
    states = sandbox.deliveries()
    assert {k for k, s in states.items() if s != "done"} == {CAROL}
    assert "U+000B (VERTICAL TAB)" in (sandbox.ledger().delivery(CAROL).last_error or "")
    assert sandbox.mail_recipients() == ["alice@example.com", "bob@example.com"]
    assert set(statuses(sandbox).values()) == {"released"}  # the fix is out, mails aside

    import json

    from gestan_release.cli import main

    capsys.readouterr()
    assert main(["--repo", str(sandbox.path), "status", "--format", "json"]) == 0
    [undone] = json.loads(capsys.readouterr().out)["undone"]
    assert undone["key"] == CAROL and undone["state"] == "failed"
    assert "U+000B (VERTICAL TAB)" in undone["error"]

    # Resuming as is fails the same way, alone, without a crash.
    exc = failed(run_flow("resume", sandbox.path, version=VERSION))
    assert isinstance(exc, ReleaseError) and "mail: 0 done, 2 already done, 1 failed" in str(exc)

    # Fixed at its source, the resume finishes: Carole is mailed once, nobody twice.
    fixed = sandbox.tickets().get(105)
    assert fixed is not None
    sandbox.tickets().add(
        Ticket(**{**fixed.to_json(), "reporter_name": "Carole Roux", "status": "released"})
    )
    ok(run_flow("resume", sandbox.path, version=VERSION))
    assert sandbox.mail_recipients() == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]
    assert set(sandbox.deliveries().values()) == {"done"}


def _refuse(monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
    def send(self, message):  # type: ignore[no-untyped-def]
        raise DeliveryError(f"simulated: {message.key} refused", permanent=True)

    monkeypatch.setattr(cls, "send", send)


def test_tickets_are_released_when_the_update_endpoint_has_the_version(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gestan_release.channels.outbox import MaildirOutbox, PostOutbox
    from gestan_release.updates.publisher import LocalPublisher, PublishError

    # Every channel fails: the update endpoint has the version, so the tickets are released.
    sends = {cls: cls.send for cls in (PostOutbox, MaildirOutbox)}
    for cls in sends:
        _refuse(monkeypatch, cls)
    failed(run_flow("release", sandbox.path))
    assert sandbox.deliveries()[f"updates:stable:{VERSION}"] == "done"
    assert sandbox.deliveries()[f"tickets:{VERSION}"] == "done"
    assert set(statuses(sandbox).values()) == {"released"}
    for cls, send in sends.items():
        monkeypatch.setattr(cls, "send", send)

    # The update endpoint fails (a U this time): the tickets wait for it, then are released.
    sandbox.repo.checkout("release/15.4")
    real = LocalPublisher.publish

    def down(self, channel, entry):  # type: ignore[no-untyped-def]
        raise PublishError("simulated: update server down")

    monkeypatch.setattr(LocalPublisher, "publish", down)
    failed(run_flow("hotfix", sandbox.path, branch="release/15.4"))
    states = sandbox.deliveries("15.4.2")
    assert states["updates:stable:15.4.2"] == "failed"
    assert states["tickets:15.4.2"] == "failed"
    reason = sandbox.ledger().delivery("tickets:15.4.2").last_error or ""
    assert "update endpoint does not have 15.4.2" in reason
    assert sandbox.tickets().get(107).status != "released"  # type: ignore[union-attr]
    monkeypatch.setattr(LocalPublisher, "publish", real)
    ok(run_flow("resume", sandbox.path, version="15.4.2"))
    assert sandbox.tickets().get(107).status == "released"  # type: ignore[union-attr]
