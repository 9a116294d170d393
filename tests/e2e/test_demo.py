"""`gestan-release demo` end to end (under the Prefect test harness): the acknowledgements from the
built-in sandbox forum, the releases whose "fixed" mails thread under them, the promises report."""

from __future__ import annotations

import email
import email.policy

import pytest

pytestmark = pytest.mark.slow
pytest_plugins = ("flow_fixtures",)


def test_demo_shows_acknowledgements_and_the_report(tmp_path, prefect_harness, capsys) -> None:
    from gestan_release.demo import run_demo

    repo = run_demo(str(tmp_path / "demo"))
    out = capsys.readouterr().out
    assert "acknowledgement(s) sent" in out and "promises report" in out
    mail_dir = repo / ".gestan-release" / "outbox" / "mail" / "new"
    mails = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in mail_dir.iterdir()
    ]
    acks = {m["Message-ID"]: m for m in mails if "pris en compte" in m["Subject"]}
    assert len(acks) == 7
    threaded = [m for m in mails if m["In-Reply-To"] in acks]
    assert len(threaded) >= 5  # the 15.5 "fixed" mails answer the acknowledgements
    reports = list((repo / ".gestan-release" / "reports").glob("promesses-*.html"))
    assert len(reports) == 1 and reports[0].read_text(encoding="utf-8").count("<svg") == 5
