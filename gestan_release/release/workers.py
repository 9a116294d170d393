"""What a worker keeps on its own disk, and what it would take with it if it vanished.

At scale (a Prefect server, workers on several machines, `DATABASE_URL` on PostgreSQL) nothing that
matters may live on one worker's disk: the repository comes from `REPO_URL`, the signing key from
the environment or a Prefect Secret block, the update store is the update server (`UPDATES_URL`),
and the channels are the real ones. `check_stateless` refuses a release that would leave mails,
posts or manifests on a worker's disk (unless `ALLOW_OUTBOX`); `inventory` is what
`gestan-release doctor` shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from gestan_release.errors import ConfigError
from gestan_release.settings import ENV_PREFIX, SECRET_BLOCK_PREFIX, Settings, sources

_LABELS = {"x": "X", "forum": "the forum", "mail": "mail"}
_SWITCHES = {"x": "X_ENABLED", "forum": "FORUM_ENABLED", "mail": "SMTP_ENABLED"}


def shared_database(settings: Settings) -> bool:
    """A database server (not a SQLite file on this disk) holds the tickets and the ledger."""
    url = settings.database_url or ""
    return not url.startswith("sqlite")


def outbox_channels(settings: Settings) -> list[str]:
    """The channels that write to the outbox on this disk (not enabled)."""
    enabled = {
        "x": settings.x_enabled,
        "forum": settings.forum_enabled,
        "mail": settings.smtp_enabled,
    }
    return [name for name, on in enabled.items() if not on]


def check_stateless(settings: Settings, kind: str) -> None:
    """With a shared database, refuse to leave what must reach people or installs on one worker's
    disk: outbox posts and mails, a local update store. `ALLOW_OUTBOX=true` allows it (one
    machine with PostgreSQL, tests)."""
    if not shared_database(settings) or settings.allow_outbox:
        return
    problems = []
    channels = outbox_channels(settings) if kind != "nightly" else []
    if channels:
        names = ", ".join(_LABELS[c] for c in channels)
        switches = ", ".join(_SWITCHES[c] for c in channels)
        problems.append(
            f"{names} would go to the outbox {settings.outbox_dir} on this worker's disk "
            f"(enable {switches})"
        )
    if not settings.updates_url:
        problems.append(
            f"the update manifests would be signed into {settings.updates_dir} on this worker's "
            f"disk (set UPDATES_URL to the update server)"
        )
    if problems:
        raise ConfigError(
            "DATABASE_URL is shared, so any worker may run or resume this release, but "
            + "; and ".join(problems)
            + ". Or set GESTAN_RELEASE_ALLOW_OUTBOX=true if this machine is the only one"
        )


# -- doctor ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SettingLine:
    name: str
    value: str
    source: str


@dataclass(frozen=True)
class Loss:
    what: str
    where: str
    advice: str


def _shown(settings: Settings, name: str, secret: bool) -> str:
    value = getattr(settings, name)
    if secret:
        return "(set, hidden)" if value else "—"
    if value is None:
        return "—"
    if name == "database_url":
        from gestan_release.store.db import display_url

        return display_url(value)
    if name == "repo_url":
        from gestan_release.core.scrub import url_without_credentials

        return url_without_credentials(value)
    if isinstance(value, tuple):
        return ", ".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def setting_lines(
    settings: Settings, env: dict[str, str] | None = None, secret_blocks: set[str] = frozenset()
) -> list[SettingLine]:
    """Every setting with its value (never a secret's) and where it comes from."""
    env = os.environ if env is None else env
    origin = sources(settings.repo, env)
    derived = {"database_url", "state_dir", "outbox_dir", "updates_signing_key", "cache_dir"}
    lines = []
    for f in fields(Settings):
        if f.name == "repo":
            continue
        secret = bool(f.metadata.get("secret"))
        source = origin[f.name]
        if source == "env":
            source = f"env {ENV_PREFIX}{f.name.upper()}"
        elif source == "toml":
            source = "gestan-release.toml"
        elif secret and f.name in secret_blocks:
            source = f"Secret block {SECRET_BLOCK_PREFIX}{f.name.replace('_', '-')}"
        elif f.name in derived:
            source = "default (derived)"
        value = _shown(settings, f.name, secret)
        if f.name == "cache_dir" and settings.cache_dir is None:
            from gestan_release.history.repocache import default_cache_dir

            value = str(default_cache_dir())
        if secret and source.startswith("Secret block"):
            value = "(set, hidden)"
        lines.append(SettingLine(f.name.upper(), value, source))
    return lines


def inventory(settings: Settings) -> list[Loss]:
    """What this worker's disk holds that would be lost with it (empty: a stateless worker)."""
    losses: list[Loss] = []
    if not shared_database(settings):
        losses.append(
            Loss(
                "the ledger and the tickets",
                str(settings.database_url).removeprefix("sqlite:///"),
                "every release's record, so resume and 'never twice' start from nothing: "
                "set DATABASE_URL to PostgreSQL",
            )
        )
    if settings.repo_url:  # cloned and fetched on every run: nothing of it is lost
        pass
    elif settings.remote:
        losses.append(
            Loss(
                "tags, branches and version commits not yet pushed",
                str(settings.repo),
                f"pushed to {settings.remote} at the end of the git step; set REPO_URL so that "
                f"any worker can run or resume a release",
            )
        )
    else:
        losses.append(
            Loss(
                "the Gestan repository and every tag and branch made in it",
                str(settings.repo),
                "nothing is pushed (REMOTE is not set): set REPO_URL (workers clone it) or REMOTE",
            )
        )
    channels = outbox_channels(settings)
    if channels:
        losses.append(
            Loss(
                f"the outbox ({', '.join(channels)})",
                str(settings.outbox_dir),
                "posts and mails written there never leave: enable the real channels",
            )
        )
    if not settings.updates_url:
        losses.append(
            Loss(
                "the update store (signed manifests)",
                str(settings.updates_dir),
                "desktop installs check it: set UPDATES_URL to the update server",
            )
        )
        if not settings.updates_signing_key_pem:
            losses.append(
                Loss(
                    "the update signing key",
                    str(settings.updates_signing_key),
                    "installs pin its public key: keep a copy, or give the PEM itself in "
                    "GESTAN_RELEASE_UPDATES_SIGNING_KEY_PEM or the Secret block "
                    "gestan-release-updates-signing-key-pem",
                )
            )
    if settings.build_command:
        losses.append(
            Loss(
                "installers built for releases in progress",
                str((settings.state_dir or settings.repo) / "artifacts"),
                "their hashes are in the ledger and are not rebuilt: upload them where "
                "DOWNLOAD_BASE_URL points from BUILD_COMMAND itself",
            )
        )
    if settings.x_enabled and settings.x_refresh_token and not os.environ.get("PREFECT_API_URL"):
        losses.append(
            Loss(
                "X's rotated refresh token",
                "this process's memory",
                "X issues a new one on refresh: with a Prefect server it is saved in the Secret "
                "block gestan-release-x-refresh-token",
            )
        )
    return losses


def doctor_report(settings: Settings, secret_blocks: set[str] = frozenset()) -> dict[str, Any]:
    lines = setting_lines(settings, secret_blocks=secret_blocks)
    return {
        "settings": [line.__dict__ for line in lines],
        "lost_with_this_worker": [loss.__dict__ for loss in inventory(settings)],
    }
