"""A local stand-in for the X API v2 (real sockets on 127.0.0.1), validated against
`contracts/x-api-v2/openapi.json`.

Behaves like X for what the X channel uses:
- `POST /2/tweets` (createPosts): 201 `{"data": {"id", "text"}}`; links in the text are replaced by
  t.co links (expanded URL in `entities.urls`, as X does); the same text twice -> 403 duplicate
  content problem document.
- `GET /2/users/me`, `GET /2/users/{id}/tweets` (newest first, `max_results`, `tweet.fields`).
- `POST /2/oauth2/token` (not in the OpenAPI document: validated by hand) with
  `grant_type=refresh_token`: rotates the access and refresh tokens, like X.
- Authentication: OAuth 2.0 user bearer tokens from `access_tokens`, or OAuth 1.0a whose HMAC-SHA1
  signature is recomputed with authlib from the known secrets; anything else -> 401.
- Rate-limit headers on every answer.

Scriptable (one-shot, see `Scripted`): `rate_limited(reset_in)` (429 + `x-rate-limit-reset`),
`server_error()` (500/503), `unanswered(apply)` (no answer until the client times out; with
`apply=True` the post is created anyway), `unauthorized()` (401), `suspended()` (403),
`duplicate()` (403 duplicate content).
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fakes.openapi import X_SPEC_HOST, FakeHTTPServer, Reply, Request, Scripted, x_openapi

with warnings.catch_warnings():
    import authlib.deprecate  # noqa: F401

    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.oauth1.rfc5849.signature import (
        generate_signature_base_string,
        hmac_sha1_signature,
    )
    from authlib.oauth1.rfc5849.wrapper import OAuth1Request

DUPLICATE_DETAIL = "You are not allowed to create a Tweet with duplicate content."
_URL = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class OAuth1Credentials:
    consumer_key: str = "consumer-key-XYZ"
    consumer_secret: str = "consumer-secret-S3CR3T"
    access_token: str = "1500000000000000001-access-token"
    access_token_secret: str = "access-token-secret-S3CR3T"


def problem(status: int, title: str, detail: str, type_: str = "about:blank") -> Reply:
    return Reply(status, {"title": title, "type": type_, "detail": detail, "status": status})


def rate_limited(reset_in: float, clock: Callable[[], float] = time.time) -> Scripted:
    reset = int(clock() + reset_in)
    reply = problem(429, "Too Many Requests", "Too Many Requests")
    reply.headers = {
        "x-rate-limit-limit": "100",
        "x-rate-limit-remaining": "0",
        "x-rate-limit-reset": str(reset),
    }
    return Scripted("POST", "/2/tweets", reply)


def server_error(status: int = 500, method: str = "POST", path: str = "/2/tweets") -> Scripted:
    return Scripted(method, path, problem(status, "Internal Server Error", "Something broke"))


def unanswered(apply: bool = False, method: str = "POST", path: str = "/2/tweets") -> Scripted:
    """No answer until the client gives up (with `apply`, the request is applied first)."""
    return Scripted(method, path, None, hang=True, apply=apply)


def unauthorized(method: str = "POST", path: str = "/2/tweets") -> Scripted:
    return Scripted(method, path, problem(401, "Unauthorized", "Unauthorized"))


def suspended() -> Scripted:
    return Scripted(
        "POST",
        "/2/tweets",
        problem(
            403,
            "Forbidden",
            "Your account is suspended and is not permitted to access this feature.",
        ),
    )


def duplicate() -> Scripted:
    return Scripted("POST", "/2/tweets", problem(403, "Forbidden", DUPLICATE_DETAIL))


class FakeX(FakeHTTPServer):
    spec_host = X_SPEC_HOST
    unvalidated = ("/2/oauth2/token",)

    def __init__(
        self,
        contracts: Path,
        *,
        user_id: str = "1500000000000000001",
        username: str = "gestan",
        access_tokens: tuple[str, ...] = ("user-access-token-1",),
        refresh_tokens: tuple[str, ...] = ("refresh-token-1",),
        client_id: str = "client-id-abc",
        oauth1: OAuth1Credentials | None = OAuth1Credentials(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(x_openapi(contracts), clock=clock)
        self.user_id = user_id
        self.username = username
        self.access_tokens = set(access_tokens)
        self.refresh_tokens = set(refresh_tokens)
        self.client_id = client_id
        self.oauth1 = oauth1
        self.tweets: list[dict[str, Any]] = []  # oldest first; "text" as posted
        self.token_grants: list[dict[str, str]] = []
        self.oauth1_headers: list[str] = []
        self._next_id = 1_860_000_000_000_000_000
        self._tokens_issued = 1

    # -- auth ----------------------------------------------------------------------------------

    def _authenticated(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            return header[len("Bearer ") :] in self.access_tokens
        if header.startswith("OAuth ") and self.oauth1 is not None:
            self.oauth1_headers.append(header)
            uri = f"http://127.0.0.1:{self.port}{request.raw_target}"
            signed = OAuth1Request(
                request.method, uri, body=None, headers={"Authorization": header}
            )
            if signed.client_id != self.oauth1.consumer_key:
                return False
            if signed.token != self.oauth1.access_token:
                return False
            expected = hmac_sha1_signature(
                generate_signature_base_string(signed),
                self.oauth1.consumer_secret,
                self.oauth1.access_token_secret,
            )
            return signed.signature == expected
        return False

    def _headers(self) -> dict[str, str]:
        return {
            "x-rate-limit-limit": "100",
            "x-rate-limit-remaining": "99",
            "x-rate-limit-reset": str(int(self.clock() + 900)),
        }

    # -- behaviour -----------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Reply:
        if request.path == "/2/oauth2/token":
            return self._token(request)
        if not self._authenticated(request):
            return problem(401, "Unauthorized", "Unauthorized")
        reply = self._route(request)
        reply.headers = {**self._headers(), **reply.headers}
        return reply

    def _route(self, request: Request) -> Reply:
        if request.method == "POST" and request.path == "/2/tweets":
            return self._create(request.json()["text"])
        if request.method == "GET" and request.path == "/2/users/me":
            return Reply(
                200, {"data": {"id": self.user_id, "name": "Gestan", "username": self.username}}
            )
        match = re.fullmatch(r"/2/users/(\d+)/tweets", request.path)
        if request.method == "GET" and match:
            return self._timeline(match.group(1), request.args)
        return problem(404, "Not Found Error", f"no fake for {request.method} {request.path}")

    def _shorten(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        out, urls, pos = "", [], 0
        for n, match in enumerate(_URL.finditer(text)):
            out += text[pos : match.start()]
            short = f"https://t.co/fake{n:06d}"
            urls.append(
                {
                    "start": len(out),
                    "end": len(out) + len(short),
                    "url": short,
                    "expanded_url": match.group(0),
                    "display_url": match.group(0).split("://", 1)[1][:24],
                }
            )
            out += short
            pos = match.end()
        return out + text[pos:], urls

    def _create(self, text: str) -> Reply:
        if any(t["text"] == text for t in self.tweets):
            return problem(403, "Forbidden", DUPLICATE_DETAIL)
        self._next_id += 1
        tweet = {"id": str(self._next_id), "text": text}
        self.tweets.append(tweet)
        shown, _ = self._shorten(text)
        return Reply(201, {"data": {"id": tweet["id"], "text": shown}})

    def _timeline(self, user_id: str, args: dict[str, str]) -> Reply:
        tweets = list(reversed(self.tweets)) if user_id == self.user_id else []
        tweets = tweets[: int(args.get("max_results", "10"))]
        fields = set(args.get("tweet.fields", "").split(","))
        data = []
        for tweet in tweets:
            shown, urls = self._shorten(tweet["text"])
            item: dict[str, Any] = {"id": tweet["id"], "text": shown}
            if "entities" in fields and urls:
                item["entities"] = {"urls": urls}
            data.append(item)
        body: dict[str, Any] = {"meta": {"result_count": len(data)}}
        if data:
            body["data"] = data
            body["meta"].update(newest_id=data[0]["id"], oldest_id=data[-1]["id"])
        return Reply(200, body)

    def _token(self, request: Request) -> Reply:
        """`POST /2/oauth2/token`, refresh grant, for a public client (client_id in the body)."""
        if request.content_type != "application/x-www-form-urlencoded":
            self.validation_errors.append(f"token request with content type {request.content_type}")
            return Reply(400, {"error": "invalid_request"})
        form = dict(parse_qsl(request.body.decode()))
        self.token_grants.append(form)
        if form.get("grant_type") != "refresh_token" or not form.get("refresh_token"):
            self.validation_errors.append(f"token request without a refresh grant: {sorted(form)}")
            return Reply(400, {"error": "invalid_request"})
        if form.get("client_id") != self.client_id:
            return Reply(401, {"error": "invalid_client"})
        if form["refresh_token"] not in self.refresh_tokens:
            return Reply(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "Value passed for the token was invalid.",
                },
            )
        self.refresh_tokens.discard(form["refresh_token"])  # X rotates refresh tokens
        self._tokens_issued += 1
        access = f"user-access-token-{self._tokens_issued}"
        refresh = f"refresh-token-{self._tokens_issued}"
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return Reply(
            200,
            {
                "token_type": "bearer",
                "expires_in": 7200,
                "access_token": access,
                "scope": "tweet.write users.read tweet.read offline.access",
                "refresh_token": refresh,
            },
        )
