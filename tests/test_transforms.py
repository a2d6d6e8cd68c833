import pytest
import torch

from fashionlab.data import transforms
from fashionlab.data.transforms import check_images


def test_check_images_accepts_a_valid_batch():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert check_images(x, size=8) is x
    assert check_images(torch.zeros(1, 3, 16, 24), size=8, multiple_of=8) is not None  # a UNet's other sizes


def test_check_images_multiple_names_the_trained_size():
    with pytest.raises(ValueError, match="divisible by 8 for this model \\(it was trained at 64x64\\), got 63x63"):
        check_images(torch.zeros(1, 3, 63, 63), size=64, multiple_of=8)


@pytest.mark.parametrize("bad, error, match", [
    ([[0.0]], TypeError, "x must be a torch.Tensor"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), TypeError, "float tensor"),
    (torch.zeros(3, 8, 8), ValueError, r"\(B, 3, H, W\)"),
    (torch.zeros(1, 1, 8, 8), ValueError, r"\(B, 3, H, W\)"),
    (torch.zeros(0, 3, 8, 8), ValueError, "non-empty"),
    (torch.zeros(1, 3, 7, 8), ValueError, "8x8 pixels"),
    (torch.zeros(1, 3, 16, 16), ValueError, "must be 8x8 pixels"),
    (torch.full((1, 3, 8, 8), float("nan")), ValueError, "NaN"),
    (torch.full((1, 3, 8, 8), float("inf")), ValueError, "NaN or infinite"),
    (torch.full((1, 3, 8, 8), 255.0), ValueError, r"in \[-1, 1\]"),
])
def test_check_images_names_the_argument(bad, error, match):
    with pytest.raises(error, match=match):
        check_images(bad, "x", size=8)


def test_colour_blocks_paints_one_flat_colour_on_the_background():
    from fashionlab.data import garments

    images = garments.render_batch([garments.spec_for(5, i) for i in range(4)])
    background = garments.BACKGROUNDS["photo"]
    blocks = transforms.colour_blocks(images, background, cells=16)
    assert blocks.shape == images.shape
    bg = torch.tensor(background).view(3, 1, 1) / 127.5 - 1
    for image in blocks:
        is_bg = (image - bg).abs().amax(0) < 1e-6
        assert 0.05 < float((~is_bg).float().mean()) < 0.8  # a silhouette, neither empty nor full
        colours = image[:, ~is_bg].T.unique(dim=0)
        assert len(colours) == 1  # one flat colour: pattern and texture are gone
    with pytest.raises(ValueError, match="cells must divide"):
        transforms.colour_blocks(images, background, cells=7)


def test_reframe_is_the_identity_without_zoom_or_shift_and_varies_otherwise():
    from fashionlab.data import garments

    images = garments.render_batch([garments.spec_for(5, i, "all") for i in range(6)])
    same = transforms.reframe(images, torch.Generator().manual_seed(0), zoom=(1, 1), shift=0.0, crop_prob=0.0)
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)
    framed = transforms.reframe(images, torch.Generator().manual_seed(0), crop_prob=1.0)
    assert framed.shape == images.shape and (framed - images).abs().mean() > 0.02
    again = transforms.reframe(images, torch.Generator().manual_seed(0), crop_prob=1.0)
    torch.testing.assert_close(framed, again)
    with pytest.raises(ValueError, match="zoom must be"):
        transforms.reframe(images, torch.Generator(), zoom=(1.2, 0.8))
    with pytest.raises(ValueError, match="crop_prob must be"):
        transforms.reframe(images, torch.Generator(), crop_prob=1.5)
