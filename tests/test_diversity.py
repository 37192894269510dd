import pytest
import torch
from conftest import assert_same_state, model_state
from test_ascent import Boom, caller_state

from helpers import capture_activations, gram_matrix, gram_similarity, visualize_diverse
from helpers.toolbox.diversity import mean_pairwise

FAST = dict(steps=60, lr=0.05)


def test_gram_similarity_by_hand():
    a = torch.zeros(3, 2, 1, 2)
    a[0, 0] = 1.0  # only channel 0 active: G = [[1, 0], [0, 0]]
    a[1, 1] = 2.0  # only channel 1 active: G = [[0, 0], [0, 4]], orthogonal to image 0's
    a[2, 0] = 3.0  # same pattern as image 0, 9 times stronger: cosine 1
    sim = gram_similarity(a)
    assert torch.allclose(sim, torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]]), atol=1e-6)
    rand = torch.rand(4, 3, 5, 5)
    flat = gram_matrix(rand).flatten(1)
    reference = torch.nn.functional.cosine_similarity(flat[:, None], flat[None], dim=-1)
    assert torch.allclose(gram_similarity(rand), reference, atol=1e-6)
    assert torch.isclose(mean_pairwise(sim), torch.tensor(2 / 6))


def test_diversity_term_lowers_gram_similarity(tiny_cnn):
    plain = visualize_diverse(tiny_cnn, "features.5", 3, start=16, n=4, diversity_weight=0.0, **FAST)
    diverse = visualize_diverse(tiny_cnn, "features.5", 3, start=16, n=4, diversity_weight=1.0, **FAST)
    assert diverse.image.shape == (4, 3, 16, 16) and diverse.history.shape == (60, 4)
    # independent measurement of the returned images' style similarity
    with torch.no_grad(), capture_activations(tiny_cnn, "features.5") as acts:
        tiny_cnn(torch.cat([plain.image, diverse.image]))
    sims = [mean_pairwise(gram_similarity(a)) for a in acts["features.5"].split(4)]
    assert sims[1] < sims[0] - 0.2, sims
    assert torch.isclose(sims[1], mean_pairwise(diverse.final_similarity), atol=1e-5)
    assert diverse.similarity[-1] < diverse.similarity[0] - 0.2
    # both still raise the channel
    assert (plain.score > plain.history[0]).all() and (diverse.score.mean() > diverse.history[0].mean())


def test_diversity_layer_can_differ(tiny_cnn):
    res = visualize_diverse(tiny_cnn, "features.5", 3, start=16, n=3, diversity_layer="features.1", steps=40)
    with torch.no_grad(), capture_activations(tiny_cnn, "features.1") as acts:
        tiny_cnn(res.image)
    assert torch.allclose(gram_similarity(acts["features.1"]), res.final_similarity, atol=1e-5)
    assert res.similarity[-1] < res.similarity[0]


def test_errors(tiny_cnn):
    with pytest.raises(ValueError, match=r"^n \(the number of images.* must be an integer >= 2, got 1"):
        visualize_diverse(tiny_cnn, "features.5", 3, start=16, n=1, steps=1)
    with pytest.raises(ValueError, match="0 to 15"):
        visualize_diverse(tiny_cnn, "features.5", 16, start=16, steps=1)
    with pytest.raises(ValueError, match="features"):
        visualize_diverse(tiny_cnn, "feature.5", 0, start=16, steps=1)
    with pytest.raises(ValueError, match="features"):
        visualize_diverse(tiny_cnn, "features.5", 0, start=16, diversity_layer="features.99", steps=1)


def test_deterministic_and_state_unchanged(tiny_cnn):
    caller_state(tiny_cnn)
    tiny_cnn.classifier = Boom()  # after the target: must never run
    before = model_state(tiny_cnn)
    opts = dict(n=3, steps=10, jitter=2, tv_weight=0.1, l2_weight=0.01)
    a = visualize_diverse(tiny_cnn, "features.5", 1, start=16, seed=5, **opts)
    b = visualize_diverse(tiny_cnn, "features.5", 1, start=16, seed=5, **opts)
    c = visualize_diverse(tiny_cnn, "features.5", 1, start=16, seed=6, **opts)
    assert torch.equal(a.image, b.image) and not torch.allclose(a.image, c.image)
    assert_same_state(before, model_state(tiny_cnn))
    tiny_cnn.features[4] = Boom(KeyboardInterrupt)
    before = model_state(tiny_cnn)
    with pytest.raises(KeyboardInterrupt):
        visualize_diverse(tiny_cnn, "features.5", 1, start=16, steps=2)
    assert_same_state(before, model_state(tiny_cnn))
