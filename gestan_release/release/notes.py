"""The release notes of a plan: its changelog joined again with the ticket store (reporters may
have changed since it was planned), what every message is built from, and the dry run's preview."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gestan_release.core.validation import url_host
from gestan_release.errors import ReleaseError
from gestan_release.history.ranges import CommitRef, RevertedCommit
from gestan_release.release.changelog import Changelog, ChangelogEntry
from gestan_release.release.plan import Plan
from gestan_release.settings import Settings
from gestan_release.tickets.lookup import lookup_tickets


def changelog_of(settings: Settings, plan: Plan) -> Changelog:
    """The plan's changelog joined again with the ticket store (reporters may have changed)."""
    data = plan.changelog
    ids = [t["id"] for t in data["tickets"]]
    tickets = lookup_tickets(settings.database_url, ids)
    missing = [tid for tid in ids if tid not in tickets]
    if missing:
        raise ReleaseError(
            f"tickets {', '.join(map(str, missing))} of release {plan.version} are no longer in "
            f"the ticket store: import them again (`gestan-release tickets import`) and resume"
        )

    def refs(items: list[dict[str, str]]) -> tuple[CommitRef, ...]:
        return tuple(CommitRef(c["sha"], c["subject"], c["author"]) for c in items)

    entries = tuple(
        ChangelogEntry(tickets[t["id"]], refs(t["commits"]), plan.already_in.get(t["id"]))
        for t in data["tickets"]
    )
    return Changelog(
        from_ref=data["from"],
        to_sha=data["to"],
        previous_version=data["previous_version"],
        entries=entries,
        unknown=tuple(data["unknown"]),
        # The markdown changelog lists the commits of each unknown ref (plans recorded before
        # they were kept have none).
        unknown_commits={
            tid: refs(data.get("unknown_commits", {}).get(str(tid), [])) for tid in data["unknown"]
        },
        reverted=tuple(
            RevertedCommit(r["sha"], r["subject"], "", tuple(r["tickets"]))
            for r in data["reverted"]
        ),
    )


def release_notes(settings: Settings, plan: Plan, changelog: Changelog | None = None) -> Any:
    from gestan_release.release.messages import ReleaseNotes

    base = (settings.forum_base_url or "https://forum.gestan.fr").rstrip("/")
    return ReleaseNotes(
        version=plan.v,
        tag=plan.tag or plan.version,
        date=dt.date.fromisoformat(plan.date),
        changelog=changelog or changelog_of(settings, plan),
        download_url=f"{settings.download_base_url.rstrip('/')}/{plan.version}/",
        forum_category_url=f"{base}/categories/{settings.forum_category}",
        forum_host=url_host(settings.forum_base_url),
    )


def preview(settings: Settings, plan: Plan) -> str:
    """The dry run: version, changelog, post texts and every mail, as markdown."""
    from gestan_release.release.messages import release_messages, render_preview

    notes = release_notes(settings, plan)
    messages = release_messages(
        notes, category=settings.forum_category, mail_from=settings.mail_from
    )
    head = [f"**{plan.label}** ({plan.version}) from `{plan.branch}` at `{plan.commit[:10]}`"]
    head += [f"> ⚠ {w}" for w in plan.warnings]
    stories = _with_titles(plan.changelog.get("stories", []), notes.changelog)
    return "\n\n".join(head) + "\n\n" + render_preview(notes, messages, stories=stories)


def _with_titles(stories: list[dict[str, Any]], changelog: Changelog) -> list[dict[str, Any]]:
    """The stories of the plan, each with its ticket's title when the release fixes it."""
    titles = {e.ticket.id: e.ticket.title for e in changelog.entries}
    return [s | {"title": titles.get(s["id"])} for s in stories]
