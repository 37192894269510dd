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
            assert n_hooks(tiny_cnn) == 2
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


def test_module_called_twice_keeps_last_call():
    relu = torch.nn.ReLU()

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.relu = relu

        def forward(self, x):
            return self.relu(self.relu(x) - 1)

    model = Twice()
    with capture_activations(model, "relu") as acts:
        out = model(torch.tensor([3.0, 0.5]))
    assert torch.equal(acts["relu"], out)
