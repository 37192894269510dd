import math

import pytest
import torch
from conftest import assert_same_state, model_state
from test_ascent import Boom, caller_state
from torch import nn

from helpers import DREAM_LAYERS, capture_activations, deep_dream, total_variation, valid_range
from helpers.objectives import layer_rms
from helpers.toolbox.engine import jitter_shifts, objective_score


def photo(seed: int = 0, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low, high = valid_range(torch.zeros(1))
    return low + (high - low) * torch.rand(1, 3, size, size, generator=g)


def rms(acts: torch.Tensor) -> torch.Tensor:
    a = acts.flatten(1)
    return a.norm(dim=1) / math.sqrt(a.shape[1])


def test_activation_norm_rises_at_every_octave(tiny_cnn):
    image = photo()
    res = deep_dream(tiny_cnn, image, "features.3", steps=8, octaves=3, octave_scale=1.4, jitter=2)
    assert res.image.shape == image.shape
    assert res.sizes == [(16, 16), (23, 23), (32, 32)]
    assert res.octave_start.shape == res.octave_end.shape == (3, 1)
    assert (res.octave_end > res.octave_start * 1.05).all()
    assert all(h.shape == (8, 1) for h in res.octave_history)


def test_objective_is_the_sum_of_layer_norms(tiny_cnn):
    image = photo(1)
    layers = ["features.1", "features.4"]
    res = deep_dream(tiny_cnn, image, layers, steps=1, octaves=1, jitter=0, layer_weights=[1.0, 2.0])
    with torch.no_grad(), capture_activations(tiny_cnn, layers) as acts:
        tiny_cnn(image)
    expected = rms(acts["features.1"]) + 2 * rms(acts["features.4"])
    assert torch.allclose(res.octave_start[0], expected, rtol=1e-5)


def test_step_is_normalized_by_mean_absolute_gradient(tiny_cnn):
    image = photo(2)
    res = deep_dream(tiny_cnn, image, "features.3", steps=1, octaves=1, jitter=0, lr=0.01, clamp=False)
    assert math.isclose((res.image - image).abs().mean().item(), 0.01, rel_tol=1e-4)


def test_detail_is_carried_to_the_next_octave(tiny_cnn):
    image = photo(3)
    plain = deep_dream(tiny_cnn, image, "features.3", steps=1, octaves=1, jitter=0, lr=0.0)
    dream = deep_dream(tiny_cnn, image, "features.3", steps=10, octaves=2, jitter=0)
    # the full-size octave starts from the photo plus the upsampled detail, not from the plain photo
    assert dream.octave_start[1] > plain.octave_start[0] * 1.05


def test_works_inside_no_grad(tiny_cnn):
    with torch.no_grad():
        res = deep_dream(tiny_cnn, photo(), "features.3", steps=3, octaves=1)
    assert res.octave_end[0] > res.octave_start[0]


def test_pixels_stay_in_the_valid_range(tiny_cnn):
    res = deep_dream(tiny_cnn, photo(4), "features.3", steps=10, octaves=2, lr=0.5)
    low, high = valid_range(res.image)
    assert (res.image >= low - 1e-6).all() and (res.image <= high + 1e-6).all()


def test_tv_step_smooths(tiny_cnn):
    image = photo(5)
    rough = deep_dream(tiny_cnn, image, "features.3", steps=10, octaves=1, jitter=0)
    smooth = deep_dream(tiny_cnn, image, "features.3", steps=10, octaves=1, jitter=0, tv_step=0.5)
    assert total_variation(smooth.image) < total_variation(rough.image)


def test_deterministic_given_seed(tiny_cnn):
    image = photo(6)
    a = deep_dream(tiny_cnn, image, "features.3", steps=4, octaves=2, jitter=3, seed=1)
    b = deep_dream(tiny_cnn, image, "features.3", steps=4, octaves=2, jitter=3, seed=1)
    c = deep_dream(tiny_cnn, image, "features.3", steps=4, octaves=2, jitter=3, seed=2)
    assert torch.equal(a.image, b.image)
    assert not torch.allclose(a.image, c.image)


def test_caller_state_and_input_unchanged(tiny_cnn):
    caller_state(tiny_cnn)
    image = photo(7)
    copy = image.clone()
    before = model_state(tiny_cnn)
    deep_dream(tiny_cnn, image, ["features.1", "features.3"], steps=3, octaves=2, tv_step=0.1)
    assert_same_state(before, model_state(tiny_cnn))
    assert torch.equal(image, copy)


def test_forward_stops_at_the_deepest_target_and_cleans_up_on_error(tiny_cnn):
    tiny_cnn.features[4] = Boom()
    tiny_cnn.classifier = Boom()
    before = model_state(tiny_cnn)
    deep_dream(tiny_cnn, photo(), ["features.3", "features.1"], steps=2, octaves=2)
    with pytest.raises(AssertionError, match="this layer ran"):
        deep_dream(tiny_cnn, photo(), ["features.3", "features.5"], steps=2, octaves=2)
    assert_same_state(before, model_state(tiny_cnn))


def test_bad_arguments(tiny_cnn):
    with pytest.raises(ValueError, match="features"):
        deep_dream(tiny_cnn, photo(), "features.9")
    with pytest.raises(ValueError, match="octave_scale"):
        deep_dream(tiny_cnn, photo(), "features.3", octave_scale=1.0)
    with pytest.raises(ValueError, match="layer_weights"):
        deep_dream(tiny_cnn, photo(), ["features.3"], layer_weights=[1.0, 2.0])


def test_tv_gradient_is_taken_on_the_unrolled_image():
    # a network whose objective has zero gradient: every step is the pure TV step, which we can compute
    flat = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    nn.init.zeros_(flat[0].weight)
    image, lr, tv_step, jitter, seed = photo(8, size=12), 0.05, 0.7, 5, 3
    shifts = jitter_shifts(3, jitter, torch.Generator().manual_seed(seed))
    assert all(shift != (0, 0) for shift in shifts[1:])  # steps 2 and 3 are rolled
    res = deep_dream(flat, image, "1", steps=3, octaves=1, jitter=jitter, lr=lr, tv_step=tv_step,
                     clamp=False, seed=seed)
    expected = image.clone()
    for _ in range(3):
        x = expected.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(total_variation(x).sum(), x)
        expected = expected - lr * tv_step * g / g.abs().mean()
    # on the rolled image the seam (last row/column next to the first) would count as an edge and be smoothed
    assert torch.allclose(res.image, expected, atol=1e-6)


class VGG16Features(nn.Module):
    """torchvision's VGG16 convolutional part, same module names (``features.N``), random weights."""

    def __init__(self) -> None:
        from torchvision.models.vgg import cfgs, make_layers

        super().__init__()
        self.features = make_layers(cfgs["D"])

    def forward(self, x):
        return self.features(x)


def test_default_layers_are_vgg16_relu_outputs():
    torch.manual_seed(0)
    vgg = VGG16Features().eval()
    for name in DREAM_LAYERS:  # each default is the ReLU right after a convolution
        index = int(name.split(".")[1])
        assert isinstance(vgg.features[index], nn.ReLU) and isinstance(vgg.features[index - 1], nn.Conv2d)
    image = photo(9, size=32)
    res = deep_dream(vgg, image, steps=1, octaves=1, jitter=0)
    convs = [f"features.{int(name.split('.')[1]) - 1}" for name in DREAM_LAYERS]
    with torch.no_grad(), capture_activations(vgg, [*DREAM_LAYERS, *convs]) as acts:
        vgg(image)
    post = sum(rms(acts[name]) for name in DREAM_LAYERS)
    pre = sum(rms(acts[name]) for name in convs)
    assert torch.allclose(res.octave_start[0], post, rtol=1e-4)
    assert not torch.allclose(post, pre, rtol=1e-2)  # the ReLU outputs, not the conv outputs, are maximized


def test_default_layers_need_a_vgg16(tiny_cnn):
    with pytest.raises(ValueError, match="pass layers="):
        deep_dream(tiny_cnn, photo())


class InterruptAtForward:
    """A forward hook raising KeyboardInterrupt (Ctrl-C) at the ``k``-th forward pass (0-based) of the model."""

    def __init__(self, k: int) -> None:
        self.k, self.calls = k, 0

    def __call__(self, module, inputs, output):
        self.calls += 1
        if self.calls - 1 == self.k:
            raise KeyboardInterrupt


def dream_with_interrupt(model, image, k, **opts):
    hook = InterruptAtForward(k)
    handle = model.features[3].register_forward_hook(hook)
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            return deep_dream(model, image, "features.3", **opts), hook.calls
    finally:
        handle.remove()


def test_ctrl_c_stops_the_dream_and_returns_the_octaves_so_far(tiny_cnn):
    caller_state(tiny_cnn)
    before = model_state(tiny_cnn)
    image = photo(10, size=20)
    opts = dict(steps=4, octaves=3, octave_scale=1.5, jitter=2, seed=3)
    # each octave: 4 steps + 1 pass for the final score. Ctrl-C at the 3rd pass: octave 1 after 2 steps, then stop
    # (+ 1 pass scoring the returned image, the detail carried to the photo's size)
    res, calls = dream_with_interrupt(tiny_cnn, image, 2, **opts)
    assert_same_state(before, model_state(tiny_cnn))
    assert res.interrupted and [h.shape[0] for h in res.octave_history] == [2] and calls == 5  # no octave after
    assert res.image.shape == image.shape and res.sizes == [(9, 9)]
    # Ctrl-C at the first step of octave 2 (pass 6): octave 1 complete, the same as in an uninterrupted dream
    res, calls = dream_with_interrupt(tiny_cnn, image, 5, **opts)
    assert_same_state(before, model_state(tiny_cnn))
    full = deep_dream(tiny_cnn, image, "features.3", **opts)
    assert res.interrupted and len(res.octave_history) == 1 and calls == 7 and not full.interrupted
    assert torch.allclose(res.score, objective_score(tiny_cnn, res.image, layer_rms("features.3")).cpu())
    assert torch.equal(res.octave_history[0], full.octave_history[0])
    assert torch.equal(res.octave_end[0], full.octave_end[0])
    # the image: the photo plus octave 1's detail carried to the photo's size (where octave 2 would start)
    small = torch.nn.functional.interpolate(image, size=(9, 9), mode="bilinear", antialias=True)
    one = deep_dream(tiny_cnn, small, "features.3", steps=4, octaves=1, jitter=2, seed=3)
    assert torch.equal(one.octave_history[0], res.octave_history[0])
    detail = torch.nn.functional.interpolate(one.image - small, size=(20, 20), mode="bilinear", antialias=True)
    low, high = valid_range(image)
    assert torch.allclose(res.image, (image + detail).clamp(low, high), atol=1e-6)
    with pytest.raises(KeyboardInterrupt):  # at the first step of the first octave nothing is made yet
        dream_with_interrupt(tiny_cnn, image, 0, **opts)
    assert_same_state(before, model_state(tiny_cnn))


def test_counts_and_an_image_too_small_for_the_smallest_octave():
    vgg = VGG16Features().eval()
    with pytest.raises(ValueError, match=r"^the smallest octave, 12x12 px of the 24x24 px photo, is too small for "
                                         r"layer 'features.27'.* at least 16x16 px; use octaves=2 or fewer, a smaller "
                                         r"octave_scale, or a photo of at least 32x32 px for octaves=3$"):
        deep_dream(vgg, photo(size=24), "features.27", octaves=3)
    with pytest.raises(ValueError, match="pass a photo of at least 32x32 px$"):
        deep_dream(vgg, photo(size=12), "features.27", octaves=3)
    assert deep_dream(vgg, photo(size=32), "features.27", octaves=3, steps=1).sizes[0] == (16, 16)
    for bad in (dict(steps="3"), dict(steps=0), dict(octaves=2.0), dict(octaves=True)):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be an integer >= 1"):
            deep_dream(vgg, photo(size=32), "features.3", **bad)
