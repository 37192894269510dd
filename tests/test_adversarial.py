import copy
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import assert_same_state, model_state
from torch import nn

from helpers import FoolingResult, denormalize, fgsm, fooling_image, normalize, valid_range


def linear_model(seed: int = 0, classes: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, classes, bias=False)).eval()


def grey(n: int = 1, size: int = 4) -> torch.Tensor:
    return normalize(torch.full((n, 3, size, size), 0.5))


def pixel_gradient(model: nn.Module, x: torch.Tensor, c: int) -> torch.Tensor:
    u = denormalize(x).requires_grad_(True)
    (g,) = torch.autograd.grad(model(normalize(u))[:, c].sum(), u)
    return g


def test_linear_model_takes_the_predicted_number_of_steps():
    # For a linear model the gradient is constant, so every step raises S_t - S_a by the same amount
    # d = lr * g_t . (g_t - g_a) / ||g_t||; the number of steps and the L2 norm (k * lr) follow.
    model, x, lr = linear_model(), grey(), 0.01
    scores = model(x)[0].detach()
    a = int(scores.argmax())
    t = 1 - a
    g_t, g_a = pixel_gradient(model, x, t), pixel_gradient(model, x, a)
    d = lr * float((g_t * (g_t - g_a)).sum() / g_t.norm())
    k = math.floor((scores[a] - scores[t]).item() / d) + 1
    res = fooling_image(model, x, t, lr=lr, max_steps=10 * k)
    assert isinstance(res, FoolingResult)
    assert res.fooled.tolist() == [True] and res.steps.tolist() == [k]
    assert torch.allclose(res.l2, torch.tensor([k * lr]), rtol=1e-4)
    assert torch.allclose(res.perturbation, k * lr * g_t / g_t.norm(), atol=1e-5)
    assert torch.allclose(res.linf, res.perturbation.abs().amax().view(1), atol=1e-6)
    conf = res.confidence[:, 0]
    assert conf.shape == (k + 1,) and (conf.diff() > 0).all() and conf[-2] < 0.5 < conf[-1]
    assert int(model(res.image).argmax()) == t


def small_cnn() -> nn.Module:
    """Conv -> in-place ReLU -> pool -> linear: unlike a global-average-pooled random net, it reacts to pixels."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(8 * 8 * 8, 5)).eval()


def test_fools_a_cnn_into_each_target_and_stays_a_valid_image():
    model = small_cnn()
    x = normalize(torch.rand(3, 3, 16, 16))
    pred = model(x).argmax(1)
    targets = (pred + torch.tensor([1, 2, 0])) % 5  # the third image is already "fooled": no step
    res = fooling_image(model, x, targets, lr=0.05, max_steps=200)
    assert res.fooled.all() and torch.equal(model(res.image).argmax(1), targets)
    assert (res.steps[:2] > 0).all() and res.steps[2] == 0 and torch.equal(res.image[2], x[2])
    low, high = valid_range(x)
    assert (res.image >= low).all() and (res.image <= high).all()
    assert torch.equal(res.original, x) and res.confidence.shape == (int(res.steps.max()) + 1, 3)
    assert (res.confidence[-1] > res.confidence[0])[:2].all()
    assert ((res.l2 > 0) == (res.steps > 0)).all() and (res.linf <= res.l2).all()
    # one step fewer would not have been enough: the image before the last step is not yet the target
    fewer = fooling_image(model, x[0], int(targets[0]), lr=0.05, max_steps=int(res.steps[0]) - 1)
    assert not fewer.fooled.item() and torch.allclose(fewer.confidence[:, 0], res.confidence[:-1, 0])


def test_gives_up_after_max_steps():
    model, x = linear_model(), grey()
    t = 1 - int(model(x).argmax())
    res = fooling_image(model, x, t, lr=1e-6, max_steps=3)
    assert res.fooled.tolist() == [False] and res.steps.tolist() == [3] and res.confidence.shape == (4, 1)


def test_fgsm_is_epsilon_times_the_sign_of_the_loss_gradient():
    model, x, eps = linear_model(1), grey(), 3 / 255
    label = int(model(x).argmax())
    w = model[1].weight.detach().view(2, 3, 4, 4) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    away = (w[1 - label] - w[label]).sign()  # direction that raises the loss of `label`
    adv = fgsm(model, x, label, epsilon=eps)
    assert torch.allclose(denormalize(adv) - denormalize(x), eps * away[None], atol=1e-6)
    toward = fgsm(model, x, 1 - label, epsilon=eps, targeted=True)
    assert torch.allclose(toward, adv, atol=1e-6)  # two classes: towards the other one = away from this one


def test_fgsm_raises_the_loss_and_respects_epsilon_and_range(tiny_cnn):
    torch.manual_seed(1)
    x = normalize(torch.rand(4, 3, 16, 16))
    label = tiny_cnn(x).argmax(1)
    adv = fgsm(tiny_cnn, x, label, epsilon=4 / 255)
    diff = denormalize(adv) - denormalize(x)
    assert diff.abs().max() <= 4 / 255 + 1e-6 and diff.abs().max() > 3.9 / 255
    low, high = valid_range(x)
    assert (adv >= low).all() and (adv <= high).all()
    assert F.cross_entropy(tiny_cnn(adv), label) > F.cross_entropy(tiny_cnn(x), label)
    assert torch.equal(fgsm(tiny_cnn, x, label, epsilon=0.0), normalize(denormalize(x).clamp(0, 1)))
    assert fgsm(tiny_cnn, x[0], label[0]).shape == (3, 16, 16)


def test_leaves_model_and_input_as_found_also_on_errors():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).train()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    model.conv1.weight.requires_grad_(False)
    before = model_state(model)
    x = normalize(torch.rand(1, 3, 32, 32))
    x_before = x.clone()
    fooling_image(model, x, 3, max_steps=2)
    fgsm(model, x, 3)
    with pytest.raises(ValueError, match="out of range"):
        fooling_image(model, x, 10)
    with pytest.raises(ValueError, match="outside"):
        fgsm(model, x * 10, 3)
    assert_same_state(before, model_state(copy.copy(model)))
    assert torch.equal(x, x_before) and not x.requires_grad


@pytest.mark.parametrize("kwargs, match", [({"lr": 0.0}, "lr"), ({"max_steps": -1}, "max_steps")])
def test_bad_arguments(tiny_cnn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fooling_image(tiny_cnn, grey(1, 8), 0, **kwargs)
    with pytest.raises(ValueError, match="epsilon"):
        fgsm(tiny_cnn, grey(1, 8), 0, epsilon=-1.0)


def test_plot_fooling_shows_the_three_images_and_the_trajectory():
    import matplotlib.pyplot as plt

    from helpers import plot_fooling

    model = small_cnn()
    x = normalize(torch.rand(1, 3, 16, 16))
    res = fooling_image(model, x, (int(model(x).argmax()) + 1) % 5, lr=0.05, max_steps=100)
    fig = plot_fooling(res, classes=[f"class{i}" for i in range(5)])
    try:
        axes = fig.axes
        assert len(axes) == 4 and all(len(ax.images) == 1 for ax in axes[:3])
        diff = axes[2].images[0].get_array()
        assert abs(float(abs(diff - 0.5).max()) - 0.5) < 1e-6  # magnified so the largest change spans the range
        assert len(axes[3].lines[0].get_xdata()) == int(res.steps[0]) + 1 and "class" in axes[1].get_title()
    finally:
        plt.close(fig)


def reference_fooling(model: nn.Module, x: torch.Tensor, t: torch.Tensor, lr: float, max_steps: int):
    """The update written out in pixel space: the loop fooling_image ran before it went through helpers.render."""
    u = denormalize(x).clamp(0, 1)
    steps = torch.zeros(len(x), dtype=torch.long)
    for step in range(max_steps + 1):
        u.requires_grad_(True)
        scores = model(normalize(u))
        fooled = scores.argmax(1) == t
        if bool(fooled.all()) or step == max_steps:
            break
        (g,) = torch.autograd.grad(scores.gather(1, t[:, None]).sum(), u)
        norm = g.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)
        u = (u.detach() + (~fooled).float().view(-1, 1, 1, 1) * lr * g / norm).clamp(0, 1)
        steps += (~fooled).long()
    return normalize(u.detach()), steps


@pytest.mark.parametrize("max_steps", [200, 7])
def test_the_same_images_and_steps_as_the_update_written_out_in_pixels(max_steps):
    model = small_cnn()
    torch.manual_seed(0)
    x = normalize(torch.rand(3, 3, 16, 16))
    targets = (model(x).argmax(1) + torch.tensor([1, 2, 0])) % 5
    res = fooling_image(model, x, targets, lr=0.05, max_steps=max_steps)
    image, steps = reference_fooling(model, x, targets, 0.05, max_steps)
    assert torch.equal(res.steps, steps) and torch.allclose(res.image, image, atol=1e-5)
    assert res.history.shape == (int(steps.max()), 3) and not res.interrupted


def test_ctrl_c_at_step_k_returns_the_k_steps_made():
    from test_deepdream import InterruptAtForward

    model = small_cnn()
    torch.manual_seed(0)
    x = normalize(torch.rand(2, 3, 16, 16))
    targets = (model(x).argmax(1) + 1) % 5
    hook = InterruptAtForward(3)  # the forward pass of step 3, after 3 updates
    handle = model[0].register_forward_hook(hook)
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            partial = fooling_image(model, x, targets, lr=0.01, max_steps=50)
    finally:
        handle.remove()
    assert isinstance(partial, FoolingResult) and partial.interrupted and partial.history.shape == (3, 2)
    assert partial.steps.tolist() == [3, 3] and partial.confidence.shape == (4, 2)
    three = fooling_image(model, x, targets, lr=0.01, max_steps=3)
    assert not three.interrupted and torch.equal(partial.image, three.image)
    assert torch.equal(partial.confidence, three.confidence) and torch.equal(partial.fooled, three.fooled)


def test_one_image_in_one_image_out_and_amp_channels_last_accepted():
    model = small_cnn()
    torch.manual_seed(1)
    x = normalize(torch.rand(3, 16, 16))
    t = (int(model(x[None]).argmax()) + 1) % 5
    one = fooling_image(model, x, t, lr=0.05, max_steps=100)
    batch = fooling_image(model, x[None], t, lr=0.05, max_steps=100)
    assert one.image.shape == one.original.shape == (3, 16, 16) and torch.equal(one.original, x)
    assert torch.equal(one.image, batch.image[0]) and one.steps.tolist() == batch.steps.tolist() == [int(batch.steps)]
    assert one.perturbation.shape == (3, 16, 16) and one.image.device == x.device
    plain = fooling_image(model, x, t, lr=0.05, max_steps=100, channels_last=False)
    # Other kernels (NCHW): ReLUs and max-pools that switch within rounding along the 100-step path move the image
    # by up to ~4% of the perturbation (measured with --fp-noise); a broken path would not fool or differ wholly.
    assert plain.fooled.all() and abs(int(plain.steps) - int(one.steps)) <= 1
    assert (plain.image - one.image).abs().max() <= 0.1 * one.perturbation.abs().max()
    fast = fooling_image(model, x, t, lr=0.05, max_steps=100, amp=True)  # bfloat16: close, not equal
    assert fast.fooled.all() and fast.image.shape == (3, 16, 16)
    assert abs(int(fast.steps) - int(one.steps)) <= max(2, int(one.steps) // 4)
    import matplotlib.pyplot as plt

    from helpers import plot_fooling
    fig = plot_fooling(one)
    try:
        assert len(fig.axes[0].images) == 1 and fig.axes[0].images[0].get_array().shape[:2] == (16, 16)
    finally:
        plt.close(fig)
