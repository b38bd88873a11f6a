import torch

from digits.augment import random_affine, warp


def square(at: tuple[int, int]) -> torch.Tensor:
    img = torch.zeros(1, 1, 28, 28)
    img[0, 0, at[0] : at[0] + 4, at[1] : at[1] + 4] = 1.0
    return img


def test_no_change_is_the_identity():
    theta = random_affine(3, torch.Generator().manual_seed(0), shift=0, rotate=0, scale=0)
    assert (theta == torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])).all()  # -0.0 == 0.0 here
    img = torch.rand(3, 1, 28, 28)
    assert torch.allclose(warp(img, theta), img, atol=1e-5)  # affine_grid rounds


def test_a_shift_moves_the_digit_by_whole_pixels():
    theta = torch.tensor([[[1.0, 0, 2 * 3 / 28], [0, 1.0, -2 * 2 / 28]]])  # sample 3 right, 2 up
    moved = warp(square((10, 10)), theta)
    assert torch.allclose(moved, square((12, 7)), atol=1e-5)


def test_limits_and_seed():
    draw = random_affine(1000, torch.Generator().manual_seed(1), shift=2, rotate=10, scale=0.1)
    again = random_affine(1000, torch.Generator().manual_seed(1), shift=2, rotate=10, scale=0.1)
    assert torch.equal(draw, again)
    shifts = draw[:, :, 2] * 28 / 2
    assert shifts.abs().max() <= 2 and shifts.abs().max() > 1.9
    zoom = 1 / draw[:, :, :2].det().sqrt()  # the matrix is rotation / zoom
    assert zoom.min() >= 0.9 - 1e-6 and zoom.max() <= 1.1 + 1e-6


def test_warp_keeps_ink_roughly():
    theta = random_affine(8, torch.Generator().manual_seed(2), shift=2, rotate=10, scale=0.1)
    img = square((12, 12)).expand(8, 1, 28, 28)
    ink = warp(img, theta).sum(dim=(1, 2, 3))
    assert torch.all((ink > 16 * 0.7) & (ink < 16 * 1.4))
