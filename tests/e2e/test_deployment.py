"""prefect.yaml for real: a local Prefect server, `prefect deploy --all`, a process worker that
runs the release deployment to completion on a sandbox repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from prefect_servers import ROOT
from prefect_servers import api as _api
from prefect_servers import prefect as _prefect
from prefect_servers import prefect_server as running_prefect_server

pytestmark = pytest.mark.slow


@pytest.fixture
def prefect_server(tmp_path: Path):
    with running_prefect_server(tmp_path) as env:
        yield env


def test_deploy_all_and_run_release_through_a_worker(prefect_server, tmp_path: Path) -> None:
    from gestan_release.demo import build_sandbox, import_tickets
    from gestan_release.settings import load
    from gestan_release.tickets.store import TicketStore

    env = prefect_server
    repo = build_sandbox(tmp_path / "sandbox")
    TicketStore(load(repo).database_url).import_file(import_tickets(repo))

    _prefect(env, "work-pool", "create", "gestan-release", "--type", "process")
    # prefect.yaml's pull step is `{{ $PWD }}`: the project directory, read when deploying.
    _prefect({**env, "GESTAN_REPO": str(repo), "PWD": str(ROOT)}, "--no-prompt", "deploy", "--all")
    api = env["PREFECT_API_URL"]
    deployments = _api(api, "/deployments/filter", {})
    names = sorted(d["name"] for d in deployments)
    assert names == ["hotfix", "intake", "nightly", "release", "resume"]
    intake = next(d for d in deployments if d["name"] == "intake")
    crons = sorted((s["schedule"]["cron"], s["schedule"]["timezone"]) for s in intake["schedules"])
    # Every 15 minutes, Monday-Saturday 8:00-19:00 Europe/Paris (the support's hours).
    assert crons == [("*/15 8-18 * * 1-6", "Europe/Paris"), ("0 19 * * 1-6", "Europe/Paris")]
    nightly = next(d for d in deployments if d["name"] == "nightly")
    schedule = nightly["schedules"][0]["schedule"]
    assert schedule["cron"] == "30 2 * * 1-6"
    assert schedule["timezone"] == "Europe/Paris"
    release = next(d for d in deployments if d["name"] == "release")
    assert release["parameters"]["repo"] == str(repo)
    automations = _api(api, "/automations/filter", {})
    assert {a["name"] for a in automations} >= {"release__automation_1", "hotfix__automation_1"}

    out = _prefect(env, "deployment", "run", "release/release")
    run_id = out.split("UUID:")[1].split()[0]
    _prefect(env, "worker", "start", "--pool", "gestan-release", "--run-once", timeout=600)
    run = _api(api, f"/flow_runs/{run_id}")
    assert run["state"]["type"] == "COMPLETED", run["state"]

    # The flow really released the sandbox: tag, branch, outbox, update store.
    tags = subprocess.run(
        ["git", "-C", str(repo), "tag", "--list", "v15.5.0"], capture_output=True, text=True
    ).stdout.split()
    assert tags == ["v15.5.0"]
    outbox = repo / ".gestan-release" / "outbox"
    assert (outbox / "x" / "x_15.5.0.json").is_file()
    assert len(list((outbox / "mail" / "new").iterdir())) == 6  # one per reporter
    manifest = json.loads(
        (repo / ".gestan-release" / "updates" / "channels" / "stable.json").read_text()
    )
    assert [r["version"] for r in manifest["manifest"]["releases"]] == ["15.5.0"]
