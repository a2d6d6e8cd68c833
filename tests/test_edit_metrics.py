"""Metrics on known inputs: FID/KID, the offline perceptual distance, and the edit metrics."""

import numpy as np
import pytest
import torch

from fashionlab import metrics
from fashionlab.data import garments
from fashionlab.models.oracle import GarmentOracle


@pytest.fixture(scope="module")
def perceptual():
    torch.manual_seed(0)
    return metrics.OraclePerceptual(GarmentOracle())


def _renders(specs, size=64):
    return torch.stack([garments.to_tensor(garments.render(s, size).image) for s in specs])


def test_fid_is_zero_on_itself_and_grows_with_noise():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(400, 16, generator=g)
    assert abs(metrics.frechet_distance(feats, feats)) < 1e-6
    values = [metrics.frechet_distance(feats, feats + s * torch.randn(400, 16, generator=g)) for s in (0.1, 0.3, 0.6, 1.0)]
    assert all(b > a for a, b in zip(values[:-1], values[1:])), values
    shifted = metrics.frechet_distance(feats, feats + 2.0)
    assert shifted == pytest.approx(16 * 4.0, rel=1e-6)  # only the means differ: ||mu_a - mu_b||^2
    with pytest.raises(ValueError, match="same D"):
        metrics.frechet_distance(feats, feats[:, :3])


def test_kid_is_near_zero_on_same_distribution_and_positive_apart():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(300, 8, generator=g), torch.randn(300, 8, generator=g)
    same = metrics.kernel_inception_distance(a, b, generator=g)
    apart = metrics.kernel_inception_distance(a, b + 1.0, generator=g)
    assert abs(same) < 0.02 < apart


def test_mmd2_unbiased_is_kid_on_equal_subsets_and_unbiased():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(40, 8, generator=g), torch.randn(40, 8, generator=g)
    # one subset of every row is the full U-statistic
    assert metrics.kernel_inception_distance(a, b, subsets=1, generator=g) == pytest.approx(metrics.mmd2_unbiased(a, b))
    # unbiased: over many draws of one distribution the mean is 0 within its standard error
    values = torch.tensor([metrics.mmd2_unbiased(torch.randn(20, 8, generator=g), torch.randn(30, 8, generator=g))
                           for _ in range(300)], dtype=torch.float64)
    assert abs(values.mean()) < 3 * values.std() / 300 ** 0.5
    assert (values < 0).any()  # a U-statistic, not clipped at 0
    with pytest.raises(ValueError, match="at least 2"):
        metrics.mmd2_unbiased(a[:1], b)


def test_bootstrap_biases_kid_and_fid_upward_and_the_jackknife_does_not_leave_the_estimate():
    """The defect the jackknife replaces: resampling rows with replacement duplicates them, which
    inflates KID's within-set kernel means, so the bootstrap interval can miss its own estimate."""
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(32, 8, generator=g), torch.randn(32, 8, generator=g) + 0.3
    value, low, _ = metrics.bootstrap_ci(metrics.mmd2_unbiased, a, b, rounds=200, generator=g)
    assert low > value  # the old interval lies wholly above the estimate
    for statistic in (metrics.mmd2_unbiased, metrics.frechet_distance):
        for paired in (False, True):
            value, low, high = metrics.jackknife_ci(statistic, a, b, paired=paired)
            assert low < value < high and value == pytest.approx(statistic(a, b))
            assert value - low == pytest.approx(high - value)


def test_jackknife_interval_covers_the_true_value_about_as_often_as_it_says():
    """Coverage of the population value by 95 % intervals over 200 independent draws: a mean (n = 25)
    and KID between two samples of one distribution (true value 0, n = 32 each)."""
    g = torch.Generator().manual_seed(5)
    covered_mean = covered_kid = 0
    for _ in range(200):
        x = torch.randn(25, dtype=torch.float64, generator=g) + 1.0
        _, low, high = metrics.jackknife_ci(lambda v: v.mean(), x)
        covered_mean += low <= 1.0 <= high
        _, low, high = metrics.jackknife_ci(metrics.mmd2_unbiased, torch.randn(32, 4, generator=g),
                                            torch.randn(32, 4, generator=g))
        covered_kid += low <= 0.0 <= high
    assert 0.90 <= covered_mean / 200 <= 0.99, covered_mean
    assert 0.88 <= covered_kid / 200 <= 1.0, covered_kid


def test_jackknife_interval_narrows_with_more_rows_and_refuses_bad_input():
    g = torch.Generator().manual_seed(6)
    big_a, big_b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g) + 0.5
    widths = []
    for n in (50, 400):
        _, low, high = metrics.jackknife_ci(metrics.frechet_distance, big_a[:n], big_b[:n], groups=25)
        widths.append(high - low)
    assert widths[1] < 0.6 * widths[0], widths
    with pytest.raises(ValueError, match="same length"):
        metrics.jackknife_ci(metrics.frechet_distance, big_a[:10], big_b[:20], paired=True)
    with pytest.raises(ValueError, match="at least 2 rows"):
        metrics.jackknife_ci(lambda v: v.mean(), torch.ones(1))
    with pytest.raises(ValueError, match="level"):
        metrics.jackknife_ci(lambda v: v.mean(), torch.ones(5), level=1.5)


def test_bootstrap_interval_contains_the_value():
    g = torch.Generator().manual_seed(2)
    v = torch.rand(200, generator=g)
    mean, low, high = metrics.mean_ci(v, generator=g)
    assert low < mean < high and high - low < 0.2
    with pytest.raises(ValueError, match="at least one"):
        metrics.mean_ci(torch.tensor([]))


def test_perceptual_is_zero_on_identical_images(perceptual):
    x = _renders([garments.spec_for(0, i) for i in range(3)])
    assert torch.allclose(perceptual(x, x), torch.zeros(3))
    y = _renders([garments.spec_for(0, i).edit(colour="red" if garments.spec_for(0, i).colour != "red" else "blue") for i in range(3)])
    assert (perceptual(x, y) > 0).all()
    with pytest.raises(ValueError, match="in \\[-1, 1\\]"):
        perceptual(x * 3, x)


def test_preservation_ignores_inside_and_counts_outside(perceptual):
    spec = garments.GarmentSpec("t-shirt", sleeve="short", neckline="round", colour="blue")
    source = garments.render(spec, 64)
    edited = garments.render(spec.edit(sleeve="long"), 64)
    region = garments.region_mask(source.parts, "sleeve") | garments.region_mask(edited.parts, "sleeve")
    x, y = garments.to_tensor(source.image)[None], garments.to_tensor(edited.image)[None]
    # A re-rendered sleeve edit: outside the sleeves only the soft photo shading moves (by ~1/255).
    rerender = metrics.preservation(x, y, region[None], perceptual)
    assert rerender["l2_outside"].item() < 1e-4
    # A change confined to the region is ignored exactly.
    inside = torch.where(region[None, None], -x, x)
    inside_only = metrics.preservation(x, inside, region[None], perceptual)
    assert inside_only["l2_outside"].item() == 0.0
    assert metrics.preservation(x, x.clone(), region[None], perceptual)["perceptual_outside"].item() == 0.0
    # A change outside the region is counted.
    z = x.clone()
    z[..., :8, :8] = -1.0
    corner = metrics.preservation(x, z, region[None], perceptual)
    assert corner["l2_outside"].item() > 0.01 and corner["perceptual_outside"].item() > 0.05
    # The perceptual distance leaks across the region's border (receptive fields): inverting the
    # sleeves scores 0.1-0.4 outside them, the order of the corner change (0.14), far above a
    # re-render's shading (0.06). l2_outside is the measure that ignores the inside exactly.
    assert rerender["perceptual_outside"].item() < 0.1
    assert 0.1 < inside_only["perceptual_outside"].item() < 0.4
    with pytest.raises(ValueError, match="region must be a bool"):
        metrics.preservation(x, y, region[None].float())


def test_success_and_consistency_on_re_rendered_pairs():
    """A perfect grader (the ground truth of re-rendered edits) gives exactly the expected numbers."""
    specs = [garments.spec_for(3, i) for i in range(20)]
    edits = [s.edit(colour="green" if s.colour != "green" else "pink") for s in specs]
    source_labels = torch.from_numpy(np.stack([s.attribute_vector() for s in specs]))
    edited_labels = torch.from_numpy(np.stack([s.attribute_vector() for s in edits]))
    colour = garments.SCHEMA["colour"]
    targets = [colour.index(e.colour) for e in edits]
    for k in range(len(specs)):
        ok = metrics.attribute_success(edited_labels[k:k + 1], {"colour": targets[k]}, garments.ATTRIBUTES)
        assert ok.item()
    assert not metrics.attribute_success(source_labels[:1], {"colour": targets[0]}, garments.ATTRIBUTES).item()
    consistency = metrics.attribute_consistency(edited_labels, source_labels, ["colour"], garments.ATTRIBUTES)
    assert torch.equal(consistency, torch.ones(20))
    # One more attribute changed on one image: its consistency drops by 1 / (number of other applicable attributes).
    broken = edited_labels.clone()
    broken[0, garments.ATTRIBUTES.index("fabric")] = (broken[0, garments.ATTRIBUTES.index("fabric")] + 1) % 4
    n_other = int(((source_labels[0] >= 0).sum()) - 1)
    value = metrics.attribute_consistency(broken, source_labels, ["colour"], garments.ATTRIBUTES)[0].item()
    assert value == pytest.approx(1 - 1 / n_other)
    with pytest.raises(ValueError, match="unknown target attribute"):
        metrics.attribute_success(edited_labels, {"hue": 1}, garments.ATTRIBUTES)


def test_lpips_alex_full_path_with_random_backbone():
    net = metrics.LPIPSAlex(random_backbone=True)
    x = _renders([garments.spec_for(0, 0)])
    assert net(x, x).abs().max().item() < 1e-6
    assert net.distance_map(x, x).shape == (1, 1, 64, 64)


def test_feature_extractors():
    x = _renders([garments.spec_for(0, i) for i in range(2)])
    torch.manual_seed(0)
    assert metrics.oracle_features(GarmentOracle())(x).shape == (2, 192)
    assert metrics.inception_features(random_weights=True)(x).shape == (2, 2048)


def test_metrics_name_the_bad_argument():
    source = torch.rand(2, 3, 16, 16) * 2 - 1
    region = torch.zeros(2, 16, 16, dtype=torch.bool)
    bad = source.clone()
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="edited contains NaN"):
        metrics.preservation(source, bad, region)
    with pytest.raises(ValueError, match="source and edited must have the same shape"):
        metrics.preservation(source, source[:, :, :8, :8], region)


def test_inception_features_follow_the_images_device():
    """Under full on a GPU the batch is on CUDA: the network must move to it (here the meta device
    stands in for CUDA, which this machine lacks: a network left on the CPU would refuse it)."""
    extract = metrics.inception_features(random_weights=True)
    assert extract(torch.zeros(1, 3, 64, 64)).device.type == "cpu"
    features = extract(torch.zeros(2, 3, 64, 64, device="meta"))
    assert features.device.type == "meta" and features.shape == (2, 2048)
