import numpy as np
import pytest
import torch

from fashionlab import metrics, viz
from fashionlab.data import garments


def test_psnr_by_hand():
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[0] += 0.2  # mse 0.04 -> 10 log10(4 / 0.04) = 20 dB
    y[1] += 0.02
    assert metrics.psnr(x, y).tolist() == pytest.approx([20.0, 40.0], abs=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(x, y[:1])


def test_connected_components_counts_regions():
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 1:4, 1:4] = True          # 9 pixels
    mask[0, 6:8, 6:9] = True          # 6 pixels
    mask[0, 4, 4] = True              # touches the first block diagonally: 8-connected
    sizes = metrics.connected_components(mask)[0]
    assert sizes.tolist() == [10, 6]


def test_single_region_rate_on_renders_and_noise():
    real = torch.stack([garments.to_tensor(garments.render(garments.spec_for(3, i), 64).image) for i in range(24)])
    rate, ok = metrics.single_region_rate(real, garments.BACKGROUNDS["photo"])
    assert rate == 1.0 and ok.all()
    noise = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert metrics.single_region_rate(noise, garments.BACKGROUNDS["photo"])[0] < 0.5
    two = real[:1].clone()
    two[..., :, 30:34] = garments.to_tensor(np.full((64, 4, 3), 236, np.uint8))[..., :, :4]  # cut the garment in two
    assert metrics.single_region_rate(two, garments.BACKGROUNDS["photo"])[0] == 0.0


def test_viz_helpers():
    r = garments.render(garments.spec_for(0, 1), 64)
    over = viz.parts_overlay(r.image, r.parts)
    assert over.shape == r.image.shape and over.dtype == np.uint8
    assert (over[r.parts == 0] == r.image[r.parts == 0]).all()
    assert not (over[r.parts > 0] == r.image[r.parts > 0]).all()
    fig = viz.image_grid([r.image, garments.to_tensor(r.image), None], ncols=2, titles=["a", "b", ""])
    assert len(fig.axes) == 4
    with pytest.raises(ValueError, match="does not match"):
        viz.parts_overlay(r.image, r.parts[:10])
    with pytest.raises(ValueError, match="ncols"):
        viz.image_grid([r.image], ncols=0)
    hm = viz.heatmap(torch.tensor([[0.0, 1.0], [2.0, 4.0]]))
    assert hm.shape == (2, 2, 3) and hm.dtype == np.uint8
    assert hm[1, 1].sum() > hm[0, 1].sum() > hm[0, 0].sum()  # magma brightens with the value
    assert (viz.heatmap(np.zeros((3, 3))) == viz.heatmap(np.zeros((3, 3)), vmax=1.0)).all()
    with pytest.raises(ValueError, match="map"):
        viz.heatmap(np.zeros((2, 2, 2)))


def test_vit_perceptual_distance():
    from fashionlab.models.attrnet import attrnet_for

    torch.manual_seed(0)
    net = attrnet_for("garments-clip-s")
    pd_vit = metrics.ViTPerceptual(net.backbone, net.preprocess)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = (x + 0.3 * torch.randn(2, 3, 64, 64)).clamp(-1, 1).requires_grad_(True)
    dmap = pd_vit.distance_map(x, y)
    assert dmap.shape == (2, 1, 64, 64) and (dmap >= 0).all()
    assert torch.allclose(pd_vit(x, x), torch.zeros(2), atol=1e-6) and (pd_vit(x, y) > 0).all()
    (grad,) = torch.autograd.grad(pd_vit(x, y).sum(), y)
    assert grad.abs().sum() > 0  # differentiable: usable inside a background loss
    assert not any(p.requires_grad for p in pd_vit.parameters())
    with pytest.raises(ValueError, match="blocks must be"):
        metrics.ViTPerceptual(net.backbone, net.preprocess, blocks=(9,))
