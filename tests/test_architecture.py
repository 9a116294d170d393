"""The shape of the code: who may import whom (README, "Architecture"), no import cycle, and no
module so long that it needs a reason it does not give.

The import graph is read with `ast`, every `import` counted wherever it is written: the project
imports lazily inside functions for start-up time, and a lazy import is still a dependency (those
under `if TYPE_CHECKING:` too: a cycle of types is still a cycle to read).

The layers are data (`LAYERS`), the same table as the README's picture. A module falls in the layer
of its longest matching name pattern (`a.b` matches `a.b` and `a.b.*`; `=a.b` only `a.b` itself),
so a new module of a package lands with its package; a new top-level module must be placed here (a
test says so).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gestan_release", "flows")
G = "gestan_release."

# Top to bottom: a module may import modules of its own layer and of the layers below it, never of
# a layer above. Keep in step with the picture in README.md ("Architecture").
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "entry",  # the command line: parse, call one function, print
        (G + "cli", G + "commands", G + "updates.cli", G + "demo"),
    ),
    (
        "prefect",  # the flows and everything that speaks to Prefect
        (
            "flows",
            G + "flowrun",
            G + "prefect_support",
            G + "cockpit",
            G + "console",
        ),
    ),
    (
        "runbook",  # what a release (and the support side) does, step by step, as plain functions
        (
            G + "plan",
            G + "notes",
            G + "planning",
            G + "runbook",
            G + "steps",
            G + "delivery",
            G + "acks",
            G + "intake",
            G + "intake_fields",
            G + "status",
            G + "report",
        ),
    ),
    (
        "edges",  # one module per outside thing: git, HTTP and SMTP peers, the database
        (
            G + "git",
            G + "gitops",
            G + "repocache",
            G + "history",
            G + "channels",
            G + "updates",
            G + "retry",
            G + "sandbox_forum",
            G + "db",
            G + "tables",
            G + "ledger",
            G + "release_book",
            G + "delivery_book",
            G + "lock",
            G + "ticket_store",
            G + "ticket_lookup",
            G + "intake_store",
            G + "intake_cursors",
            G + "promise_facts",
            G + "sqlitewait",
            G + "migrations",
            G + "workers",
            G + "terminal",  # rich: the live display of a run
        ),
    ),
    (
        "core",  # pure functions of their inputs: no git, network, database or Prefect
        (
            "=gestan_release",  # the package itself: __version__
            "=" + G + "updates",  # the package itself: UpdatesError
            G + "errors",
            G + "settings",
            G + "versions",
            G + "rules",
            G + "trailers",
            G + "scan",
            G + "analysis",
            G + "stories",
            G + "tickets",
            G + "ticket_import",
            G + "ticket_fields",
            G + "changelog",
            G + "messages",
            G + "usertext",
            G + "tweet_length",
            G + "templating",
            G + "validation",
            G + "scrub",
            G + "outcome",
            G + "progress",
            G + "promises",
            G + "channels.base",
            G + "channels.mailmsg",
            G + "channels.forum_parts",
            G + "updates.manifest",
            G + "updates.choice",
            G + "updates.answers",
        ),
    ),
)

# Third-party libraries of the edges (and Prefect, the display): never in the pure core.
IMPURE = ("sqlalchemy", "alembic", "httpx", "prefect", "rich", "uvicorn", "matplotlib", "smtplib")
IMPURE += ("subprocess", "socket")
# The modules whose job is Prefect: the only ones that import it.
PREFECT_MODULES = (
    "flows",
    G + "prefect_support",
    G + "cockpit",
    G + "console",  # tames Prefect's console handler while a flow runs
    G + "workers",  # what a worker holds: Prefect Secret blocks, the API
    "=" + G + "channels",  # the package alone: X's rotated tokens kept in Secret blocks
)
# The only module of the library that imports `flows/` (the flows import the library).
FLOW_RUNNERS = (G + "flowrun",)
# Side by side in the edges: a channel sends and a store records; neither knows the other.
STORES = (
    "db",
    "tables",
    "ledger",
    "release_book",
    "delivery_book",
    "lock",
    "ticket_store",
    "ticket_lookup",
    "intake_store",
    "intake_cursors",
)
APART = (((G + "channels", G + "updates"), tuple(G + s for s in (*STORES, "promise_facts"))),)
# A module over this many lines needs a line of its docstring starting with WHOLE (the reason).
MAX_LINES = 400
WHOLE = "Why one module:"


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
            yield from subs  # `from gestan_release import git`: the module git
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


def layer_of(name: str) -> int | None:
    """The index in LAYERS (0 = top) of the longest pattern matching `name`."""
    best: tuple[int, int] | None = None
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if _matches(name, pattern) and (best is None or len(pattern) > best[0]):
                best = (len(pattern), index)
    return None if best is None else best[1]


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
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
    assert G + "stories" in graph()[G + "commands.history"]
    assert G + "flowrun" in graph()[G + "demo"]
    assert "prefect" in external()[G + "console"]


def test_no_import_cycle() -> None:
    found = cycles(graph())
    assert found == []


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in MODULES if layer_of(name) is None]
    assert unplaced == [], "place these modules in LAYERS (and in the README's picture)"


def test_no_module_imports_a_layer_above_its_own() -> None:
    wrong = []
    for name, deps in graph().items():
        mine = layer_of(name)
        for dep in sorted(deps):
            theirs = layer_of(dep)
            if mine is not None and theirs is not None and theirs < mine:
                wrong.append(f"{name} ({LAYERS[mine][0]}) imports {dep} ({LAYERS[theirs][0]})")
    assert wrong == []


def test_the_core_is_pure() -> None:
    core = [n for n in MODULES if layer_of(n) == len(LAYERS) - 1]
    assert G + "changelog" in core and G + "versions" in core
    wrong = {n: sorted(external()[n] & set(IMPURE)) for n in core if external()[n] & set(IMPURE)}
    assert wrong == {}


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


def test_the_readme_draws_the_same_layers() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    picture = section.split("```text", 1)[1].split("```", 1)[0]
    positions = [picture.find(f"[{name}]") for name, _ in LAYERS]
    assert -1 not in positions, "every layer of LAYERS is named [like-this] in the picture"
    assert positions == sorted(positions), "the picture lists the layers top to bottom"
    missing = []
    for (layer, patterns), start, end in zip(
        LAYERS, positions, [*positions[1:], None], strict=True
    ):
        drawn = picture[start:end]
        for pattern in patterns:
            if pattern.startswith("="):
                continue  # a package's own __init__
            name = pattern.removeprefix(G).replace(".", "/")
            if not re.search(rf"(?<![\w/]){re.escape(name)}(?!\w)", drawn):
                missing.append(f"{name} ({layer})")
    assert missing == [], "name these in the README's picture, in their layer"
