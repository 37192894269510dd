import copy

import pytest
import torch
import torchvision
from conftest import assert_same_state, awkward_copy, model_state
from torch import nn

import helpers as H
from helpers import saliency_map


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def reference(model, x, targets):
    """Independent autograd: one image at a time, .backward() on a copy of the model."""
    model = copy.deepcopy(model).eval()
    maps = []
    for xi, t in zip(x, targets, strict=True):
        xi = xi[None].clone().requires_grad_(True)
        model(xi)[0, t].backward()
        maps.append(xi.grad.abs().amax(1)[0])
    return torch.stack(maps)


def test_linear_model_gives_the_weights_of_the_target_class():
    # For logits = W x the gradient of score t is W[t]: the saliency is |W[t]| maxed over colour channels.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 6))
    x = torch.randn(2, 3, 4, 5)
    sal = saliency_map(model, x, [1, 4])
    w = model[1].weight.detach().view(6, 3, 4, 5)
    assert sal.shape == (2, 4, 5)
    assert torch.allclose(sal[0], w[1].abs().amax(0))
    assert torch.allclose(sal[1], w[4].abs().amax(0))


def test_uses_the_unnormalized_score_not_the_probability():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.randn(1, 3, 2, 2)
    xs = x.clone().requires_grad_(True)
    (prob_grad,) = torch.autograd.grad(model(xs).softmax(1)[0, 2], xs)
    sal = saliency_map(model, x, 2)
    assert torch.allclose(sal, model[1].weight[2].detach().view(3, 2, 2).abs().amax(0)[None])
    assert not torch.allclose(sal, prob_grad.abs().amax(1))


def test_loss_option_is_the_cross_entropy_gradient():
    # For logits = W x the gradient of CE(logits, t) is W^T (p - onehot(t)), by hand; it is not the score's W[t].
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.randn(2, 3, 2, 2)
    w = model[1].weight.detach()
    p = model(x).softmax(1).detach()
    by_hand = ((p - torch.eye(3)[[2, 0]]) @ w).view(2, 3, 2, 2).abs().amax(1)
    sal = saliency_map(model, x, [2, 0], loss=True)
    assert torch.allclose(sal, by_hand, atol=1e-6)
    assert not torch.allclose(sal, saliency_map(model, x, [2, 0]))


def test_loss_option_matches_autograd_of_cross_entropy(tiny_cnn):
    torch.manual_seed(2)
    x = torch.randn(3, 3, 12, 12)
    targets = torch.tensor([1, 4, 0])
    model = copy.deepcopy(tiny_cnn).eval()
    xs = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(model(xs), targets, reduction="sum").backward()
    assert torch.allclose(saliency_map(tiny_cnn, x, targets, loss=True), xs.grad.abs().amax(1), atol=1e-7)


def test_matches_independent_autograd_per_image(tiny_cnn):
    torch.manual_seed(1)
    x = torch.randn(3, 3, 12, 12)
    targets = [0, 4, 2]
    assert torch.allclose(saliency_map(tiny_cnn, x, targets), reference(tiny_cnn, x, targets), atol=1e-7)


def test_one_target_for_the_whole_batch(tiny_cnn):
    x = torch.randn(3, 3, 8, 8)
    expected = saliency_map(tiny_cnn, x, [3, 3, 3])
    assert torch.equal(saliency_map(tiny_cnn, x, 3), expected)
    assert torch.equal(saliency_map(tiny_cnn, x, torch.tensor(3)), expected)
    assert torch.equal(saliency_map(tiny_cnn, x, torch.tensor([3, 3, 3])), expected)


def test_single_image_without_batch_axis(tiny_cnn):
    x = torch.randn(3, 8, 8)
    assert torch.equal(saliency_map(tiny_cnn, x, 1), saliency_map(tiny_cnn, x[None], 1))


def test_resnet18_matches_reference_and_targets_differ(resnet):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 64, 64)
    sal = saliency_map(resnet, x, [243, 285])
    assert sal.shape == (2, 64, 64) and (sal >= 0).all()
    assert torch.allclose(sal, reference(resnet, x, [243, 285]), rtol=1e-4, atol=1e-7)
    dog, cat = saliency_map(resnet, x[:1], 243), saliency_map(resnet, x[:1], 285)
    assert not torch.allclose(dog, cat)


def test_matches_captum_saliency(tiny_cnn, resnet):
    attr = pytest.importorskip("captum.attr")
    torch.manual_seed(3)
    for model, x, targets in [(tiny_cnn, torch.randn(4, 3, 10, 10), [0, 1, 2, 4]),
                              (resnet, torch.randn(2, 3, 64, 64), [243, 285])]:
        theirs = attr.Saliency(model).attribute(x.clone().requires_grad_(True), target=targets, abs=True).amax(1)
        assert torch.allclose(saliency_map(model, x, targets), theirs, rtol=1e-4, atol=1e-7)


def test_leaves_model_and_input_as_found(resnet):
    model = awkward_copy(resnet)
    before = model_state(model)
    x = torch.randn(1, 3, 32, 32)
    x_before = x.clone()
    saliency_map(model, x, 5)
    assert_same_state(before, model_state(model))  # includes BatchNorm running stats: eval mode was used
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None


def test_computes_in_eval_mode_and_restores_even_on_error(tiny_cnn):
    seen = []
    tiny_cnn.train()
    tiny_cnn.features[0].register_forward_pre_hook(lambda m, i: seen.append(m.training))
    saliency_map(tiny_cnn, torch.randn(1, 3, 8, 8), 0)
    assert seen == [False] and tiny_cnn.training
    with pytest.raises(ValueError, match="out of range"):
        saliency_map(tiny_cnn, torch.randn(1, 3, 8, 8), 5)
    assert all(m.training for m in tiny_cnn.modules())


def test_works_inside_no_grad(tiny_cnn):
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        sal = saliency_map(tiny_cnn, x, 0)
    assert torch.equal(sal, saliency_map(tiny_cnn, x, 0)) and sal.abs().sum() > 0


@pytest.mark.parametrize("target, match", [(-1, "out of range"), ([0, 1], "2 targets for a batch of 3"),
                                           (1.0, "class index"), (True, "class index")])
def test_bad_targets(tiny_cnn, target, match):
    with pytest.raises(ValueError, match=match):
        saliency_map(tiny_cnn, torch.randn(3, 3, 8, 8), target)


def test_bad_image_shape(tiny_cnn):
    with pytest.raises(ValueError, match="image must be"):
        saliency_map(tiny_cnn, torch.randn(8, 8), 0)


@pytest.mark.parametrize("method", ["saliency_map", "guided_backprop", "grad_cam", "occlusion_map", "fgsm"])
def test_a_model_without_logits_is_a_clear_error(tiny_cnn, method):
    import helpers

    feature_map = tiny_cnn.features  # returns (N, 16, h, w), not (N, classes)
    kwargs = {"layer": "3"} if method == "grad_cam" else {}
    with pytest.raises(ValueError, match=r"must return logits \(N, classes\), got shape \(1, 16, 8, 8\)"):
        getattr(helpers, method)(feature_map, torch.rand(1, 3, 16, 16), 0, **kwargs)


def test_centre_of_mass_by_hand():
    m = torch.zeros(2, 5, 7)
    m[0, 1, 2] = 1.0
    m[0, 3, 6] = 3.0  # rows (1 + 9) / 4 = 2.5, cols (2 + 18) / 4 = 5
    m[1] = 1.0        # uniform: the middle
    assert torch.allclose(H.centre_of_mass(m), torch.tensor([[2.5, 5.0], [2.0, 3.0]]))
    assert torch.allclose(H.centre_of_mass(m[0]), torch.tensor([[2.5, 5.0]]))
    assert H.centre_of_mass(torch.zeros(3, 3)).isnan().all()
    with pytest.raises(ValueError, match="non-negative"):
        H.centre_of_mass(-m)


def test_top_overlap_by_hand_and_against_sets():
    a = torch.arange(100.0).view(1, 10, 10)
    assert H.top_overlap(a, a).item() == 1.0
    assert H.top_overlap(a, -a).item() == 0.0  # top ten are 90..99 versus 0..9
    b = a.clone()
    b[0, 9, 5:] = -1.0  # five of a's top ten pixels leave b's top ten, 85..89 come in
    assert H.top_overlap(a, b).item() == pytest.approx(5 / 15)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 12, 12, generator=g), torch.rand(4, 12, 12, generator=g)
    k = round(0.2 * 144)
    for i, value in enumerate(H.top_overlap(x, y, 0.2)):
        top_x, top_y = set(x[i].flatten().topk(k).indices.tolist()), set(y[i].flatten().topk(k).indices.tolist())
        assert value.item() == pytest.approx(len(top_x & top_y) / len(top_x | top_y))
    empty = torch.zeros(12, 12)
    assert H.top_overlap(empty, y[0]).isnan().all() and H.top_overlap(x[:2], torch.stack([x[0], empty]))[1].isnan()
    with pytest.raises(ValueError, match="same shape"):
        H.top_overlap(x, y[:, :5])
    with pytest.raises(ValueError, match="fraction"):
        H.top_overlap(x, y, 0.0)


def test_local_contrast_is_the_windowed_standard_deviation():
    g = torch.Generator().manual_seed(0)
    gray = torch.rand(1, 1, 12, 12, generator=g)
    image = H.normalize(gray.expand(1, 3, 12, 12))
    c = H.local_contrast(image, window=3)
    assert c.shape == (1, 12, 12)
    assert c[0, 5, 7].item() == pytest.approx(gray[0, 0, 4:7, 6:9].std(unbiased=False).item(), abs=1e-5)
    flat = H.normalize(torch.full((3, 8, 8), 0.3))
    assert torch.allclose(H.local_contrast(flat, 5), torch.zeros(1, 8, 8), atol=1e-4)
    with pytest.raises(ValueError, match="odd"):
        H.local_contrast(image, window=4)


def test_class_saliency_is_autograd_and_captum(tiny_cnn, resnet):
    # The plain function the sheet shows: the same numbers as independent autograd and captum's Saliency.
    torch.manual_seed(4)
    for model, x, targets in [(tiny_cnn, torch.randn(3, 3, 10, 10), [2, 0, 4]),
                              (resnet, torch.randn(2, 3, 64, 64), [243, 285])]:
        ours = H.class_saliency(model, x, targets)
        assert torch.allclose(ours, reference(model, x, targets), rtol=1e-4, atol=1e-7)
        attr = pytest.importorskip("captum.attr")
        theirs = attr.Saliency(model).attribute(x.clone().requires_grad_(True), target=targets, abs=True).amax(1)
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-7)
        assert torch.equal(saliency_map(model, x, targets), ours)  # the package's function runs this one


def test_class_saliency_loss_is_the_cross_entropy_gradient(tiny_cnn):
    torch.manual_seed(5)
    x, targets = torch.randn(2, 3, 12, 12), torch.tensor([3, 1])
    model = copy.deepcopy(tiny_cnn).eval()
    xs = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(model(xs), targets, reduction="sum").backward()
    assert torch.allclose(H.class_saliency(tiny_cnn, x, targets, loss=True), xs.grad.abs().amax(1), atol=1e-7)


def test_class_saliency_leaves_model_and_input_as_found(resnet):
    model = awkward_copy(resnet)
    before = model_state(model)
    x = torch.randn(1, 3, 32, 32)
    x_before = x.clone()
    H.class_saliency(model, x, 7)
    assert_same_state(before, model_state(model))
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None
