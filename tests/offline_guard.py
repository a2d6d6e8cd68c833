"""The offline network guard: the process answers like a machine with no network, at once.

- resolving a non-local host name (``getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``)
  fails with ``socket.gaierror`` (EAI_AGAIN, "Temporary failure in name resolution"), as with no DNS;
- connecting to a non-local address is refused (``ConnectionRefusedError``; ``connect_ex``
  returns ECONNREFUSED), and a datagram to one (``sendto``) is unreachable (ENETUNREACH).

Local means a loopback or unspecified address, or a loopback name ("localhost", "*.localhost"):
not any name that merely starts with "localhost" or "127.".

Every attempt is recorded in :data:`ATTEMPTS` and, when :func:`install` is given a file, appended
to it as one line (so that a parent process, e.g. nbval running a notebook's kernel, can see what a
child tried even when the child caught the error). Used by ``tests/conftest.py`` for the unit tests
and by ``tests/nbval_plugin.py`` for the notebooks' kernels.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

ATTEMPTS: list[str] = []
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_RECORD: list[Path] = []


def _is_local(address: object) -> bool:
    if isinstance(address, tuple) and address:
        return _is_local_host(address[0])
    return isinstance(address, (str, bytes))  # AF_UNIX paths (e.g. Jupyter kernels) are local


def _is_local_host(host: object) -> bool:
    """Loopback or unspecified addresses and the loopback names only: "localhost.example.com" or
    "127.example.com" are names a resolver would send to the network."""
    import ipaddress

    if host is None or host in ("", b""):
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    name = name.split("%")[0].rstrip(".").lower()  # IPv6 scope ids, a trailing root dot
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_sendto = socket.socket.sendto
_real_getaddrinfo = socket.getaddrinfo
_real_gethostbyname = socket.gethostbyname
_real_gethostbyname_ex = socket.gethostbyname_ex


def _attempt(target: object) -> None:
    ATTEMPTS.append(repr(target))
    for path in _RECORD:
        with open(path, "a") as handle:
            handle.write(repr(target) + "\n")


def _no_resolution(host: object) -> socket.gaierror:
    _attempt(host)
    return socket.gaierror(socket.EAI_AGAIN, f"Temporary failure in name resolution (tests are offline): {host!r}")


def _guarded_resolver(real):  # noqa: ANN001, ANN202
    """``real`` (getaddrinfo, gethostbyname, gethostbyname_ex), refusing non-local names as with no DNS."""
    def guarded(host, *args, **kwargs):  # noqa: ANN001, ANN202
        if not _is_local_host(host):
            raise _no_resolution(host)
        return real(host, *args, **kwargs)

    return guarded


def _guarded_connect(self, address):  # noqa: ANN001
    if not _is_local(address):
        _attempt(address)
        raise ConnectionRefusedError(errno.ECONNREFUSED, f"Connection refused (tests are offline): {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):  # noqa: ANN001
    if not _is_local(address):
        _attempt(address)
        return errno.ECONNREFUSED
    return _real_connect_ex(self, address)


def _guarded_sendto(self, data, *args):  # noqa: ANN001
    address = args[-1]  # sendto(data, address) or sendto(data, flags, address)
    if not _is_local(address):
        _attempt(address)
        raise OSError(errno.ENETUNREACH, f"Network is unreachable (tests are offline): {address!r}")
    return _real_sendto(self, data, *args)


def install(record: str | Path | None = None) -> None:
    """Guard this process (idempotent); with ``record``, also append every attempt to that file."""
    if record is not None and Path(record) not in _RECORD:
        _RECORD.append(Path(record))
    socket.getaddrinfo = _guarded_resolver(_real_getaddrinfo)
    socket.gethostbyname = _guarded_resolver(_real_gethostbyname)
    socket.gethostbyname_ex = _guarded_resolver(_real_gethostbyname_ex)
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.socket.sendto = _guarded_sendto
