"""The promises report as one self-contained HTML file (`gestan-release report`).

Charts are drawn by matplotlib as SVG and written inline: the file needs no network, no CDN and
no JavaScript to open (in a browser, a mail, an archive), prints well and stays small. matplotlib
is the maintained, standard Python plotting library and renders offline; plotly would need its
~3.5 MB JavaScript bundle inlined in every report for charts that do not need to be interactive.
It is imported only here (it costs ~0.5 s), never by the other commands.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from gestan_release.support.promises import HAUTE_PROMISED_VERSIONS, Promises
from gestan_release.tickets.values import Priority

COLORS = {"flash": "#c0392b", "haute": "#e67e22", "normale": "#2980b9", "basse": "#7f8c8d"}
_SVG_HEAD = re.compile(r"^.*?(?=<svg)", re.DOTALL)


class _Figures:
    """matplotlib's object API without pyplot (pyplot alone costs ~0.6 s to import and keeps
    global state); fixed margins rather than a layout engine, which would draw each figure twice
    (3 x slower)."""

    def __init__(self) -> None:
        import matplotlib

        matplotlib.rcParams.update(
            {
                "svg.fonttype": "none",  # text stays text: smaller, searchable, selectable
                "svg.hashsalt": "gestan-release",  # same data, same file
                "font.size": 9,
                "axes.spines.top": False,
                "axes.spines.right": False,
            }
        )
        from matplotlib.figure import Figure

        self._figure = Figure

    def subplots(
        self, figsize: tuple[float, float], margins: tuple[float, float, float, float]
    ) -> tuple[Any, Any]:
        """A figure of `figsize` inches with one axes; `margins` = left, bottom, right, top."""
        fig = self._figure(figsize=figsize)
        left, bottom, right, top = margins
        fig.subplots_adjust(left=left, bottom=bottom, right=right, top=top)
        return fig, fig.subplots()


def _svg(fig: Any, title: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = _SVG_HEAD.sub("", buf.getvalue(), count=1)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{title}" ', 1)


def charts(p: Promises) -> dict[str, str]:
    """The report's charts as inline SVG strings."""
    plt = _Figures()
    from matplotlib.ticker import MaxNLocator

    integer = MaxNLocator(integer=True)
    prios = [x.value for x in Priority]
    out: dict[str, str] = {}

    fig, ax = plt.subplots((5.2, 2.6), (0.12, 0.12, 0.98, 0.88))
    counts = [p.by_priority[x].open_count for x in prios]
    bars = ax.bar(prios, counts, color=[COLORS[x] for x in prios])
    ax.bar_label(bars)
    ax.yaxis.set_major_locator(integer)
    ax.set_ylabel("tickets ouverts")
    ax.set_title("Tickets ouverts par priorité")
    out["open"] = _svg(fig, "Tickets ouverts par priorité")

    fig, ax = plt.subplots((5.2, 2.6), (0.12, 0.12, 0.98, 0.88))
    med = [p.by_priority[x].ack_to_release_hours_median or 0 for x in prios]
    p90 = [p.by_priority[x].ack_to_release_hours_p90 or 0 for x in prios]
    xs = range(len(prios))
    ax.bar([i - 0.2 for i in xs], [h / 24 for h in med], 0.4, label="médiane", color="#34495e")
    ax.bar([i + 0.2 for i in xs], [h / 24 for h in p90], 0.4, label="p90", color="#95a5a6")
    ax.set_xticks(list(xs), prios)
    ax.set_ylabel("jours")
    ax.set_title("Prise en compte → première version corrigée")
    ax.legend(frameon=False)
    out["delay"] = _svg(fig, "Délai de la prise en compte à la correction")

    fig, ax = plt.subplots((5.2, 2.4), (0.2, 0.12, 0.95, 0.87))
    flash = p.flash_counts()
    labels = ["tenue", "dérogation", "rompue", "en attente"]
    values = [flash["kept"], flash["overridden"], flash["broken"], flash["pending"]]
    bars = ax.barh(labels, values, color=["#27ae60", "#f1c40f", "#c0392b", "#bdc3c7"])
    ax.bar_label(bars)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Flash : « toujours dans la version suivante »")
    out["flash"] = _svg(fig, "Flash : toujours dans la version suivante")

    fig, ax = plt.subplots((5.2, 2.6), (0.12, 0.17, 0.98, 0.88))
    waited = [n for _, n in p.haute_waited]
    if waited:
        top = max(max(waited), HAUTE_PROMISED_VERSIONS + 1)
        ax.hist(waited, bins=[x + 0.5 for x in range(top + 1)], color=COLORS["haute"], rwidth=0.8)
    ax.axvline(HAUTE_PROMISED_VERSIONS + 0.5, color="#c0392b", linestyle="--", linewidth=1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("versions attendues")
    ax.set_ylabel("tickets")
    ax.set_title("Haute : versions attendues (promesse : 3 ou 4 en moyenne)")
    out["haute"] = _svg(fig, "Haute : versions attendues")

    fig, ax = plt.subplots((8.5, 3.2), (0.08, 0.25, 0.9, 0.9))
    trend = p.trend
    labels = [row["label"] for row in trend]
    bottom = [0] * len(trend)
    for x in prios:
        values = [row["counts"][x] for row in trend]
        ax.bar(labels, values, bottom=bottom, color=COLORS[x], label=x)
        bottom = [a + b for a, b in zip(bottom, values, strict=True)]
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max([*bottom, 1]) * 1.35)  # room for the legend
    ax.set_ylabel("tickets corrigés")
    ax.tick_params(axis="x", rotation=60)
    ax.legend(frameon=False, ncols=4, loc="upper left")
    ax.set_title("Tendance sur les dernières versions")
    if trend:
        ax2 = ax.twinx()
        days = [(row["median_hours"] or 0) / 24 for row in trend]
        ax2.plot(labels, days, color="#2c3e50", marker="o", linewidth=1)
        ax2.set_ylabel("délai médian (jours)")
        ax2.spines["top"].set_visible(False)
    out["trend"] = _svg(fig, "Tendance sur les dernières versions")
    return out


def render_report(p: Promises) -> str:
    from gestan_release.text.templating import render_template

    return render_template(
        "report.html.j2",
        p=p,
        charts=charts(p),
        summary=p.summary(),
        priorities=[x.value for x in Priority],
        promised=HAUTE_PROMISED_VERSIONS,
        num=_num,
    )


def write_report(p: Promises, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render_report(p), encoding="utf-8")
    tmp.replace(out)
    return out


def _num(value: float | None, digits: int = 1, unit: str = "") -> str:
    """A French-formatted figure ("12,5 h"), or an em dash when there is none."""
    if value is None:
        return "—"
    text = f"{value:.{digits}f}".replace(".", ",")
    return f"{text} {unit}".strip()


def report_markdown(p: Promises, path: Path) -> str:
    """The promises in brief, as markdown (the nightly flow's artifact)."""
    from gestan_release.text.templating import render_template

    return render_template("report_summary.md.j2", p=p, summary=p.summary(), path=path, num=_num)


def nightly_report(settings: Any, now: Any = None) -> tuple[Path, str]:
    """Write today's report under `<STATE_DIR>/reports/` and return it with its summary."""
    import datetime as dt

    from gestan_release.support.promise_facts import load_facts
    from gestan_release.support.promises import measure

    now = now or dt.datetime.now(dt.UTC)
    promises = measure(load_facts(settings.database_url), now=now, settings=settings)
    out = write_report(promises, settings.state_dir / "reports" / f"promesses-{now:%Y-%m-%d}.html")
    return out, report_markdown(promises, out)
