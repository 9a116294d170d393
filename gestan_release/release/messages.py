"""Every message of a release, built from its notes: the X post, the forum topic, one comment per
fixed forum report, one mail per reporter, and the dry-run preview.

Pure functions of `ReleaseNotes` (no I/O): texts come from the French Jinja2 templates in
`gestan_release/text/templates/`; senders (`gestan_release.channels`) deliver them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from gestan_release.channels.base import ForumComment, ForumTopic, Mail, Message, Post
from gestan_release.errors import ReleaseError
from gestan_release.history.versions import Version
from gestan_release.release.changelog import Changelog, ChangelogEntry
from gestan_release.text.templating import render_template, safe_url
from gestan_release.text.tweet_length import weighted_length
from gestan_release.text.usertext import discussion_id, flat, neutralise, nfc
from gestan_release.tickets.values import Priority, Ticket

X_MAX_WEIGHTED_LENGTH = 280
ELLIPSIS = "…"


@dataclass(frozen=True)
class ReleaseNotes:
    """What every message of a release is built from."""

    version: Version
    tag: str
    date: dt.date
    changelog: Changelog
    download_url: str | None = None
    forum_category_url: str | None = None
    # The forum's host (FORUM_BASE_URL's): a ticket's forum URL elsewhere is shown, not linked.
    forum_host: str | None = None

    @property
    def label(self) -> str:
        return self.version.label

    @property
    def marker(self) -> str:
        """The hidden marker that identifies our own forum posts for this release."""
        return f"<!-- gestan-release:{self.version} -->"


@dataclass(frozen=True)
class ReleaseMessages:
    """All messages of a release, in the order the pipeline sends them."""

    post: Post
    topic: ForumTopic
    comments: tuple[ForumComment, ...] = ()
    mails: tuple[Mail, ...] = ()

    def __iter__(self) -> Iterator[Message]:
        yield self.post
        yield self.topic
        yield from self.comments
        yield from self.mails


# -- small pure helpers ----------------------------------------------------------------------------
def _topic_link(topic_url: str | None) -> str | None:
    # The outbox's topic receipt is a file:// URI: on the embedded default, links point to it.
    return safe_url(topic_url, ("http", "https", "file"))


def message_id(version: Version, email: str, mail_from: str) -> str:
    """Deterministic Message-ID (no angle brackets) of the "fixed" mail of `version` to `email`."""
    digest = hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()[:16]
    return f"gestan-release.{version}.{digest}@{mail_domain(mail_from)}"


def mail_texts(template: str, **context: Any) -> dict[str, str]:
    """The subject (one line), text and HTML of a mail from its three templates
    `<template>_subject.txt.j2`, `<template>.txt.j2` and `<template>.html.j2`."""
    return {
        "subject": flat(render_template(f"{template}_subject.txt.j2", **context)),
        "text": render_template(f"{template}.txt.j2", **context).strip() + "\n",
        "html": render_template(f"{template}.html.j2", **context),
    }


def mail_domain(mail_from: str) -> str:
    _, address = parseaddr(mail_from)
    domain = address.rpartition("@")[2].strip().lower()
    return domain or "localhost"


def _bare_message_id(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    return value.strip().removeprefix("<").removesuffix(">").strip() or None


@dataclass(frozen=True)
class _Item:
    """A changelog entry as templates see it."""

    id: int
    title: str
    priority: str
    url: str | None
    already_in: str | None


def _item(entry: ChangelogEntry, forum_host: str | None = None) -> _Item:
    t = entry.ticket
    url = safe_url(t.forum_url, host=forum_host)
    return _Item(t.id, neutralise(flat(t.title)), str(t.priority), url, entry.already_in)


def _groups(notes: ReleaseNotes) -> list[tuple[str, list[_Item]]]:
    return [
        (str(p), [_item(e, notes.forum_host) for e in es])
        for p, es in notes.changelog.by_priority()
    ]


def _common(notes: ReleaseNotes, **extra: Any) -> dict[str, Any]:
    return {
        "label": notes.label,
        "version": str(notes.version),
        "tag": notes.tag,
        "date": notes.date,
        "download_url": safe_url(notes.download_url),
        "forum_category_url": safe_url(notes.forum_category_url),
        "marker": notes.marker,
        **extra,
    }


# -- X ---------------------------------------------------------------------------------------------


def announcement(notes: ReleaseNotes) -> Post:
    """The X post (`x_post.txt.j2`), at most 280 weighted characters.

    Shortening rule, applied only while the text is too long:
    1. the full text lists every ticket ("#3226 title", one a line);
    2. drop the ticket list; keep the headline (counts by priority) and the title of the most
       urgent fix new in this version (not already shipped in a U) alone;
    3. shorten that title at a word boundary, ending it with "…" (the longest prefix of whole
       words that fits);
    4. drop the title.
    Words and URLs are never cut: URLs (which X counts 23) sit outside the title, and the title
    only loses whole words.
    """
    entries = notes.changelog.entries
    counts = {str(p): 0 for p in Priority}
    for e in entries:
        counts[str(e.ticket.priority)] += 1
    context = _common(notes, total=len(entries), counts=counts)
    items = [_item(e, notes.forum_host) for e in entries]

    def render(tickets: list[_Item] | None, highlight: str | None) -> str:
        text = render_template("x_post.txt.j2", tickets=tickets, highlight=highlight, **context)
        return nfc(text.strip())

    def fits(text: str) -> bool:
        return weighted_length(text) <= X_MAX_WEIGHTED_LENGTH

    # Each listed ticket weighs at least "#id " and a line break: a list that cannot fit is not
    # rendered and measured (twitter-text takes a second on a 500-ticket list).
    floor = sum(len(f"#{i.id} ") + 1 for i in items)
    text = render(items, None) if floor <= X_MAX_WEIGHTED_LENGTH else ""
    if items and (not text or not fits(text)):
        # The most urgent fix that is new in this version: one that already shipped in a U
        # version was announced then.
        lead = next((i for e, i in zip(entries, items, strict=True) if not e.already_in), items[0])
        words = lead.title.split()
        text = render(None, " ".join(words))
        if not fits(text):
            # Weighted length grows with the number of words kept: binary search the longest fit.
            best, lo, hi = None, 1, len(words) - 1
            while lo <= hi:
                mid = (lo + hi) // 2
                candidate = render(None, _shortened(words, mid))
                if fits(candidate):
                    best, lo = candidate, mid + 1
                else:
                    hi = mid - 1
            text = best if best is not None else render(None, None)
    if not fits(text):
        raise ReleaseError(
            f"the X announcement of {notes.label} is {weighted_length(text)} weighted characters "
            f"even without its ticket list and title (max {X_MAX_WEIGHTED_LENGTH}): "
            f"shorten the template x_post.txt.j2"
        )
    return Post(key=f"x:{notes.version}", text=text, marker=str(notes.version))


def _shortened(words: list[str], keep: int) -> str:
    # "facture :" → "facture…": punctuation left hanging before the ellipsis goes, never a letter.
    return " ".join(words[:keep]).rstrip(" ,;:") + ELLIPSIS


# -- forum -----------------------------------------------------------------------------------------


def forum_topic(notes: ReleaseNotes, category: str) -> ForumTopic:
    """The changelog as a new discussion in `category` (url code or numeric id)."""
    title = render_template("forum_topic_title.txt.j2", **_common(notes)).strip()
    body = render_template("forum_topic.md.j2", groups=_groups(notes), **_common(notes)).strip()
    return ForumTopic(
        key=f"forum:{notes.version}",
        title=flat(title),
        body=body + "\n",
        category=category,
        marker=notes.marker,
    )


def forum_comments(notes: ReleaseNotes, topic_url: str | None) -> list[ForumComment]:
    """One reply per fixed, forum-tracked ticket on its own discussion; tickets that already
    shipped in a U version were answered then and are skipped."""
    comments = []
    for entry in notes.changelog.entries:
        t = entry.ticket
        did = discussion_id(t.forum_url)
        if entry.already_in or not t.forum_tracked or did is None:
            continue
        body = render_template(
            "forum_comment.md.j2",
            ticket=_item(entry, notes.forum_host),
            topic_url=_topic_link(topic_url),
            **_common(notes),
        ).strip()
        comments.append(
            ForumComment(
                key=f"forum:{notes.version}:ticket:{t.id}",
                discussion_id=did,
                body=body + "\n",
                marker=notes.marker,
            )
        )
    return comments


# -- mail ------------------------------------------------------------------------------------------


@dataclass
class _Reporter:
    name: str
    email: str
    tickets: list[tuple[Ticket, ChangelogEntry]] = field(default_factory=list)


def reporter_mails(notes: ReleaseNotes, mail_from: str, topic_url: str | None) -> list[Mail]:
    """One "your report is fixed" mail per reporter (e-mail compared case-insensitively), listing
    all their forum-tracked tickets of the release that did not already ship in a U version."""
    reporters: dict[str, _Reporter] = {}
    for entry in notes.changelog.entries:
        t = entry.ticket
        email = (t.reporter_email or "").strip()
        if entry.already_in or not t.forum_tracked or not email:
            continue
        r = reporters.setdefault(email.lower(), _Reporter(t.reporter_name or "", email))
        r.tickets.append((t, entry))

    mails = []
    for lower, r in reporters.items():
        items = [_item(entry, notes.forum_host) for _, entry in r.tickets]
        context = _common(
            notes,
            reporter=flat(r.name),
            tickets=items,
            ticket_ids=[i.id for i in items],
            topic_url=_topic_link(topic_url),
        )
        ack = next((a for t, _ in r.tickets if (a := _bare_message_id(t.ack_message_id))), None)
        mails.append(
            Mail(
                key=f"mail:{notes.version}:{lower}",
                to_name=r.name,
                to_email=r.email,
                **mail_texts("mail_fixed", **context),
                message_id=message_id(notes.version, r.email, mail_from),
                in_reply_to=ack,
                ticket_ids=tuple(i.id for i in items),
            )
        )
    return mails


# -- all together ----------------------------------------------------------------------------------


def release_messages(
    notes: ReleaseNotes, *, category: str, mail_from: str, topic_url: str | None = None
) -> ReleaseMessages:
    """Every message of the release; `topic_url` is known once the forum topic is posted."""
    return ReleaseMessages(
        post=announcement(notes),
        topic=forum_topic(notes, category),
        comments=tuple(forum_comments(notes, topic_url)),
        mails=tuple(reporter_mails(notes, mail_from, topic_url)),
    )


def render_preview(
    notes: ReleaseNotes, messages: Iterable[Message], stories: Iterable[dict[str, Any]] = ()
) -> str:
    """The dry run in markdown: version, changelog, the tickets to check (`stories`: why a
    ticket whose story is not plain is or is not fixed), every post, comment and mail as sent."""
    from gestan_release.release.changelog import render as render_changelog
    from gestan_release.release.changelog import render_story

    messages = list(messages)
    return render_template(
        "release_preview.md.j2",
        stories_md=[render_story(s, markdown=True).strip() for s in stories],
        changelog_md=render_changelog(notes.changelog, "markdown").strip(),
        posts=[(m, weighted_length(m.text)) for m in messages if isinstance(m, Post)],
        topics=[m for m in messages if isinstance(m, ForumTopic)],
        comments=[m for m in messages if isinstance(m, ForumComment)],
        mails=[m for m in messages if isinstance(m, Mail)],
        fence=_fence,
        max_weighted=X_MAX_WEIGHTED_LENGTH,
        ticket_count=len(notes.changelog.entries),
        **_common(notes),
    )


def _fence(text: str, info: str = "") -> str:
    """`text` in a fenced code block whose fence no backtick run inside it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    bar = "`" * max(3, longest + 1)
    return f"{bar}{info}\n{text.rstrip()}\n{bar}"
