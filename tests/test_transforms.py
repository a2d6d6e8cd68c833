import pytest
import torch

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
