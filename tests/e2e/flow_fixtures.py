"""Fixtures for the release flows end to end: one Prefect test harness per session, a sandbox
repository with a bare remote, tickets, the outbox and the local update store, and helpers that
count every side effect (tags, remote refs, outbox files, Maildir messages, manifest entries).

Imported by `test_flows.py` (`from flow_fixtures import *`), so that `tests/e2e/conftest.py` (the
update server's fixtures) stays as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gestan_release.demo import BUILD
from gestan_release.tickets.store import TicketStore
from gestan_release.tickets.values import Ticket

VERSION = "15.5.0"

# id, title, priority, reporter, e-mail, forum-tracked
TICKETS = [
    (101, "Plantage à l'ouverture d'une facture avec remise", "flash", "Zoé Lefèvre", "zoe"),
    (102, "Relances clients : mauvais modèle de mail", "haute", "Alice Martin", "alice"),
    (103, "Lenteur de la liste des articles", "normale", "Alice Martin", "alice"),
    (104, "Faute d'orthographe dans le menu « Paramètres »", "basse", "Bob Girard", "bob"),
    (105, "Import bancaire : format CFONB 120", "haute", "Carole Roux", "carol"),
    (106, "Stock négatif après un avoir", "haute", "Support téléphonique", "dave"),
    (107, "Export FEC : TVA intracommunautaire absente", "flash", "Marc Dubois", "marc"),
]
NOT_FORUM = {106}

# What a full release of 15.5.0 from the sandbox does, exactly once each.
FORUM_TICKETS = (102, 103, 104, 105)  # 101 shipped in 15.4 U1, 106 is not forum-tracked
MAILS = ("alice@example.com", "carol@example.com", "bob@example.com")  # in sending order


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[str]:
    """One Prefect API for the whole session; yields its URL (for subprocesses)."""
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the tasks' retries (2) but not their waits ([2, 10] s): the failures injected by the
    tests persist for the whole first run, so the retries happen and fail, just without sleeping."""
    from prefect import Task

    import flows.common as common

    for obj in [*vars(common).values(), *common.STEP_TASKS.values()]:
        if isinstance(obj, Task) and obj.retries:
            monkeypatch.setattr(obj, "retry_delay_seconds", 0)


def git(path: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


@dataclass
class Sandbox:
    """A Gestan repository: 15.3 and 15.4 released, 15.4 U1 (#101, flash) shipped from
    release/15.4 and cherry-picked to main, a new flash fix (#107) waiting on release/15.4, and
    on main fixes #102-#106 (two from Alice, one non-forum)."""

    repo: Any  # tests/conftest.py GitRepo
    remote: Path
    u1: str = ""
    flash: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.repo.path

    # -- settings and stores ---------------------------------------------------------------
    def settings(self) -> Any:
        from gestan_release.settings import load

        return load(self.path)

    @property
    def state(self) -> Path:
        return self.path / ".gestan-release"

    @property
    def db_url(self) -> str:
        """The ledger and tickets of the sandbox: SQLite by default, or DATABASE_URL."""
        return self.settings().database_url

    def ledger(self) -> Any:
        from gestan_release.store.ledger import Ledger

        return Ledger(self.db_url)

    def tickets(self) -> TicketStore:
        return TicketStore(self.db_url)

    def import_tickets(self, ids: tuple[int, ...] | None = None) -> None:
        from gestan_release.store.db import ensure_state_dir

        ensure_state_dir(self.settings())  # keeps the database out of `git status`
        rows = [
            Ticket(
                id=tid,
                title=title,
                priority=prio,
                reporter_name=name,
                reporter_email=f"{who}@example.com",
                forum_url=None
                if tid in NOT_FORUM
                else f"https://forum.gestan.fr/discussion/{tid}/ticket-{tid}",
                forum_tracked=tid not in NOT_FORUM,
            )
            for tid, title, prio, name, who in TICKETS
            if ids is None or tid in ids
        ]
        self.tickets().import_rows(rows)

    # -- counting side effects -------------------------------------------------------------
    def tags(self) -> list[str]:
        return sorted(git(self.path, "tag", "--list").split())

    def remote_refs(self) -> dict[str, str]:
        out = git(self.path, "ls-remote", str(self.remote))
        refs = {}
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            if not name.endswith("^{}"):  # peeled annotated tags: the same ref
                refs[name] = sha
        return refs

    def outbox_files(self, channel: str) -> list[str]:
        d = self.state / "outbox" / channel
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def maildir(self) -> list[Path]:
        d = self.state / "outbox" / "mail"
        return sorted(
            p for sub in ("new", "cur") if (d / sub).is_dir() for p in (d / sub).iterdir()
        )

    def mail_recipients(self) -> list[str]:
        import email
        import email.policy

        rcpts = []
        for p in self.maildir():
            msg = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            rcpts.append(email.utils.parseaddr(msg["To"])[1])
        return sorted(rcpts)

    def manifest(self, channel: str = "stable") -> list[str]:
        from gestan_release.updates.publisher import publisher_for

        return [r["version"] for r in publisher_for(self.settings()).manifest(channel)["releases"]]

    def world(self) -> dict[str, Any]:
        """Every side effect a release can have, counted."""
        return {
            "tags": self.tags(),
            "remote": sorted(
                n for n in self.remote_refs() if n.startswith(("refs/tags/", "refs/heads/"))
            ),
            "x": self.outbox_files("x"),
            "forum": self.outbox_files("forum"),
            "mail": self.mail_recipients(),
            "stable": self.manifest("stable"),
            "nightly": self.manifest("nightly"),
        }

    def deliveries(self, version: str = VERSION) -> dict[str, str]:
        return {d.key: d.state for d in self.ledger().deliveries(version)}


def build_sandbox(
    make_repo: Callable[[str], Any], tmp_path: Path, *, pick_u1: bool = True
) -> Sandbox:
    """The history of `Sandbox`; `pick_u1=False` leaves #101 of 15.4 U1 out of main."""
    repo = make_repo("gestan")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo.commit("Gestan 15.3")
    repo.tag("v15.3.0", message="Gestan 15.3")
    repo.commit("Facturation : arrondi des remises en pied")
    repo.tag("v15.4.0", message="Gestan 15.4")
    repo.branch("release/15.4")
    repo.checkout("release/15.4")
    u1 = repo.commit("Corrige le plantage à l'ouverture d'une facture\n\nCorrige: #101\n")
    repo.tag("v15.4.1", message="Gestan 15.4 U1")
    flash = repo.commit("Export FEC : ajoute la TVA intracommunautaire\n\nFixes: #107\n")
    repo.checkout("main")
    if pick_u1:
        repo.cherry_pick(u1)
    repo.commit("Relances : utilise le modèle choisi par le client (#102)")
    repo.commit("Articles : pagination de la liste\n\nCloses: 103\n")
    repo.commit("Menu Paramètres : orthographe #104")
    repo.commit("Banque : import CFONB 120\n\nTicket: 105\n")
    repo.commit("Stock : recalcul après avoir\n\nTicket: 106\n")
    repo.git("remote", "add", "origin", str(remote))
    repo.git("push", "-q", "origin", "main", "release/15.4", "--tags")
    return Sandbox(repo, remote, u1, flash)


def _sandbox(make_repo: Callable[[str], Any], tmp_path: Path, monkeypatch, **extra: str) -> Sandbox:
    """The sandbox with its tickets imported and the settings of a real release (plus `extra`)
    in the environment."""
    env = {
        "GESTAN_RELEASE_REMOTE": "origin",
        "GESTAN_RELEASE_BUILD_COMMAND": BUILD,
        "GESTAN_RELEASE_ARTIFACTS": "dist/*.exe",
        **extra,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    box = build_sandbox(make_repo, tmp_path)
    box.env = env
    box.import_tickets()
    return box


@pytest.fixture
def sandbox(
    make_repo: Callable[[str], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_harness: str,
    fast_retries: None,
) -> Sandbox:
    """The sandbox with its tickets imported and the settings of a real release in the env."""
    return _sandbox(make_repo, tmp_path, monkeypatch)


@pytest.fixture
def pg_sandbox(
    make_repo: Callable[[str], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_harness: str,
    fast_retries: None,
    pg_database_url: str,
) -> Sandbox:
    """The sandbox with its tickets and ledger on PostgreSQL (the session's database, emptied;
    the outbox and local update store allowed: one machine)."""
    return _sandbox(
        make_repo,
        tmp_path,
        monkeypatch,
        GESTAN_RELEASE_DATABASE_URL=pg_database_url,
        GESTAN_RELEASE_ALLOW_OUTBOX="true",
    )


# -- running the flows -----------------------------------------------------------------------
def run_flow(name: str, repo: Path, **params: Any) -> Any:
    """Run a flow in this process and return its final Prefect state."""
    if name == "release":
        from flows.release import release as fn
    elif name == "hotfix":
        from flows.hotfix import hotfix as fn
    elif name == "nightly":
        from flows.nightly import nightly as fn
    else:
        from flows.resume import resume as fn
    return fn(repo=str(repo), **params, return_state=True)


def ok(state: Any) -> dict[str, Any]:
    """The result of a flow that must have completed."""
    if not state.is_completed():
        exc = state.result(raise_on_failure=False)
        raise AssertionError(f"flow ended {state.type}: {exc!r}")
    return state.result()


def failed(state: Any) -> BaseException:
    """The exception of a flow that must have failed."""
    assert state.is_failed(), f"flow ended {state.type}, expected Failed"
    exc = state.result(raise_on_failure=False)
    assert isinstance(exc, BaseException), exc
    return exc


def cli(
    args: list[str], env: dict[str, str], api_url: str, timeout: float = 300
) -> subprocess.Popen[str]:
    """Start `gestan-release ARGS` in a subprocess talking to the session's Prefect API."""
    full = {**os.environ, **env, "PREFECT_API_URL": api_url}
    return subprocess.Popen(
        [sys.executable, "-m", "gestan_release.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
    )


def summary_rows(summary: str) -> dict[str, list[int]]:
    """The step table of a summary: step → [done, already done, moderation, failed]."""
    rows = {}
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and all(c.isdigit() for c in cells[1:]):
            rows[cells[0]] = [int(c) for c in cells[1:]]
    return rows


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
