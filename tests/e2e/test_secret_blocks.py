"""Secrets from Prefect Secret blocks, and X's rotated tokens saved back to them."""

from __future__ import annotations

import logging

import pytest
from flow_fixtures import prefect_harness  # noqa: F401  (the session's Prefect API)

from gestan_release.channels import persist_x_tokens

pytestmark = pytest.mark.slow


def test_rotated_x_tokens_are_saved_in_secret_blocks(prefect_harness, monkeypatch, git_repo):  # noqa: F811
    from prefect.blocks.system import Secret

    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    persist_x_tokens("new-access-Zq9", "new-refresh-Zq9")
    assert Secret.load("gestan-release-x-bearer-token").get() == "new-access-Zq9"
    assert Secret.load("gestan-release-x-refresh-token").get() == "new-refresh-Zq9"

    # ...and the flows read them back as settings when the environment has none.
    from flows.common import load_settings

    git_repo.commit("init")
    settings = load_settings(str(git_repo.path))
    assert settings.x_bearer_token.get_secret_value() == "new-access-Zq9"
    assert settings.x_refresh_token.get_secret_value() == "new-refresh-Zq9"
    assert "Zq9" not in repr(settings)


def test_without_a_prefect_server_the_operator_is_told(monkeypatch, caplog):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with caplog.at_level(logging.WARNING, logger="gestan_release.channels"):
        persist_x_tokens("access-Kx7", "refresh-Kx7")
    assert "GESTAN_RELEASE_X_REFRESH_TOKEN" in caplog.text
    assert "Kx7" not in caplog.text
