"""A history every rule of the ticket reading shows in (a fix, trailers, a commit and its revert,
a revert of an older release's fix, a `Refs:` mention), with its tickets in the store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gestan_release.settings import load
from gestan_release.tickets.store import TicketStore
from gestan_release.tickets.values import Priority, Ticket

if TYPE_CHECKING:
    from conftest import GitRepo


def ticket(tid: int, prio: str, title: str, forum: bool = True) -> Ticket:
    return Ticket(
        id=tid,
        title=title,
        priority=Priority(prio),
        reporter_name="Zoé Lefèvre",
        reporter_email="zoe@example.com",
        forum_url=f"https://forum.gestan.fr/discussion/{tid}/t" if forum else None,
        forum_tracked=forum,
    )


def every_rule_history(repo: GitRepo) -> tuple[GitRepo, dict[str, str]]:
    """v15.3.0, then a range with every rule of the history module, and its tickets in the store:
    the repository and the shas by name (a, b, c, revert_old, head)."""
    repo.commit("init")
    old = repo.commit("Corrige le lettrage #106")
    repo.tag("v15.3.0")
    a = repo.commit("Corrige l'édition des factures #101", author="Zoé <z@gestan.test>")
    b = repo.commit("Export\r\n\r\nCorrige: #103, #104\r\n", author="Marc <m@gestan.test>")
    bad = repo.commit("Tentative #105", author="Marc <m@gestan.test>")
    repo.revert(bad)
    revert_old = repo.revert(old)
    c = repo.commit("Nettoyage\n\nRefs: #101\nTicket: 999", author="Marc <m@gestan.test>")
    store = TicketStore(load(repo.path).database_url)
    for t in (
        ticket(101, "haute", "Facture **fausse**"),
        ticket(103, "flash", "Export FEC"),
        ticket(104, "basse", "Libellé", forum=False),
        ticket(105, "normale", "Jamais corrigé"),
        ticket(106, "normale", "Lettrage"),
    ):
        store.add(t)
    return repo, {"a": a, "b": b, "c": c, "revert_old": revert_old, "head": repo.head()}
