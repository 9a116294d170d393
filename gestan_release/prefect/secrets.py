"""Prefect Secret blocks: where a worker may keep the secret settings instead of its environment
(`gestan-release-<setting>`, e.g. `gestan-release-smtp-password`). The flows read them
(`flows/common.load_settings`); `doctor` asks which exist, never reading a value.
"""

from __future__ import annotations

import os
from dataclasses import fields

from gestan_release.settings import ENV_PREFIX, SECRET_BLOCK_PREFIX, Settings


def secret_blocks_present(settings: Settings) -> set[str]:
    """Secret settings not in the environment but found in Prefect Secret blocks (only with a
    Prefect API; their values are never read here)."""
    if not os.environ.get("PREFECT_API_URL"):
        return set()
    names = {
        f.name
        for f in fields(Settings)
        if f.metadata.get("secret") and f"{ENV_PREFIX}{f.name.upper()}" not in os.environ
    }
    if not names:
        return set()
    from prefect.client.orchestration import get_client

    found = set()
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.read_block_document_by_name(
                    f"{SECRET_BLOCK_PREFIX}{name.replace('_', '-')}",
                    block_type_slug="secret",
                    include_secrets=False,
                )
            except Exception:  # not there (ObjectNotFound), or the API refuses: not a source
                continue
            found.add(name)
    return found
