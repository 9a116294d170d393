"""`gestan-release on-tag TAG`: checks the tag, emits the event the prefect.yaml trigger matches."""

from __future__ import annotations

import fnmatch

import pytest
import yaml
from flow_fixtures import prefect_harness  # noqa: F401  (the session's Prefect API)

from gestan_release.cli import main

pytestmark = pytest.mark.slow
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture
def tagged(git_repo):
    git_repo.commit("init")
    git_repo.tag("v15.4.0")
    git_repo.branch("release/15.4")
    git_repo.checkout("release/15.4")
    git_repo.commit("Corrige #12")
    git_repo.tag("v15.4.1")
    git_repo.tag("v15.5.0-nightly.20261127")
    git_repo.tag("build-7")
    return git_repo


def test_on_tag_emits_the_event_the_trigger_expects(tagged, prefect_harness, monkeypatch, capsys):  # noqa: F811
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    # Prefect's own way to see what is emitted: the events worker with a recording client.
    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_: worker)
    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    assert main(["--repo", str(tagged.path), "on-tag", "v15.4.1"]) == 0
    assert "hotfix deployment" in capsys.readouterr().err
    worker.drain()
    events = [e for e in AssertingEventsClient.last.events if e.event == "gestan.release.tagged"]
    assert len(events) == 1
    event = events[0]
    assert event.resource.id == "gestan.release.15.4.1"
    assert event.resource["gestan.deployment"] == "hotfix"
    assert event.payload["branch"] == "release/15.4"
    assert event.payload["commit"] == tagged.head()

    # The trigger of the hotfix deployment matches exactly this event and passes these parameters.
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    hotfix = next(d for d in spec["deployments"] if d["name"] == "hotfix")
    trigger = hotfix["triggers"][0]
    assert trigger["expect"] == [event.event]
    assert trigger["match"]["gestan.deployment"] == event.resource["gestan.deployment"]
    assert fnmatch.fnmatch(event.resource.id, trigger["match"]["prefect.resource.id"])
    for name, template in trigger["parameters"].items():
        key = template.removeprefix("{{ event.payload.").removesuffix(" }}")
        assert key in event.payload, (name, template)
    assert event.payload[trigger["parameters"]["branch"].split(".")[-1].strip(" }")] == (
        "release/15.4"
    )


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("build-7", "'build-7' is not a release tag"),
        ("v15.5.0-nightly.20261127", "nightlies are not tagged"),
        ("v15.4.9", "no tag v15.4.9"),
    ],
)
def test_on_tag_refuses_what_is_not_a_release_tag(tagged, monkeypatch, capsys, tag, message):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert main(["--repo", str(tagged.path), "on-tag", tag]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_on_tag_needs_a_prefect_server(tagged, monkeypatch, capsys):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["--repo", str(tagged.path), "on-tag", "v15.4.1"]) == 1
    assert "PREFECT_API_URL" in capsys.readouterr().err
