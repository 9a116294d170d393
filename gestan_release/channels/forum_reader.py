"""Reading bug reports from a Vanilla forum (API v2): discussions, their tags, their reporters.

The HTTP side — token, retries on 5xx and timeouts, waits on 429 — is the forum channel's own
client (`ForumSender.get`), not a copy: one place knows how to talk to Vanilla.

- Discussions of a category: `GET /discussions?categoryID=C&expand=tags&sort=discussionID`, 100 a
  page. Vanilla pages with `page=N` and says in the `Link` header whether a `rel="next"` page
  exists. Offset pages shift when a discussion is deleted (or moved) between two requests, which
  would skip one: the reader follows every `next` with a *keyset* request instead
  (`discussionID=>LAST`, a range expression), which asks for exactly what comes after the last
  discussion read, whatever happened before it. Filters: `dateUpdated=>=ISO` for edited ones.
- Tags: `GET /tags` (paged) to resolve the priority tag names of `FORUM_PRIORITY_TAGS`.
- Reporters: `GET /users?userID=1,2,3` (a CSV range expression), one request per page of
  discussions. Vanilla returns `email` only to a token allowed to see personal information
  (an administrator's, `Garden.PersonalInfo.View`): without it the sync stops with that advice.
- Anything that is not JSON where JSON is expected (an HTML login or maintenance page, a wrong
  `FORUM_BASE_URL`) is a permanent error that says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from gestan_release.channels.base import Closing
from gestan_release.channels.forum import ForumSender
from gestan_release.errors import ConfigError, DeliveryError

PAGE = 100  # the maximum `limit` of /discussions in the OpenAPI document


class MissingEmailScope(ConfigError):
    """The token cannot read reporters' e-mail addresses."""


@dataclass(frozen=True)
class Tag:
    tag_id: int
    urlcode: str
    name: str


class ForumReader(Closing):
    """Reads discussions, tags and users through the forum channel's HTTP client."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        if not base_url:
            raise ConfigError(
                "tickets sync reads the forum: set GESTAN_RELEASE_FORUM_BASE_URL "
                "(e.g. https://forum.gestan.fr)"
            )
        if not token:
            raise ConfigError(
                "tickets sync reads the forum: set GESTAN_RELEASE_FORUM_TOKEN (a personal access "
                "token of a forum administrator, to read the reporters' e-mail addresses)"
            )
        self.api = ForumSender(
            base_url, token, transport=transport, sleep=sleep, clock=clock, **kwargs
        )
        self.host = self.api.host

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> ForumReader:
        token = settings.forum_token.get_secret_value() if settings.forum_token else ""
        return cls(settings.forum_base_url or "", token, **kwargs)

    def close(self) -> None:
        self.api.close()

    # -- JSON --------------------------------------------------------------------------------
    def _json(self, response: httpx.Response, what: str) -> Any:
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            return response.json()
        except ValueError:
            pass
        sample = " ".join(response.text[:60].split())
        looks = "an HTML page" if "html" in kind or sample.lstrip().startswith("<") else kind
        raise DeliveryError(
            f"the forum at {self.host} answered {looks or 'something'} instead of JSON while "
            f"{what} (starts with {sample!r}): check FORUM_BASE_URL (the forum's address, "
            "without /api/v2) and that its API v2 is enabled",
            permanent=True,
        )

    def _list(self, response: httpx.Response, what: str) -> list[dict[str, Any]]:
        body = self._json(response, what)
        if not isinstance(body, list):
            raise DeliveryError(
                f"the forum at {self.host} answered a {type(body).__name__} instead of a list "
                f"while {what}",
                permanent=True,
            )
        return [row for row in body if isinstance(row, dict)]

    # -- categories and tags -----------------------------------------------------------------
    def category_id(self, category: str) -> int:
        """A url code or id of `FORUM_BUG_CATEGORIES` as an id; ConfigError naming it if unknown."""
        try:
            return self.api.resolve_category(category, setting="FORUM_BUG_CATEGORIES")
        except DeliveryError as exc:
            if exc.permanent and "not found" in str(exc):
                raise ConfigError(str(exc)) from None
            raise

    def tags(self) -> list[Tag]:
        """Every tag of the forum (paged by 100)."""
        found: list[Tag] = []
        for page in range(1, 201):
            response = self.api.get(
                "/tags",
                {"limit": str(PAGE), "page": str(page)},
                what="listing the forum tags",
            )
            rows = self._list(response, "listing the forum tags")
            for row in rows:
                try:
                    found.append(
                        Tag(int(row["tagID"]), str(row.get("urlcode") or ""), str(row["name"]))
                    )
                except (KeyError, TypeError, ValueError):
                    continue
            if len(rows) < PAGE or "next" not in response.links:
                break
        return found

    # -- discussions -------------------------------------------------------------------------
    def discussions(
        self,
        category_id: int,
        *,
        after_id: int = 0,
        updated_since: str | None = None,
        limit: int = PAGE,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of the category's discussions with id > `after_id` (and, if given, updated
        since `updated_since`), in id order, every page followed (keyset: see the module doc)."""
        last = after_id
        while True:
            params = {
                "categoryID": str(category_id),
                "sort": "discussionID",
                "limit": str(limit),
                "expand": "tags",
                "excludeHiddenCategories": "false",
                "followed": "false",
            }
            if last > 0:
                params["discussionID"] = f">{last}"
            if updated_since:
                params["dateUpdated"] = f">={updated_since}"
            what = f"listing the discussions of category #{category_id} after #{last}"
            response = self.api.get("/discussions", params, what=what)
            rows = self._list(response, what)
            ids = [row["discussionID"] for row in rows if isinstance(row.get("discussionID"), int)]
            if rows:
                yield rows
            if not ids or "next" not in response.links or max(ids) <= last:
                return
            last = max(ids)

    def discussion(self, discussion_id: int) -> dict[str, Any] | None:
        """One discussion, or None when the forum says it does not exist (404)."""
        what = f"reading discussion #{discussion_id}"
        response = self.api.get(f"/discussions/{discussion_id}", what=what, accept=(404,))
        if response.status_code == 404:
            return None
        body = self._json(response, what)
        return body if isinstance(body, dict) else None

    # -- users -------------------------------------------------------------------------------
    def users(self, user_ids: list[int]) -> dict[int, dict[str, Any]]:
        """The users among `user_ids` (those the forum still has), by id; MissingEmailScope when
        the token cannot see e-mail addresses."""
        found: dict[int, dict[str, Any]] = {}
        wanted = sorted({u for u in user_ids if u > 0})
        for start in range(0, len(wanted), PAGE):
            chunk = wanted[start : start + PAGE]
            what = f"reading {len(chunk)} reporter(s)"
            response = self.api.get(
                "/users",
                {"userID": ",".join(map(str, chunk)), "limit": str(PAGE)},
                what=what,
                accept=(403,),
            )
            if response.status_code == 403:
                raise MissingEmailScope(
                    f"the forum at {self.host} refuses to list users to this token (HTTP 403): "
                    "FORUM_TOKEN must be a personal access token of a forum administrator "
                    "(permission Garden.PersonalInfo.View) to read the reporters' e-mail addresses"
                )
            for row in self._list(response, what):
                if not isinstance(row.get("userID"), int):
                    continue
                if "email" not in row:
                    raise MissingEmailScope(
                        f"the forum at {self.host} does not show e-mail addresses to this token: "
                        "FORUM_TOKEN must be a personal access token of a forum administrator "
                        "(permission Garden.PersonalInfo.View), or no acknowledgement can be sent"
                    )
                found[row["userID"]] = row
        return found
