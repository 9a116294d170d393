"""The release flows with the tickets and ledger on PostgreSQL: the happy path, a failure then a
run again, a crash after a side effect then a resume, two processes at once, and the stdlib-free
`changelog` on the same database. The scenarios are those of `test_flows.py`, on `pg_sandbox`."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("flow_fixtures", "test_flows")

from flow_fixtures import VERSION, Sandbox, failed, ok, run_flow  # noqa: E402
from test_flows import (  # noqa: E402
    KEYS,
    Faults,
    assert_each_message_sent_once,
    assert_released,
    assert_two_release_processes_take_turns,
    rerun,
)

pytestmark = pytest.mark.slow
pytest_plugins = ("flow_fixtures",)


def test_full_release_on_postgresql(pg_sandbox: Sandbox) -> None:
    assert pg_sandbox.db_url.startswith("postgresql")
    result = ok(run_flow("release", pg_sandbox.path))
    assert result["version"] == VERSION
    assert_released(pg_sandbox)
    assert not (pg_sandbox.state / "gestan.db").exists()  # nothing in a SQLite file
    hot = ok(run_flow("hotfix", pg_sandbox.path, branch="release/15.4"))
    assert hot["version"] == "15.4.2"


@pytest.mark.parametrize(("effect", "how"), [("x", "release"), ("mail", "resume")])
def test_failure_then_run_again_on_postgresql(
    pg_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, effect: str, how: str
) -> None:
    faults = Faults(monkeypatch)
    faults.fail(effect)
    failed(run_flow("release", pg_sandbox.path))
    assert pg_sandbox.deliveries()[KEYS[effect]] == "failed"
    faults.armed = False
    rerun(pg_sandbox, how)
    assert_released(pg_sandbox)
    assert_each_message_sent_once(faults)


def test_crash_after_a_mail_then_resume_on_postgresql(
    pg_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults(monkeypatch)
    faults.crash_after(KEYS["mail"])
    failed(run_flow("release", pg_sandbox.path))
    assert pg_sandbox.deliveries()[KEYS["mail"]] == "sending"
    faults.armed = False
    rerun(pg_sandbox, "resume")
    assert_released(pg_sandbox)
    assert_each_message_sent_once(faults)


def test_two_release_processes_at_once_on_postgresql(
    pg_sandbox: Sandbox, prefect_harness: str
) -> None:
    assert_two_release_processes_take_turns(pg_sandbox, prefect_harness)


def test_changelog_reads_the_tickets_from_postgresql(pg_sandbox: Sandbox, capsys) -> None:
    import json

    from gestan_release.cli import main

    capsys.readouterr()
    assert main(["--repo", str(pg_sandbox.path), "changelog", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    titles = {t["id"]: t["title"] for t in data["tickets"]}
    assert titles[102] == "Relances clients : mauvais modèle de mail"
    assert data["unknown"] == []
