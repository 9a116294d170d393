"""Trailers read exactly as git reads them, and the fast block reading of `history` agreeing with
the plain reading of `rules`, on messages that hypothesis makes up and git itself stores."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gestan_release.history.ranges import scan_block
from gestan_release.history.rules import Rules
from gestan_release.history.trailers import trailers

RULES = Rules()

_words = st.sampled_from(
    ["Corrige", "l'export", "FEC", "#12", "#7", "org/repo#3", "issue#4", "v14", "2", "&#233;", "é"]
)
_prose = st.lists(_words, min_size=1, max_size=5).map(" ".join)
_key = st.sampled_from(
    ["Ticket", "Fixes", "fixes", "Closes", "Corrige", "Refs", "Signed-off-by", "Co-authored-by",
     "Reviewed-by", "http", "Voir aussi", "Ticket "]
)  # fmt: skip
_value = st.sampled_from(
    ["12", "#12", "#12, #13", "12 13", "#12 et #13", "v14 regression in 2 reports",
     "org/repo#12", "A <a@b.c>", "", "abc1234 (\"x\")", "#14."]
)  # fmt: skip
_line = st.one_of(
    _prose,
    st.builds(lambda k, sep, v: f"{k}{sep}{v}", _key, st.sampled_from([": ", ":", " : "]), _value),
    st.builds(lambda v: f"  {v}", _value),  # a continuation line
    st.just("(cherry picked from commit 0123456789abcdef0123456789abcdef01234567)"),
    st.just("Signed-off-by: A <a@b.c>"),
    st.just("# un commentaire #15"),
    st.just("Conflicts:"),
    st.just("\tfichier.c"),
    st.just(" "),  # a blank line that is not empty
    st.just(""),
)
_trailer_line = st.builds(
    lambda k, sep, v: f"{k}{sep}{v}", _key, st.sampled_from([": ", ":", " : "]), _value
)
_final = st.lists(  # mostly trailers, sometimes not only
    st.one_of(_trailer_line, _trailer_line, _trailer_line, _line), min_size=1, max_size=5
)
_message = st.builds(
    lambda subject, paragraphs, final, end: (
        "\n\n".join([subject, *("\n".join(p) for p in paragraphs), "\n".join(final)]) + end
    ),
    st.one_of(_prose, st.just("Ticket: 16"), st.just('Revert "Corrige #17"')),
    st.lists(st.lists(_line, min_size=1, max_size=3), max_size=2),
    _final,
    st.sampled_from(["\n", "", "\n\n", "\n# commentaire\n", "\n \n"]),
)


def _store(path: Path, messages: list[str]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """Commit `messages` as they are (fast-import keeps them byte for byte); return, newest
    first, (sha, message as `git log` prints it, trailers as git reads them)."""
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    stream = []
    for n, msg in enumerate(messages):
        data = msg.encode()
        stream.append(
            b"commit refs/heads/main\ncommitter T <t@e.st> %d +0000\ndata %d\n%s\n"
            % (1700000000 + n, len(data), data)
        )
    subprocess.run(
        ["git", "-C", str(path), "fast-import", "--quiet"], input=b"".join(stream), check=True
    )
    fmt = "%H%x00%B%x00%(trailers:only,unfold,key_value_separator=%x1f,separator=%x1e)"
    out = subprocess.run(
        ["git", "-C", str(path), "log", f"--format={fmt}", "-z", "main"],
        capture_output=True,
        check=True,
        env={"GIT_CONFIG_NOSYSTEM": "1", "HOME": str(path), "PATH": "/usr/bin:/bin"},
    ).stdout.decode()
    fields = out.split("\0")
    found = []
    for i in range(0, len(fields) - 2, 3):
        sha, body, raw = fields[i].lstrip("\n"), fields[i + 1], fields[i + 2]
        pairs = [tuple(t.split("\x1f", 1)) for t in raw.split("\x1e") if t]
        found.append((sha, body, pairs))
    return found


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_message, min_size=1, max_size=12))
def test_trailers_and_the_fast_reading_agree_with_git(tmp_path_factory, messages) -> None:
    path = tmp_path_factory.mktemp("trailers")
    commits = _store(path, messages)
    log = subprocess.run(
        ["git", "-C", str(path), "log", "--format=%H%x1f%P%x1f%an%x1f%n%B", "-z", "main"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    _shas, hits = scan_block(log, RULES)
    by_sha = {h.sha: h for h in hits}
    for sha, body, git_trailers in commits:
        ours = [(t.token, t.value) for t in trailers(body)]
        assert ours == git_trailers, body
        fixed, mentioned = RULES.tickets(body)
        hit = by_sha.get(sha)
        assert (set(hit.fixed) if hit else set()) == fixed, body
        assert (set(hit.mentioned) if hit else set()) == mentioned, body
