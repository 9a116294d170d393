"""The command line itself: every command family is there, and one that fails to import is an
error, never a command silently left out."""

from __future__ import annotations

import importlib

import pytest

from gestan_release import cli


def test_every_command_module_registers() -> None:
    for name in cli.COMMAND_MODULES:
        assert callable(importlib.import_module(name).register), name
    commands = cli.build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"release", "hotfix", "changelog", "tickets", "serve-updates", "demo"} <= set(commands)


def test_a_command_module_that_does_not_import_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = "gestan_release.commands.not_there"
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, missing))
    with pytest.raises(ModuleNotFoundError) as raised:
        cli.build_parser()
    assert raised.value.name == missing
