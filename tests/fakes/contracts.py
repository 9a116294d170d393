"""Where the published API contracts are: `../shared/contracts` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CONTRACTS = SHARED / "contracts"


def contracts_dir() -> Path:
    """`../shared/contracts`; skipped where absent, but required when CI=true."""
    if CONTRACTS.is_dir():
        return CONTRACTS
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CONTRACTS} is missing: CI must have ../shared/contracts beside the checkout")
    pytest.skip(f"{CONTRACTS} is missing (the published API contracts live in ../shared/contracts)")
