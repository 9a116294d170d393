"""docs/reference.md cannot drift: every command and option of the argparse definitions is in it
and nothing else; every field of `Settings` with its environment name, default and secrecy; the
JSON examples have the keys the commands really print; every route of the HTTP API answers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fakes.asgi import AUTH, TOKEN, entry, request
from fakes.histories import every_rule_history

from gestan_release.cli import build_parser, main
from gestan_release.settings import ENV_PREFIX, Settings
from gestan_release.updates.server import UpdateServer
from gestan_release.updates.signing import Signer
from gestan_release.updates.store import Store

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
TEXT = REFERENCE.read_text(encoding="utf-8")
PRIORITIES = {"flash", "haute", "normale", "basse"}


def section(title: str) -> str:
    """The text of the `## title` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", TEXT, re.M | re.S)
    assert match, f"docs/reference.md has no section '## {title}'"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the markdown tables in `text`, as cells."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows.append(cells)
    return [r for r in rows if r[0] not in ("option", "setting", "field", "method")]


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


# -- commands ----------------------------------------------------------------------------------


def parsed_commands() -> dict[str, set[str]]:
    """Each command (`changelog`, `tickets add`…; "" for the global options) → its options (long
    ones, the short form too) and positionals (by metavar)."""
    found: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        options: set[str] = set()
        children = False
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                children = True
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}".strip())
            elif isinstance(action, argparse._HelpAction):
                continue
            elif action.option_strings:
                options.update(action.option_strings)
            else:
                options.add(str(action.metavar or action.dest.upper()))
        if not children or options:
            found[name] = options

    walk(build_parser(), "")
    return found


def documented_commands() -> dict[str, set[str]]:
    text = section("Commands")
    found: dict[str, set[str]] = {}
    parts = re.split(r"^### (.+)$", text, flags=re.M)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        if heading == "Global options":
            name = ""
        else:
            match = re.fullmatch(r"`gestan-release ([a-z -]+)`", heading)
            assert match, f"command heading {heading!r} is not `gestan-release COMMAND`"
            name = match.group(1)
        options: set[str] = set()
        for row in table_rows(body):
            spans = code_spans(row[0])
            assert spans, f"{name}: option cell {row[0]!r} has no `option`"
            options.update(span.split()[0] for span in spans)
        assert name not in found, f"{name} is documented twice"
        found[name] = options
    return found


def test_every_command_and_option_is_documented_and_nothing_else():
    parsed, documented = parsed_commands(), documented_commands()
    assert sorted(documented) == sorted(parsed), "commands of docs/reference.md vs build_parser"
    for name, options in parsed.items():
        assert documented[name] == options, f"options of `gestan-release {name}`"


# -- settings ----------------------------------------------------------------------------------


def documented_settings() -> dict[str, list[str]]:
    rows = table_rows(section("Settings"))
    return {code_spans(row[0])[0]: row for row in rows}


def test_every_setting_is_documented_with_its_name_default_and_secrecy():
    fields = {f.name: f for f in dataclasses.fields(Settings) if f.name != "repo"}
    documented = documented_settings()
    assert sorted(documented) == sorted(fields), "settings of docs/reference.md vs Settings"
    for name, f in fields.items():
        _, env, default, secret, meaning = documented[name]
        assert code_spans(env) == [ENV_PREFIX + name.upper()], name
        assert secret == ("yes" if f.metadata.get("secret") else "no"), name
        assert meaning, name
        check_default(name, f.default, default)


def check_default(name: str, value: Any, cell: str) -> None:
    spans = code_spans(cell)
    if value is None or value == ():
        assert cell.startswith("none"), f"{name}: no default, documented as {cell!r}"
    elif isinstance(value, bool):
        assert spans[:1] == [str(value).lower()], name
    elif isinstance(value, int | str):
        assert spans[:1] == [str(value)], name
    elif isinstance(value, tuple) and not any("|" in item for item in value):
        assert spans == list(value), name
    else:  # regexes with a `|`, which a table cell cannot hold: described in words
        assert cell, name


# -- JSON documents ------------------------------------------------------------------------------


def documented_shapes() -> dict[str, Any]:
    blocks = re.findall(r"<!-- shape: ([a-z-]+) -->\n```json\n(.*?)\n```", TEXT, re.S)
    return {name: json.loads(body) for name, body in blocks}


def assert_same_keys(documented: Any, real: Any, where: str) -> None:
    """The same keys at every level; a list is compared by its first element, an empty list or a
    null stands for any value (an example shows one case), a map by priority for any priorities."""
    if isinstance(documented, dict) and isinstance(real, dict):
        if set(documented) | set(real) <= PRIORITIES:  # a map by priority: the ones there are
            for key in set(documented) & set(real):
                assert_same_keys(documented[key], real[key], f"{where}.{key}")
            return
        assert sorted(documented) == sorted(real), f"keys of {where}"
        for key in documented:
            assert_same_keys(documented[key], real[key], f"{where}.{key}")
    elif isinstance(documented, list) and isinstance(real, list):
        if documented and real:
            assert_same_keys(documented[0], real[0], f"{where}[0]")
    elif documented is not None and real is not None:
        assert isinstance(documented, dict) == isinstance(real, dict), where
        assert isinstance(documented, list) == isinstance(real, list), where


def run_json(capsys, *args: str) -> Any:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_the_json_examples_have_the_keys_the_commands_print(capsys, git_repo):
    repo, _ = every_rule_history(git_repo)
    # A maintenance branch with a flash fix not shipped yet: `status` recommends a U version.
    repo.branch("release/15.3", "v15.3.0")
    repo.checkout("release/15.3")
    repo.commit("Corrige l'export FEC #103")
    repo.checkout("main")
    shapes = documented_shapes()
    assert sorted(shapes) == sorted(
        ["changelog", "explain", "next-version", "tickets-list", "status", "doctor"]
    )
    at = ["--repo", str(repo.path)]
    real = {
        "changelog": run_json(capsys, *at, "changelog", "--format", "json"),
        "explain": run_json(capsys, *at, "changelog", "--explain", "103", "--format", "json"),
        "next-version": run_json(capsys, *at, "next-version", "--kind", "u", "--format", "json"),
        "tickets-list": run_json(capsys, *at, "tickets", "list", "--format", "json"),
        "status": run_json(capsys, *at, "status", "--format", "json"),
        "doctor": run_json(capsys, *at, "doctor", "--format", "json"),
    }
    assert real["changelog"]["reverted"] and real["changelog"]["unknown"]  # all shown, not []
    assert real["status"]["unreleased"]["flash"] and real["status"]["recommended_u"]
    shown = run_json(capsys, *at, "tickets", "show", "103", "--format", "json")
    assert_same_keys(shapes["tickets-list"][0], shown, "tickets show")
    for name, document in real.items():
        assert_same_keys(shapes[name], document, name)


# -- the update server's routes ------------------------------------------------------------------


def test_every_documented_route_is_answered(tmp_path):
    routes = [
        (cells[0].strip("`"), code_spans(cells[1])[0])
        for cells in table_rows(section("Update server HTTP API (version 1)"))
    ]
    assert [m for m, _ in routes] == ["GET", "GET", "GET", "PUT", "PATCH", "GET"]
    store = Store(tmp_path / "updates", Signer.from_file(tmp_path / "k.pem"))
    store.publish("stable", entry("15.4.0"))
    app = UpdateServer(store, token=TOKEN, channels=["stable"])
    values = {"{channel}": "stable", "{version}": "15.4.1"}
    bodies = {"PUT": json.dumps(entry("15.4.1")).encode(), "PATCH": b'{"rollout": 50}'}
    for method, route in routes:
        path, _, query = route.partition("?")
        for name, value in values.items():
            path = path.replace(name, value)
        query = "version=15.4.0&channel=stable&platform=win64&install_id=i-1" if query else ""
        status, _, body = request(
            app, method, path, query.encode(), AUTH, body=bodies.get(method, b"")
        )
        assert status in (200, 201, 204), f"{method} {route}: {status} {body[:200]!r}"


@pytest.mark.parametrize("name", ["README.md", "docs/updates.md"])
def test_the_documents_point_to_the_reference(name):
    text = (REFERENCE.parent.parent / name).read_text(encoding="utf-8")
    assert "reference.md" in text
