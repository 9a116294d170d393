"""`changelog` and `next-version`: read-only answers from git and the ticket store.

These must stay fast (`changelog` on one release answers in well under 0.5 s): no Prefect, no
HTTP stack, no SQLAlchemy on this path.
"""

from __future__ import annotations

import argparse
import json
import sys

from gestan_release.commands import note, settings_from, warn


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "changelog",
        help="tickets fixed between two refs",
        description=(
            "List the tickets fixed between two refs, ordered by priority then id. By default the "
            "range starts at the previous release tag reachable from --to (the whole history for "
            "a first release). Tickets referenced by commits but missing from the ticket store "
            "are listed as unknown: their reporters get no mail."
        ),
    )
    p.add_argument("--from", dest="from_ref", metavar="REF", help="start of the range (excluded)")
    p.add_argument(
        "--to",
        dest="to_ref",
        default="HEAD",
        metavar="REF",
        help="end of the range (default: HEAD)",
    )
    p.add_argument(
        "--format",
        choices=("markdown", "text", "json"),
        default="markdown",
        help="output format (default: markdown)",
    )
    p.set_defaults(func=cmd_changelog)

    p = sub.add_parser(
        "next-version",
        help="the version the next release of a kind would get",
        description=(
            "Print the version the next release would get: a full version (minor or major bump, "
            "from main), a U sub-version (patch bump on a release/X.Y branch, default the newest) "
            "or a nightly (pre-release of the next full version). Text output is the bare version, "
            "for scripts; --format json gives version, label, tag, previous and kind."
        ),
    )
    p.add_argument(
        "--kind", choices=("minor", "major", "u", "nightly"), default="minor", help="default: minor"
    )
    p.add_argument(
        "--ref",
        metavar="REF",
        help="branch or commit to release (default: main, or the newest release/X.Y for u)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_next_version)


def cmd_changelog(args: argparse.Namespace) -> int:
    from gestan_release.changelog import render
    from gestan_release.history import ensure_repo
    from gestan_release.planning import changelog_for, resolve_range

    settings = settings_from(args)
    repo = ensure_repo(settings.repo)
    rng = resolve_range(repo, args.to_ref, args.from_ref, settings.tag_prefix)
    if rng.from_ref is None:
        note(
            f"no release tag is reachable from {args.to_ref}: "
            "first release, taking the whole history"
        )
    log = changelog_for(settings.replace(repo=repo), rng)
    if log.unknown:
        ids = ", ".join(f"#{t}" for t in log.unknown)
        warn(
            f"{len(log.unknown)} ticket(s) referenced in commits are not in the ticket store "
            f"and will get no mail: {ids}"
        )
    title = None
    if args.format != "json":
        start = rng.from_ref or "(début)"
        title = f"Tickets corrigés de {start} à {args.to_ref}"
    sys.stdout.write(render(log, args.format, title=title))
    if args.format == "json":
        sys.stdout.write("\n")
    return 0


def cmd_next_version(args: argparse.Namespace) -> int:
    from gestan_release.planning import next_version

    settings = settings_from(args)
    nxt = next_version(settings, args.kind, args.ref)
    if args.format == "json":
        print(json.dumps(nxt.to_json(), ensure_ascii=False))
    else:
        print(nxt.version)
        prev = f"after {nxt.previous}" if nxt.previous else "first release"
        note(f"{nxt.version.label} — tag {nxt.tag}, {prev}")
    return 0
