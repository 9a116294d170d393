"""What the forum's fields mean to the intake: the settings that name the bug categories and the
priority tags, the validation of every field read from the forum (the one place where forum data
enters the store: `validate_discussion`, `validate_reporter`), and the classification of one
listed discussion (`classify`: a ticket, `a-trier` or `ecarte`, with the reason). Pure functions;
the sync that reads the forum and writes the store is `gestan_release.support.intake`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gestan_release.errors import ConfigError
from gestan_release.settings import Settings
from gestan_release.tickets.fields import ticket_from_mapping
from gestan_release.tickets.values import Priority, Ticket


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
def bug_categories(settings: Settings) -> tuple[str, ...]:
    categories = tuple(c.strip() for c in settings.forum_bug_categories if c.strip())
    if not categories:
        raise ConfigError(
            "tickets sync needs FORUM_BUG_CATEGORIES: the url codes (or ids) of the forum "
            "categories where bugs are reported, e.g. GESTAN_RELEASE_FORUM_BUG_CATEGORIES="
            "signaler-un-bug"
        )
    return categories


def priority_tags(settings: Settings) -> dict[str, Priority]:
    """`FORUM_PRIORITY_TAGS` as {tag name (lower case): priority}; ConfigError if malformed.

    Each entry is `tag` (a tag named like its priority) or `priority=tag`; a priority may have
    several tags."""
    mapping: dict[str, Priority] = {}
    for entry in settings.forum_priority_tags:
        text = entry.strip()
        if not text:
            continue
        prio_text, sep, tag = text.partition("=")
        if not sep:
            prio_text, tag = text, text
        try:
            priority = Priority.parse(prio_text)
        except ValueError:
            raise ConfigError(
                f"FORUM_PRIORITY_TAGS: {text!r} does not start with a priority "
                "(flash, haute, normale, basse); write PRIORITY=TAG, e.g. flash=urgent"
            ) from None
        tag = tag.strip().lower()
        if not tag:
            raise ConfigError(f"FORUM_PRIORITY_TAGS: {text!r} names no tag")
        if tag in mapping and mapping[tag] is not priority:
            raise ConfigError(
                f"FORUM_PRIORITY_TAGS: tag {tag!r} is mapped to both {mapping[tag]} and {priority}"
            )
        mapping[tag] = priority
    if not mapping:
        raise ConfigError("FORUM_PRIORITY_TAGS is empty: name the tag of each priority")
    return mapping


def resolve_priority_tags(
    mapping: dict[str, Priority], tags: Iterable[Any], host: str
) -> dict[int, Priority]:
    """{tag id: priority} from the forum's tags (matched on name or url code, any case);
    ConfigError naming every configured tag the forum does not have."""
    by_key: dict[str, int] = {}
    for t in tags:
        by_key.setdefault(t.name.strip().lower(), t.tag_id)
        by_key.setdefault(t.urlcode.strip().lower(), t.tag_id)
    missing = sorted(name for name in mapping if name not in by_key)
    if missing:
        known = ", ".join(sorted({t.name for t in tags})[:20]) or "none"
        raise ConfigError(
            f"FORUM_PRIORITY_TAGS names tag(s) {', '.join(map(repr, missing))} that the forum "
            f"at {host} does not have (its tags: {known}); create them on the forum or fix the "
            "setting (PRIORITY=TAG, e.g. flash=urgent)"
        )
    return {by_key[name]: priority for name, priority in mapping.items()}


# --------------------------------------------------------------------------------------------
# Validation: where forum data enters the store
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiscussionFields:
    discussion_id: int
    category_id: int | None
    title: str
    url: str | None
    insert_user_id: int | None
    tag_ids: tuple[int, ...]
    tag_names: tuple[str, ...]
    date_inserted: dt.datetime | None
    date_updated: dt.datetime | None


class InvalidField(ValueError):
    pass


def _date(value: Any, name: str) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidField(f"{name} is not a date")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidField(f"{name} {value[:40]!r} is not an ISO date") from None
    # Stored in UTC: SQLite keeps no offset.
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _one_line(text: str) -> str:
    """Control characters and line breaks out, blanks collapsed (a title is one line)."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(cleaned.split())


def validate_discussion(row: dict[str, Any]) -> DiscussionFields:
    """The fields of a listed discussion that the intake uses, checked; InvalidField if not.

    Titles and names are made one line here (a forum title may hold a stray control character:
    cleaned, not refused); the ticket built from them then goes through the same validation as
    `tickets import` (`ticket_from_mapping`), so the store never holds what a delivery refuses."""
    did = row.get("discussionID")
    if not isinstance(did, int) or isinstance(did, bool) or did <= 0:
        raise InvalidField(f"discussionID {did!r} is not a positive integer")
    name = row.get("name")
    if not isinstance(name, str) or not _one_line(name):
        raise InvalidField("the discussion has no title")
    title = _one_line(name)[:300]
    url = row.get("url")
    from gestan_release.text.templating import safe_url

    url = safe_url(url) if isinstance(url, str) else None
    user = row.get("insertUserID")
    if not isinstance(user, int) or isinstance(user, bool):
        user = None
    category = row.get("categoryID")
    if not isinstance(category, int) or isinstance(category, bool):
        category = None
    tag_ids, tag_names = [], []
    for tag in row.get("tags") or []:
        if isinstance(tag, dict) and isinstance(tag.get("tagID"), int):
            tag_ids.append(tag["tagID"])
            tag_names.append(_one_line(str(tag.get("name") or tag.get("urlcode") or "")))
    return DiscussionFields(
        discussion_id=did,
        category_id=category,
        title=title,
        url=url,
        insert_user_id=user,
        tag_ids=tuple(tag_ids),
        tag_names=tuple(tag_names),
        date_inserted=_date(row.get("dateInserted"), "dateInserted"),
        date_updated=_date(row.get("dateUpdated"), "dateUpdated"),
    )


def validate_reporter(user: dict[str, Any] | None) -> tuple[str, str] | str:
    """(name, normalised e-mail) of a forum account, or the reason it cannot be acknowledged."""
    if user is None:
        return "the reporter's forum account no longer exists"
    banned = user.get("banned")
    if banned not in (None, 0, False, "0"):
        return "the reporter is banned on the forum"
    email = user.get("email")
    if not isinstance(email, str) or not email.strip():
        return "the reporter has no e-mail address on the forum"
    name = _one_line(str(user.get("name") or ""))
    from gestan_release.tickets.fields import validate_email_address

    try:
        return name, validate_email_address(email.strip())
    except ValueError as exc:
        return f"the reporter's {exc}"


# --------------------------------------------------------------------------------------------
# Classification (pure)
# --------------------------------------------------------------------------------------------
def priority_of(tag_ids: Iterable[int], tag_priorities: dict[int, Priority]) -> Priority | None:
    """The most urgent priority among the discussion's tags, or None (à trier)."""
    found = [tag_priorities[t] for t in tag_ids if t in tag_priorities]
    return min(found, key=lambda p: p.rank) if found else None


def classify(
    row: dict[str, Any],
    tag_priorities: dict[int, Priority],
    users: dict[int, dict[str, Any]],
    existing: dict[int, Ticket],
    owned: set[int],
    forum_host: str | None = None,
) -> tuple[Any, Ticket | None]:
    """(ForumReport, ticket to write or None) for one listed discussion.

    `existing`: stored tickets among this page's ids; `owned`: ids the intake already tracks
    (a stored ticket with such an id is the report's own ticket)."""
    from gestan_release.support.intake_store import A_TRIER, ECARTE, TICKET, ForumReport

    try:
        f = validate_discussion(row)
    except InvalidField as exc:
        did = row.get("discussionID") if isinstance(row.get("discussionID"), int) else 0
        return (
            ForumReport(
                discussion_id=did,
                category_id=None,
                title=str(row.get("name") or "")[:300] or "?",
                url=None,
                insert_user_id=None,
                state=ECARTE,
                reason=f"invalid discussion: {exc}",
            ),
            None,
        )
    priority = priority_of(f.tag_ids, tag_priorities)
    reporter = validate_reporter(users.get(f.insert_user_id or 0))
    base = {
        "discussion_id": f.discussion_id,
        "category_id": f.category_id,
        "title": f.title,
        "url": f.url,
        "insert_user_id": f.insert_user_id,
        "priority": priority,
        "tags": f.tag_names,
        "date_inserted": f.date_inserted,
        "date_updated": f.date_updated,
    }
    if isinstance(reporter, tuple):
        base["reporter_name"], base["reporter_email"] = reporter
    if priority is None:
        return ForumReport(state=A_TRIER, **base), None
    if isinstance(reporter, str):
        return ForumReport(state=ECARTE, reason=reporter, **base), None
    stored = existing.get(f.discussion_id)
    if stored is not None and f.discussion_id not in owned:
        from gestan_release.text.usertext import discussion_id

        if discussion_id(stored.forum_url) != f.discussion_id:
            return (
                ForumReport(
                    state=ECARTE,
                    reason=(
                        f"ticket #{f.discussion_id} already exists in the store for another "
                        "report (added by hand): give that ticket another id, then sync again"
                    ),
                    **base,
                ),
                None,
            )
    name, email = reporter
    candidate, _, problems = ticket_from_mapping(
        {
            "id": f.discussion_id,
            "title": f.title,
            "priority": priority.value,
            "reporter_name": name,
            "reporter_email": email,
            "forum_url": f.url,
        },
        forum_host=forum_host,
    )
    if problems:
        return ForumReport(state=ECARTE, reason="; ".join(problems), **base), None
    ticket = candidate
    if stored is not None:
        # Keep what the store decides: status, ack, whether the reporter is followed up.
        from dataclasses import replace

        ticket = replace(
            candidate,
            status=stored.status,
            ack_message_id=stored.ack_message_id,
            forum_tracked=stored.forum_tracked,
        )
    return ForumReport(state=TICKET, **base), ticket
