"""Command-line handlers, one module per command family; each exposes `register(subparsers)`.

Handlers import heavy dependencies lazily so that `--help` and read-only commands stay fast.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable
from typing import Any

from gestan_release.settings import Settings, load


def command(sub: Any, name: str, handler: Callable[..., Any], **kwargs: Any) -> Any:
    """Add the subcommand `name` run by `handler`, whose docstring is its help: the first
    paragraph the one line of the commands list, the rest the description of `--help`."""
    summary, _, details = inspect.cleandoc(handler.__doc__ or "").partition("\n\n")
    parser = sub.add_parser(
        name,
        help=" ".join(summary.split()),
        description=" ".join(details.split()) or None,
        **kwargs,
    )
    parser.set_defaults(func=handler)
    return parser


def add_format(parser: argparse.ArgumentParser, *choices: str) -> None:
    """`--format`, the first choice by default."""
    parser.add_argument(
        "--format",
        choices=choices,
        default=choices[0],
        help=f"output format (default: {choices[0]})",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings for the repository named by the global `--repo` option."""
    return load(args.repo)


def warn(message: str) -> None:
    """A warning for the user, on stderr, so that stdout stays machine-readable."""
    print(f"gestan-release: warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    print(f"gestan-release: {message}", file=sys.stderr)


def add_output_options(parser: argparse.ArgumentParser, *, json_format: bool = True) -> None:
    """--verbose / --quiet (and --format text|json) for the commands that run a flow."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="every log line of Prefect and of the run, as the Prefect UI shows them",
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", help="print only the result line (errors still)"
    )
    if json_format:
        parser.add_argument(
            "--format",
            choices=("text", "json"),
            default="text",
            help="json: one JSON document on stdout (see README), nothing else there",
        )
