import pytest
import torch
from conftest import assert_same_state, model_state
from test_ascent import Boom, caller_state

from helpers import capture_activations, gram_matrix, normalize, synthesize_texture
from helpers.objectives import gram_loss

LAYERS = ["features.1", "features.6"]
FAST = dict(steps=80, lr=0.05)


def stripes(size: int = 16, seed: int = 0) -> torch.Tensor:
    """A normalized texture: diagonal colour stripes plus a little noise."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    wave = 0.5 + 0.4 * torch.sin((x + y).float() * 1.3)
    img = torch.stack([wave, 1 - wave, 0.5 * wave])[None]
    return normalize(img + 0.05 * torch.rand(img.shape, generator=torch.Generator().manual_seed(seed)))


def hand_gram(acts: torch.Tensor) -> torch.Tensor:
    """G[n, i, j] = mean over positions of F_i * F_j, by explicit loops."""
    n, c, h, w = acts.shape
    out = torch.zeros(n, c, c)
    for b in range(n):
        for i in range(c):
            for j in range(c):
                out[b, i, j] = sum(acts[b, i, y, x] * acts[b, j, y, x] for y in range(h) for x in range(w)) / (h * w)
    return out


def test_gram_matrix_by_hand():
    acts = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    expected = torch.tensor([[[30 / 4, 6 / 4], [6 / 4, 2 / 4]]])
    assert torch.allclose(gram_matrix(acts), expected)
    rand = torch.randn(2, 3, 3, 4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(gram_matrix(rand), hand_gram(rand), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        gram_matrix(torch.randn(3, 4, 4))


def test_gram_loss_is_relative():
    t = {"a": torch.eye(3)[None] * 2}
    assert torch.allclose(gram_loss({"a": t["a"] * 1.5}, t), torch.tensor([0.25]))
    assert torch.allclose(gram_loss({"a": t["a"] * 1.5}, t, {"a": 4.0}), torch.tensor([1.0]))


def test_synthesis_matches_the_texture_grams(tiny_cnn):
    texture = stripes()
    res = synthesize_texture(tiny_cnn, texture, LAYERS, n=2, **FAST)
    assert res.image.shape == (2, 3, 16, 16) and res.history.shape == (80, 2)
    assert (res.loss_history[-1] < 0.1 * res.loss_history[0]).all()
    # independent check: activations by plain hooks, the Gram matrix by einsum
    with torch.no_grad(), capture_activations(tiny_cnn, LAYERS) as acts:
        tiny_cnn(torch.cat([texture, res.image]))
    for name in LAYERS:
        g = torch.einsum("nihw,njhw->nij", acts[name], acts[name]) / acts[name][0, 0].numel()
        target, made = g[:1], g[1:]
        rel = (made - target).pow(2).sum(dim=(1, 2)) / target.pow(2).sum()
        assert (rel < 0.05).all(), (name, rel)
    assert torch.allclose(res.loss, res.loss_history[-1], rtol=0.5)
    # a texture, not a copy: the pixels differ from the texture's
    assert (res.image - texture).abs().mean() > 0.2


def test_other_size_and_layer_weights(tiny_cnn):
    res = synthesize_texture(tiny_cnn, stripes()[0], LAYERS, start=(12, 20), layer_weights=[1.0, 0.0], steps=5)
    assert res.image.shape == (1, 3, 12, 20)
    with pytest.raises(ValueError, match="layer_weights"):
        synthesize_texture(tiny_cnn, stripes(), LAYERS, layer_weights=[1.0], steps=1)
    by_name = synthesize_texture(tiny_cnn, stripes()[0], LAYERS, start=(12, 20), steps=5,
                                 layer_weights={LAYERS[1]: 0.0, LAYERS[0]: 1.0})   # a mapping: the same weights
    assert torch.equal(by_name.image, res.image)
    with pytest.raises(ValueError, match=r"layer_weights= has no weight for layer"):
        synthesize_texture(tiny_cnn, stripes(), LAYERS, layer_weights={LAYERS[0]: 1.0}, steps=1)
    with pytest.raises(ValueError, match="features"):
        synthesize_texture(tiny_cnn, stripes(), ["features.77"], steps=1)
    with pytest.raises(ValueError, match=r"\(1, 3, h, w\)"):
        synthesize_texture(tiny_cnn, torch.zeros(2, 3, 8, 8), LAYERS, steps=1)


def test_dead_layer_is_a_clear_error(tiny_cnn):
    with torch.no_grad():
        tiny_cnn.features[0].bias.fill_(-100.0)
    with pytest.raises(ValueError, match="all zero"):
        synthesize_texture(tiny_cnn, stripes(), ["features.1"], steps=1)


def test_deterministic_and_state_unchanged(tiny_cnn):
    caller_state(tiny_cnn)
    tiny_cnn.classifier = Boom()  # after the deepest layer: must never run
    before = model_state(tiny_cnn)
    texture = stripes()
    copy = texture.clone()
    a = synthesize_texture(tiny_cnn, texture, LAYERS, n=2, steps=10, seed=3)
    b = synthesize_texture(tiny_cnn, texture, LAYERS, n=2, steps=10, seed=3)
    c = synthesize_texture(tiny_cnn, texture, LAYERS, n=2, steps=10, seed=4)
    assert torch.equal(a.image, b.image) and not torch.allclose(a.image, c.image)
    assert not torch.allclose(a.image[0], a.image[1])  # independent start noise per sample
    assert torch.equal(texture, copy)
    assert_same_state(before, model_state(tiny_cnn))
    tiny_cnn.features[4] = Boom(KeyboardInterrupt)  # interrupted mid-forward
    before = model_state(tiny_cnn)
    with pytest.raises(KeyboardInterrupt):
        synthesize_texture(tiny_cnn, texture, LAYERS, steps=2)
    assert_same_state(before, model_state(tiny_cnn))
