"""`gestan-release changelog` and `next-version` end to end: real repositories, a real ticket
store on disk, the JSON shapes of docs/reference.md checked exactly."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fakes.histories import every_rule_history

from gestan_release.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def history(git_repo):
    """v15.3.0, then a range with every rule of the history module."""
    return every_rule_history(git_repo)


def test_changelog_json_is_exactly_the_interface(capsys, history) -> None:
    repo, sha = history
    code, out, err = run(capsys, "--repo", str(repo.path), "changelog", "--format", "json")
    assert code == 0
    assert json.loads(out) == {
        "from": "v15.3.0",
        "to": sha["head"],
        "previous_version": "15.3.0",
        "tickets": [
            {
                "id": 103,
                "title": "Export FEC",
                "priority": "flash",
                "forum_url": "https://forum.gestan.fr/discussion/103/t",
                "commits": [{"sha": sha["b"], "subject": "Export", "author": "Marc"}],
            },
            {
                "id": 101,
                "title": "Facture **fausse**",
                "priority": "haute",
                "forum_url": "https://forum.gestan.fr/discussion/101/t",
                "commits": [
                    {
                        "sha": sha["a"],
                        "subject": "Corrige l'édition des factures #101",
                        "author": "Zoé",
                    }
                ],
            },
            {
                "id": 104,
                "title": "Libellé",
                "priority": "basse",
                "forum_url": None,
                "commits": [{"sha": sha["b"], "subject": "Export", "author": "Marc"}],
            },
        ],
        "unknown": [999],
        "reverted": [
            {
                "sha": sha["revert_old"],
                "subject": 'Revert "Corrige le lettrage #106"',
                "tickets": [106],
            }
        ],
    }
    assert "#999" in err and "no mail" in err
    assert err.count("\n") == 1  # one warning line


def test_changelog_markdown_and_text(capsys, history) -> None:
    repo, _ = history
    code, out, _ = run(capsys, "--repo", str(repo.path), "changelog")
    assert code == 0
    assert out.index("Priorité flash") < out.index("Priorité haute") < out.index("Priorité basse")
    assert "[#101](https://forum.gestan.fr/discussion/101/t) Facture \\*\\*fausse\\*\\*" in out
    assert "#999" in out and "Annulations" in out
    code, out, _ = run(capsys, "--repo", str(repo.path), "changelog", "--format", "text")
    assert code == 0 and "#103  Export FEC" in out


def test_changelog_of_a_first_release_says_so(capsys, git_repo) -> None:
    git_repo.commit("Corrige #1")
    code, out, err = run(capsys, "--repo", str(git_repo.path), "changelog", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["from"] is None and data["previous_version"] is None and data["unknown"] == [1]
    assert "first release, taking the whole history" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["changelog", "--to", "nope"], "unknown ref 'nope'"),
        (["changelog", "--from", "build-7"], "'build-7' is not a release tag"),
        (["next-version", "--ref", "nope"], "unknown ref 'nope'"),
        (["tickets", "import", "/nonexistent/tickets.csv"], "tickets.csv"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(capsys, git_repo, args, message) -> None:
    git_repo.commit("init")
    git_repo.tag("build-7")
    code, out, err = run(capsys, "--repo", str(git_repo.path), *args)
    assert code == 1
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_not_a_repository(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "--repo", str(tmp_path), "changelog")
    assert code == 1 and "is not a git repository" in err and err.count("\n") == 1


def test_usage_error_exits_2(capsys, git_repo) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--repo", str(git_repo.path), "changelog", "--format", "yaml"])
    assert exc.value.code == 2


def test_next_version_json(capsys, git_repo) -> None:
    repo = git_repo
    repo.commit("init")
    repo.tag("v15.4.0")
    repo.branch("release/15.4")
    repo.commit("main moves")
    repo.tag("v15.5.0-nightly.20261120")  # never a release
    repo.checkout("release/15.4")
    repo.commit("flash #1")
    repo.tag("v15.4.1")
    repo.checkout("main")

    def nv(*args: str) -> dict:
        code, out, _ = run(
            capsys, "--repo", str(repo.path), "next-version", "--format", "json", *args
        )
        assert code == 0
        return json.loads(out)

    assert nv("--kind", "u") == {
        "version": "15.4.2",
        "label": "15.4 U2",
        "tag": "v15.4.2",
        "previous": "15.4.1",
        "kind": "u",
    }
    assert nv() == {
        "version": "15.5.0",
        "label": "15.5",
        "tag": "v15.5.0",
        "previous": "15.4.0",
        "kind": "full",
    }
    assert nv("--kind", "major")["version"] == "16.0.0"
    nightly = nv("--kind", "nightly")
    assert nightly["kind"] == "nightly" and nightly["tag"] == "v" + nightly["version"]
    stamp = nightly["version"].removeprefix("15.5.0-nightly.")
    assert dt.datetime.strptime(stamp, "%Y%m%d")  # today, in Europe/Paris
    code, out, err = run(capsys, "--repo", str(repo.path), "next-version")
    assert code == 0 and out == "15.5.0\n" and "15.5" in err


def test_changelog_in_a_process_of_its_own_loads_neither_prefect_sqlalchemy_nor_httpx(
    history,
) -> None:
    """`changelog` must answer in well under half a second: what it imports is checked in a real
    process, on a real repository whose tickets are read from the store on disk."""
    import subprocess
    import sys

    repo, sha = history
    code = (
        "import json, sys\n"
        "from gestan_release.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "heavy = sorted(loaded & {'prefect', 'sqlalchemy', 'httpx'})\n"
        "print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)\n"
    )
    args = ["--repo", str(repo.path), "changelog", "--format", "json"]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == {"code": 0, "heavy": []}
    document = json.loads(proc.stdout)
    assert document["to"] == sha["head"]
    assert [t["id"] for t in document["tickets"]] == [103, 101, 104]  # read from the store
