import pytest
import torch
import torch.nn.functional as F
from conftest import TwoBranches, assert_same_state, model_state
from test_deepdream import InterruptAtForward

import helpers as H
from helpers import (
    capture_activations,
    deep_dream,
    invert_features,
    normalize,
    synthesize_texture,
    visualize_class,
    visualize_diverse,
    visualize_filter,
)
from helpers import objectives as O
from helpers.toolbox.deepdream import DreamStep
from helpers.toolbox.engine import RenderResult, Step, StopRender, jitter, objective_score, render


def test_visualize_filter_is_render(tiny_cnn):
    opts = dict(steps=12, lr=0.1, seed=5)
    res = visualize_filter(tiny_cnn, "features.5", [3, 8], start=16, jitter=2, tv_weight=0.3, l2_weight=0.2,
                           clamp=False, **opts)
    objective = (O.channel_mean("features.5", [3, 8]) - O.total_variation(0.3)
                 - O.l2(0.2))
    direct = render(tiny_cnn, objective, start=16, transforms=[jitter(2)],
                    clamp=False, track={"score": O.channel_mean("features.5", [3, 8])}, **opts)
    assert torch.equal(res.image, direct.image)
    assert torch.equal(res.history, direct.tracked["score"])
    assert torch.equal(res.score, direct.tracked_score["score"])  # the channel means, without the priors
    assert torch.equal(res.tracked["total"], direct.history) and torch.equal(res.tracked_score["total"], direct.score)
    assert isinstance(res, RenderResult) and not res.interrupted and res.channels == [3, 8]


def test_visualize_filter_start_and_fill_are_renders(tiny_cnn):
    """start= is the start image or its size, fill= its pixel value or noise range: as in render."""
    opts = dict(steps=3, lr=0.1, seed=1)
    objective = O.channel_mean("features.5", 2)
    for start, fill in (((12, 16), 0.5), (12, (0.2, 0.3))):
        res = visualize_filter(tiny_cnn, "features.5", 2, start=start, fill=fill, **opts)
        assert torch.equal(res.image, render(tiny_cnn, objective, start=start, fill=fill, **opts).image)
    photo = normalize(torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(4)))
    res = visualize_filter(tiny_cnn, "features.5", [2, 3], start=photo, **opts)
    direct = render(tiny_cnn, O.channel_mean("features.5", [2, 3]), start=photo, **opts)
    assert torch.equal(res.image, direct.image) and res.image.shape == (2, 3, 12, 12)


def test_l2_weight_means_one_thing(tiny_cnn):
    """The same objective, start, fill, lr and l2_weight through visualize_filter, visualize_diverse and render
    give the same image (the per-pixel prior everywhere)."""
    opts = dict(start=16, fill=(0.4, 0.6), steps=5, lr=0.1, l2_weight=2.0, seed=3)
    a = visualize_filter(tiny_cnn, "features.3", 1, **opts)
    b = render(tiny_cnn, O.channel_mean("features.3", 1) - O.l2(2.0), start=16, steps=5, lr=0.1,
               seed=3)
    assert torch.equal(a.image, b.image)
    c = visualize_diverse(tiny_cnn, "features.3", 1, n=2, diversity_weight=0.0, **opts)
    d = render(tiny_cnn, O.channel_mean("features.3", 1) - O.l2(2.0), n=2, shared_noise=False,
               start=16, fill=(0.4, 0.6), steps=5, lr=0.1, seed=3)
    assert torch.equal(c.image, d.image)
    assert not torch.equal(a.image, visualize_filter(tiny_cnn, "features.3", 1, **dict(opts, l2_weight=0)).image)


def test_visualize_class_with_l2pp_is_render_with_the_l2pp_op(tiny_cnn):
    """L2++ is an `after` op of render: the wrapper's image rebuilt from public names only."""
    w = 20.0  # large enough that the L2 gradient, 2 w I / (H*W), changes which pixels the contribution clip keeps
    # contrib_pct > norm_pct: else the pixels the norm clip set to 0 would be all the contribution clip removes
    ops = H.L2PlusPlus(blur_every=2, norm_pct=10.0, contrib_pct=30.0)
    res = visualize_class(tiny_cnn, [1, 4], start=16, steps=8, l2_weight=w, l2pp=ops, jitter=3, seed=2)
    direct = H.render(tiny_cnn, O.class_logit([1, 4]) - O.l2(w), start=16, steps=8,
                      transforms=[H.jitter(3)], after=[H.L2PlusPlus(blur_every=2, norm_pct=10.0, contrib_pct=30.0,
                                                                   l2_weight=w)],
                      seed=2, track={"score": O.class_logit([1, 4])})
    assert torch.equal(res.image, direct.image)
    assert torch.equal(res.score, direct.tracked_score["score"]) and torch.equal(res.history, direct.tracked["score"])
    assert torch.equal(res.tracked_score["total"], direct.score) and not res.interrupted and res.classes == [1, 4]
    assert not torch.equal(res.image, visualize_class(tiny_cnn, [1, 4], start=16, steps=8, l2_weight=w, jitter=3,
                                                      seed=2).image)  # the L2++ operations ran
    # the contribution clip needs the prior's weight: without it, dS/dI is wrong and so is the image
    wrong = H.render(tiny_cnn, O.class_logit([1, 4]) - O.l2(w), start=16, steps=8,
                     transforms=[H.jitter(3)], after=[ops], seed=2)
    assert not torch.equal(res.image, wrong.image)


def test_l2pp_op_uses_the_score_gradient(tiny_cnn):
    """The contribution clip of the op keeps the pixels with the largest |sum_rgb I * dS/dI|, dS/dI recovered
    from the loss gradient of `score - l2(w)`: compare with autograd of the score alone."""
    img = normalize(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    w = 0.7
    (ds,) = torch.autograd.grad(tiny_cnn(img)[:, 2].sum(), img)  # dS/dI of the logit alone
    l2_grad = 2 * (w / 64) * img.detach()
    ops = H.L2PlusPlus(blur_every=0, norm_pct=0.0, contrib_pct=50.0, l2_weight=w)
    out = ops(img.detach(), Step(0, img.detach(), l2_grad - ds))
    contribution = (img.detach() * ds).sum(dim=1).abs()
    kept = out.abs().sum(dim=1) > 0
    assert torch.equal(kept, contribution >= contribution.flatten().quantile(0.5))


def test_deep_dream_octave_is_render(tiny_cnn):
    photo = normalize(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    dream = deep_dream(tiny_cnn, photo, ["features.3", "features.6"], steps=6, octaves=1, jitter=2, tv_step=0.5,
                       seed=4)
    direct = render(tiny_cnn, O.layer_rms(["features.3", "features.6"]), start=photo, steps=6, lr=0.02,
                    optimizer=lambda params: DreamStep(params, 0.02, 0.5),
                    transforms=[jitter(2, unrolled_first=True)], seed=4)
    assert torch.equal(dream.image, direct.image) and torch.equal(dream.octave_history[0], direct.history)
    assert torch.equal(dream.octave_end[0], direct.score) and torch.equal(dream.score, direct.score)
    assert torch.equal(dream.history, direct.history) and not dream.interrupted


def test_visualize_filter_with_l2pp_is_render_with_its_after_step(tiny_cnn):
    ops = H.L2PlusPlus(blur_every=2, norm_pct=10.0, contrib_pct=10.0)
    res = visualize_filter(tiny_cnn, "features.6", [2, 7], start=(16, 12), fill=0.3, steps=7, lr=0.1,
                           l2_weight=0.5, l2pp=ops, jitter=2, seed=3)
    objective = O.channel_mean("features.6", [2, 7]) - O.l2(0.5)
    direct = render(tiny_cnn, objective, start=(16, 12), fill=0.3, steps=7, lr=0.1, transforms=[jitter(2)], seed=3,
                    after=[H.L2PlusPlus(blur_every=2, norm_pct=10.0, contrib_pct=10.0, l2_weight=0.5)],
                    track={"score": O.channel_mean("features.6", [2, 7])})
    assert torch.equal(res.image, direct.image) and torch.equal(res.score, direct.tracked_score["score"])
    assert torch.equal(res.tracked_score["total"], direct.score) and not res.interrupted


def test_visualize_diverse_is_render(tiny_cnn):
    res = visualize_diverse(tiny_cnn, "features.5", 4, start=12, fill=(0.3, 0.7), n=3, diversity_weight=0.5,
                            diversity_layer="features.3", steps=6, lr=0.1, tv_weight=0.2, l2_weight=0.1, jitter=1,
                            seed=7)
    objective = (O.channel_mean("features.5", 4) + 0.5 * O.diversity("features.3")
                 - O.total_variation(0.2) - O.l2(0.1))
    direct = render(tiny_cnn, objective, start=12, fill=(0.3, 0.7), n=3, shared_noise=False, steps=6, lr=0.1,
                    transforms=[jitter(1)], seed=7, track={"score": O.channel_mean("features.5", 4)})
    assert torch.equal(res.image, direct.image) and torch.equal(res.score, direct.tracked_score["score"])
    assert torch.equal(res.tracked_score["total"], direct.score) and res.channels == [4, 4, 4]


def test_invert_features_is_render(tiny_cnn):
    photo = normalize(torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1)))
    res = invert_features(tiny_cnn, photo, "features.3", steps=6, lr=0.1, tv_weight=0.5, beta=2.0, alpha_weight=0.1,
                          seed=2)
    with torch.no_grad(), capture_activations(tiny_cnn, "features.3") as acts:
        tiny_cnn(photo)
    objective = (O.feature_match("features.3", acts["features.3"]) - O.total_variation(0.5, beta=2.0)
                 - O.alpha_norm(0.1))
    direct = render(tiny_cnn, objective, start=(12, 12), n=2, steps=6, lr=0.1, seed=2,
                    track={"score": O.feature_match("features.3", acts["features.3"])})
    assert torch.equal(res.image, direct.image) and torch.equal(res.score, direct.tracked_score["score"])
    assert torch.equal(res.tracked_score["total"], direct.score)
    # start= and fill= as in every ascent: a constant start, or a start image
    priors = dict(tv_weight=0.5, beta=2.0, alpha_weight=0.1)
    grey = invert_features(tiny_cnn, photo, "features.3", start=12, fill=0.5, steps=3, lr=0.1, seed=2, **priors)
    assert torch.equal(grey.image, render(tiny_cnn, objective, start=12, fill=0.5, n=2, steps=3, lr=0.1, seed=2).image)
    from_photo = invert_features(tiny_cnn, photo, "features.3", start=photo.flip(0), steps=3, lr=0.1, seed=2,
                                 **priors)
    assert torch.equal(from_photo.image, render(tiny_cnn, objective, start=photo.flip(0), steps=3, lr=0.1,
                                                       seed=2).image)
    with pytest.raises(ValueError, match="photos' size 12x12"):
        invert_features(tiny_cnn, photo, "features.3", start=16, steps=1)
    assert torch.equal(res.loss, -res.score) and torch.equal(res.loss_history, -res.history) and (res.loss > 0).all()


def test_synthesize_texture_is_render(tiny_cnn):
    texture = normalize(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)))
    layers = ["features.1", "features.6"]
    res = synthesize_texture(tiny_cnn, texture, layers, start=12, fill=(0.3, 0.5), n=2, steps=6, lr=0.1,
                             layer_weights=[1.0, 3.0], seed=5)
    with torch.no_grad(), capture_activations(tiny_cnn, layers) as acts:
        tiny_cnn(texture)
    grams = {name: O.gram_matrix(acts[name]) for name in layers}
    direct = render(tiny_cnn, O.gram_match(layers, grams, [1.0, 3.0]), start=12, fill=(0.3, 0.5), n=2,
                    shared_noise=False, steps=6, lr=0.1, seed=5)
    assert torch.equal(res.image, direct.image) and torch.equal(res.score, direct.score)
    assert torch.equal(res.history, direct.history) and torch.equal(res.loss, -direct.score)


def test_deep_dream_octaves_are_renders(tiny_cnn):
    """Three octaves by hand: each a render from the photo at that size plus the detail so far, upsampled."""
    photo = normalize(torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(3)))
    dream = deep_dream(tiny_cnn, photo, "features.3", steps=3, octaves=3, octave_scale=1.5, jitter=2, tv_step=0.3,
                       seed=6)
    low, high = normalize(torch.zeros(1, 3, 1, 1)), normalize(torch.ones(1, 3, 1, 1))

    def resize(x, size):
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)

    generator = torch.Generator().manual_seed(6)  # one generator for the jitter of all octaves
    sizes = [(9, 9), (13, 13), (20, 20)]
    detail = torch.zeros(1, 3, 9, 9)
    for k, size in enumerate(sizes):
        base = resize(photo, size)
        direct = render(tiny_cnn, O.layer_rms(["features.3"]), start=(base + resize(detail, size)).clamp(low, high),
                        steps=3, lr=0.02, optimizer=lambda params: DreamStep(params, 0.02, 0.3),
                        transforms=[jitter(2, unrolled_first=True)], seed=generator)
        assert torch.equal(dream.octave_history[k], direct.history) and torch.equal(dream.octave_end[k], direct.score)
        detail = direct.image - base
    assert dream.sizes == sizes and torch.equal(dream.image, direct.image) and torch.equal(dream.score, direct.score)
    assert dream.history.shape == (9, 1) and torch.equal(dream.history[6:], direct.history)


def test_score_rises_and_result_fields(tiny_cnn):
    res = render(tiny_cnn, O.channel_mean("features.5", [0, 5, 9]), start=16, steps=15)
    assert isinstance(res, RenderResult) and not res.interrupted
    assert res.image.shape == (3, 3, 16, 16) and res.history.shape == (15, 3) and res.score.shape == (3,)
    assert (res.score > res.history[0] + 0.05).all()


def test_an_optimizer_is_a_name_with_lr_or_a_factory_of_params_with_its_own(tiny_cnn):
    objective = O.channel_mean("features.6", 1)
    a = render(tiny_cnn, objective, start=16, steps=4, lr=0.3, optimizer="sgd")
    b = render(tiny_cnn, objective, start=16, steps=4, lr=5.0, optimizer=lambda p: torch.optim.SGD(p, lr=0.3))
    assert torch.equal(a.image, b.image)  # the factory's learning rate, not render's
    # a class would silently run at its own default learning rate: refused, with the factory to write instead
    with pytest.raises(TypeError, match=r"optimizer=SGD is a class; .*=lambda p: torch.optim.SGD\(p, lr=0.3\)"):
        render(tiny_cnn, objective, start=16, steps=4, lr=0.3, optimizer=torch.optim.SGD)


class InterruptAt:
    """A transform that raises KeyboardInterrupt (Ctrl-C) when called for step ``k`` (0-based)."""

    def __init__(self, k: int) -> None:
        self.k, self.calls = k, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.calls == self.k:
            raise KeyboardInterrupt
        self.calls += 1
        return x


def test_ctrl_c_returns_the_partial_result(tiny_cnn):
    tiny_cnn.train()
    tiny_cnn.features[0].weight.requires_grad_(False)
    tiny_cnn.features[5].weight.grad = torch.ones_like(tiny_cnn.features[5].weight)
    before = model_state(tiny_cnn)
    objective = O.channel_mean("features.6", [0, 5]) - 1e-3 * O.l2()
    with pytest.warns(UserWarning, match="after 4 of 20 steps"):
        partial = render(tiny_cnn, objective, start=16, steps=20, transforms=[InterruptAt(4)], seed=1)
    assert_same_state(before, model_state(tiny_cnn))
    assert partial.interrupted and partial.history.shape == (4, 2)
    full = render(tiny_cnn, objective, start=16, steps=4, seed=1)  # the same 4 steps, not interrupted
    assert torch.equal(partial.image, full.image) and torch.equal(partial.history, full.history)
    assert torch.allclose(partial.score, full.score)
    with pytest.raises(KeyboardInterrupt):  # nothing made yet: the interrupt goes through
        render(tiny_cnn, objective, start=16, steps=20, transforms=[InterruptAt(0)])
    assert_same_state(before, model_state(tiny_cnn))


def test_start_image_and_batch(tiny_cnn):
    photo = normalize(torch.rand(1, 3, 12, 12))
    copy = photo.clone()
    res = render(tiny_cnn, O.class_logit([0, 2, 3]), start=photo, steps=1, lr=0.0)
    assert torch.equal(photo, copy) and torch.allclose(res.image, photo.expand(3, -1, -1, -1))
    const = render(tiny_cnn, O.class_logit(0), start=(6, 8), fill=0.5, steps=1, lr=0.0)
    assert torch.allclose(const.image, normalize(torch.full((1, 3, 6, 8), 0.5)))
    with pytest.raises(ValueError, match="scores 3 images"):
        render(tiny_cnn, O.class_logit([0, 2, 3]), start=16, n=2, steps=1)
    with pytest.raises(ValueError, match="Objective"):
        render(tiny_cnn, lambda acts: acts, start=16, steps=1)


def test_an_image_too_small_names_the_size_argument_of_the_function_called(tiny_cnn):
    texture = normalize(torch.rand(1, 3, 8, 8))
    cases = [(lambda: render(tiny_cnn, O.channel_mean("features.5", 1), start=1, steps=1), "pass start=2 "),
             (lambda: visualize_class(tiny_cnn, 1, start=1, steps=1), "pass start=2 "),
             (lambda: visualize_filter(tiny_cnn, "features.5", 1, start=1, steps=1), "pass start=2 "),
             (lambda: synthesize_texture(tiny_cnn, texture, "features.5", start=1, steps=1), "pass start=2 ")]
    for call, fix in cases:
        with pytest.raises(ValueError, match=r"1x1 px is too small .*'features.5'.* at least 2x2 px; " + fix):
            call()


def test_channels_of_a_layer_without_out_channels_are_checked_on_the_real_image():
    """The channel count comes from the real forward pass, so a valid image is never refused (a fixed 64 px probe
    refused 80 px here), and a bad channel gets the one-line range error before any step is taken."""
    model = TwoBranches().eval()
    res = render(model, O.channel_mean("relu", 3), start=80, steps=2)
    assert res.image.shape == (1, 3, 80, 80) and res.score.shape == (1,)
    assert objective_score(model, torch.zeros(1, 3, 80, 80), O.channel_mean("relu", 3)).shape == (1,)
    steps = []

    def count(img: torch.Tensor, step: Step) -> torch.Tensor:
        steps.append(step.index)
        return img

    with pytest.raises(ValueError, match=r"channel\(s\) \[4\] out of range for layer 'relu', which has 4 channels: "
                                         r"valid indices are 0 to 3"):
        render(model, O.channel_mean("relu", [1, 4]), start=80, steps=3, after=[count])
    assert steps == []  # no optimization step spent


WRAPPERS = {  # name -> (call, steps, the technique's objective without priors, for the returned images)
    "visualize_filter": (lambda m: visualize_filter(m, "features.5", [1, 2], start=16, steps=6, tv_weight=0.2),
                         6, O.channel_mean("features.5", [1, 2])),
    "visualize_class": (lambda m: visualize_class(m, [0, 3], start=16, steps=6), 6, O.class_logit([0, 3])),
    "visualize_filter with L2++": (lambda m: visualize_filter(m, "features.6", 2, start=16, steps=6, l2_weight=0.1,
                                                              l2pp=H.L2PlusPlus()), 6, O.channel_mean("features.6", 2)),
    "visualize_diverse": (lambda m: visualize_diverse(m, "features.5", 4, start=12, n=2, steps=6), 6,
                          O.channel_mean("features.5", 4)),
    "deep_dream": (lambda m: deep_dream(m, normalize(torch.rand(1, 3, 16, 16)), "features.3", steps=4, octaves=2),
                   8, O.layer_rms("features.3")),
}


@pytest.mark.parametrize("name", WRAPPERS)
def test_wrappers_pass_ctrl_c_through_as_interrupted(tiny_cnn, name):
    """Ctrl-C at the 4th forward pass: every wrapper returns the partial result with interrupted=True, fewer
    history rows than steps, and score the technique's objective of the returned images."""
    call, steps, score = WRAPPERS[name]
    hook = InterruptAtForward(3)
    handle = tiny_cnn.features[0].register_forward_hook(hook)
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            res = call(tiny_cnn)
    finally:
        handle.remove()
    assert isinstance(res, RenderResult) and res.interrupted and 0 < res.history.shape[0] < steps
    assert torch.allclose(res.score, objective_score(tiny_cnn, res.image, score).cpu(), atol=1e-5)
    assert not call(tiny_cnn).interrupted  # without the hook the run is complete


@pytest.mark.parametrize("loss_technique", ["inversion", "texture"])
def test_loss_techniques_pass_ctrl_c_through(tiny_cnn, loss_technique):
    photo = normalize(torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0)))
    hook = InterruptAtForward(3)  # the target's forward pass is the 0th
    handle = tiny_cnn.features[0].register_forward_hook(hook)
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            if loss_technique == "inversion":
                res = invert_features(tiny_cnn, photo, "features.3", steps=6)
            else:
                res = synthesize_texture(tiny_cnn, photo, "features.3", steps=6)
    finally:
        handle.remove()
    assert res.interrupted and res.history.shape == (2, 1) and torch.equal(res.loss, -res.score)


def test_ctrl_c_during_the_final_scoring_pass_returns_the_images_with_a_nan_score(tiny_cnn):
    """The loop's forward passes are the 0th..(steps-1)th; the final scoring pass is the steps-th."""
    objective = O.channel_mean("features.6", [0, 5])
    full = render(tiny_cnn, objective, start=16, steps=3, seed=2, track={"c": O.channel_mean("features.6", 1)})
    hook = InterruptAtForward(3)
    handle = tiny_cnn.features[3].register_forward_hook(hook)
    try:
        with pytest.warns(UserWarning, match="while scoring the result after 3 of 3 steps"):
            res = render(tiny_cnn, objective, start=16, steps=3, seed=2, track={"c": O.channel_mean("features.6", 1)})
    finally:
        handle.remove()
    assert hook.calls == 4 and res.interrupted
    assert torch.equal(res.image, full.image) and torch.equal(res.history, full.history)
    assert res.score.shape == (2,) and res.score.isnan().all() and res.tracked_score["c"].isnan().all()
    assert not torch.isnan(full.score).any()


class StopWhen:
    """An ``after`` operation raising StopRender at step ``k`` (0-based), recording the steps it saw."""

    def __init__(self, k: int) -> None:
        self.k, self.seen = k, []

    def __call__(self, img: torch.Tensor, step: Step) -> torch.Tensor:
        self.seen.append((step.index, step.score.clone(), {k: v.clone() for k, v in step.tracked.items()}))
        if step.index == self.k:
            raise StopRender
        return img


@pytest.mark.parametrize("k", [0, 3])
def test_an_after_operation_can_stop_the_run_undoing_that_step(tiny_cnn, k):
    objective = O.channel_mean("features.6", [0, 5])
    track = {"c": O.channel_mean("features.6", 1)}
    stop = StopWhen(k)
    res = render(tiny_cnn, objective, start=16, steps=10, seed=3, after=[stop], track=track)
    assert not res.interrupted and res.history.shape == (k, 2) and res.tracked["c"].shape == (k, 2)
    if k:
        same = render(tiny_cnn, objective, start=16, steps=k, seed=3, track=track)  # the k steps made, then scored
        assert torch.equal(res.image, same.image) and torch.equal(res.history, same.history)
        assert torch.equal(res.score, same.score)
    else:
        assert torch.allclose(res.image, render(tiny_cnn, objective, start=16, steps=1, lr=0.0, seed=3).image)
    # each step's after operation saw that step's objective and tracked values (the rows of the history)
    assert [i for i, _, _ in stop.seen] == list(range(k + 1))
    for i, score, tracked in stop.seen[:k]:
        assert torch.equal(score, res.history[i]) and torch.equal(tracked["c"], res.tracked["c"][i])
