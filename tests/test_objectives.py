import math

import pytest
import torch
from conftest import assert_same_numbers, assert_same_state, model_state

from helpers import capture_activations, gram_matrix, occlusion_map, saliency_map, total_variation
from helpers import objectives as O
from helpers.toolbox.engine import objective_score


@pytest.fixture
def images():
    torch.manual_seed(2)
    return torch.randn(2, 3, 16, 16)


def hand_acts(model, x, *layers):
    with torch.no_grad(), capture_activations(model, list(layers)) as acts:
        logits = model(x)
    return dict(acts), logits


def test_values_equal_hand_computed(tiny_cnn, images):
    acts, logits = hand_acts(tiny_cnn, images, "features.1", "features.5", "features.6")
    a5, a6, a1 = acts["features.5"], acts["features.6"], acts["features.1"]
    cases = {
        O.class_logit(3): logits[:, 3],
        O.class_logit([1, 4]): torch.stack([logits[0, 1], logits[1, 4]]),
        O.channel_mean("features.5", 7): a5[:, 7].mean(dim=(1, 2)),  # a conv: only channel 7 is computed
        O.channel_mean("features.5", [2, 9]): torch.stack([a5[0, 2].mean(), a5[1, 9].mean()]),
        O.channel_mean("features.6", [2, 9]): torch.stack([a6[0, 2].mean(), a6[1, 9].mean()]),
        O.channel_max("features.6", 4): a6[:, 4].amax(dim=(1, 2)),
        O.layer_rms(["features.1", "features.6"], [1.0, 0.5]):
            a1.flatten(1).norm(dim=1) / math.sqrt(8 * 16 * 16) + 0.5 * a6.flatten(1).norm(dim=1) / math.sqrt(16 * 64),
        O.total_variation(0.5): 0.5 * total_variation(images),
        O.l2(2.0): 2.0 * images.pow(2).sum(dim=(1, 2, 3)) / (images.shape[-2] * images.shape[-1]),
    }
    for objective, expected in cases.items():
        assert torch.allclose(objective_score(tiny_cnn, images, objective), expected, atol=1e-5), objective
    # matching objectives: 0 at the target itself, minus the relative distance elsewhere
    target = a6[:1] * 1.5
    expected = -(a6 - target).pow(2).flatten(1).sum(1) / target.pow(2).sum()
    assert torch.allclose(objective_score(tiny_cnn, images, O.feature_match("features.6", target)), expected)
    assert torch.allclose(objective_score(tiny_cnn, images, O.feature_match("features.6", a6)), torch.zeros(2))
    grams = {"features.1": gram_matrix(a1[:1]), "features.6": gram_matrix(a6[:1])}
    g1, g6 = gram_matrix(a1), gram_matrix(a6)
    expected = -((g1 - grams["features.1"]).pow(2).sum((1, 2)) / grams["features.1"].pow(2).sum()
                 + 2 * (g6 - grams["features.6"]).pow(2).sum((1, 2)) / grams["features.6"].pow(2).sum())
    got = objective_score(tiny_cnn, images, O.gram_match(["features.1", "features.6"], grams, [1.0, 2.0]))
    assert torch.allclose(got, expected, atol=1e-6) and got[0].abs() < 1e-6 and got[1] < 0
    flat = g6.flatten(1)
    cos = (flat[0] @ flat[1]) / (flat[0].norm() * flat[1].norm())
    got = objective_score(tiny_cnn, images, O.diversity("features.6", 3.0))
    assert torch.allclose(got, -3.0 * cos / 2 * torch.ones(2), atol=1e-6)


def test_arithmetic_and_repr():
    acts = {"a": torch.arange(8.0).view(2, 4, 1, 1), O.IMAGE: torch.ones(2, 3, 2, 2)}
    a, b = O.channel_mean("a", 1), O.channel_max("a", [2, 3])
    combined = a + 2 * b - 0.5 * O.l2() - (-a)
    expected = acts["a"][:, 1, 0, 0] + 2 * torch.tensor([2.0, 7.0]) - 0.5 * 12 / 4 + acts["a"][:, 1, 0, 0]  # l2/pixel
    assert torch.equal(combined(acts), expected)
    assert torch.equal(sum([a, b])(acts), a(acts) + b(acts))
    assert repr(O.class_logit(243) - 1e-4 * O.l2()) == "class_logit(243) - 1e-4 * l2"
    assert repr(O.class_logit(243) - O.l2(1e-4)) == "class_logit(243) - 1e-4 * l2"
    assert repr(0.5 * (a - b)) == "0.5 * (channel_mean('a', 1) - channel_max('a', [2, 3]))"
    assert repr(a - (a + b)) == "channel_mean('a', 1) - (channel_mean('a', 1) + channel_max('a', [2, 3]))"
    with pytest.raises(TypeError):
        a * "2"
    with pytest.raises(TypeError):
        a + 1.0


def test_layers_union():
    objective = O.channel_mean("x", 1) + O.layer_rms(["y", "x"]) - O.total_variation() + O.class_logit(0)
    assert objective.layers == ("x", "y", O.IMAGE, O.LOGITS)
    assert (O.channel_mean("x", 1) + O.channel_max("x", [2, 5])).reads == {"x": frozenset({1, 2, 5})}
    assert (O.channel_mean("x", 1) + O.layer_rms("x")).reads == {"x": None}  # a full read wins
    assert (O.channel_mean("x", 1) + 2 * -O.layer_rms("x")).channels == {"x": frozenset({1})}  # still checked
    assert (O.channel_mean("x", [1, 2]) - O.l2()).batch == 2
    with pytest.raises(ValueError, match="scores 2 images"):
        O.channel_mean("x", [1, 2]) + O.class_logit([0, 1, 2])


def test_bad_names_and_indices(tiny_cnn, images):
    before = model_state(tiny_cnn)
    with pytest.raises(ValueError, match=r"'features\.55' is not in TinyCNN; close valid names: features"):
        objective_score(tiny_cnn, images, O.channel_mean("features.55", 0) + O.class_logit(1))
    with pytest.raises(ValueError, match="0 to 15"):
        objective_score(tiny_cnn, images, O.channel_mean("features.5", [0, 16]))
    with pytest.raises(ValueError, match="0 to 15"):  # also when another term reads the whole layer
        objective_score(tiny_cnn, images[:1], O.channel_mean("features.5", 16) + O.layer_rms("features.5"))
    with pytest.raises(ValueError, match="0 to 4"):
        objective_score(tiny_cnn, images, O.class_logit(5))
    with pytest.raises(ValueError, match="3 channels given for a batch of 2"):
        objective_score(tiny_cnn, images, O.channel_mean("features.6", [0, 1, 2]))
    with pytest.raises(TypeError, match="the image comes before the objective"):
        objective_score(tiny_cnn, O.class_logit(1), images)
    with pytest.raises(ValueError, match="integer"):
        O.channel_mean("features.5", [])
    with pytest.raises(ValueError, match="no target Gram"):
        O.gram_match(["a", "b"], {"a": torch.eye(2)[None]})
    assert_same_state(before, model_state(tiny_cnn))


def test_class_probability_and_log_probability_are_the_softmax_of_the_logits(tiny_cnn, images):
    _, logits = hand_acts(tiny_cnn, images)
    by_hand = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
    cases = {
        O.class_probability(3): torch.softmax(logits, 1)[:, 3],
        O.class_probability([1, 4]): torch.stack([by_hand[0, 1], by_hand[1, 4]]),
        O.class_log_probability(3): torch.log_softmax(logits, 1)[:, 3],
        O.class_log_probability([1, 4]): torch.stack([by_hand[0, 1].log(), by_hand[1, 4].log()]),
    }
    for objective, expected in cases.items():
        assert torch.allclose(objective_score(tiny_cnn, images, objective), expected, atol=1e-6), objective
    assert repr(O.class_probability([1, 4])) == "class_probability([1, 4])"
    assert repr(-O.class_log_probability(2)) == "-class_log_probability(2)"
    assert O.class_probability([1, 4]).batch == 2 and O.class_probability(1).batch is None
    # minus the log-probability is the cross-entropy loss, and its gradient is the loss's
    x = images.clone().requires_grad_(True)
    (mine,) = torch.autograd.grad(-O.class_log_probability([1, 4])({O.LOGITS: tiny_cnn(x)}).sum(), x)
    (loss,) = torch.autograd.grad(torch.nn.functional.cross_entropy(tiny_cnn(x), torch.tensor([1, 4]),
                                                                    reduction="sum"), x)
    assert torch.allclose(mine, loss, atol=1e-7)
    with pytest.raises(ValueError, match="out of range"):
        objective_score(tiny_cnn, images, O.class_probability(10))


def test_probability_objectives_as_attribution_targets_give_the_class_and_loss_maps(tiny_cnn, images):
    # One image against a batch of two, and a log-softmax objective against the loss path: other kernels and
    # other operations, so equal up to fp32 rounding. Probabilities lie in [0, 1], so their drops agree to an
    # absolute 2e-6 (16 rounding steps of 1.0); a wrong class changes them by ~1e-3 here.
    by_class = occlusion_map(tiny_cnn, images, [1, 3], patch=4, stride=4)  # a class: its probability drops
    for i, c in enumerate((1, 3)):
        by_objective = occlusion_map(tiny_cnn, images[i], O.class_probability(c), patch=4, stride=4)
        torch.testing.assert_close(by_objective[0], by_class[i], rtol=0, atol=2e-6)
    assert_same_numbers(saliency_map(tiny_cnn, images, O.class_log_probability([1, 3])),
                        saliency_map(tiny_cnn, images, [1, 3], loss=True), rel=1e-3)


def test_per_layer_weights_errors_name_the_argument_of_the_function_called(tiny_cnn):
    """One word for one thing: objectives call them weights=, deep_dream and synthesize_texture layer_weights=."""
    from helpers import deep_dream

    layers = ["features.1", "features.6"]
    with pytest.raises(ValueError, match=r"2 layers .* but 1 weights in weights=: give one weight per layer"):
        O.layer_rms(layers, [1.0])
    with pytest.raises(ValueError, match=r"2 layers .* but 3 weights in weights="):
        O.gram_match(layers, {name: torch.eye(2)[None] for name in layers}, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"weights= has no weight for layer\(s\) \['features.6'\]"):
        O.gram_match(layers, {name: torch.eye(2)[None] for name in layers}, {"features.1": 1.0})
    with pytest.raises(ValueError, match=r"1 layers .* but 2 weights in layer_weights="):
        deep_dream(tiny_cnn, torch.rand(1, 3, 16, 16), ["features.3"], layer_weights=[1.0, 2.0])
