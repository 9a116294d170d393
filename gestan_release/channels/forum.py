"""Vanilla Forums API v2: the changelog as a new discussion, a reply on each fixed ticket's thread.

- Auth: `Authorization: Bearer <FORUM_TOKEN>` (a personal access token; calls run with that
  user's permissions).
- `ForumTopic` -> `POST /api/v2/discussions` (`name`, `body`, `format: markdown`, `categoryID`). The
  category is a numeric id, or a url code resolved once through
  `GET /api/v2/categories?outputFormat=flat` (paged by 100, the maximum the OpenAPI document allows)
  and cached. A body longer than `discussion_limit` is split at paragraph, then line, then word
  boundaries: the discussion gets the first part, each following part is a comment on it. Every
  part carries the message's marker; follow-ups also carry `<!-- gestan-release-part:K/N -->`.
- `ForumComment` -> `POST /api/v2/comments` (`body`, `format`, `discussionID`), split the same way
  past `comment_limit` (8,000 characters, Vanilla's default).
- `201` -> `Receipt(external_id, url)`. `202` (pre-moderation, `{"message", "status": 202}`) ->
  `Receipt(state="pending_approval")`: the post exists and waits for a moderator; the pipeline
  records it as done-pending and never posts it again.
- By the one retry policy of `core.retry`: flood control (a validation error on `body`
  asking to wait) and `429` are waited out (the number of seconds in the message, else
  `Retry-After`, else `flood_pause`), a bounded number of times; `5xx`, timeouts and connection
  errors are retried with exponential backoff; `401`/`403` are permanent. Error messages never
  contain the token: what the forum says passes through `gestan_release.core.scrub` (a server could
  quote our Authorization header).

What "never twice" means on the forum:
- `find_existing` lists the token user's own recent discussions of the category (or their
  comments on the ticket's discussion) and looks for the marker in the body. Listed bodies are
  rendered HTML, where the HTML-comment marker may have been stripped, so for each own post whose
  rendered body lacks it the raw body is read from `/discussions/{id}/edit` (`/comments/{id}/edit`).
  Only the `search_limit` most recent own posts are searched.
- A changelog split into parts is completed on resume: when the discussion is found but some
  follow-up parts are missing (crash between parts), `find_existing` posts only the missing parts
  (recognised by their part marker) and then reports the delivery as found.
- After a timeout on a `POST` (the post may have been created) the sender looks for the marker
  before trying again.
- A post held for moderation (`202`) is not visible through the API until approved: if the
  process dies after the `202` but before the pipeline records it, the lookup cannot see it and a
  second copy may be submitted to the moderation queue (published twice only if a moderator
  approves both). A follow-up part cannot be posted while its discussion awaits approval.
- Vanilla has no idempotency key; a post deleted by a moderator is not found and would be re-posted.

Why one module: about 500 lines on purpose (one outside service, one module): posting, finding
by marker and completing the parts of a post are one state machine over the same client. Cutting a
body into parts is `forum_parts`; HTTP, retries and waits are `channels.http` and
`gestan_release.core.retry`; reading bug reports is `forum_reader`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from gestan_release.channels.base import ForumComment, ForumTopic, Message, Receipt
from gestan_release.channels.forum_parts import part_number, split_body
from gestan_release.channels.http import HttpChannel
from gestan_release.core import retry
from gestan_release.core.retry import Backoff, RateLimit, Verdict
from gestan_release.core.scrub import remember, scrub
from gestan_release.errors import DeliveryError

log = logging.getLogger(__name__)

FORMAT = "markdown"
_FLOOD_WORDS = re.compile(
    r"wait|spam|flood|too (?:many|often|fast)|posted \d+ times|attend|patient", re.IGNORECASE
)
_SECONDS = re.compile(r"(\d+)\s*(?:seconds?|secondes?|sec\b|s\b)", re.IGNORECASE)
# "You have posted 3 times within 60 seconds. ... You must wait at least 120 seconds ...": the
# number after "wait" is the wait, not the window.
_WAIT_SECONDS = re.compile(
    r"(?:wait|attendre|attendez)\D{0,20}?(\d+)\s*(?:seconds?|secondes?|sec\b|s\b)", re.IGNORECASE
)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


@dataclass
class _Posted:
    status: int
    body: dict[str, Any]


class ForumSender(HttpChannel):
    """Posts `ForumTopic` and `ForumComment` messages to a Vanilla forum (API v2)."""

    name = "forum"
    peer = "the forum"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        category: str | None = None,
        discussion_limit: int = 8000,
        comment_limit: int = 8000,
        continuation: str = "*(suite {k}/{n})*",
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        flood_pause: float = 60.0,
        max_waits: int = 5,
        max_wait: float = 600.0,
        search_limit: int = 30,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not base_url:
            raise DeliveryError(
                "the forum is enabled but FORUM_BASE_URL is not set", permanent=True
            )
        if not token:
            raise DeliveryError("the forum is enabled but FORUM_TOKEN is not set", permanent=True)
        remember(token)  # scrubbed from any error the forum echoes
        base = base_url.rstrip("/")
        if not base.endswith("/api/v2"):
            base += "/api/v2"
        self.api_base = base
        self.host = urlsplit(base).netloc
        self.category = category
        self.discussion_limit = discussion_limit
        self.comment_limit = comment_limit
        self.continuation = continuation
        self.flood_pause = flood_pause
        self.search_limit = min(100, max(1, search_limit))
        self._categories: dict[str, int] = {}
        self._me: dict[str, Any] | None = None
        super().__init__(
            base,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            backoff=Backoff(max_attempts, backoff, max_backoff),
            rate=RateLimit(max_waits, max_wait),
            sleep=sleep,
            clock=clock,
            logger=log,
        )

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> ForumSender:
        token = settings.forum_token.get_secret_value() if settings.forum_token else ""
        kwargs.setdefault("category", settings.forum_category)
        return cls(settings.forum_base_url or "", token, **kwargs)

    # -- the Sender protocol -------------------------------------------------------------------

    def send(self, message: Message) -> Receipt:
        if isinstance(message, ForumTopic):
            return self._send_topic(message)
        if isinstance(message, ForumComment):
            return self._send_comment(message)
        raise _not_ours(message)

    def find_existing(self, message: Message) -> Receipt | None:
        if isinstance(message, ForumTopic):
            return self._find_topic(message)
        if isinstance(message, ForumComment):
            return self._find_comment(message)
        raise _not_ours(message)

    def check(self) -> str:
        """Verify the token (`GET /api/v2/users/me`) and the category; posts nothing."""
        me = self._whoami(refresh=True)
        text = f"forum: authenticated as {me.get('name', '?')} on {self.host}"
        if self.category:
            text += f"; category {self.category!r} is #{self.resolve_category(self.category)}"
        return text

    # -- categories ----------------------------------------------------------------------------

    def resolve_category(self, category: str | int, setting: str = "FORUM_CATEGORY") -> int:
        """A numeric id as is; else the category whose url code matches (case-insensitive).
        `setting` names the setting to fix in the error message."""
        text = str(category).strip()
        if text.isdigit():
            return int(text)
        key = text.lower()
        if key in self._categories:
            return self._categories[key]
        seen: list[str] = []
        for page in range(1, 51):
            response = self._request(
                "GET",
                "/categories",
                params={"outputFormat": "flat", "limit": "100", "page": str(page)},
                what="listing the forum categories",
            )
            rows = retry.json_rows(response)
            for row in rows:
                code = str(row.get("urlcode", "")).lower()
                if code and "categoryID" in row:
                    self._categories[code] = int(row["categoryID"])
                    seen.append(code)
            if key in self._categories:
                return self._categories[key]
            if len(rows) < 100:
                break
        known = ", ".join(sorted(seen)[:20]) or "none visible to this token"
        raise DeliveryError(
            f"forum category {text!r} not found on {self.host} (known url codes: {known}); "
            f"set {setting} to an existing url code or a numeric category id",
            permanent=True,
        )

    # -- topics --------------------------------------------------------------------------------

    def _topic_parts(self, topic: ForumTopic) -> list[str]:
        return split_body(
            topic.body, topic.marker, self.discussion_limit, self.comment_limit, self.continuation
        )

    def _send_topic(self, topic: ForumTopic) -> Receipt:
        category_id = self.resolve_category(topic.category)
        parts = self._topic_parts(topic)
        posted = self._post(
            "/discussions",
            {"name": topic.title, "body": parts[0], "format": FORMAT, "categoryID": category_id},
            what=f"creating the discussion {topic.title!r}",
            lookup=lambda: self._find_topic(topic, complete=False),
        )
        if isinstance(posted, Receipt):
            return self._complete_topic(topic, posted, parts)
        if posted.status == 202:
            detail = scrub(str(posted.body.get("message") or "held for moderation"))[:200]
            if len(parts) > 1:
                detail += f"; {len(parts) - 1} follow-up part(s) not posted until it is approved"
            return Receipt(state="pending_approval", detail=str(detail))
        discussion_id = posted.body.get("discussionID")
        if discussion_id is None:
            raise DeliveryError(
                f"the forum accepted the discussion (HTTP {posted.status}) but returned no id",
                permanent=True,
            )
        receipt = Receipt(external_id=str(discussion_id), url=posted.body.get("url"))
        numbers = list(range(2, len(parts) + 1))
        return self._post_parts(int(discussion_id), parts, numbers, topic.marker, receipt)

    def _post_parts(
        self,
        discussion_id: int,
        parts: list[str],
        numbers: list[int],
        marker: str,
        receipt: Receipt,
    ) -> Receipt:
        """Post parts `numbers` (2..n) of `parts` as comments on the discussion."""
        pending = []
        for k in numbers:
            try:
                posted = self._post(
                    "/comments",
                    {"body": parts[k - 1], "format": FORMAT, "discussionID": discussion_id},
                    what=f"posting part {k}/{len(parts)} on discussion #{discussion_id}",
                    lookup=lambda k=k: self._find_part(discussion_id, marker, k),
                )
            except DeliveryError as exc:
                raise DeliveryError(
                    f"discussion #{discussion_id} was posted but part {k}/{len(parts)} failed: "
                    f"{exc} (resuming completes the missing parts without reposting)",
                    permanent=exc.permanent,
                ) from None
            if isinstance(posted, _Posted) and posted.status == 202:
                pending.append(k)
        if len(parts) > 1:
            detail = f"posted in {len(parts)} parts"
            if pending:
                detail += f"; part(s) {', '.join(map(str, pending))} await approval"
            return Receipt(
                external_id=receipt.external_id,
                url=receipt.url,
                state=receipt.state,
                detail=(f"{receipt.detail}; {detail}" if receipt.detail else detail),
            )
        return receipt

    def _find_topic(self, topic: ForumTopic, complete: bool = True) -> Receipt | None:
        category_id = self.resolve_category(topic.category)
        me = self._whoami()
        response = self._request(
            "GET",
            "/discussions",
            params={
                "categoryID": str(category_id),
                "insertUserID": str(me["userID"]),
                "sort": "-dateInserted",
                "limit": str(self.search_limit),
                "excludeHiddenCategories": "false",
                "followed": "false",
            },
            what="listing recent discussions of the category",
        )
        rows = retry.json_rows(response)
        # Same title first: the likeliest match, checked first when raw bodies must be fetched.
        rows.sort(key=lambda row: row.get("name") != topic.title)
        for row in rows:
            if self._raw_if_marked(row, topic.marker, "/discussions/{id}/edit", "discussionID"):
                receipt = Receipt(
                    external_id=str(row["discussionID"]),
                    url=row.get("url"),
                    detail="found by its marker",
                )
                return self._complete_topic(topic, receipt, None) if complete else receipt
        return None

    def _complete_topic(
        self, topic: ForumTopic, receipt: Receipt, parts: list[str] | None
    ) -> Receipt:
        parts = parts if parts is not None else self._topic_parts(topic)
        if receipt.external_id is None:
            return receipt
        return self._complete(int(receipt.external_id), parts, topic.marker, receipt)

    def _complete(
        self, discussion_id: int, parts: list[str], marker: str, receipt: Receipt
    ) -> Receipt:
        """Post the follow-up parts (2..n) that are not on the discussion yet."""
        if len(parts) == 1:
            return receipt
        present = {
            part_number(raw)
            for row in self._own_comments(discussion_id)
            if (raw := self._raw_if_marked(row, marker, "/comments/{id}/edit", "commentID"))
        }
        missing = [k for k in range(2, len(parts) + 1) if k not in present]
        if missing:
            log.info("forum: discussion #%s lacks part(s) %s; posting them", discussion_id, missing)
        return self._post_parts(discussion_id, parts, missing, marker, receipt)

    def _find_part(self, discussion_id: int, marker: str, k: int) -> Receipt | None:
        for row in self._own_comments(discussion_id):
            raw = self._raw_if_marked(row, marker, "/comments/{id}/edit", "commentID")
            if raw is not None and part_number(raw) == k:
                return Receipt(external_id=str(row["commentID"]), url=row.get("url"))
        return None

    # -- comments ------------------------------------------------------------------------------

    def _comment_parts(self, comment: ForumComment) -> list[str]:
        return split_body(
            comment.body, comment.marker, self.comment_limit, self.comment_limit, self.continuation
        )

    def _send_comment(self, comment: ForumComment) -> Receipt:
        parts = self._comment_parts(comment)
        posted = self._post(
            "/comments",
            {"body": parts[0], "format": FORMAT, "discussionID": comment.discussion_id},
            what=f"replying on discussion #{comment.discussion_id}",
            lookup=lambda: self._find_comment(comment, complete=False),
        )
        if isinstance(posted, Receipt):
            return self._complete(comment.discussion_id, parts, comment.marker, posted)
        if posted.status == 202:
            detail = scrub(str(posted.body.get("message") or "held for moderation"))[:200]
            return Receipt(state="pending_approval", detail=str(detail))
        comment_id = posted.body.get("commentID")
        receipt = Receipt(
            external_id=str(comment_id) if comment_id is not None else None,
            url=posted.body.get("url"),
        )
        numbers = list(range(2, len(parts) + 1))
        return self._post_parts(comment.discussion_id, parts, numbers, comment.marker, receipt)

    def _find_comment(self, comment: ForumComment, complete: bool = True) -> Receipt | None:
        for row in self._own_comments(comment.discussion_id):
            raw = self._raw_if_marked(row, comment.marker, "/comments/{id}/edit", "commentID")
            if raw is not None and part_number(raw) is None:
                receipt = Receipt(
                    external_id=str(row["commentID"]),
                    url=row.get("url"),
                    detail="found by its marker",
                )
                if not complete:
                    return receipt
                parts = self._comment_parts(comment)
                return self._complete(comment.discussion_id, parts, comment.marker, receipt)
        return None

    def _own_comments(self, discussion_id: int) -> list[dict[str, Any]]:
        me = self._whoami()
        response = self._request(
            "GET",
            "/comments",
            params={
                "discussionID": str(discussion_id),
                "insertUserID": str(me["userID"]),
                "sort": "-dateInserted",
                "limit": "100",
            },
            what=f"listing comments of discussion #{discussion_id}",
        )
        return retry.json_rows(response)

    # -- marker lookup -------------------------------------------------------------------------

    def _raw_if_marked(
        self, row: dict[str, Any], marker: str, edit_path: str, id_field: str
    ) -> str | None:
        """The body holding `marker`: the listed (rendered) body when the marker survived
        rendering, else the raw body read for editing; None when neither holds it."""
        body = str(row.get("body") or "")
        if marker in body:
            return body
        if id_field not in row:
            return None
        response = self._request(
            "GET",
            edit_path.format(id=row[id_field]),
            what=f"reading post #{row[id_field]}",
        )
        raw = str(retry.json_object(response).get("body") or "")
        return raw if marker in raw else None

    # -- reading (the intake's `ForumReader` reuses this client: same auth, retries, waits) ---

    def get(
        self,
        path: str,
        params: dict[str, str] | None = None,
        *,
        what: str,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        """A GET with this channel's token, retries (5xx, timeouts) and waits (429); a status in
        `accept` (e.g. 404) is returned instead of raising."""
        return self._request("GET", path, params=params, what=what, accept=accept)

    # -- HTTP ----------------------------------------------------------------------------------

    def _whoami(self, refresh: bool = False) -> dict[str, Any]:
        if self._me is None or refresh:
            response = self._request("GET", "/users/me", what="checking the forum account")
            me = retry.json_object(response)
            if "userID" not in me:
                raise DeliveryError(
                    "the forum answered /users/me without a user id", permanent=False
                )
            self._me = me
        return self._me

    def _post(
        self,
        path: str,
        payload: dict[str, Any],
        *,
        what: str,
        lookup: Callable[[], Receipt | None],
    ) -> _Posted | Receipt:
        response = self._request("POST", path, json=payload, what=what, lookup=lookup)
        if isinstance(response, Receipt):
            return response
        return _Posted(response.status_code, retry.json_object(response))

    def _judge(self, response: httpx.Response, agains: int, what: str) -> Verdict:
        body = retry.json_object(response)
        wait = self._wait_for(response, body)
        if wait is not None:
            return retry.wait(
                wait, "rate limited" if response.status_code == 429 else "flood control"
            )
        if response.status_code >= 500:
            return retry.failed(f"server error HTTP {response.status_code}")
        raise self._refusal(response.status_code, body, what)

    def _wait_for(self, response: httpx.Response, body: dict[str, Any]) -> float | None:
        """Seconds to wait for a 429 or a flood-control refusal; None for anything else."""
        status = response.status_code
        retry_after = self._retry_after(response)
        if status == 429:
            return retry_after if retry_after is not None else self.flood_pause
        if not 400 <= status < 500 or status in (401, 403, 404):
            return None
        messages = [
            str(err.get("message", ""))
            for err in body.get("errors") or []
            if isinstance(err, dict) and err.get("field") in ("body", None, "")
        ]
        if not messages and not body.get("errors"):
            messages = [str(body.get("message", ""))]
        flood = [m for m in messages if _FLOOD_WORDS.search(m)]
        if not flood:
            return None
        for message in flood:
            found = _WAIT_SECONDS.findall(message) or _SECONDS.findall(message)[-1:]
            if found:
                return float(found[-1]) + 1.0
        return retry_after if retry_after is not None else self.flood_pause

    def _retry_after(self, response: httpx.Response) -> float | None:
        return retry.retry_after(response.headers, self._clock)

    def _refusal(self, status: int, body: dict[str, Any], what: str) -> DeliveryError:
        # What the forum says is scrubbed: it may quote our Authorization header.
        message = scrub(str(body.get("message") or ""))[:200]
        errors = scrub(
            "; ".join(
                f"{err.get('field')}: {err.get('message')}"
                for err in (body.get("errors") or [])[:5]
                if isinstance(err, dict)
            )
        )[:500]
        detail = ": " + " — ".join(x for x in (message, errors) if x) if message or errors else ""
        if status == 401:
            return DeliveryError(
                f"the forum refused the token (HTTP 401) while {what}: check FORUM_TOKEN "
                "(a personal access token of the posting user)",
                permanent=True,
            )
        if status == 403:
            return DeliveryError(
                f"the forum user may not do this (HTTP 403) while {what}{detail}; "
                "check the token user's permissions on the category",
                permanent=True,
            )
        return DeliveryError(
            f"the forum refused the request (HTTP {status}) while {what}{detail}",
            permanent=True,
        )


def _not_ours(message: Message) -> DeliveryError:
    return DeliveryError(
        f"the forum channel only sends topics and comments, not {type(message).__name__}",
        permanent=True,
    )
