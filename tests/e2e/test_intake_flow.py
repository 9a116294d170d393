"""The `intake` flow for real (Prefect test harness): sync from the contract-validated Vanilla fake,
acknowledgements into the Maildir outbox, the summary artifact; a second run does nothing."""

from __future__ import annotations

import email
import email.policy

import pytest
from fakes.contracts import contracts_dir
from fakes.vanilla_server import FakeVanilla

from gestan_release.settings import load
from gestan_release.tickets.store import TicketStore

pytestmark = pytest.mark.slow
pytest_plugins = ("flow_fixtures",)

TOKEN = "forumtok-flow-DO-NOT-LEAK"


def test_intake_flow_takes_reports_in_and_acknowledges_once(
    tmp_path, monkeypatch, prefect_harness
) -> None:
    from prefect.client.orchestration import get_client

    from flows.intake import intake

    repo = tmp_path / "repo"
    repo.mkdir()
    with FakeVanilla(
        contracts_dir(), token=TOKEN, categories=((30, "signaler-un-bug", "Bugs"),)
    ) as forum:
        for name in ("flash", "haute", "normale", "basse"):
            forum.add_tag(name)
        zoe = forum.add_user("Zoé", "zoe@example.com")
        marc = forum.add_user("Marc", "marc@example.com")
        flash = forum.add_discussion("Plantage facture", "…", 30, zoe, tags=("flash",))
        forum.add_discussion("Question", "…", 30, marc)
        for k, v in {
            "GESTAN_RELEASE_FORUM_BASE_URL": forum.url,
            "GESTAN_RELEASE_FORUM_TOKEN": TOKEN,
            "GESTAN_RELEASE_FORUM_BUG_CATEGORIES": "signaler-un-bug",
        }.items():
            monkeypatch.setenv(k, v)
        state = intake(repo=str(repo), return_state=True)
        assert state.is_completed(), state
        result = state.result()
        assert result["failed"] == []
        again = intake(repo=str(repo), return_state=True).result()
    assert forum.validation_errors == []
    assert "1 new ticket" in result["summary"] and "1 à trier" in result["summary"]
    assert "1 acknowledgement(s) sent" in result["acks"]
    assert "0 acknowledgement(s) sent" in again["acks"]
    settings = load(repo)
    ticket = TicketStore(settings.database_url).get(flash)
    mails = list((settings.outbox_dir / "mail" / "new").iterdir())
    assert len(mails) == 1
    msg = email.message_from_bytes(mails[0].read_bytes(), policy=email.policy.default)
    assert msg["Message-ID"] == f"<{ticket.ack_message_id}>"
    with get_client(sync_client=True) as client:
        keys = {a.key: a for a in client.read_latest_artifacts()}
    assert "| nouveaux tickets | 1 |" in result["markdown"]
    # The latest version of the artifact is the second run's: nothing new.
    assert "| nouveaux tickets | 0 |" in keys["intake"].data
    assert TOKEN not in keys["intake"].data and TOKEN not in result["markdown"]
