"""The first mail: the acknowledgement ("prise en compte") of each triaged forum report.

`gestan-release tickets ack [ID…]`, and automatically after a sync. Each mail states the priority,
what it means and the planned delay in the words of Gestan's support page (templates
`mail_ack*.j2`, `_priorites.j2`); flash and haute name the next full version ("15.5").

- Sent once per ticket through the release mails' channel (SMTP, or the Maildir outbox) and
  ledger: the delivery `ack:<id>` of the scope `intake`, recorded `sending` before and `done`
  after (`delivery.deliver`), so no crash sends it twice or loses it.
- Its Message-ID (deterministic) goes on the ticket (`ack_message_id`): the "corrigé" mail of the
  release that fixes it carries `In-Reply-To`/`References` to it and threads under it.
- A priority raised after the acknowledgement (normale → flash) sends one short update mail
  (delivery `ack:<id>:<priority>`, replying to the acknowledgement); a lowered one sends nothing.
- With `FORUM_ACK_REPLY`, the same acknowledgement (without personal data) is also posted once as
  a reply on the discussion (delivery `ack-forum:<id>`).

Only forum-tracked reports are acknowledged: automatically, the open tickets the sync found on the
forum that carry no acknowledgement yet; by id, any open forum-tracked ticket with a forum URL
(tickets added by hand included). A ticket imported with an `ack_message_id` was acknowledged
elsewhere and is left alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gestan_release.channels.base import ForumComment, Mail
from gestan_release.errors import GestanReleaseError
from gestan_release.release.messages import mail_domain, mail_texts
from gestan_release.settings import Settings
from gestan_release.text.templating import render_template, safe_url
from gestan_release.text.usertext import discussion_id, flat
from gestan_release.tickets.values import Priority, Ticket

SCOPE = "intake"


@dataclass(frozen=True)
class Scope:
    """What `delivery.deliver` / `once` need of a release: the ledger scope of the deliveries."""

    version: str = SCOPE


INTAKE = Scope()


def ack_message_id(ticket: Ticket, mail_from: str, priority: Priority | None = None) -> str:
    """Deterministic Message-ID (no angle brackets) of the acknowledgement of `ticket` (or of
    its update to `priority`): a re-sent mail after a crash is the same message."""
    digest = hashlib.sha256(ticket.reporter_email.strip().lower().encode("utf-8")).hexdigest()[:12]
    middle = f"{ticket.id}.{priority.value}" if priority else str(ticket.id)
    return f"gestan-release.ack.{middle}.{digest}@{mail_domain(mail_from)}"


@dataclass(frozen=True)
class _View:
    id: int
    title: str
    url: str | None


def _view(ticket: Ticket) -> _View:
    return _View(ticket.id, flat(ticket.title), safe_url(ticket.forum_url))


def ack_mail(ticket: Ticket, mail_from: str, next_label: str | None) -> Mail:
    """The acknowledgement of `ticket` at its current priority (pure)."""
    message_id = ack_message_id(ticket, mail_from)
    return _mail_to_reporter(ticket, "mail_ack", f"ack:{ticket.id}", message_id, next_label)


def raise_mail(
    ticket: Ticket, previous: Priority, ack_id: str, mail_from: str, next_label: str | None
) -> Mail:
    """The short update when the priority went up from `previous` (replies to the ack)."""
    return _mail_to_reporter(
        ticket,
        "mail_ack_raised",
        f"ack:{ticket.id}:{ticket.priority.value}",
        ack_message_id(ticket, mail_from, ticket.priority),
        next_label,
        in_reply_to=ack_id,
        previous=previous.value,
    )


def _mail_to_reporter(
    ticket: Ticket,
    template: str,
    key: str,
    message_id: str,
    next_label: str | None,
    in_reply_to: str | None = None,
    **extra: Any,
) -> Mail:
    context = {
        "ticket": _view(ticket),
        "priority": ticket.priority.value,
        "reporter": flat(ticket.reporter_name or ""),
        "next_label": next_label,
        **extra,
    }
    return Mail(
        key=key,
        to_name=ticket.reporter_name,
        to_email=ticket.reporter_email,
        **mail_texts(template, **context),
        message_id=message_id,
        in_reply_to=in_reply_to,
        ticket_ids=(ticket.id,),
    )


def ack_comment(ticket: Ticket, discussion: int, next_label: str | None) -> ForumComment:
    marker = f"<!-- gestan-release:ack:{ticket.id} -->"
    body = render_template(
        "forum_ack_comment.md.j2",
        priority=ticket.priority.value,
        next_label=next_label,
        marker=marker,
    ).strip()
    return ForumComment(
        key=f"ack-forum:{ticket.id}", discussion_id=discussion, body=body + "\n", marker=marker
    )


def next_full_label(settings: Settings) -> str | None:
    """The next full version ("15.5") of the repository, or None when it cannot be told."""
    from gestan_release.release.planning import next_version

    try:
        return next_version(settings, "minor").version.label
    except GestanReleaseError:
        return None


# --------------------------------------------------------------------------------------------
@dataclass
class AckResult:
    acknowledged: list[tuple[int, str]] = field(default_factory=list)  # (id, priority)
    raised: list[tuple[int, str, str]] = field(default_factory=list)  # (id, old, new)
    refused: list[tuple[int, str]] = field(default_factory=list)  # asked by id, not sent: why
    already: list[int] = field(default_factory=list)
    too_old: list[int] = field(default_factory=list)  # not automatic: reported too long ago
    failed: list[tuple[str, str]] = field(default_factory=list)
    step: Any = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        parts = [f"{len(self.acknowledged)} acknowledgement(s) sent"]
        if self.raised:
            parts.append(f"{len(self.raised)} priority raise(s) mailed")
        if self.already:
            parts.append(f"{len(self.already)} already acknowledged")
        if self.refused:
            parts.append(f"{len(self.refused)} not acknowledgeable")
        if self.too_old:
            parts.append(
                f"{len(self.too_old)} reported more than ACK_MAX_AGE_DAYS ago, not acknowledged "
                "automatically (`tickets ack ID` sends one)"
            )
        if self.failed:
            parts.append(f"{len(self.failed)} failed (run `gestan-release tickets ack` again)")
        return "ack: " + ", ".join(parts)


def _eligible(ticket: Ticket | None, report: Any, ticket_id: int) -> str | None:
    """Why `ticket_id` cannot be acknowledged, or None."""
    if ticket is None:
        if report is not None and report.state == "a-trier":
            return "à trier on the forum (no priority tag yet): tag it, sync, then acknowledge"
        if report is not None:
            return f"not a ticket ({report.state}: {report.reason})"
        return "not in the ticket store"
    if report is not None and report.state in ("deleted", "ecarte"):
        return f"its forum report is {report.state}: {report.reason}"
    if ticket.status != "open":
        return f"already {ticket.status}: the 'fixed' mail is what it gets"
    if not ticket.forum_tracked or discussion_id(ticket.forum_url) is None:
        return "not tracked through the forum (no forum discussion URL): no acknowledgement"
    return None


def acknowledge(
    settings: Settings,
    ledger: Any,
    store: Any,
    senders: dict[str, Any],
    ids: Iterable[int] | None = None,
    progress: Any = None,
) -> AckResult:
    """Send the acknowledgements (all due ones, or those of `ids`) and the priority raises."""
    from gestan_release.release.delivery import StepResult, deliver
    from gestan_release.tickets.store import TicketStore

    tickets_store = TicketStore(settings.database_url)
    result = AckResult(step=StepResult("ack"))
    explicit = ids is not None
    wanted = sorted(set(ids)) if ids is not None else store.ack_candidates()
    tickets = tickets_store.get_many(wanted)
    reports = {r.discussion_id: r for r in store.reports_among(wanted)}
    acks = store.acks(wanted)
    due: list[Ticket] = []
    oldest = None
    if not explicit and settings.ack_max_age_days > 0:
        import datetime as dt

        oldest = dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.ack_max_age_days)
    for tid in wanted:
        t = tickets.get(tid)
        if tid in acks or (t is not None and t.ack_message_id):
            result.already.append(tid)
            continue
        why = _eligible(t, reports.get(tid), tid)
        if why is not None:
            if explicit:
                result.refused.append((tid, why))
            continue
        assert t is not None
        reported = getattr(reports.get(tid), "date_inserted", None)
        if oldest is not None and reported is not None and reported < oldest:
            result.too_old.append(tid)
            continue
        due.append(t)
    raised_ids = [t for t in store.raise_candidates() if not explicit or t in set(wanted)]
    raising = list(tickets_store.get_many(raised_ids).values())
    all_acks = store.acks([t.id for t in raising]) if raising else {}
    if not due and not raising:
        return result
    next_label = next_full_label(settings)
    mail_from = settings.mail_from
    mails = [ack_mail(t, mail_from, next_label) for t in due]
    raise_mails = [
        raise_mail(t, all_acks[t.id].priority, all_acks[t.id].message_id, mail_from, next_label)
        for t in raising
    ]
    step = result.step
    receipts = deliver(ledger, INTAKE, senders["mail"], mails + raise_mails, "mail", step)
    result.failed = list(step.failed)
    by_key = {m.key: m for m in mails}
    for t in due:
        if f"ack:{t.id}" in receipts:
            store.record_ack(t.id, t.priority, by_key[f"ack:{t.id}"].message_id)
            result.acknowledged.append((t.id, t.priority.value))
    for t in raising:
        if f"ack:{t.id}:{t.priority.value}" in receipts:
            store.record_raise(t.id, t.priority)
            result.raised.append((t.id, all_acks[t.id].priority.value, t.priority.value))
    if settings.forum_ack_reply:
        comments = [
            ack_comment(t, did, next_label)
            for t in due
            if f"ack:{t.id}" in receipts and (did := discussion_id(t.forum_url)) is not None
        ]
        forum_step = StepResult("ack forum")
        deliver(ledger, INTAKE, senders["forum"], comments, "forum", forum_step)
        result.failed += forum_step.failed
    return result


def run_ack(settings: Settings, store: Any, ledger: Any, ids: list[int] | None) -> AckResult:
    """`acknowledge` through the channels the settings enable (closed after): what `tickets ack`,
    `tickets sync`, the `intake` flow and the demo run."""
    from gestan_release.channels import check_settings, close_all, senders_for

    check_settings(settings)
    senders = senders_for(settings)
    try:
        return acknowledge(settings, ledger, store, senders, ids)
    finally:
        close_all(senders)
