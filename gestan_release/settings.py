"""Settings: `GESTAN_RELEASE_<NAME>` environment variables, else `gestan-release.toml` at the
repository root (same names, lower case), else the defaults below.

Secrets are only read from the environment (or, in flows, from Prefect Secret blocks): a secret
found in the toml file is refused, since that file is usually committed.

This is a small typed loader rather than pydantic-settings on purpose: `gestan-release changelog`
must answer in well under half a second, and importing pydantic-settings alone costs ~0.4 s.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gestan_release.core.scrub import remember
from gestan_release.errors import ConfigError
from gestan_release.history.rules import (
    DEFAULT_FIX_TRAILERS,
    DEFAULT_REF_TRAILERS,
    DEFAULT_SKIP_PATTERNS,
    DEFAULT_TICKET_PATTERN,
    Rules,
)

ENV_PREFIX = "GESTAN_RELEASE_"
TOML_NAME = "gestan-release.toml"
# Secret settings may instead be Prefect Secret blocks named `gestan-release-<setting>`.
SECRET_BLOCK_PREFIX = "gestan-release-"


class Secret:
    """A secret value that never shows itself in repr, str, logs or exceptions."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        remember(value)  # whatever a peer echoes back, this value is scrubbed from errors

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


SECRET = {"secret": True}


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults of docs/reference.md; `load` resolves paths."""

    repo: Path = Path(".")
    database_url: str | None = None
    state_dir: Path | None = None
    outbox_dir: Path | None = None
    tag_prefix: str = "v"
    main_branch: str = "main"
    remote: str | None = None
    version_file: str | None = None
    build_command: str | None = None
    artifacts: str | None = None
    # Ticket references: what a commit means is data, not code (cf. git-cliff's commit_parsers).
    ticket_patterns: tuple[str, ...] = (DEFAULT_TICKET_PATTERN,)
    fix_trailers: tuple[str, ...] = DEFAULT_FIX_TRAILERS
    ref_trailers: tuple[str, ...] = DEFAULT_REF_TRAILERS
    skip_patterns: tuple[str, ...] = DEFAULT_SKIP_PATTERNS
    merge_refs: str = "trailers"
    # Update endpoint
    updates_url: str | None = None
    updates_token: Secret | None = field(default=None, metadata=SECRET)
    updates_signing_key: Path | None = None
    updates_channels: tuple[str, ...] = ("stable", "nightly")
    # Nightlies a channel's manifest keeps (besides the latest per line and stepping stones).
    updates_keep_nightlies: int = 30
    # Where desktop installs download the artifacts of a release: `<base>/<version>/<file>`.
    download_base_url: str = "https://www.gestan.fr/telechargement"
    # How long a second run on the same repository waits for the first to finish (seconds).
    lock_wait: int = 0
    # The release lock's lease (seconds): a holder that vanished frees it at most this long after
    # its last heartbeat (every third of it).
    lock_lease: int = 60
    # Stateless workers: the Gestan repository is cloned from here into CACHE_DIR and fetched on
    # every run; REMOTE then defaults to it (`origin`).
    repo_url: str | None = None
    cache_dir: Path | None = None
    # With a shared (non-SQLite) DATABASE_URL, the outbox and the local update store live on one
    # worker's disk and vanish with it: refused unless allowed here.
    allow_outbox: bool = False
    # The update signing key itself (PEM), from the environment or a Prefect Secret block,
    # instead of the file UPDATES_SIGNING_KEY.
    updates_signing_key_pem: Secret | None = field(default=None, metadata=SECRET)
    # The approval gate: `required` pauses each release after its preview until someone approves
    # or rejects it (Prefect UI, `gestan-release approve|reject`); nothing ships on a timeout.
    approval: str = "none"
    approval_timeout: int = 86400
    # X
    x_enabled: bool = False
    x_api_base: str = "https://api.x.com"
    x_bearer_token: Secret | None = field(default=None, metadata=SECRET)
    x_refresh_token: Secret | None = field(default=None, metadata=SECRET)
    x_client_id: str | None = None
    x_consumer_key: Secret | None = field(default=None, metadata=SECRET)
    x_consumer_secret: Secret | None = field(default=None, metadata=SECRET)
    x_access_token: Secret | None = field(default=None, metadata=SECRET)
    x_access_token_secret: Secret | None = field(default=None, metadata=SECRET)
    # Forum
    forum_enabled: bool = False
    forum_base_url: str | None = None
    forum_token: Secret | None = field(default=None, metadata=SECRET)
    forum_category: str = "nouvelles-versions"
    # Mail
    smtp_enabled: bool = False
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: str = "starttls"
    smtp_username: str | None = None
    smtp_password: Secret | None = field(default=None, metadata=SECRET)
    mail_from: str = "Support Gestan <support@gestan.fr>"
    mail_reply_to: str | None = None
    # Intake (issue 10): triaged reports read from the forum, acknowledgement mails, promises.
    # Bug-report categories (url codes or numeric ids); none = `tickets sync` refuses to run.
    forum_bug_categories: tuple[str, ...] = ()
    # Forum tag -> priority: "tag" (a tag named like the priority) or "priority=tag".
    forum_priority_tags: tuple[str, ...] = ("flash", "haute", "normale", "basse")
    # Also post the acknowledgement as a reply on the report's discussion (once).
    forum_ack_reply: bool = False
    # A full re-scan of the bug categories (catches re-tags that left dateUpdated alone, and
    # deleted discussions) at most this many hours apart; 0 = only `tickets sync --full`.
    forum_full_sync_hours: int = 24
    # Support hours (Europe/Paris), in which an open flash ticket ages; `status` flags one open
    # longer than FLASH_ALERT_MINUTES of them.
    # Automatic acknowledgements skip reports older than this (days; 0 = no limit): the first
    # sync of a forum with a history must not mail every reporter of the past years.
    ack_max_age_days: int = 14
    support_hours: tuple[str, ...] = ("mon-sat 08:00-19:00",)
    flash_alert_minutes: int = 60

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def updates_dir(self) -> Path:
        assert self.state_dir is not None
        return self.state_dir / "updates"


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off", ""}


def _coerce(name: str, kind: Any, raw: Any, source: str) -> Any:
    kind = str(kind)
    try:
        if raw is None:
            return None
        if "bool" in kind:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _BOOL_TRUE:
                return True
            if text in _BOOL_FALSE:
                return False
            raise ValueError("expected true or false")
        if "int" in kind:
            return int(raw)
        if "tuple" in kind:
            if isinstance(raw, (list, tuple)):
                return tuple(str(x) for x in raw)
            if str(raw).lstrip().startswith(('["', "[]")):  # JSON: for regexes with commas
                import json

                try:
                    items = json.loads(str(raw))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a JSON array of strings ({exc})") from None
                if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                    raise ValueError("not a JSON array of strings")
                return tuple(items)
            return tuple(part.strip() for part in str(raw).split(",") if part.strip())
        if "Secret" in kind:
            return Secret(str(raw))
        if "Path" in kind:
            return Path(str(raw)).expanduser()
        return str(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name.upper()} from {source} is invalid: {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def load(repo: str | Path = ".", env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings for the repository at `repo`, from the environment, the toml file and defaults."""
    env = os.environ if env is None else env
    repo_path = Path(repo).expanduser().resolve()
    toml = _read_toml(repo_path / TOML_NAME)
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(toml) - set(known))
    if unknown:
        raise ConfigError(
            f"{repo_path / TOML_NAME}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(n for n in known if n != 'repo')}"
        )
    values: dict[str, Any] = {"repo": repo_path}
    sources: dict[str, str] = {}
    for name, f in known.items():
        if name == "repo":
            continue
        env_name = ENV_PREFIX + name.upper()
        if env_name in env:
            values[name] = _coerce(name, f.type, env[env_name], env_name)
            sources[name] = env_name
        elif name in toml:
            sources[name] = TOML_NAME
            if f.metadata.get("secret"):
                raise ConfigError(
                    f"{name} is a secret and must not be in {TOML_NAME} (it is usually committed); "
                    f"set {env_name} in the environment or a Prefect Secret block instead"
                )
            values[name] = _coerce(name, f.type, toml[name], TOML_NAME)
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    state = settings.state_dir or repo_path / ".gestan-release"
    if not state.is_absolute():
        state = repo_path / state
    outbox = settings.outbox_dir or state / "outbox"
    key = settings.updates_signing_key or state / "keys" / "updates.ed25519.pem"
    db = settings.database_url or f"sqlite:///{state / 'gestan.db'}"
    if settings.approval not in ("none", "required"):
        raise ConfigError(f"APPROVAL must be none or required, not {settings.approval!r}")
    if settings.lock_lease < 5:
        raise ConfigError(f"LOCK_LEASE must be at least 5 seconds, not {settings.lock_lease}")
    if settings.smtp_security not in ("starttls", "ssl", "none"):
        raise ConfigError(
            f"SMTP_SECURITY must be starttls, ssl or none, not {settings.smtp_security!r}"
        )
    Rules.from_settings(settings).check(sources)  # one line naming a bad setting, at load
    return settings.replace(
        state_dir=state, outbox_dir=outbox, updates_signing_key=key, database_url=db
    )


def sources(repo: str | Path = ".", env: dict[str, str] | None = None) -> dict[str, str]:
    """Where `load` takes each setting from: `env` (GESTAN_RELEASE_<NAME>), `toml` or
    `default` (`gestan-release doctor` shows it; Secret blocks are looked up by the flows)."""
    env = os.environ if env is None else env
    toml = _read_toml(Path(repo).expanduser().resolve() / TOML_NAME)
    found = {}
    for f in fields(Settings):
        if f.name == "repo":
            continue
        if ENV_PREFIX + f.name.upper() in env:
            found[f.name] = "env"
        elif f.name in toml:
            found[f.name] = "toml"
        else:
            found[f.name] = "default"
    return found
