"""The release flow with the REAL channel clients — X, the Vanilla forum, SMTP — against local
stand-ins that validate every request against the published contracts (see `channel_fixtures`).

Issue 5's "never twice": crash in the middle of each channel, then resume — every post and mail
exists exactly once (for mail, where SMTP cannot look, a copy sent again carries the same
Message-ID). A "crash" is `ProcessKilled`, a BaseException raised where a process could die:
right after a side effect and before the ledger records it, or while a sender waits after a POST
whose answer never came (the server did apply it). Nothing after it runs, as with `kill -9`.
"""

from __future__ import annotations

import json
import traceback

import pytest

pytest.register_assert_rewrite("flow_fixtures", "channel_fixtures")

from channel_fixtures import (  # noqa: E402
    ACK,
    CATEGORY_ID,
    FORUM_TOKEN,
    MAIL_FROM,
    SMTP_PASSWORD,
    X_TOKEN,
    Channels,
    ProcessKilled,
    message_id,
)
from fakes.vanilla_server import unanswered as forum_unanswered  # noqa: E402
from fakes.x_server import unanswered as x_unanswered  # noqa: E402
from flow_fixtures import FORUM_TICKETS, MAILS, VERSION, failed, ok, run_flow  # noqa: E402
from flow_fixtures import summary_rows as rows_of  # noqa: E402

pytestmark = pytest.mark.slow
pytest_plugins = ("flow_fixtures", "channel_fixtures")

MARKER = f"<!-- gestan-release:{VERSION} -->"
X_KEY = f"x:{VERSION}"
TOPIC_KEY = f"forum:{VERSION}"
COMMENT_KEYS = {t: f"forum:{VERSION}:ticket:{t}" for t in FORUM_TICKETS}
MAIL_KEYS = {m: f"mail:{VERSION}:{m}" for m in MAILS}
NO_COMMENT = (101, 107)  # #101 was answered in 15.4 U1; #107 waits on release/15.4
# The replies go out in changelog order: by priority (haute, normale, basse), then id.
COMMENT_ORDER = (102, 105, 103, 104)


# -- helpers ---------------------------------------------------------------------------------
def release(ch: Channels):  # type: ignore[no-untyped-def]
    return run_flow("release", ch.box.path)


def resume(ch: Channels) -> dict:
    return ok(run_flow("resume", ch.box.path, version=VERSION))


def crash(ch: Channels) -> None:
    """Run the release; it must die where the test said."""
    with pytest.raises(ProcessKilled):
        release(ch)
    ch.timeouts.clear()  # the next run is a new process with the usual settings
    assert ch.kill_in_sleep == set(), "the scripted crash did not happen"


def states(ch: Channels) -> dict[str, str]:
    return ch.box.deliveries(VERSION)


def deliveries(ch: Channels) -> dict:
    return {d.key: d for d in ch.box.ledger().deliveries(VERSION)}


def assert_everything_once(ch: Channels) -> None:
    """15.5.0 is out on every channel, each post and mail exactly once, and the ledger holds the
    id of each one as the service knows it."""
    ledger = ch.box.ledger()
    assert ledger.release(VERSION).state == "released"
    d = deliveries(ch)
    assert {k: v.state for k, v in d.items() if v.state != "done"} == {}

    # X: one post, carrying the version; its id in the ledger
    [tweet] = ch.x.tweets
    assert VERSION in tweet["text"]
    assert d[X_KEY].external_id == tweet["id"]
    assert d[X_KEY].url == f"https://x.com/i/web/status/{tweet['id']}"

    # forum: one changelog discussion in the category, carrying the hidden marker
    [topic] = ch.own_topics()
    assert MARKER in topic["body"] and topic["format"] == "markdown"
    assert d[TOPIC_KEY].external_id == str(topic["discussionID"])
    assert d[TOPIC_KEY].url == topic["url"]
    # one reply on each fixed forum ticket's own discussion, linking to the changelog
    for tid in FORUM_TICKETS:
        [comment] = ch.own_comments(tid)
        assert MARKER in comment["body"] and topic["url"] in comment["body"]
        assert d[COMMENT_KEYS[tid]].external_id == str(comment["commentID"])
    for tid in NO_COMMENT:
        assert ch.own_comments(tid) == []
    own = [c for c in ch.forum.comments.values() if c["insertUserID"] == ch.forum.user_id]
    assert len(own) == len(FORUM_TICKETS)  # nothing anywhere else (not on the topic either)
    assert ch.forum.queue == []

    # mail: one per reporter, its Message-ID the one in the ledger
    assert ch.recipients() == sorted(MAILS)
    for address in MAILS:
        [mail] = ch.mails_to(address)
        assert message_id(mail) == d[MAIL_KEYS[address]].external_id


# --------------------------------------------------------------------------------------------
# 1. Happy path: the three real channels
# --------------------------------------------------------------------------------------------
def test_release_on_x_forum_and_mail(channels: Channels) -> None:
    result = ok(release(channels))

    assert_everything_once(channels)
    assert channels.post_calls() == {"tweets": 1, "discussions": 1, "comments": 4}
    rows = rows_of(result["summary"])
    assert rows["X"] == [1, 0, 0, 0] and rows["forum"] == [5, 0, 0, 0]
    assert rows["mail"] == [3, 0, 0, 0]

    # the replies went out in the order the crash tests rely on
    posted_on = [
        json.loads(r.body)["discussionID"] for r in channels.forum.calls("POST", ".*/comments")
    ]
    assert posted_on == [channels.discussions[t] for t in COMMENT_ORDER]
    # the post went with the OAuth 2.0 user token configured in the environment
    [post] = channels.x.calls("POST", "/2/tweets")
    assert post.headers["authorization"] == f"Bearer {X_TOKEN}"
    # the topic: in the category resolved from its url code, as markdown, with its title
    [topic] = channels.own_topics()
    payload = json.loads(channels.forum.calls("POST", "/api/v2/discussions")[0].body)
    assert payload["categoryID"] == CATEGORY_ID and payload["format"] == "markdown"
    assert payload["name"] == topic["name"] and "15.5" in topic["name"]
    for tid in (101, 102, 103, 104, 105, 106):
        assert f"#{tid}" in topic["body"]

    # the mails: over STARTTLS + AUTH (the server requires both), with the headers of
    # CHANNELS.md; Alice's threads under her acknowledgement
    d = deliveries(channels)
    for address in MAILS:
        [got] = channels.mails_to(address)
        msg = got.message
        assert got.mail_from == "support@gestan.test" and got.rcpt_tos == [address]
        [sender] = msg["From"].addresses
        assert f"{sender.display_name} <{sender.addr_spec}>" == MAIL_FROM
        assert msg["To"].addresses[0].addr_spec == address
        assert msg["Message-ID"] == f"<{d[MAIL_KEYS[address]].external_id}>"
        assert msg["Message-ID"].endswith("@gestan.test>")
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["Date"] and "15.5" in msg["Subject"]
        if address == "alice@example.com":
            assert msg["In-Reply-To"] == f"<{ACK[102]}>" and msg["References"] == f"<{ACK[102]}>"
            text = msg.get_body(("plain",)).get_content()
            assert "#102" in text and "#103" in text
        else:
            assert msg["In-Reply-To"] is None and msg["References"] is None
    assert channels.sleeps == []  # nothing had to wait


# --------------------------------------------------------------------------------------------
# 2. A crash in the middle of each channel, then resume
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["after-send", "answer-lost"])
def test_x_crash_then_resume_posts_once(channels: Channels, how: str) -> None:
    if how == "after-send":
        channels.kill_after_send(X_KEY)
    else:
        # X creates the post and never answers (the client times out); the process dies while
        # the sender waits before looking for it
        channels.x.script(x_unanswered(apply=True))
        channels.kill_after_timeout("x")
    crash(channels)
    assert states(channels)[X_KEY] == "sending"
    assert len(channels.x.tweets) == 1  # it did go out; the ledger does not know
    assert channels.own_topics() == [] and channels.recipients() == []

    resume(channels)
    assert_everything_once(channels)
    # the resume looked at the account's recent posts instead of posting again
    assert channels.post_calls()["tweets"] == 1
    assert channels.x.calls("GET", r"/2/users/\d+/tweets")
    assert deliveries(channels)[X_KEY].attempts == 1  # found, not sent again


def test_x_real_kill_9_while_the_post_is_in_flight_then_resume(
    channels: Channels, prefect_harness: str
) -> None:
    """The same with a real process: `gestan-release release` in a subprocess, killed with
    SIGKILL once X has created the post and before its answer reaches the client. Its lock and
    its `sending` delivery are left behind; `resume` takes the dead process's lock and finds the
    post instead of posting again."""
    import os
    import signal
    import time

    from flow_fixtures import cli

    channels.x.script(x_unanswered(apply=True))  # the answer never comes
    proc = cli(["--repo", str(channels.box.path), "release"], {}, prefect_harness)
    try:
        deadline = time.monotonic() + 120
        while not channels.x.tweets:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the release never posted to X"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert states(channels)[X_KEY] == "sending"
    assert channels.own_topics() == [] and channels.recipients() == []

    resume(channels)
    assert_everything_once(channels)
    assert channels.post_calls()["tweets"] == 1


def test_x_crash_then_x_down_on_resume_stops_nothing_else(channels: Channels) -> None:
    """After the crash, X is down when resuming: the post cannot be looked for, so it is not sent
    blind (recorded failed) and the forum and the mails still go out; once X is back, the next
    resume finds the post."""
    channels.kill_after_send(X_KEY)
    crash(channels)
    channels.outage("x")
    exc = failed(run_flow("resume", channels.box.path, version=VERSION))
    assert "X: 0 done, 1 failed" in str(exc) and "forum" not in str(exc)
    left = deliveries(channels)
    assert left[X_KEY].state == "failed"
    assert "could not check whether it already went out" in (left[X_KEY].last_error or "")
    assert {v.state for k, v in left.items() if k != X_KEY} == {"done"}
    assert channels.recipients() == sorted(MAILS) and len(channels.own_topics()) == 1

    channels.end_outage("x")
    resume(channels)
    assert_everything_once(channels)
    assert channels.post_calls()["tweets"] == 1


@pytest.mark.parametrize(
    ("what", "how"),
    [("topic", "after-send"), ("topic", "answer-lost"), ("2nd comment", "after-send")],
)
def test_forum_crash_then_resume_posts_once(channels: Channels, what: str, how: str) -> None:
    key = TOPIC_KEY if what == "topic" else COMMENT_KEYS[COMMENT_ORDER[1]]
    if how == "after-send":
        channels.kill_after_send(key)
    else:
        channels.forum.script(forum_unanswered(apply=True, path="/api/v2/discussions"))
        channels.kill_after_timeout("forum")
    crash(channels)
    left = states(channels)
    assert left[key] == "sending" and left[X_KEY] == "done"
    assert len(channels.own_topics()) == 1
    if what == "topic":
        assert not any(channels.own_comments(t) for t in FORUM_TICKETS)
    else:
        # the first reply was recorded, the second went out unrecorded, the rest never started
        assert left[COMMENT_KEYS[COMMENT_ORDER[0]]] == "done"
        assert [len(channels.own_comments(t)) for t in COMMENT_ORDER] == [1, 1, 0, 0]
        assert all(COMMENT_KEYS[t] not in left for t in COMMENT_ORDER[2:])
    assert channels.recipients() == []

    resume(channels)
    assert_everything_once(channels)
    calls = channels.post_calls()
    assert calls["discussions"] == 1 and calls["comments"] == len(FORUM_TICKETS)


@pytest.mark.parametrize("channel", ["x", "forum"])
def test_unanswered_post_then_outage_then_resume_posts_once(
    channels: Channels, channel: str
) -> None:
    """The POST is applied but its answer never comes; then the service is down for the rest of
    the run, so the sender cannot look whether it went out: the delivery ends `failed` (not
    `sending`: no crash), with the post on the service. Resuming after the outage must find it,
    not post it again (X would refuse the same text as a duplicate; the forum would take it)."""
    key = X_KEY if channel == "x" else TOPIC_KEY
    path = "/2/tweets" if channel == "x" else "/api/v2/discussions"
    unanswered = x_unanswered if channel == "x" else forum_unanswered
    channels.fake(channel).script(unanswered(apply=True, path=path))
    channels.lose_answer_then_outage(channel)
    exc = failed(release(channels))
    assert f"resume {VERSION}" in str(exc)
    assert states(channels)[key] == "failed"
    assert len(channels.x.tweets if channel == "x" else channels.own_topics()) == 1
    assert channels.recipients() == sorted(MAILS)  # the other channels went on

    channels.end_outage(channel)
    channels.timeouts.clear()
    resume(channels)
    assert_everything_once(channels)


def test_forum_premoderation_is_pending_and_never_posted_again(channels: Channels) -> None:
    channels.forum.premoderate = True  # every post answers 202 and waits for a moderator
    channels.kill_before_summary()  # dies after the channels, before the end
    crash(channels)
    left = states(channels)
    forum_keys = [TOPIC_KEY, *COMMENT_KEYS.values()]
    assert {left[k] for k in forum_keys} == {"pending_approval"}
    assert len(channels.forum.queue) == 1 + len(FORUM_TICKETS)
    assert channels.own_topics() == []  # invisible until approved

    summary = resume(channels)["summary"]
    assert rows_of(summary)["forum"] == [0, 5, 0, 0]  # already done (held), nothing re-posted
    assert channels.post_calls()["discussions"] == 1
    assert channels.post_calls()["comments"] == len(FORUM_TICKETS)
    assert len(channels.forum.queue) == 1 + len(FORUM_TICKETS)
    assert {states(channels)[k] for k in forum_keys} == {"pending_approval"}
    assert channels.box.ledger().release(VERSION).state == "released"

    channels.forum.approve_all()
    assert len(channels.own_topics()) == 1
    assert [len(channels.own_comments(t)) for t in FORUM_TICKETS] == [1] * len(FORUM_TICKETS)
    [tweet] = channels.x.tweets
    assert VERSION in tweet["text"]
    assert channels.recipients() == sorted(MAILS)


def test_mail_refused_for_now_then_resume_sends_only_the_missing_one(channels: Channels) -> None:
    carol = MAILS[1]
    channels.smtp.handler.transient_rcpt[carol] = 10**6  # 451 at RCPT for the whole first run
    exc = failed(release(channels))
    # (the task's retries each tried the refused mail again: "2 already done" by then)
    assert "incomplete: mail: 0 done, 2 already done, 1 failed." in str(exc)
    assert f"resume {VERSION}" in str(exc)
    left = deliveries(channels)
    assert left[MAIL_KEYS[carol]].state == "failed"
    assert "451" in (left[MAIL_KEYS[carol]].last_error or "")
    assert {left[MAIL_KEYS[m]].state for m in MAILS if m != carol} == {"done"}
    assert channels.box.ledger().release(VERSION).state == "incomplete"
    assert channels.recipients() == sorted(m for m in MAILS if m != carol)
    assert (carol, 451) in channels.smtp.handler.rcpt_log
    # the summary names what is left
    summary = _artifact(f"release-{VERSION.replace('.', '-')}")
    assert f"`{MAIL_KEYS[carol]}`" in summary and "INCOMPLÈTE" in summary

    channels.smtp.handler.transient_rcpt[carol] = 0
    result = resume(channels)
    assert rows_of(result["summary"])["mail"] == [1, 2, 0, 0]
    assert_everything_once(channels)


def test_mail_crash_after_send_then_resume(channels: Channels) -> None:
    """SMTP cannot say whether a mail went out (`find_existing` is None): a mail sent but not
    recorded is sent again on resume — with the same Message-ID, so that it is recognisable as
    the same message. A mail recorded `done` is never sent again."""
    carol = MAILS[1]
    channels.kill_after_send(MAIL_KEYS[carol])
    crash(channels)
    after_crash = states(channels)
    assert after_crash[MAIL_KEYS[carol]] == "sending"
    assert len(channels.mails_to(carol)) == 1
    # the other mails of the batch went over parallel connections: each is recorded or not
    recorded = {m for m in MAILS if after_crash.get(MAIL_KEYS[m]) == "done"}

    resume(channels)
    d = deliveries(channels)
    assert {v.state for v in d.values()} == {"done"}
    for address in MAILS:
        copies = channels.mails_to(address)
        assert len(copies) == (1 if address in recorded else 2), address
        assert {message_id(c) for c in copies} == {d[MAIL_KEYS[address]].external_id}
    # every other channel exactly once
    assert len(channels.x.tweets) == 1 and len(channels.own_topics()) == 1
    assert [len(channels.own_comments(t)) for t in FORUM_TICKETS] == [1] * len(FORUM_TICKETS)


def test_x_refusing_the_token_does_not_stop_forum_and_mail(channels: Channels) -> None:
    channels.set_env("X_BEARER_TOKEN", "xtok-expired-0000")
    exc = failed(release(channels))
    assert "X: 0 done, 1 failed" in str(exc) and "forum" not in str(exc)
    left = deliveries(channels)
    assert left[X_KEY].state == "failed" and "401" in (left[X_KEY].last_error or "")
    assert {v.state for k, v in left.items() if k != X_KEY} == {"done"}
    assert channels.x.tweets == []
    # a 401 is permanent: the task does not retry it, and no lookup is tried with a bad token
    assert len(channels.x.calls("GET", r"/2/users/.*")) == 0
    assert len(channels.x.calls("POST", r"/2/tweets")) == 1
    assert len(channels.own_topics()) == 1 and channels.recipients() == sorted(MAILS)

    channels.set_env("X_BEARER_TOKEN", X_TOKEN)
    result = resume(channels)
    assert rows_of(result["summary"])["X"] == [1, 0, 0, 0]
    assert rows_of(result["summary"])["forum"] == [0, 5, 0, 0]
    assert_everything_once(channels)


# --------------------------------------------------------------------------------------------
# 3. Secrets never leak
# --------------------------------------------------------------------------------------------
def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return next(a.data for a in client.read_latest_artifacts() if a.key == key)


def _ledger_dump(ch: Channels) -> str:
    import sqlalchemy as sa

    engine = sa.create_engine(ch.box.db_url)
    with engine.connect() as conn:
        rows = [
            *conn.execute(sa.text("SELECT * FROM deliveries")),
            *conn.execute(sa.text("SELECT * FROM releases")),
        ]
    engine.dispose()
    return "\n".join(map(repr, rows))


def test_secrets_never_leak(channels: Channels, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    wrong = {
        "X_BEARER_TOKEN": "xtok-WRONG-9f8e7d6c-DO-NOT-LEAK",
        "FORUM_TOKEN": "forumtok-WRONG-1a2b3c4d-DO-NOT-LEAK",
        "SMTP_PASSWORD": "smtp-WRONG-5e6f7a8b-DO-NOT-LEAK",
    }
    secrets = [X_TOKEN, FORUM_TOKEN, SMTP_PASSWORD, *wrong.values()]
    for name, value in wrong.items():
        channels.set_env(name, value)

    exc = failed(release(channels))  # every channel refuses its credentials
    left = deliveries(channels)
    assert {left[k].state for k in (X_KEY, TOPIC_KEY, *MAIL_KEYS.values())} == {"failed"}
    assert "401" in (left[X_KEY].last_error or "") and "FORUM_TOKEN" in left[TOPIC_KEY].last_error
    assert "SMTP_PASSWORD" in (left[MAIL_KEYS[MAILS[0]]].last_error or "")
    texts = {
        "exception": "".join(traceback.format_exception(exc)),
        "summary": _artifact(f"release-{VERSION.replace('.', '-')}"),
        "ledger": _ledger_dump(channels),
    }

    channels.set_env("X_BEARER_TOKEN", X_TOKEN)
    channels.set_env("FORUM_TOKEN", FORUM_TOKEN)
    channels.set_env("SMTP_PASSWORD", SMTP_PASSWORD)
    texts["resumed summary"] = resume(channels)["summary"]
    assert_everything_once(channels)
    texts["ledger after resume"] = _ledger_dump(channels)
    texts["logs"] = caplog.text
    texts["Prefect logs"] = _prefect_logs()
    assert "401" in texts["logs"] or "refused" in texts["logs"]  # the logs did see the failures
    for where, text in texts.items():
        assert text, where
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into the {where}"


def _prefect_logs() -> str:
    from prefect.client.orchestration import get_client

    messages: list[str] = []
    with get_client(sync_client=True) as client:
        while batch := client.read_logs(limit=200, offset=len(messages)):
            messages += [log.message for log in batch]
    return "\n".join(messages)
