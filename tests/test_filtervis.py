"""Sheet 5's plain loops (helpers.filtervis) against the package's general engine, autograd and hand values."""

import pytest
import torch
from conftest import assert_same_state, model_state
from torch import nn

from helpers import deep_dream, denormalize, objective_score, total_variation, visualize_filter
from helpers import filtervis as FV
from helpers.objectives import layer_rms


def test_rand_img_is_noise_in_the_grey_levels():
    img = denormalize(FV.rand_img(16, 150, 180, seed=3)) * 255
    assert img.shape == (1, 3, 16, 16)
    assert img.min() > 149.99 and img.max() < 180.01 and img.std() > 5
    assert torch.allclose(denormalize(FV.rand_img(8, 128, 128)) * 255, torch.full((1, 3, 8, 8), 128.0), atol=1e-4)
    assert torch.equal(FV.rand_img(8, seed=1), FV.rand_img(8, seed=1))
    with pytest.raises(ValueError, match="grey levels"):
        FV.rand_img(8, 200, 100)


def test_tv_loss_is_eq1_by_hand_and_matches_the_exact_total_variation():
    t = torch.tensor([[[[0.0, 1.0, 1.0], [2.0, 3.0, 5.0], [2.0, 2.0, 2.0]]]])
    assert FV.tv_loss(t).item() == pytest.approx(2 * 5**0.5 + 3, abs=1e-5)
    x = torch.randn(2, 3, 9, 7, requires_grad=True)
    terms = 3 * 8 * 6
    assert torch.allclose(FV.tv_loss(x) / (9 * 7), total_variation(x), atol=terms * FV.TV_EPS**0.5)  # per pixel
    (g_plain,) = torch.autograd.grad(FV.tv_loss(x).sum(), x)
    (g_exact,) = torch.autograd.grad(total_variation(x).sum() * (9 * 7), x)
    assert torch.allclose(g_plain, g_exact, atol=1e-4)


def test_tv_loss_gradient_is_zero_not_nan_on_a_flat_image():
    x = torch.ones(1, 3, 5, 5, requires_grad=True)
    (g,) = torch.autograd.grad(FV.tv_loss(x).sum(), x)
    assert torch.equal(g, torch.zeros_like(g))


@pytest.mark.parametrize("settings", [dict(), dict(jitter=2), dict(tv_weight=0.5, jitter=1),
                                      dict(optimizer="sgd", lr=5.0)])
def test_visualize_filters_is_the_engine_with_the_same_settings(tiny_cnn, settings):
    start = FV.rand_img(16, seed=2)
    knobs = dict(lr=0.1, jitter=0, tv_weight=0.0, optimizer="adam") | settings
    img, hist = FV.visualize_filters(tiny_cnn, 5, [3, 7], start, num_optim_steps=6, seed=4, **knobs)
    ref = visualize_filter(tiny_cnn, "features.5", [3, 7], start=start, steps=6, seed=4, channels_last=False, **knobs)
    assert torch.allclose(img, ref.image, atol=1e-5)
    assert torch.allclose(hist, ref.history, atol=1e-5)
    assert torch.allclose(FV.filter_activation(tiny_cnn, 5, [3, 7], img), ref.score, atol=1e-5)


def test_visualize_filters_raises_its_filter_and_leaves_the_model_and_start_alone(tiny_cnn):
    start = FV.rand_img(16, seed=0)
    copy, before = start.clone(), model_state(tiny_cnn)
    img, hist = FV.visualize_filters(tiny_cnn, 2, [1, 5], start, num_optim_steps=15, lr=0.1)
    assert hist.shape == (15, 2)
    end, first = FV.filter_activation(tiny_cnn, 2, [1, 5], img), FV.filter_activation(tiny_cnn, 2, [1, 5], start)
    assert (end > first + 0.05).all()
    assert_same_state(before, model_state(tiny_cnn))
    assert torch.equal(start, copy)
    pixels = denormalize(img)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6


def test_dream_objective_is_the_engines_layer_rms(tiny_cnn):
    x = FV.rand_img(16, 0, 255, seed=1)
    plain = FV.dream_objective(tiny_cnn, x, [3, 6])
    ref = objective_score(tiny_cnn, x, layer_rms(["features.3", "features.6"]))
    assert torch.allclose(plain, ref, rtol=1e-5)
    with pytest.raises(ValueError, match="ReLU"):
        FV.dream_objective(tiny_cnn, x, [2])


def test_dream_is_the_engine_without_tv_and_tv_smooths_it(tiny_cnn):
    photo = FV.rand_img(32, 0, 255, seed=5)
    before = model_state(tiny_cnn)
    plain = FV.dream(tiny_cnn, photo, [3, 6], steps=4, lr=0.05, octaves=2, jitter=2, seed=1)
    ref = deep_dream(tiny_cnn, photo, ["features.3", "features.6"], steps=4, lr=0.05, octaves=2, jitter=2, seed=1,
                     channels_last=False)
    assert torch.allclose(plain, ref.image, atol=1e-5)
    assert_same_state(before, model_state(tiny_cnn))
    with torch.no_grad():
        assert FV.dream_objective(tiny_cnn, plain, [3, 6]) > 1.05 * FV.dream_objective(tiny_cnn, photo, [3, 6])
    smooth = FV.dream(tiny_cnn, photo, [3, 6], steps=4, lr=0.05, octaves=2, jitter=2, seed=1, tv_weight=50.0)
    assert FV.tv_loss(smooth) < 0.9 * FV.tv_loss(plain)


def test_vgg_names_and_random_filters():
    features = torch.nn.Module()
    from torchvision.models.vgg import cfgs, make_layers

    features.features = make_layers(cfgs["D"])
    assert [FV.vgg_name(features, i) for i in (0, 4, 11, 17, 20, 24, 27, 28)] == [
        "conv1_1", "pool1", "relu3_1", "conv4_1", "relu4_2", "conv5_1", "relu5_2", "conv5_3"]
    chans = FV.random_filters(features, 17, 6, seed=3)
    assert len(set(chans)) == 6 and all(0 <= c < 512 for c in chans)
    assert chans == FV.random_filters(features, 17, 6, seed=3)
    with pytest.raises(ValueError, match="between 1 and 512"):
        FV.random_filters(features, 17, 513)
    assert isinstance(features.features[17], nn.Conv2d)


def test_a_shorter_run_is_the_beginning_of_a_longer_one(tiny_cnn):
    # sheet 5, Task 1.5 says so: same start, same seed, so the same jitter and the same first steps
    start = FV.rand_img(16, seed=1)
    short, short_hist = FV.visualize_filters(tiny_cnn, 5, [2], start, num_optim_steps=3, jitter=2, seed=7)
    _, long_hist = FV.visualize_filters(tiny_cnn, 5, [2], start, num_optim_steps=8, jitter=2, seed=7)
    assert torch.equal(short_hist, long_hist[:3])
    assert not torch.equal(short_hist[-1], long_hist[-1])
