"""`changelog` and `next-version`: read-only answers from git and the ticket store.

These must stay fast (`changelog` on one release answers in well under 0.5 s): no Prefect, no
HTTP stack, no SQLAlchemy on this path.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from typing import TYPE_CHECKING

from gestan_release.commands import add_format, command, note, settings_from, warn

if TYPE_CHECKING:
    from gestan_release.history.analysis import RangeFixes
    from gestan_release.release.planning import Range
    from gestan_release.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "changelog",
        cmd_changelog,
        epilog=(
            "How commits name tickets (#1234, trailers, reverts, cherry-picks, release commits, "
            "merges) is described in the README's table of rules."
        ),
    )
    p.add_argument("--from", dest="from_ref", metavar="REF", help="start of the range (excluded)")
    p.add_argument(
        "--to",
        dest="to_ref",
        default=None,
        metavar="REF",
        help="end of the range (default: HEAD)",
    )
    p.add_argument(
        "--release",
        metavar="VERSION",
        help="the notes of an existing release (e.g. 15.4.2): from its previous release to its "
        "tag, instead of --from/--to",
    )
    p.add_argument(
        "--explain",
        metavar="ID",
        type=_ticket_id,
        help="why ticket ID is or is not fixed in the range, commit by commit",
    )
    add_format(p, "markdown", "text", "json")

    p = command(sub, "next-version", cmd_next_version)
    p.add_argument(
        "--kind", choices=("minor", "major", "u", "nightly"), default="minor", help="default: minor"
    )
    p.add_argument(
        "--ref",
        metavar="REF",
        help="branch or commit to release (default: main, or the newest release/X.Y for u)",
    )
    add_format(p, "text", "json")


def _ticket_id(text: str) -> int:
    digits = text.removeprefix("#")
    if not digits.isascii() or not digits.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a ticket id (a number, e.g. 1234)")
    return int(digits)


def _ids(ids: list[int], shown: int = 20) -> str:
    listing = ", ".join(f"#{t}" for t in ids[:shown])
    return listing + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def cmd_changelog(args: argparse.Namespace) -> int:
    """tickets fixed between two refs

    List the tickets fixed between two refs, ordered by priority then id. By default the range
    starts at the previous release tag reachable from --to (the whole history for a first release).
    Tickets referenced by commits but missing from the ticket store are listed as unknown: their
    reporters get no mail. --release gives the notes of an existing release; --explain tells why
    one ticket is or is not fixed in the range (each commit that names it and the rule that
    applied)."""
    from gestan_release.errors import GitError, ReleaseError
    from gestan_release.history.git import toplevel
    from gestan_release.history.ranges import Rules, scan_range
    from gestan_release.history.versions import Version
    from gestan_release.release.changelog import render
    from gestan_release.release.planning import (
        changelog_for,
        range_warnings,
        release_range,
        resolve_range,
    )

    # A short-lived process that makes a few hundred thousand small objects without a cycle on
    # a big range: the cyclic collector would only walk them again and again (~20 % of the time).
    gc.disable()
    settings = settings_from(args)
    repo = toplevel(settings.repo)
    settings = settings.replace(repo=repo)
    if args.release is not None:
        if args.from_ref is not None or args.to_ref is not None:
            raise GitError(
                "--release names a whole release: give either --release VERSION or --from/--to"
            )
        rng = release_range(repo, args.release, settings.tag_prefix)
        prefix = settings.tag_prefix
        to_label = Version.parse(args.release.removeprefix(prefix)).tag(prefix)
    else:
        to_label = args.to_ref or "HEAD"
        rng = resolve_range(repo, to_label, args.from_ref, settings.tag_prefix)
        if args.from_ref is None and rng.at_release:
            tag = rng.previous_tag
            assert tag is not None
            raise ReleaseError(
                f"{to_label} is exactly release {tag.version.label} (tag {tag.tag}): nothing was "
                f"committed since; its notes: `gestan-release changelog --release {tag.version}`"
            )
    if rng.from_ref is None:
        note(
            f"no release tag is reachable from {to_label}: first release, taking the whole history"
        )
    fixes = scan_range(repo, rng.rev_args(), Rules.from_settings(settings), rng.from_sha)
    for warning in range_warnings(repo, rng, fixes):
        warn(warning)
    if args.explain is not None:
        return _explain(args, settings, rng, fixes, to_label)
    log = changelog_for(settings, rng, fixes)
    if log.unknown:
        warn(
            f"{len(log.unknown)} ticket(s) referenced in commits are not in the ticket store "
            f"and will get no mail: {_ids(list(log.unknown))}"
        )
    title = None
    if args.format != "json":
        start = rng.from_ref or "(début)"
        title = f"Tickets corrigés de {start} à {to_label}"
    sys.stdout.write(render(log, args.format, title=title))
    if args.format == "json":
        sys.stdout.write("\n")
    return 0


def _explain(
    args: argparse.Namespace, settings: Settings, rng: Range, fixes: RangeFixes, to_label: str
) -> int:
    """`changelog --explain ID`: the story of one ticket in the range."""
    from gestan_release.history.stories import story_of
    from gestan_release.release.changelog import render_story
    from gestan_release.tickets.lookup import lookup_tickets

    story = story_of(fixes, args.explain).to_json()
    known = lookup_tickets(settings.database_url, [args.explain])
    story["title"] = known[args.explain].title if args.explain in known else None
    story["from"] = rng.from_ref
    story["to"] = rng.to_sha
    if args.format == "json":
        print(json.dumps(story, ensure_ascii=False, indent=2))
        return 0
    label = f"de {rng.from_ref or '(début)'} à {to_label}"
    text = render_story(story, markdown=args.format == "markdown", range_label=label)
    sys.stdout.write(text.rstrip("\n") + "\n")
    return 0


def cmd_next_version(args: argparse.Namespace) -> int:
    """the version the next release of a kind would get

    Print the version the next release would get: a full version (minor or major bump, from main),
    a U sub-version (patch bump on a release/X.Y branch, default the newest) or a nightly (pre-
    release of the next full version). Text output is the bare version, for scripts; --format json
    gives version, label, tag, previous and kind."""
    from gestan_release.release.planning import next_version

    settings = settings_from(args)
    nxt = next_version(settings, args.kind, args.ref)
    for warning in nxt.warnings:
        warn(warning)
    if args.format == "json":
        print(json.dumps(nxt.to_json(), ensure_ascii=False))
    else:
        print(nxt.version)
        prev = f"after {nxt.previous}" if nxt.previous else "first release"
        note(f"{nxt.version.label} — tag {nxt.tag}, {prev}")
    return 0
