import itertools

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same_state, model_state
from torch import nn

from helpers import Box, conv_output_size, input_gradient, input_gradient_support, receptive_field


def test_output_size_matches_pytorch_over_many_geometries():
    checked = failed = 0
    for n, k, s, p, d in itertools.product(range(1, 13), range(1, 6), range(1, 4), range(3), range(1, 4)):
        x = torch.zeros(1, 1, n)
        w = torch.zeros(1, 1, k)
        try:
            expected = F.conv1d(x, w, stride=s, padding=p, dilation=d).shape[-1]
        except RuntimeError:
            expected = None
        if expected is None or expected == 0:
            with pytest.raises(ValueError):
                conv_output_size(n, k, s, p, d)
            failed += 1
        else:
            assert conv_output_size(n, k, s, p, d) == expected, (n, k, s, p, d)
            checked += 1
    assert checked > 1000 and failed > 50  # both branches really ran


@pytest.mark.parametrize("h, w, k, s, p, d", [(32, 32, 5, 1, 0, 1), (14, 14, 5, 1, 0, 1), (224, 224, 7, 2, 3, 1),
                                              (56, 56, 3, 2, 1, 1), (5, 6, 2, 2, 0, 1), (17, 23, 3, 3, 2, 2)])
def test_output_size_matches_conv2d_layer(h, w, k, s, p, d):
    out = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)(torch.zeros(1, 1, h, w))
    assert out.shape[-2:] == (conv_output_size(h, k, s, p, d), conv_output_size(w, k, s, p, d))


def test_output_size_of_the_sheet_examples():
    assert (conv_output_size(5, 2), conv_output_size(6, 2)) == (4, 5)
    assert (conv_output_size(5, 2, 2), conv_output_size(6, 2, 2)) == (2, 3)
    assert conv_output_size(32, 5) == 28 and conv_output_size(28, 2, 2) == 14


@pytest.mark.parametrize("args", [(0, 1), (5, 0), (5, 2, 0), (5, 2, 1, -1), (5, 2, 1, 0, 0), (3, 5), (4, 3, 1, 0, 2),
                                  (5.0, 2), (True, 1)])
def test_output_size_rejects_impossible_geometry(args):
    with pytest.raises(ValueError):
        conv_output_size(*args)


def test_receptive_field_sheet_answers():
    assert receptive_field([(3, 1)] * 3) == 7
    assert receptive_field([(4, 2)] * 2) == 10


def test_receptive_field_grows_linearly_with_depth_and_geometrically_with_stride_or_dilation():
    assert [receptive_field([(3, 1)] * depth) for depth in range(5)] == [1, 3, 5, 7, 9]
    assert [receptive_field([(3, 2)] * depth) for depth in range(5)] == [1, 3, 7, 15, 31]
    assert receptive_field([(3, 1, 2 ** i) for i in range(4)]) == 31  # dilations 1, 2, 4, 8
    assert receptive_field([(3, 1), (2, 2), (3, 1)]) == 3 + 1 + 2 * 2  # pooling doubles the later steps
    assert receptive_field([]) == 1


@pytest.mark.parametrize("bad", [[(3,)], [(3, 1, 1, 1)], [(0, 1)], [(3, 0)], [(3, 1, 0)], [3]])
def test_receptive_field_rejects_malformed_layers(bad):
    with pytest.raises(ValueError):
        receptive_field(bad)


def positive_stack(specs, channels=(1, 3, 4, 2, 3)):
    """Convolutions with strictly positive weights and biases, ReLU between; specs (kernel, stride, dilation,
    padding), or ("avg", kernel, stride) for an average pooling (dense, unlike max pooling)."""
    torch.manual_seed(0)
    layers, c = [], channels[0]
    for i, spec in enumerate(specs):
        if spec[0] == "avg":
            layers.append(nn.AvgPool2d(spec[1], spec[2]))
            continue
        k, s, d, p = spec
        conv = nn.Conv2d(c, channels[i + 1], k, stride=s, dilation=d, padding=p)
        with torch.no_grad():
            conv.weight.uniform_(0.1, 1.0)
            conv.bias.uniform_(0.0, 0.1)
        layers += [conv, nn.ReLU()]
        c = channels[i + 1]
    return nn.Sequential(*layers), channels[0]


def window(specs, row):
    """Where output ``row`` looks in the input, from the layer geometry: (start, size)."""
    jump, start, size = 1, 0, 1
    for spec in specs:
        k, s, d, p = (spec[1], spec[2], 1, 0) if spec[0] == "avg" else spec
        start -= p * jump
        size += d * (k - 1) * jump
        jump *= s
    return start + row * jump, size


STACKS = {
    "sheet 2.1: 3x 3x3 s1": [(3, 1, 1, 0)] * 3,
    "sheet 2.2: 2x 4x4 s2": [(4, 2, 1, 0)] * 2,
    "strides and padding": [(5, 2, 1, 2), (3, 1, 1, 1), (3, 2, 1, 0)],
    "dilated": [(3, 1, 1, 0), (3, 1, 2, 0), (3, 1, 4, 0)],
    "conv, avg-pool, conv": [(3, 1, 1, 0), ("avg", 2, 2), (3, 1, 1, 0)],
}


@pytest.mark.parametrize("name", STACKS)
def test_gradient_support_equals_the_formula_for_dense_positive_stacks(name):
    specs = STACKS[name]
    model, c_in = positive_stack(specs)
    size = 40
    out = model(torch.ones(1, c_in, size, size))
    row, col = out.shape[2] // 2, out.shape[3] // 2 + 1
    box = input_gradient_support(model, (c_in, size, size), (row, col))
    r = receptive_field([(s[1], s[2]) if s[0] == "avg" else (s[0], s[1], s[2]) for s in specs])
    (top, size_r), (left, _) = window(specs, row), window(specs, col)
    assert size_r == r
    assert box == Box(top, left, top + r, left + r)
    assert (box.height, box.width) == (r, r)
    grad = input_gradient(model, (c_in, size, size), (row, col))
    assert (grad[box.top:box.bottom, box.left:box.right] > 0).all()  # dense: every pixel of the window counts


def test_gradient_never_leaves_the_window_for_random_weights():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 4, stride=2), nn.ReLU(), nn.Conv2d(8, 4, 3))
    x = torch.rand(1, 3, 30, 30)
    r = receptive_field([(3, 1), (4, 2), (3, 1)])
    for row, col in [(0, 0), (4, 7), (10, 10)]:
        grad = input_gradient(model, x.shape, (row, col), channel=2, x=x)
        top, left = row * 2, col * 2
        outside = grad.clone()
        outside[top:top + r, left:left + r] = 0
        assert outside.abs().sum() == 0
        assert grad.abs().sum() > 0


def test_gradient_check_leaves_model_and_input_unchanged():
    model, _ = positive_stack([(3, 1, 1, 0), (3, 2, 1, 0)])
    model.train()
    model[0].weight.grad = torch.full_like(model[0].weight, 7.0)
    before = model_state(model)
    x = torch.rand(1, 1, 12, 12)
    x_before = x.clone()
    input_gradient_support(model, x.shape, (1, 2), x=x)
    assert_same_state(before, model_state(model))
    assert torch.equal(x, x_before) and not x.requires_grad


def test_gradient_check_errors():
    model, _ = positive_stack([(3, 1, 1, 0)])
    with pytest.raises(ValueError, match="outside the output"):
        input_gradient(model, (1, 8, 8), (6, 0))
    with pytest.raises(ValueError, match="input_shape"):
        input_gradient(model, (8, 8), (0, 0))
    zero = nn.Conv2d(1, 1, 3, bias=False)
    nn.init.zeros_(zero.weight)
    with pytest.raises(ValueError, match="zero everywhere"):
        input_gradient_support(zero, (1, 8, 8), (2, 2))


def test_input_gradient_freezes_the_weights_and_restores_mixed_flags_also_on_errors():
    model, _ = positive_stack([(3, 1, 1, 0), (3, 2, 1, 0)])
    model.train()
    model[0].eval()  # mixed train/eval flags and requires_grad must come back exactly
    model[0].weight.requires_grad_(False)
    before = model_state(model)
    seen = []
    handle = model.register_forward_hook(
        lambda m, i, o: seen.append((m.training, [p.requires_grad for p in m.parameters()], o.grad_fn is not None)))
    try:
        input_gradient(model, (1, 12, 12), (1, 2))
        with pytest.raises(ValueError, match="outside the output"):
            input_gradient(model, (1, 12, 12), (40, 0))
    finally:
        handle.remove()
    # inside: eval mode, frozen weights (no weight-gradient graph), a graph to the input only
    assert seen == [(False, [False] * len(list(model.parameters())), True)] * 2
    assert_same_state(before, model_state(model))
