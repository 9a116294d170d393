"""The embedded default: senders that write what would leave the machine into `OUTBOX_DIR`.

- `mail/` is a Maildir (tmp/ new/ cur/) of real RFC 5322 messages a mail client can open;
- `x/` and `forum/` hold one JSON file per post: the exact request the real channel would send.

File names are derived from the message (its Message-ID, its ledger key), files are written to a
temporary name and then linked into place, so a file is there whole or not at all, `find_existing`
is a file check, and sending the same message twice never writes a second file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Literal

from gestan_release.channels.base import (
    ForumComment,
    ForumTopic,
    Mail,
    Message,
    Post,
    Receipt,
    Sender,
)
from gestan_release.channels.mailmsg import address, as_bytes, build_email
from gestan_release.errors import DeliveryError

DEFAULT_MAIL_FROM = "Support Gestan <support@gestan.fr>"
PostChannel = Literal["x", "forum"]
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@=+-]")


def safe_file_name(text: str, *, keep: str = "") -> str:
    """A file name from `text`: unsafe characters become "_"; when anything but the characters in
    `keep` had to be replaced, a short hash of `text` keeps distinct texts distinct."""
    name = _UNSAFE_NAME.sub("_", text)
    if set(_UNSAFE_NAME.findall(text)) - set(keep) or not name or name.startswith("."):
        name = name.lstrip(".") + "." + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return name


def _private_dir(path: Path) -> None:
    """Create `path` (and missing parents) for its owner only: mails name and address people."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _write_once(final: Path, data: bytes, tmp_dir: Path) -> bool:
    """Write `data` at `final` atomically unless a file is already there; True if written. The
    file is readable by its owner only (0600)."""
    _private_dir(tmp_dir)
    _private_dir(final.parent)
    tmp = tmp_dir / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            # link() never replaces an existing file: of two concurrent sends, one wins.
            os.link(tmp, final)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            if final.exists():
                return False
            os.replace(tmp, final)
        return True
    finally:
        tmp.unlink(missing_ok=True)


class MaildirOutbox:
    """Mail into a Maildir: one file per (release, recipient), named after its Message-ID."""

    name = "mail"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        mail_from: str = DEFAULT_MAIL_FROM,
        reply_to: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        address(mail_from, "MAIL_FROM")  # fail at start-up, not at the first mail
        if reply_to:
            address(reply_to, "MAIL_REPLY_TO")
        self.mail_from = mail_from
        self.reply_to = reply_to

    def file_name(self, mail: Mail) -> str:
        return safe_file_name(mail.message_id)

    def find_existing(self, message: Message) -> Receipt | None:
        mail = _expect(message, Mail, self.name)
        name = self.file_name(mail)
        # A mail client moves read messages to cur/, appending ":2,FLAGS" ("!2,FLAGS" on Windows).
        candidates = [self.directory / "new" / name, self.directory / "cur" / name]
        candidates += [p for p in _list(self.directory / "cur") if _info_split(p.name) == name]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            return None
        return Receipt(external_id=mail.message_id, url=found.resolve().as_uri())

    def send(self, message: Message) -> Receipt:
        mail = _expect(message, Mail, self.name)
        existing = self.find_existing(mail)
        if existing is not None:
            return existing
        data = as_bytes(mail, build_email(mail, self.mail_from, self.reply_to))
        for sub in ("tmp", "new", "cur"):
            _private_dir(self.directory / sub)
        final = self.directory / "new" / self.file_name(mail)
        _write_once(final, data, self.directory / "tmp")
        return Receipt(external_id=mail.message_id, url=final.resolve().as_uri())

    def close(self) -> None:
        pass


class PostOutbox:
    """X or forum posts as JSON files holding the request the real channel would send."""

    def __init__(self, directory: str | os.PathLike[str], channel: PostChannel) -> None:
        if channel not in ("x", "forum"):
            raise ValueError(f"PostOutbox channel must be 'x' or 'forum', not {channel!r}")
        self.directory = Path(directory)
        self.name = channel

    def file_name(self, message: Message) -> str:
        return safe_file_name(message.key, keep=":") + ".json"

    def request(self, message: Message) -> dict[str, Any]:
        """Method, path and JSON body of the real API call for `message`."""
        if self.name == "x":
            post = _expect(message, Post, self.name)
            return {"method": "POST", "path": "/2/tweets", "body": {"text": post.text}}
        if isinstance(message, ForumTopic):
            body: dict[str, Any] = {"name": message.title, "body": message.body}
            body["format"] = "markdown"
            category = message.category.strip()
            # The real sender resolves a url code to its id; the outbox has no server to ask.
            if category.isdigit():
                body["categoryID"] = int(category)
            else:
                body["category"] = category
            return {"method": "POST", "path": "/api/v2/discussions", "body": body}
        comment = _expect(message, ForumComment, self.name)
        return {
            "method": "POST",
            "path": "/api/v2/comments",
            "body": {
                "body": comment.body,
                "format": "markdown",
                "discussionID": comment.discussion_id,
            },
        }

    def _receipt(self, path: Path) -> Receipt:
        return Receipt(external_id=path.name, url=path.resolve().as_uri())

    def find_existing(self, message: Message) -> Receipt | None:
        self.request(message)  # the same type check as send
        path = self.directory / self.file_name(message)
        return self._receipt(path) if path.is_file() else None

    def send(self, message: Message) -> Receipt:
        request = self.request(message)
        path = self.directory / self.file_name(message)
        data = (json.dumps(request, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        if not path.is_file() and _write_once(path, data, self.directory):
            return self._receipt(path)
        try:
            same = json.loads(path.read_text(encoding="utf-8")) == request
        except (OSError, ValueError):
            same = False
        if not same:
            raise DeliveryError(
                f"{path} already holds a different {message.key}: the message changed since it "
                f"was written to the outbox; move that file away to write the new one",
                permanent=True,
            )
        return self._receipt(path)

    def close(self) -> None:
        pass


def channel_outboxes(
    outbox_dir: str | os.PathLike[str],
    *,
    mail_from: str = DEFAULT_MAIL_FROM,
    reply_to: str | None = None,
) -> dict[str, Sender]:
    """The outbox senders of `OUTBOX_DIR`: "x" → `x/`, "forum" → `forum/`, "mail" → `mail/`."""
    root = Path(outbox_dir)
    return {
        "x": PostOutbox(root / "x", "x"),
        "forum": PostOutbox(root / "forum", "forum"),
        "mail": MaildirOutbox(root / "mail", mail_from, reply_to),
    }


def _expect(message: Message, kind: type, channel: str) -> Any:
    if not isinstance(message, kind):
        raise TypeError(f"the {channel} outbox cannot send a {type(message).__name__}")
    return message


def _info_split(file_name: str) -> str:
    """The unique part of a Maildir file name, without its ":2,FLAGS" info."""
    for colon in (":", "!"):
        file_name = file_name.partition(colon)[0]
    return file_name


def _list(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except FileNotFoundError:
        return []
