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


def test_results_and_training_dirs_resolve_without_a_checkout_path(monkeypatch, tmp_path):
    monkeypatch.delenv(config.RESULTS_ENV, raising=False)
    monkeypatch.delenv(config.TRAINING_ENV, raising=False)
    shipped = config.results_dir()
    assert shipped == config.PACKAGE_DIR / "experiments" / "results"  # package data: found after pip install
    assert {"05_attrnet_tables.json", "06_main.json"} <= {p.name for p in shipped.iterdir()}
    assert config.training_dir() == config.PACKAGE_DIR.parent / "training"  # a source checkout
    monkeypatch.setenv(config.RESULTS_ENV, str(tmp_path / "r"))
    monkeypatch.setenv(config.TRAINING_ENV, str(tmp_path / "t"))
    assert config.results_dir() == tmp_path / "r" and config.training_dir() == tmp_path / "t"


def test_write_json_atomic_leaves_no_temporary_file(tmp_path):
    config.write_json_atomic({"b": 1, "a": [1, 2]}, tmp_path / "x.json")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert (tmp_path / "x.json").read_text().startswith('{\n "a"')


def test_require_hub_checks_the_host_the_weights_come_from(monkeypatch):
    import socket

    tried = []

    def refuse(address, timeout=None):
        tried.append(address)
        raise OSError("refused")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(RuntimeError, match="download.pytorch.org"):
        config.require_hub("Inception-v3", "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth")
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example:8443")
    with pytest.raises(RuntimeError, match="hf-mirror.example"):
        config.require_hub("A hub model")
    assert tried == [("download.pytorch.org", 443), ("hf-mirror.example", 8443)]
    # HF_HUB_OFFLINE answers for the hub at once, not for other hosts
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert config.hub_reachable() is False and len(tried) == 2
    assert config.hub_reachable(url="https://download.pytorch.org/x") is False and len(tried) == 3


def test_cached_weights_load_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config.require_hub("A cached model", cached=True)  # no error, no probe
    url = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert not config.torch_hub_cached(url)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth").write_bytes(b"")
    assert config.torch_hub_cached(url)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    assert config.hf_cached("google/ddpm-celebahq-256", "config.json") is False
    repo = tmp_path / "hf" / "models--google--ddpm-celebahq-256"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "config.json").write_text("{}")
    assert config.hf_cached("google/ddpm-celebahq-256", "config.json") is True
    assert config.hf_cached("google/ddpm-celebahq-256", "diffusion_pytorch_model.bin") is False


BAD_NUMBERS = (float("nan"), float("inf"), float("-inf"), -1.0)


def _configs():
    """Every config that holds a strength, weight, rate or count, with a field to spoil."""
    from fashionlab.diffusion.guidance import Guidance
    from fashionlab.methods.blended_diffusion import BlendedConfig
    from fashionlab.methods.diffusionclip import DiffusionCLIPConfig
    from fashionlab.methods.gradient_guidance import GradientGuidanceConfig
    from fashionlab.methods.guided_edit import GuidedEditConfig
    from fashionlab.methods.lora import LoRAConfig
    from fashionlab.methods.zip import ZIPConfig

    return [
        (Guidance, {"mode": "universal"}, "strength"), (GradientGuidanceConfig, {}, "strength"),
        (GuidedEditConfig, {}, "strength"), (GuidedEditConfig, {}, "mse_weight"), (GuidedEditConfig, {}, "eta"),
        (BlendedConfig, {}, "clip_weight"), (BlendedConfig, {}, "range_weight"),
        (DiffusionCLIPConfig, {}, "clip_weight"), (DiffusionCLIPConfig, {}, "l1_weight"),
        (DiffusionCLIPConfig, {}, "learning_rate"), (LoRAConfig, {}, "learning_rate"), (LoRAConfig, {}, "alpha"),
        (LoRAConfig, {}, "weight_decay"), (ZIPConfig, {}, "clip_weight"), (ZIPConfig, {}, "recon_weight"),
        (ZIPConfig, {}, "learning_rate")]


@pytest.mark.parametrize("index", range(16))
@pytest.mark.parametrize("bad", BAD_NUMBERS, ids=repr)
def test_every_config_refuses_nan_infinite_and_negative_numbers_naming_the_field(index, bad):
    cls, base, field = _configs()[index]
    if field == "strength":
        base = {**base, "strength": bad}
    else:
        base = {**base, field: bad, **({"strength": 1.0} if cls.__name__ in ("Guidance", "GradientGuidanceConfig") else {})}
    with pytest.raises(ValueError, match=field):
        cls(**base)


@pytest.mark.parametrize("value, kwargs, ok", [
    (0, {"low": 0}, True), (0.0, {"low": 0, "low_open": True}, False), (3, {"low": 1, "integer": True}, True),
    (3.0, {"low": 1, "integer": True}, False), (True, {}, False), ("1", {}, False), (1e308, {}, True),
    (float("nan"), {}, False), (2, {"high": 1}, False), (1, {"high": 1, "high_open": True}, False)])
def test_check_number(value, kwargs, ok):
    if ok:
        config.check_number("x", value, **kwargs)
    else:
        with pytest.raises(ValueError, match="^x must be"):
            config.check_number("x", value, **kwargs)


def test_a_results_file_resumes_with_tuples_in_its_settings_and_refuses_other_settings(tmp_path):
    """Settings are compared as the JSON file holds them (a dataclass's tuple comes back a list), so
    an interrupted run resumes; a change of settings is refused, naming the file."""
    from fashionlab.experiments import start_results_file

    out = tmp_path / "part.json"
    meta = {"window": (300, 600), "n": 4}
    data = start_results_file(out, meta)
    data["records"]["done"] = 1
    config.write_json_atomic(data, out)
    assert start_results_file(out, meta)["records"] == {"done": 1}
    with pytest.raises(ValueError, match="part.json was made with other settings"):
        start_results_file(out, {"window": (300, 500), "n": 4})
