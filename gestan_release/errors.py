"""The one exception family of gestan-release.

Messages are written for the release manager: what is wrong and how to fix it. The CLI prints them
as one line on stderr and exits 1; anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations


class GestanReleaseError(Exception):
    """An expected failure, explained to the user."""

    exit_code = 1


class ConfigError(GestanReleaseError):
    """A setting is missing, malformed or in the wrong place (e.g. a secret in the toml file)."""


class GitError(GestanReleaseError):
    """The repository, a ref or a tag is not what the command needs."""


class VersionError(GestanReleaseError):
    """A version or tag does not follow the release scheme."""


class TicketError(GestanReleaseError):
    """The ticket store or an import file holds something invalid."""


class ReleaseError(GestanReleaseError):
    """A release cannot go on as asked (guard failed, nothing to release, tag conflict...)."""


class DeliveryError(GestanReleaseError):
    """A side effect (post, mail, publish) failed; `permanent` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class DuplicatePost(DeliveryError):
    """The peer refused a post as one it already has (X: 403 duplicate content). Permanent; after
    an attempt whose answer was lost it means that attempt went out (`retry.HttpRetry` looks)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class IncompleteRelease(ReleaseError):
    """A release ran but left side effects undone; `resume` finishes it. Exit 3 when the version
    reached the update endpoint (released, some deliveries left), else 1 (not released)."""

    def __init__(self, message: str, outcome: dict | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome or {}

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 3 if self.outcome.get("published") else 1


class FlowRunError(GestanReleaseError):
    """A flow run failed on an unexpected error (a bug): said in one line that names the run
    where its traceback lives."""

    exit_code = 4

    def __init__(self, message: str, flow_run: dict | None = None) -> None:
        super().__init__(message)
        self.flow_run = flow_run


_SQLITE_PROBLEMS = (
    (
        "database is locked",
        "is locked by another process (a release or an import still running?)"
        "; waited for it in vain: run again once it is done",
    ),
    (
        "readonly database",
        "is read-only: check the permissions of the file, of STATE_DIR and of the file system",
    ),
    ("disk is full", "cannot grow: the disk is full; free some space and run again"),
    (
        "unable to open database file",
        "cannot be opened: check that STATE_DIR exists and is writable",
    ),
    ("disk i/o error", "cannot be read or written (disk I/O error): check the disk"),
)
_OS_PROBLEMS = {"EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "EFBIG", "EIO"}


def expected_failure(exc: BaseException, database: str | None = None) -> GestanReleaseError | None:
    """The one-line error for a failure of the machine rather than a bug — the database locked by
    another process, a read-only or full state directory — or None. Nothing is half-done: every
    store writes in one transaction, which such a failure rolls back."""
    import errno
    import sqlite3

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.OperationalError | sqlite3.DatabaseError):
            text = str(current).lower()
            for needle, meaning in _SQLITE_PROBLEMS:
                if needle in text:
                    where = f"the database {database}" if database else "the database"
                    return GestanReleaseError(f"{where} {meaning}; nothing was changed")
        if isinstance(current, OSError) and errno.errorcode.get(current.errno or 0) in _OS_PROBLEMS:
            what = current.filename or "a file of STATE_DIR"
            return GestanReleaseError(
                f"cannot write {what}: {current.strerror or current}; check the disk and the "
                f"permissions, then run again (nothing was changed)"
            )
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None
