"""The forum channel against a local Vanilla stand-in that validates every request against the
published OpenAPI fragments (`tests/contracts/vanilla-openapi/`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from fakes.contracts import contracts_dir
from fakes.openapi import FakeClock, Reply
from fakes.vanilla_server import (
    FakeVanilla,
    flood,
    forbidden,
    premoderated,
    server_error,
    too_many_requests,
    unanswered,
    unauthorized,
)

from gestan_release.channels.base import ForumComment, ForumTopic, Post
from gestan_release.channels.forum import ForumSender
from gestan_release.channels.forum_parts import part_number, split_body
from gestan_release.errors import DeliveryError
from gestan_release.settings import Secret, Settings

TOKEN = "forum-token-S3CR3T"
MARKER = "<!-- gestan-release:15.4.1 -->"


def changelog(size: int) -> str:
    """A markdown changelog of about `size` characters, with numbered, unique lines."""
    lines, n = [], 0
    while sum(len(line) + 1 for line in lines) < size:
        n += 1
        if n % 20 == 1:
            lines.append(f"\n## Module {n // 20 + 1}\n")
        lines.append(f"- #{3000 + n} Correction de l'écran de saisie des commandes, ligne {n}")
    return "\n".join(lines).strip() + f"\n\n{MARKER}\n"


TOPIC = ForumTopic(
    key="forum:15.4.1",
    title="Gestan 15.4 U1",
    body=f"## Corrections\n\n- #3226 Le total ne se recalcule plus\n\n{MARKER}\n",
    category="nouvelles-versions",
    marker=MARKER,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def forum(clock: FakeClock) -> Iterator[FakeVanilla]:
    with FakeVanilla(contracts_dir(), token=TOKEN, clock=clock) as server:
        yield server
    assert server.validation_errors == [], "\n".join(server.validation_errors)


def sender_for(server: FakeVanilla, clock: FakeClock, **kwargs) -> ForumSender:
    kwargs.setdefault("category", "nouvelles-versions")
    return ForumSender(server.url, TOKEN, sleep=clock.sleep, clock=clock, **kwargs)


def comment_on(discussion_id: int, body: str = "Corrigé dans la version 15.4 U1.") -> ForumComment:
    return ForumComment(
        key=f"forum:15.4.1:ticket:{discussion_id}",
        discussion_id=discussion_id,
        body=f"{body}\n\n{MARKER}\n",
        marker=MARKER,
    )


# -- topics ------------------------------------------------------------------------------------


def test_topic_is_posted_in_the_category_resolved_from_its_url_code(forum, clock):
    with sender_for(forum, clock) as sender:
        receipt = sender.send(TOPIC)
        sender.send(
            ForumTopic(
                key="k2",
                title="Gestan 15.4 U2",
                body="x",
                category="nouvelles-versions",
                marker="<!-- gestan-release:15.4.2 -->",
            )
        )
    (discussion, _) = forum.discussions.values()
    assert receipt.state == "done"
    assert (
        receipt.external_id == str(discussion["discussionID"]) and receipt.url == discussion["url"]
    )
    assert discussion["categoryID"] == 12 and discussion["name"] == TOPIC.title
    payload = json.loads(forum.calls("POST", "/api/v2/discussions")[0].body)
    assert payload == {
        "name": TOPIC.title,
        "body": TOPIC.body,
        "format": "markdown",
        "categoryID": 12,
    }
    assert len(forum.calls("GET", "/api/v2/categories")) == 1  # resolved once, cached
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in forum.requests)


def test_numeric_category_is_used_as_is(forum, clock):
    topic = ForumTopic(key="k", title="t", body="b", category="12", marker=MARKER)
    with sender_for(forum, clock) as sender:
        sender.send(topic)
    assert forum.calls("GET", "/api/v2/categories") == []
    assert next(iter(forum.discussions.values()))["categoryID"] == 12


def test_unknown_category_url_code_is_permanent_and_named(forum, clock):
    topic = ForumTopic(key="k", title="t", body="b", category="annonces", marker=MARKER)
    with sender_for(forum, clock) as sender, pytest.raises(DeliveryError) as info:
        sender.send(topic)
    assert info.value.permanent
    assert "'annonces'" in str(info.value) and "nouvelles-versions" in str(info.value)
    assert forum.discussions == {}


def test_a_20000_character_changelog_is_split_into_a_topic_and_comments(forum, clock):
    body = changelog(20_000)
    assert len(body) > 20_000
    topic = ForumTopic(key="k", title="Gestan 15.4", body=body, category="12", marker=MARKER)
    with sender_for(forum, clock) as sender:
        receipt = sender.send(topic)
    (discussion,) = forum.discussions.values()
    parts = [discussion["body"]] + [
        c["body"] for c in forum.own_comments(discussion["discussionID"])
    ]
    assert len(parts) == 3
    assert all(len(part) <= 8000 for part in parts)
    assert all(MARKER in part for part in parts)
    assert [part_number(p) for p in parts] == [None, 2, 3]
    assert parts[1].startswith("*(suite 2/3)*")
    # Nothing lost, nothing repeated, in order, and no line cut in two.
    lines = [line for line in body.splitlines() if line.startswith("- #")]
    posted = [line for part in parts for line in part.splitlines() if line.startswith("- #")]
    assert posted == lines
    assert receipt.detail == "posted in 3 parts"


def test_split_body_prefers_paragraphs_then_lines_and_honours_the_limits():
    paragraphs = "\n\n".join(f"Paragraphe {i} " + "mot " * 100 for i in range(10))
    parts = split_body(paragraphs + "\n\n" + MARKER, MARKER, 1500, 1200)
    assert all(len(p) <= 1200 for p in parts)
    assert all(MARKER in p for p in parts)
    for part in parts:  # cut at paragraph boundaries: every paragraph whole in one part
        for chunk in part.split("\n\n"):
            assert not chunk.startswith("mot ")
    one_line = "début " + " ".join(f"mot{i}" for i in range(1000))
    parts = split_body(one_line, MARKER, 1000, 1000)
    assert all(len(p) <= 1000 for p in parts)
    words = []
    for k, part in enumerate(parts, 1):
        text = part.split(MARKER)[0]
        if k > 1:
            text = text.removeprefix(f"*(suite {k}/{len(parts)})*")
        words += text.split()
    assert words == one_line.split()  # cut between words only, nothing lost
    assert split_body("court", MARKER, 8000, 8000) == [f"court\n\n{MARKER}"]


def test_limits_are_constructor_parameters(forum, clock):
    topic = ForumTopic(key="k", title="t", body=changelog(5000), category="12", marker=MARKER)
    with sender_for(forum, clock, discussion_limit=2000, comment_limit=1500) as sender:
        sender.send(topic)
    (discussion,) = forum.discussions.values()
    assert len(discussion["body"]) <= 2000
    comments = forum.own_comments(discussion["discussionID"])
    assert comments and all(len(c["body"]) <= 1500 for c in comments)


# -- comments ----------------------------------------------------------------------------------


def test_comment_on_a_ticket_discussion(forum, clock):
    did = forum.add_discussion("Le total ne se recalcule plus", "Depuis la 15.4…")
    with sender_for(forum, clock) as sender:
        receipt = sender.send(comment_on(did))
    (comment,) = forum.own_comments(did)
    assert receipt.external_id == str(comment["commentID"]) and receipt.url == comment["url"]
    payload = json.loads(forum.calls("POST", "/api/v2/comments")[0].body)
    assert payload == {"body": comment_on(did).body, "format": "markdown", "discussionID": did}


def test_comment_on_a_missing_discussion_is_permanent(forum, clock):
    with sender_for(forum, clock) as sender, pytest.raises(DeliveryError) as info:
        sender.send(comment_on(999))
    assert info.value.permanent and "404" in str(info.value)


def test_only_forum_messages_are_accepted(forum, clock):
    with sender_for(forum, clock) as sender, pytest.raises(DeliveryError) as info:
        sender.send(Post(key="x", text="t", marker="m"))
    assert info.value.permanent


# -- moderation, flood control, rate limits, failures ------------------------------------------


def test_202_pre_moderation_is_recorded_as_pending_and_not_posted_again(clock):
    with FakeVanilla(contracts_dir(), token=TOKEN, clock=clock, premoderate=True) as forum:
        with sender_for(forum, clock) as sender:
            receipt = sender.send(TOPIC)
            assert receipt.state == "pending_approval"
            assert receipt.external_id is None and "approved" in (receipt.detail or "")
            # Invisible until approved: the documented limit of find_existing.
            assert sender.find_existing(TOPIC) is None
        assert len(forum.calls("POST", "/api/v2/discussions")) == 1
        assert len(forum.queue) == 1 and forum.discussions == {}
        forum.approve_all()
        with sender_for(forum, clock) as sender:
            assert sender.find_existing(TOPIC) is not None
    assert forum.validation_errors == []


def test_scripted_202_on_a_comment(forum, clock):
    did = forum.add_discussion("Bug", "texte")
    forum.script(premoderated("POST", "/api/v2/comments"))
    with sender_for(forum, clock) as sender:
        receipt = sender.send(comment_on(did))
    assert receipt.state == "pending_approval"
    assert len(forum.calls("POST", "/api/v2/comments")) == 1


def test_flood_control_is_waited_out(forum, clock):
    did = forum.add_discussion("Bug", "texte")
    with sender_for(forum, clock) as sender:
        for n in range(6):  # Vanilla allows 5 comments a minute by default
            sender.send(comment_on(did, f"Réponse {n}"))
    assert len(forum.own_comments(did)) == 6
    assert clock.sleeps == [121.0]  # "wait at least 120 seconds", plus a second


def test_scripted_flood_error_uses_the_seconds_in_the_message(forum, clock):
    forum.script(flood(45, path="/api/v2/discussions"))
    with sender_for(forum, clock) as sender:
        assert sender.send(TOPIC).state == "done"
    assert clock.sleeps == [46.0]
    assert len(forum.discussions) == 1


def test_429_waits_for_retry_after_else_the_configured_pause(forum, clock):
    forum.script(too_many_requests(retry_after=7), too_many_requests())
    with sender_for(forum, clock, flood_pause=30) as sender:
        sender.send(TOPIC)
    assert clock.sleeps == [7.0, 30.0]
    assert len(forum.discussions) == 1


def test_waiting_is_bounded(forum, clock):
    forum.script(*[too_many_requests(retry_after=1) for _ in range(4)])
    with sender_for(forum, clock, max_waits=3) as sender, pytest.raises(DeliveryError) as info:
        sender.send(TOPIC)
    assert not info.value.permanent and "resume later" in str(info.value)


def test_5xx_is_retried_with_backoff(forum, clock):
    forum.script(server_error(500), server_error(502))
    with sender_for(forum, clock, backoff=0.5) as sender:
        assert sender.send(TOPIC).external_id
    assert clock.sleeps == [0.5, 1.0]
    assert len(forum.discussions) == 1


def test_timeout_that_did_post_is_not_posted_again(forum, clock):
    forum.script(unanswered(apply=True, path="/api/v2/discussions"))
    with sender_for(forum, clock, timeout=0.2) as sender:
        receipt = sender.send(TOPIC)
    (discussion,) = forum.discussions.values()
    assert receipt.external_id == str(discussion["discussionID"])
    assert len(forum.calls("POST", "/api/v2/discussions")) == 1


def test_timeout_that_did_not_post_is_retried(forum, clock):
    forum.script(unanswered(apply=False, path="/api/v2/discussions"))
    with sender_for(forum, clock, timeout=0.2) as sender:
        sender.send(TOPIC)
    assert len(forum.discussions) == 1
    assert len(forum.calls("POST", "/api/v2/discussions")) == 2


@pytest.mark.parametrize("script, code", [(unauthorized, "401"), (forbidden, "403")])
def test_401_and_403_are_permanent_without_the_token(forum, clock, caplog, script, code):
    caplog.set_level(logging.DEBUG)
    forum.script(script())
    with sender_for(forum, clock) as sender, pytest.raises(DeliveryError) as info:
        sender.send(TOPIC)
    assert info.value.permanent and code in str(info.value)
    assert TOKEN not in str(info.value) and TOKEN not in caplog.text
    assert clock.sleeps == []


def test_a_wrong_token_is_permanent_and_not_shown(forum, clock, caplog):
    caplog.set_level(logging.DEBUG)
    with ForumSender(forum.url, "wrong-S3CR3T-token", sleep=clock.sleep) as sender:
        with pytest.raises(DeliveryError) as info:
            sender.send(TOPIC)
        assert "FORUM_TOKEN" in str(info.value)
        with pytest.raises(DeliveryError):
            sender.check()
    assert "wrong-S3CR3T-token" not in str(info.value) + caplog.text


# -- never twice -------------------------------------------------------------------------------


def test_find_existing_after_a_crash_finds_the_topic(forum, clock):
    with sender_for(forum, clock) as before_crash:
        posted = before_crash.send(TOPIC)
    with sender_for(forum, clock) as after_crash:
        found = after_crash.find_existing(TOPIC)
    assert found is not None
    assert (found.external_id, found.url) == (posted.external_id, posted.url)
    assert len(forum.discussions) == 1
    # The listed bodies are rendered without the HTML comment: the raw body was read for editing.
    assert forum.calls("GET", r"/api/v2/discussions/\d+/edit")


def test_find_existing_uses_the_listed_body_when_the_marker_survives(clock):
    with FakeVanilla(contracts_dir(), token=TOKEN, clock=clock, strip_html_comments=False) as forum:
        with sender_for(forum, clock) as sender:
            sender.send(TOPIC)
            assert sender.find_existing(TOPIC) is not None
        assert forum.calls("GET", r"/api/v2/discussions/\d+/edit") == []
    assert forum.validation_errors == []


def test_find_existing_ignores_other_releases_and_other_users(forum, clock):
    forum.add_discussion("Gestan 15.4 U1", f"copié par quelqu'un\n\n{MARKER}", category_id=12)
    other = ForumTopic(
        key="k",
        title="Gestan 15.4 U2",
        body="b",
        category="12",
        marker="<!-- gestan-release:15.4.2 -->",
    )
    with sender_for(forum, clock) as sender:
        sender.send(other)
        assert sender.find_existing(TOPIC) is None


def test_find_existing_after_a_crash_finds_the_comment(forum, clock):
    did = forum.add_discussion("Bug", "texte")
    with sender_for(forum, clock) as before_crash:
        posted = before_crash.send(comment_on(did))
    with sender_for(forum, clock) as after_crash:
        found = after_crash.find_existing(comment_on(did))
        assert found is not None
        assert (found.external_id, found.url) == (posted.external_id, posted.url)
        other = forum.add_discussion("Autre bug", "texte")
        assert after_crash.find_existing(comment_on(other)) is None
    assert len(forum.own_comments(did)) == 1


def test_crash_between_parts_resumes_without_posting_anything_twice(forum, clock):
    topic = ForumTopic(
        key="k", title="Gestan 15.4", body=changelog(20_000), category="12", marker=MARKER
    )
    # The process "crashes" while posting part 3: it fails, the discussion and part 2 exist.
    original = forum.dispatch
    comment_posts = []

    def failing_part_3(request):
        if request.method == "POST" and request.path == "/api/v2/comments":
            comment_posts.append(request)
            if len(comment_posts) == 2:
                return Reply(500, {"message": "boom", "status": 500})
        return original(request)

    forum.dispatch = failing_part_3
    with (
        sender_for(forum, clock, max_attempts=1) as first_run,
        pytest.raises(DeliveryError) as info,
    ):
        first_run.send(topic)
    forum.dispatch = original
    assert "part 3/3 failed" in str(info.value) and "resuming" in str(info.value)
    (discussion,) = forum.discussions.values()
    assert len(forum.own_comments(discussion["discussionID"])) == 1

    with sender_for(forum, clock) as resumed:
        found = resumed.find_existing(topic)
    assert found is not None and found.external_id == str(discussion["discussionID"])
    comments = forum.own_comments(discussion["discussionID"])
    assert sorted(part_number(c["body"]) for c in comments) == [2, 3]
    assert len(forum.discussions) == 1
    with sender_for(forum, clock) as again:  # a second resume posts nothing more
        again.find_existing(topic)
    assert len(forum.own_comments(discussion["discussionID"])) == 2


# -- channels check, settings ------------------------------------------------------------------


def test_check_reports_the_user_and_the_category(forum, clock):
    with sender_for(forum, clock) as sender:
        text = sender.check()
    assert text.startswith("forum: authenticated as gestan-bot")
    assert "'nouvelles-versions' is #12" in text
    assert forum.calls("POST", ".*") == []


def test_check_fails_on_an_unknown_category(forum, clock):
    with sender_for(forum, clock, category="annonces") as sender, pytest.raises(DeliveryError):
        sender.check()


def test_from_settings(forum, clock):
    settings = Settings(
        forum_base_url=forum.url, forum_token=Secret(TOKEN), forum_category="nouvelles-versions"
    )
    with ForumSender.from_settings(settings, sleep=clock.sleep) as sender:
        assert sender.api_base == f"{forum.url}/api/v2"
        assert "#12" in sender.check()
    with pytest.raises(DeliveryError) as info:
        ForumSender.from_settings(Settings(forum_base_url=forum.url))
    assert "FORUM_TOKEN" in str(info.value)
