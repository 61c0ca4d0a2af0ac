from __future__ import annotations

import os
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI, a test that needs a real server or Triton must run: a skip is a failure.

    Locally they skip with a message saying what to install; CI installs it all
    (scripts/install-test-deps.sh), so a skip there would hide a broken set-up.
    """
    outcome = yield
    report = outcome.get_result()
    needs_server = any(item.get_closest_marker(m)
                       for m in ("realserver", "triton", "prometheus", "ray"))
    if report.skipped and needs_server and os.environ.get("CI"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where it must run: {report.longrepr}"
