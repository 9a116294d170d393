"""Property tests of hostile input (issue 9, "Fuzz"): whatever a reporter writes as their name, a
title or a forum URL,
- the mail we build either is refused (a permanent failure of that mail) or, parsed back, has
  exactly the headers we put there, with the name intact;
- the forum markdown, rendered by a CommonMark renderer that also turns bare URLs and e-mail
  addresses into links (markdown-it-py + linkify), links only where we put links, and mentions
  or tags no one;
- the X post is at most 280 weighted characters, and X finds in it no mention, hashtag,
  cashtag or link but ours.
The update server's half (any query string or admin body → never a 5xx) is in
`tests/updates/test_hostile.py`.
"""

from __future__ import annotations

import datetime as dt
import email
import re
from email import policy
from html.parser import HTMLParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from gestan_release.channels.base import Mail
from gestan_release.channels.mailmsg import build_email
from gestan_release.core.validation import is_clean
from gestan_release.errors import DeliveryError
from gestan_release.history.ranges import CommitRef
from gestan_release.history.versions import Version
from gestan_release.release.changelog import Changelog, ChangelogEntry
from gestan_release.release.messages import (
    ReleaseNotes,
    announcement,
    forum_comments,
    forum_topic,
    reporter_mails,
)
from gestan_release.text.templating import safe_url
from gestan_release.text.tweet_length import weighted_length
from gestan_release.tickets.fields import ticket_from_mapping
from gestan_release.tickets.values import Ticket

MAIL_FROM = "Support Gestan <support@gestan.fr>"
FORUM = "forum.gestan.fr"
CATEGORY_URL = f"https://{FORUM}/categories/nouvelles-versions"
DOWNLOAD_URL = "https://www.gestan.fr/telechargement/15.5.0/"
TOPIC_URL = f"https://{FORUM}/discussion/4000/notes"
COMMIT = CommitRef("a" * 40, "Corrige", "Dev")

HOSTILE = [
    "@gestan", "＠gestan", '@"Jean Dupont"', "#promo", "＃promo", "$AAPL", "#3226",
    "https://evil.example/fix.exe", "http://10.0.0.1/x", "evil.com", "www.evil.fr",
    "toto@evil.com", "mailto:toto@evil.com", "[lien](https://evil.example)", "<https://e.vil>",
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "`", "](", ")", "![x](y)",
    "**gras**", "\\", "&lt;", "&#64;gestan", "C#", "a@b", "15.4.1", "facture.pdf", "a.io/x",
    "\u202eexe.fdp", "\u200b", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\r\nBcc: x@evil.com",
    "Reply-To : x@evil", "=?utf-8?q?x?=", "²@0", "é@gestan", "²#tag",
    '"', "'", ",", ";", ":", "<", ">", "\t",
]  # fmt: skip
fragments = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12))
hostile_text = st.lists(fragments, min_size=1, max_size=8).map(" ".join)
hostile_url = st.one_of(
    st.none(),
    st.builds(lambda tail: f"https://{FORUM}/discussion/77/{tail}", hostile_text),
    st.builds(
        lambda host: f"https://{host}/discussion/77/x",
        st.sampled_from(["evil.example", "forum.gestan.fr.evil.example", "x"]),
    ),
    hostile_text,
)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def imported(title: str, name: str, url: str | None) -> Ticket | None:
    """The ticket as `tickets import` would store it, or None when the import refuses it."""
    ticket, _, problems = ticket_from_mapping(
        {"id": 77, "title": title, "priority": "flash", "reporter_name": name,
         "reporter_email": "reporter@example.com", "forum_url": url},
        forum_host=FORUM,
    )  # fmt: skip
    return None if problems else ticket


def notes_for(*tickets: Ticket) -> ReleaseNotes:
    entries = tuple(ChangelogEntry(t, (COMMIT,)) for t in tickets)
    cl = Changelog(None, "f" * 40, "15.4.0", entries, ())
    return ReleaseNotes(
        Version.parse("15.5.0"), "v15.5.0", dt.date(2026, 11, 27), cl,
        download_url=DOWNLOAD_URL, forum_category_url=CATEGORY_URL, forum_host=FORUM,
    )  # fmt: skip


def plain_ticket(title: str) -> Ticket:
    return Ticket(
        77, title, "flash", "Alice", "alice@example.com", f"https://{FORUM}/discussion/77"
    )


# -- mail ------------------------------------------------------------------------------------------

EXPECTED_HEADERS = {
    "Content-Type", "MIME-Version", "From", "To", "Subject", "Date", "Message-ID",
    "Auto-Submitted",
}  # fmt: skip


def parsed_headers(mail: Mail) -> email.message.EmailMessage:
    msg = build_email(mail, MAIL_FROM)
    for pol in (None, msg.policy.clone(linesep="\r\n")):  # the Maildir's and the SMTP bytes
        data = msg.as_bytes() if pol is None else msg.as_bytes(policy=pol)
        parsed = email.message_from_bytes(data, policy=policy.default)
        assert set(parsed.keys()) == EXPECTED_HEADERS
        assert len(parsed.get_all("To")) == 1
        [to] = parsed["To"].addresses
        assert to.addr_spec == mail.to_email
        assert " ".join(to.display_name.split()) == " ".join(mail.to_name.split())
        assert parsed.defects == []
    return parsed


@PROPERTY
@given(name=hostile_text, title=hostile_text, url=hostile_url)
def test_any_name_title_or_url_gives_exactly_the_expected_headers(name, title, url) -> None:
    ticket = imported(title, name, url)
    if ticket is None:
        return  # refused at import, with its line (tests/core/test_validation.py)
    [mail] = reporter_mails(notes_for(ticket), MAIL_FROM, TOPIC_URL)
    parsed_headers(mail)


@PROPERTY
@given(name=hostile_text)
def test_a_name_that_skipped_the_import_is_refused_or_harmless(name: str) -> None:
    mail = Mail("mail:15.5.0:a@b.fr", name, "a@b.fr", "Sujet", "t\n", "<p>t</p>\n", "i.1@g.fr")
    try:
        parsed_headers(mail)
    except DeliveryError as exc:
        assert exc.permanent and not is_clean(name, header=True)
    else:
        assert is_clean(name, header=True)


# -- forum -----------------------------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.add(tag)
        self.hrefs += [v or "" for k, v in attrs if k in ("href", "src")]

    def handle_data(self, data) -> None:
        self.text.append(data)


MARKDOWN = MarkdownIt("commonmark", {"linkify": True, "html": True}).enable("linkify")
MENTION = re.compile(r"(?<![\w&])[@＠][\w\"]")
HASHTAG = re.compile(r"(?<![\w&])[#＃$＄][^\W\d]")


def rendered(markdown: str) -> _Links:
    parser = _Links()
    parser.feed(MARKDOWN.render(markdown))
    return parser


@PROPERTY
@given(titles=st.lists(hostile_text, min_size=1, max_size=3), url=hostile_url)
def test_the_forum_markdown_links_only_where_we_put_links(titles: list[str], url) -> None:
    tickets = [t for title in titles if (t := imported(title, "Alice", url)) is not None]
    if not tickets:
        return
    tickets = [Ticket(**{**t.to_json(), "id": 77 + i}) for i, t in enumerate(tickets)]
    notes = notes_for(*tickets)
    ours = {DOWNLOAD_URL, CATEGORY_URL, TOPIC_URL}
    ours |= {u for t in tickets if (u := safe_url(t.forum_url, host=FORUM))}
    ours = {MARKDOWN.normalizeLink(u) for u in ours}  # as the renderer writes an href
    bodies = [forum_topic(notes, "nouvelles-versions").body]
    bodies += [c.body for c in forum_comments(notes, TOPIC_URL)]
    for body in bodies:
        html = rendered(body)
        assert set(html.hrefs) <= ours, body
        assert html.tags <= {"p", "h2", "h3", "ul", "li", "a", "strong", "em"}, body
        text = "".join(html.text)
        assert not MENTION.search(text), text
        assert not HASHTAG.search(text), text


# -- X ---------------------------------------------------------------------------------------------

X_MENTION = re.compile(r"(?:^|[^a-zA-Z0-9_!#$%&*@＠])[@＠][a-zA-Z0-9_]{1,20}")
X_HASHTAG = re.compile(r"(?:^|[^\w&])[#＃][\w]*[^\W\d_][\w]*")
X_CASHTAG = re.compile(r"(?:^|\s)\$[A-Za-z]{1,6}(?:[._][A-Za-z]{1,2})?(?=$|\s|[^\w])")


@PROPERTY
@given(titles=st.lists(hostile_text, min_size=1, max_size=40))
def test_the_x_post_fits_and_links_nothing_a_reporter_wrote(titles: list[str]) -> None:
    from twitter_text import extract_urls_with_indices

    # Titles as they may sit in a store filled before validation: control characters included.
    tickets = [Ticket(**{**plain_ticket(t).to_json(), "id": 100 + i}) for i, t in enumerate(titles)]
    text = announcement(notes_for(*tickets)).text
    assert weighted_length(text) <= 280
    assert is_clean(text.replace("\n", " ")), repr(text)
    assert {u["url"] for u in extract_urls_with_indices(text)} <= {CATEGORY_URL, DOWNLOAD_URL}
    assert not X_MENTION.search(text), text
    assert not X_HASHTAG.search(text), text
    assert not X_CASHTAG.search(text), text
    rest = text.replace(CATEGORY_URL, "").replace(DOWNLOAD_URL, "")
    assert not re.search(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/]", rest), text
