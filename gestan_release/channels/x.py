"""X (Twitter) API v2: post the release announcement, find it again after a crash.

Authentication (a *user* context is required to post; an app-only bearer token cannot):
- OAuth 1.0a user context when the four consumer/access secrets are set, signed by authlib
  (`authlib.integrations.httpx_client.OAuth1Auth`). The JSON body is not part of the signature base
  string (X documents it that way); note that authlib's default *drops* a JSON body from the request
  it signs, so we sign with authlib and send the original body (`_OAuth1JSONAuth`).
- else an OAuth 2.0 user access token (`X_BEARER_TOKEN`, scope `tweet.write`). Such a token expires
  after two hours; when `X_REFRESH_TOKEN` (and `X_CLIENT_ID`) are configured, a 401 triggers one
  refresh at `POST /2/oauth2/token` (`grant_type=refresh_token`). The new access and refresh tokens
  are kept in memory only, and passed to `on_token_refresh` when given. **X rotates refresh tokens:
  the old one stops working once used, so the operator must persist the new one** (e.g. update the
  Prefect Secret block from `on_token_refresh`), or the next run will fail with a 401.

Behaviour, by the one retry policy of `gestan_release.core.retry`: 2xx -> `Receipt(external_id=<post
id>, url=https://x.com/i/web/status/<id>)`; 429 -> wait until `x-rate-limit-reset` (capped by
`max_rate_limit_wait`, beyond it a transient `DeliveryError`); 5xx, timeouts and connection errors
-> bounded retries with exponential backoff; 403 duplicate content (`DuplicatePost`), other 403
(suspended account, missing permission) and 401 (after a failed refresh) -> permanent. Error
messages never contain a secret: what X says about a problem passes through `core.scrub`
(X could quote our Authorization header).

What "never twice" means on X:
- `find_existing` reads the account's most recent posts (`GET /2/users/{id}/tweets`, one page of up
  to 100) and looks for the release marker (the version text, e.g. "15.4.1") as a whole word in
  the text and in the expanded URLs (X replaces links by t.co ones in the text): the post must
  contain the marker verbatim, in its text or in a link. A post older than
  that page, or deleted, or not yet indexed (X's timeline can lag a few seconds), is not found.
- X itself refuses identical text (403 duplicate content), which catches most double posts even
  when the lookup misses; that refusal is a permanent `DuplicatePost`, and when it follows an
  attempt whose outcome was unknown (timeout), the retry loop confirms the earlier post with
  `find_existing` and returns it instead of failing.
- After a timeout on the `POST` (the post may have been created) the sender looks for the marker
  before trying again.
- There is no idempotency key in the X API: a post whose text differs from the first attempt (e.g. a
  re-rendered template) and that the lookup misses can be posted twice.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Callable
from typing import Any

import httpx

from gestan_release.channels.base import Message, Post, Receipt
from gestan_release.channels.http import HttpChannel
from gestan_release.core import retry
from gestan_release.core.retry import AGAIN, Backoff, RateLimit, Verdict
from gestan_release.core.scrub import remember, scrub
from gestan_release.errors import DeliveryError, DuplicatePost

log = logging.getLogger(__name__)

STATUS_URL = "https://x.com/i/web/status/{id}"
DUPLICATE_HINT = "duplicate content"


def _oauth1_auth_class() -> type:
    """authlib's httpx integration, imported lazily (it warns about httpx vs httpx2 on import)."""
    with warnings.catch_warnings():
        import authlib.deprecate  # noqa: F401  (its import installs an "always" filter)

        warnings.simplefilter("ignore", DeprecationWarning)
        from authlib.integrations.httpx_client import OAuth1Auth

    class _OAuth1JSONAuth(OAuth1Auth):
        """OAuth1Auth that keeps the JSON body: authlib signs without it (no body in the base
        string, no `oauth_body_hash`, like requests-oauthlib/tweepy), and we send it unchanged."""

        def auth_flow(self, request: httpx.Request):  # type: ignore[override]
            _, headers, _ = self.sign(request.method, str(request.url), {}, b"")
            request.headers["Authorization"] = headers["Authorization"]
            yield request

    return _OAuth1JSONAuth


class _BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def marker_pattern(marker: str) -> re.Pattern[str]:
    """The marker as a whole token: "15.4.1" matches "15.4.1." but not "15.4.10" or "115.4.1"."""
    return re.compile(r"(?<![\w.])" + re.escape(marker) + r"(?!\.?\w)")


class XSender(HttpChannel):
    """Posts `Post` messages to X. See the module docstring for authentication and guarantees."""

    name = "x"
    peer = "X"

    def __init__(
        self,
        api_base: str = "https://api.x.com",
        *,
        bearer_token: str | None = None,
        refresh_token: str | None = None,
        client_id: str | None = None,
        consumer_key: str | None = None,
        consumer_secret: str | None = None,
        access_token: str | None = None,
        access_token_secret: str | None = None,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_rate_limit_wait: float = 900.0,
        max_rate_limit_retries: int = 3,
        timeline_size: int = 100,
        on_token_refresh: Callable[[str, str | None], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        oauth1 = (consumer_key, consumer_secret, access_token, access_token_secret)
        remember(*oauth1, bearer_token, refresh_token)  # scrubbed from any error X echoes
        if all(oauth1):
            auth: httpx.Auth = _oauth1_auth_class()(
                consumer_key,
                consumer_secret,
                token=access_token,
                token_secret=access_token_secret,
            )
            self.auth_kind = "oauth1"
        elif bearer_token:
            auth = _BearerAuth(bearer_token)
            self.auth_kind = "oauth2"
        else:
            raise DeliveryError(
                "X is enabled but no user credentials are set: set X_CONSUMER_KEY, "
                "X_CONSUMER_SECRET, X_ACCESS_TOKEN and X_ACCESS_TOKEN_SECRET (OAuth 1.0a), "
                "or X_BEARER_TOKEN (OAuth 2.0 user token with tweet.write)",
                permanent=True,
            )
        if any(oauth1) and not all(oauth1) and not bearer_token:
            raise DeliveryError(
                "X OAuth 1.0a needs all four of X_CONSUMER_KEY, X_CONSUMER_SECRET, "
                "X_ACCESS_TOKEN and X_ACCESS_TOKEN_SECRET",
                permanent=True,
            )
        self.api_base = api_base.rstrip("/")
        self._auth = auth
        self._refresh_token = refresh_token if self.auth_kind == "oauth2" else None
        self._client_id = client_id
        self.timeline_size = min(100, max(5, timeline_size))
        self.on_token_refresh = on_token_refresh
        self._me: dict[str, Any] | None = None
        super().__init__(
            self.api_base,
            auth=auth,
            timeout=timeout,
            transport=transport,
            backoff=Backoff(max_attempts, backoff, max_backoff),
            rate=RateLimit(max_rate_limit_retries, max_rate_limit_wait),
            sleep=sleep,
            clock=clock,
            logger=log,
        )

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> XSender:
        def secret(value: Any) -> str | None:
            return value.get_secret_value() if value else None

        return cls(
            settings.x_api_base,
            bearer_token=secret(settings.x_bearer_token),
            refresh_token=secret(settings.x_refresh_token),
            client_id=settings.x_client_id,
            consumer_key=secret(settings.x_consumer_key),
            consumer_secret=secret(settings.x_consumer_secret),
            access_token=secret(settings.x_access_token),
            access_token_secret=secret(settings.x_access_token_secret),
            **kwargs,
        )

    # -- the Sender protocol -------------------------------------------------------------------

    def send(self, message: Message) -> Receipt:
        post = self._as_post(message)
        # After a lost answer the retry loop looks for the post before trying again, and takes
        # X's "duplicate content" as the proof that the lost attempt went out.
        response = self._request(
            "POST",
            "/2/tweets",
            json={"text": post.text},
            what="posting the announcement",
            lookup=lambda: self.find_existing(post),
        )
        if isinstance(response, Receipt):
            return response
        data = retry.json_object(response).get("data") or {}
        post_id = str(data.get("id") or "")
        if not post_id:
            raise DeliveryError(
                f"X accepted the post (HTTP {response.status_code}) but returned no id",
                permanent=True,
            )
        return Receipt(external_id=post_id, url=STATUS_URL.format(id=post_id))

    def find_existing(self, message: Message) -> Receipt | None:
        post = self._as_post(message)
        me = self._whoami()
        response = self._request(
            "GET",
            f"/2/users/{me['id']}/tweets",
            params={"max_results": str(self.timeline_size), "tweet.fields": "entities"},
            what="reading the account's recent posts",
        )
        assert isinstance(response, httpx.Response)
        pattern = marker_pattern(post.marker)
        for tweet in retry.json_object(response).get("data") or []:
            # X shortens links in `text` (t.co): look at the expanded URLs too.
            urls = (tweet.get("entities") or {}).get("urls") or []
            haystack = [str(tweet.get("text", ""))]
            haystack += [str(u.get("expanded_url") or "") for u in urls if isinstance(u, dict)]
            if any(pattern.search(text) for text in haystack):
                tweet_id = str(tweet["id"])
                return Receipt(
                    external_id=tweet_id,
                    url=STATUS_URL.format(id=tweet_id),
                    detail="found among the account's recent posts",
                )
        return None

    def check(self) -> str:
        """Verify the credentials without posting: `GET /2/users/me`."""
        me = self._whoami(refresh=True)
        return f"X: authenticated as @{me.get('username', '?')} ({self.auth_kind})"

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _as_post(message: Message) -> Post:
        if not isinstance(message, Post):
            raise DeliveryError(
                f"the X channel only sends posts, not {type(message).__name__}", permanent=True
            )
        return message

    def _whoami(self, refresh: bool = False) -> dict[str, Any]:
        if self._me is None or refresh:
            response = self._request("GET", "/2/users/me", what="checking the X account")
            assert isinstance(response, httpx.Response)
            data = retry.json_object(response).get("data") or {}
            if not data.get("id"):
                raise DeliveryError("X answered /2/users/me without a user id", permanent=False)
            self._me = data
        return self._me

    def _judge(self, response: httpx.Response, agains: int, what: str) -> Verdict:
        status = response.status_code
        if status == 429:
            return retry.wait(self._rate_limit_wait(response), "rate limited")
        if status == 401:
            tried = agains > 0
            if not tried and self._can_refresh():
                tried = True
                if self._refresh():
                    return AGAIN
            raise DeliveryError(
                f"X refused the credentials (HTTP 401) while {what}: "
                + (
                    "the access token could not be refreshed; "
                    if tried
                    else "the token is invalid or expired; "
                )
                + "check the X_* credentials (a user context is required to post)",
                permanent=True,
            )
        if status == 403:
            raise self._forbidden(response, what)
        if status >= 500:
            return retry.failed(f"server error HTTP {status}")
        detail = self._problem_detail(response)
        raise DeliveryError(
            f"X refused the request (HTTP {status}) while {what}"
            + (f": {detail}" if detail else ""),
            permanent=True,
        )

    def _rate_limit_wait(self, response: httpx.Response) -> float:
        """Until the window resets (plus a second of margin), else a minute."""
        reset = response.headers.get("x-rate-limit-reset")
        if reset is None:
            for name in ("x-user-limit-24hour-reset", "x-app-limit-24hour-reset"):
                if response.headers.get(name.replace("reset", "remaining")) == "0":
                    reset = response.headers.get(name)
                    break
        seconds = retry.until_epoch(reset, self._clock)
        return 60.0 if seconds is None else seconds + 1.0

    @staticmethod
    def _problem_detail(response: httpx.Response) -> str:
        """The problem X describes, scrubbed: a peer may quote our Authorization header."""
        return scrub(XSender._raw_detail(response))[:300]

    @staticmethod
    def _raw_detail(response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return ""
        if not isinstance(body, dict):
            return ""
        text = body.get("detail") or body.get("title") or body.get("message") or ""
        if not text and isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            if isinstance(first, dict):
                text = first.get("detail") or first.get("message") or ""
        return str(text)[:1000]

    def _forbidden(self, response: httpx.Response, what: str) -> DeliveryError:
        detail = self._problem_detail(response)
        if DUPLICATE_HINT in detail.lower():
            return DuplicatePost(
                "X refused the post as duplicate content: the account already has a post with "
                "exactly this text (most likely this release was announced already; "
                "`find_existing` can confirm it)"
            )
        return DeliveryError(
            f"X forbade the request (HTTP 403) while {what}"
            + (f": {detail}" if detail else "")
            + " — the account may be suspended or locked, or the app lacks write permission",
            permanent=True,
        )

    def _can_refresh(self) -> bool:
        return self.auth_kind == "oauth2" and bool(self._refresh_token) and bool(self._client_id)

    def _refresh(self) -> bool:
        """Trade the refresh token for a new access token (and a new refresh token: X rotates)."""
        assert isinstance(self._auth, _BearerAuth) and self._refresh_token and self._client_id
        try:
            response = self._client.post(
                "/2/oauth2/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": self._refresh_token,
                    "client_id": self._client_id,
                },
                auth=None,
            )
        except httpx.HTTPError as exc:
            log.warning("X: token refresh failed (%s)", type(exc).__name__)
            return False
        body = retry.json_object(response)
        token = body.get("access_token")
        if response.status_code != 200 or not token:
            log.warning("X: token refresh refused (HTTP %s)", response.status_code)
            return False
        self._auth.token = str(token)
        if body.get("refresh_token"):
            self._refresh_token = str(body["refresh_token"])
        remember(self._auth.token, self._refresh_token)
        log.info("X: access token refreshed (persist the new refresh token if it rotated)")
        if self.on_token_refresh is not None:
            self.on_token_refresh(self._auth.token, self._refresh_token)
        return True
