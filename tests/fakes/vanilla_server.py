"""A local stand-in for a Vanilla forum's API v2 (real sockets on 127.0.0.1), validated against the
published fragments in `contracts/vanilla-openapi/` (assembled by `fakes.openapi.vanilla_openapi`).

Behaves like Vanilla for what the forum channel uses:
- `POST /api/v2/discussions`, `POST /api/v2/comments`: 201 with the Discussion / Comment; bodies
  longer than `max_body` (8,000) -> validation error on `body`; unknown discussion -> 404.
- Flood control, as Vanilla's default spam block: more than `flood_discussions` (3) discussions or
  `flood_comments` (5) comments by the user within `flood_window` (60 s, on the fake's clock) ->
  validation error on `body` "... You must wait at least 120 seconds before attempting to post
  again." (status `flood_status`, 422 by default).
- Pre-moderation (`premoderate=True`): `202 {"message", "status": 202}`, the post goes to
  `queue` and is invisible to the API until `approve_all()`.
- `GET /discussions` (categoryID, insertUserID, sort, limit, page), `GET /comments`
  (discussionID, insertUserID, sort, limit, page), `GET /discussions/{id}/edit` and
  `GET /comments/{id}/edit` (raw body), `GET /categories?outputFormat=flat`, `GET /users/me`.
- Listed bodies are "rendered": with `strip_html_comments=True` (default) HTML comments such as
  our marker are removed, so a lookup must read the raw body from `/edit`.
- Bearer token auth: a wrong or missing token -> 401 `{"message", "status"}`.

Scriptable one-shot answers: `too_many_requests(retry_after)` (429, optional Retry-After),
`server_error()`, `slow(delay, apply)`, `unauthorized()`, `forbidden()`, `premoderated()` (202),
`flood(seconds)` (the validation error).
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakes.openapi import (
    VANILLA_SPEC_HOST,
    FakeHTTPServer,
    Reply,
    Request,
    Scripted,
    vanilla_openapi,
)

API = "/api/v2"
FLOOD_MESSAGE = (
    "You have posted {n} times within {window} seconds. A spam block is now in effect on your "
    "account. You must wait at least {wait} seconds before attempting to post again."
)
MODERATION_MESSAGE = "Your post will appear after it is approved."
DEFAULT_CATEGORIES = ((1, "general", "Général"), (12, "nouvelles-versions", "Nouvelles versions"))


def validation_error(field: str, code: str, message: str, status: int = 422) -> Reply:
    return Reply(
        status,
        {
            "message": "Validation Failed",
            "status": status,
            "errors": [{"field": field, "code": code, "message": message, "status": status}],
        },
    )


def too_many_requests(retry_after: int | None = None, method: str = "POST", path: str = ".*"):
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Scripted(
        method, path, Reply(429, {"message": "Too Many Requests", "status": 429}, headers)
    )


def server_error(status: int = 500, method: str = "POST", path: str = ".*") -> Scripted:
    return Scripted(method, path, Reply(status, {"message": "Internal error", "status": status}))


def slow(delay: float, apply: bool = False, method: str = "POST", path: str = ".*") -> Scripted:
    return Scripted(method, path, None, delay=delay, apply=apply)


def unauthorized(method: str = "POST", path: str = ".*") -> Scripted:
    return Scripted(method, path, Reply(401, {"message": "You must sign in.", "status": 401}))


def forbidden(method: str = "POST", path: str = ".*") -> Scripted:
    return Scripted(method, path, Reply(403, {"message": "Permission Problem", "status": 403}))


def premoderated(method: str = "POST", path: str = ".*") -> Scripted:
    """A 202 without creating anything visible (like pre-moderation)."""
    return Scripted(method, path, Reply(202, {"message": MODERATION_MESSAGE, "status": 202}))


def flood(seconds: int = 120, method: str = "POST", path: str = ".*") -> Scripted:
    message = FLOOD_MESSAGE.format(n=3, window=60, wait=seconds)
    return Scripted(method, path, validation_error("body", "spam", message))


_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


class FakeVanilla(FakeHTTPServer):
    spec_host = VANILLA_SPEC_HOST

    def __init__(
        self,
        contracts: Path,
        *,
        token: str = "forum-token-S3CR3T",
        user_id: int = 7,
        user_name: str = "gestan-bot",
        categories: tuple[tuple[int, str, str], ...] = DEFAULT_CATEGORIES,
        max_body: int = 8000,
        premoderate: bool = False,
        strip_html_comments: bool = True,
        flood_discussions: int = 3,
        flood_comments: int = 5,
        flood_window: float = 60.0,
        flood_wait: int = 120,
        flood_status: int = 422,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(vanilla_openapi(contracts), clock=clock)
        self.token = token
        self.user_id = user_id
        self.user_name = user_name
        self.categories = list(categories)
        self.max_body = max_body
        self.premoderate = premoderate
        self.strip_html_comments = strip_html_comments
        self.flood = (flood_discussions, flood_comments, flood_window, flood_wait, flood_status)
        self.discussions: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, dict[str, Any]] = {}
        self.queue: list[tuple[str, dict[str, Any]]] = []  # held for moderation
        self._posted_at: dict[str, list[float]] = {"discussion": [], "comment": []}
        self._next = {"discussion": 100, "comment": 5000}

    # -- helpers -------------------------------------------------------------------------------

    def add_discussion(self, name: str, body: str, category_id: int = 1, user_id: int = 99) -> int:
        """A discussion posted by someone else (e.g. a bug report)."""
        return self._store_discussion(
            {"name": name, "body": body, "format": "markdown", "categoryID": category_id},
            user_id,
        )["discussionID"]

    def approve_all(self) -> None:
        for kind, payload in self.queue:
            if kind == "discussion":
                self._store_discussion(payload, self.user_id)
            else:
                self._store_comment(payload, self.user_id)
        self.queue.clear()

    def own_comments(self, discussion_id: int) -> list[dict[str, Any]]:
        return [
            c
            for c in self.comments.values()
            if c["discussionID"] == discussion_id and c["insertUserID"] == self.user_id
        ]

    def _now(self) -> str:
        stamp = datetime.datetime.fromtimestamp(self.clock(), tz=datetime.UTC)
        return stamp.isoformat().replace("+00:00", "Z")

    def _render(self, body: str) -> str:
        return _COMMENT.sub("", body) if self.strip_html_comments else body

    def _user(self) -> dict[str, Any]:
        return {
            "userID": self.user_id,
            "name": self.user_name,
            "photoUrl": f"{self.url}/uploads/avatar.png",
            "dateLastActive": self._now(),
        }

    def _category(self, category_id: int) -> tuple[int, str, str] | None:
        return next((c for c in self.categories if c[0] == category_id), None)

    def _store_discussion(self, payload: dict[str, Any], user_id: int) -> dict[str, Any]:
        self._next["discussion"] += 1
        did = self._next["discussion"]
        slug = re.sub(r"[^a-z0-9]+", "-", payload["name"].lower()).strip("-") or "discussion"
        row = {
            "discussionID": did,
            "type": "discussion",
            "name": payload["name"],
            "body": payload["body"],  # raw; rendered when listed
            "format": payload["format"],
            "categoryID": payload["categoryID"],
            "dateInserted": self._now(),
            "dateUpdated": None,
            "insertUserID": user_id,
            # Real Vanilla answers null for an unpinned discussion, but the published schema has
            # `nullable: true` with an enum lacking null, which openapi-core rejects: answer a
            # value of the enum so the fake's answers validate.
            "pinLocation": "category",
            "pinned": False,
            "closed": False,
            "sink": False,
            "countComments": 0,
            "countViews": 1,
            "score": None,
            "bookmarked": False,
            "unread": False,
            "attributes": {},
            "url": f"{self.url}/discussion/{did}/{slug}",
        }
        self.discussions[did] = row
        return row

    def _store_comment(self, payload: dict[str, Any], user_id: int) -> dict[str, Any]:
        self._next["comment"] += 1
        cid = self._next["comment"]
        discussion = self.discussions[payload["discussionID"]]
        discussion["countComments"] += 1
        row = {
            "commentID": cid,
            "discussionID": discussion["discussionID"],
            "parentRecordType": "discussion",
            "parentRecordID": discussion["discussionID"],
            "categoryID": discussion["categoryID"],
            "name": f"Re: {discussion['name']}",
            "body": payload["body"],
            "format": payload["format"],
            "dateInserted": self._now(),
            "dateUpdated": None,
            "insertUserID": user_id,
            "score": 0,
            "attributes": {},
            "url": f"{self.url}/discussion/comment/{cid}#Comment_{cid}",
        }
        self.comments[cid] = row
        return row

    @staticmethod
    def _public(row: dict[str, Any], body: str) -> dict[str, Any]:
        return {**{k: v for k, v in row.items() if k != "format"}, "body": body}

    # -- behaviour -----------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"message": "You must sign in.", "status": 401})
        path = request.path.removeprefix(API)
        method = request.method
        if method == "GET" and path == "/users/me":
            me = {**self._user(), "isAdmin": False, "isSysAdmin": False, "permissions": []}
            return Reply(200, me)
        if method == "GET" and path == "/categories":
            return self._list_categories(request.args)
        if method == "POST" and path in ("/discussions", "/comments"):
            return self._create("discussion" if path == "/discussions" else "comment", request)
        if method == "GET" and path == "/discussions":
            return self._list_discussions(request.args)
        if method == "GET" and path == "/comments":
            return self._list_comments(request.args)
        match = re.fullmatch(r"/(discussions|comments)/(\d+)/edit", path)
        if method == "GET" and match:
            table = self.discussions if match.group(1) == "discussions" else self.comments
            row = table.get(int(match.group(2)))
            if row is None or row["insertUserID"] != self.user_id:
                return Reply(404, {"message": "Not found.", "status": 404})
            if match.group(1) == "discussions":
                keys = ("discussionID", "name", "body", "format", "categoryID", "sink", "closed")
                edit = {k: row[k] for k in keys}
                edit.update(pinned=row["pinned"], pinLocation=row["pinLocation"])
            else:
                edit = {k: row[k] for k in ("commentID", "discussionID", "body", "format")}
            return Reply(200, edit)
        return Reply(404, {"message": f"no fake for {method} {path}", "status": 404})

    def _flooded(self, kind: str) -> Reply | None:
        n_disc, n_comm, window, wait, status = self.flood
        limit = n_disc if kind == "discussion" else n_comm
        now = self.clock()
        recent = [t for t in self._posted_at[kind] if now - t < window]
        self._posted_at[kind] = recent
        if limit and len(recent) >= limit:
            message = FLOOD_MESSAGE.format(n=limit, window=int(window), wait=wait)
            return validation_error("body", "spam", message, status)
        return None

    def _create(self, kind: str, request: Request) -> Reply:
        payload = request.json()
        if kind == "discussion" and "categoryID" not in payload:
            return validation_error("categoryID", "missingField", "categoryID is required.")
        if kind == "discussion" and self._category(payload["categoryID"]) is None:
            return Reply(404, {"message": "Category not found.", "status": 404})
        if kind == "comment" and payload.get("discussionID") not in self.discussions:
            return Reply(404, {"message": "Discussion not found.", "status": 404})
        excess = len(payload["body"]) - self.max_body
        if excess > 0:
            return validation_error("body", "maxLength", f"Body is {excess:,} characters too long.")
        flooded = self._flooded(kind)
        if flooded is not None:
            return flooded
        self._posted_at[kind].append(self.clock())
        if self.premoderate:
            self.queue.append((kind, payload))
            return Reply(202, {"message": MODERATION_MESSAGE, "status": 202})
        if kind == "discussion":
            row = self._store_discussion(payload, self.user_id)
        else:
            row = self._store_comment(payload, self.user_id)
        return Reply(201, self._public(row, self._render(row["body"])))

    @staticmethod
    def _page(rows: list[dict[str, Any]], args: dict[str, str], default: int = 30):
        limit = int(args.get("limit", default))
        page = int(args.get("page", 1))
        return rows[(page - 1) * limit : page * limit]

    def _sorted(self, rows: list[dict[str, Any]], sort: str | None, key: str):
        field = (sort or key).lstrip("-")
        field = key if field in ("dateInserted", "dateLastComment") else field
        return sorted(rows, key=lambda r: r[field], reverse=(sort or "").startswith("-"))

    def _list_discussions(self, args: dict[str, str]) -> Reply:
        rows = list(self.discussions.values())
        if "categoryID" in args:
            rows = [r for r in rows if r["categoryID"] == int(args["categoryID"])]
        if "insertUserID" in args:
            rows = [r for r in rows if r["insertUserID"] == int(args["insertUserID"])]
        rows = self._page(self._sorted(rows, args.get("sort"), "discussionID"), args)
        return Reply(200, [self._public(r, self._render(r["body"])) for r in rows])

    def _list_comments(self, args: dict[str, str]) -> Reply:
        rows = list(self.comments.values())
        if "discussionID" in args:
            rows = [r for r in rows if r["discussionID"] == int(args["discussionID"])]
        if "insertUserID" in args:
            rows = [r for r in rows if r["insertUserID"] == int(args["insertUserID"])]
        rows = self._page(self._sorted(rows, args.get("sort"), "commentID"), args)
        return Reply(200, [self._public(r, self._render(r["body"])) for r in rows])

    def _list_categories(self, args: dict[str, str]) -> Reply:
        rows = [
            {
                "categoryID": cid,
                "name": name,
                "description": None,
                "parentCategoryID": None,
                "customPermissions": False,
                "isArchived": False,
                "urlcode": code,
                "url": f"{self.url}/categories/{code}",
                "displayAs": "discussions",
                "countCategories": 0,
                "countDiscussions": sum(
                    1 for d in self.discussions.values() if d["categoryID"] == cid
                ),
                "countComments": 0,
                "countFollowers": 0,
                "countAllDiscussions": 0,
                "countAllComments": 0,
                "depth": 1,
            }
            for cid, code, name in self.categories
        ]
        return Reply(200, self._page(rows, args, default=100))
