"""Messages of a release: X post, forum topic and comments, reporter mails, dry-run preview."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from gestan_release.history.ranges import CommitRef
from gestan_release.history.versions import Version
from gestan_release.release.changelog import Changelog, ChangelogEntry
from gestan_release.release.messages import (
    ReleaseNotes,
    announcement,
    forum_comments,
    forum_topic,
    message_id,
    release_messages,
    render_preview,
    reporter_mails,
)
from gestan_release.text.tweet_length import weighted_length
from gestan_release.text.usertext import discussion_id, neutralise
from gestan_release.tickets.values import Priority, Ticket

MAIL_FROM = "Support Gestan <support@gestan.fr>"
CATEGORY_URL = "https://forum.gestan.fr/categories/nouvelles-versions"
TOPIC_URL = "https://forum.gestan.fr/discussion/4000/gestan-15-4-u1-notes-de-version"
NASTY_TITLE = "**bold** <script>alert(1)</script> [link](x)"
COMMIT = CommitRef("a" * 40, "Corrige la validation", "Dev Gestan")


def ticket(
    tid: int,
    title: str,
    priority: Priority,
    *,
    name: str = "Alice Martin",
    email: str = "alice@example.com",
    forum: bool = True,
    ack: str | None = None,
    url: str | None = "default",
) -> Ticket:
    forum_url = f"https://forum.gestan.fr/discussion/{tid}/sujet-{tid}" if url == "default" else url
    return Ticket(
        id=tid,
        title=title,
        priority=priority,
        reporter_name=name,
        reporter_email=email,
        forum_url=forum_url,
        forum_tracked=forum,
        ack_message_id=ack,
    )


def changelog(*entries: ChangelogEntry) -> Changelog:
    ordered = sorted(entries, key=lambda e: e.ticket.sort_key)
    return Changelog(None, "f" * 40, "15.4.0", tuple(ordered), ())


def u_release(*tickets: Ticket) -> ReleaseNotes:
    cl = changelog(*(entry(t) for t in tickets))
    return ReleaseNotes(Version.parse("15.4.1"), "v15.4.1", dt.date(2026, 1, 1), cl)


def entry(t: Ticket, already_in: str | None = None) -> ChangelogEntry:
    return ChangelogEntry(t, (COMMIT,), already_in)


@pytest.fixture
def notes() -> ReleaseNotes:
    """A full version with all four priorities, one reporter with two tickets (one address in
    capitals), a non-forum ticket, a ticket already shipped in a U and a hostile title."""
    cl = changelog(
        entry(
            ticket(3226, "Impossible de valider une facture", Priority.FLASH, ack="<ack-1@x.fr>")
        ),
        entry(ticket(3240, "Export CSV très lent", Priority.NORMALE, email="ALICE@Example.com")),
        entry(
            ticket(
                3227, NASTY_TITLE, Priority.HAUTE, name="Hélène Müller", email="helene@exemple.fr"
            )
        ),
        entry(
            ticket(3250, "Faute dans l'aide", Priority.BASSE, email="bob@example.com", forum=False)
        ),
        entry(
            ticket(3230, "Plantage au démarrage", Priority.FLASH, email="carl@example.com"),
            already_in="15.4 U1",
        ),
    )
    return ReleaseNotes(
        version=Version.parse("15.5.0"),
        tag="v15.5.0",
        date=dt.date(2026, 11, 27),
        changelog=cl,
        forum_category_url=CATEGORY_URL,
    )


@pytest.fixture
def u_notes() -> ReleaseNotes:
    cl = changelog(
        entry(ticket(3226, "Impossible de valider une facture", Priority.FLASH)),
        entry(ticket(3227, "Remise mal arrondie", Priority.HAUTE, email="bob@example.com")),
        entry(ticket(3228, "Libellé tronqué", Priority.NORMALE, email="carl@example.com")),
    )
    return ReleaseNotes(
        Version.parse("15.4.1"), "v15.4.1", dt.date(2026, 11, 27), cl, None, CATEGORY_URL
    )


# -- X ---------------------------------------------------------------------------------------------


def test_announcement_lists_tickets_when_it_fits(u_notes: ReleaseNotes) -> None:
    post = announcement(u_notes)
    assert post.key == "x:15.4.1"
    assert post.marker == "15.4.1"
    # The X sender recognises our own post by the version as a whole token in its text.
    assert re.search(r"(?<![\w.])15\.4\.1(?!\.?\w)", post.text)
    assert post.text.startswith(
        "Gestan 15.4 U1 (15.4.1) est disponible : 3 corrections dont 1 flash."
    )
    assert "#3226 Impossible de valider une facture" in post.text
    assert "#3228 Libellé tronqué" in post.text
    assert "Rechercher une mise à jour" in post.text
    assert CATEGORY_URL in post.text
    assert weighted_length(post.text) <= 280


def test_announcement_counts_in_french() -> None:
    one_flash = changelog(entry(ticket(1, "Blocage à l'ouverture", Priority.FLASH)))
    notes = ReleaseNotes(Version.parse("15.4.2"), "v15.4.2", dt.date(2026, 1, 5), one_flash)
    assert announcement(notes).text.startswith(
        "Gestan 15.4 U2 (15.4.2) est disponible : 1 correction flash."
    )
    empty = ReleaseNotes(Version.parse("15.5.0"), "v15.5.0", dt.date(2026, 1, 5), changelog())
    assert announcement(empty).text.startswith("Gestan 15.5 (15.5.0) est disponible.\n")


def big_release(title: str, n: int = 60) -> ReleaseNotes:
    entries = [entry(ticket(5000, title, Priority.FLASH))]
    entries += [
        entry(ticket(5000 + i, f"Correction numéro {i} du module", Priority.NORMALE))
        for i in range(1, n)
    ]
    return ReleaseNotes(
        Version.parse("15.5.0"),
        "v15.5.0",
        dt.date(2026, 11, 27),
        changelog(*entries),
        download_url="https://www.gestan.fr/telechargement/gestan-15.5.0-setup.exe",
        forum_category_url=CATEGORY_URL,
    )


def highlight(text: str) -> str:
    m = re.search(r"Correction principale : « (.*) »", text)
    assert m, text
    return m.group(1)


def test_long_release_drops_the_list_then_keeps_the_whole_title_if_it_fits() -> None:
    post = announcement(big_release("Impossible de valider une facture avec acompte"))
    assert weighted_length(post.text) <= 280
    assert "#5001" not in post.text and "#5000" not in post.text  # no ticket list
    assert highlight(post.text) == "Impossible de valider une facture avec acompte"
    assert post.text.startswith(
        "Gestan 15.5 (15.5.0) est disponible : 60 corrections dont 1 flash."
    )


def test_very_long_title_is_shortened_at_a_word_boundary_never_cutting_a_url() -> None:
    words = [f"mot{i}" for i in range(80)]
    words[3] = "https://exemple.fr/x"
    title = " ".join(words)
    post = announcement(big_release(title))
    assert weighted_length(post.text) <= 280
    kept = highlight(post.text)
    assert kept.endswith("…")
    kept_words = kept.removesuffix("…").split()
    words[3] = neutralise(words[3])  # a reporter's URL is defanged, never linked (issue 9)
    assert words[3] == "https[:]//exemple[.]fr/x"
    assert kept_words == words[: len(kept_words)]  # whole words, in order, none cut
    assert words[3] in kept_words  # the URL inside the title, whole
    assert len(kept_words) < len(words)
    # Longest that fits: one more word would not.
    assert "https://www.gestan.fr/telechargement/gestan-15.5.0-setup.exe" in post.text
    assert CATEGORY_URL in post.text
    longer = post.text.replace(kept, " ".join(words[: len(kept_words) + 1]) + "…")
    assert weighted_length(longer) > 280


def test_a_single_giant_word_is_dropped_not_cut() -> None:
    post = announcement(big_release("x" * 400))
    assert "xxx" not in post.text
    assert "Correction principale" not in post.text
    assert weighted_length(post.text) <= 280


title_text = st.lists(
    st.one_of(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
            min_size=1,
            max_size=30,
        ),
        st.sampled_from(
            ["https://forum.gestan.fr/discussion/1/a", "日本語", "🎉", "été", ":", "a,"]
        ),
    ),
    min_size=1,
    max_size=80,
).map(" ".join)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=title_text, n=st.integers(min_value=1, max_value=60))
def test_announcement_always_fits_and_keeps_whole_words(title: str, n: int) -> None:
    post = announcement(big_release(title, n))
    assert weighted_length(post.text) <= 280
    assert CATEGORY_URL in post.text
    assert "Gestan 15.5 (15.5.0) est disponible" in post.text  # the marker survives shortening
    if "Correction principale" in post.text:
        flat = " ".join(unicodedata.normalize("NFC", title).split())
        whole = " ".join(neutralise(flat).split())  # mentions and URLs made inert (issue 9)
        kept = highlight(post.text)
        if kept != whole:
            kept = kept.removesuffix("…")
            assert whole.startswith(kept)
            rest = whole[len(kept) :]
            # The cut falls between words (only hanging ",;:" may go with it), never inside one.
            assert re.match(r"[,;:]*( |$)", rest), (kept, rest)


# -- forum topic -----------------------------------------------------------------------------------


def test_forum_topic_is_the_changelog_by_priority(notes: ReleaseNotes) -> None:
    topic = forum_topic(notes, "nouvelles-versions")
    assert topic.key == "forum:15.5.0"
    assert topic.title == "Gestan 15.5 — notes de version"
    assert topic.category == "nouvelles-versions"
    assert topic.marker == "<!-- gestan-release:15.5.0 -->"
    assert topic.body.rstrip().endswith("<!-- gestan-release:15.5.0 -->")
    headings = re.findall(r"^### Priorité (\w+)$", topic.body, flags=re.M)
    assert headings == ["flash", "haute", "normale", "basse"]
    assert "[#3226](https://forum.gestan.fr/discussion/3226/sujet-3226)" in topic.body
    assert "Plantage au démarrage *(déjà disponible depuis 15.4 U1)*" in topic.body
    assert "Rechercher une mise à jour" in topic.body
    # Internal details of the changelog stay out of the public post.
    assert "Références inconnues" not in topic.body


def test_forum_topic_titles_cannot_change_the_post(notes: ReleaseNotes) -> None:
    body = forum_topic(notes, "nouvelles-versions").body
    assert NASTY_TITLE not in body
    html = MarkdownIt("commonmark").render(body)
    assert "<script>" not in html
    assert "<strong>bold</strong>" not in html
    assert 'href="x"' not in html
    assert "**bold** &lt;script&gt;alert(1)&lt;/script&gt; [link](x)" in html  # shown as typed


def test_forum_topic_does_not_link_foreign_schemes() -> None:
    t = ticket(7, "Titre", Priority.HAUTE, url="javascript:alert(1)//discussion/7/x")
    notes = ReleaseNotes(
        Version.parse("15.4.1"), "v15.4.1", dt.date(2026, 1, 1), changelog(entry(t))
    )
    topic = forum_topic(notes, "nouvelles-versions")
    assert "javascript" not in topic.body
    assert "- #7 Titre" in topic.body


# -- forum comments --------------------------------------------------------------------------------


def test_discussion_id() -> None:
    assert (
        discussion_id("https://forum.gestan.fr/discussion/3226/comment-utiliser-le-forum") == 3226
    )
    assert discussion_id("https://forum.gestan.fr/discussion/3226") == 3226
    assert discussion_id("https://forum.gestan.fr/discussion/3226?page=2") == 3226
    assert discussion_id("https://forum.gestan.fr/categories/nouvelles-versions") is None
    assert discussion_id("https://forum.gestan.fr/discussion/abc/x") is None
    assert discussion_id(None) is None


def test_forum_comments_only_for_new_forum_tracked_tickets(notes: ReleaseNotes) -> None:
    comments = forum_comments(notes, TOPIC_URL)
    # 3250 is not forum-tracked, 3230 was answered when 15.4 U1 shipped.
    assert [c.discussion_id for c in comments] == [3226, 3227, 3240]
    assert [c.key for c in comments] == [
        "forum:15.5.0:ticket:3226",
        "forum:15.5.0:ticket:3227",
        "forum:15.5.0:ticket:3240",
    ]
    for c in comments:
        assert c.body.startswith("Corrigé dans la version **15.5** de Gestan")
        assert f"({TOPIC_URL})" in c.body
        assert c.marker == "<!-- gestan-release:15.5.0 -->"
        assert c.body.rstrip().endswith(c.marker)


def test_forum_comments_without_topic_link_to_the_category(notes: ReleaseNotes) -> None:
    comments = forum_comments(notes, None)
    assert comments and all(f"]({CATEGORY_URL})" in c.body for c in comments)


def test_no_comment_without_a_discussion_id() -> None:
    t = ticket(9, "Titre", Priority.FLASH, url=None)
    notes = ReleaseNotes(
        Version.parse("15.4.1"), "v15.4.1", dt.date(2026, 1, 1), changelog(entry(t))
    )
    assert forum_comments(notes, TOPIC_URL) == []


# -- mails -----------------------------------------------------------------------------------------


def test_one_mail_per_reporter(notes: ReleaseNotes) -> None:
    mails = reporter_mails(notes, MAIL_FROM, TOPIC_URL)
    # Alice (two tickets, one address in capitals) and Hélène; Bob is not forum-tracked,
    # Carl's ticket already shipped in 15.4 U1.
    assert [m.to_email for m in mails] == ["alice@example.com", "helene@exemple.fr"]
    alice, helene = mails
    assert alice.key == "mail:15.5.0:alice@example.com"
    assert alice.ticket_ids == (3226, 3240)
    assert alice.subject == "Gestan 15.5 : vos signalements #3226 et #3240 sont corrigés"
    assert helene.subject == "Gestan 15.5 : votre signalement #3227 est corrigé"
    assert helene.to_name == "Hélène Müller"
    assert "Bonjour Hélène Müller," in helene.text
    assert "#3226 Impossible de valider une facture" in alice.text
    assert "#3240 Export CSV très lent" in alice.text
    assert TOPIC_URL in alice.text and TOPIC_URL in alice.html
    assert "Plantage" not in alice.text + helene.text


def test_mail_threading_and_message_id(notes: ReleaseNotes) -> None:
    alice, helene = reporter_mails(notes, MAIL_FROM, TOPIC_URL)
    assert alice.in_reply_to == "ack-1@x.fr"  # brackets removed: Mail ids are bare
    assert helene.in_reply_to is None
    assert re.fullmatch(r"gestan-release\.15\.5\.0\.[0-9a-f]{16}@gestan\.fr", alice.message_id)
    assert alice.message_id == message_id(Version.parse("15.5.0"), "ALICE@example.com", MAIL_FROM)
    again = reporter_mails(notes, MAIL_FROM, None)
    assert [m.message_id for m in again] == [alice.message_id, helene.message_id]
    other = message_id(Version.parse("15.5.1"), "alice@example.com", MAIL_FROM)
    assert other != alice.message_id


def test_first_ack_in_ticket_order() -> None:
    cl = changelog(
        entry(ticket(1, "A", Priority.FLASH)),
        entry(ticket(2, "B", Priority.HAUTE, ack="ack-2@x.fr")),
        entry(ticket(3, "C", Priority.BASSE, ack="ack-3@x.fr")),
    )
    notes = ReleaseNotes(Version.parse("15.4.1"), "v15.4.1", dt.date(2026, 1, 1), cl)
    (mail,) = reporter_mails(notes, MAIL_FROM, None)
    assert mail.in_reply_to == "ack-2@x.fr"
    assert mail.subject == "Gestan 15.4 U1 : vos signalements #1, #2 et #3 sont corrigés"


def test_mail_html_is_escaped_and_text_is_plain(notes: ReleaseNotes) -> None:
    _, helene = reporter_mails(notes, MAIL_FROM, TOPIC_URL)
    assert "<script>" not in helene.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in helene.html
    assert f'<a href="{TOPIC_URL}">' in helene.html
    assert NASTY_TITLE in helene.text  # plain text shows the title as typed
    assert helene.html.lstrip().startswith("<!DOCTYPE html>")


def test_many_tickets_subject_counts_them() -> None:
    cl = changelog(*(entry(ticket(i, f"Titre {i}", Priority.NORMALE)) for i in range(1, 6)))
    notes = ReleaseNotes(Version.parse("15.5.0"), "v15.5.0", dt.date(2026, 1, 1), cl)
    (mail,) = reporter_mails(notes, MAIL_FROM, None)
    assert mail.subject == "Gestan 15.5 : vos 5 signalements sont corrigés"
    assert "Merci pour vos signalements" in mail.text


# -- preview ---------------------------------------------------------------------------------------


def test_preview_shows_every_message(notes: ReleaseNotes) -> None:
    msgs = release_messages(notes, category="nouvelles-versions", mail_from=MAIL_FROM)
    preview = render_preview(notes, msgs)
    assert preview.startswith("# Aperçu de Gestan 15.5")
    assert "`v15.5.0`" in preview
    assert msgs.post.text in preview
    assert msgs.topic.body.strip() in preview
    for c in msgs.comments:
        assert f"`{c.key}`" in preview and c.body.strip() in preview
    for m in msgs.mails:
        assert f"<{m.message_id}>" in preview and m.text.strip() in preview
    assert len(list(msgs)) == 2 + len(msgs.comments) + len(msgs.mails)


def test_preview_fences_survive_backticks() -> None:
    t = ticket(1, "Le champ ``` casse l'aperçu", Priority.FLASH)
    notes = ReleaseNotes(
        Version.parse("15.4.1"), "v15.4.1", dt.date(2026, 1, 1), changelog(entry(t))
    )
    preview = render_preview(notes, [announcement(notes)])
    assert "````text" in preview


def test_the_headline_fix_is_one_new_in_this_version() -> None:
    long_list = [
        entry(ticket(4000 + i, f"Anomalie numéro {i} de l'écran des factures", Priority.NORMALE))
        for i in range(30)
    ]
    cl = changelog(
        entry(ticket(3230, "Plantage au démarrage", Priority.FLASH), already_in="15.4 U1"),
        entry(ticket(3231, "Export FEC incomplet", Priority.FLASH)),
        *long_list,
    )
    notes = ReleaseNotes(Version.parse("15.5.0"), "v15.5.0", dt.date(2026, 11, 27), cl)
    text = announcement(notes).text
    assert "Export FEC incomplet" in text
    assert "Plantage au démarrage" not in text  # announced when 15.4 U1 shipped
