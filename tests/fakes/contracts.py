"""Where the published API contracts are: `tests/contracts/`, copied into the project with their
sources and licences (see its README), so that contract tests run on any clone."""

from __future__ import annotations

from pathlib import Path

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"


def contracts_dir() -> Path:
    """`tests/contracts`: the X, Vanilla and twitter-text contracts the fakes validate against."""
    if not CONTRACTS.is_dir():  # a broken checkout, not a reason to skip
        raise FileNotFoundError(f"{CONTRACTS} is missing: the contract files are part of the tests")
    return CONTRACTS
