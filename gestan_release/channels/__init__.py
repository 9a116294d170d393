"""Channels: X, the forum, mail — and the outbox that stands in for each by default.

Each channel is enabled by settings (`X_ENABLED`, `FORUM_ENABLED`, `SMTP_ENABLED`); a channel that
is not enabled writes to the outbox (`OUTBOX_DIR`), so nothing leaves the machine until it is.
"""

from __future__ import annotations

from typing import Any

from gestan_release.errors import ConfigError
from gestan_release.settings import Settings

CHANNELS = ("x", "forum", "mail")


def _missing(settings: Settings, names: list[str]) -> list[str]:
    return [f"GESTAN_RELEASE_{n.upper()}" for n in names if not getattr(settings, n)]


def check_settings(settings: Settings) -> None:
    """Refuse early, before any side effect, an enabled channel whose settings are incomplete."""
    problems = []
    if settings.x_enabled:
        oauth1 = ["x_consumer_key", "x_consumer_secret", "x_access_token", "x_access_token_secret"]
        if _missing(settings, ["x_bearer_token"]) and _missing(settings, oauth1):
            problems.append(
                "X_ENABLED needs GESTAN_RELEASE_X_BEARER_TOKEN (OAuth 2.0 user token) or the four "
                "OAuth 1.0a secrets X_CONSUMER_KEY, X_CONSUMER_SECRET, X_ACCESS_TOKEN, "
                "X_ACCESS_TOKEN_SECRET"
            )
    if settings.forum_enabled and (miss := _missing(settings, ["forum_base_url", "forum_token"])):
        problems.append(f"FORUM_ENABLED needs {', '.join(miss)}")
    if settings.smtp_enabled:
        miss = _missing(settings, ["smtp_host"])
        if settings.smtp_username and not settings.smtp_password:
            miss.append("GESTAN_RELEASE_SMTP_PASSWORD (SMTP_USERNAME is set)")
        if miss:
            problems.append(f"SMTP_ENABLED needs {', '.join(miss)}")
    if problems:
        raise ConfigError(
            "; ".join(problems) + " (secrets go in the environment or Prefect Secret blocks)"
        )


def senders_for(settings: Settings) -> dict[str, Any]:
    """One sender per channel: the real service where enabled, else the outbox."""
    from gestan_release.channels.outbox import channel_outboxes

    assert settings.outbox_dir is not None
    senders: dict[str, Any] = dict(
        channel_outboxes(
            settings.outbox_dir, mail_from=settings.mail_from, reply_to=settings.mail_reply_to
        )
    )
    if settings.x_enabled:
        from gestan_release.channels.x import XSender

        senders["x"] = XSender.from_settings(settings, on_token_refresh=persist_x_tokens)
    if settings.forum_enabled:
        from gestan_release.channels.forum import ForumSender

        senders["forum"] = ForumSender.from_settings(settings)
    if settings.smtp_enabled:
        from gestan_release.channels.smtp import SmtpSender

        senders["mail"] = SmtpSender.from_settings(settings)
    return senders


def persist_x_tokens(access_token: str, refresh_token: str | None) -> None:
    """X rotates refresh tokens: keep the new ones where the next run will read them (the
    Prefect Secret blocks `gestan-release-x-bearer-token` / `-x-refresh-token`) when a Prefect
    API is configured; otherwise say clearly that the operator must update the environment."""
    import logging
    import os

    log = logging.getLogger("gestan_release.channels")
    if not os.environ.get("PREFECT_API_URL"):
        log.warning(
            "X issued new OAuth 2.0 tokens; the old refresh token no longer works. Put the new "
            "ones in GESTAN_RELEASE_X_BEARER_TOKEN / GESTAN_RELEASE_X_REFRESH_TOKEN, or run with "
            "a Prefect server so that they are saved in Secret blocks automatically."
        )
        return
    from prefect.blocks.system import Secret as SecretBlock

    SecretBlock(value=access_token).save("gestan-release-x-bearer-token", overwrite=True)
    if refresh_token:
        SecretBlock(value=refresh_token).save("gestan-release-x-refresh-token", overwrite=True)
    log.info("X tokens were refreshed and saved in the Prefect Secret blocks")


def close_all(senders: dict[str, Any]) -> None:
    for sender in senders.values():
        close = getattr(sender, "close", None)
        if close is not None:
            close()
