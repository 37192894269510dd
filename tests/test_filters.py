"""Techniques 1 and 2 of the gallery: filters as images (range mapping), activation grids and PCA as RGB."""

import numpy as np
import pytest
import torch
from conftest import assert_same_state, model_state
from torch import nn

from helpers import (
    activation_grid,
    activation_pca,
    filter_tiles,
    filter_weights,
    pca_rgb,
    plot_filters,
    range_map,
    symmetric_scale,
)


def hand_conv():
    """Two RGB filters of size 1x2: filter 0 has R = [-1, 0], G = [1, 3], B = [0, 0]; filter 1 is all 0.5."""
    conv = nn.Conv2d(3, 2, (1, 2))
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[-1.0, 0.0]], [[1.0, 3.0]], [[0.0, 0.0]]],
                                        [[[0.5, 0.5]], [[0.5, 0.5]], [[0.5, 0.5]]]]))
    return nn.Sequential(conv)


def test_symmetric_tiles_equal_the_weights_under_the_stated_mapping_by_hand():
    tiles = filter_tiles(hand_conv())  # s = max|w| = 3: w / 6 + 1/2
    assert tiles.shape == (2, 3, 1, 2)
    expected = torch.tensor([[[[1 / 3, 1 / 2]], [[2 / 3, 1.0]], [[1 / 2, 1 / 2]]],
                             [[[7 / 12, 7 / 12]], [[7 / 12, 7 / 12]], [[7 / 12, 7 / 12]]]])
    assert torch.allclose(tiles, expected)
    assert symmetric_scale(filter_weights(hand_conv())) == 3.0


def test_minmax_tiles_scale_each_filter_on_its_own_by_hand():
    tiles = filter_tiles(hand_conv(), mapping="minmax")  # filter 0: (w + 1) / 4; filter 1 is constant -> 0.5
    expected = torch.tensor([[[[0.0, 0.25]], [[0.5, 1.0]], [[0.25, 0.25]]],
                             [[[0.5, 0.5]], [[0.5, 0.5]], [[0.5, 0.5]]]])
    assert torch.allclose(tiles, expected)


def test_symmetric_mapping_keeps_zero_at_mid_grey_and_sign_as_mirror():
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    w[w.abs() < 0.3] = 0.0
    tiles = range_map(w)
    assert (tiles[w == 0] == 0.5).all() and (tiles[w > 0] > 0.5).all() and (tiles[w < 0] < 0.5).all()
    assert torch.allclose(range_map(-w), 1 - tiles)
    assert tiles.min() == 0.0 or tiles.max() == 1.0  # the largest |w| reaches black or white
    # a given shared scale: values beyond it are clipped, 0 still mid-grey
    fixed = range_map(w, scale=0.5)
    assert torch.allclose(fixed, (w / 1.0 + 0.5).clamp(0, 1))
    # minmax: every filter spans [0, 1] by itself
    mm = range_map(w, mapping="minmax").flatten(1)
    assert torch.equal(mm.min(1).values, torch.zeros(6)) and torch.equal(mm.max(1).values, torch.ones(6))


def test_first_layer_gives_rgb_tiles_and_deeper_layers_grayscale_per_input_channel(tiny_cnn):
    first = filter_tiles(tiny_cnn)  # default: the first convolution
    assert first.shape == (8, 3, 3, 3)
    assert torch.allclose(first, range_map(tiny_cnn.features[0].weight))
    deep = filter_tiles(tiny_cnn, "features.5", mapping="minmax")
    assert deep.shape == (16, 8, 3, 3) and deep.min() >= 0 and deep.max() <= 1
    assert torch.allclose(deep, range_map(tiny_cnn.features[5].weight, "minmax"))


def test_filter_errors_name_the_fix(tiny_cnn):
    with pytest.raises(ValueError, match="not a Conv2d.*features.0, features.2, features.5"):
        filter_tiles(tiny_cnn, "features.1")
    with pytest.raises(ValueError, match="close valid names"):
        filter_tiles(tiny_cnn, "feature.0")
    with pytest.raises(ValueError, match="symmetric, minmax"):
        filter_tiles(tiny_cnn, mapping="log")
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        filter_weights(nn.Sequential(nn.Linear(2, 2)))


def test_filters_leave_the_model_as_found(tiny_cnn):
    tiny_cnn.train()
    tiny_cnn.features[0].weight.grad = torch.ones_like(tiny_cnn.features[0].weight)
    before = model_state(tiny_cnn)
    filter_tiles(tiny_cnn)[0].fill_(9.0)  # the tiles are a copy
    filter_weights(tiny_cnn, "features.2").zero_()
    assert_same_state(before, model_state(tiny_cnn))


def test_plot_filters_states_the_mapping_and_shows_the_mapped_weights(tiny_cnn):
    w = tiny_cnn.features[0].weight.detach()
    s = float(w.abs().max())
    ax = plot_filters(w, title="features.0")
    title = ax.get_title()
    assert "features.0" in title and "symmetric" in title and f"±{s:.3g}" in title
    cbar = ax.figure.axes[-1]
    assert np.allclose(cbar.get_ylim(), (-s, s))
    img = ax.images[0].get_array()  # make_grid: 1 px white padding, tiles in rows of 8
    np.testing.assert_allclose(img[1:4, 1:4], range_map(w)[0].permute(1, 2, 0).numpy(), atol=1e-6)
    gray = plot_filters(tiny_cnn.features[2].weight, mapping="minmax", max_filters=4, max_channels=3)
    assert "per-filter min/max" in gray.get_title() and "4 of 8 filters" in gray.get_title()
    assert gray.images[0].get_array().shape == (1 + 4 * 4, 1 + 3 * 4)


# --- technique 2: activation grids and PCA of activations ------------------------------------------------


def test_activation_grid_equals_a_direct_forward(tiny_cnn):
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    x_before = x.clone()
    tiny_cnn.train()
    before = model_state(tiny_cnn)
    act = activation_grid(tiny_cnn, x, "features.3")
    assert_same_state(before, model_state(tiny_cnn))
    tiny_cnn.eval()
    with torch.no_grad():
        expected = tiny_cnn.features[:4](x.clone())
    assert act.shape == (2, 8, 12, 12) and torch.allclose(act, expected)
    assert torch.allclose(activation_grid(tiny_cnn, x[0], "features"), tiny_cnn.features(x[:1].clone()))
    assert torch.equal(x, x_before)


def test_activation_grid_errors(tiny_cnn):
    with pytest.raises(ValueError, match="close valid names"):
        activation_grid(tiny_cnn, torch.zeros(1, 3, 8, 8), "features.33")
    with pytest.raises(ValueError, match=r"'classifier.1' \(Flatten\) gives \(N, 16\), not channel .*features.5"):
        activation_grid(tiny_cnn, torch.zeros(1, 3, 8, 8), "classifier.1")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        activation_grid(tiny_cnn, torch.zeros(1, 1, 8, 8), "features.0")


def test_pca_rgb_maps_each_component_symmetrically_with_one_scale_per_batch():
    act = torch.randn(2, 6, 5, 5, generator=torch.Generator().manual_seed(3))
    rgb = pca_rgb(act)
    pc = activation_pca(act, k=3)
    s = pc.abs().amax(dim=(0, 2, 3)).view(1, 3, 1, 1)
    assert rgb.shape == (2, 3, 5, 5) and torch.allclose(rgb, pc / (2 * s) + 0.5)
    assert torch.allclose(rgb.amax(dim=(0, 2, 3)).maximum(1 - rgb.amin(dim=(0, 2, 3))), torch.ones(3))
    flat = torch.ones(1, 4, 3, 3)  # no variance at all: every pixel is the mean -> mid-grey
    assert torch.equal(pca_rgb(flat), torch.full((1, 3, 3, 3), 0.5))
