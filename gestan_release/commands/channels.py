"""`gestan-release channels check`: verify each enabled channel without posting anything."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gestan_release.commands import command, settings_from
from gestan_release.errors import GestanReleaseError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "channels",
        help="check the credentials and reachability of the enabled channels",
        description="Channels: X, the forum, mail (SMTP) and the update endpoint.",
    )
    actions = p.add_subparsers(dest="channels_command", metavar="ACTION", required=True)
    command(actions, "check", cmd_check)


def _checks(settings: Any) -> list[tuple[str, Any]]:
    checks: list[tuple[str, Any]] = []
    if settings.x_enabled:
        from gestan_release.channels.x import XSender

        checks.append(("x", lambda: XSender.from_settings(settings)))
    if settings.forum_enabled:
        from gestan_release.channels.forum import ForumSender

        checks.append(("forum", lambda: ForumSender.from_settings(settings)))
    if settings.smtp_enabled:
        from gestan_release.channels.smtp import SmtpSender

        checks.append(("mail", lambda: SmtpSender.from_settings(settings)))
    return checks


def cmd_check(args: argparse.Namespace) -> int:
    """verify each enabled channel without posting anything

    For each enabled channel, verify credentials and reachability without posting: X `GET
    /2/users/me`, the forum `GET /api/v2/users/me` (and its category), SMTP
    EHLO/STARTTLS/AUTH/QUIT, the update server's manifest. Channels that are not enabled write to
    the outbox and need nothing. Exit 1 if any check fails."""
    from gestan_release.channels import CHANNELS, check_settings

    settings = settings_from(args)
    check_settings(settings)
    failed = 0
    enabled = set()
    for name, make in _checks(settings):
        enabled.add(name)
        sender = None
        try:
            sender = make()
            print(f"ok      {sender.check()}")
        except GestanReleaseError as exc:
            failed += 1
            print(f"FAILED  {name}: {exc}", file=sys.stderr)
        finally:
            if sender is not None:
                sender.close()
    for name in CHANNELS:
        if name not in enabled:
            print(f"outbox  {name}: not enabled, written to {settings.outbox_dir}/{name}")
    if settings.updates_url:
        from gestan_release.updates.publisher import publisher_for

        try:
            publisher = publisher_for(settings)
            publisher.manifest(settings.updates_channels[0])
            print(f"ok      update server {settings.updates_url}")
        except GestanReleaseError as exc:
            failed += 1
            print(f"FAILED  update server: {exc}", file=sys.stderr)
    else:
        print(f"local   update endpoint: the local store {settings.updates_dir}")
    return 1 if failed else 0
