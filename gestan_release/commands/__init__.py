"""Command-line handlers, one module per command family; each exposes `register(subparsers)`.

Handlers import heavy dependencies lazily so that `--help` and read-only commands stay fast.
"""

from __future__ import annotations

import argparse
import sys

from gestan_release.settings import Settings, load


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings for the repository named by the global `--repo` option."""
    return load(args.repo)


def warn(message: str) -> None:
    """A warning for the user, on stderr, so that stdout stays machine-readable."""
    print(f"gestan-release: warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    print(f"gestan-release: {message}", file=sys.stderr)
