"""Test-wide fixtures: the offline network guard and fixed thread counts.

Under the ``tiny`` profile every test runs offline. Any attempt to open a network socket
(``socket.connect`` / ``create_connection`` to a non-local address) raises
:class:`NetworkBlocked` -- a ``ConnectionError``, so library code sees exactly what it would
see offline -- and is recorded. A test that made an attempt fails at teardown unless it is
marked ``@pytest.mark.network_probe`` (used by the tests that check our "fail fast offline"
messages).
"""

from __future__ import annotations

import os
import socket

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

_ATTEMPTS: list[str] = []
_LOCAL_PREFIXES = ("127.", "::1", "localhost")


class NetworkBlocked(ConnectionError):
    """Raised by the test-time guard instead of opening a network connection."""


def _is_local(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        return host.startswith(_LOCAL_PREFIXES)
    return isinstance(address, (str, bytes))  # AF_UNIX paths (e.g. Jupyter kernels) are local


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_create_connection = socket.create_connection


def _guarded_connect(self, address):  # noqa: ANN001
    if not _is_local(address):
        _ATTEMPTS.append(repr(address))
        raise NetworkBlocked(f"tests are offline: blocked a connection to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):  # noqa: ANN001
    if not _is_local(address):
        _ATTEMPTS.append(repr(address))
        raise NetworkBlocked(f"tests are offline: blocked a connection to {address!r}")
    return _real_connect_ex(self, address)


def _guarded_create_connection(address, *args, **kwargs):  # noqa: ANN001
    if not _is_local(address):
        _ATTEMPTS.append(repr(address))
        raise NetworkBlocked(f"tests are offline: blocked a connection to {address!r}")
    return _real_create_connection(address, *args, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("FASHIONLAB_PROFILE", "tiny") == "tiny":
        socket.socket.connect = _guarded_connect
        socket.socket.connect_ex = _guarded_connect_ex
        socket.create_connection = _guarded_create_connection


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
