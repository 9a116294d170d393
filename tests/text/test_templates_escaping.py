"""No live link from a ticket's data (issue 9, hole 8): a forum URL written into the store before it
was validated (or by hand) is escaped in every template, the changelog markdown and the dry-run
artifact included; rendered by a CommonMark renderer, the only links are ours."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from markdown_it import MarkdownIt

from gestan_release.history.ranges import CommitRef
from gestan_release.history.versions import Version
from gestan_release.release.changelog import Changelog, ChangelogEntry, render
from gestan_release.release.messages import ReleaseNotes, release_messages, render_preview
from gestan_release.text.templating import inline_code
from gestan_release.tickets.values import Ticket

EVIL = "https://forum.gestan.fr/discussion/4004/a) [Télécharger le correctif](https://evil.example/fix.exe"
HOSTILE_URLS = [
    EVIL,
    "javascript:alert(document.cookie)",
    'https://forum.gestan.fr/x" onclick="alert(1)',
    "https://forum.gestan.fr/x><img src=https://evil.example/p.gif>",
    "https://forum.gestan.fr/x&lt;",
]
MARKDOWN = MarkdownIt("commonmark", {"linkify": True, "html": True}).enable("linkify")


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.add(tag)
        self.hrefs += [v or "" for k, v in attrs if k in ("href", "src")]


def links(markdown: str) -> _Hrefs:
    parser = _Hrefs()
    parser.feed(MARKDOWN.render(markdown))
    return parser


def notes(url: str, ack: str | None = None) -> ReleaseNotes:
    ticket = Ticket(4004, "Le correctif", "flash", "Alice", "alice@example.com", url, True, ack)
    commit = CommitRef("a" * 40, "Corrige #4004", "Dev")
    cl = Changelog("v15.4.0", "b" * 40, "15.4.0", (ChangelogEntry(ticket, (commit,)),), ())
    return ReleaseNotes(
        Version.parse("15.4.1"), "v15.4.1", dt.date(2026, 11, 27), cl,
        download_url="https://www.gestan.fr/telechargement/15.4.1/",
        forum_category_url="https://forum.gestan.fr/categories/nouvelles-versions",
    )  # fmt: skip


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_the_changelog_markdown_has_no_live_link_from_a_forum_url(url: str) -> None:
    md = render(notes(url).changelog, "markdown")
    rendered = links(md)
    assert "img" not in rendered.tags, md
    # At most the ticket's own link, on the forum: the rest of the URL stays inside it.
    assert {urlsplit(h).hostname for h in rendered.hrefs} <= {"forum.gestan.fr"}, md
    assert len(rendered.hrefs) <= 1


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_the_dry_run_artifact_has_no_live_link_from_ticket_data(url: str) -> None:
    n = notes(url, ack="<ack`[x](https://evil.example/a)`@gestan.fr>")
    messages = release_messages(n, category="nouvelles-versions", mail_from="S <s@gestan.fr>")
    preview = render_preview(n, messages)
    rendered = links(preview)
    assert "img" not in rendered.tags
    hosts = {urlsplit(h).hostname for h in rendered.hrefs}
    assert hosts <= {"forum.gestan.fr", "www.gestan.fr"}, preview


def test_inline_code_cannot_be_closed_from_inside() -> None:
    for text in ("a`b", "``x``", "`", "plain"):
        html = MARKDOWN.render(inline_code(text))
        assert html.count("<code>") == 1 and "<a" not in html
