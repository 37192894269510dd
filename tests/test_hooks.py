import pytest
import torch

from helpers import capture_activations, get_layer, layer_names


def n_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_captures_the_named_outputs(tiny_cnn):
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad(), capture_activations(tiny_cnn, ["features.0", "features.5"]) as acts:
        tiny_cnn(x)
        conv0 = tiny_cnn.features[0](x)
        block = tiny_cnn.features[:6](x)
    assert acts["features.0"].shape == (2, 8, 8, 8)
    assert acts["features.5"].shape == (2, 16, 4, 4)
    # The conv output is followed by an in-place ReLU: the capture must keep the pre-ReLU values.
    assert (acts["features.0"] < 0).any()
    assert torch.allclose(acts["features.0"], conv0)
    assert torch.allclose(acts["features.5"], block)


def test_without_clone_inplace_relu_overwrites_capture(tiny_cnn):
    # Documents why clone=True is the default.
    with torch.no_grad(), capture_activations(tiny_cnn, "features.0", clone=False) as acts:
        tiny_cnn(torch.randn(1, 3, 8, 8))
    assert (acts["features.0"] >= 0).all()


def test_captured_activation_is_differentiable(tiny_cnn):
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    with capture_activations(tiny_cnn, "features.3") as acts:
        tiny_cnn(x)
    (grad,) = torch.autograd.grad(acts["features.3"].pow(2).sum(), x)
    assert grad.abs().sum() > 0


def test_detach(tiny_cnn):
    with capture_activations(tiny_cnn, "features.3", detach=True) as acts:
        tiny_cnn(torch.randn(1, 3, 8, 8, requires_grad=True))
    assert not acts["features.3"].requires_grad


def test_hooks_removed_after_normal_exit_and_repeated_use(tiny_cnn):
    for _ in range(3):
        with capture_activations(tiny_cnn, ["features.0", "classifier.2"]):
            assert n_hooks(tiny_cnn) == 2 + 1  # one per layer, and the model's end-of-pass hook (first-call policy)
            tiny_cnn(torch.randn(1, 3, 8, 8))
        assert n_hooks(tiny_cnn) == 0


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_hooks_removed_when_body_raises_or_is_interrupted(tiny_cnn, error):
    with pytest.raises(error), capture_activations(tiny_cnn, "features.0"):
        tiny_cnn(torch.randn(1, 3, 8, 8))
        raise error("stop")
    assert n_hooks(tiny_cnn) == 0


def test_unknown_name_lists_close_names_and_registers_nothing(tiny_cnn):
    with pytest.raises(ValueError, match=r"'feature\.0'.*features\.0"), \
            capture_activations(tiny_cnn, ["features.3", "feature.0"]):
        pass
    assert n_hooks(tiny_cnn) == 0


@pytest.mark.parametrize("bad", ["", "features.99", "classifier.x"])
def test_get_layer_rejects_bad_names(tiny_cnn, bad):
    with pytest.raises(ValueError, match="layer"):
        get_layer(tiny_cnn, bad)


def test_layer_names_are_dotted_paths(tiny_cnn):
    names = layer_names(tiny_cnn)
    assert names[:3] == ["features", "features.0", "features.1"]
    assert get_layer(tiny_cnn, "classifier.2") is tiny_cnn.classifier[2]


class CalledTwice(torch.nn.Module):
    """One ReLU module run twice per pass, like ResNet's BasicBlock: first on conv(x), then on that minus 0.5."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 2, 1)
        self.relu = torch.nn.ReLU()
        self.fc = torch.nn.Linear(2, 3)

    def forward(self, x):
        return self.fc(self.relu(self.relu(self.conv(x)) - 0.5).mean((2, 3)))


def test_a_module_called_twice_stands_for_its_first_call_everywhere():
    """The policy of helpers.hooks: capture_activations, TruncatedForward, capture and Grad-CAM all use the
    output of the first call; a new pass of the model starts over; a submodule called directly is its own pass."""
    from helpers import TruncatedForward, grad_cam, objectives
    from helpers.hooks import capture

    model = CalledTwice().eval()
    x, x2 = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    first = torch.relu(model.conv(x)).detach()
    assert not torch.equal(first, torch.relu(first - 0.5))  # the two calls differ
    with torch.no_grad(), capture_activations(model, "relu") as acts:
        model(x)
        assert torch.equal(acts["relu"], first)
        model(x2)  # a new pass: its own first call
        assert torch.equal(acts["relu"], torch.relu(model.conv(x2)))
        model.relu(-x)  # the submodule alone, twice: each call is a pass of its own
        model.relu(x)
        assert torch.equal(acts["relu"], torch.relu(x))
    with torch.no_grad(), TruncatedForward(model, "relu") as forward:
        assert torch.equal(forward(x)["relu"], first)
    with torch.no_grad(), capture(model, objectives.channel_mean("relu", 1) + objectives.class_logit(0)) as fwd:
        assert torch.equal(fwd(x)["relu"], first)
    # Grad-CAM on the first call, computed by hand: S_c = fc(relu(A - 0.5).mean)[c] with A the first output
    for c in range(3):
        a = first.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model.fc(torch.relu(a - 0.5).mean((2, 3)))[:, c].sum(), a)
        expected = torch.relu(torch.einsum("nc,nchw->nhw", g.mean((2, 3)), first))
        cam = grad_cam(model, x, c, layer="relu", normalize=False)
        assert torch.allclose(cam, expected, atol=1e-6)
    assert n_hooks(model) == 0


def test_differentiable_capture_is_what_the_rest_of_the_pass_is_computed_from(tiny_cnn):
    """``differentiable=True``: d(logits)/d(acts) works, and a following in-place ReLU does not touch the value."""
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        conv0 = tiny_cnn.features[0](x)
    with torch.enable_grad(), capture_activations(tiny_cnn, "features.0", differentiable=True) as acts:
        logits = tiny_cnn(x.clone().requires_grad_(True))
        (grad,) = torch.autograd.grad(logits[:, 1].sum(), acts["features.0"])
    assert torch.allclose(acts["features.0"], conv0) and (acts["features.0"] < 0).any()  # pre-ReLU values
    a = conv0.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(tiny_cnn.classifier(tiny_cnn.features[1:](a.clone()))[:, 1].sum(), a)
    assert grad.abs().sum() > 0 and torch.allclose(grad, expected, atol=1e-6)
    with capture_activations(tiny_cnn, "features.0") as acts:  # the default: a copy, not on the logits' path
        logits = tiny_cnn(x.clone().requires_grad_(True))
        with pytest.raises(RuntimeError):
            torch.autograd.grad(logits[:, 1].sum(), acts["features.0"])
    assert n_hooks(tiny_cnn) == 0
