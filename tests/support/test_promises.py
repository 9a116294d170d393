"""The promises report on a fixture ledger whose figures were computed by hand (comments), the
HTML opened in headless Chromium (Debian's `chromium`) with a screenshot, and the support hours."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from gestan_release.settings import Settings
from gestan_release.store import db
from gestan_release.store.ledger import Ledger
from gestan_release.support.intake_store import IntakeStore
from gestan_release.support.promise_facts import load_facts
from gestan_release.support.promises import measure, parse_support_hours, support_minutes
from gestan_release.support.report import write_report
from gestan_release.tickets.store import TicketStore
from gestan_release.tickets.values import Priority, Ticket

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # a Monday, 13:00 in Paris


def at(month: int, day: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=UTC)


# (id, priority, status, reported, acked)
TICKETS = [
    (1, "flash", "released", at(11, 4, 9), at(11, 4)),  # U 15.4.1 after 24 h; in 15.5: kept
    (2, "flash", "released", at(11, 8, 9), at(11, 8)),  # 15.5 after 48 h: kept
    (
        3,
        "flash",
        "released",
        at(11, 11, 9),
        at(11, 11),
    ),  # U 15.5.1 after 24 h; not in 15.6: overridden
    (4, "flash", "open", at(11, 30, 7, 30), at(11, 30, 8)),  # 4 support hours open; no full yet
    (5, "flash", "open", at(11, 21, 9), at(11, 21)),  # 15.7 came out without it: broken
    (10, "haute", "released", at(10, 31), at(11, 1)),  # 15.5: 1 full between (15.4) + 1 = 2
    (11, "haute", "released", at(10, 19), at(10, 20)),  # 15.6: 15.4, 15.5 between → 3
    (12, "haute", "released", at(8, 30), at(9, 1)),  # 15.7: 15.3 15.4 15.5 15.6 → 5 (late)
    (13, "haute", "open", at(10, 29), at(10, 30)),  # 4 fulls since: at risk
    (14, "haute", "open", at(11, 14), at(11, 15)),  # 2 fulls since
    (20, "normale", "released", at(10, 31), at(11, 1)),  # 15.6 after 19 days = 456 h
    (21, "normale", "open", at(10, 31, 12), None),  # 30 days old
    (22, "normale", "open", at(11, 29, 12), None),  # 1 day old
    (30, "basse", "open", at(11, 20, 12), None),  # 10 days old
]
# (version, kind, released, tickets, overrides)
RELEASES = [
    ("15.3.0", "full", at(9, 15), [], []),
    ("15.4.0", "full", at(11, 2), [], []),
    ("15.4.1", "u", at(11, 5), [1], []),
    ("15.5.0", "full", at(11, 10), [1, 2, 10], []),
    ("15.5.1", "u", at(11, 12), [3], []),
    ("15.6.0", "full", at(11, 20), [11, 20], [(3, "revert : régression de la remise")]),
    ("15.7.0", "full", at(11, 25), [12], []),
]


@pytest.fixture(autouse=True)
def _fresh_engines():
    yield
    db.dispose_all()


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'gestan.db'}"
    tickets, store, ledger = TicketStore(url), IntakeStore(url), Ledger(url)
    engine = db.engine_for(url)
    for tid, prio, status, reported, acked in TICKETS:
        tickets.add(
            Ticket(tid, f"Bug {tid} <i>", Priority(prio), "R", f"r{tid}@example.com", status=status)
        )
        if acked is not None:
            store.record_ack(tid, Priority(prio), f"ack.{tid}@gestan.test")
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE tickets SET created_at = :t WHERE id = :i"),
                {"t": reported, "i": tid},
            )
            conn.execute(
                sa.text("UPDATE ticket_acks SET acked_at = :t WHERE ticket_id = :i"),
                {"t": acked, "i": tid},
            )
    for version, kind, released, ids, overrides in RELEASES:
        ledger.start_release(
            version=version,
            kind=kind,
            label=version,
            tag=f"v{version}",
            channel="stable",
            previous_version=None,
            plan={},
            tickets=[(i, None, None, True) for i in ids],
            overrides=[(i, "flash-in-next-full", r) for i, r in overrides],
        )
        ledger.finish_release(version, True)
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE releases SET finished_at = :t WHERE version = :v"),
                {"t": released, "v": version},
            )
    # A nightly and an unfinished release are not releases that ship fixes.
    ledger.start_release(
        version="15.8.0-nightly.20261130",
        kind="nightly",
        label="n",
        tag=None,
        channel="nightly",
        previous_version=None,
        plan={},
        tickets=[(22, None, None, True)],
    )
    ledger.finish_release("15.8.0-nightly.20261130", True)
    return url


def test_the_figures_match_the_fixture_computed_by_hand(ledger_url):
    p = measure(load_facts(ledger_url), now=NOW, settings=Settings())
    m = p.by_priority
    assert [m[x].open_count for x in ("flash", "haute", "normale", "basse")] == [2, 2, 2, 1]
    # flash ack → first release: 24, 48, 24 h
    assert m["flash"].ack_to_release_hours_median == 24
    assert m["flash"].ack_to_release_hours_p90 == 48
    assert (p.flash_in_u, p.flash_total_shipped, p.flash_to_u_hours_median) == (2, 3, 24)
    assert p.flash_counts() == {"kept": 2, "overridden": 1, "broken": 1, "pending": 1}
    [over] = [f for f in p.flash_promises if f.state == "overridden"]
    assert (over.ticket_id, over.version, over.reason) == (
        3,
        "15.6.0",
        "revert : régression de la remise",
    )
    # open flash #4: acked 09:00 Paris, now 13:00 Paris on a Monday = 240 support minutes
    alerts = {tid: minutes for tid, _, minutes in p.flash_open_alerts}
    assert alerts[4] == 240
    assert m["flash"].open_age_days_median == pytest.approx((0.1875 + 9.125) / 2)
    # haute: 216 h, 744 h, 2040 h; versions waited 2, 3, 5
    assert m["haute"].ack_to_release_hours_median == 744
    assert m["haute"].ack_to_release_hours_p90 == 2040
    assert sorted(p.haute_waited) == [(10, 2), (11, 3), (12, 5)]
    assert p.haute_waited_mean == pytest.approx(10 / 3)
    assert sorted(p.haute_open_waiting) == [(13, 4), (14, 2)]
    # normale: 456 h; open 30 and 1 days old
    assert m["normale"].ack_to_release_hours_median == 456
    assert m["normale"].open_age_days_median == 15.5 and m["normale"].open_age_days_max == 30
    assert p.backlog == {"normale": 2, "basse": 1}
    s = p.summary()
    assert (s["flash"]["kept"], s["flash"]["at_risk"], s["flash"]["broken"]) == (2, 1, 1)
    assert s["flash"]["broken_ids"] == [5]
    assert (s["haute"]["kept"], s["haute"]["at_risk"], s["haute"]["broken"]) == (2, 1, 1)
    assert s["haute"]["at_risk_ids"] == [13] and s["haute"]["broken_ids"] == [12]
    # trend: first shipped in each release, median ack → release
    trend = {row["version"]: row for row in p.trend}
    assert [row["version"] for row in p.trend] == [r[0] for r in RELEASES]
    assert trend["15.5.0"]["counts"] == {"flash": 1, "haute": 1, "normale": 0, "basse": 0}
    assert trend["15.5.0"]["median_hours"] == 132  # #2 48 h, #10 216 h
    assert trend["15.6.0"]["median_hours"] == 600  # #11 744 h, #20 456 h


def test_since_limits_the_tickets(ledger_url):
    facts = load_facts(ledger_url, since=dt.date(2026, 11, 15))
    assert sorted(t.id for t in facts.tickets) == [4, 5, 14, 22, 30]


def test_a_missing_database_gives_an_empty_report(tmp_path):
    facts = load_facts(f"sqlite:///{tmp_path / 'none.db'}")
    assert facts.tickets == () and not (tmp_path / "none.db").exists()
    p = measure(facts, now=NOW)
    assert p.summary()["flash"]["kept"] == 0
    out = write_report(p, tmp_path / "empty.html")
    assert "<svg" in out.read_text(encoding="utf-8")


def test_support_minutes_count_only_support_hours():
    windows = parse_support_hours(("mon-fri 08:00-19:00", "sat 09:00-12:00"))
    friday_evening = dt.datetime(2026, 11, 27, 17, 0, tzinfo=UTC)  # 18:00 Paris
    monday_morning = dt.datetime(2026, 11, 30, 8, 30, tzinfo=UTC)  # 09:30 Paris
    # Friday 18:00-19:00 (60) + Saturday 09:00-12:00 (180) + Monday 08:00-09:30 (90)
    assert support_minutes(friday_evening, monday_morning, windows) == 330
    assert support_minutes(monday_morning, friday_evening, windows) == 0
    with pytest.raises(Exception, match="SUPPORT_HOURS"):
        parse_support_hours(("lundi 8h-19h",))


CHROMIUM = shutil.which("chromium")


# On CI (.ci/run installs chromium) a missing browser fails the test instead of skipping it.
@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)",
)
def test_the_report_opens_in_headless_chromium_offline(ledger_url, tmp_path):
    assert CHROMIUM is not None, "chromium is missing: .ci/run installs Debian's package"
    p = measure(load_facts(ledger_url), now=NOW, settings=Settings())
    out = write_report(p, tmp_path / "report.html")
    html = out.read_text(encoding="utf-8")
    # Self-contained: no script, no stylesheet or image fetched from anywhere.
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert html.count("<svg") == 5
    assert "Bug 4 &lt;i&gt;" in html  # ticket titles escaped
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # The figures of the fixture, as the browser laid them out.
    assert re.search(r'id="flash-kept">2<', dom)
    assert re.search(r'id="flash-broken">1<', dom)
    assert re.search(r'id="haute-mean">3,33<', dom)
    assert re.search(r'<tr id="row-haute"><td>haute</td><td class="open">2</td>', dom)
    assert re.search(r'class="median">744,0 h<', dom)
    assert "revert : régression de la remise" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *flags, "--window-size=1280,2400", f"--screenshot={shot}", out.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] == 2400 and pixels.shape[1] == 1280
    # Not a blank page: the charts' colours are there (flash red, haute orange).
    rgb = (pixels[..., :3] * 255).round().astype(int).reshape(-1, 3)
    colours = {tuple(c) for c in rgb[::7]}
    assert (0xC0, 0x39, 0x2B) in colours and (0xE6, 0x7E, 0x22) in colours


def test_status_shows_the_promises(git_repo, ledger_url, monkeypatch):
    from gestan_release.settings import load
    from gestan_release.support.status import status

    git_repo.commit("Premier commit")
    monkeypatch.setenv("GESTAN_RELEASE_DATABASE_URL", ledger_url)
    data = status(load(git_repo.path))
    flash = data["promises"]["flash"]
    assert flash["broken"] == 1 and flash["kept"] == 2 and flash["overridden"] == 1
    # #5 has been open for days of support time (#4 depends on today's clock)
    assert 5 in {t["id"] for t in flash["open_too_long"]}
    assert data["promises"]["backlog"] == {"normale": 2, "basse": 1}
