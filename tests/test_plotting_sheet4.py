from types import SimpleNamespace

import numpy as np
import pytest
import torch

import helpers as H
from helpers import plot_channels, plot_image_grid, plot_map, plot_overlay, plot_saliency


def test_image_grid_shows_every_image_with_its_labels():
    images = torch.rand(12, 3, 8, 8)
    fig = plot_image_grid(images, [f"c{i}" for i in range(12)], ncols=5, row_labels=["a", "b", "c"])
    axes = fig.axes
    assert len(axes) == 15 and sum(len(ax.images) for ax in axes) == 12
    assert axes[7].get_title() == "c7" and axes[5].get_ylabel() == "b"
    np.testing.assert_allclose(axes[3].images[0].get_array(), images[3].permute(1, 2, 0).numpy())


def test_map_has_a_colorbar_of_true_values_and_rgb_is_rescaled():
    ax = plot_map(torch.tensor([[-2.0, 0.0], [1.0, 4.0]]), title="m")
    assert ax.get_title() == "m" and ax.images[0].colorbar is not None
    assert ax.images[0].get_clim() == (-2.0, 4.0) and ax.images[0].colorbar.ax.get_ylabel() == ""
    labelled = plot_map(torch.rand(4, 4), label="|gradient|")
    assert labelled.images[0].colorbar.ax.get_ylabel() == "|gradient|"
    rgb = plot_map(torch.rand(3, 4, 4) * 10 - 5).images[0].get_array()
    assert rgb.min() == 0 and rgb.max() == 1


def test_overlay_requires_matching_size():
    image = torch.zeros(1, 3, 16, 16)
    ax = plot_overlay(image, torch.rand(16, 16), label="mean activation", title="t")
    assert len(ax.images) == 2 and ax.images[1].colorbar.ax.get_ylabel() == "mean activation"
    with pytest.raises(ValueError, match="upsample_map"):
        plot_overlay(image, torch.rand(4, 4))


def test_saliency_side_by_side_and_channels():
    fig = plot_saliency(torch.zeros(1, 3, 8, 8), torch.rand(1, 8, 8), title="target 3")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["image", "target 3"]
    fig = plot_channels(torch.rand(1, 10, 5, 5), channels=[0, 3, 9], ncols=2)
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["ch 0", "ch 3", "ch 9"]
    with pytest.raises(ValueError, match="out of range"):
        plot_channels(torch.rand(4, 5, 5), channels=[4])


def test_plot_accuracy_keeps_one_colour_per_run_across_panels():
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    runs = {name: SimpleNamespace(epochs=[1, 2], train_acc=[0.1, 0.2], test_acc=[0.1, 0.15]) for name in "ab"}
    fig, (left, right) = plt.subplots(1, 2)
    H.plot_accuracy(runs, left, train=False)
    H.plot_accuracy(runs, right)
    colour = {(ax, line.get_label()): to_hex(line.get_color()) for ax in (left, right) for line in ax.get_lines()}
    assert colour[(left, "a: test")] == colour[(right, "a: test")] == colour[(right, "a: train (running)")]
    assert colour[(left, "b: test")] == colour[(right, "b: train (running)")] != colour[(right, "a: train (running)")]
    plt.close(fig)


def test_a_constant_map_is_labelled_as_such_and_a_varying_one_is_not():
    image = torch.zeros(1, 3, 16, 16)
    zero = plot_overlay(image, torch.zeros(16, 16))
    assert [t.get_text() for t in zero.texts] == ["constant map:\n0 everywhere"]
    assert [t.get_text() for t in plot_map(torch.full((4, 4), 2.5)).texts] == ["constant map:\n2.5 everywhere"]
    assert len(plot_overlay(image, torch.rand(16, 16)).texts) == 0 and len(plot_map(torch.rand(4, 4)).texts) == 0
