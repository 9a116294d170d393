"""The embedded store, the publishers and the server's cached answers (no network)."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import stat
import threading
from pathlib import Path

import httpx
import pytest

from gestan_release.errors import GestanReleaseError
from gestan_release.history.versions import Version
from gestan_release.settings import load
from gestan_release.updates.choice import candidates_for, choose_update
from gestan_release.updates.manifest import ManifestError, parse_time
from gestan_release.updates.publisher import (
    HttpPublisher,
    LocalPublisher,
    PublishConflict,
    PublishError,
    publisher_for,
)
from gestan_release.updates.server import UpdateServer
from gestan_release.updates.signing import Signer, create_key, verify
from gestan_release.updates.store import ReleaseConflict, ReleaseNotFound, Store, StoreCorrupt

SHA = "cd" * 32


def entry(version: str, **fields) -> dict:
    url = f"https://dl.gestan.fr/{version}.exe"
    return {
        "version": version,
        "artifacts": {"win64": {"url": url, "sha256": SHA, "size": 9}},
        **fields,
    }


@pytest.fixture
def signer(tmp_path) -> Signer:
    return Signer.from_file(tmp_path / "keys" / "updates.pem")


@pytest.fixture
def store(tmp_path, signer) -> Store:
    return Store(tmp_path / "updates", signer)


def test_key_is_created_private_and_never_replaced(tmp_path):
    path = tmp_path / "k" / "updates.pem"
    signer = Signer.from_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Signer.from_file(path).public_b64() == signer.public_b64()
    with pytest.raises(GestanReleaseError, match="not replacing"):
        create_key(path)
    assert "PRIVATE" not in repr(signer)


def test_publish_signs_a_manifest_that_survives_reopening(store, signer):
    change = store.publish("stable", entry("15.4.1"))
    assert change.changed and change.release["label"] == "15.4 U1"
    signed = Store(store.root, signer).load("stable")
    assert signed.manifest["releases"][0]["version"] == "15.4.1"
    assert verify(signer.public_key, signed.body, signed.signature)
    assert parse_time(signed.manifest["expires"]) > dt.datetime.now(dt.UTC) + dt.timedelta(days=6)
    assert not list(store.root.rglob("*.tmp")), "temporary files left behind"


def test_publish_is_idempotent_and_a_different_body_conflicts(store):
    first = store.publish("stable", entry("15.4.1"))
    again = store.publish("stable", entry("15.4.1"))
    assert not again.changed and again.serial == first.serial
    assert again.release == first.release
    with pytest.raises(ReleaseConflict, match="critical"):
        store.publish("stable", entry("15.4.1", critical=True))
    assert store.load("stable").serial == first.serial


def test_serial_only_increases_across_changes(store):
    serials = [store.publish("stable", entry("15.4.1")).serial]
    serials.append(store.publish("stable", entry("15.4.2")).serial)
    serials.append(store.set_rollout("stable", "15.4.2", 20).serial)
    serials.append(store.yank("stable", "15.4.1", "corrupts invoices").serial)
    assert serials == sorted(set(serials))
    releases = {r["version"]: r for r in store.load("stable").manifest["releases"]}
    assert releases["15.4.2"]["rollout"] == 20
    assert releases["15.4.1"]["yanked"] and releases["15.4.1"]["yank_reason"] == "corrupts invoices"
    with pytest.raises(ReleaseNotFound):
        store.set_rollout("stable", "15.9.9", 50)
    with pytest.raises(ManifestError):
        store.set_rollout("stable", "15.4.2", 150)


def test_refresh_resigns_a_manifest_past_half_its_life(tmp_path, signer):
    now = [dt.datetime(2026, 11, 27, tzinfo=dt.UTC)]
    store = Store(tmp_path / "u", signer, clock=lambda: now[0])
    before = store.publish("stable", entry("15.4.1")).serial
    assert store.refresh() == []
    now[0] += dt.timedelta(days=4)
    assert store.refresh() == ["stable"]
    after = store.load("stable").manifest
    assert after["serial"] > before
    assert parse_time(after["expires"]) == now[0] + store.ttl


def test_a_tampered_store_file_is_refused(store):
    store.publish("stable", entry("15.4.1"))
    path = store.path("stable")
    data = json.loads(path.read_text())
    data["manifest"]["releases"][0]["artifacts"]["win64"]["url"] = "https://evil.example/x.exe"
    path.write_text(json.dumps(data))
    with pytest.raises(StoreCorrupt, match="signature"):
        store.load("stable")


def test_concurrent_publishes_from_threads_all_land(store):
    errors: list[BaseException] = []

    def publish(n: int) -> None:
        try:
            store.publish("stable", entry(f"15.4.{n}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(1, 17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.load("stable").manifest["releases"]) == 16


def _publish_in_process(root: str, key: str, versions: list[str]) -> None:
    store = Store(Path(root), Signer.from_file(Path(key)))
    for v in versions:
        store.publish("stable", entry(v))


def test_concurrent_publishes_from_processes_all_land(tmp_path, signer):
    key = tmp_path / "keys" / "updates.pem"
    root = tmp_path / "updates"
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(
            target=_publish_in_process,
            args=(str(root), str(key), [f"15.{p}.{n}" for n in range(1, 6)]),
        )
        for p in range(1, 4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(Store(root, signer).load("stable").manifest["releases"]) == 15


def test_export_writes_files_that_verify(store, signer, tmp_path):
    store.publish("stable", entry("15.4.1"))
    store.publish("nightly", entry("15.5.0-nightly.20261127"))
    written = store.export(tmp_path / "www")
    assert len(written) == 4
    body = (tmp_path / "www/v1/channels/nightly/manifest.json").read_bytes()
    sig = (tmp_path / "www/v1/channels/nightly/manifest.json.sig").read_text()
    assert verify(signer.public_key, body, sig)
    assert not verify(signer.public_key, body.replace(b"nightly", b"stable", 1), sig)


# -- publishers -----------------------------------------------------------------------------------
def test_publisher_for_without_url_writes_the_local_store(tmp_path):
    settings = load(tmp_path, env={})
    publisher = publisher_for(settings)
    assert isinstance(publisher, LocalPublisher)
    assert publisher.publish("stable", entry("15.4.1"))["changed"] is True
    assert publisher.publish("stable", entry("15.4.1"))["changed"] is False
    assert (settings.updates_dir / "channels" / "stable.json").is_file()
    assert publisher.manifest("stable")["releases"][0]["version"] == "15.4.1"
    with pytest.raises(PublishConflict):
        publisher.publish("stable", entry("15.4.1", critical=True))
    with pytest.raises(PublishError, match="UPDATES_CHANNELS"):
        publisher.publish("beta", entry("15.4.1"))


def test_publisher_for_with_url_needs_a_token(tmp_path):
    with pytest.raises(GestanReleaseError, match="UPDATES_TOKEN"):
        publisher_for(load(tmp_path, env={"GESTAN_RELEASE_UPDATES_URL": "http://127.0.0.1:1"}))


def _http_publisher(handler) -> tuple[HttpPublisher, list[float]]:
    sleeps: list[float] = []
    publisher = HttpPublisher(
        "http://updates.test",
        "s3cret-token",
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
    )
    return publisher, sleeps


def test_http_publisher_retries_5xx_and_timeouts_then_succeeds():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadTimeout("slow", request=request)
        if len(calls) == 2:
            return httpx.Response(503, json={"error": "busy"})
        return httpx.Response(201, json={"changed": True, "release": {"version": "15.4.1"}})

    publisher, sleeps = _http_publisher(handler)
    assert publisher.publish("stable", entry("15.4.1"))["changed"] is True
    assert len(calls) == 3 and sleeps == [0.5, 1.0]
    assert calls[0].headers["authorization"] == "Bearer s3cret-token"
    assert calls[0].url.path == "/v1/channels/stable/releases/15.4.1"


@pytest.mark.parametrize(("status", "kind"), [(409, PublishConflict), (403, PublishError)])
def test_http_publisher_never_retries_4xx_and_never_shows_the_token(status, kind):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"error": "no"})

    publisher, sleeps = _http_publisher(handler)
    with pytest.raises(kind) as info:
        publisher.publish("stable", entry("15.4.1"))
    assert len(calls) == 1 and sleeps == []
    assert info.value.permanent is True
    assert "s3cret" not in str(info.value) and "s3cret" not in repr(publisher)


def test_http_publisher_gives_up_after_repeated_5xx():
    publisher, sleeps = _http_publisher(lambda request: httpx.Response(502))
    with pytest.raises(PublishError, match="gave up after 4 attempts") as info:
        publisher.yank("stable", "15.4.1", "bad")
    assert info.value.permanent is False and len(sleeps) == 3


# -- the server's cached answers agree with the pure rule -----------------------------------------
def test_cached_answers_agree_with_choose_update(store):
    store.publish("stable", entry("15.4.1", critical=True, rollout=30))
    store.publish("stable", entry("15.4.2", rollout=40))
    store.publish("stable", entry("15.4.3", rollout=10, min_version="15.4.1"))
    app = UpdateServer(store, token=None, channels=["stable"])
    manifests = {"stable": store.load("stable").manifest}
    cands = candidates_for(manifests, "stable", "win64")
    for current in ("15.4.0", "15.4.1", "15.4.2"):
        for n in range(300):
            install = f"id-{n}"
            for _ in range(2):  # second pass served from the cache
                answer = app.check(
                    f"version={current}&channel=stable&platform=win64&install_id={install}".encode()
                )
                expected = choose_update(cands, Version.parse(current), install)
                if expected is None:
                    assert answer.status == 204
                else:
                    body = json.loads(answer.body)
                    assert body["version"] == str(expected.target.version)
                    assert body["critical"] == expected.critical


@pytest.mark.parametrize(
    "query",
    [
        b"channel=stable&platform=win64&install_id=a",
        b"version=15.4&channel=stable&platform=win64&install_id=a",
        b"version=15.4.0&channel=../etc&platform=win64&install_id=a",
        b"version=15.4.0&channel=stable&platform=win64&install_id=a&install_id=b",
        b"version=15.4.0&channel=stable&platform=win64&install_id=a&interactive=yes",
        b"version=15.4.0&channel=beta&platform=win64&install_id=a",
        b"version=15.4.0&channel=stable&platform=win64&install_id=a%20b",
    ],
)
def test_malformed_check_queries_get_400_with_a_json_error(store, query):
    app = UpdateServer(store, token=None, channels=["stable"])
    answer = app.check(query)
    assert answer.status == 400
    assert json.loads(answer.body)["error"]
