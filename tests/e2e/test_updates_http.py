"""The update endpoint over real HTTP: uvicorn on loopback, the reference client as the desktop."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import shutil
import threading

import httpx
import pytest
from update_servers import TOKEN, start_update_server

from gestan_release.updates.client import (
    ArtifactMismatch,
    BadSignature,
    ExpiredAnswer,
    OversizedResponse,
    RollbackRefused,
    UpdateClient,
)
from gestan_release.updates.publisher import HttpPublisher, PublishConflict, PublishError
from gestan_release.updates.signing import Signer
from gestan_release.updates.store import Store

pytestmark = pytest.mark.slow

SHA = "ef" * 32


def entry(version: str, **fields) -> dict:
    url = f"https://dl.gestan.fr/{version}.exe"
    return {
        "version": version,
        "artifacts": {"win64": {"url": url, "sha256": SHA, "size": 9}},
        **fields,
    }


@pytest.fixture
def publisher(update_server):
    p = HttpPublisher(update_server.url, TOKEN, attempts=1)
    yield p
    p.close()


@pytest.fixture
def install(update_server, key_path, tmp_path):
    """A factory of desktop installs that pin the server's public key."""
    public = Signer.from_file(key_path).public_b64()
    made = []

    def make(version: str, channel: str = "stable", install_id: str = "desk-1", **kw):
        client = UpdateClient(
            kw.pop("base_url", update_server.url),
            public,
            version=version,
            channel=channel,
            platform="win64",
            install_id=install_id,
            state_path=tmp_path / "desktop" / f"{install_id}-{channel}.json",
            **kw,
        )
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()


def test_publish_then_check_from_several_versions_and_channels(publisher, install):
    assert publisher.publish("stable", entry("15.4.0"))["changed"] is True
    publisher.publish("stable", entry("15.4.1"))
    publisher.publish("nightly", entry("15.5.0-nightly.20261127"))
    assert publisher.publish("stable", entry("15.4.1"))["changed"] is False  # idempotent

    assert install("15.3.0").check().version == "15.4.1"
    assert install("15.4.0").check().version == "15.4.1"
    up_to_date = install("15.4.1").check()
    assert up_to_date.offer is None and not up_to_date.current_yanked
    assert install("15.4.1", "nightly").check().version == "15.5.0-nightly.20261127"
    assert publisher.manifest("stable")["releases"][-1]["version"] == "15.4.1"
    with pytest.raises(PublishConflict, match="409"):
        publisher.publish("stable", entry("15.4.1", critical=True))


def test_rollout_is_sticky_and_spread(publisher, update_server):
    publisher.publish("stable", entry("15.4.2", rollout=20))
    host, port = update_server.url.removeprefix("http://").split(":")
    # http.client rather than httpx: 20,000 requests, and the client shares the GIL with uvicorn
    conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def ask(n: int) -> int:
        q = f"version=15.4.1&channel=stable&platform=win64&install_id=inst-{n}"
        conn.request("GET", f"/v1/check?{q}")
        response = conn.getresponse()
        response.read()
        return response.status

    try:
        statuses = {n: ask(n) for n in range(10_000)}
        assert set(statuses.values()) == {200, 204}
        offered = {n for n, status in statuses.items() if status == 200}
        assert 1800 <= len(offered) <= 2200, len(offered)
        assert all(ask(n) == statuses[n] for n in range(10_000))  # same answer twice
    finally:
        conn.close()


def test_manual_check_and_critical_skip_the_staged_rollout(publisher, install):
    publisher.publish("stable", entry("15.4.2", rollout=1))
    desk = next(
        d
        for d in (install("15.4.1", install_id=f"d{n}") for n in range(200))
        if not d.check().offer
    )
    assert desk.check(interactive=True).version == "15.4.2"
    publisher.publish("stable", entry("15.4.3", rollout=1, critical=True))
    answer = desk.check()
    assert answer.version == "15.4.3" and answer.critical


def test_critical_fix_is_not_shadowed_by_a_later_optional_u(publisher, install):
    publisher.publish("stable", entry("15.4.1", critical=True))
    publisher.publish("stable", entry("15.4.2"))
    answer = install("15.4.0").check()
    assert answer.version == "15.4.2"
    assert answer.critical is True
    assert install("15.4.1").check().critical is False


def test_stepping_stone(publisher, install):
    publisher.publish("stable", entry("15.4.0"))
    publisher.publish("stable", entry("16.0.0", min_version="15.4.0"))
    assert install("15.2.0").check().version == "15.4.0"
    assert install("15.4.0").check().version == "16.0.0"


def test_yank(publisher, install):
    publisher.publish("stable", entry("15.4.1"))
    publisher.publish("stable", entry("15.4.2"))
    publisher.yank("stable", "15.4.2", "corrompt les factures")
    older = install("15.4.0").check()
    assert older.version == "15.4.1"
    victim = install("15.4.2").check()
    assert victim.offer is None
    assert victim.current_yanked and victim.current_yank_reason == "corrompt les factures"
    publisher.publish("stable", entry("15.4.3"))
    fixed = install("15.4.2", install_id="desk-2").check()
    assert fixed.version == "15.4.3" and fixed.current_yanked


def test_nightly_sees_stable(publisher, install):
    publisher.publish("nightly", entry("15.5.0-nightly.20261127"))
    publisher.publish("stable", entry("15.5.0"))
    answer = install("15.5.0-nightly.20261127", "nightly").check()
    assert answer.version == "15.5.0" and answer.offer["channel"] == "stable"
    assert install("15.4.0", "stable").check().version == "15.5.0"


def test_manifest_etag_gives_304(publisher, update_server, install):
    publisher.publish("stable", entry("15.4.1"))
    url = f"{update_server.url}/v1/channels/stable/manifest.json"
    first = httpx.get(url)
    assert first.status_code == 200 and first.headers["etag"]
    assert "max-age" in first.headers["cache-control"]
    again = httpx.get(url, headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    publisher.publish("stable", entry("15.4.2"))
    changed = httpx.get(url, headers={"if-none-match": first.headers["etag"]})
    assert changed.status_code == 200 and changed.headers["etag"] != first.headers["etag"]
    assert install("15.4.0").fetch_manifest()["serial"] == changed.json()["serial"]


def test_restart_keeps_everything(tmp_path, key_path, install):
    data = tmp_path / "updates"
    first = start_update_server(data, key_path)
    p = HttpPublisher(first.url, TOKEN, attempts=1)
    p.publish("stable", entry("15.4.1", critical=True))
    p.publish("stable", entry("15.4.2", rollout=30))
    before = httpx.get(f"{first.url}/v1/channels/stable/manifest.json").content
    p.close()
    first.stop()

    second = start_update_server(data, key_path)
    try:
        assert httpx.get(f"{second.url}/v1/channels/stable/manifest.json").content == before
        answer = install("15.4.0", base_url=second.url).check()
        assert answer.version in ("15.4.1", "15.4.2") and answer.critical
        with pytest.raises(PublishConflict):
            HttpPublisher(second.url, TOKEN, attempts=1).publish(
                "stable", entry("15.4.2", critical=True)
            )
    finally:
        second.stop()


def test_two_concurrent_publishes_both_land(publisher, update_server):
    barrier = threading.Barrier(2)
    results = []

    def publish(version: str) -> None:
        own = HttpPublisher(update_server.url, TOKEN, attempts=1)
        barrier.wait()
        results.append(own.publish("stable", entry(version))["changed"])
        own.close()

    threads = [threading.Thread(target=publish, args=(v,)) for v in ("15.4.1", "15.4.2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True, True]
    versions = [r["version"] for r in publisher.manifest("stable")["releases"]]
    assert versions == ["15.4.1", "15.4.2"]


# -- security -------------------------------------------------------------------------------------
def test_admin_api_needs_the_right_token(update_server):
    url = f"{update_server.url}/v1/channels/stable/releases/15.4.1"
    assert httpx.put(url, json=entry("15.4.1")).status_code == 401
    wrong = httpx.put(url, json=entry("15.4.1"), headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert TOKEN not in wrong.text
    patch = httpx.patch(url, json={"rollout": 5}, headers={"authorization": "Bearer nope"})
    assert patch.status_code == 403
    with pytest.raises(PublishError, match="403"):
        HttpPublisher(update_server.url, "nope", attempts=1).publish("stable", entry("15.4.1"))
    assert httpx.get(f"{update_server.url}/v1/channels/stable/manifest.json").status_code == 404


def test_oversized_body_is_refused(update_server):
    url = f"{update_server.url}/v1/channels/stable/releases/15.4.1"
    huge = entry("15.4.1", label="x" * 100_000)
    answer = httpx.put(url, json=huge, headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 413
    assert update_server.app.store.load("stable") is None


@pytest.mark.parametrize(
    "path",
    [
        "/v1/channels/%2E%2E/releases/15.4.1",
        "/v1/channels/..%2F..%2Fetc/releases/15.4.1",
        "/v1/channels/stable/releases/..%2F15.4.1",
    ],
)
def test_path_tricks_in_channel_or_version_are_refused(update_server, tmp_path, path):
    with httpx.Client(base_url=update_server.url) as http:
        request = http.build_request(
            "PUT", path, json=entry("15.4.1"), headers={"authorization": f"Bearer {TOKEN}"}
        )
        request.url = request.url.copy_with(raw_path=path.encode())
        answer = http.send(request)
    assert answer.status_code in (400, 404)
    assert update_server.app.store.channels() == []
    assert not list(tmp_path.rglob("etc*")) and not list(tmp_path.rglob("*15.4.1*"))
    q = {"version": "15.4.0", "channel": "../etc", "platform": "win64", "install_id": "a"}
    check = httpx.get(f"{update_server.url}/v1/check", params=q)
    assert check.status_code == 400 and "channel" in check.json()["error"]


def _export_to_mirror(update_server, root) -> None:
    for child in root.iterdir():
        shutil.rmtree(child)
    update_server.app.store.export(root)


def test_tampered_manifest_is_refused(publisher, update_server, static_server, install):
    mirror, root = static_server
    publisher.publish("stable", entry("15.4.1"))
    _export_to_mirror(update_server, root)
    assert install("15.4.0", base_url=mirror).fetch_manifest()["serial"] > 0
    path = root / "v1/channels/stable/manifest.json"
    path.write_bytes(path.read_bytes().replace(b"https://dl.gestan.fr", b"https://evil.example"))
    with pytest.raises(BadSignature):
        install("15.4.0", base_url=mirror, install_id="desk-2").fetch_manifest()


def test_replayed_older_manifest_is_refused(publisher, update_server, static_server, install):
    mirror, root = static_server
    publisher.publish("stable", entry("15.4.1"))
    _export_to_mirror(update_server, root)
    shutil.copytree(root / "v1", root.parent / "old-v1")
    publisher.publish("stable", entry("15.4.2"))
    _export_to_mirror(update_server, root)
    desk = install("15.4.0", base_url=mirror)
    assert desk.fetch_manifest()["releases"][-1]["version"] == "15.4.2"
    shutil.rmtree(root / "v1")
    shutil.copytree(root.parent / "old-v1", root / "v1")  # an attacker replays the old one
    with pytest.raises(RollbackRefused):
        desk.fetch_manifest()


def test_check_answers_are_verified_against_rollback_and_freeze(
    publisher, update_server, install, key_path
):
    publisher.publish("stable", entry("15.4.1"))
    desk = install("15.4.0")
    assert desk.check().version == "15.4.1"
    seen = desk.seen_serials()["stable"]
    # a desktop whose state already saw a later serial refuses this (older) answer
    desk.state_path.write_text(json.dumps({"serials": {"stable": seen + 1}}))
    with pytest.raises(RollbackRefused):
        desk.check()
    # a month later, with the server frozen in time, the answer is stale
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    frozen = install("15.4.0", install_id="desk-3", clock=lambda: later)
    with pytest.raises(ExpiredAnswer):
        frozen.check()
    # an answer signed by another key is refused
    other = Signer.from_file(key_path.parent / "other.pem").public_b64()
    impostor = UpdateClient(
        update_server.url,
        other,
        version="15.4.0",
        install_id="desk-4",
        state_path=key_path.parent / "imp.json",
    )
    with pytest.raises(BadSignature):
        impostor.check()
    impostor.close()


def test_expired_manifest_is_refused(tmp_path, key_path, static_server, install):
    mirror, root = static_server
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
    stale = Store(tmp_path / "stale", Signer.from_file(key_path), clock=lambda: long_ago)
    stale.publish("stable", entry("15.4.1"))
    folder = root / "v1/channels/stable"
    folder.mkdir(parents=True)
    signed = stale.load("stable")
    (folder / "manifest.json").write_bytes(signed.body)
    (folder / "manifest.json.sig").write_text(signed.signature)
    with pytest.raises(ExpiredAnswer):
        install("15.4.0", base_url=mirror).fetch_manifest()


def test_oversized_response_is_refused(publisher, install):
    for n in range(1, 6):
        publisher.publish("stable", entry(f"15.4.{n}"))
    with pytest.raises(OversizedResponse):
        install("15.4.0", max_response=300).fetch_manifest()
    with pytest.raises(OversizedResponse):
        install("15.4.0", install_id="desk-2", max_response=100).check()


def test_artifact_is_verified_after_download(publisher, install, static_server, tmp_path):
    mirror, root = static_server
    payload = b"Gestan installer 15.4.1\n"
    (root / "good.exe").write_bytes(payload)
    (root / "bad.exe").write_bytes(payload.replace(b"G", b"X"))
    digest = hashlib.sha256(payload).hexdigest()
    for version, name in (("15.4.1", "good.exe"), ("15.4.2", "bad.exe")):
        art = {"win64": {"url": f"{mirror}/{name}", "sha256": digest, "size": len(payload)}}
        publisher.publish("stable", {"version": version, "artifacts": art, "rollout": 100})
    good = install("15.4.0", install_id="g").check()
    assert good.version == "15.4.2"
    with pytest.raises(ArtifactMismatch):
        install("15.4.0", install_id="g2").download(good.offer, tmp_path / "setup.exe")
    assert not (tmp_path / "setup.exe").exists()
    older = install("15.4.0", install_id="g3").check().statement
    assert older["version"] == "15.4.2"
    first = publisher.manifest("stable")["releases"][0]
    offer = {**first, "artifact": first["artifacts"]["win64"]}
    path = install("15.4.0", install_id="g4").download(offer, tmp_path / "setup.exe")
    assert path.read_bytes() == payload
