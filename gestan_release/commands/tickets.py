"""`gestan-release tickets import|add|list|show`: fill and read the ticket store."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gestan_release.commands import add_format, command, note, settings_from
from gestan_release.core.validation import ticket_id_arg, url_host
from gestan_release.errors import TicketError
from gestan_release.tickets.values import STATUSES, Priority, Ticket

PRIORITIES = [p.value for p in Priority]
# Forum reports that are not tickets (yet): listed from the intake's store.
INTAKE_STATUSES = ("a-trier", "ecarte")

_FIELDS_HELP = (
    "fields: id (int), title, priority (flash|haute|normale|basse), reporter_name, "
    "reporter_email, forum_url (or empty), forum_tracked (true/false, default true), "
    "ack_message_id (or empty), status (optional: open|fixed|released; absent keeps the stored one)"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tickets",
        help="import, add, list, show; take in from the forum (sync) and acknowledge (ack)",
        description="The ticket store (DATABASE_URL): the bugs releases fix and who reported them.",
    )
    sub = parser.add_subparsers(dest="tickets_command", metavar="ACTION", required=True)

    imp = command(sub, "import", cmd_import, epilog=_FIELDS_HELP)
    imp.add_argument("file", metavar="FILE", help="a .json or .csv file")

    add = command(sub, "add", cmd_add)
    add.add_argument(
        "--id", type=ticket_id_arg, required=True, metavar="N", help="ticket id (forum id)"
    )
    add.add_argument("--title", required=True, metavar="T", help="one-line summary of the bug")
    add.add_argument("--priority", required=True, choices=PRIORITIES, help="support's triage")
    add.add_argument(
        "--reporter",
        required=True,
        metavar='"NAME <MAIL>"',
        help='who reported it, e.g. "Alice Martin <alice@example.com>"',
    )
    add.add_argument("--forum-url", metavar="URL", help="the forum discussion of the report")
    add.add_argument(
        "--not-forum",
        action="store_true",
        help="not tracked through the forum: the reporter gets no mail when it is fixed",
    )
    add.add_argument(
        "--ack-message-id",
        metavar="ID",
        help="Message-ID of the acknowledgement mail, so the 'fixed' mail joins its thread",
    )

    lst = command(sub, "list", cmd_list)
    lst.add_argument("--priority", choices=PRIORITIES, help="only this priority")
    lst.add_argument(
        "--status",
        choices=(*STATUSES, *INTAKE_STATUSES),
        help="only this status; a-trier: forum reports without a priority tag yet, ecarte: "
        "forum reports set aside (with the reason)",
    )
    add_format(lst, "table", "json")

    show = command(sub, "show", cmd_show)
    show.add_argument("id", type=ticket_id_arg, metavar="N", help="ticket id")
    add_format(show, "text", "json")

    from gestan_release.commands.intake import register_tickets

    register_tickets(sub)


def _store(args: argparse.Namespace) -> Any:
    from gestan_release.store.db import ensure_state_dir
    from gestan_release.tickets.store import TicketStore

    settings = settings_from(args)
    ensure_state_dir(settings)
    assert settings.database_url is not None
    return TicketStore(settings.database_url)


def cmd_import(args: argparse.Namespace) -> int:
    """load tickets from a .json or .csv file (all or nothing)

    Add or update every ticket of FILE: a .json array of objects or a .csv whose header names the
    columns. The whole file is checked first; if any row is bad, every problem is listed with its
    line and nothing is written."""
    from gestan_release.terminal.console import View
    from gestan_release.tickets.importer import read_import_file

    settings = settings_from(args)
    # Checked completely before the store is even opened.
    rows = read_import_file(args.file, forum_host=url_host(settings.forum_base_url))
    store = _store(args)
    # A live bar on a terminal (on stderr, like the note), plain milestones otherwise.
    with View(out=sys.stderr).watching() as display:
        summary = store.import_rows(rows, display)
    note(str(summary))
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    """add or update one ticket

    Add a ticket, or update the one with that id (its status is kept)."""
    from gestan_release.tickets.fields import parse_reporter, ticket_from_mapping

    name, email = parse_reporter(args.reporter)
    ticket, _, problems = ticket_from_mapping(
        {
            "id": str(args.id),
            "title": args.title,
            "priority": args.priority,
            "reporter_name": name,
            "reporter_email": email,
            "forum_url": args.forum_url,
            "forum_tracked": not args.not_forum,
            "ack_message_id": args.ack_message_id,
        },
        forum_host=url_host(settings_from(args).forum_base_url),
    )
    if problems:
        raise TicketError(f"ticket {args.id} not saved: " + "; ".join(problems))
    outcome = _store(args).add(ticket)
    verb = {"new": "added", "updated": "updated", "unchanged": "unchanged:"}[outcome]
    note(f"{verb} ticket {ticket.id} ({ticket.priority.value}) {ticket.title}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """list tickets, most urgent first

    List the stored tickets, most urgent first, then by id."""
    if args.status in INTAKE_STATUSES:
        return _list_reports(args)
    tickets = _store(args).list(priority=args.priority, status=args.status)
    if args.format == "json":
        json.dump([t.to_json() for t in tickets], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    if not tickets:
        note("no tickets" + ("" if not (args.priority or args.status) else " match"))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column, options in (
        ("id", {"justify": "right"}),
        ("priority", {}),
        ("status", {}),
        ("title", {"overflow": "fold"}),
        ("reporter", {}),
        ("forum", {}),
    ):
        table.add_column(column, **options)
    for t in tickets:
        table.add_row(
            str(t.id),
            t.priority.value,
            t.status,
            t.title,
            f"{t.reporter_name} <{t.reporter_email}>" if t.reporter_name else t.reporter_email,
            "yes" if t.forum_tracked else "no",
        )
    console = Console(highlight=False)
    if not console.is_terminal:  # piped or redirected: never cut a title to fit 80 columns
        console = Console(highlight=False, width=100_000)
    console.print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """show one ticket

    Show one stored ticket."""
    ticket = _store(args).get(args.id)
    if ticket is None:
        raise TicketError(
            f"ticket {args.id} is not in the store; add it with `gestan-release tickets add` "
            "or `tickets import`"
        )
    if args.format == "json":
        print(json.dumps(ticket.to_json(), ensure_ascii=False, indent=2))
    else:
        print(_as_text(ticket))
    return 0


def _as_text(ticket: Ticket) -> str:
    reporter = ticket.reporter_email
    if ticket.reporter_name:
        reporter = f"{ticket.reporter_name} <{ticket.reporter_email}>"
    lines = [
        f"#{ticket.id} {ticket.title}",
        f"priority:        {ticket.priority.value}",
        f"status:          {ticket.status}",
        f"reporter:        {reporter}",
        f"forum:           {ticket.forum_url or '-'}"
        + ("" if ticket.forum_tracked else " (not tracked: no mail)"),
        f"ack message-id:  {ticket.ack_message_id or '-'}",
    ]
    if ticket.created_at:
        lines.append(f"created:         {ticket.created_at:%Y-%m-%d %H:%M:%S %Z}")
    if ticket.updated_at:
        lines.append(f"updated:         {ticket.updated_at:%Y-%m-%d %H:%M:%S %Z}")
    return "\n".join(lines)


def _list_reports(args: argparse.Namespace) -> int:
    """`tickets list --status a-trier|ecarte`: forum reports the intake did not make tickets."""
    from gestan_release.support.intake_store import IntakeStore

    store = _store(args)
    reports = [
        r
        for r in IntakeStore(store.url).reports(state=args.status)
        if args.priority is None or (r.priority and r.priority.value == args.priority)
    ]
    if args.format == "json":
        json.dump([r.to_json() for r in reports], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    if not reports:
        note(f"no forum report {args.status}")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("id", "status", "title", "reporter", "reported", "why"):
        table.add_column(column, overflow="fold")
    for r in reports:
        table.add_row(
            str(r.discussion_id),
            r.state,
            r.title,
            r.reporter_name or "",
            f"{r.date_inserted:%Y-%m-%d %H:%M}" if r.date_inserted else "",
            r.reason or ("no priority tag yet" if r.state == "a-trier" else ""),
        )
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=100_000)
    console.print(table)
    return 0
