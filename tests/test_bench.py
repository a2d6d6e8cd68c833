"""The engine benchmark refuses to time random weights unless asked to."""

import pytest
import torch

from fashionlab.experiments import ch02_engine_bench
from fashionlab.zoo import registry


def test_missing_weights_are_an_error_not_a_silent_switch(monkeypatch, tmp_path, tiny_profile):
    monkeypatch.setattr(registry, "MANIFEST_PATH", tmp_path / "none.json")
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="--random-weights"):
        ch02_engine_bench._model()
    state = torch.random.get_rng_state()
    unet, _, what = ch02_engine_bench._model(random_weights=True)
    assert "random weights" in what and unet.config.sample_size == 64
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left as it was
