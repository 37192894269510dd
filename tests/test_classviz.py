import pytest
import torch
import torchvision
from conftest import assert_same_state, model_state
from test_ascent import Boom, caller_state

from helpers import L2PlusPlus, normalize, valid_range, visualize_class, visualize_filter
from helpers.toolbox.ascent import gaussian_blur, l2pp_step

FAST = dict(steps=30, lr=0.05, l2_weight=4e-5 * 16 * 16)  # a weak prior (per pixel; 4e-5 on the sum at 16 px): the
#                                                              tiny model's score gradients are small
OFF = dict(blur_every=0, norm_pct=0.0, contrib_pct=0.0)  # every L2++ operation off


def high_frequency_energy(img: torch.Tensor) -> torch.Tensor:
    """Fraction of the spectral energy (mean removed) above half the Nyquist frequency, per image."""
    spec = torch.fft.fft2(img - img.mean(dim=(-2, -1), keepdim=True)).abs().pow(2).sum(dim=1)
    fy = torch.fft.fftfreq(img.shape[-2]).abs().view(-1, 1)
    fx = torch.fft.fftfreq(img.shape[-1]).abs().view(1, -1)
    high = (fy > 0.25) | (fx > 0.25)
    return (spec * high).sum(dim=(-2, -1)) / spec.sum(dim=(-2, -1))


def test_class_score_rises_and_is_the_logit(tiny_cnn):
    res = visualize_class(tiny_cnn, [0, 3], start=16, **FAST)
    assert res.image.shape == (2, 3, 16, 16)
    assert res.history.shape == (30, 2)
    assert (res.history[-1] > res.history[0] + 0.05).all()
    with torch.no_grad():
        logits = tiny_cnn(res.image)
    assert torch.allclose(res.score, logits[[0, 1], [0, 3]], atol=1e-5)  # the raw score, not a probability
    assert res.classes == [0, 3]


def test_the_loss_is_minus_score_plus_lambda_l2_exactly(tiny_cnn):
    # one plain SGD step: I - lr * d/dI (-S_c(I) + lambda * ||I||^2 / (H*W)), the gradient taken by autograd
    start = normalize(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    lam, lr = 80.0, 0.1  # per pixel
    res = visualize_class(tiny_cnn, 2, start=start, steps=1, lr=lr, l2_weight=lam, optimizer="sgd", clamp=False)
    x = start.clone().requires_grad_(True)
    loss = -tiny_cnn(x)[0, 2] + lam * x.pow(2).sum() / (16 * 16)
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.allclose(res.image, start - lr * grad, atol=1e-6)


def test_contribution_clip_uses_the_score_gradient_alone(tiny_cnn):
    # lr=0: the image stays the start, so the clip acts on |sum_rgb I * dS/dI| at the start image
    start = normalize(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)))
    lam = 1280.0  # a strong prior (per pixel): the loss gradient -dS/dI + 2 lam I / (H*W) ranks the pixels differently
    res = visualize_class(tiny_cnn, 3, start=start, steps=1, lr=0.0, l2_weight=lam, optimizer="sgd", clamp=False,
                          l2pp=L2PlusPlus(**dict(OFF, contrib_pct=25.0)))
    x = start.clone().requires_grad_(True)
    (score_grad,) = torch.autograd.grad(tiny_cnn(x)[0, 3], x)
    by_score = (start * score_grad).sum(dim=1).abs().flatten().argsort()[:64]
    by_loss = (start * (2 * lam / 256 * start - score_grad)).sum(dim=1).abs().flatten().argsort()[:64]
    zeroed = (res.image == 0).all(dim=1).flatten().nonzero().flatten()
    assert set(zeroed.tolist()) == set(by_score.tolist())
    assert set(by_loss.tolist()) != set(by_score.tolist())  # the test tells the two apart


def test_jitter_is_a_separate_option_off_by_default(tiny_cnn):
    photo = normalize(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)))
    plain = [visualize_class(tiny_cnn, 1, start=photo, l2pp=L2PlusPlus(), seed=s, **FAST).image for s in (0, 1)]
    assert torch.equal(plain[0], plain[1])  # nothing random without jitter
    shaken = [visualize_class(tiny_cnn, 1, start=photo, l2pp=L2PlusPlus(), jitter=3, seed=s, **FAST).image
              for s in (0, 1)]
    assert not torch.allclose(shaken[0], shaken[1])
    with pytest.raises(TypeError):
        L2PlusPlus(jitter=4)  # not one of Yosinski et al.'s operations
    with pytest.raises(ValueError, match="jitter"):
        visualize_class(tiny_cnn, 1, start=16, jitter=-1, **FAST)


def test_larger_l2_weight_gives_a_smaller_image(tiny_cnn):
    norms = [visualize_class(tiny_cnn, 1, start=16, clamp=False, **dict(FAST, l2_weight=lam)).image.norm().item()
             for lam in (0.0, 0.01, 0.1, 1.0)]
    assert all(a > 1.2 * b for a, b in zip(norms, norms[1:], strict=False)), norms


def test_start_from_a_photo(tiny_cnn):
    photo = normalize(torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0)))
    copy = photo.clone()
    same = visualize_class(tiny_cnn, [1, 2], start=photo, steps=1, lr=0.0)
    assert torch.equal(same.image, photo.expand(2, -1, -1, -1))
    moved = visualize_class(tiny_cnn, 2, start=photo, **FAST)
    assert moved.score[0] > same.score[1]
    assert torch.equal(photo, copy)  # the caller's tensor is untouched


def test_l2pp_blur_removes_high_frequencies(tiny_cnn):
    plain = visualize_class(tiny_cnn, 1, start=16, l2pp=None, **FAST)
    blurred = visualize_class(tiny_cnn, 1, start=16, l2pp=L2PlusPlus(**dict(OFF, blur_every=1), blur_sigma=1.0), **FAST)
    assert high_frequency_energy(blurred.image) < 0.3 * high_frequency_energy(plain.image)
    rare = visualize_class(tiny_cnn, 1, start=16, l2pp=L2PlusPlus(**dict(OFF, blur_every=10), blur_sigma=1.0), **FAST)
    assert high_frequency_energy(blurred.image) < high_frequency_energy(rare.image)


def test_gaussian_blur_keeps_constants_and_mean():
    flat = torch.full((1, 3, 9, 9), 0.7)
    assert torch.allclose(gaussian_blur(flat, 1.0), flat)
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(gaussian_blur(x, 1.0).mean(), x.mean(), atol=0.02)
    assert gaussian_blur(x, 1.0).std() < 0.6 * x.std()


def test_l2pp_norm_clip_sets_small_pixels_to_the_mean(tiny_cnn):
    ops = L2PlusPlus(**dict(OFF, norm_pct=50.0))
    res = visualize_class(tiny_cnn, [1, 2], start=16, l2pp=ops, **FAST)
    at_mean = (res.image == 0).all(dim=1)  # 0 in normalized space is the dataset mean colour, exactly
    assert (at_mean.float().mean(dim=(1, 2)) >= 0.5).all()
    norms = res.image.norm(dim=1)
    for i in range(2):  # the clipped pixels are the small ones
        assert norms[i][~at_mean[i]].min() > 0
    plain = visualize_class(tiny_cnn, [1, 2], start=16, **FAST)
    assert not (plain.image == 0).all(dim=1).any()


def test_l2pp_step_by_hand():
    g = torch.Generator().manual_seed(0)
    img, grad = torch.randn(1, 3, 4, 4, generator=g), torch.randn(1, 3, 4, 4, generator=g)
    contrib = (img * grad).sum(dim=1).abs().flatten()  # Yosinski et al.'s |sum_rgb pixel * gradient|
    out = l2pp_step(img, grad, 0, L2PlusPlus(**dict(OFF, contrib_pct=25.0)))
    zeroed = (out == 0).all(dim=1).flatten()
    assert set(zeroed.nonzero().flatten().tolist()) == set(contrib.argsort()[:4].tolist())
    assert torch.equal(out.flatten(2)[..., ~zeroed], img.flatten(2)[..., ~zeroed])
    norm = img.norm(dim=1).flatten()
    out = l2pp_step(img, grad, 0, L2PlusPlus(**dict(OFF, norm_pct=50.0)))
    assert set((out == 0).all(dim=1).flatten().nonzero().flatten().tolist()) == set(norm.argsort()[:8].tolist())
    # the blur only runs every blur_every steps
    ops = L2PlusPlus(**dict(OFF, blur_every=3))
    assert torch.equal(l2pp_step(img, grad, 0, ops), img)
    assert not torch.equal(l2pp_step(img, grad, 2, ops), img)


def test_l2pp_run_is_displayable_and_rises(tiny_cnn):
    res = visualize_class(tiny_cnn, [0, 4], start=16, l2pp=L2PlusPlus(), **FAST)
    low, high = valid_range(res.image)
    assert (res.image >= low - 1e-6).all() and (res.image <= high + 1e-6).all()
    assert (res.score > res.history[0]).all()


def test_batch_equals_one_by_one_with_l2pp(tiny_cnn):
    opts = dict(FAST, l2pp=L2PlusPlus(), jitter=2, seed=4)
    batch = visualize_class(tiny_cnn, [0, 3], start=16, **opts)
    single = visualize_class(tiny_cnn, 3, start=16, **opts)
    assert torch.allclose(batch.image[1], single.image[0], atol=1e-5)


def test_maximize_activation_with_l2pp(tiny_cnn):
    res = visualize_filter(tiny_cnn, "features.5", [0, 5], start=16, l2pp=L2PlusPlus(), **FAST)
    assert (res.score > res.history[0] + 0.02).all()
    with torch.no_grad():
        acts = tiny_cnn.features[:6](res.image).mean(dim=(2, 3))  # features.5 is the last conv
    assert torch.allclose(res.score, acts[[0, 1], [0, 5]], atol=1e-5)


def test_deterministic_given_seed(tiny_cnn):
    opts = dict(FAST, l2pp=L2PlusPlus(), jitter=3)
    a = visualize_class(tiny_cnn, 2, start=16, seed=1, **opts)
    b = visualize_class(tiny_cnn, 2, start=16, seed=1, **opts)
    c = visualize_class(tiny_cnn, 2, start=16, seed=2, **opts)
    assert torch.equal(a.image, b.image)
    assert not torch.allclose(a.image, c.image)


def test_bad_inputs(tiny_cnn):
    with pytest.raises(ValueError, match="0 to 4"):
        visualize_class(tiny_cnn, 5, start=16, **FAST)
    with pytest.raises(ValueError, match="features"):
        visualize_filter(tiny_cnn, "features.55", 0, start=16, l2pp=L2PlusPlus(), **FAST)
    with pytest.raises(ValueError, match="0 to 15"):
        visualize_filter(tiny_cnn, "features.5", 16, start=16, l2pp=L2PlusPlus(), **FAST)
    with pytest.raises(ValueError, match="lambda of the L2 prior"):
        visualize_filter(tiny_cnn, "features.5", 0, start=16, l2pp=L2PlusPlus(), **dict(FAST, l2_weight=-1.0))
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
        visualize_class(tiny_cnn, [0, 1, 2], start=torch.zeros(2, 3, 8, 8), **FAST)
    with pytest.raises(ValueError, match="percentile"):
        L2PlusPlus(norm_pct=100)


def test_caller_state_unchanged(tiny_cnn):
    caller_state(tiny_cnn)
    before = model_state(tiny_cnn)
    visualize_class(tiny_cnn, [0, 1], start=16, l2pp=L2PlusPlus(), **FAST)
    visualize_filter(tiny_cnn, "features.5", 0, start=16, l2pp=L2PlusPlus(), **FAST)
    with pytest.raises(ValueError):
        visualize_class(tiny_cnn, 9, start=16, **FAST)  # raised inside the loop, after the first forward
    assert_same_state(before, model_state(tiny_cnn))


def test_caller_state_unchanged_after_interrupt_and_forward_stops(tiny_cnn):
    caller_state(tiny_cnn)
    tiny_cnn.classifier = Boom()  # after the target layer: must never run
    visualize_filter(tiny_cnn, "features.5", 0, start=16, l2pp=L2PlusPlus(), **FAST)
    tiny_cnn.features[4] = Boom(KeyboardInterrupt)
    before = model_state(tiny_cnn)
    with pytest.raises(KeyboardInterrupt):
        visualize_filter(tiny_cnn, "features.5", 0, start=16, l2pp=L2PlusPlus(), **FAST)
    assert_same_state(before, model_state(tiny_cnn))


def test_diverging_is_an_error(tiny_cnn):
    with pytest.raises(FloatingPointError, match="NaN"):
        visualize_class(tiny_cnn, 0, start=16, steps=20, optimizer="sgd", lr=1e30, l2_weight=1e3 * 256, clamp=False)


def test_resnet18_shared_relu_and_logits():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    before = model_state(net)
    cls = visualize_class(net, 7, start=32, steps=3)
    act = visualize_filter(net, "layer1.0.relu", 3, start=32, steps=3, l2pp=L2PlusPlus())  # a ReLU run twice
    assert cls.score[0] > cls.history[0, 0] and act.score[0] > act.history[0, 0]
    pp = visualize_class(net, [7, 8], start=32, steps=3, l2pp=L2PlusPlus(blur_every=2, norm_pct=30.0))
    assert pp.image.shape == (2, 3, 32, 32)
    assert (pp.image == 0).all(dim=1).float().mean() > 0.29  # the pixels below the 30th percentile
    assert_same_state(before, model_state(net))


def test_the_default_l2_weight_is_1e_4_on_the_sum_at_the_default_size(tiny_cnn):
    """l2_weight is per pixel: the default 1e-4 * 224 * 224 is 1e-4 on the summed squared norm of the default
    224 px start."""
    from helpers import objectives as O
    from helpers import render

    new = visualize_class(tiny_cnn, 1, steps=3)
    on_the_sum = O.Objective(lambda acts: 1e-4 * acts[O.IMAGE].pow(2).flatten(1).sum(1), {O.IMAGE: None}, "sum")
    old = render(tiny_cnn, O.class_logit(1) - on_the_sum, start=224, steps=3, lr=0.05)
    assert new.image.shape == (1, 3, 224, 224) and torch.allclose(new.image, old.image, atol=1e-6)
