"""The shape of the code: the folders are the architecture (README, "Architecture").

`gestan_release/` holds one folder per subject, and each folder (or top-level module) sits in one
layer (`LAYERS`). A module imports modules of its own layer and of the layers below it, never of a
layer above; the folders import each other without a cycle, and the modules too. A new module
placed in a folder is in that folder's layer with no edit here.

The import graph is read with `ast`, every `import` counted wherever it is written: the project
imports lazily inside functions for start-up time, and a lazy import is still a dependency (those
under `if TYPE_CHECKING:` too: a cycle of types is still a cycle to read).

`python tests/test_architecture.py` prints the map: each layer, its folders, and which folders
each folder imports.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "gestan_release"
PACKAGES = ("gestan_release", "flows")
G = "gestan_release."

# Top to bottom, each with the folders (or top-level modules) of `gestan_release/` it holds;
# `flows` is the repository's `flows/`, "" the package's own `__init__`. Keep in step with the
# tree in README.md ("Architecture"), which the last test reads.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry", ("cli", "demo", "commands")),  # the command line: parse, call one function, print
    ("prefect", ("flows", "prefect")),  # the flows and what speaks to Prefect
    ("runbook", ("release", "support")),  # what a release and the support side do, step by step
    # the subjects a release is made of, each folder its pure core beside its edge (PURE below)
    ("domain", ("history", "tickets", "store", "channels", "updates", "terminal", "settings")),
    ("core", ("", "core", "text", "errors")),  # what every layer shares
)
# What may sit at the top of gestan_release/: the entry, what everything shares, the demo.
TOP_MODULES = {"cli", "__main__", "settings", "errors", "demo"}
# A folder over this many modules is several subjects: split it.
MAX_MODULES = 12
# Alembic's revisions: one file per schema change, read by Alembic, imported by nobody.
NOT_MODULES = ("store/migrations", "store/migrations/versions")

# The functional core: pure functions of their inputs. They import no impure library and only
# modules of this list (`a.b` matches `a.b` and `a.b.*`; `=a.b` only `a.b` itself).
PURE = (
    "=gestan_release",
    G + "errors",
    G + "settings",
    G + "core.validation",
    G + "core.scrub",
    G + "core.progress",
    G + "text",
    G + "history.versions",
    G + "history.rules",
    G + "history.trailers",
    G + "history.scan",
    G + "history.analysis",
    G + "history.stories",
    G + "tickets.values",
    G + "tickets.fields",
    G + "tickets.importer",
    G + "release.changelog",
    G + "release.messages",
    G + "release.outcome",
    G + "support.promises",
    G + "channels.base",
    G + "channels.mailmsg",
    G + "channels.forum_parts",
    "=" + G + "updates",
    G + "updates.manifest",
    G + "updates.choice",
    G + "updates.answers",
)
# Third-party libraries of the edges (and Prefect, the display): never in the pure core.
IMPURE = ("sqlalchemy", "alembic", "httpx", "prefect", "rich", "uvicorn", "matplotlib", "smtplib")
IMPURE += ("subprocess", "socket")
# The only modules that import Prefect: the flows, the prefect/ folder, and the channels package
# alone (X rotates its refresh token; with a Prefect API the new one is saved in a Secret block,
# where the next run reads it: every caller of `senders_for` gets that without passing it).
PREFECT_MODULES = ("flows", G + "prefect", "=" + G + "channels")
# The only module of the library that imports `flows/` (the flows import the library).
FLOW_RUNNERS = (G + "prefect.flowrun",)
# Side by side in the domain: a channel sends and a store records; neither knows the other.
STORES = (
    G + "store",
    G + "tickets.store",
    G + "tickets.lookup",
    G + "support.intake_store",
    G + "support.intake_cursors",
    G + "support.promise_facts",
    G + "release.lock",
)
APART = (((G + "channels", G + "updates"), STORES),)
# A module over this many lines needs a line of its docstring starting with WHOLE (the reason).
MAX_LINES = 400
WHOLE = "Why one module:"
# Folders of tests/ that are not a folder of the library.
TEST_FOLDERS = {"e2e", "fakes", "contracts"}


# --------------------------------------------------------------------------------------------
def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported(name: str, path: Path) -> Iterator[str]:
    """Every module `name` imports (dotted names as written, relative ones resolved)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            yield from subs  # `from gestan_release.history import git`: the module git
            if len(subs) < len(node.names):
                yield base


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module → the modules of the project it imports (itself excepted)."""
    edges = {}
    for name, path in MODULES.items():
        edges[name] = frozenset(
            dep for dep in _imported(name, path) if dep in MODULES and dep != name
        )
    return edges


@cache
def external() -> dict[str, frozenset[str]]:
    """Module → the top-level names of what it imports from outside the project."""
    return {
        name: frozenset(
            dep.split(".")[0]
            for dep in _imported(name, path)
            if dep.split(".")[0] not in PACKAGES and dep != "__future__"
        )
        for name, path in MODULES.items()
    }


def _matches(name: str, pattern: str) -> bool:
    if pattern.startswith("="):
        return name == pattern[1:]
    return name == pattern or name.startswith(pattern + ".")


def _in(name: str, patterns: tuple[str, ...]) -> bool:
    return any(_matches(name, p) for p in patterns)


def unit_of(name: str) -> str:
    """The folder (or top-level module) of gestan_release/ that holds module `name`; `flows`
    for the flows; "" for the package's own `__init__`."""
    if _matches(name, "flows"):
        return "flows"
    return name.removeprefix("gestan_release").removeprefix(".").split(".")[0]


def units() -> set[str]:
    """Every folder and top-level module of gestan_release/, the package itself (""), flows."""
    return {unit_of(name) for name in MODULES}


def layer_of(name: str) -> int | None:
    """The index in LAYERS (0 = top) of the layer holding module `name`."""
    for index, (_, held) in enumerate(LAYERS):
        if unit_of(name) in held:
            return index
    return None


def unit_graph() -> dict[str, frozenset[str]]:
    """Folder → the folders its modules import (the flow runner's edges into flows/ aside)."""
    edges: dict[str, set[str]] = {unit: set() for unit in units()}
    for name, deps in graph().items():
        for dep in deps:
            if _in(name, FLOW_RUNNERS) and _matches(dep, "flows"):
                continue
            if unit_of(dep) != unit_of(name):
                edges[unit_of(name)].add(unit_of(dep))
    return {unit: frozenset(deps) for unit, deps in edges.items()}


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


# --------------------------------------------------------------------------------------------
def test_the_graph_is_read() -> None:
    # Guards the reader itself: a lazy import inside a function is an edge.
    assert G + "history.stories" in graph()[G + "commands.history"]
    assert G + "prefect.flowrun" in graph()[G + "demo"]
    assert "prefect" in external()[G + "prefect.logs"]
    assert unit_of(G + "history.git") == "history" and unit_of("flows.common") == "flows"


def test_no_import_cycle() -> None:
    found = cycles(graph())
    assert found == []


def test_every_folder_sits_in_one_layer() -> None:
    placed = [unit for _, held in LAYERS for unit in held]
    assert len(placed) == len(set(placed)), "a folder is named in two layers"
    assert sorted(units() - set(placed)) == [], "place these folders in LAYERS (and the README)"
    assert sorted(set(placed) - units()) == [], "LAYERS names folders that do not exist"


def test_the_top_level_holds_only_the_entry_settings_and_errors() -> None:
    top = {p.stem for p in LIBRARY.glob("*.py")} - {"__init__"}
    assert sorted(top - TOP_MODULES) == [], "move these modules into the folder of their subject"


def test_no_folder_holds_more_than_a_dozen_modules() -> None:
    crowded = {}
    for folder in [LIBRARY, *(p for p in LIBRARY.rglob("*") if p.is_dir())]:
        where = folder.relative_to(LIBRARY).as_posix()
        if where in NOT_MODULES or folder.name == "__pycache__":
            continue
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        if count > MAX_MODULES:
            crowded[where] = count
    assert crowded == {}, "split these folders by subject"


def test_no_module_imports_a_layer_above_its_own() -> None:
    wrong = []
    for name, deps in graph().items():
        mine = layer_of(name)
        for dep in sorted(deps):
            theirs = layer_of(dep)
            if mine is not None and theirs is not None and theirs < mine:
                wrong.append(f"{name} ({LAYERS[mine][0]}) imports {dep} ({LAYERS[theirs][0]})")
    assert wrong == []


def test_the_folders_import_each_other_without_a_cycle() -> None:
    assert cycles(unit_graph()) == []


def test_the_functional_core_is_pure() -> None:
    pure = [n for n in MODULES if _in(n, PURE)]
    assert G + "release.changelog" in pure and G + "history.versions" in pure
    stale = [p for p in PURE if not any(_matches(n, p) for n in MODULES)]
    assert stale == []
    libraries = {
        n: sorted(external()[n] & set(IMPURE)) for n in pure if external()[n] & set(IMPURE)
    }
    assert libraries == {}
    impure_deps = {n: sorted(d for d in graph()[n] if not _in(d, PURE)) for n in pure}
    assert {n: d for n, d in impure_deps.items() if d} == {}


def test_only_the_prefect_modules_import_prefect() -> None:
    wrong = sorted(n for n in MODULES if "prefect" in external()[n] and not _in(n, PREFECT_MODULES))
    assert wrong == []
    # the list says what is true: no name in it that does not need it
    stale = [
        p
        for p in PREFECT_MODULES
        if not any("prefect" in external()[n] for n in MODULES if _matches(n, p))
    ]
    assert stale == []


def test_only_the_flow_runner_imports_the_flows() -> None:
    wrong = sorted(
        f"{n} imports {d}"
        for n, deps in graph().items()
        if n.startswith(G) and not _in(n, FLOW_RUNNERS)
        for d in deps
        if _matches(d, "flows")
    )
    assert wrong == []


def test_channels_and_stores_stay_apart() -> None:
    wrong = []
    for left, right in APART:
        for a, b in ((left, right), (right, left)):
            wrong += [
                f"{n} imports {d}"
                for n, deps in graph().items()
                if _in(n, a)
                for d in deps
                if _in(d, b)
            ]
    assert wrong == []


def test_the_cycle_check_finds_a_cycle() -> None:
    edges = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset()}
    assert cycles(edges) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_long_module_says_why_it_stays_whole(name: str) -> None:
    path = MODULES[name]
    source = path.read_text(encoding="utf-8")
    lines = source.count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(source)) or ""
    assert any(line.startswith(WHOLE) for line in doc.splitlines()), (
        f"{path.relative_to(ROOT)}: {lines} lines; split it by job, or say in its docstring, on "
        f"a line starting {WHOLE!r}, why it stays whole"
    )


def test_the_tests_follow_the_tree() -> None:
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir()} - {"__pycache__"}
    assert sorted(folders - TEST_FOLDERS - units()) == [], "name test folders after the library's"


# -- the README's tree ------------------------------------------------------------------------
ENTRY = re.compile(r"── ([\w]+(?:/|\.py))\s+\[(\w+)\]\s*(.*)")


def readme_tree() -> list[tuple[str, str, str]]:
    """The entries of the README's tree: (folder/ or module.py, layer, text with its follow-up
    lines). A line with `── name` starts an item; without a [layer] it is not code."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    picture = section.split("```text", 1)[1].split("```", 1)[0]
    entries: list[list[str]] = []
    current: list[str] | None = None
    for line in picture.splitlines():
        if "── " in line:
            match = ENTRY.search(line)
            current = list(match.groups()) if match else None
            if current is not None:
                entries.append(current)
        elif current is not None:
            current[2] += " " + line.strip(" │")
    return [(name, layer, text) for name, layer, text in entries]


def _unit_of_entry(name: str) -> str:
    return name.removesuffix("/").removesuffix(".py")


def _contents(unit: str) -> list[str]:
    """What a folder's entry must name: its modules and its data folders."""
    folder = ROOT / "flows" if unit == "flows" else LIBRARY / unit
    names = [p.stem for p in folder.glob("*.py") if p.name != "__init__.py"]
    names += [p.name for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"]
    return sorted(names)


def test_the_readme_tree_is_the_code() -> None:
    tree = readme_tree()
    layer_names = [name for name, _ in LAYERS]
    drawn = {_unit_of_entry(name): layer for name, layer, _ in tree}
    code = {unit: name for name, held in LAYERS for unit in held if unit}
    assert drawn == code, "the README's tree names each folder once, with its layer of LAYERS"
    library = [layer_names.index(layer) for name, layer, _ in tree if name != "flows/"]
    assert library == sorted(library), "the tree lists gestan_release/ top layer first"
    missing = []
    for name, _, text in tree:
        unit = _unit_of_entry(name)
        if name.endswith("/"):
            missing += [
                f"{name}{m}"
                for m in _contents(unit)
                if not re.search(rf"(?<![\w/]){m}(?!\w)", text)
            ]
    assert missing == [], "name these modules on their folder's line of the README's tree"


# --------------------------------------------------------------------------------------------
def print_map() -> None:
    """Each layer and its folders; what each folder imports (a folder of the same layer or of a
    layer below: the rule the tests above check)."""
    edges = unit_graph()
    for index, (layer, held) in enumerate(LAYERS):
        below = [u for _, h in LAYERS[index:] for u in h if u]
        print(f"[{layer}] may import: {', '.join(below)}")
        for unit in held:
            label = "gestan_release/__init__" if unit == "" else unit
            imports = ", ".join(sorted(u or "__init__" for u in edges.get(unit, ()))) or "—"
            print(f"    {label:<12} imports {imports}")


if __name__ == "__main__":
    print_map()
