import copy
import warnings

import pytest
import torch
import torchvision
from conftest import assert_same_state, awkward_copy, model_state
from torch import nn

from helpers import deconvnet, guided_backprop, modified_backprop, relu_backward, relu_rule
from helpers.objectives import channel_max

FORWARD = torch.tensor([[1.0, -1, 5], [2, -5, -7], [-3, 2, 4]])
UPSTREAM = torch.tensor([[-2.0, 3, -1], [6, -3, 1], [2, -1, 3]])


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def not_inplace(model: nn.Module) -> nn.Module:
    """A copy whose ReLUs are not in-place: the reference library's backward hooks want that."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return model


@pytest.mark.parametrize("rule, expected", [
    ("backprop", [[-2, 0, -1], [6, 0, 0], [0, -1, 3]]),
    ("deconvnet", [[0, 3, 0], [6, 0, 1], [2, 0, 3]]),
    ("guided", [[0, 0, 0], [6, 0, 0], [0, 0, 3]]),
])
def test_the_notes_3x3_example(rule, expected):
    f, u = FORWARD.clone(), UPSTREAM.clone()
    assert torch.equal(relu_backward(FORWARD, UPSTREAM, rule), torch.tensor(expected, dtype=torch.float))
    assert torch.equal(f, FORWARD) and torch.equal(u, UPSTREAM)


@pytest.mark.parametrize("inplace", [False, True])
def test_rules_inside_a_model_match_the_3x3_example(inplace):
    # Identity -> ReLU -> multiply by the upstream gradient: the input gradient is exactly the ReLU's rule.
    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = nn.Identity()
            self.relu = nn.ReLU(inplace=inplace)

        def forward(self, x):
            return (self.relu(self.pre(x) * 1.0) * UPSTREAM).sum().view(1, 1)

    for rule in ("backprop", "deconvnet", "guided"):
        got = modified_backprop(Probe(), FORWARD[None, None], 0, rule=rule)[0, 0]
        assert torch.equal(got, relu_backward(FORWARD, UPSTREAM, rule)), rule


def test_hand_computed_two_layer_network():
    # x -> W1 x -> ReLU -> w2 . h: guided gradient = W1^T (relu(w2) * [W1 x > 0]), deconvnet drops the mask.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(inplace=True), nn.Linear(6, 1))
    x = torch.randn(1, 3, 2, 2)
    w1, w2 = model[1].weight.detach(), model[3].weight.detach()[0]
    positive = (model[1](x.flatten(1))[0] > 0).float()
    guided = (w1.T @ (w2.clamp(min=0) * positive.detach())).view(1, 3, 2, 2)
    deconv = (w1.T @ w2.clamp(min=0)).view(1, 3, 2, 2)
    plain = (w1.T @ (w2 * positive.detach())).view(1, 3, 2, 2)
    assert torch.allclose(guided_backprop(model, x, 0), guided, atol=1e-6)
    assert torch.allclose(deconvnet(model, x, 0), deconv, atol=1e-6)
    assert torch.allclose(modified_backprop(model, x, 0, rule="backprop"), plain, atol=1e-6)
    assert not torch.allclose(guided, plain) and not torch.allclose(guided, deconv)


def test_backprop_rule_is_the_true_gradient_on_resnet(resnet):
    # ResNet-18: in-place ReLUs, one ReLU module called twice per block. Under the "backprop" rule our hooks
    # must reproduce plain autograd exactly; guided must differ from it.
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    xs = x.clone().requires_grad_(True)
    (truth,) = torch.autograd.grad(resnet(xs)[[0, 1], [3, 8]].sum(), xs)
    assert torch.allclose(modified_backprop(resnet, x, [3, 8], rule="backprop"), truth, atol=1e-7)
    assert not torch.allclose(guided_backprop(resnet, x, [3, 8]), truth, atol=1e-5)


def test_every_call_of_a_reused_relu_gets_the_rule():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu = nn.ReLU(inplace=True)
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.relu(self.lin(self.relu(x))).sum(1, keepdim=True)

    model = Twice()
    seen = []
    model.lin.register_forward_pre_hook(lambda m, args: seen.append(args[0].grad_fn.name()))
    x = torch.randn(2, 4, requires_grad=True)
    with relu_rule(model, "guided"):
        out = model(x * 1.0)  # (an in-place ReLU cannot overwrite a leaf)
    assert "ReLUWithRule" in seen[0]                               # first call
    assert "ReLUWithRule" in out.grad_fn.next_functions[0][0].name()  # second call
    assert "ReLUWithRule" not in model(x * 1.0).grad_fn.next_functions[0][0].name()  # gone after the block


def test_matches_captum_on_tiny_cnn_and_resnet18(tiny_cnn, resnet):
    attr = pytest.importorskip("captum.attr")
    torch.manual_seed(2)
    for model, x, targets in [(tiny_cnn, torch.randn(3, 3, 12, 12), [0, 2, 4]),
                              (resnet, torch.randn(2, 3, 64, 64), [243, 285])]:
        ref = not_inplace(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # captum announces its backward hooks
            gbp = attr.GuidedBackprop(ref).attribute(x.clone().requires_grad_(True), target=targets)
            dec = attr.Deconvolution(ref).attribute(x.clone().requires_grad_(True), target=targets)
        ours_gbp, ours_dec = guided_backprop(model, x, targets), deconvnet(model, x, targets)
        assert ours_gbp.abs().sum() > 0 and ours_dec.abs().sum() > 0
        assert torch.allclose(ours_gbp, gbp, rtol=1e-5, atol=1e-8)
        assert torch.allclose(ours_dec, dec, rtol=1e-5, atol=1e-8)


def test_intermediate_neuron_uses_the_channels_strongest_activation(tiny_cnn):
    # With rule "backprop" the result is the plain gradient of max_ij A[c, i, j] of the layer's output.
    torch.manual_seed(3)
    x = torch.randn(2, 3, 12, 12)
    xs = x.clone().requires_grad_(True)
    act = tiny_cnn.features[:3](xs)
    (truth,) = torch.autograd.grad(act[:, 5].flatten(1).amax(1).sum(), xs)
    got = modified_backprop(tiny_cnn, x, channel_max("features.2", 5), rule="backprop")
    assert torch.allclose(got, truth, atol=1e-7)
    # Guided backprop of that one neuron is zero outside its 5x5 receptive field (two 3x3 convs).
    guided = guided_backprop(tiny_cnn, x, channel_max("features.2", 5))
    for n in range(2):
        i, j = divmod(int(act[n, 5].argmax()), 12)
        inside = torch.zeros(12, 12, dtype=torch.bool)
        inside[max(i - 2, 0):i + 3, max(j - 2, 0):j + 3] = True
        support = guided[n].abs().sum(0) > 0
        assert support.any() and not (support & ~inside).any()


def test_single_image_keeps_its_shape_and_device(tiny_cnn):
    x = torch.randn(3, 8, 8)
    out = guided_backprop(tiny_cnn, x, 1)
    assert out.shape == x.shape and out.device == x.device
    assert torch.equal(out, guided_backprop(tiny_cnn, x[None], 1)[0])


def test_leaves_model_and_input_as_found(resnet):
    model = awkward_copy(resnet)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    before = model_state(model)
    x = torch.randn(1, 3, 32, 32)
    x_before = x.clone()
    for fn in (guided_backprop, deconvnet):
        fn(model, x, 5)
    modified_backprop(model, x, channel_max("layer2.0.relu", 3))
    assert_same_state(before, model_state(model))
    assert [m for m in model.modules() if isinstance(m, nn.ReLU)] == relus  # same module objects
    assert all(m.inplace for m in relus)
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None


def test_state_restored_when_the_forward_raises(tiny_cnn):
    tiny_cnn.train()

    def boom(module, args, output):
        raise RuntimeError("boom")

    handle = tiny_cnn.classifier.register_forward_hook(boom)
    before = model_state(tiny_cnn)
    with pytest.raises(RuntimeError, match="boom"):
        guided_backprop(tiny_cnn, torch.randn(1, 3, 8, 8), 0)
    assert_same_state(before, model_state(tiny_cnn))
    handle.remove()
    before = model_state(tiny_cnn)
    with pytest.raises(ValueError, match="out of range"):
        guided_backprop(tiny_cnn, torch.randn(1, 3, 8, 8), 9)
    with pytest.raises(KeyError), relu_rule(tiny_cnn, "deconvnet"):
        raise KeyError("interrupted inside the block")
    assert_same_state(before, model_state(tiny_cnn))


def test_bad_arguments(tiny_cnn):
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown ReLU backward rule"):
        modified_backprop(tiny_cnn, x, 0, rule="zeiler")
    with pytest.raises(ValueError, match="features.2"):
        guided_backprop(tiny_cnn, x, channel_max("features.22", 0))
    with pytest.raises(ValueError, match="out of range"):
        guided_backprop(tiny_cnn, x, channel_max("features.2", 8))
    with pytest.raises(ValueError, match="same shape"):
        relu_backward(FORWARD, UPSTREAM[:2])
    with pytest.raises(ValueError, match="image must be"):
        guided_backprop(tiny_cnn, torch.randn(8, 8), 0)


def test_plot_gradient_image_maps_zero_to_grey():
    import matplotlib.pyplot as plt

    from helpers import plot_gradient_image

    g = torch.zeros(1, 3, 4, 4)
    g[0, 0, 0, 0], g[0, 1, 1, 1] = 2.0, -1.0
    ax = plot_gradient_image(g, title="guided")
    try:
        shown = ax.images[0].get_array()
        assert shown[0, 0, 0] == 1.0 and shown[1, 1, 1] == 0.25 and shown[3, 3, 2] == 0.5
        assert "guided" in ax.get_title() and "2" in ax.get_title()
        with pytest.raises(ValueError, match=r"\(3, H, W\)"):
            plot_gradient_image(torch.zeros(4, 4))
    finally:
        plt.close("all")
