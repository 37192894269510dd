"""Bad inputs that used to slip through (issue 24): each is refused once at the boundary with a one-line error
naming the argument and the fix, or handled correctly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import helpers
from helpers.objectives import channel_mean
from helpers.toolbox.engine import jitter, render

SIZE = 16


def photo(n: int = 1, seed: int = 0) -> torch.Tensor:
    return helpers.normalize(torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)))


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


# every public entry that takes an image checks it in _checks.as_batch (attribution, top_filters, deep_dream, ...)
IMAGE_ENTRIES = {
    "saliency_map": lambda m, x: helpers.saliency_map(m, x, 1),
    "grad_cam": lambda m, x: helpers.grad_cam(m, x, 1),
    "guided_backprop": lambda m, x: helpers.guided_backprop(m, x, 1),
    "occlusion": lambda m, x: helpers.occlusion_map(m, x, 1, patch=4, stride=4),
    "top_filters": lambda m, x: helpers.top_filters(m, x, "features.3", k=2),
    "deep_dream": lambda m, x: helpers.deep_dream(m, x, "features.3", steps=1, octaves=1),
    "visualize_filter start": lambda m, x: helpers.visualize_filter(m, "features.3", 0, start=x, steps=1),
    "render start": lambda m, x: render(m, channel_mean("features.3", 0), start=x, steps=1),
    "top_activations": lambda m, x: helpers.top_activations(m, [photo()[0], x[0]], "features.3", 0, k=1),
    "extract_features": lambda m, x: helpers.extract_features(m, x, "features.3"),
}


@pytest.mark.parametrize("entry", list(IMAGE_ENTRIES))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_pixel_is_refused_naming_the_argument(tiny_cnn, entry, bad):
    x = photo()
    x[0, 1, 3, 5] = bad
    with pytest.raises(ValueError, match=r"(image|start|image [01]) holds 1 NaN/inf value") as error:
        IMAGE_ENTRIES[entry](tiny_cnn, x)
    assert "nan_to_num" in one_line(error)


@pytest.mark.parametrize("entry", list(IMAGE_ENTRIES))
def test_uint8_pixels_are_refused_naming_the_normalizing_function(tiny_cnn, entry):
    x = (torch.rand(1, 3, SIZE, SIZE) * 255).to(torch.uint8)
    with pytest.raises(ValueError, match=r"dtype torch.uint8.*helpers\.normalize\(x\.float\(\) / 255\)") as error:
        IMAGE_ENTRIES[entry](tiny_cnn, x)
    one_line(error)


@pytest.mark.parametrize("entry", ["saliency_map", "grad_cam", "top_filters", "render start"])
def test_a_meta_tensor_is_refused(tiny_cnn, entry):
    with pytest.raises(ValueError, match="meta tensor") as error:
        IMAGE_ENTRIES[entry](tiny_cnn, torch.empty(1, 3, SIZE, SIZE, device="meta"))
    one_line(error)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("technique", [helpers.saliency_map, helpers.grad_cam, helpers.guided_backprop])
def test_other_float_precisions_are_cast_to_the_models_dtype(tiny_cnn, technique, dtype):
    x = photo(2)
    low = x.to(dtype)  # what the user has; the map must be the one of these very values in float32
    expected = technique(tiny_cnn, low.float(), [1, 3])
    got = technique(tiny_cnn, low, [1, 3])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # and a float64 model takes a float32 image as float64
    double = tiny_cnn.double()
    torch.testing.assert_close(technique(double, low.float(), [1, 3]), technique(double, low.double(), [1, 3]),
                               rtol=0, atol=0)


def test_a_nan_start_lr_or_prior_weight_is_refused_up_front_not_blamed_on_the_learning_rate(tiny_cnn):
    start = photo()
    start[0, 0, 0, 0] = float("nan")
    cases = {"start": {"start": start}, "lr": {"lr": float("nan")}, "tv_weight": {"tv_weight": float("nan")},
             "l2_weight": {"l2_weight": float("inf")}}
    for name, kwargs in cases.items():
        with pytest.raises(ValueError, match=name) as error:
            helpers.visualize_filter(tiny_cnn, "features.3", 0, steps=2, **kwargs)
        assert "Lower the learning rate" not in one_line(error)
    with pytest.raises(ValueError, match="tv_step"):
        helpers.deep_dream(tiny_cnn, photo(), "features.3", steps=1, octaves=1, tv_step=float("nan"))


def test_a_diverging_ascent_suggests_clamp_only_when_it_was_off(tiny_cnn):
    with pytest.raises(FloatingPointError, match=r"lr=1e\+30\): the ascent diverged; lower lr or pass clamp=True$"):
        render(tiny_cnn, channel_mean("features.3", 0) * 1e30, start=SIZE, steps=2, lr=1e30, optimizer="sgd",
               clamp=False)


def test_a_float_start_is_not_called_a_constant_start(tiny_cnn):
    with pytest.raises(ValueError, match=r"start must be a normalized image tensor or an integer size.*got float 32\.0"
                                         r".*fill=") as error:
        render(tiny_cnn, channel_mean("features.3", 0), start=32.0, steps=1)
    assert "constant start" not in one_line(error)
    with pytest.raises(ValueError, match=r"fill=32\.0 is outside \[0, 1\]"):
        render(tiny_cnn, channel_mean("features.3", 0), start=8, fill=32.0, steps=1)


def test_numpy_integers_are_integers(tiny_cnn):
    res = helpers.visualize_filter(tiny_cnn, "features.3", np.int64(1), start=np.int64(SIZE), steps=np.int64(3),
                                   jitter=np.int32(1))
    ref = helpers.visualize_filter(tiny_cnn, "features.3", 1, start=SIZE, steps=3, jitter=1)
    assert res.history.shape == (3, 1)
    torch.testing.assert_close(res.image, ref.image, rtol=0, atol=0)
    assert helpers.top_filters(tiny_cnn, photo(), "features.3", k=np.int64(2)).indices.shape == (1, 2)


@pytest.mark.parametrize("lr, error", [(float("nan"), ValueError), (-0.1, ValueError),
                                       ("0.1", TypeError)])
def test_a_bad_learning_rate_is_refused_naming_lr(tiny_cnn, lr, error):
    with pytest.raises(error, match="^lr must be") as caught:
        render(tiny_cnn, channel_mean("features.3", 0), start=SIZE, steps=1, lr=lr)
    one_line(caught)


def test_lbfgs_is_refused_as_unsupported(tiny_cnn):
    with pytest.raises(ValueError, match="does not support torch.optim.LBFGS.*'adam'"):
        render(tiny_cnn, channel_mean("features.3", 0), start=SIZE, steps=1,
               optimizer=lambda params: torch.optim.LBFGS(params))


def test_n_zero_empty_layers_and_a_transform_returning_none_are_refused(tiny_cnn):
    with pytest.raises(ValueError, match="^n must be an integer >= 1, got 0"):
        render(tiny_cnn, channel_mean("features.3", 0), start=SIZE, n=0, steps=1)
    with pytest.raises(ValueError, match=r"layers=\[\] names no layer"):
        helpers.deep_dream(tiny_cnn, photo(), [], steps=1, octaves=1)

    def forgets_to_return(x):
        x.add(1.0)

    with pytest.raises(TypeError, match="transform .*forgets_to_return.* returned NoneType, not a tensor"):
        render(tiny_cnn, channel_mean("features.3", 0), start=SIZE, steps=1, transforms=[forgets_to_return])


def test_jitter_draws_its_shifts_step_by_step_from_the_seeded_generator():
    t = jitter(3)
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    t.bind(g, 10**4)  # nothing is drawn before the first step (10**7 steps took 7.4 s and 1.5 GB when it was)
    assert torch.equal(g.get_state(), state)
    rolls = [t(torch.arange(49.0).view(1, 1, 7, 7)) for _ in range(4)]
    expected = torch.randint(-3, 4, (4, 2), generator=torch.Generator().manual_seed(5)).tolist()
    for rolled, (dy, dx) in zip(rolls, expected, strict=True):
        torch.testing.assert_close(rolled, torch.roll(torch.arange(49.0).view(1, 1, 7, 7), (dy, dx), (-2, -1)))
    first = jitter(3, unrolled_first=True)
    first.bind(torch.Generator().manual_seed(5), 4)
    x = torch.arange(49.0).view(1, 1, 7, 7)
    assert torch.equal(first(x), x)  # the first step is not rolled; the later ones are the same draws as above
    assert torch.equal(first(x), rolls[1])

