"""The `gestan-release` command line.

argparse rather than typer/cyclopts: start-up time is part of the product (`changelog` answers in
well under half a second), so every command module imports its heavy dependencies (Prefect, httpx,
SQLAlchemy, rich) inside its handler, never at module level.

Each command module exposes `register(subparsers)` which adds its parsers and sets
`func(args) -> int | None` as the handler.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gestan_release.core.scrub import scrub
from gestan_release.errors import GestanReleaseError, expected_failure

# Modules that register commands, in `--help` order.
COMMAND_MODULES = (
    "gestan_release.commands.history",
    "gestan_release.commands.tickets",
    "gestan_release.commands.releases",
    "gestan_release.commands.updates",
    "gestan_release.commands.channels",
    "gestan_release.commands.intake",
    "gestan_release.commands.workers",
    "gestan_release.commands.cockpit",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: one line, exit 2
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gestan-release",
        description=(
            "Release-and-hotfix pipeline for Gestan: gather the tickets fixed since the last "
            "release, cut a full version or a U sub-version, publish it to the update endpoint, "
            "announce it and tell every reporter."
        ),
        epilog="Run `gestan-release COMMAND --help` for the options of a command.",
    )
    parser.add_argument(
        "--repo",
        default=".",
        metavar="PATH",
        help="the git repository to work on (default: the current directory)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        # Every module here exists: one that fails to import is a bug, never a command left out.
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except GestanReleaseError as exc:
        print(f"gestan-release: error: {scrub(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a locked database, a full or read-only disk: one line, not a bug
        explained = expected_failure(exc, _database(args))
        if explained is None:
            raise
        print(f"gestan-release: error: {scrub(str(explained))}", file=sys.stderr)
        return explained.exit_code
    except KeyboardInterrupt:
        print("gestan-release: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `gestan-release changelog | head`
        return 0
    return int(code or 0)


def _database(args: argparse.Namespace) -> str | None:
    """The database the command used, for the error message (None if the settings are broken)."""
    try:
        from gestan_release.settings import load

        url = load(args.repo).database_url or ""
    except Exception:
        return None
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None


if __name__ == "__main__":
    sys.exit(main())
