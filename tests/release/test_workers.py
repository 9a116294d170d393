"""Stateless workers: the repository cloned from REPO_URL into a cache and fetched on every run,
a release resumed on another worker's fresh clone, the outbox refused with a shared database, the
signing key from the environment, and `doctor` (sources, losses, never a secret)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gestan_release.cli import main
from gestan_release.errors import ConfigError
from gestan_release.history import gitops
from gestan_release.history.repocache import clone_path, sync
from gestan_release.release.delivery import record_start
from gestan_release.release.plan import Plan, plan_release
from gestan_release.release.steps import git_step
from gestan_release.release.workers import check_stateless, inventory
from gestan_release.settings import load
from gestan_release.store import db
from gestan_release.store.ledger import Ledger
from gestan_release.tickets.store import TicketStore
from gestan_release.tickets.values import Ticket


def git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def upstream(git_repo, tmp_path: Path) -> Path:
    """A bare 'REPO_URL' with main (15.4.0 + a fix) and release/15.4."""
    git_repo.commit("Gestan 15.4")
    git_repo.tag("v15.4.0")
    git_repo.branch("release/15.4")
    git_repo.commit("Relances (#102)")
    bare = tmp_path / "gestan.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(git_repo.path), str(bare)], check=True)
    return bare


def test_sync_clones_then_mirrors_the_remote(upstream: Path, git_repo, tmp_path: Path) -> None:
    path = clone_path(tmp_path / "cache", str(upstream))
    assert path.name.startswith("gestan-")
    sync(str(upstream), path, "main")
    assert git(path, "rev-parse", "release/15.4") == git(upstream, "rev-parse", "release/15.4")
    assert git(path, "symbolic-ref", "--short", "HEAD") == "main"
    # leftovers of an earlier run on this worker: a local tag never pushed, a stray file, a
    # commit on main; the state directory (excluded) must stay
    git(path, "tag", "v15.5.0")
    (path / "stray.txt").write_text("x")
    (path / ".gestan-release").mkdir()
    (path / ".gestan-release" / "keep").write_text("x")
    with (path / ".git" / "info" / "exclude").open("a") as fh:
        fh.write("/.gestan-release/\n")
    git(
        path,
        "-c",
        "user.name=W",
        "-c",
        "user.email=w@x",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    # meanwhile the remote moved
    git_repo.commit("Articles (#103)")
    git_repo.git("push", "-q", str(upstream), "main")
    sync(str(upstream), path, "main")
    assert git(path, "rev-parse", "HEAD") == git(upstream, "rev-parse", "main")
    assert git(path, "tag", "--list").split() == ["v15.4.0"]
    assert not (path / "stray.txt").exists()
    assert (path / ".gestan-release" / "keep").exists()
    assert git(path, "status", "--porcelain") == ""


def test_a_bad_repo_url_is_one_clear_error(tmp_path: Path) -> None:
    from gestan_release.errors import GitError

    url = f"file://user:s3cret@localhost{tmp_path}/none.git"
    with pytest.raises(GitError, match="REPO_URL") as info:
        sync(url, tmp_path / "c", "main")
    assert "s3cret" not in str(info.value)
    assert not (tmp_path / "c").exists()


def _worker(upstream: Path, cache: Path, database_url: str) -> object:
    """The settings a flow builds on a stateless worker (flows.common.workspace)."""
    from gestan_release.history.repocache import checkout

    base = load(upstream.parent, env={})
    with checkout(str(upstream), cache, "main") as path:
        pass  # the flow keeps it checked out for the run; the test drives the steps by hand
    return load(
        path,
        env={},
        database_url=database_url,
        repo_url=str(upstream),
        cache_dir=cache,
        remote="origin",
        allow_outbox=True,
        main_branch=base.main_branch,
    )


def test_a_release_resumed_on_another_worker_remakes_what_was_never_pushed(
    upstream: Path, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = _worker(upstream, tmp_path / "worker-a", database_url)
    db.ensure_state_dir(a)
    TicketStore(database_url).add(Ticket(102, "Relances", "haute", "A", "a@example.com"))
    ledger = Ledger(database_url)
    plan = plan_release(a, "full", "main")
    record_start(ledger, plan)

    def vanish(*args, **kwargs):  # worker A is lost between its tag and its push
        raise SystemExit("worker lost")

    monkeypatch.setattr(gitops, "push", vanish)
    with pytest.raises(SystemExit):
        git_step(a, ledger, plan)
    assert git(a.repo, "tag", "--list", "v15.5.0") == "v15.5.0"  # only on A's disk
    assert git(upstream, "tag", "--list", "v15.5.0") == ""
    monkeypatch.undo()

    b = _worker(upstream, tmp_path / "worker-b", database_url)
    assert git(b.repo, "tag", "--list", "v15.5.0") == ""  # B's fresh clone does not have it
    commit, result = git_step(b, ledger, Plan.from_json(plan.to_json()))
    assert result.ok and commit == plan.commit
    assert git(upstream, "rev-parse", "v15.5.0^{commit}") == plan.commit
    assert git(upstream, "rev-parse", "release/15.5") == plan.commit
    states = {d.key: (d.state, d.attempts) for d in ledger.deliveries("15.5.0")}
    assert states == {
        "tag:v15.5.0": ("done", 2),
        "branch:release/15.5": ("done", 2),
        "push:v15.5.0": ("done", 2),
    }
    # a third worker finds everything on the remote: nothing is made again
    c = _worker(upstream, tmp_path / "worker-c", database_url)
    _, result = git_step(c, ledger, plan)
    assert result.skipped == 3 and result.done == 0


def _shared(tmp_path: Path, **env: str) -> object:
    base = {"GESTAN_RELEASE_DATABASE_URL": "postgresql://gestan@db.example/gestan"}
    return load(tmp_path, env={**base, **{f"GESTAN_RELEASE_{k}": v for k, v in env.items()}})


def test_the_outbox_is_refused_with_a_shared_database(tmp_path: Path) -> None:
    check_stateless(load(tmp_path, env={}), "full")  # SQLite: the embedded default is fine
    with pytest.raises(ConfigError) as info:
        check_stateless(_shared(tmp_path), "full")
    message = str(info.value)
    assert "X, the forum, mail would go to the outbox" in message
    assert "X_ENABLED, FORUM_ENABLED, SMTP_ENABLED" in message
    assert "UPDATES_URL" in message and "ALLOW_OUTBOX" in message
    real = {"X_ENABLED": "1", "FORUM_ENABLED": "1", "SMTP_ENABLED": "1"}
    with pytest.raises(ConfigError, match="update manifests") as info:
        check_stateless(_shared(tmp_path, **real), "full")
    assert "go to the outbox" not in str(info.value)
    check_stateless(_shared(tmp_path, **real, UPDATES_URL="https://updates.example"), "u")
    # a nightly posts nothing: only the update store matters
    check_stateless(_shared(tmp_path, UPDATES_URL="https://updates.example"), "nightly")
    check_stateless(_shared(tmp_path, ALLOW_OUTBOX="true"), "full")


PEM_SECRET = "stateless-worker-key"


def test_the_signing_key_comes_from_the_environment(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gestan_release.updates.publisher import local_store
    from gestan_release.updates.signing import public_key_b64

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    settings = load(tmp_path, env={"GESTAN_RELEASE_UPDATES_SIGNING_KEY_PEM": pem})
    store = local_store(settings)
    assert store.signer.public_b64() == public_key_b64(key)
    assert not settings.updates_signing_key.exists()  # no key file written on this disk
    assert not any(loss.what == "the update signing key" for loss in inventory(settings))
    bad = load(tmp_path, env={"GESTAN_RELEASE_UPDATES_SIGNING_KEY_PEM": "not a key"})
    with pytest.raises(Exception, match="UPDATES_SIGNING_KEY_PEM is not an unencrypted PEM"):
        local_store(bad)


def _doctor(repo: Path, capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(["--repo", str(repo), "doctor", *args]) == 0
    return capsys.readouterr().out


def test_doctor_shows_sources_and_never_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    secrets = {
        "SMTP_PASSWORD": "smtp-pa55-word",
        "X_BEARER_TOKEN": "x-bearer-t0ken",
        "UPDATES_SIGNING_KEY_PEM": "-----BEGIN PRIVATE KEY-----pem-body",
        "DATABASE_URL": "postgresql://gestan:db-pa55@db.example/gestan",
        "REPO_URL": "https://bot:repo-t0ken@git.example/gestan.git",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(f"GESTAN_RELEASE_{name}", value)
    (tmp_path / "gestan-release.toml").write_text('main_branch = "trunk"\n')
    out = _doctor(tmp_path, capsys, "--format", "json")
    table = _doctor(tmp_path, capsys)
    for text in (out, table):
        for leak in ("smtp-pa55-word", "x-bearer-t0ken", "pem-body", "db-pa55", "repo-t0ken"):
            assert leak not in text
    report = json.loads(out)
    rows = {r["name"]: r for r in report["settings"]}
    assert rows["SMTP_PASSWORD"] == {
        "name": "SMTP_PASSWORD",
        "value": "(set, hidden)",
        "source": "env GESTAN_RELEASE_SMTP_PASSWORD",
    }
    assert rows["MAIN_BRANCH"]["value"] == "trunk"
    assert rows["MAIN_BRANCH"]["source"] == "gestan-release.toml"
    assert (rows["TAG_PREFIX"]["value"], rows["TAG_PREFIX"]["source"]) == ("v", "default")
    assert rows["DATABASE_URL"]["value"] == "postgresql://gestan:***@db.example/gestan"
    assert rows["FORUM_TOKEN"]["value"] == "—"
    lost = [loss["what"] for loss in report["lost_with_this_worker"]]
    # PostgreSQL, REPO_URL, the key from the environment: only the outbox and the update store
    assert lost == ["the outbox (x, forum, mail)", "the update store (signed manifests)"]
    assert "SMTP_PASSWORD" in table and "would take with it" in table


def test_doctor_on_the_embedded_default_lists_every_loss(tmp_path: Path, capsys) -> None:
    report = json.loads(_doctor(tmp_path, capsys, "--format", "json"))
    lost = [loss["what"] for loss in report["lost_with_this_worker"]]
    assert lost == [
        "the ledger and the tickets",
        "the Gestan repository and every tag and branch made in it",
        "the outbox (x, forum, mail)",
        "the update store (signed manifests)",
        "the update signing key",
    ]


def test_secrets_the_environment_leaves_unset_come_from_secret_blocks_in_one_lookup(
    git_repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.common as common

    git_repo.commit("init")
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.invalid/api")
    monkeypatch.setenv("GESTAN_RELEASE_SMTP_PASSWORD", "from-env-Qw8")
    asked: list[set[str]] = []

    def blocks(names: set[str]) -> dict[str, str]:
        asked.append(set(names))
        return {"gestan-release-x-bearer-token": "from-block-Qw8"}

    monkeypatch.setattr(common, "_secret_blocks", blocks)
    settings = common.load_settings(str(git_repo.path))
    assert settings.smtp_password.get_secret_value() == "from-env-Qw8"  # the environment wins
    assert settings.x_bearer_token.get_secret_value() == "from-block-Qw8"
    assert settings.forum_token is None
    [names] = asked  # one lookup, for the secrets still unset only
    assert "gestan-release-x-bearer-token" in names
    assert "gestan-release-smtp-password" not in names
