"""The one small seam between the pipeline and the outside world (cf. httpx's transports).

The pipeline *builds* messages (pure functions of the release, `release.messages`) and hands
each to a *sender*; the outbox is just another sender. Every message carries its ledger key, so the
pipeline can record a delivery before and after sending and skip what is already done.

A sender:
- `send(message) -> Receipt`: deliver once; raise `DeliveryError(permanent=...)` on failure
  (transient failures are retried inside the sender with backoff before giving up). Any other
  exception while building or sending one message is that message's permanent failure
  (`unexpected_failure`): one bad record never stops the batch;
- `find_existing(message) -> Receipt | None`: after a crash left a delivery "sending" with no
  result, look whether it actually went out (a marker on the forum, the account's recent posts on
  X, the file in the outbox) before sending again;
- `close()`: release connections.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from gestan_release.errors import DeliveryError

ReceiptState = Literal["done", "pending_approval"]


@dataclass(frozen=True)
class Receipt:
    """What a channel says after a delivery: its id there, a URL, or that it awaits moderation."""

    external_id: str | None = None
    url: str | None = None
    state: ReceiptState = "done"
    detail: str | None = None


@dataclass(frozen=True)
class Post:
    """An announcement on X (or another short-message network)."""

    key: str  # ledger key, e.g. "x:15.4.1"
    text: str
    marker: str  # release id that identifies our own post, e.g. "15.4.1"


@dataclass(frozen=True)
class ForumTopic:
    """The changelog as a new discussion in the "Nouvelles versions" category."""

    key: str  # "forum:15.4.1"
    title: str
    body: str  # markdown; may be split into a topic and follow-up comments by the sender
    category: str  # url code (e.g. "nouvelles-versions") or a numeric id as text
    marker: str  # hidden marker in the body, e.g. "<!-- gestan-release:15.4.1 -->"


@dataclass(frozen=True)
class ForumComment:
    """A reply on a fixed ticket's own forum discussion."""

    key: str  # "forum:15.4.1:ticket:3226"
    discussion_id: int
    body: str  # markdown
    marker: str


@dataclass(frozen=True)
class Mail:
    """One "your bug is fixed" mail to one reporter (all their tickets of the release)."""

    key: str  # "mail:15.4.1:alice@example.com"
    to_name: str
    to_email: str
    subject: str
    text: str
    html: str
    message_id: str  # deterministic per (release, recipient), without angle brackets
    in_reply_to: str | None = None  # Message-ID of the acknowledgement mail, when known
    ticket_ids: tuple[int, ...] = field(default=())


Message = Post | ForumTopic | ForumComment | Mail


@runtime_checkable
class Sender(Protocol):
    name: str

    def send(self, message: Message) -> Receipt: ...

    def find_existing(self, message: Message) -> Receipt | None: ...

    def close(self) -> None: ...


def send_many(
    sender: Sender,
    messages: list[Message],
    before: Callable[[Message], None] | None = None,
) -> Iterator[tuple[Message, Receipt | DeliveryError]]:
    """Send a batch, yielding each message with its receipt or its failure; one failure does not
    stop the others. Senders with a faster batch path (one SMTP connection, a few in parallel)
    provide their own `send_many(messages, before)` with the same contract."""
    own = getattr(sender, "send_many", None)
    if own is not None:
        yield from own(messages, before)
        return
    for message in messages:
        if before is not None:
            before(message)
        try:
            yield message, sender.send(message)
        except DeliveryError as exc:
            yield message, exc
        except Exception as exc:  # one bad message fails alone, for good: never the batch
            yield message, unexpected_failure(message, exc)


def unexpected_failure(message: Message, exc: Exception) -> DeliveryError:
    """A permanent `DeliveryError` for an exception that is not one while building or sending
    `message` (a library choking on its data): recorded with its reason, the others go on."""
    from gestan_release.core.scrub import scrub
    from gestan_release.core.validation import excerpt

    return DeliveryError(
        f"{message.key} could not be built or sent ({type(exc).__name__}: "
        f"{excerpt(scrub(str(exc)), 200)})",
        permanent=True,
    )


class Closing(ABC):
    """A client to close after use, as a context manager."""

    @abstractmethod
    def close(self) -> None:
        """Release the connections (idempotent)."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
