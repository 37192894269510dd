import numpy as np
import pytest
import torch

import helpers as H


def history(train, test):
    h = H.History()
    h.train_acc, h.test_acc = list(train), list(test)
    return h


def test_accuracy_summary_by_hand():
    s = H.accuracy_summary(history([0.30, 0.50, 0.60, 0.70], [0.40, 0.55, 0.52, 0.54]), last=3)
    assert s["train"] == pytest.approx(70) and s["test"] == pytest.approx(54)
    assert s["gap"] == pytest.approx(16) and s["first_gap"] == pytest.approx(-10)
    assert (s["best"], s["best_epoch"]) == (pytest.approx(55), 2)
    assert s["late"] == pytest.approx((55 + 52 + 54) / 3)
    assert s["test_ahead"] == 2  # epochs 1 and 2: test at least train
    with pytest.raises(ValueError, match="test accuracy per epoch"):
        H.accuracy_summary(history([0.5], []))


def test_map_correlation_against_corrcoef_and_constant_maps():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 6, 7, generator=g), torch.rand(3, 6, 7, generator=g)
    ours = H.map_correlation(a, b)
    for i in range(3):
        theirs = torch.corrcoef(torch.stack([a[i].flatten(), b[i].flatten()]))[0, 1].item()
        assert ours[i].item() == pytest.approx(theirs, abs=1e-5)
    assert H.map_correlation(a[0], 2 * a[0] + 1).item() == pytest.approx(1.0, abs=1e-6)
    assert H.map_correlation(a[0], -a[0]).item() == pytest.approx(-1.0, abs=1e-6)
    assert H.map_correlation(torch.ones(4, 4), a[0, :4, :4]).isnan().all()
    with pytest.raises(ValueError, match="same shape"):
        H.map_correlation(a, b[:, :5])


def test_contrast_correlation_sees_edges():
    # A bright square on a dark ground: local contrast is high only along the square's outline.
    img = torch.zeros(1, 3, 32, 32)
    img[:, :, 8:24, 8:24] = 1.0
    image = H.normalize(img)
    contrast = H.local_contrast(image)[0]
    coarse = torch.nn.functional.avg_pool2d(contrast[None, None], 4)[0]  # an edge map on an 8x8 grid
    assert H.contrast_correlation(coarse, image).item() > 0.8
    assert H.contrast_correlation(-coarse, image).item() < -0.8
    inside = torch.zeros(1, 8, 8)
    inside[0, 3:5, 3:5] = 1.0  # the square's flat middle, where the contrast is zero
    assert H.contrast_correlation(inside, image).item() < 0


def test_central_box_is_the_middle_quarter():
    box = H.central_box(224)
    assert tuple(box) == (56, 56, 168, 168) and box.height * box.width * 4 == 224 * 224
    assert tuple(H.central_box(10, 20)) == (2, 5, 8, 15)


def test_top_inside_by_hand():
    m = torch.zeros(10, 10)
    m[4:6, 4:6] = 1.0           # four highest pixels in the centre
    m[0, :6] = 0.5              # the next six on the top row
    box = H.central_box(10)     # rows and columns 2..7
    assert H.top_inside(m, box, fraction=0.04).item() == 1.0
    assert H.top_inside(m, box, fraction=0.10).item() == pytest.approx(0.4)
    g = torch.Generator().manual_seed(1)
    noise = torch.rand(200, 40, 40, generator=g)
    assert H.top_inside(noise, H.central_box(40)).mean().item() == pytest.approx(0.25, abs=0.02)  # area share
    with pytest.raises(ValueError, match="inside"):
        H.top_inside(m, H.central_box(20))


def test_correct_predictions_match_evaluate_and_keep_the_model_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Dropout(0.5),
                                torch.nn.Linear(8, 3))
    model.train()
    model[1].weight.requires_grad_(False)
    x, y = torch.randn(50, 3, 2, 2), torch.randint(0, 3, (50,))
    loader = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 50, 16)]  # batches of 16, 16, 16, 2
    right = H.correct_predictions(model, loader)
    assert right.dtype == torch.bool and right.shape == (50,)
    with torch.no_grad():
        expected = model.eval()(x).argmax(1) == y  # dropout off: eval mode
    model.train()
    assert torch.equal(right, expected)
    assert right.float().mean().item() == pytest.approx(H.evaluate(model, loader))
    assert model.training and model[2].training
    assert not model[1].weight.requires_grad and model[3].weight.requires_grad
    with pytest.raises(ValueError, match="no batches"):
        H.correct_predictions(model, [])


def test_accuracy_difference_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(1)
    a = torch.rand(400, generator=g) < 0.7
    b = a.clone()
    b[torch.randperm(400, generator=g)[:60]] ^= True  # the models disagree on 60 images
    diff, se = H.accuracy_difference(a, b, paired=True)
    d = (a.double() - b.double()).numpy()
    assert diff == pytest.approx(100 * d.mean())
    assert se == pytest.approx(100 * stats.sem(d))
    # the same correct images: no difference and no noise; the order of a and b flips the sign only
    assert H.accuracy_difference(a, a, paired=True) == (0.0, 0.0)
    assert H.accuracy_difference(b, a, paired=True) == (pytest.approx(-diff), pytest.approx(se))
    # two independent sets: Welch's standard error, as scipy's Welch t-test implies it (t = difference / se)
    c = torch.rand(150, generator=g) < 0.5
    diff, se = H.accuracy_difference(a, c, paired=False)
    t = stats.ttest_ind(a.double().numpy(), c.double().numpy(), equal_var=False).statistic
    assert diff == pytest.approx(100 * (a.double().mean() - c.double().mean()).item())
    assert diff / se == pytest.approx(t)
    # the same images unpaired: larger than paired when the two are right on mostly the same images
    assert H.accuracy_difference(a, b, paired=False)[1] > H.accuracy_difference(a, b, paired=True)[1]
    with pytest.raises(ValueError, match="paired=False for two different sets"):
        H.accuracy_difference(a, c, paired=True)
    with pytest.raises(ValueError, match="at least 2 images"):
        H.accuracy_difference(a[:1], c, paired=False)


def test_monte_carlo_p_against_scipy():
    # scipy's monte_carlo_test on a null distribution given as data: one batch of rvs is the baseline itself
    stats = pytest.importorskip("scipy.stats")
    baseline = torch.tensor([0.31, 0.42, 0.35, 0.50, 0.42, 0.28, 0.39], dtype=torch.float64)
    for value in (0.20, 0.28, 0.42, 0.45, 0.55):
        for alternative in ("greater", "less", "two-sided"):
            ref = stats.monte_carlo_test(np.array([value]), lambda size: baseline.numpy().reshape(size),
                                         lambda x, axis: np.asarray(x)[..., 0], n_resamples=len(baseline),
                                         batch=len(baseline), vectorized=True, alternative=alternative)
            assert H.monte_carlo_p(value, baseline, alternative=alternative) == pytest.approx(min(1, ref.pvalue))


def test_monte_carlo_p_is_valid_under_the_null():
    # a value from the baseline's own distribution: P(p <= 0.05) is at most 0.05 (exactly 1/20 with 19 draws)
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(4000, 20, generator=g)
    p = torch.tensor([H.monte_carlo_p(d[0].item(), d[1:], alternative="greater") for d in draws])
    assert (p <= 0.05).float().mean().item() == pytest.approx(0.05, abs=0.012)
    assert H.monte_carlo_p(10.0, draws[0, 1:], alternative="greater") == pytest.approx(1 / 20)
    assert H.monte_carlo_p(10.0, draws[0, 1:], alternative="two-sided") == pytest.approx(2 / 20)
    assert H.monte_carlo_p(-10.0, draws[0, 1:], alternative="greater") == 1.0
    with pytest.raises(ValueError, match="alternative"):
        H.monte_carlo_p(0.0, [1.0], alternative="bigger")
    with pytest.raises(ValueError, match="finite"):
        H.monte_carlo_p(float("nan"), [1.0])
