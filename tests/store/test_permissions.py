"""Files holding personal data (issue 9, decision): the database and the outbox (reporters' names
and addresses) are created readable by their owner only — 0600 files in 0700 directories —
whatever the umask."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gestan_release.channels.base import Mail, Post
from gestan_release.channels.outbox import channel_outboxes
from gestan_release.cli import main
from gestan_release.store import db


@pytest.fixture(autouse=True)
def _permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: files 0644, directories 0755
    db.dispose_all()
    yield
    os.umask(old)
    db.dispose_all()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_dir_and_the_database_are_private(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    add = ["tickets", "add", "--id", "1", "--title", "T", "--priority", "haute"]
    assert main(["--repo", str(repo), *add, "--reporter", "Alice <alice@example.com>"]) == 0
    state = repo / ".gestan-release"
    assert mode(state) == 0o700
    files = [p for p in state.iterdir() if p.name.startswith("gestan.db")]
    assert state / "gestan.db" in files
    assert {p.name: mode(p) for p in files} == dict.fromkeys((p.name for p in files), 0o600)


def test_the_outbox_is_private(tmp_path: Path) -> None:
    senders = channel_outboxes(tmp_path / "outbox")
    mail = Mail(
        key="mail:15.4.1:alice@example.com",
        to_name="Alice Martin",
        to_email="alice@example.com",
        subject="Gestan 15.4 U1",
        text="Bonjour\n",
        html="<p>Bonjour</p>\n",
        message_id="gestan-release.15.4.1.a@gestan.fr",
    )
    senders["mail"].send(mail)
    senders["x"].send(Post(key="x:15.4.1", text="Gestan 15.4 U1", marker="15.4.1"))
    maildir = tmp_path / "outbox" / "mail"
    assert {sub: mode(maildir / sub) for sub in ("tmp", "new", "cur")} == dict.fromkeys(
        ("tmp", "new", "cur"), 0o700
    )
    [delivered] = (maildir / "new").iterdir()
    assert mode(delivered) == 0o600
    [post] = (tmp_path / "outbox" / "x").iterdir()
    assert mode(post) == 0o600 and mode(post.parent) == 0o700
