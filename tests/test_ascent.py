import pytest
import torch
from conftest import assert_mostly_close, assert_same_numbers, assert_same_state, model_state
from torch import nn

from helpers import (
    TruncatedForward,
    capture_activations,
    denormalize,
    frozen_eval,
    normalize,
    top_filters,
    valid_range,
    visualize_filter,
)

FAST = dict(steps=20, start=16, lr=0.1)


class Boom(nn.Module):
    """A layer that must never run."""

    def __init__(self, exc: type[BaseException] = AssertionError) -> None:
        super().__init__()
        self.exc = exc

    def forward(self, x):
        raise self.exc("this layer ran")


def edge_model() -> nn.Sequential:
    """One 7x7 conv: channel 0 responds to vertical stripes (intensity changing along x), channel 1 is the same
    filter rotated by 90 degrees (horizontal stripes); identical weights on R, G and B."""
    conv = nn.Conv2d(3, 2, 7, padding=3, bias=False)
    x = torch.arange(7.0) - 3
    vertical = torch.cos(torch.pi * x / 2).expand(7, 7)  # varies along columns only
    with torch.no_grad():
        conv.weight[0] = vertical / 7
        conv.weight[1] = vertical.T / 7
    return nn.Sequential(conv, nn.ReLU(inplace=True)).eval()


def gray(img: torch.Tensor) -> torch.Tensor:
    return denormalize(img).mean(dim=-3)


def test_objective_rises(tiny_cnn):
    res = visualize_filter(tiny_cnn, "features.5", [0, 5, 9], **FAST)
    assert res.image.shape == (3, 3, 16, 16)
    assert res.history.shape == (20, 3)
    assert (res.history[-1] > res.history[0] + 0.05).all()
    assert (res.history.diff(dim=0) > 0).float().mean() > 0.9  # it rises at (almost) every step
    assert (res.score > res.history[0]).all()


def test_edge_detector_visualization_shows_its_orientation():
    model = edge_model()
    res = visualize_filter(model, "1", [0, 1], steps=60, start=32, lr=0.05, fill=(0.45, 0.55), clamp=True)
    g = gray(res.image)
    d_along_x = (g[:, :, 1:] - g[:, :, :-1]).abs().mean(dim=(1, 2))
    d_along_y = (g[:, 1:, :] - g[:, :-1, :]).abs().mean(dim=(1, 2))
    assert d_along_x[0] > 3 * d_along_y[0]  # channel 0: vertical stripes
    assert d_along_y[1] > 3 * d_along_x[1]  # channel 1: the rotated pattern
    # the picture matches its own filter and not the rotated one
    with torch.no_grad():
        out = model[0](res.image).clamp(min=0).mean(dim=(2, 3))
    assert out[0, 0] > 3 * out[0, 1]
    assert out[1, 1] > 3 * out[1, 0]


def test_batch_of_channels_equals_one_by_one(tiny_cnn):
    opts = dict(FAST, jitter=2, seed=3, l2_weight=0.01, tv_weight=0.1)
    batch = visualize_filter(tiny_cnn, "features.5", [2, 7, 11], **opts)
    # A batch of 3 convolves with other kernels than a batch of 1, so the two agree up to rounding, which Adam's
    # lr * g / (|g| + eps) amplifies at pixels whose gradient is near zero, and a max-pool whose two inputs are
    # within rounding of each other may pick the other one (measured with --fp-noise: up to 6% of the pixels part
    # by up to 4e-3). So: 90% of the pixels within 1e-4, none by more than one step (lr = 0.1), the scores within
    # 1e-4 of their size. One wrong channel moves the median pixel by about 0.05 and the largest by 1.2.
    for i, c in enumerate([2, 7, 11]):
        single = visualize_filter(tiny_cnn, "features.5", c, **opts)
        assert_mostly_close(batch.image[i], single.image[0], tight=1e-4, share=0.1, loose=0.1)
        assert_same_numbers(batch.history[:, i], single.history[:, 0], rel=1e-4)


def test_works_inside_no_grad(tiny_cnn):
    with torch.no_grad():
        res = visualize_filter(tiny_cnn, "features.5", 0, **FAST)
    assert res.score[0] > res.history[0, 0]


def test_deterministic_given_seed(tiny_cnn):
    a = visualize_filter(tiny_cnn, "features.5", [1, 2], jitter=3, seed=7, **FAST)
    b = visualize_filter(tiny_cnn, "features.5", [1, 2], jitter=3, seed=7, **FAST)
    c = visualize_filter(tiny_cnn, "features.5", [1, 2], jitter=3, seed=8, **FAST)
    assert torch.equal(a.image, b.image)
    assert not torch.allclose(a.image, c.image)


def test_global_rng_untouched(tiny_cnn):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    visualize_filter(tiny_cnn, "features.5", 0, jitter=2, **FAST)
    assert torch.equal(torch.rand(3), expected)


def test_start_and_fill_options(tiny_cnn):
    const = visualize_filter(tiny_cnn, "features.0", [0, 1], steps=1, lr=0.0, start=8, fill=128 / 255)
    assert torch.allclose(const.image, normalize(torch.full((2, 3, 8, 8), 128 / 255)))
    low = visualize_filter(tiny_cnn, "features.0", 0, steps=1, lr=0.0, start=8, fill=(0.0, 0.1))
    pix = denormalize(low.image)
    assert pix.min() >= -1e-6 and pix.max() <= 0.1 + 1e-6 and pix.std() > 0.01
    start = torch.randn(1, 3, 12, 12)
    copy = start.clone()
    res = visualize_filter(tiny_cnn, "features.0", [0, 1], steps=3, start=start)
    assert res.image.shape == (2, 3, 12, 12)
    assert torch.equal(start, copy)  # the caller's tensor is not modified
    # start=128 means 128 px, as in render (it was an error when start was the fill)
    assert visualize_filter(tiny_cnn, "features.0", 0, steps=1, start=128).image.shape == (1, 3, 128, 128)
    with pytest.raises(ValueError, match="128/255"):
        visualize_filter(tiny_cnn, "features.0", 0, steps=1, start=8, fill=128)
    with pytest.raises(ValueError, match="low <= high"):
        visualize_filter(tiny_cnn, "features.0", 0, steps=1, start=8, fill=(0.6, 0.4))


def test_clamp_keeps_pixels_displayable(tiny_cnn):
    res = visualize_filter(tiny_cnn, "features.5", [0, 1], steps=20, start=16, lr=1.0, clamp=True)
    low, high = valid_range(res.image)
    assert (res.image >= low - 1e-6).all() and (res.image <= high + 1e-6).all()
    free = visualize_filter(tiny_cnn, "features.5", [0, 1], steps=20, start=16, lr=1.0, clamp=False)
    assert ((free.image < low) | (free.image > high)).any()


def test_optimizer_names_and_factory(tiny_cnn):
    sgd = visualize_filter(tiny_cnn, "features.5", 0, optimizer="sgd", **FAST)
    fac = visualize_filter(tiny_cnn, "features.5", 0, optimizer=lambda p: torch.optim.SGD(p, lr=0.1), **FAST)
    adam = visualize_filter(tiny_cnn, "features.5", 0, **FAST)
    assert torch.allclose(sgd.image, fac.image)
    assert not torch.allclose(sgd.image, adam.image)
    with pytest.raises(ValueError, match="adam"):
        visualize_filter(tiny_cnn, "features.5", 0, optimizer="lbfgs", **FAST)


def test_bad_layer_and_channel(tiny_cnn):
    with pytest.raises(ValueError, match="features"):
        visualize_filter(tiny_cnn, "features.33", 0, **FAST)
    with pytest.raises(ValueError, match="0 to 15"):
        visualize_filter(tiny_cnn, "features.5", [0, 16], **FAST)
    with pytest.raises(ValueError, match="0 to 7"):  # a ReLU: the channel count comes from a dry run
        visualize_filter(tiny_cnn, "features.1", -1, **FAST)
    with pytest.raises(ValueError, match="between 1 and 16"):
        top_filters(tiny_cnn, torch.randn(1, 3, 16, 16), "features.5", k=17)


@pytest.mark.parametrize("steps", [3, 40])  # diverging before the first periodic check, and after
def test_diverging_learning_rate_is_an_error(tiny_cnn, steps):
    before = model_state(tiny_cnn)
    with pytest.raises(FloatingPointError, match="lr=1e"):
        visualize_filter(tiny_cnn, "features.5", 0, steps=steps, start=16, optimizer="sgd", lr=1e30, l2_weight=1.0,
                         clamp=False)
    assert_same_state(before, model_state(tiny_cnn))


def caller_state(model: nn.Module) -> None:
    """Mixed flags a helper must not flatten: train mode except one layer, one frozen weight, a stale grad."""
    model.train()
    model.features[2].eval()
    model.features[0].weight.requires_grad_(False)
    model.features[5].weight.grad = torch.ones_like(model.features[5].weight)


def test_caller_state_unchanged(tiny_cnn):
    caller_state(tiny_cnn)
    before = model_state(tiny_cnn)
    visualize_filter(tiny_cnn, "features.5", [0, 1], jitter=2, tv_weight=0.1, **FAST)
    assert_same_state(before, model_state(tiny_cnn))
    image = torch.randn(2, 3, 16, 16)
    copy = image.clone()
    top_filters(tiny_cnn, image, "features.5", 4)
    assert_same_state(before, model_state(tiny_cnn))
    assert torch.equal(image, copy)


def test_caller_state_unchanged_after_interrupt(tiny_cnn):
    caller_state(tiny_cnn)
    tiny_cnn.features[4] = Boom(KeyboardInterrupt)  # fires mid-forward, before the target
    before = model_state(tiny_cnn)
    with pytest.raises(KeyboardInterrupt):
        visualize_filter(tiny_cnn, "features.5", 0, **FAST)
    with pytest.raises(KeyboardInterrupt):
        top_filters(tiny_cnn, torch.randn(1, 3, 16, 16), "features.5", 2)
    assert_same_state(before, model_state(tiny_cnn))


def test_forward_stops_at_the_target(tiny_cnn):
    tiny_cnn.features[6] = Boom()
    tiny_cnn.classifier = Boom()
    visualize_filter(tiny_cnn, "features.5", [0, 1], **FAST)
    scores, channels = top_filters(tiny_cnn, torch.randn(1, 3, 16, 16), "features.5", 3)
    assert channels.shape == scores.shape == (1, 3)
    with pytest.raises(AssertionError, match="this layer ran"):  # the guard itself works
        visualize_filter(tiny_cnn, "features.6", 0, **FAST)


def test_truncated_forward_keeps_earlier_targets_before_inplace_relu(tiny_cnn):
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad(), TruncatedForward(tiny_cnn, ["features.2", "features.0"]) as forward:
        acts = forward(x)
        assert len(tiny_cnn.features[0]._forward_hooks) == 1
    assert len(tiny_cnn.features[0]._forward_hooks) == 0
    assert (acts["features.0"] < 0).any()  # the in-place ReLU after features.0 did not overwrite it
    assert torch.allclose(acts["features.0"], tiny_cnn.features[0](x))
    assert torch.allclose(acts["features.2"], tiny_cnn.features[:3](x))


def test_frozen_eval_restores_mixed_flags(tiny_cnn):
    caller_state(tiny_cnn)
    before = model_state(tiny_cnn)
    with pytest.raises(RuntimeError), frozen_eval(tiny_cnn):
        assert not any(p.requires_grad for p in tiny_cnn.parameters())
        assert not any(m.training for m in tiny_cnn.modules())
        raise RuntimeError
    assert_same_state(before, model_state(tiny_cnn))


def test_top_filters_ranks_mean_activation(tiny_cnn):
    torch.manual_seed(1)
    image = torch.randn(2, 3, 16, 16)
    scores, channels = top_filters(tiny_cnn, image, "features.6", 5)
    with torch.no_grad(), capture_activations(tiny_cnn, "features.6") as acts:
        tiny_cnn(image)
    ref = acts["features.6"].mean(dim=(2, 3)).topk(5, dim=1)
    assert torch.equal(channels, ref.indices)
    assert torch.allclose(scores, ref.values)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    _, ch_max = top_filters(tiny_cnn, image, "features.6", 5, reduce="max")
    assert torch.equal(ch_max, acts["features.6"].amax(dim=(2, 3)).topk(5, dim=1).indices)


def test_bf16_autocast_reaches_the_float32_objective(tiny_cnn):
    # the opt-in fast path must give the same result in effect: at least 95% of float32's gain, on average
    channels = list(range(16))
    opts = dict(FAST, steps=40)
    ref = visualize_filter(tiny_cnn, "features.5", channels, **opts)
    fast = visualize_filter(tiny_cnn, "features.5", channels, amp=True, **opts)
    assert fast.image.dtype == torch.float32
    with torch.no_grad(), TruncatedForward(tiny_cnn, "features.5") as forward:  # both scored in float32
        gain_ref = forward(ref.image)["features.5"][channels, channels].mean() - ref.history[0].mean()
        gain_fast = forward(fast.image)["features.5"][channels, channels].mean() - ref.history[0].mean()
    assert gain_ref > 0.1
    assert gain_fast >= 0.95 * gain_ref


def test_truncated_forward_inputs_stops_before_the_layer(tiny_cnn):
    x = torch.randn(2, 3, 8, 8)
    expected = tiny_cnn.features[:5](x)
    tiny_cnn.features[5] = Boom()
    with torch.no_grad(), TruncatedForward(tiny_cnn, "features.5", inputs=True) as forward:
        acts = forward(x)
        assert len(tiny_cnn.features[5]._forward_pre_hooks) == 1
    assert len(tiny_cnn.features[5]._forward_pre_hooks) == 0
    assert torch.allclose(acts["features.5"], expected)


def textbook_sgd(model: nn.Module, layer: str, channels: list[int], init: torch.Tensor, steps: int, lr: float):
    """The plain loop: full forward with a hook, SGD on the pixels; the reference the lean loop must match."""
    img = init.expand(len(channels), -1, -1, -1).clone().requires_grad_(True)
    opt = torch.optim.SGD([img], lr=lr)
    with capture_activations(model, layer) as acts:
        for _ in range(steps):
            opt.zero_grad()
            model(img)
            a = acts[layer]
            (-sum(a[i, c].mean() for i, c in enumerate(channels))).backward()
            opt.step()
    return img.detach()


@pytest.mark.parametrize("layer, channels", [("features.5", [3]), ("features.5", [0, 9, 4]),
                                             ("features.5", list(range(16))), ("features.6", [2, 5])])
@pytest.mark.parametrize("channels_last", [False, True])
def test_lean_loop_computes_the_textbook_result(tiny_cnn, layer, channels, channels_last):
    # a conv target with few channels is computed for those channels only; with many channels, or a ReLU
    # target, the whole layer runs; channels-last changes only the summation order
    torch.manual_seed(3)
    init = normalize(torch.rand(1, 3, 16, 16))
    ref = textbook_sgd(tiny_cnn, layer, channels, init, steps=5, lr=0.5)
    res = visualize_filter(tiny_cnn, layer, channels, steps=5, lr=0.5, optimizer="sgd", start=init,
                           channels_last=channels_last, clamp=False)
    assert not torch.equal(ref, init.expand_as(ref))
    assert torch.allclose(res.image, ref, atol=1e-5)
