"""How a release run ended, as plain data: what the flows return, what `--format json` prints,
what decides the exit code. Built from the plan, the step results and the ledger."""

from __future__ import annotations

from typing import Any

RELEASED, INCOMPLETE, DRY_RUN = "released", "incomplete", "dry_run"


def published(ledger: Any, plan: Any) -> bool:
    """The version reached the update endpoint of its channel: installs can take it."""
    d = ledger.delivery(f"updates:{plan.channel}:{plan.version}")
    return d is not None and d.finished


def of_release(
    ledger: Any, plan: Any, results: list[Any], complete: bool, summary: str
) -> dict[str, Any]:
    """The result of `ship`: the plan's identity, per-step counts, what is left, the summary."""
    left = ledger.deliveries(plan.version, undone=True)
    return {
        **_identity(plan),
        "state": RELEASED if complete else INCOMPLETE,
        "published": published(ledger, plan),
        "steps": [
            {
                "step": r.step,
                "done": r.done,
                "already_done": r.skipped,
                "pending_approval": r.pending_approval,
                "failed": len(r.failed),
            }
            for r in results
        ],
        "left": [
            {
                "key": d.key,
                "channel": d.channel,
                "state": d.state,
                "attempts": d.attempts,
                "error": d.last_error,
            }
            for d in left
        ],
        "summary": summary,
    }


def of_dry_run(plan: Any, preview: str, warnings: list[str]) -> dict[str, Any]:
    return {
        **_identity(plan),
        "state": DRY_RUN,
        "published": False,
        "warnings": list(warnings),
        "dry_run": preview,
    }


def _identity(plan: Any) -> dict[str, Any]:
    return {
        "version": plan.version,
        "label": plan.label,
        "tag": plan.tag,
        "kind": plan.kind,
        "branch": str(plan.branch),
        "commit": plan.commit,
        "previous": plan.previous,
        "tickets": len(plan.ticket_ids),
        "warnings": list(plan.warnings),
    }
