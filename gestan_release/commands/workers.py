"""`doctor`: every setting, where it comes from, and what this worker would take with it."""

from __future__ import annotations

import argparse
import json

from gestan_release.commands import add_format, command, settings_from


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "doctor", cmd_doctor)
    add_format(p, "table", "json")


def cmd_doctor(args: argparse.Namespace) -> int:
    """every setting, where it comes from, what a lost worker would take with it

    List every setting with its value and its source (environment, gestan-release.toml, Prefect
    Secret block, default), then what lives on this machine's disk and would be lost if it vanished
    (nothing, on a stateless worker). Secrets are never shown, only whether they are set. Secret
    blocks are looked up when PREFECT_API_URL is set."""
    from gestan_release.prefect.secrets import secret_blocks_present
    from gestan_release.release.workers import doctor_report
    from gestan_release.settings import Secret

    settings = settings_from(args)
    blocks = secret_blocks_present(settings)
    # A secret found in a block counts as set for what is lost; its value is never read here.
    settings = settings.replace(**{name: Secret("(in a Secret block)") for name in blocks})
    report = doctor_report(settings, blocks)
    if args.format == "json":
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False)
    table = Table(title="Settings", title_justify="left")
    for column in ("setting", "value", "source"):
        table.add_column(column, overflow="fold")
    for line in report["settings"]:
        table.add_row(line["name"], line["value"], line["source"])
    console.print(table)
    losses = report["lost_with_this_worker"]
    if not losses:
        console.print("If this worker vanished: nothing would be lost (stateless).")
        return 0
    table = Table(title="If this worker vanished, it would take with it", title_justify="left")
    for column in ("what", "where", "why it matters / what to do"):
        table.add_column(column, overflow="fold")
    for loss in losses:
        table.add_row(loss["what"], loss["where"], loss["advice"])
    console.print(table)
    return 0
