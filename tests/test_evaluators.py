"""Oracle and parser models, the masked multi-attribute CE, augmentation, and their zoo round trip."""

import numpy as np
import pytest
import torch

from fashionlab import metrics
from fashionlab.data import garments
from fashionlab.data import transforms
from fashionlab.eval import classifiers
from fashionlab.losses import masked_attribute_ce
from fashionlab.models.oracle import HEADS, GarmentOracle
from fashionlab.models.parser import GarmentParser
from fashionlab.train import supervised
from fashionlab.zoo import export
from fashionlab.zoo import loaders
from fashionlab.zoo import recipes


def test_oracle_shapes_and_features():
    torch.manual_seed(0)
    oracle = GarmentOracle().eval()
    x = torch.randn(2, 3, 64, 64)
    out = oracle(x)
    assert {k: v.shape[1] for k, v in out.items()} == HEADS
    feats = oracle.stage_features(x)
    assert [f.shape[1:] for f in feats] == [(32, 64, 64), (64, 32, 32), (128, 16, 16), (192, 8, 8)]
    assert oracle.penultimate(x).shape == (2, 192)
    with pytest.raises(ValueError, match="images must be"):
        oracle(torch.randn(2, 1, 64, 64))


def test_parser_shapes():
    parser = GarmentParser().eval()
    assert parser(torch.randn(2, 3, 64, 64)).shape == (2, len(garments.PARTS), 64, 64)
    assert parser.parse(torch.randn(1, 3, 32, 32)).dtype == torch.int64
    with pytest.raises(ValueError, match="multiples of 8"):
        parser(torch.randn(1, 3, 60, 60))


def test_masked_ce_ignores_missing_labels():
    torch.manual_seed(0)
    logits = {a: torch.randn(3, n) for a, n in garments.NUM_CLASSES.items()}
    labels = torch.from_numpy(np.stack([garments.spec_for(0, i).attribute_vector() for i in range(3)]))
    base = masked_attribute_ce(logits, labels, garments.ATTRIBUTES)
    # Changing the logits of an attribute that is -1 everywhere leaves the loss unchanged.
    labels[:, 1] = -1
    changed = dict(logits, sleeve=logits["sleeve"] * 100)
    assert masked_attribute_ce(changed, labels, garments.ATTRIBUTES) == masked_attribute_ce(logits, labels, garments.ATTRIBUTES)
    assert base.item() > 0
    by_hand = sum(torch.nn.functional.cross_entropy(logits[a][labels[:, k] >= 0], labels[labels[:, k] >= 0, k])
                  for k, a in enumerate(garments.ATTRIBUTES) if (labels[:, k] >= 0).any())
    torch.testing.assert_close(masked_attribute_ce(logits, labels, garments.ATTRIBUTES), by_hand)
    with pytest.raises(ValueError, match="labels must be"):
        masked_attribute_ce(logits, labels[:, :3], garments.ATTRIBUTES)


def test_augmentation_is_seeded_and_mild():
    cache = garments.render_cache(1, 4, progress=False)
    x = transforms.to_model_input(cache.images)
    a = transforms.noise_and_blur(x, torch.Generator().manual_seed(0), 0.12, 1.0)
    b = transforms.noise_and_blur(x, torch.Generator().manual_seed(0), 0.12, 1.0)
    assert torch.equal(a, b) and a.shape == x.shape
    assert 0 < (a - x).abs().mean() < 0.15
    torch.testing.assert_close(transforms.gaussian_blur(x, torch.zeros(4)), x, atol=1e-5, rtol=0)


def test_ece_of_perfect_and_overconfident_predictions():
    labels = torch.tensor([0, 1, 0, 1])
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert metrics.expected_calibration_error(perfect, labels) == pytest.approx(0.0)
    wrong = perfect.flip(1)
    assert metrics.expected_calibration_error(wrong, labels) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["garments-oracle", "garments-parser"])
def test_train_export_and_load_round_trip(tmp_path, name):
    recipe = recipes.get_recipe(name)
    cache = garments.render_cache(0, 16, progress=False)
    cfg = supervised.SupervisedTrainConfig(batch_size=8, total_steps=4, warmup_steps=1, bf16=False, log_every=1,
                                   checkpoint_minutes=1e9)
    loss_fn = supervised.oracle_loss if recipe.kind == "oracle" else supervised.parser_loss
    steps, _ = supervised.train_supervised(recipes.build_evaluator(recipe), loss_fn, cache, cfg, tmp_path / "run",
                                   max_steps=2, progress=False)
    steps, _ = supervised.train_supervised(recipes.build_evaluator(recipe), loss_fn, cache, cfg, tmp_path / "run",
                                   max_steps=2, resume=True, progress=False)
    assert steps == 4
    entry = recipes.export_evaluator(name, workdir=tmp_path / "run", n_heldout=12, weights_dir=tmp_path / "w",
                                     manifest_path=tmp_path / "m.json", progress=False)
    assert entry["training_steps"] == 4 and "metrics" in entry
    model = loaders.load_evaluator(name, device="cpu", weights_dir=tmp_path / "w", manifest_path=tmp_path / "m.json")
    # the shipped model is the trained one rounded to fp16: same outputs on the same input
    trained = recipes.build_evaluator(recipe)
    trained.load_state_dict(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"])
    export.round_to_fp16(trained).eval()
    x = transforms.to_model_input(cache.images[:2])
    with torch.no_grad():
        out, ref = model(x), trained(x)
    if recipe.kind == "oracle":
        assert set(out) == set(ref)
        for head in out:
            torch.testing.assert_close(out[head], ref[head], atol=1e-5, rtol=1e-5)
    else:
        assert out.shape[0] == 2
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # and its published metrics are the ones this model earns on the export's held-out renders
    heldout = garments.render_cache(200, 12, progress=False)
    evaluate = classifiers.evaluate_oracle if recipe.kind == "oracle" else classifiers.evaluate_parser
    fresh = evaluate(model, heldout)
    published = entry["metrics"]["clean"] if recipe.kind == "oracle" else entry["metrics"]
    key = "mean_accuracy" if recipe.kind == "oracle" else "miou"
    assert fresh[key] == pytest.approx(published[key], abs=1e-6)
