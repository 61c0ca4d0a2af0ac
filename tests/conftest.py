from __future__ import annotations

from pathlib import Path

import pytest

from llmscen.engine.registry import Registry

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry.discover()


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the repository root, as a user would."""
    monkeypatch.chdir(ROOT)
    return ROOT
