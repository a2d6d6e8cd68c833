"""The engine benchmark refuses to time random weights unless asked to."""

import pytest
import torch

from fashionlab import bench
from fashionlab.zoo import registry


def test_missing_weights_are_an_error_not_a_silent_switch(monkeypatch, tmp_path, tiny_profile):
    monkeypatch.setattr(registry, "MANIFEST_PATH", tmp_path / "none.json")
    real = registry.load_pixel_ddpm

    def load_from_nowhere(name, **kwargs):
        return real(name, **kwargs, weights_dir=tmp_path, manifest_path=tmp_path / "none.json")

    monkeypatch.setattr(registry, "load_pixel_ddpm", load_from_nowhere)
    with pytest.raises(FileNotFoundError, match="--random-weights"):
        bench._model()
    state = torch.random.get_rng_state()
    unet, _, what = bench._model(random_weights=True)
    assert "random weights" in what and unet.config.sample_size == 64
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left as it was
