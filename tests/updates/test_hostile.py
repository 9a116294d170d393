"""The update server against hostile requests and a failing store (issue 9, holes 3, 4 and 6, and
the decisions on 405 and error texts), through its ASGI interface in this process; the real
server over real HTTP is in `tests/e2e/test_updates_limits.py`."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.asgi import AUTH, TOKEN, call, entry, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gestan_release.updates.answers import MAX_BACKOFF
from gestan_release.updates.manifest import ManifestError, retained
from gestan_release.updates.server import UpdateServer
from gestan_release.updates.signing import Signer
from gestan_release.updates.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "updates", Signer.from_file(tmp_path / "keys" / "k.pem"))


@pytest.fixture
def app(store: Store) -> UpdateServer:
    store.publish("stable", entry("15.4.0"))
    return UpdateServer(store, token=TOKEN, channels=["stable", "nightly"])


def assert_one_line_400(status: int, body: bytes, caplog) -> str:
    assert status == 400
    error = json.loads(body)["error"]
    assert "\n" not in error and len(error) < 300
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    return error


# -- hole 3: no 500, no traceback, for what anyone can send ----------------------------------------


def test_a_huge_version_number_is_a_400(app: UpdateServer, caplog) -> None:
    query = b"version=15.4." + b"9" * 5000 + b"&channel=stable&platform=win64&install_id=a"
    status, _, body = request(app, "GET", "/v1/check", query)
    assert "is not a Gestan version" in assert_one_line_400(status, body, caplog)
    for version in ("%D9%A1%D9%A5.4.0", "15.4.0%0A", "1" * 12 + ".0.0"):  # ١٥ ; newline ; 12 digits
        query = f"version={version}&channel=stable&platform=win64&install_id=a".encode()
        status, _, body = request(app, "GET", "/v1/check", query)
        assert_one_line_400(status, body, caplog)


def test_a_deeply_nested_admin_body_is_a_400(app: UpdateServer, caplog) -> None:
    for body in (
        b"[" * 30_000 + b"]" * 30_000,
        b'{"artifacts": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
    ):
        status, _, answer = request(app, "PUT", "/v1/channels/stable/releases/15.4.1",
                                    headers=AUTH, body=body)  # fmt: skip
        assert "nests deeper than" in assert_one_line_400(status, answer, caplog)


@pytest.mark.parametrize(
    "published_at",
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "1900-01-01T00:00:00Z", 12, []],
)
def test_an_impossible_publication_time_is_a_400(app: UpdateServer, caplog, published_at) -> None:
    body = json.dumps(entry("15.4.1", published_at=published_at)).encode()
    status, _, answer = request(app, "PUT", "/v1/channels/stable/releases/15.4.1", headers=AUTH,
                                body=body)  # fmt: skip
    assert_one_line_400(status, answer, caplog)


def test_errors_quote_only_a_short_prefix(app: UpdateServer, caplog) -> None:
    long = "x" * 20_000
    query = f"version=15.4.0&channel=stable&platform={long}&install_id=a".encode()
    status, _, body = request(app, "GET", "/v1/check", query)
    assert_one_line_400(status, body, caplog)
    body_ = json.dumps(entry("15.4.1", rollout=[long])).encode()
    status, _, answer = request(app, "PUT", "/v1/channels/stable/releases/15.4.1", headers=AUTH,
                                body=body_)  # fmt: skip
    assert_one_line_400(status, answer, caplog)


def test_405_names_the_allowed_methods(app: UpdateServer) -> None:
    for method, path, allow in (
        ("POST", "/v1/check", b"GET, HEAD"),
        ("DELETE", "/v1/channels/stable/manifest.json", b"GET, HEAD"),
        ("GET", "/v1/channels/stable/releases/15.4.0", b"PUT, PATCH"),
        ("POST", "/healthz", b"GET, HEAD"),
    ):
        status, headers, body = request(app, method, path)
        assert (status, headers.get(b"allow")) == (405, allow), (method, path)
        assert json.loads(body) == {"error": "method not allowed"}


# -- hole 6: a pre-release never reaches stable; the nightly manifest is bounded -------------------


def test_a_nightly_put_on_stable_is_refused(app: UpdateServer, store: Store) -> None:
    version = "15.5.0-nightly.20261127"
    body = json.dumps(entry(version)).encode()
    status, _, answer = request(app, "PUT", f"/v1/channels/stable/releases/{version}",
                                headers=AUTH, body=body)  # fmt: skip
    assert status == 400 and "never on stable" in json.loads(answer)["error"]
    assert [r["version"] for r in store.load("stable").manifest["releases"]] == ["15.4.0"]
    with pytest.raises(ManifestError, match="never on stable"):
        store.publish("stable", entry(version))


def nightly(day: int, **fields) -> dict:
    stamp = (dt.date(2026, 1, 1) + dt.timedelta(days=day)).strftime("%Y%m%d")
    return {**entry(f"15.5.0-nightly.{stamp}"), "rollout": 100, "yanked": False, **fields}


def test_retention_keeps_what_clients_need() -> None:
    def v(day: int) -> str:
        return nightly(day)["version"]

    releases = [entry("15.4.0"), entry("15.4.1"), *(nightly(d) for d in range(100))]
    releases += [nightly(100, rollout=10), nightly(101, rollout=0)]  # staged, then halted
    releases.append({**entry("15.4.2"), "yanked": True, "yank_reason": "corrompt"})
    releases.append({**entry("15.6.0-nightly.20260301"), "min_version": v(4)})
    releases.append(entry("15.6.0-nightly.20260302", rollout=50))
    kept = [r["version"] for r in retained(releases, keep_nightlies=2)]
    assert kept == [
        "15.4.0", "15.4.1", "15.4.2",  # full and U versions: all kept, yanked ones too
        v(4),  # the stepping stone of a kept nightly
        v(101),  # the latest of its line (halted)
        "15.6.0-nightly.20260301",  # the last 2; the newest offered to everybody
        "15.6.0-nightly.20260302",  # staged above it
    ]  # fmt: skip
    # With the staged one newest and the one below it halted, the chain reaches further down.
    chain = [nightly(1), nightly(2, rollout=0), nightly(3, rollout=20)]
    assert [r["version"] for r in retained(chain, 1)] == [v(1), v(2), v(3)]


def test_publishing_past_retention_keeps_the_manifest_small(store: Store) -> None:
    store.keep_nightlies = 3
    for day in range(10):
        change = store.publish("nightly", nightly(day))
        assert change.changed
    kept = [r["version"] for r in store.load("nightly").manifest["releases"]]
    assert kept == [nightly(d)["version"] for d in (7, 8, 9)]
    again = store.publish("nightly", nightly(0))  # an old nightly published again (a resume)
    assert not again.changed
    assert [r["version"] for r in store.load("nightly").manifest["releases"]] == kept


# -- hole 4: a store that cannot be written is retried with a backoff and logged once --------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_unwritable_store_backs_off_and_logs_once_per_change(store: Store, caplog) -> None:
    store.publish("stable", entry("15.4.0"))
    later = store.clock() + dt.timedelta(days=6)  # past half the manifest's 7-day lifetime
    store.clock = lambda: later
    lock = store.root / ".lock"
    lock.unlink()
    lock.mkdir()  # every write now fails (IsADirectoryError): the store cannot be written
    attempts = []
    real_refresh = store.refresh

    def refresh(**kwargs):
        attempts.append(clock.now)
        return real_refresh(**kwargs)

    store.refresh = refresh  # type: ignore[method-assign]
    clock = _Clock()
    app = UpdateServer(store, token=TOKEN, channels=["stable"], poll_interval=1.0, clock=clock)
    query = b"version=15.3.0&channel=stable&platform=win64&install_id=a"

    async def traffic(seconds: int) -> list[int]:
        statuses = []
        for _ in range(seconds * 4):  # four requests a second
            status, _, _ = await call(app, "GET", "/v1/check", query)
            statuses.append(status)
            if app.refresh_future is not None:
                await app.refresh_future
                app.refresh_future = None
            clock.now += 0.25
        return statuses

    caplog.set_level(logging.INFO)
    statuses = asyncio.run(traffic(600))
    assert set(statuses) == {200}  # installs are served the signed manifest all along
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot be written" in errors[0].getMessage()
    assert errors[0].exc_info is None  # one line, no traceback
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps == sorted(gaps) and max(gaps) <= MAX_BACKOFF + 1.0  # growing, capped
    assert len(attempts) < 20  # not once a second

    # A PUT meanwhile: 503 with a reason, not a 500 with a traceback.
    status, _, body = request(app, "PUT", "/v1/channels/stable/releases/15.4.1", headers=AUTH,
                              body=json.dumps(entry("15.4.1")).encode())  # fmt: skip
    assert status == 503 and "cannot be written" in json.loads(body)["error"]

    lock.rmdir()  # the disk is fixed
    clock.now += MAX_BACKOFF
    asyncio.run(traffic(2))
    assert [r.getMessage() for r in caplog.records if "written again" in r.getMessage()]
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    assert store.load("stable").manifest["expires"] > (later.isoformat()[:10])


# -- fuzz: any query string or admin body, never a 5xx ---------------------------------------------


@pytest.fixture(scope="module")
def fuzz_app() -> Iterator[UpdateServer]:
    root = Path(tempfile.mkdtemp(prefix="gestan-fuzz-"))
    store = Store(root / "updates", Signer.from_file(root / "k.pem"))
    store.publish("stable", entry("15.4.0"))
    yield UpdateServer(store, token=TOKEN, channels=["stable", "nightly"])
    shutil.rmtree(root, ignore_errors=True)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
param = st.sampled_from(["version", "channel", "platform", "install_id", "interactive", "x", ""])
value = st.one_of(
    st.sampled_from(["15.4.0", "stable", "nightly", "win64", "a", "1", "15.5.0-nightly.20261127"]),
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)
query_string = st.one_of(
    st.binary(max_size=300),
    st.lists(st.tuples(param, value), max_size=8).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")
    ),
)


@FUZZ
@given(query=query_string)
def test_any_query_string_gets_no_5xx(fuzz_app: UpdateServer, query: bytes) -> None:
    status, _, body = request(fuzz_app, "GET", "/v1/check", query)
    assert status in (200, 204, 400), body


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
              st.text(max_size=30)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20,
)  # fmt: skip
entry_like = st.fixed_dictionaries(
    {},
    optional={
        "version": st.one_of(st.just("15.4.9"), json_value),
        "artifacts": st.one_of(st.just(entry("15.4.9")["artifacts"]), json_value),
        "published_at": st.one_of(st.text(max_size=40), json_value),
        "min_version": json_value, "rollout": json_value, "critical": json_value,
        "label": json_value, "notes_url": json_value, "yanked": json_value,
        "yank_reason": json_value, "reason": json_value, "kind": json_value,
    },
)  # fmt: skip
admin_body = st.one_of(
    st.binary(max_size=200),
    json_value.map(lambda v: json.dumps(v).encode()),
    entry_like.map(lambda v: json.dumps(v).encode()),
)


@FUZZ
@given(
    method=st.sampled_from(["PUT", "PATCH"]),
    body=admin_body,
    version=st.sampled_from(["15.4.9", "15.5.0-nightly.20261127", "x", "15.4.9%00"]),
)
def test_any_admin_body_gets_no_5xx(fuzz_app: UpdateServer, method, body, version) -> None:
    status, _, answer = request(fuzz_app, method, f"/v1/channels/stable/releases/{version}",
                                headers=AUTH, body=body)  # fmt: skip
    assert status < 500, answer


def test_a_store_that_cannot_be_read_is_logged_once(store: Store, caplog) -> None:
    store.publish("stable", entry("15.4.0"))
    clock = _Clock()
    app = UpdateServer(store, token=TOKEN, channels=["stable"], poll_interval=1.0, clock=clock)
    path = store.path("stable")
    good = path.read_bytes()
    path.write_bytes(b"{not json")  # edited by hand, half-restored from a backup…
    query = b"version=15.3.0&channel=stable&platform=win64&install_id=a"
    statuses = []
    for _ in range(60):
        statuses.append(request(app, "GET", "/v1/check", query)[0])
        clock.now += 1.0
    assert set(statuses) == {200}  # what was loaded is still served, signed
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "not reloaded" in errors[0].getMessage()
    path.write_bytes(good)
    clock.now += 1.0
    request(app, "GET", "/v1/check", query)
    assert any("read again" in r.getMessage() for r in caplog.records)
