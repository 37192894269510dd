import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import assert_same_state, awkward_copy, model_state
from torch import nn

from helpers import default_cam_layer, grad_cam, guided_backprop, guided_grad_cam


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None)  # train mode: dropout would make the map random


class TwoChannels(nn.Module):
    """Feature map A = two fixed channels; logits = linear in the channels' spatial means.

    dS_c/dA_k = v[c, k] / (h w) everywhere, so Grad-CAM's weights are v[c, k] / (h w) and the map is
    relu(sum_k v[c, k] A_k) / (h w): known by construction.
    """

    def __init__(self, v: torch.Tensor) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.conv.weight.data = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
        self.head = nn.Linear(2, v.shape[0], bias=False)
        self.head.weight.data = v

    def forward(self, x):
        return self.head(self.conv(x[:, :1]).mean((2, 3)))


def test_known_map_by_construction():
    v = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    model = TwoChannels(v)
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0] = torch.arange(16.0).view(4, 4) - 5  # channel 0 = x, channel 1 = -x
    a = torch.stack([x[0, 0], -x[0, 0]])
    for c in (0, 1):
        expected = torch.relu(v[c, 0] * a[0] + v[c, 1] * a[1]) / 16
        raw = grad_cam(model, x, c, layer="conv", normalize=False)
        assert torch.allclose(raw[0], expected, atol=1e-6)
        normed = grad_cam(model, x, c, layer="conv")
        assert torch.allclose(normed[0], expected / expected.max(), atol=1e-6)


def test_negative_evidence_is_zero_and_constant_maps_do_not_give_nan():
    # Class 0 sees channel 0 = x; an all-negative image gives only negative evidence -> all zeros, no NaN.
    model = TwoChannels(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    x = -torch.ones(2, 3, 6, 6)
    x[1] = 0.5                                  # constant positive map -> all ones after normalizing
    cam = grad_cam(model, x, [0, 0], layer="conv")
    assert torch.isfinite(cam).all()
    assert torch.equal(cam[0], torch.zeros(6, 6)) and torch.allclose(cam[1], torch.ones(6, 6))
    assert torch.equal(grad_cam(model, x, 1, layer="conv"), torch.zeros(2, 6, 6))  # zero weights: zero map


def test_matches_captum_layer_gradcam_on_tiny_cnn_and_resnet18(tiny_cnn, resnet):
    attr = pytest.importorskip("captum.attr")
    torch.manual_seed(1)
    cases = [(tiny_cnn, "features.5", torch.randn(3, 3, 12, 12), [0, 1, 4]),
             (resnet, "layer4", torch.randn(2, 3, 64, 64), [243, 285]),
             (resnet, "layer3.1.conv2", torch.randn(2, 3, 64, 64), [1, 2])]
    for model, layer, x, targets in cases:
        lgc = attr.LayerGradCam(model, model.get_submodule(layer))
        theirs = lgc.attribute(x, target=targets, relu_attributions=True).detach()
        for mode in ("bilinear", "nearest"):
            up = attr.LayerAttribution.interpolate(theirs, tuple(x.shape[2:]), interpolate_mode=mode)[:, 0]
            ours = grad_cam(model, x, targets, layer=layer, upsample=mode, normalize=False)
            assert ours.abs().sum() > 0
            assert torch.allclose(ours, up, rtol=1e-4, atol=1e-6 * up.abs().max().item()), (layer, mode)


def test_guided_grad_cam_matches_captum(tiny_cnn, resnet):
    attr = pytest.importorskip("captum.attr")
    torch.manual_seed(2)
    for model, layer, x, targets in [(tiny_cnn, "features.5", torch.randn(2, 3, 12, 12), [0, 3]),
                                     (resnet, "layer4", torch.randn(2, 3, 64, 64), [243, 285])]:
        ref = copy.deepcopy(model)
        for m in ref.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False  # captum's backward hooks on ReLUs want out-of-place ones
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = attr.GuidedGradCam(ref, ref.get_submodule(layer)).attribute(
                x.clone().requires_grad_(True), target=targets).detach()
        ours = guided_grad_cam(model, x, targets, layer=layer, upsample="nearest", normalize=False)
        assert ours.shape == x.shape and ours.abs().sum() > 0
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6 * theirs.abs().max().item())
        # and with the default (normalized, bilinear) map: guided backprop times a map in [0, 1]
        gbp, cam = guided_backprop(model, x, targets), grad_cam(model, x, targets, layer=layer)
        assert torch.allclose(guided_grad_cam(model, x, targets, layer=layer), gbp * cam[:, None])


def test_default_layers_on_vgg16_and_resnet18(vgg, resnet, tiny_cnn):
    assert default_cam_layer(vgg) == "features.29"
    assert default_cam_layer(resnet) == "layer4"
    assert default_cam_layer(tiny_cnn) == "features.6"
    assert default_cam_layer(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Flatten())) == "1"
    with pytest.raises(ValueError, match="pass layer="):
        default_cam_layer(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)))
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(grad_cam(resnet, x, 1), grad_cam(resnet, x, 1, layer="layer4"))


def test_vgg16_shapes_range_and_modes(vgg):
    modes = [m.training for m in vgg.modules()]
    x = torch.randn(2, 3, 64, 64)
    cam = grad_cam(vgg, x, [1, 2])
    assert cam.shape == (2, 64, 64) and cam.min() >= 0 and torch.allclose(cam.amax((1, 2)), torch.ones(2))
    assert torch.equal(cam, grad_cam(vgg, x, [1, 2]))  # eval mode inside: deterministic
    assert guided_grad_cam(vgg, x[0], 1).shape == (3, 64, 64)
    assert [m.training for m in vgg.modules()] == modes and all(p.requires_grad for p in vgg.parameters())


def test_leaves_model_and_input_as_found_also_on_errors(resnet):
    model = awkward_copy(resnet)
    before = model_state(model)
    x = torch.randn(1, 3, 32, 32)
    x_before = x.clone()
    grad_cam(model, x, 5)
    guided_grad_cam(model, x, 5, layer="layer3")
    with pytest.raises(ValueError, match="out of range"):
        grad_cam(model, x, 1000)
    with pytest.raises(ValueError, match="layer4"):
        grad_cam(model, x, 5, layer="layer5")
    with pytest.raises(ValueError, match=r"\(N, C, h, w\)"):
        grad_cam(model, x, 5, layer="fc")
    assert_same_state(before, model_state(model))
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None


def test_bad_upsample_mode(tiny_cnn):
    with pytest.raises(ValueError, match="upsample"):
        grad_cam(tiny_cnn, torch.randn(1, 3, 8, 8), 0, upsample="area")


def test_an_objective_of_a_layer_without_out_channels_after_the_cam_layer(tiny_cnn):
    """An objective on a ReLU (no ``out_channels``) after the CAM layer: dS/dA of the real pass, by hand."""
    from helpers import objectives as O

    before = model_state(tiny_cnn)
    torch.manual_seed(3)
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        a = tiny_cnn.features[:4](x)  # the output of features.3 (a ReLU)
    a = a.clone().requires_grad_(True)
    score = tiny_cnn.features[4:](a.clone())[:, 5].mean((1, 2))  # channel_mean("features.6", 5) from A
    (g,) = torch.autograd.grad(score.sum(), a)
    expected = F.interpolate(torch.relu(torch.einsum("nc,nchw->nhw", g.mean((2, 3)), a.detach()))[:, None],
                             size=(12, 12), mode="bilinear", align_corners=False)[:, 0]
    objective = O.channel_mean("features.6", 5)
    cam = grad_cam(tiny_cnn, x, objective, layer="features.3", normalize=False)
    assert cam.abs().sum() > 0 and torch.allclose(cam, expected, atol=1e-6)
    # the default layer of TinyCNN is that ReLU itself; guided Grad-CAM and channel_max work too
    assert grad_cam(tiny_cnn, x, objective).shape == (2, 12, 12)
    gbp = guided_backprop(tiny_cnn, x, O.channel_max("features.6", 5))
    cam_max = grad_cam(tiny_cnn, x, O.channel_max("features.6", 5), layer="features.3")
    assert torch.allclose(guided_grad_cam(tiny_cnn, x, O.channel_max("features.6", 5), layer="features.3"),
                          gbp * cam_max[:, None])
    assert_same_state(before, model_state(tiny_cnn))


def test_an_objective_on_the_cam_layer_itself(tiny_cnn):
    """S = mean of channel 1 of the CAM conv's output A: dS/dA_k = [k == 1] / (h w), so the map is relu(A_1) / (h w)."""
    from helpers import objectives as O

    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        a = tiny_cnn.features[:6](x)  # the conv output (its in-place ReLU is not run)
    cam = grad_cam(tiny_cnn, x, O.channel_mean("features.5", 1), layer="features.5", upsample="nearest",
                   normalize=False)
    expected = F.interpolate(torch.relu(a[:, 1:2]) / 16, size=(8, 8), mode="nearest")[:, 0]
    assert cam.abs().sum() > 0 and torch.allclose(cam, expected, atol=1e-6)


def test_a_cam_layer_after_the_objective_and_a_too_small_image_say_what_to_do(tiny_cnn):
    from helpers import objectives as O

    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"'features.5' comes after the layers \('features.1',\).*pick an earlier"):
        grad_cam(tiny_cnn, x, O.channel_mean("features.1", 0), layer="features.5")
    for call in (lambda: grad_cam(tiny_cnn, x[..., :1, :1], 0), lambda: guided_grad_cam(tiny_cnn, x[..., :1, :1], 0)):
        with pytest.raises(ValueError, match=r"1x1 px is too small .* at least 2x2 px; pass an image of at least "
                                             r"2x2 px$"):
            call()
