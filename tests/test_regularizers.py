import math

import torch

from helpers import l2, normalize, total_variation


def tv_reference(img: torch.Tensor) -> list[float]:
    """Eq. (1) of sheet 5 over H*W, one value per image, written out with loops over channel and every (i, j) with
    both neighbours."""
    n, c, h, w = img.shape
    out = []
    for b in range(n):
        total = 0.0
        for ch in range(c):
            x = img[b, ch].tolist()
            for i in range(h - 1):
                for j in range(w - 1):
                    total += math.sqrt((x[i + 1][j] - x[i][j]) ** 2 + (x[i][j + 1] - x[i][j]) ** 2)
        out.append(total / (h * w))
    return out


def test_tv_hand_computed_value():
    img = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]], dtype=torch.float64)
    # only (0, 0) has both neighbours: sqrt((2-0)^2 + (1-0)^2), over the 2 x 2 pixels
    assert total_variation(img).item() == math.sqrt(5) / 4


def test_tv_equals_equation_1_per_pixel_for_each_image():
    torch.manual_seed(0)
    img = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    got = total_variation(img)
    assert got.shape == (2,)
    for value, expected in zip(got.tolist(), tv_reference(img), strict=True):
        assert math.isclose(value, expected, rel_tol=1e-12)


def test_tv_per_pixel_does_not_grow_with_the_size():
    board = torch.zeros(1, 3, 8, 8)
    board[..., ::2, ::2] = board[..., 1::2, 1::2] = 1.0
    big = board.repeat(1, 1, 4, 4)  # the same checkerboard at 32 px: (H-1)(W-1)/(HW) terms of sqrt(2) per channel
    assert math.isclose(total_variation(board).item(), 3 * math.sqrt(2) * 7 * 7 / 64, rel_tol=1e-6)
    assert math.isclose(total_variation(big).item(), 3 * math.sqrt(2) * 31 * 31 / 1024, rel_tol=1e-6)


def test_tv_accepts_unbatched_image():
    img = torch.randn(3, 6, 6)
    assert torch.allclose(total_variation(img), total_variation(img[None]))


def test_tv_gradient_matches_finite_differences():
    torch.manual_seed(1)
    img = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(total_variation, (img,), eps=1e-6, atol=1e-5)


def test_tv_of_constant_image_is_zero_with_finite_gradient():
    img = torch.full((1, 3, 8, 8), 0.7, requires_grad=True)
    value = total_variation(img)
    (grad,) = torch.autograd.grad(value.sum(), img)
    assert value.item() == 0.0
    assert torch.isfinite(grad).all() and grad.abs().sum() == 0
    assert total_variation(normalize(torch.full((1, 3, 5, 5), 0.3))).item() < 1e-6


def test_tv_gradient_descent_smooths_noise():
    torch.manual_seed(2)
    img = torch.rand(1, 3, 16, 16, requires_grad=True)
    start = total_variation(img).item()
    opt = torch.optim.SGD([img], lr=0.01 * 256)
    for _ in range(20):
        opt.zero_grad()
        total_variation(img).sum().backward()
        opt.step()
    assert total_variation(img).item() < 0.5 * start


def test_tv_beta_2_is_the_sum_of_squared_differences_per_pixel():
    torch.manual_seed(3)
    img = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    dv = img[..., 1:, :-1] - img[..., :-1, :-1]
    dh = img[..., :-1, 1:] - img[..., :-1, :-1]
    assert torch.allclose(total_variation(img, beta=2.0), (dv**2 + dh**2).sum() / 25)


def test_l2_is_the_squared_norm_per_pixel_with_gradient_2x_over_hw():
    x = torch.tensor([[[1.0, -2.0], [3.0, 0.5]]], requires_grad=True)  # one image (1, 2, 2)
    value = l2(x)
    (grad,) = torch.autograd.grad(value.sum(), x)
    assert value.shape == (1,) and value.item() == (1 + 4 + 9 + 0.25) / 4
    assert torch.equal(grad, 2 * x.detach() / 4)
    assert torch.allclose(l2(torch.ones(2, 3, 8, 8)), torch.full((2,), 3.0))  # per pixel: 3 channels of 1
