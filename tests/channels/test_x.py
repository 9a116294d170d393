"""The X channel against a local X stand-in that validates every request against the published
OpenAPI document (`tests/contracts/x-api-v2/openapi.json`)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest
from fakes.contracts import contracts_dir
from fakes.openapi import FakeClock
from fakes.x_server import (
    FakeX,
    OAuth1Credentials,
    duplicate,
    rate_limited,
    server_error,
    suspended,
    unanswered,
)

from gestan_release.channels.base import ForumTopic, Post
from gestan_release.channels.x import XSender, marker_pattern
from gestan_release.errors import DeliveryError, DuplicatePost
from gestan_release.settings import Secret, Settings

CREDS = OAuth1Credentials()
SECRETS = (
    CREDS.consumer_secret,
    CREDS.access_token_secret,
    CREDS.access_token,
    "user-access-token-1",
    "refresh-token-1",
    "expired-access-token",
)
POST = Post(
    key="x:15.4.1",
    text="Gestan 15.4 U1 est disponible : 3 corrections.\n"
    "Téléchargement : https://www.gestan.fr/telechargement/15.4.1/gestan-setup.exe",
    marker="15.4.1",
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def x_server(clock: FakeClock) -> Iterator[FakeX]:
    with FakeX(contracts_dir(), clock=clock) as server:
        yield server
    assert server.validation_errors == [], "\n".join(server.validation_errors)


def oauth1_sender(server: FakeX, clock: FakeClock, **kwargs) -> XSender:
    kwargs.setdefault("consumer_secret", CREDS.consumer_secret)
    return XSender(
        server.url,
        consumer_key=CREDS.consumer_key,
        access_token=CREDS.access_token,
        access_token_secret=CREDS.access_token_secret,
        sleep=clock.sleep,
        clock=clock,
        **kwargs,
    )


def bearer_sender(server: FakeX, clock: FakeClock, token: str, **kwargs) -> XSender:
    return XSender(server.url, bearer_token=token, sleep=clock.sleep, clock=clock, **kwargs)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# -- posting and authentication ----------------------------------------------------------------


def test_oauth1_post_is_signed_by_authlib_and_keeps_its_json_body(x_server, clock):
    with oauth1_sender(x_server, clock) as sender:
        receipt = sender.send(POST)

    assert receipt.state == "done"
    assert receipt.external_id == x_server.tweets[0]["id"]
    assert receipt.url == f"https://x.com/i/web/status/{receipt.external_id}"
    # The body reached X intact (authlib's default would have sent an empty body).
    (call,) = x_server.calls("POST", "/2/tweets")
    assert json.loads(call.body) == {"text": POST.text}
    assert x_server.tweets[0]["text"] == POST.text
    # A well-formed OAuth 1.0a header whose HMAC-SHA1 signature the fake recomputed and accepted.
    header = call.headers["authorization"]
    assert header.startswith("OAuth ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', header))
    assert params["oauth_consumer_key"] == CREDS.consumer_key
    assert params["oauth_token"] == CREDS.access_token
    assert params["oauth_signature_method"] == "HMAC-SHA1"
    assert params["oauth_version"] == "1.0"
    assert params["oauth_nonce"] and params["oauth_timestamp"].isdigit()
    assert params["oauth_signature"]
    assert "oauth_body_hash" not in params  # the JSON body is not part of the signature
    assert CREDS.consumer_secret not in header and CREDS.access_token_secret not in header


def test_oauth1_wrong_secret_is_a_permanent_401_without_secrets(x_server, clock, caplog):
    caplog.set_level(logging.DEBUG)
    with (
        oauth1_sender(x_server, clock, consumer_secret="wrong-consumer-secret") as sender,
        pytest.raises(DeliveryError) as info,
    ):
        sender.send(POST)
    assert info.value.permanent
    assert "401" in str(info.value) and "credentials" in str(info.value)
    assert x_server.tweets == []
    assert_no_secret(str(info.value))
    assert_no_secret(caplog.text)
    assert "wrong-consumer-secret" not in str(info.value) + caplog.text


def test_oauth2_token_is_refreshed_on_401_and_kept_in_memory(x_server, clock, caplog):
    caplog.set_level(logging.DEBUG)
    refreshed = []
    with bearer_sender(
        x_server,
        clock,
        "expired-access-token",
        refresh_token="refresh-token-1",
        client_id=x_server.client_id,
        on_token_refresh=lambda access, refresh: refreshed.append((access, refresh)),
    ) as sender:
        first = sender.send(POST)
        second = sender.send(Post(key="x:15.4.2", text="Gestan 15.4 U2", marker="15.4.2"))

    assert first.external_id and second.external_id
    assert len(x_server.tweets) == 2
    assert x_server.token_grants == [
        {
            "grant_type": "refresh_token",
            "refresh_token": "refresh-token-1",
            "client_id": x_server.client_id,
        }
    ]  # one refresh: the new token is reused for the second post
    assert refreshed == [("user-access-token-2", "refresh-token-2")]
    posts = x_server.calls("POST", "/2/tweets")
    assert posts[0].headers["authorization"] == "Bearer expired-access-token"
    assert posts[-1].headers["authorization"] == "Bearer user-access-token-2"
    assert_no_secret(caplog.text)
    assert "user-access-token-2" not in caplog.text


def test_oauth2_failed_refresh_is_permanent_with_a_clear_message(x_server, clock, caplog):
    caplog.set_level(logging.DEBUG)
    with (
        bearer_sender(
            x_server,
            clock,
            "expired-access-token",
            refresh_token="revoked-refresh-token",
            client_id=x_server.client_id,
        ) as sender,
        pytest.raises(DeliveryError) as info,
    ):
        sender.send(POST)
    assert info.value.permanent
    assert "could not be refreshed" in str(info.value)
    assert "revoked-refresh-token" not in str(info.value) + caplog.text
    assert_no_secret(str(info.value) + caplog.text)
    assert x_server.tweets == []


def test_oauth2_without_refresh_token_fails_on_401(x_server, clock):
    with (
        bearer_sender(x_server, clock, "expired-access-token") as sender,
        pytest.raises(DeliveryError) as info,
    ):
        sender.send(POST)
    assert info.value.permanent and "401" in str(info.value)
    assert x_server.calls("POST", "/2/oauth2/token") == []


# -- rate limits, server errors, timeouts ------------------------------------------------------


def test_429_waits_until_the_reset_then_posts(x_server, clock):
    x_server.script(rate_limited(reset_in=30, clock=clock))
    with oauth1_sender(x_server, clock) as sender:
        receipt = sender.send(POST)
    assert receipt.external_id == x_server.tweets[0]["id"]
    assert clock.sleeps == [31.0]  # until x-rate-limit-reset, plus a second of margin
    assert len(x_server.tweets) == 1


def test_429_beyond_the_maximum_wait_is_transient(x_server, clock):
    x_server.script(rate_limited(reset_in=3600, clock=clock))
    with (
        oauth1_sender(x_server, clock, max_rate_limit_wait=900) as sender,
        pytest.raises(DeliveryError) as info,
    ):
        sender.send(POST)
    assert not info.value.permanent
    assert "rate limit" in str(info.value) and "resume later" in str(info.value)
    assert clock.sleeps == []


def test_5xx_is_retried_with_exponential_backoff(x_server, clock):
    x_server.script(server_error(500), server_error(503))
    with oauth1_sender(x_server, clock, backoff=2.0) as sender:
        receipt = sender.send(POST)
    assert receipt.external_id
    assert clock.sleeps == [2.0, 4.0]
    assert len(x_server.tweets) == 1


def test_5xx_past_the_attempts_is_transient(x_server, clock):
    x_server.script(*[server_error(500) for _ in range(3)])
    with (
        oauth1_sender(x_server, clock, max_attempts=3) as sender,
        pytest.raises(DeliveryError) as info,
    ):
        sender.send(POST)
    assert not info.value.permanent and "3 attempt" in str(info.value)
    assert len(x_server.calls("POST", "/2/tweets")) == 3


def test_timeout_that_did_post_is_not_posted_again(x_server, clock):
    # X created the post and never answered: the client timed out.
    x_server.script(unanswered(apply=True))
    with oauth1_sender(x_server, clock, timeout=0.2) as sender:
        receipt = sender.send(POST)
    assert len(x_server.tweets) == 1
    assert receipt.external_id == x_server.tweets[0]["id"]
    assert len(x_server.calls("POST", "/2/tweets")) == 1  # looked, found, did not post again


def test_timeout_that_did_not_post_is_retried(x_server, clock):
    x_server.script(unanswered(apply=False))
    with oauth1_sender(x_server, clock, timeout=0.2) as sender:
        receipt = sender.send(POST)
    assert len(x_server.tweets) == 1 and receipt.external_id == x_server.tweets[0]["id"]
    assert len(x_server.calls("POST", "/2/tweets")) == 2


# -- permanent refusals ------------------------------------------------------------------------


def test_duplicate_content_is_permanent_and_find_existing_confirms(x_server, clock):
    with oauth1_sender(x_server, clock) as sender:
        first = sender.send(POST)
        with pytest.raises(DuplicatePost) as info:
            sender.send(POST)
        assert info.value.permanent
        assert "duplicate content" in str(info.value)
        found = sender.find_existing(POST)
        assert found is not None and found.external_id == first.external_id
    assert len(x_server.tweets) == 1


def test_scripted_duplicate_403_is_permanent(x_server, clock):
    x_server.script(duplicate())
    with oauth1_sender(x_server, clock) as sender, pytest.raises(DuplicatePost) as info:
        sender.send(POST)
    assert info.value.permanent and "duplicate" in str(info.value)


def test_suspended_account_403_is_permanent_with_a_clear_message(x_server, clock):
    x_server.script(suspended())
    with oauth1_sender(x_server, clock) as sender, pytest.raises(DeliveryError) as info:
        sender.send(POST)
    assert info.value.permanent
    assert "403" in str(info.value) and "suspended" in str(info.value)
    assert clock.sleeps == []


def test_only_posts_are_accepted(x_server, clock):
    topic = ForumTopic(key="k", title="t", body="b", category="c", marker="m")
    with oauth1_sender(x_server, clock) as sender, pytest.raises(DeliveryError) as info:
        sender.send(topic)
    assert info.value.permanent


# -- never twice -------------------------------------------------------------------------------


def test_find_existing_after_a_crash_finds_the_post(x_server, clock):
    with oauth1_sender(x_server, clock) as before_crash:
        posted = before_crash.send(POST)
    # A fresh process, after the crash, looks before it sends again.
    with oauth1_sender(x_server, clock) as after_crash:
        found = after_crash.find_existing(POST)
    assert found is not None
    assert found.external_id == posted.external_id and found.url == posted.url
    assert len(x_server.tweets) == 1


def test_find_existing_sees_a_marker_hidden_behind_a_tco_link(x_server, clock):
    post = Post(key="x:15.4.1", text="Gestan 15.4 U1 : https://gestan.fr/v/15.4.1", marker="15.4.1")
    with oauth1_sender(x_server, clock) as sender:
        posted = sender.send(post)
        found = sender.find_existing(post)
    # X returns the text with a t.co link: the version is only in entities.urls.expanded_url.
    assert "15.4.1" not in x_server._shorten(post.text)[0]
    assert found is not None and found.external_id == posted.external_id


def test_find_existing_does_not_mistake_another_release(x_server, clock):
    with oauth1_sender(x_server, clock) as sender:
        sender.send(Post(key="x:15.4.10", text="Gestan 15.4 U10 (15.4.10)", marker="15.4.10"))
        assert sender.find_existing(POST) is None
        assert sender.find_existing(Post(key="k", text="", marker="15.4.10")) is not None


def test_marker_pattern_is_a_whole_token():
    pattern = marker_pattern("15.4.1")
    assert pattern.search("Gestan 15.4.1.")
    assert pattern.search("https://gestan.fr/telechargement/15.4.1/setup.exe")
    assert not pattern.search("Gestan 15.4.10")
    assert not pattern.search("Gestan 115.4.1")
    assert not pattern.search("Gestan 15.4.1.2")


# -- channels check, settings ------------------------------------------------------------------


def test_check_reports_the_account(x_server, clock):
    with oauth1_sender(x_server, clock) as sender:
        assert sender.check() == "X: authenticated as @gestan (oauth1)"
    assert x_server.calls("POST", "/2/tweets") == []


def test_check_with_bad_credentials_raises(x_server, clock):
    with (
        bearer_sender(x_server, clock, "expired-access-token") as sender,
        pytest.raises(DeliveryError) as info,
    ):
        sender.check()
    assert info.value.permanent
    assert_no_secret(str(info.value))


def test_from_settings_picks_oauth1_when_the_four_secrets_are_set(x_server, clock):
    settings = Settings(
        x_api_base=x_server.url,
        x_consumer_key=Secret(CREDS.consumer_key),
        x_consumer_secret=Secret(CREDS.consumer_secret),
        x_access_token=Secret(CREDS.access_token),
        x_access_token_secret=Secret(CREDS.access_token_secret),
        x_bearer_token=Secret("user-access-token-1"),
    )
    with XSender.from_settings(settings, sleep=clock.sleep, clock=clock) as sender:
        assert sender.auth_kind == "oauth1"
        assert sender.send(POST).external_id
    with XSender.from_settings(
        Settings(x_api_base=x_server.url, x_bearer_token=Secret("user-access-token-1"))
    ) as sender:
        assert sender.auth_kind == "oauth2"
        assert "@gestan" in sender.check()


def test_from_settings_without_credentials_is_refused():
    with pytest.raises(DeliveryError) as info:
        XSender.from_settings(Settings(x_api_base="http://127.0.0.1:9"))
    assert info.value.permanent and "X_BEARER_TOKEN" in str(info.value)
