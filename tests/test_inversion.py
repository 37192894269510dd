import pytest
import torch
from conftest import assert_same_state, model_state
from test_ascent import Boom, caller_state
from torch import nn

from helpers import capture_activations, invert_features, normalize, total_variation
from helpers.objectives import feature_loss


def photo(n: int = 1, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth random normalized images: upsampled 4x4 colour noise."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, 4, 4, generator=g)
    return normalize(nn.functional.interpolate(small, size=size, mode="bilinear", align_corners=False))


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


def wide_conv() -> nn.Sequential:
    """A (close to) invertible layer: 3 -> 24 channels, 3x3, ReLU (about 12 live channels per pixel >> 3)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(inplace=True)).eval()


def test_reconstruction_from_an_invertible_layer():
    model = wide_conv()
    x = photo(2)
    res = invert_features(model, x, "1", steps=150, lr=0.05, tv_weight=0.0)
    assert res.image.shape == x.shape and res.history.shape == (150, 2)
    assert (res.loss < 0.01).all()
    for i in range(2):
        assert corr(res.image[i], x[i]) > 0.95
        assert corr(res.image[i], x[1 - i]) < 0.8  # each reconstruction is its own image's
    start = invert_features(model, x, "1", steps=1, lr=0.0).image
    assert abs(corr(start[0], x[0])) < 0.3  # the start noise knows nothing about the photo


def test_feature_loss_decreases_and_is_what_it_says(tiny_cnn):
    x = photo(1, 16, seed=2)
    res = invert_features(tiny_cnn, x, "features.5", steps=60)
    assert res.loss_history[-1, 0] < 0.3 * res.loss_history[0, 0]
    with torch.no_grad(), capture_activations(tiny_cnn, "features.5") as acts:
        tiny_cnn(torch.cat([x, res.image]))
    f0, f = acts["features.5"][:1], acts["features.5"][1:]
    expected = (f - f0).pow(2).sum() / f0.pow(2).sum()
    assert torch.allclose(res.loss[0], expected, rtol=1e-4)
    assert torch.allclose(feature_loss(f, f0), expected[None], rtol=1e-5)


def test_tv_prior_smooths_the_reconstruction(tiny_cnn):
    x = photo(1, 16, seed=3)
    rough = invert_features(tiny_cnn, x, "features.5", steps=60, tv_weight=0.0)
    smooth = invert_features(tiny_cnn, x, "features.5", steps=60, tv_weight=2.0)
    assert total_variation(smooth.image, 2.0) < 0.5 * total_variation(rough.image, 2.0)
    small = invert_features(tiny_cnn, x, "features.5", steps=60, alpha_weight=1.0, alpha=6.0)
    assert small.image.abs().max() < rough.image.abs().max()


def test_errors(tiny_cnn):
    with pytest.raises(ValueError, match="features"):
        invert_features(tiny_cnn, photo(), "features.50", steps=1)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        invert_features(tiny_cnn, torch.zeros(8, 8), "features.5", steps=1)
    with pytest.raises(ValueError, match=r"expand\(-1, 3, -1, -1\)"):
        invert_features(tiny_cnn, photo()[:, :1], "features.5", steps=1)
    with torch.no_grad():
        tiny_cnn.features[0].bias.fill_(-100.0)
    with pytest.raises(ValueError, match="all zero"):
        invert_features(tiny_cnn, photo(), "features.1", steps=1)


def test_deterministic_and_state_unchanged(tiny_cnn):
    caller_state(tiny_cnn)
    tiny_cnn.features[6] = Boom()  # after the target: must never run
    before = model_state(tiny_cnn)
    x = photo()
    copy = x.clone()
    a = invert_features(tiny_cnn, x, "features.5", steps=10, seed=1)
    b = invert_features(tiny_cnn, x, "features.5", steps=10, seed=1)
    c = invert_features(tiny_cnn, x, "features.5", steps=10, seed=2)
    assert torch.equal(a.image, b.image) and not torch.allclose(a.image, c.image)
    assert torch.equal(x, copy)
    assert_same_state(before, model_state(tiny_cnn))
    tiny_cnn.features[4] = Boom(KeyboardInterrupt)
    before = model_state(tiny_cnn)
    with pytest.raises(KeyboardInterrupt):
        invert_features(tiny_cnn, x, "features.5", steps=2)
    assert_same_state(before, model_state(tiny_cnn))


def test_a_single_image_without_batch_dimension_is_one_image(tiny_cnn):
    x = photo()[:1]
    one = invert_features(tiny_cnn, x[0], "features.5", steps=2, seed=0)
    batched = invert_features(tiny_cnn, x, "features.5", steps=2, seed=0)
    assert one.image.shape == batched.image.shape == x.shape
    assert torch.equal(one.image, batched.image)
