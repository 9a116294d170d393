"""Gestan's promises, measured (`gestan-release report`, the summary in `status`).

The promises, from the support page (seed/gestan-support.txt):
- **flash**: fixed as soon as possible, most often through a U sub-version; "une demande flash est
  toujours intégrée à la version suivante de Gestan": the first full version released after the
  acknowledgement must contain it — kept, *overridden* (`release --allow-missing`, with the
  reason recorded in the ledger) or broken;
- **haute**: "traitées en moyenne dans les 3 ou 4 versions suivantes": versions waited, from the
  acknowledgement to the first release with the fix (full versions released in between, plus the
  one that ships it); at risk from 3 versions waited while still open, late beyond 4;
- **normale / basse**: no delay is promised ("délais longs"): the backlog is what is measured.

`promise_facts.load_facts` reads the database once (tickets, forum reports, acknowledgements,
releases, their tickets, overrides); `measure`, here, is a pure function of those facts and the
time, so the figures are checked against a fixture computed by hand. Time counts from the
acknowledgement (the promise is made then); an open ticket's age counts from when it was reported
(the forum's date, else when it entered the store).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gestan_release.tickets.values import Priority

PARIS = "Europe/Paris"
HAUTE_PROMISED_VERSIONS = 4  # "en moyenne dans les 3 ou 4 versions suivantes"
HAUTE_AT_RISK_VERSIONS = 3
TREND_RELEASES = 20
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


# --------------------------------------------------------------------------------------------
# Facts
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TicketFact:
    id: int
    priority: Priority
    status: str
    reported_at: dt.datetime
    acked_at: dt.datetime | None = None
    title: str = ""


@dataclass(frozen=True)
class ReleaseFact:
    version: str
    kind: str  # full | u
    label: str
    released_at: dt.datetime
    tickets: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Facts:
    tickets: tuple[TicketFact, ...]
    releases: tuple[ReleaseFact, ...]  # released full and U versions, oldest first
    overrides: dict[tuple[str, int], str] = field(default_factory=dict)  # (version, id) → reason


# --------------------------------------------------------------------------------------------
# Support hours
# --------------------------------------------------------------------------------------------
def parse_support_hours(entries: Iterable[str]) -> list[tuple[set[int], dt.time, dt.time]]:
    """`SUPPORT_HOURS` entries like `mon-fri 08:00-19:00`, `sat 09:00-12:00`."""
    from gestan_release.errors import ConfigError

    windows = []
    for entry in entries:
        text = entry.strip().lower()
        if not text:
            continue
        try:
            days_text, hours_text = text.split()
            first, _, last = days_text.partition("-")
            a, b = _DAYS[first], _DAYS[last or first]
            days = set(range(a, b + 1)) if a <= b else set(range(a, 7)) | set(range(0, b + 1))
            begin, _, end = hours_text.partition("-")
            t0, t1 = dt.time.fromisoformat(begin), dt.time.fromisoformat(end)
            if t1 <= t0:
                raise ValueError
        except (KeyError, ValueError):
            raise ConfigError(
                f"SUPPORT_HOURS: {entry!r} is not like 'mon-fri 08:00-19:00'"
            ) from None
        windows.append((days, t0, t1))
    return windows


def support_minutes(
    start: dt.datetime, end: dt.datetime, windows: list[tuple[set[int], dt.time, dt.time]]
) -> float:
    """Minutes between `start` and `end` that fall in the support hours (Europe/Paris)."""
    from zoneinfo import ZoneInfo

    if end <= start:
        return 0.0
    paris = ZoneInfo(PARIS)
    a, b = start.astimezone(paris), end.astimezone(paris)
    total = 0.0
    day = a.date()
    while day <= b.date():
        for days, t0, t1 in windows:
            if day.weekday() not in days:
                continue
            w0 = dt.datetime.combine(day, t0, paris)
            w1 = dt.datetime.combine(day, t1, paris)
            lo, hi = max(a, w0), min(b, w1)
            if hi > lo:
                total += (hi - lo).total_seconds() / 60
        day += dt.timedelta(days=1)
    return total


# --------------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _p90(values: list[float]) -> float | None:
    """The 90th percentile, nearest rank (a value that occurred)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-9 * len(ordered) // 10))  # ceil(0.9 n)
    return ordered[rank - 1]


def _hours(delta: dt.timedelta) -> float:
    return delta.total_seconds() / 3600


@dataclass
class PriorityMeasure:
    priority: str
    open_count: int = 0
    open_age_days_median: float | None = None
    open_age_days_max: float | None = None
    shipped: int = 0
    ack_to_release_hours_median: float | None = None
    ack_to_release_hours_p90: float | None = None


@dataclass
class FlashPromise:
    ticket_id: int
    state: str  # kept | overridden | broken | pending
    version: str | None  # the next full version after the acknowledgement
    reason: str | None = None


@dataclass
class Promises:
    now: dt.datetime
    by_priority: dict[str, PriorityMeasure]
    flash_total_shipped: int = 0
    flash_in_u: int = 0
    flash_to_u_hours_median: float | None = None
    flash_promises: list[FlashPromise] = field(default_factory=list)
    flash_open_alerts: list[tuple[int, str, float]] = field(default_factory=list)
    haute_waited: list[tuple[int, int]] = field(default_factory=list)  # (id, versions) shipped
    haute_waited_mean: float | None = None
    haute_open_waiting: list[tuple[int, int]] = field(default_factory=list)  # (id, so far)
    backlog: dict[str, int] = field(default_factory=dict)  # normale / basse open
    trend: list[dict[str, Any]] = field(default_factory=list)
    releases: int = 0
    tickets: int = 0

    @property
    def flash_u_share(self) -> float | None:
        return self.flash_in_u / self.flash_total_shipped if self.flash_total_shipped else None

    def flash_counts(self) -> dict[str, int]:
        counts = {"kept": 0, "overridden": 0, "broken": 0, "pending": 0}
        for p in self.flash_promises:
            counts[p.state] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        """Kept / at risk / broken per promise: the one-screen summary of `status`."""
        flash = self.flash_counts()
        broken_flash = {p.ticket_id for p in self.flash_promises if p.state == "broken"}
        flash_risk = {tid for tid, _, _ in self.flash_open_alerts} | {
            p.ticket_id for p in self.flash_promises if p.state == "pending"
        }
        late = [(tid, n) for tid, n in self.haute_waited if n > HAUTE_PROMISED_VERSIONS]
        waiting_late = [
            (tid, n) for tid, n in self.haute_open_waiting if n > HAUTE_PROMISED_VERSIONS
        ]
        at_risk = [
            (tid, n)
            for tid, n in self.haute_open_waiting
            if HAUTE_AT_RISK_VERSIONS <= n <= HAUTE_PROMISED_VERSIONS
        ]
        return {
            "flash": {
                "kept": flash["kept"],
                "overridden": flash["overridden"],
                "at_risk": len(flash_risk - broken_flash),
                "broken": flash["broken"],
                "open_too_long": [
                    {"id": tid, "title": title, "support_minutes": round(minutes)}
                    for tid, title, minutes in self.flash_open_alerts
                ],
                "broken_ids": [p.ticket_id for p in self.flash_promises if p.state == "broken"],
            },
            "haute": {
                "kept": len(self.haute_waited) - len(late),
                "at_risk": len(at_risk),
                "broken": len(late) + len(waiting_late),
                "mean_versions": self.haute_waited_mean,
                "at_risk_ids": [tid for tid, _ in at_risk],
                "broken_ids": sorted(tid for tid, _ in late + waiting_late),
            },
            "backlog": dict(self.backlog),
        }


def measure(facts: Facts, *, now: dt.datetime, settings: Any = None) -> Promises:
    """Every figure of the report from `facts` at `now` (pure)."""
    windows = parse_support_hours(
        settings.support_hours if settings is not None else ("mon-sat 08:00-19:00",)
    )
    alert = settings.flash_alert_minutes if settings is not None else 60
    releases = list(facts.releases)
    first_release: dict[int, ReleaseFact] = {}
    for rel in releases:  # oldest first
        for tid in rel.tickets:
            first_release.setdefault(tid, rel)
    fulls = [rel for rel in releases if rel.kind == "full"]
    result = Promises(
        now=now,
        by_priority={p.value: PriorityMeasure(p.value) for p in Priority},
        releases=len(releases),
        tickets=len(facts.tickets),
    )
    ages: dict[str, list[float]] = {p.value: [] for p in Priority}
    delays: dict[str, list[float]] = {p.value: [] for p in Priority}
    to_u: list[float] = []
    for t in facts.tickets:
        p = t.priority.value
        m = result.by_priority[p]
        rel = first_release.get(t.id)
        if t.status != "released" and rel is None:
            m.open_count += 1
            ages[p].append((now - t.reported_at).total_seconds() / 86400)
        if rel is not None:
            m.shipped += 1
            if t.acked_at is not None and rel.released_at >= t.acked_at:
                delays[p].append(_hours(rel.released_at - t.acked_at))
        if t.priority is Priority.FLASH:
            _flash(t, rel, fulls, facts, result, to_u, windows, alert, now)
        elif t.priority is Priority.HAUTE and t.acked_at is not None:
            end = rel.released_at if rel is not None else now
            waited = sum(1 for f in fulls if t.acked_at < f.released_at < end)
            if rel is not None:
                result.haute_waited.append((t.id, waited + 1))
            else:
                result.haute_open_waiting.append((t.id, waited))
    for p, m in result.by_priority.items():
        m.open_age_days_median = _median(ages[p])
        m.open_age_days_max = max(ages[p]) if ages[p] else None
        m.ack_to_release_hours_median = _median(delays[p])
        m.ack_to_release_hours_p90 = _p90(delays[p])
    result.flash_to_u_hours_median = _median(to_u)
    if result.haute_waited:
        result.haute_waited_mean = statistics.fmean(n for _, n in result.haute_waited)
    result.backlog = {
        p: result.by_priority[p].open_count for p in (Priority.NORMALE.value, Priority.BASSE.value)
    }
    result.trend = _trend(facts, releases, first_release)
    return result


def _flash(
    t: TicketFact,
    rel: ReleaseFact | None,
    fulls: list[ReleaseFact],
    facts: Facts,
    result: Promises,
    to_u: list[float],
    windows: list[tuple[set[int], dt.time, dt.time]],
    alert: int,
    now: dt.datetime,
) -> None:
    if rel is not None:
        result.flash_total_shipped += 1
        if rel.kind == "u":
            result.flash_in_u += 1
            if t.acked_at is not None and rel.released_at >= t.acked_at:
                to_u.append(_hours(rel.released_at - t.acked_at))
    elif t.status != "released":
        minutes = support_minutes(t.acked_at or t.reported_at, now, windows)
        if minutes > alert:
            result.flash_open_alerts.append((t.id, t.title, minutes))
    if t.acked_at is None:
        return
    nxt = next((f for f in fulls if f.released_at > t.acked_at), None)
    if nxt is None:
        result.flash_promises.append(FlashPromise(t.id, "pending", None))
    elif t.id in nxt.tickets:
        result.flash_promises.append(FlashPromise(t.id, "kept", nxt.label))
    elif (nxt.version, t.id) in facts.overrides:
        reason = facts.overrides[(nxt.version, t.id)]
        result.flash_promises.append(FlashPromise(t.id, "overridden", nxt.label, reason))
    else:
        result.flash_promises.append(FlashPromise(t.id, "broken", nxt.label))


def _trend(
    facts: Facts, releases: list[ReleaseFact], first_release: dict[int, ReleaseFact]
) -> list[dict[str, Any]]:
    """Per recent release: tickets first shipped there by priority, median ack → release."""
    tickets = {t.id: t for t in facts.tickets}
    rows = []
    for rel in releases[-TREND_RELEASES:]:
        counts = {p.value: 0 for p in Priority}
        hours = []
        for tid in rel.tickets:
            t = tickets.get(tid)
            if t is None or first_release.get(tid) is not rel:
                continue
            counts[t.priority.value] += 1
            if t.acked_at is not None and rel.released_at >= t.acked_at:
                hours.append(_hours(rel.released_at - t.acked_at))
        rows.append(
            {
                "version": rel.version,
                "label": rel.label,
                "kind": rel.kind,
                "date": rel.released_at,
                "counts": counts,
                "median_hours": _median(hours),
            }
        )
    return rows
