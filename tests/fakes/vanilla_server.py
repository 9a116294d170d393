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
`server_error()`, `unanswered(apply)`, `unauthorized()`, `forbidden()`, `premoderated()` (202),
`flood(seconds)` (the validation error), `html_page()` (200 with an HTML page, as a login or
maintenance page would).

For the intake (bug reports read by `tickets sync`), as Vanilla does it:
- discussions carry `dateUpdated` (null until edited) and tags; `GET /discussions` filters on
  `categoryID`, `discussionID` (range expression: `>N`, `>=N`, `a..b`, CSV), `dateInserted` /
  `dateUpdated` (date filters `>=ISO`…), sorts, pages with `page`/`limit` and says in the `Link`
  header (`rel="first"`, `rel="next"`) whether another page exists; `expand=tags` adds `tags`;
- `GET /discussions/{id}` (404 once deleted), `GET /tags` (paged, 20 by default);
- `GET /users?userID=1,2` and `GET /users/{id}`: the full record (with `email`) for an
  administrator's token (`admin=True`, the default); for another token `email` is left out unless
  the user shows it (as `UsersApiController::get` does; the published schema describes the
  administrator's view, so those answers are not validated against it);
- helpers: `add_user`, `add_tag`, `add_discussion(..., tags=, user_id=)`, `tag_discussion`
  (re-tag: touches `dateUpdated` only with `retag_touches_date_updated=True`, since Vanilla's tag
  endpoints are not documented to), `edit_discussion`, `delete_discussion`, and `before(method,
  path_regex, fn)`: a one-shot hook run before a matching request is answered (e.g. delete a
  discussion between two pages).
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


def unanswered(apply: bool = False, method: str = "POST", path: str = ".*") -> Scripted:
    """No answer until the client gives up (with `apply`, the request is applied first)."""
    return Scripted(method, path, None, hang=True, apply=apply)


def unauthorized(method: str = "POST", path: str = ".*") -> Scripted:
    return Scripted(method, path, Reply(401, {"message": "You must sign in.", "status": 401}))


def forbidden(method: str = "POST", path: str = ".*") -> Scripted:
    return Scripted(method, path, Reply(403, {"message": "Permission Problem", "status": 403}))


def premoderated(method: str = "POST", path: str = ".*") -> Scripted:
    """A 202 without creating anything visible (like pre-moderation)."""
    return Scripted(method, path, Reply(202, {"message": MODERATION_MESSAGE, "status": 202}))


def html_page(method: str = "GET", path: str = ".*", status: int = 200) -> Scripted:
    page = b"<!DOCTYPE html><html><head><title>Connexion</title></head><body>Forum</body></html>"
    return Scripted(method, path, Reply(status, page, content_type="text/html; charset=utf-8"))


def _range_predicate(expression: str) -> Callable[[int], bool]:
    """Vanilla's RangeExpression on integers: `>N`, `>=N`, `<N`, `<=N`, `=N`, `a..b`, CSV, N."""
    text = expression.strip()
    for op, test in (
        (">=", lambda v, n: v >= n),
        ("<=", lambda v, n: v <= n),
        (">", lambda v, n: v > n),
        ("<", lambda v, n: v < n),
        ("=", lambda v, n: v == n),
    ):
        if text.startswith(op):
            n = int(text[len(op) :])
            return lambda v, test=test, n=n: test(v, n)
    if ".." in text:
        low, _, high = text.partition("..")
        return lambda v: (not low or v >= int(low)) and (not high or v <= int(high))
    wanted = {int(x) for x in text.split(",") if x.strip()}
    return wanted.__contains__


def _range_match(expression: str, value: int) -> bool:
    return _range_predicate(expression)(value)


def _date_match(expression: str, value: str | None) -> bool:
    """Vanilla's date filters (`>=2026-11-27T10:00:00Z`, `>`, `<`, `<=`, `=`); null never matches
    anything."""
    if value is None:
        return False
    text = expression.strip()
    op = next((o for o in (">=", "<=", ">", "<", "=") if text.startswith(o)), "=")
    stamp = datetime.datetime.fromisoformat(text[len(op) :].strip().replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    have = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return {
        ">=": have >= stamp,
        "<=": have <= stamp,
        ">": have > stamp,
        "<": have < stamp,
        "=": have == stamp,
    }[op]


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
        admin: bool = True,
        retag_touches_date_updated: bool = False,
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
        self._next = {"discussion": 100, "comment": 5000, "user": 1000, "tag": 40}
        self.admin = admin
        self.retag_touches_date_updated = retag_touches_date_updated
        self.users: dict[int, dict[str, Any]] = {}
        self.tags: dict[int, dict[str, Any]] = {}
        self.discussion_tags: dict[int, list[int]] = {}
        self.hooks: list[tuple[str, str, Callable[[Request], None]]] = []

    # -- helpers -------------------------------------------------------------------------------

    def add_discussion(
        self,
        name: str,
        body: str,
        category_id: int = 1,
        user_id: int = 99,
        tags: tuple[str, ...] = (),
        discussion_id: int | None = None,
    ) -> int:
        """A discussion posted by someone else (e.g. a bug report), with tags (by name)."""
        if discussion_id is not None:
            self._next["discussion"] = discussion_id - 1
        did = self._store_discussion(
            {"name": name, "body": body, "format": "markdown", "categoryID": category_id},
            user_id,
        )["discussionID"]
        self.discussion_tags[did] = [self.tag_id(t) for t in tags]
        return did

    def add_user(
        self,
        name: str,
        email: str | None,
        *,
        banned: int = 0,
        show_email: bool = False,
        user_id: int | None = None,
    ) -> int:
        self._next["user"] += 1
        uid = user_id if user_id is not None else self._next["user"]
        self.users[uid] = {
            "userID": uid,
            "name": name,
            "email": email or "",
            "photoUrl": None,
            "points": 0,
            "emailConfirmed": bool(email),
            "showEmail": show_email,
            "bypassSpam": False,
            "banned": banned,
            "dateInserted": self._now(),
            "dateLastActive": None,
            "dateUpdated": None,
        }
        return uid

    def add_tag(self, name: str, urlcode: str | None = None) -> int:
        self._next["tag"] += 1
        tid = self._next["tag"]
        code = urlcode or re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        self.tags[tid] = {"tagID": tid, "name": name, "urlcode": code}
        return tid

    def tag_id(self, name: str) -> int:
        for tid, tag in self.tags.items():
            if tag["name"] == name or tag["urlcode"] == name:
                return tid
        return self.add_tag(name)

    def tag_discussion(self, discussion_id: int, *names: str) -> None:
        """Set the discussion's tags (like `PUT /discussions/{id}/tags`)."""
        self.discussion_tags[discussion_id] = [self.tag_id(n) for n in names]
        if self.retag_touches_date_updated:
            self.discussions[discussion_id]["dateUpdated"] = self._now()

    def edit_discussion(self, discussion_id: int, name: str | None = None) -> None:
        row = self.discussions[discussion_id]
        if name is not None:
            row["name"] = name
        row["dateUpdated"] = self._now()

    def delete_discussion(self, discussion_id: int) -> None:
        self.discussions.pop(discussion_id, None)
        self.discussion_tags.pop(discussion_id, None)

    def before(self, method: str, path_regex: str, fn: Callable[[Request], None]) -> None:
        """Run `fn(request)` once, before answering the next matching request."""
        self.hooks.append((method.upper(), path_regex, fn))

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
        for i, (m, regex, fn) in enumerate(self.hooks):
            if m == request.method and re.fullmatch(regex, request.path):
                del self.hooks[i]
                fn(request)
                break
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"message": "You must sign in.", "status": 401})
        path = request.path.removeprefix(API)
        method = request.method
        if method == "GET" and path == "/users/me":
            me = {**self._user(), "isAdmin": self.admin, "isSysAdmin": False, "permissions": []}
            return Reply(200, me)
        if method == "GET" and path == "/users":
            return self._list_users(request.args)
        if method == "GET" and (m := re.fullmatch(r"/users/(\d+)", path)):
            user = self.users.get(int(m.group(1)))
            if user is None:
                return Reply(404, {"message": "User not found.", "status": 404})
            return Reply(200, self._user_view(user))
        if method == "GET" and path == "/tags":
            rows = [
                {**t, "id": t["tagID"], "urlCode": t["urlcode"], "parentTagID": None}
                for t in sorted(self.tags.values(), key=lambda t: t["tagID"])
            ]
            return Reply(200, self._page(rows, request.args, default=20))
        if method == "GET" and (m := re.fullmatch(r"/discussions/(\d+)", path)):
            row = self.discussions.get(int(m.group(1)))
            if row is None:
                return Reply(404, {"message": "Discussion not found.", "status": 404})
            return Reply(200, self._public(row, self._render(row["body"])))
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
        if "discussionID" in args:
            keep = _range_predicate(args["discussionID"])
            rows = [r for r in rows if keep(r["discussionID"])]
        for name in ("dateUpdated", "dateInserted"):
            if name in args:
                rows = [r for r in rows if _date_match(args[name], r[name])]
        ordered = self._sorted(rows, args.get("sort"), "discussionID")
        page = self._page(ordered, args)
        listed = [self._public(r, self._render(r["body"])) for r in page]
        if "tags" in (args.get("expand") or "").split(","):
            for row in listed:
                row["tags"] = [
                    dict(self.tags[t]) for t in self.discussion_tags.get(row["discussionID"], [])
                ]
        return Reply(200, listed, self._links("/discussions", args, len(ordered)))

    def _links(self, path: str, args: dict[str, str], total: int) -> dict[str, str]:
        """Vanilla's paging header: `Link: <…page=1…>; rel="first", <…page=N+1…>; rel="next"`."""
        from urllib.parse import urlencode

        limit = int(args.get("limit", 30))
        page = int(args.get("page", 1))

        def url(n: int) -> str:
            return f"{self.url}{API}{path}?{urlencode({**args, 'page': str(n)})}"

        links = [f'<{url(1)}>; rel="first"']
        if page * limit < total:
            links.append(f'<{url(page + 1)}>; rel="next"')
        return {"Link": ", ".join(links)}

    def _user_view(self, user: dict[str, Any]) -> dict[str, Any]:
        if self.admin or user["showEmail"]:
            return dict(user)
        return {k: v for k, v in user.items() if k != "email"}

    def _list_users(self, args: dict[str, str]) -> Reply:
        rows = sorted(self.users.values(), key=lambda u: u["userID"])
        if "userID" in args:
            keep = _range_predicate(args["userID"])
            rows = [u for u in rows if keep(u["userID"])]
        page = self._page(rows, args)
        return Reply(
            200, [self._user_view(u) for u in page], self._links("/users", args, len(rows))
        )

    def _validate_response(self, request: Request, reply: Reply) -> list[str]:
        # The published User schema is the administrator's view; another token's answer leaves
        # `email` out (UsersApiController::get), which that schema cannot describe.
        if (
            not self.admin
            and request.path.startswith(f"{API}/users")
            and request.path != (f"{API}/users/me")
        ):
            return []
        return super()._validate_response(request, reply)

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
