"""Self-healing at scale, for real: a Prefect server on PostgreSQL, `prefect deploy --all`, two
process workers that share nothing but PostgreSQL and the network (each its own clone of REPO_URL,
real channels: X, the forum, SMTP, the update server). A release starts on worker 1; during the
mail step worker 1 and its flow run are killed with kill -9 (its machine is lost: nobody reports
the crash). The `resume` trigger of prefect.yaml notices the silent run, worker 2 finishes the
release, and every post and mail went out exactly once.
"""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from channel_fixtures import (
    CATEGORY_ID,
    FORUM_TOKEN,
    MAIL_FROM,
    X_TOKEN,
    smtp_cert,  # noqa: F401  (a session fixture)
)
from fakes.smtp import PASSWORD, USERNAME, FakeSmtp, ScriptedHandler
from fakes.vanilla_server import FakeVanilla
from fakes.x_server import FakeX
from flow_fixtures import FORUM_TICKETS, MAILS, NOT_FORUM, TICKETS, build_sandbox
from prefect_servers import (
    ROOT,
    api,
    kill_machine,
    prefect,
    prefect_server,
    start_worker,
    stop,
    wait_for,
)
from update_servers import TOKEN, start_update_server

from gestan_release.demo import BUILD
from gestan_release.tickets.store import TicketStore
from gestan_release.tickets.values import Ticket

pytestmark = pytest.mark.slow

VERSION = "15.5.0"


@dataclass
class GatedSmtp(ScriptedHandler):
    """Accepts the first `open_for` mails, then holds every DATA until `release()`: the test
    kills the sender meanwhile. A held mail whose client died is never accepted (no 250 was
    sent), as on a real server; after `release()` everything is accepted."""

    open_for: int = 1
    held: int = 0
    released: bool = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            hold = not self.released and len(self.messages) >= self.open_for
            if hold:
                self.held += 1
        if hold:
            while not self.released:
                await asyncio.sleep(0.05)
            return "421 4.3.2 Connection lost before the end of DATA"
        return await super().handle_DATA(server, session, envelope)

    def release(self) -> None:
        self.released = True


def _import_tickets(url: str, forum: FakeVanilla) -> None:
    rows = []
    for tid, title, prio, name, who in TICKETS:
        forum_url = None
        if tid not in NOT_FORUM:
            did = forum.add_discussion(f"Signalement : {title}", f"Rapport #{tid}", 1, 200 + tid)
            forum_url = forum.discussions[did]["url"]
        rows.append(
            Ticket(tid, title, prio, name, f"{who}@example.com", forum_url, tid not in NOT_FORUM)
        )
    TicketStore(url).import_rows(rows)


def _runs(url: str, deployment_id: str) -> list[dict]:
    return api(
        url,
        "/flow_runs/filter",
        {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}},
    )


def test_a_release_whose_worker_is_lost_is_finished_by_another_worker(
    make_repo,
    tmp_path: Path,
    pg_server,
    smtp_cert,  # noqa: F811  (the fixture imported above)
) -> None:
    from gestan_release.store.ledger import Ledger

    box = build_sandbox(make_repo, tmp_path)  # box.remote: the bare REPO_URL
    ledger_url = pg_server.create()
    prefect_db = pg_server.create("prefect_test")
    async_url = prefect_db.replace("postgresql+psycopg://", "postgresql+asyncpg://")
    gate = GatedSmtp()
    with (
        FakeX(_contracts(), access_tokens=(X_TOKEN,)) as x,
        FakeVanilla(_contracts(), token=FORUM_TOKEN) as forum,
        FakeSmtp.start(cert=smtp_cert, security="starttls", auth=True, handler=gate) as smtp,
        prefect_server(tmp_path, {"PREFECT_API_DATABASE_CONNECTION_URL": async_url}) as env,
    ):
        updates = start_update_server(tmp_path / "updates", tmp_path / "keys" / "k.pem")
        _import_tickets(ledger_url, forum)
        home = tmp_path / "worker-home"  # the `repo` parameter: only settings are read there
        home.mkdir()
        settings = {
            "DATABASE_URL": ledger_url,
            "REPO_URL": str(box.remote),
            "UPDATES_URL": updates.url,
            "UPDATES_TOKEN": TOKEN,
            "BUILD_COMMAND": BUILD,
            "ARTIFACTS": "dist/*.exe",
            "X_ENABLED": "1",
            "X_API_BASE": x.url,
            "X_BEARER_TOKEN": X_TOKEN,
            "FORUM_ENABLED": "1",
            "FORUM_BASE_URL": forum.url,
            "FORUM_TOKEN": FORUM_TOKEN,
            "SMTP_ENABLED": "1",
            "SMTP_HOST": smtp.host,
            "SMTP_PORT": str(smtp.port),
            "SMTP_SECURITY": "starttls",
            "SMTP_USERNAME": USERNAME,
            "SMTP_PASSWORD": PASSWORD,
            "MAIL_FROM": MAIL_FROM,
        }
        base = {
            **env,
            **{f"GESTAN_RELEASE_{k}": v for k, v in settings.items()},
            "SSL_CERT_FILE": str(smtp_cert.cert),
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
        api_url = env["PREFECT_API_URL"]
        prefect(env, "work-pool", "create", "gestan-release", "--type", "process")
        prefect(
            {**env, "GESTAN_REPO": str(home), "PWD": str(ROOT)}, "--no-prompt", "deploy", "--all"
        )
        automations = {a["name"]: a for a in api(api_url, "/automations/filter", {})}
        assert {"resume__automation_1", "resume__automation_2"} <= set(automations)
        deployments = {d["name"]: d for d in api(api_url, "/deployments/filter", {})}

        # Worker 1 ("machine 1") takes the release; worker 2 starts once it is running.
        w1 = start_worker(
            {**base, "GESTAN_RELEASE_CACHE_DIR": str(tmp_path / "m1")}, "m1", tmp_path / "w1.log"
        )
        w2 = None
        try:
            out = prefect(env, "deployment", "run", "release/release")
            run_id = out.split("UUID:")[1].split()[0]

            def state_of(rid: str) -> dict:
                return api(api_url, f"/flow_runs/{rid}")["state"]

            wait_for(
                "the release to run on worker 1",
                lambda: state_of(run_id)["type"] == "RUNNING",
                timeout=300,
            )
            w2 = start_worker(
                {**base, "GESTAN_RELEASE_CACHE_DIR": str(tmp_path / "m2")},
                "m2",
                tmp_path / "w2.log",
            )
            ledger = Ledger(ledger_url)

            def in_mail_step() -> bool:
                done = [
                    d
                    for d in ledger.deliveries(VERSION)
                    if d.channel == "mail" and d.state == "done"
                ]
                return len(done) >= 1 and gate.held >= 1

            wait_for("the mail step (one mail sent, the next held)", in_mail_step, timeout=400)
            assert state_of(run_id)["type"] == "RUNNING"
            kill_machine(w1)  # worker 1 and its flow run, kill -9: nobody reports anything
            gate.release()
            first = [r for m in gate.messages for r in m.rcpt_tos]
            assert len(first) == 1 and first[0] in MAILS  # one mail out, the others held

            # Nobody says it crashed; its heartbeats stop; the trigger starts `resume`.
            resume_id = deployments["resume"]["id"]

            def resumed() -> dict | None:
                runs = _runs(api_url, resume_id)
                return next((r for r in runs if r["state"]["type"] == "COMPLETED"), None)

            resume = wait_for("the resume run to complete", resumed, timeout=600, every=3)
        finally:
            stop(w1)
            if w2 is not None:
                stop(w2)

        lost = state_of(run_id)
        assert (lost["type"], lost["name"]) == ("CRASHED", "Lost"), lost
        assert resume["parameters"]["crashed_flow_run"] == f"prefect.flow-run.{run_id}"
        assert resume["parameters"]["repo"] == str(home)
        assert len(_runs(api_url, resume_id)) == 1  # one resume, not one per trigger

        # Every side effect exactly once.
        assert [t["text"].count(VERSION) > 0 for t in x.tweets] == [True]
        assert len(x.calls("POST", "/2/tweets")) == 1
        topics = [
            d
            for d in forum.discussions.values()
            if d["insertUserID"] == forum.user_id and d["categoryID"] == CATEGORY_ID
        ]
        assert len(topics) == 1
        assert len(forum.calls("POST", "/api/v2/comments")) == len(FORUM_TICKETS)
        assert sorted(r for m in gate.messages for r in m.rcpt_tos) == sorted(MAILS)
        manifest = api(updates.url, "/v1/channels/stable/manifest.json")
        updates.stop()
        assert [r["version"] for r in manifest["releases"]] == [VERSION]
        refs = subprocess.run(
            ["git", "-C", str(box.remote), "for-each-ref", "--format=%(refname)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert "refs/tags/v15.5.0" in refs and "refs/heads/release/15.5" in refs
        release = ledger.release(VERSION)
        assert release.state == "released" and release.flow_run_id == resume["id"]
        assert {d.state for d in ledger.deliveries(VERSION)} == {"done"}
        # the resume ran on machine 2, from its own clone
        assert any((tmp_path / "m2" / "repos").iterdir())
    assert x.validation_errors == [] and forum.validation_errors == []
    # the Prefect server kept its runs in its PostgreSQL database
    import psycopg

    with psycopg.connect(prefect_db.replace("postgresql+psycopg://", "postgresql://")) as conn:
        assert conn.execute("SELECT count(*) FROM flow_run").fetchone()[0] >= 2
    pg_server.drop(ledger_url)
    pg_server.drop(prefect_db)


def _contracts() -> Path:
    from fakes.contracts import contracts_dir

    return contracts_dir()
