import pytest
import torch
from conftest import assert_same_state, model_state

from helpers import L2PlusPlus, deep_dream, normalize, visualize_class, visualize_filter
from helpers import objectives as O
from helpers.classviz import l2pp_step
from helpers.deepdream import DreamStep
from helpers.engine import RenderResult, Step, jitter, render


def test_visualize_filter_is_render(tiny_cnn):
    opts = dict(steps=12, lr=0.1, seed=5)
    res = visualize_filter(tiny_cnn, "features.5", [3, 8], size=16, jitter=2, tv_weight=0.3, clamp=False, **opts)
    objective = O.channel_mean("features.5", [3, 8]) - (0.3 / 256) * O.total_variation()
    direct = render(tiny_cnn, objective, start=16, fill=(150 / 255, 180 / 255), transforms=[jitter(2)],
                    clamp=False, track={"score": O.channel_mean("features.5", [3, 8])}, **opts)
    assert torch.equal(res.image, direct.image)
    assert torch.equal(res.history, direct.tracked["score"])
    assert torch.equal(res.objective, direct.tracked_score["score"])


def test_visualize_class_is_render(tiny_cnn):
    ops = L2PlusPlus(blur_every=2, norm_pct=10.0, contrib_pct=10.0)
    res = visualize_class(tiny_cnn, 16, [1, 4], steps=8, l2_weight=1e-3, l2pp=ops, jitter=3, seed=2)

    def after(img: torch.Tensor, step: Step) -> torch.Tensor:
        return l2pp_step(img, 2 * 1e-3 * step.before - step.grad, step.index, ops)

    direct = render(tiny_cnn, O.class_logit([1, 4]) - 1e-3 * O.l2(), start=16, steps=8, transforms=[jitter(3)],
                    after=[after], seed=2)
    assert torch.equal(res.image, direct.image)
    assert not torch.equal(res.image, visualize_class(tiny_cnn, 16, [1, 4], steps=8, l2_weight=1e-3, jitter=3,
                                                      seed=2).image)  # the L2++ operations ran


def test_deep_dream_octave_is_render(tiny_cnn):
    photo = normalize(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    dream = deep_dream(tiny_cnn, photo, ["features.3", "features.6"], steps=6, octaves=1, jitter=2, tv_step=0.5,
                       seed=4)
    direct = render(tiny_cnn, O.layer_rms(["features.3", "features.6"]), start=photo, steps=6, lr=0.02,
                    optimizer=lambda params, lr: DreamStep(params, lr, 0.5),
                    transforms=[jitter(2, unrolled_first=True)], seed=4)
    assert torch.equal(dream.image, direct.image) and torch.equal(dream.history[0], direct.history)
    assert torch.equal(dream.end[0], direct.score)


def test_score_rises_and_result_fields(tiny_cnn):
    res = render(tiny_cnn, O.channel_mean("features.5", [0, 5, 9]), start=16, steps=15)
    assert isinstance(res, RenderResult) and not res.interrupted
    assert res.image.shape == (3, 3, 16, 16) and res.history.shape == (15, 3) and res.score.shape == (3,)
    assert (res.score > res.history[0] + 0.05).all()


def test_optimizer_factory_with_lr(tiny_cnn):
    objective = O.channel_mean("features.6", 1)
    a = render(tiny_cnn, objective, start=16, steps=4, lr=0.3, optimizer="sgd")
    b = render(tiny_cnn, objective, start=16, steps=4, lr=0.3, optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr))
    assert torch.equal(a.image, b.image)


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
