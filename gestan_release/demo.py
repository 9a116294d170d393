"""`gestan-release demo`: a sandbox with a realistic history, then a full release and a U hotfix.

Before the releases, the triaged reports of a built-in sandbox forum are taken in and acknowledged
(`tickets sync`), so the "fixed" mails thread under the acknowledgements; after them, the
promises report is written.

The sandbox: Gestan 15.3 and 15.4 already released (tags), 15.4 U1 shipped from `release/15.4`
with a flash fix that was also merged into main, a new flash fix waiting on `release/15.4`, and on
`main` fixes of every priority (one reverted, one referencing a ticket the store does not know).
Everything goes to the embedded default: the outbox and the local update store.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from gestan_release.errors import GestanReleaseError
from gestan_release.history.git import run

TICKETS = [
    (
        3101,
        "Plantage à l'ouverture d'une facture avec remise",
        "flash",
        "Zoé Lefèvre",
        "zoe.lefevre@example.com",
    ),
    (
        3102,
        "Export FEC : TVA intracommunautaire absente",
        "flash",
        "Marc Dubois",
        "marc.dubois@example.com",
    ),
    (
        3110,
        "Relances clients : mauvais modèle de mail",
        "haute",
        "Zoé Lefèvre",
        "zoe.lefevre@example.com",
    ),
    (
        3111,
        "Lenteur de la liste des articles (> 10 000)",
        "haute",
        "Chloé Martin",
        "chloe.martin@example.com",
    ),
    (
        3120,
        "Tri des devis par date de validité",
        "normale",
        "Benoît Girard",
        "benoit.girard@example.com",
    ),
    (
        3121,
        "Libellé tronqué dans l'édition du bon de livraison",
        "normale",
        "Agnès Roux",
        "agnes.roux@example.com",
    ),
    (
        3130,
        "Faute d'orthographe dans le menu « Paramètres »",
        "basse",
        "Hélène Petit",
        "helene.petit@example.com",
    ),
    (
        3131,
        "Couleur du bouton **Valider** <peu lisible>",
        "basse",
        "Chloé Martin",
        "chloe.martin@example.com",
    ),
    (
        3140,
        "Import bancaire : format CFONB 120",
        "haute",
        "Support téléphonique",
        "support@example.com",
    ),
]

BUILD = (
    "mkdir -p dist && printf 'Gestan %s installer\\n' \"$GESTAN_VERSION\" "
    "> dist/gestan-$GESTAN_VERSION-win64.exe"
)


# The sandbox's commits carry the team's identity, whatever the machine's git config says.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Équipe Gestan",
    "GIT_AUTHOR_EMAIL": "dev@gestan.test",
    "GIT_COMMITTER_NAME": "Équipe Gestan",
    "GIT_COMMITTER_EMAIL": "dev@gestan.test",
}


def _git(repo: Path, *args: str) -> str:
    return run(repo, *args, env=_IDENTITY).strip()


def _commit(repo: Path, message: str, path: str, author: str | None = None) -> str:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as fh:
        fh.write(f"{message.splitlines()[0]}\n")
    _git(repo, "add", path)
    args = ["commit", "-q", "-m", message]
    if author:
        args += ["--author", author]
    _git(repo, *args)
    return _git(repo, "rev-parse", "HEAD")


def build_sandbox(root: Path) -> Path:
    """The sandbox repository with its tickets and settings; returns the repository path."""
    repo = root / "gestan"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    # The sandbox's own identity: the release tags and the version bump commits need one, and a
    # fresh machine may have no global git identity.
    _git(repo, "config", "user.name", "Équipe Gestan")
    _git(repo, "config", "user.email", "release@gestan.test")
    _git(repo, "config", "commit.gpgsign", "false")
    _git(repo, "config", "tag.gpgsign", "false")
    (repo / "gestan-release.toml").write_text(
        f'build_command = "{BUILD.replace(chr(34), chr(92) + chr(34))}"\n'
        'artifacts = "dist/*.exe"\n'
        'version_file = "VERSION"\n',
        encoding="utf-8",
    )
    (repo / ".gitignore").write_text("dist/\n", encoding="utf-8")
    (repo / "VERSION").write_text("15.3.0\n", encoding="utf-8")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "Gestan 15.3")
    _git(repo, "tag", "-a", "v15.3.0", "-m", "Gestan 15.3")
    _commit(repo, "Facturation : arrondi des remises en pied\n\nTicket: 3001", "src/factures.py")
    _commit(repo, "Version 15.4", "VERSION")
    _git(repo, "tag", "-a", "v15.4.0", "-m", "Gestan 15.4")
    _git(repo, "branch", "release/15.4")

    # 15.4 U1, from the maintenance branch, with a flash fix merged back into main.
    _git(repo, "checkout", "-q", "release/15.4")
    u1 = _commit(
        repo,
        "Corrige le plantage à l'ouverture d'une facture avec remise\n\nCorrige: #3101",
        "src/factures.py",
        "Zoé Lefèvre <zoe@gestan.test>",
    )
    _git(repo, "tag", "-a", "v15.4.1", "-m", "Gestan 15.4 U1")
    # A new flash fix, not yet shipped: `status` recommends a U version.
    flash = _commit(
        repo,
        "Export FEC : ajoute la TVA intracommunautaire\r\n\r\nFixes: #3102\r\n",
        "src/fec.py",
        "Marc Dubois <marc@gestan.test>",
    )
    _git(repo, "checkout", "-q", "main")
    _git(repo, "cherry-pick", "-x", u1)
    _git(repo, "cherry-pick", "-x", flash)
    _commit(repo, "Relances : utilise le modèle choisi par le client (#3110)", "src/relances.py")
    bad = _commit(repo, "Articles : index sur la désignation #3111", "src/articles.py")
    _git(repo, "revert", "--no-edit", bad)
    _commit(repo, "Articles : pagination de la liste\n\nCloses: 3111", "src/articles.py")
    _commit(repo, "Devis : tri par date de validité\n\nTicket: 3120, 3121", "src/devis.py")
    _commit(repo, "Menu Paramètres : orthographe #3130", "src/menus.py")
    _commit(
        repo, "Thème : contraste du bouton Valider\n\nCorrige: #3131\nRefs: #3110", "src/theme.py"
    )
    _commit(repo, "Banque : import CFONB 120\n\nTicket: 3140", "src/banque.py")
    _commit(repo, "Nettoyage du module de stock #3199", "src/stock.py")  # unknown ticket
    return repo


def import_tickets(repo: Path) -> Path:
    rows = [
        {
            "id": tid,
            "title": title,
            "priority": prio,
            "reporter_name": name,
            "reporter_email": email,
            "forum_url": None
            if tid == 3140
            else f"https://forum.gestan.fr/discussion/{tid}/ticket-{tid}",
            "forum_tracked": tid != 3140,
            "ack_message_id": f"ack-{tid}@support.gestan.fr" if tid in (3101, 3110) else None,
        }
        for tid, title, prio, name, email in TICKETS
    ]
    path = repo.parent / "tickets.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def run_demo(directory: str | None) -> Path:
    from rich.console import Console

    from gestan_release.prefect.flowrun import run_flow
    from gestan_release.settings import load
    from gestan_release.terminal.console import View
    from gestan_release.tickets.store import TicketStore

    console = Console()
    if directory:
        root = Path(directory).expanduser().resolve()
        if root.exists() and any(root.iterdir()):
            raise GestanReleaseError(f"{root} is not empty: give --dir a new or empty directory")
    else:
        root = Path(tempfile.mkdtemp(prefix="gestan-release-demo-"))
    console.rule("[bold]gestan-release demo")
    console.print(f"Sandbox in [bold]{root}[/]")
    repo = build_sandbox(root)
    tickets_file = import_tickets(repo)
    settings = load(repo)
    from gestan_release.store.db import ensure_state_dir

    ensure_state_dir(settings)
    TicketStore(settings.database_url).import_file(tickets_file)
    console.print(f"{len(TICKETS)} tickets imported from {tickets_file.name}")

    acks_shown = run_intake(console, settings)

    console.rule("1. Full release from main (gestan-release release)")
    result = run_flow("release", View(), repo=str(repo))
    console.print(f"[green]✓[/] {result['label']} released ({result['tag']})")

    console.rule("2. U hotfix from release/15.4 (gestan-release hotfix)")
    result = run_flow("hotfix", View(), repo=str(repo), branch="release/15.4")
    console.print(f"[green]✓[/] {result['label']} released ({result['tag']})")

    outbox = settings.outbox_dir
    assert outbox is not None and settings.state_dir is not None
    console.rule("Where to look")
    console.print(f"repository      {repo}   (git log --oneline --decorate --all)")
    console.print(f"mails (Maildir) {outbox / 'mail'}   (mutt -f {outbox / 'mail'})")
    console.print(f"X posts         {outbox / 'x'}")
    console.print(f"forum posts     {outbox / 'forum'}")
    console.print(
        f"update store    {settings.updates_dir}   (gestan-release serve-updates --data …)"
    )
    console.print(f"ledger          {settings.database_url}")
    report = demo_report(settings)
    console.print(f"acknowledgements {acks_shown} mail(s) 'pris en compte' in the same Maildir")
    console.print(f"promises report {report}   (open it in a browser; works offline)")
    console.print(f"next            gestan-release --repo {repo} status")
    console.print(f"                gestan-release --repo {repo} tickets list --status a-trier")
    return repo


def run_intake(console: Any, settings: Any) -> int:
    """Take the sandbox forum's triaged reports in and acknowledge them (offline), as the
    `intake` flow does every 15 minutes; returns how many acknowledgements went out."""
    from gestan_release.channels.forum_reader import ForumReader
    from gestan_release.settings import Secret
    from gestan_release.store.ledger import Ledger
    from gestan_release.support.acks import run_ack
    from gestan_release.support.intake import sync
    from gestan_release.support.intake_store import IntakeStore
    from gestan_release.support.sandbox_forum import BASE_URL, CATEGORY, TOKEN, SandboxForum

    console.rule("0. Bug reports from the forum (gestan-release tickets sync)")
    forum = settings.replace(
        forum_base_url=BASE_URL,
        forum_token=Secret(TOKEN),
        forum_bug_categories=(CATEGORY[1],),
    )
    store = IntakeStore(settings.database_url)
    reader = ForumReader(BASE_URL, TOKEN, transport=SandboxForum().transport())
    with reader:
        summary = sync(forum, reader, store)
    console.print(f"[green]✓[/] {summary.line()} (a built-in sandbox forum, offline)")
    for tid, reason in summary.set_aside:
        console.print(f"  #{tid} set aside: {reason}")
    result = run_ack(settings, store, Ledger(settings.database_url), None)
    console.print(f"[green]✓[/] {result.line()}")
    for tid, priority in result.acknowledged:
        console.print(f"  #{tid} acknowledged ({priority})")
    return len(result.acknowledged)


def demo_report(settings: Any) -> Path:
    """The promises report of the sandbox (`gestan-release report`)."""
    from gestan_release.support.report import nightly_report

    path, _ = nightly_report(settings)
    return path
