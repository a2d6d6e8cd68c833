"""Test-wide fixtures: the offline network guard and fixed thread counts.

Under the ``tiny`` profile every test runs as on a machine with no network
(:mod:`tests.offline_guard`: name resolution fails at once, connections are refused, datagrams
are unreachable; loopback stays usable). Every attempt is recorded. A test that made one fails at
teardown unless it is marked ``@pytest.mark.network_probe`` (the tests that check our "fails fast
offline" messages). Since the guard answers at once, a loader that retries or waits on a timeout
shows up as a slow test.
"""

from __future__ import annotations

import os

import pytest
import torch

from tests.offline_guard import ATTEMPTS as _ATTEMPTS
from tests.offline_guard import install

torch.set_num_threads(min(2, os.cpu_count() or 1))
pytest_plugins = ("pytester",)  # test_offline_guard runs the guard on a throwaway test


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("FASHIONLAB_PROFILE", "tiny") == "tiny":
        install()


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest):
    """Fail any test that tried to reach the network, unless it is a declared probe."""
    _ATTEMPTS.clear()
    yield
    if _ATTEMPTS and request.node.get_closest_marker("network_probe") is None:
        attempts = list(_ATTEMPTS)
        _ATTEMPTS.clear()
        pytest.fail(f"test tried to use the network: {attempts}")


@pytest.fixture
def tiny_profile(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FASHIONLAB_PROFILE", "tiny")
    yield


@pytest.fixture
def full_profile(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FASHIONLAB_PROFILE", "full")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield
