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
