"""Every side effect goes through the ledger, once.

A delivery is marked `sending` before it acts and `done` after, so a re-run skips what was done
and, for what a crash left `sending` (or `failed` after an answer that never came), asks the
channel whether it went out before acting again (`Sender.find_existing`). `once` runs one action
(a tag, a build, a publication); `deliver` sends messages through a channel's sender.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gestan_release.channels.base import Message, Receipt, Sender, send_many
from gestan_release.core.progress import NULL, Progress
from gestan_release.errors import DeliveryError, GestanReleaseError
from gestan_release.release.plan import Plan

if TYPE_CHECKING:
    from gestan_release.store.delivery_book import Delivery, DeliveryState


class Scope(Protocol):
    """What deliveries are recorded under: a release (`Plan`), or the intake's scope (acks)."""

    @property
    def version(self) -> str: ...


class DeliveryLedger(Protocol):
    """What `once` and `deliver` need of the ledger (`store.ledger.Ledger` has it)."""

    def start_release(self, **fields: Any) -> Any: ...

    def delivery(self, key: str) -> Delivery | None: ...

    def deliveries_by_key(self, version: str) -> dict[str, Delivery]: ...

    def mark_sending(self, key: str, version: str, channel: str) -> None: ...

    def mark_sending_many(self, keys: list[str], version: str, channel: str) -> None: ...

    def mark_done(
        self,
        key: str,
        external_id: str | None = None,
        url: str | None = None,
        state: DeliveryState = ...,
    ) -> None: ...

    def mark_failed(self, key: str, error: str) -> None: ...


@dataclass
class StepResult:
    step: str
    done: int = 0
    skipped: int = 0
    pending_approval: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    retryable: int = 0  # failures that may go through next time (5xx, timeouts, 4yz)

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        parts = [f"{self.done} done"]
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        if self.pending_approval:
            parts.append(f"{self.pending_approval} awaiting moderation")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return f"{self.step}: " + ", ".join(parts)


def record_start(ledger: DeliveryLedger, plan: Plan) -> None:
    """The release row, its tickets and overrides (idempotent)."""
    ledger.start_release(
        version=plan.version,
        kind=plan.kind,
        label=plan.label,
        tag=plan.tag,
        channel=plan.channel,
        previous_version=plan.previous,
        plan=plan.to_json(),
        tickets=[
            (t["id"], t["priority"], plan.already_in.get(t["id"]), True)
            for t in plan.changelog["tickets"]
        ]
        + [(tid, None, None, False) for tid in plan.changelog["unknown"]],
        overrides=[(tid, "flash-in-next-full", r) for tid, r in plan.allow_missing.items()],
    )


def once(
    ledger: DeliveryLedger,
    plan: Scope,
    key: str,
    channel: str,
    action: Callable[[], tuple[str | None, str | None]],
    result: StepResult,
) -> Any:
    """Run one side effect unless the ledger says it is done; `action` must itself be safe to
    repeat after a crash (it checks the world first). Failures are recorded and re-raised."""
    existing = ledger.delivery(key)
    if existing is not None and existing.finished:
        result.skipped += 1
        return existing
    ledger.mark_sending(key, plan.version, channel)
    try:
        external_id, url = action()
    except GestanReleaseError as exc:
        ledger.mark_failed(key, str(exc))
        result.failed.append((key, str(exc)))
        if isinstance(exc, DeliveryError) and not exc.permanent:
            result.retryable += 1
        raise
    ledger.mark_done(key, external_id, url)
    result.done += 1
    return ledger.delivery(key)


def deliver(
    ledger: DeliveryLedger,
    plan: Scope,
    sender: Sender,
    messages: list[Message],
    channel: str,
    result: StepResult,
    progress: Progress = NULL,
) -> dict[str, Delivery | Receipt]:
    """Send each message once: skip what the ledger has done; for what was tried before and may
    have gone out (left `sending` by a crash, or `failed` after an answer that never came),
    ask the channel first; record every outcome. One failure never stops the others."""
    from gestan_release.store.delivery_book import DeliveryState

    # key → Delivery (done before) or Receipt (done now)
    receipts: dict[str, Delivery | Receipt] = {}
    to_send = []
    known = ledger.deliveries_by_key(plan.version) if messages else {}
    for message in messages:
        d = known.get(message.key)
        if d is not None and d.finished:
            result.skipped += 1
            receipts[message.key] = d
            continue
        if d is not None and d.state in (DeliveryState.SENDING, DeliveryState.FAILED):
            # A POST that timed out may have been applied even when the retries then failed.
            try:
                found = sender.find_existing(message)
            except Exception as exc:
                # Sending blind could make a duplicate: leave it for the next resume.
                error = f"could not check whether it already went out, not sent again: {exc}"
                ledger.mark_failed(message.key, error)
                result.failed.append((message.key, error))
                continue
            if found is not None:
                receipts[message.key] = _record(ledger, message.key, found, result)
                continue
        to_send.append(message)

    def before(message: Message) -> None:
        ledger.mark_sending(message.key, plan.version, channel)

    if getattr(sender, "send_many", None) is not None and len(to_send) > 1:
        # A batch sender (SMTP) goes faster than a commit per message: record the whole batch
        # as sending first, in one transaction. A crash then leaves the unsent ones `sending`,
        # which a re-run sends (after asking the channel, as for any `sending` delivery).
        ledger.mark_sending_many([m.key for m in to_send], plan.version, channel)
        before = None  # type: ignore[assignment]

    bar = progress.track(channel, len(to_send))
    for message, outcome in send_many(sender, to_send, before):
        bar.advance(failed=isinstance(outcome, DeliveryError))
        if isinstance(outcome, DeliveryError):
            ledger.mark_failed(message.key, str(outcome))
            result.failed.append((message.key, str(outcome)))
            if not outcome.permanent:
                result.retryable += 1
        else:
            receipts[message.key] = _record(ledger, message.key, outcome, result)
    bar.close()
    return receipts


def _record(ledger: DeliveryLedger, key: str, receipt: Receipt, result: StepResult) -> Receipt:
    """A delivery that went out (now, or before a crash): done, or awaiting moderation."""
    from gestan_release.store.delivery_book import DeliveryState

    if receipt.state == "pending_approval":
        ledger.mark_done(key, receipt.external_id, receipt.url, DeliveryState.PENDING_APPROVAL)
        result.pending_approval += 1
    else:
        ledger.mark_done(key, receipt.external_id, receipt.url, DeliveryState.DONE)
        result.done += 1
    return receipt
