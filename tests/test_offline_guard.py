"""The test-time network guard (tests/offline_guard.py, installed by tests/conftest.py) behaves like a
machine with no network."""

import socket
import time
from pathlib import Path

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


@pytest.mark.network_probe
@pytest.mark.parametrize("host", ["localhost.example.com", "127.attacker.example", "example.com."])
def test_look_alike_local_names_are_not_local(host):
    with pytest.raises(socket.gaierror, match="name resolution"):
        socket.getaddrinfo(host, 443)
    with pytest.raises(socket.gaierror, match="name resolution"):
        socket.gethostbyname(host)
    with pytest.raises(socket.gaierror, match="name resolution"):
        socket.gethostbyname_ex(host)


@pytest.mark.network_probe
def test_datagrams_to_the_network_are_unreachable():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(OSError, match="unreachable"):
        s.sendto(b"x", ("203.0.113.7", 53))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(OSError, match="unreachable"):
        s.sendto(b"x", 0, ("203.0.113.7", 53))


def test_loopback_stays_usable():
    assert socket.gethostbyname("localhost").startswith("127.")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.bind(("127.0.0.1", 0))
        sender.sendto(b"ping", receiver.getsockname())
        assert receiver.recv(16) == b"ping"


def test_a_test_that_reaches_out_fails(pytester, monkeypatch):
    """The guard's teardown fails an unmarked test that tried; it is not only a refusal."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))  # the copied conftest imports tests.*
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile("""
import socket
def test_reaches_out():
    try:
        socket.gethostbyname("example.com")
    except OSError:
        pass
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")  # its guard must not patch this process
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*test tried to use the network*example.com*"])
