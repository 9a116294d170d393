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


def test_the_signing_key_from_a_secret_block_and_doctor_names_it(
    prefect_harness,  # noqa: F811
    monkeypatch,
    git_repo,
    capsys,
):
    """A stateless worker's signing key is the PEM in a Secret block; `doctor` names the block as
    the source and prints neither the key nor any other secret."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from prefect.blocks.system import Secret

    from flows.common import load_settings
    from gestan_release.cli import main
    from gestan_release.updates.publisher import local_store
    from gestan_release.updates.signing import public_key_b64

    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    Secret(value=pem).save("gestan-release-updates-signing-key-pem", overwrite=True)
    git_repo.commit("init")
    settings = load_settings(str(git_repo.path))
    assert local_store(settings).signer.public_b64() == public_key_b64(key)

    capsys.readouterr()
    assert main(["--repo", str(git_repo.path), "doctor", "--format", "json"]) == 0
    out = capsys.readouterr().out
    body = pem.splitlines()[1]
    assert body not in out
    rows = {r["name"]: r for r in json.loads(out)["settings"]}
    assert rows["UPDATES_SIGNING_KEY_PEM"] == {
        "name": "UPDATES_SIGNING_KEY_PEM",
        "value": "(set, hidden)",
        "source": "Secret block gestan-release-updates-signing-key-pem",
    }
    lost = [loss["what"] for loss in json.loads(out)["lost_with_this_worker"]]
    assert "the update signing key" not in lost
