"""`gestan-release status`: where releases stand, read from the ledger and git (changes nothing)."""

from __future__ import annotations

from typing import Any

from gestan_release.errors import GitError
from gestan_release.history.git import resolve_commit
from gestan_release.history.git import toplevel as ensure_repo
from gestan_release.release.planning import changelog_for, maintenance_branches, resolve_range
from gestan_release.settings import Settings
from gestan_release.tickets.values import Priority


def status(settings: Settings) -> dict[str, Any]:
    """Last releases, undone deliveries, fixed-but-unreleased tickets, recommended U versions."""
    from gestan_release.store.ledger import Ledger

    repo = ensure_repo(settings.repo)
    settings = settings.replace(repo=repo)
    ledger = Ledger.existing(settings.database_url)
    releases = ledger.releases(10) if ledger else []
    undone = ledger.deliveries(undone=True) if ledger else []
    data: dict[str, Any] = {
        "releases": [
            {
                "version": r.version,
                "label": r.label,
                "kind": r.kind,
                "state": r.state,
                "tag": r.tag,
                "started_at": r.started_at.isoformat(),
            }
            for r in releases
        ],
        "undone": [
            {
                "key": d.key,
                "version": d.version,
                "state": d.state,
                "attempts": d.attempts,
                "error": d.last_error,
            }
            for d in undone
        ],
        "unreleased": {},
        "recommended_u": [],
    }
    data["promises"] = promises_summary(settings)
    try:
        resolve_commit(repo, settings.main_branch)
        rng = resolve_range(repo, settings.main_branch, None, settings.tag_prefix)
        log = changelog_for(settings, rng)
        data["unreleased"] = {
            str(p): [{"id": e.ticket.id, "title": e.ticket.title} for e in entries]
            for p, entries in log.by_priority()
        }
        data["unreleased_unknown"] = list(log.unknown)
    except GitError:
        data["unreleased"] = {}
    for line, branch in maintenance_branches(repo):
        rng = resolve_range(repo, branch, None, settings.tag_prefix, line=line)
        if rng.from_ref is None:
            continue
        log = changelog_for(settings, rng)
        flash = [e for e in log.entries if e.ticket.priority is Priority.FLASH]
        if flash:
            data["recommended_u"].append(
                {
                    "branch": branch,
                    "since": rng.from_ref,
                    "tickets": [{"id": e.ticket.id, "title": e.ticket.title} for e in flash],
                    "advice": "U version recommended",
                }
            )
    return data


def promises_summary(settings: Settings) -> dict[str, Any]:
    """Gestan's promises, kept / at risk / broken (the one-screen part of `status`)."""
    import datetime as dt

    from gestan_release.support.promise_facts import load_facts
    from gestan_release.support.promises import measure

    facts = load_facts(settings.database_url or "")
    return measure(facts, now=dt.datetime.now(dt.UTC), settings=settings).summary()


def _render_promises(console: Any, promises: dict[str, Any]) -> None:
    from rich.table import Table

    flash, haute = promises["flash"], promises["haute"]
    table = Table(title="Promesses du support", title_justify="left")
    for col in ("promesse", "tenues", "à risque", "rompues"):
        table.add_column(col)
    table.add_row(
        "flash : toujours dans la version suivante",
        f"{flash['kept']}"
        + (f" (+{flash['overridden']} dérogation)" if flash["overridden"] else ""),
        f"[yellow]{flash['at_risk']}[/]" if flash["at_risk"] else "0",
        f"[bold red]{flash['broken']}[/]" if flash["broken"] else "0",
    )
    table.add_row(
        "haute : 3 ou 4 versions en moyenne",
        str(haute["kept"]),
        f"[yellow]{haute['at_risk']}[/]" if haute["at_risk"] else "0",
        f"[bold red]{haute['broken']}[/]" if haute["broken"] else "0",
    )
    console.print(table)
    for t in flash["open_too_long"]:
        hours = t["support_minutes"] / 60
        console.print(
            f"[bold red]flash #{t['id']} ouvert depuis {hours:.1f} h (heures de support)[/]: "
            f"{t['title']}"
        )
    backlog = promises["backlog"]
    console.print(
        f"Reste à faire : {backlog.get('normale', 0)} normale, {backlog.get('basse', 0)} basse "
        "(gestan-release report pour le détail)"
    )


def render_status(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="Dernières versions", title_justify="left")
    for col in ("version", "libellé", "type", "état", "démarrée"):
        table.add_column(col)
    for r in data["releases"]:
        table.add_row(r["version"], r["label"], r["kind"], r["state"], r["started_at"][:19])
    if data["releases"]:
        console.print(table)
    else:
        console.print("Aucune version dans le registre.")
    if data["undone"]:
        table = Table(title="Livraisons non terminées", title_justify="left")
        for col in ("clé", "état", "tentatives", "erreur"):
            table.add_column(col)
        for d in data["undone"]:
            table.add_row(d["key"], d["state"], str(d["attempts"]), (d["error"] or "")[:80])
        console.print(table)
        versions = sorted({d["version"] for d in data["undone"]} - {"intake"})
        if versions:
            console.print(f"→ gestan-release resume {' / '.join(versions)}")
        if any(d["version"] == "intake" for d in data["undone"]):
            console.print("→ gestan-release tickets ack  (acknowledgements left undone)")
    if data["unreleased"]:
        table = Table(title="Corrigés sur main, pas encore publiés", title_justify="left")
        table.add_column("priorité")
        table.add_column("tickets")
        for prio, items in data["unreleased"].items():
            table.add_row(prio, ", ".join(f"#{t['id']} {t['title']}" for t in items))
        console.print(table)
    if data.get("promises"):
        _render_promises(console, data["promises"])
    for rec in data["recommended_u"]:
        ids = ", ".join(f"#{t['id']} {t['title']}" for t in rec["tickets"])
        console.print(
            f"[bold red]U version recommended[/] on {rec['branch']}: flash fix(es) since "
            f"{rec['since']} not yet shipped: {ids} "
            f"→ gestan-release hotfix --branch {rec['branch']}"
        )
