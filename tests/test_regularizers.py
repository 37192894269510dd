import math

import torch

from helpers import l2, normalize, total_variation, tv_per_pixel


def tv_reference(img: torch.Tensor) -> float:
    """Eq. (1) of sheet 5, written out with loops over batch, channel and every (i, j) with both neighbours."""
    n, c, h, w = img.shape
    total = 0.0
    for b in range(n):
        for ch in range(c):
            x = img[b, ch].tolist()
            for i in range(h - 1):
                for j in range(w - 1):
                    total += math.sqrt((x[i + 1][j] - x[i][j]) ** 2 + (x[i][j + 1] - x[i][j]) ** 2)
    return total


def test_tv_hand_computed_value():
    img = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]], dtype=torch.float64)
    # only (0, 0) has both neighbours: sqrt((2-0)^2 + (1-0)^2)
    assert total_variation(img).item() == math.sqrt(5)


def test_tv_equals_equation_1():
    torch.manual_seed(0)
    img = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    assert math.isclose(total_variation(img).item(), tv_reference(img), rel_tol=1e-12)


def test_tv_accepts_unbatched_image():
    img = torch.randn(3, 6, 6)
    assert torch.allclose(total_variation(img), total_variation(img[None]))


def test_tv_gradient_matches_finite_differences():
    torch.manual_seed(1)
    img = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(total_variation, (img,), eps=1e-6, atol=1e-5)


def test_tv_of_constant_image_is_zero_with_finite_gradient():
    img = torch.full((1, 3, 8, 8), 0.7, requires_grad=True)
    value = total_variation(img)
    (grad,) = torch.autograd.grad(value, img)
    assert value.item() == 0.0
    assert torch.isfinite(grad).all() and grad.abs().sum() == 0


def test_tv_gradient_descent_smooths_noise():
    torch.manual_seed(2)
    img = torch.rand(1, 3, 16, 16, requires_grad=True)
    start = total_variation(img).item()
    opt = torch.optim.SGD([img], lr=0.01)
    for _ in range(20):
        opt.zero_grad()
        total_variation(img).backward()
        opt.step()
    assert total_variation(img).item() < 0.5 * start


def test_tv_beta_2_is_sum_of_squared_differences():
    torch.manual_seed(3)
    img = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    dv = img[..., 1:, :-1] - img[..., :-1, :-1]
    dh = img[..., :-1, 1:] - img[..., :-1, :-1]
    assert torch.allclose(total_variation(img, beta=2.0), (dv**2 + dh**2).sum())


def test_l2_is_squared_norm_with_gradient_2x():
    x = torch.tensor([[1.0, -2.0], [3.0, 0.5]], requires_grad=True)
    value = l2(x)
    (grad,) = torch.autograd.grad(value, x)
    assert value.item() == 1 + 4 + 9 + 0.25
    assert torch.equal(grad, 2 * x.detach())


def test_tv_per_pixel_is_equation_1_per_pixel_in_pixel_units():
    torch.manual_seed(1)
    pixels = torch.rand(2, 3, 6, 9, dtype=torch.float64)
    per_pixel = tv_per_pixel(normalize(pixels))
    assert per_pixel.shape == (2,)
    for b in range(2):  # undoing the normalization gives the pixels back; 3 channels x 5 x 8 terms of Eq. (1)
        assert math.isclose(per_pixel[b].item(), tv_reference(pixels[b:b + 1]) / (3 * 5 * 8), rel_tol=1e-5)
    board = torch.zeros(1, 3, 4, 4)
    board[..., ::2, ::2] = board[..., 1::2, 1::2] = 1.0
    assert math.isclose(tv_per_pixel(normalize(board)).item(), math.sqrt(2), rel_tol=1e-5)
    assert tv_per_pixel(normalize(torch.full((1, 3, 5, 5), 0.3))).item() < 1e-6
