"""The cockpit in Prefect, for real (the session's Prefect API): the approval gate answered from
the terminal (approve, reject), its timeout, the `gestan.release.published` event, and progress
artifacts of a long step."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

pytest.register_assert_rewrite("flow_fixtures")

from flow_fixtures import VERSION, Sandbox, cli, failed, ok, run_flow  # noqa: E402

pytestmark = pytest.mark.slow
pytest_plugins = ("flow_fixtures",)

BEFORE_TAGS = ["v15.3.0", "v15.4.0", "v15.4.1"]


class Background:
    """A flow run in a thread of this process; `state` once it ended."""

    def __init__(self, name: str, box: Sandbox) -> None:
        self.state: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(name, box), daemon=True)
        self.thread.start()

    def _run(self, name: str, box: Sandbox) -> None:
        try:
            self.state = run_flow(name, box.path)
        except BaseException as exc:  # reported by `join`
            self.error = exc

    def join(self, timeout: float = 300) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flow run did not end"
        if self.error is not None:
            raise self.error
        return self.state


def _paused_run(version: str, timeout: float = 300) -> str:
    """Wait (deadline) until the approval request of `version` exists and its run is Paused."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from gestan_release.prefect.cockpit import approval_key

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[approval_key(version)]))
            )
            for artifact in found:
                run = client.read_flow_run(artifact.flow_run_id)
                if run.state is not None and run.state.is_paused():
                    return str(run.id)
            assert time.monotonic() < deadline, f"no run of {version} paused for approval"
            time.sleep(0.5)


def _answer(box: Sandbox, api: str, *args: str) -> tuple[int, str]:
    proc = cli(["--repo", str(box.path), *args], box.env, api)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


@pytest.fixture
def gated(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    monkeypatch.setenv("GESTAN_RELEASE_APPROVAL", "required")
    return sandbox


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Any:
    """What this process emits, through Prefect's asserting events client."""
    from prefect.events.clients import AssertingEventsClient
    from prefect.events.worker import EventsWorker

    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_: worker)

    def emitted(name: str) -> list[Any]:
        worker.drain()
        return [e for e in AssertingEventsClient.last.events if e.event == name]

    return emitted


def test_approved_from_the_terminal_then_published_once(
    gated: Sandbox, prefect_harness: str, events: Any
) -> None:
    from prefect.client.orchestration import get_client

    from gestan_release.prefect.cockpit import PUBLISHED_EVENT, approval_key, published_event_id

    run = Background("release", gated)
    run_id = _paused_run(VERSION)
    assert gated.tags() == BEFORE_TAGS  # paused after the preview: nothing shipped yet
    with get_client(sync_client=True) as client:
        request = client.read_latest_artifacts(limit=50)
    preview = next(a for a in request if a.key == approval_key(VERSION))
    assert "# Gestan 15.5 attend votre accord" in preview.data
    assert "#101 : déjà livré dans 15.4 U1" in preview.data

    code, err = _answer(gated, prefect_harness, "approve", VERSION, "--by", "Claire (RM)")
    assert code == 0, err
    assert f"approved {VERSION}: flow run {run_id} goes on" in err
    result = ok(run.join())
    assert result["version"] == VERSION
    assert f"v{VERSION}" in gated.tags()
    approval = gated.ledger().delivery(f"approval:{VERSION}")
    assert (approval.state, approval.external_id) == ("done", "approved by Claire (RM)")

    published = events(PUBLISHED_EVENT)
    assert len(published) == 1
    event = published[0]
    assert event.id == published_event_id(VERSION)
    assert event.resource.id == f"gestan.release.{VERSION}"
    assert event.payload["kind"] == "full" and event.payload["version"] == VERSION
    assert sorted(event.payload["ticket_ids"]) == [101, 102, 103, 104, 105, 106]

    # resumed again later: neither asked again nor published again
    ok(run_flow("resume", gated.path, version=VERSION))
    assert len(events(PUBLISHED_EVENT)) == 1


def test_rejected_from_the_terminal_ships_nothing(gated: Sandbox, prefect_harness: str) -> None:
    before = gated.world()
    run = Background("release", gated)
    _paused_run(VERSION)
    code, err = _answer(gated, prefect_harness, "reject", VERSION)  # no reason: usage error
    assert code == 2 and "--reason" in err
    code, err = _answer(
        gated, prefect_harness, "reject", VERSION, "--reason", "le #103 n'est pas testé"
    )
    assert code == 0, err
    exc = failed(run.join())
    assert "rejected by" in str(exc) and "le #103 n'est pas testé" in str(exc)
    assert "Nothing was shipped" in str(exc)
    assert gated.world() == before
    assert gated.ledger().release(VERSION) is None  # the next run plans it afresh
    code, err = _answer(gated, prefect_harness, "approve", VERSION)
    assert code == 1 and "no release of 15.5.0 is waiting for approval" in err


def test_no_answer_in_time_ships_nothing(gated: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    before = gated.world()
    monkeypatch.setenv("GESTAN_RELEASE_APPROVAL_TIMEOUT", "2")
    exc = failed(run_flow("release", gated.path))
    assert "was not approved within 2 s (APPROVAL_TIMEOUT): nothing was shipped" in str(exc)
    assert gated.world() == before
    assert gated.ledger().release(VERSION) is None


def test_long_steps_show_progress_artifacts(prefect_harness: str) -> None:
    from prefect import flow, get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from gestan_release.core import progress as progress_
    from gestan_release.prefect.cockpit import ArtifactProgress

    @flow
    def fan_out() -> str:
        from prefect.runtime import flow_run

        reporter = ArtifactProgress(progress_.logged(get_run_logger().info))
        with reporter.track("mail", 40) as bar:
            for _ in range(40):
                bar.advance(1)
        return str(flow_run.get_id())

    run_id = fan_out()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    progress = [a for a in artifacts if a.type == "progress"]
    assert len(progress) == 1
    assert float(progress[0].data) == 100.0
    assert progress[0].description == "mail : 40/40"
