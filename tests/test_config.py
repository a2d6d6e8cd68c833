import pytest
import torch

from fashionlab import config


def test_profile_default_and_switch(monkeypatch):
    monkeypatch.delenv("FASHIONLAB_PROFILE", raising=False)
    assert config.get_profile() == "tiny"
    config.use_profile("full")
    assert config.get_profile() == "full"
    config.use_profile("tiny")
    assert config.get_profile() == "tiny"


def test_profile_bad_values(monkeypatch):
    with pytest.raises(ValueError, match="profile must be one of"):
        config.use_profile("huge")
    monkeypatch.setenv("FASHIONLAB_PROFILE", "medium")
    with pytest.raises(ValueError, match="'medium'"):
        config.get_profile()


def test_device_auto_and_override(monkeypatch):
    monkeypatch.delenv("FASHIONLAB_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert config.get_device().type == expected
    assert config.get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("FASHIONLAB_DEVICE", "cpu")
    assert config.get_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            config.get_device("cuda")


def test_generators_are_explicit_and_reproducible():
    a = torch.randn(5, generator=config.make_generator(3))
    b = torch.randn(5, generator=config.make_generator(3))
    c = torch.randn(5, generator=config.make_generator(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    g1, g2 = config.spawn_generators(0, 2)
    assert not torch.equal(torch.randn(4, generator=g1), torch.randn(4, generator=g2))
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        config.make_generator(-1)


@pytest.mark.network_probe
def test_require_hub_fails_fast_offline(full_profile):
    import time

    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="cannot be reached"):
        config.require_hub("The test model")
    assert time.perf_counter() - start < 5.0


def test_network_guard_blocks_connections():
    import socket

    from tests.conftest import _ATTEMPTS

    with pytest.raises(OSError):  # name resolution fails at once, as on a machine with no network
        socket.create_connection(("example.org", 80), timeout=1)
    assert _ATTEMPTS  # recorded: the autouse fixture would fail an unmarked test ...
    _ATTEMPTS.clear()  # ... so this test, which only checks the guard, clears it.
