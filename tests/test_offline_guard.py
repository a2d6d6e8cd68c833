"""The test-time network guard (tests/conftest.py) behaves like a machine with no network."""

import socket
import time

import pytest


@pytest.mark.network_probe
def test_name_resolution_fails_at_once():
    start = time.perf_counter()
    with pytest.raises(socket.gaierror, match="name resolution"):
        socket.getaddrinfo("huggingface.co", 443)
    with pytest.raises(OSError):  # create_connection resolves first, so it fails the same way
        socket.create_connection(("huggingface.co", 443), timeout=30)
    assert time.perf_counter() - start < 1.0


@pytest.mark.network_probe
def test_connections_to_addresses_are_refused():
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("203.0.113.7", 443))  # a documentation address (TEST-NET-3)
    with socket.socket() as s:
        assert s.connect_ex(("203.0.113.7", 443)) != 0


def test_local_names_still_resolve():
    assert socket.getaddrinfo("localhost", 80)
