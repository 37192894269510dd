"""The two plotting contracts (axes-level returns the Axes it was given, figure-level the figure or subfigure it
was given), the one display conversion, save_figure and the stand-in note."""

import re
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

import helpers
from helpers import plotting
from helpers.images import denormalize


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _fooling():
    n, steps = 1, 3
    x = torch.zeros(n, 3, 8, 8)
    return SimpleNamespace(target=torch.tensor([2]), confidence=torch.linspace(0.1, 0.9, steps)[:, None],
                           original=x, image=x + 0.1, perturbation=torch.full((n, 3, 8, 8), 0.02),
                           steps=torch.tensor([steps]), l2=torch.tensor([0.5]))


def _patches():
    return SimpleNamespace(channels=[0, 4], patches=torch.randn(2, 4, 3, 6, 6), values=torch.rand(2, 4),
                           layer="features.0")


AXES_LEVEL = {
    "show_image": lambda ax: plotting.show_image(torch.randn(3, 8, 8), ax),
    "plot_map": lambda ax: plotting.plot_map(torch.rand(5, 5), ax),
    "plot_overlay": lambda ax: plotting.plot_overlay(torch.randn(3, 8, 8), torch.rand(8, 8), ax),
    "plot_gradient_image": lambda ax: plotting.plot_gradient_image(torch.randn(3, 8, 8), ax),
    "plot_accuracy": lambda ax: plotting.plot_accuracy(
        {"a": SimpleNamespace(epochs=[1, 2], train_acc=[0.1, 0.2], test_acc=[0.1, 0.15])}, ax),
    "plot_objective": lambda ax: plotting.plot_objective({"run": torch.rand(4, 2)}, ax),
    "plot_filters": lambda ax: plotting.plot_filters(torch.randn(4, 3, 3, 3), ax),
    "plot_embedding": lambda ax: plotting.plot_embedding(torch.rand(3, 2), torch.randn(3, 3, 8, 8), ax,
                                                         thumb_px=4),
}

FIGURE_LEVEL = {
    "plot_image_grid": lambda fig: plotting.plot_image_grid(torch.rand(3, 3, 4, 4), ncols=2, fig=fig),
    "plot_filter_grid": lambda fig: plotting.plot_filter_grid(torch.randn(2, 3, 4, 4), fig=fig),
    "plot_channels": lambda fig: plotting.plot_channels(torch.rand(4, 5, 5), ncols=2, fig=fig),
    "plot_saliency": lambda fig: plotting.plot_saliency(torch.randn(3, 8, 8), torch.rand(8, 8), fig=fig),
    "plot_patches": lambda fig: plotting.plot_patches(_patches(), fig=fig),
    "plot_neighbors": lambda fig: plotting.plot_neighbors(torch.randn(1, 3, 4, 4), torch.randn(3, 3, 4, 4),
                                                          (torch.rand(1, 2), torch.tensor([[2, 0]])), fig=fig),
    "plot_fooling": lambda fig: plotting.plot_fooling(_fooling(), fig=fig),
}


def _docstring_list(kind: str) -> set[str]:
    bullet = re.search(rf"- {kind} [^(]*\(([^)]*)\)", plotting.__doc__)
    return set(re.findall(r"``(\w+)``", bullet.group(1)))


def test_module_docstring_names_every_public_plot_under_its_true_contract():
    public = {n for n in dir(plotting) if n.startswith(("plot_", "show_")) and callable(getattr(plotting, n))}
    assert _docstring_list("axes-level") == set(AXES_LEVEL)
    assert _docstring_list("figure-level") == set(FIGURE_LEVEL)
    assert set(AXES_LEVEL) | set(FIGURE_LEVEL) == public
    assert public <= set(helpers.__all__)


@pytest.mark.parametrize("name", sorted(AXES_LEVEL))
def test_axes_level_plot_draws_into_and_returns_the_given_axes(name):
    fig, (other, ax) = plt.subplots(1, 2)
    assert AXES_LEVEL[name](ax) is ax
    assert ax.has_data() or ax.images or ax.artists
    assert not other.has_data() and not other.images
    assert isinstance(AXES_LEVEL[name](None), plt.Axes)


@pytest.mark.parametrize("name", sorted(FIGURE_LEVEL))
def test_figure_level_plot_returns_the_given_figure_or_subfigure(name):
    fig = plt.figure()
    left, right = fig.subfigures(1, 2)
    right.subplots()
    assert FIGURE_LEVEL[name](left) is left
    assert left.axes and len(right.axes) == 1       # drew into its subfigure only
    before = len(left.axes)
    assert FIGURE_LEVEL[name](left) is left and len(left.axes) == before   # cleared, not stacked
    whole = plt.figure()
    assert FIGURE_LEVEL[name](whole) is whole and whole.axes
    new = FIGURE_LEVEL[name](None)
    assert new is not whole and new.axes


def test_saliency_into_two_given_axes_returns_their_figure():
    fig, axes = plt.subplots(1, 2)
    assert plotting.plot_saliency(torch.randn(1, 3, 8, 8), torch.rand(1, 8, 8), axes) is fig


def test_one_display_conversion_for_both_spaces():
    x = torch.randn(3, 5, 7, requires_grad=True)
    shown = helpers.to_image(x, normalized=True)
    np.testing.assert_array_equal(plotting.show_image(x).images[0].get_array(), shown)  # plots draw what it gives
    np.testing.assert_allclose(shown, denormalize(x.detach()).clamp(0, 1).permute(1, 2, 0).numpy())
    pixels = torch.rand(3, 5, 7) * 1.4 - 0.2
    expected = pixels.clamp(0, 1).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(helpers.to_image(pixels, normalized=False), expected)
    np.testing.assert_array_equal(helpers.to_image(pixels.permute(1, 2, 0).numpy(), normalized=False), expected)
    grey = helpers.to_image(torch.rand(1, 5, 7), normalized=False)
    assert grey.shape == (5, 7, 3) and (grey[..., 0] == grey[..., 2]).all()
    with pytest.raises(ValueError, match=r"pass x\[i\]"):
        helpers.to_image(torch.randn(2, 3, 5, 5), normalized=True)


def test_filter_grid_and_image_grid_are_one_grid_in_two_spaces():
    normalized = torch.randn(2, 3, 3, 6, 6)
    fig = plotting.plot_filter_grid(normalized, row_labels=["a", "b"], col_labels=["x", "y", "z"],
                                    titles=[["t00"]])
    assert [ax.get_title() for ax in fig.axes] == ["t00", "y", "z", "", "", ""]
    assert fig.axes[3].get_ylabel() == "b"
    np.testing.assert_allclose(fig.axes[4].images[0].get_array(), helpers.to_image(normalized[1, 1]), atol=1e-7)
    pixels = denormalize(normalized[0])
    same = plotting.plot_image_grid(pixels, ncols=3)
    flagged = plotting.plot_filter_grid(pixels, normalized=False)
    for a, b, c in zip(fig.axes[:3], same.axes, flagged.axes, strict=True):
        np.testing.assert_allclose(b.images[0].get_array(), a.images[0].get_array(), atol=1e-6)
        np.testing.assert_array_equal(c.images[0].get_array(), b.images[0].get_array())


def test_rows_of_different_length_leave_blank_cells():
    fig = plotting.plot_filter_grid([[torch.randn(1, 3, 4, 4)], [torch.randn(3, 6, 6)] * 3])
    assert [len(ax.images) for ax in fig.axes] == [1, 0, 0, 1, 1, 1]


def test_show_image_of_display_space_pixels():
    rgb = torch.rand(3, 4, 4)
    ax = plotting.show_image(rgb, normalized=False, title="pca")
    np.testing.assert_array_equal(ax.images[0].get_array(), rgb.permute(1, 2, 0).numpy())


def _png_size(path):
    with Image.open(path) as png:
        assert png.format == "PNG"
        return png.size


def test_save_figure_writes_a_png_of_the_figures_size_into_a_new_folder(tmp_path, monkeypatch):
    folder = tmp_path / "not" / "yet"
    monkeypatch.setattr(helpers.config, "FIGURES_DIR", folder)
    fig = plt.figure(figsize=(3.0, 2.0))
    fig.add_axes((0, 0, 1, 1)).imshow(np.zeros((4, 6)))      # content up to the figure's edges
    fig.axes[0].set_axis_off()
    path = helpers.save_figure(fig, "sheet5_grid", dpi=50, pad_inches=0)
    assert path == folder / "sheet5_grid.png" and path.is_file()
    assert _png_size(path) == (150, 100)
    assert _png_size(helpers.save_figure(fig, "padded", dpi=50)) == (160, 110)   # 0.1 inch margin by default
    whole = plt.figure(figsize=(4, 1))
    whole.add_axes((0, 0, 1, 1)).set_axis_off()
    whole.axes[0].imshow(np.zeros((1, 4)))
    assert _png_size(helpers.save_figure(whole.subfigures(1, 2)[1], "whole", dpi=20, pad_inches=0)) == (80, 20)
    narrow = plotting.plot_filter_grid(torch.randn(1, 3, 4, 4), title="a title much wider than one small image")
    width = narrow.get_size_inches()[0] * 50
    assert _png_size(helpers.save_figure(narrow, "narrow", dpi=50))[0] > width   # the title is not cut off
    for bad in ("", "a/b", "x.png"):
        with pytest.raises(ValueError, match="bare file name"):
            helpers.save_figure(fig, bad)


def test_stand_in_note_is_printed_exactly_when_a_stand_in_is_used(capsys):
    class VGG:
        def __init__(self, pretrained):
            self.is_pretrained = pretrained

    real_data, fake_data = SimpleNamespace(is_synthetic=False), SimpleNamespace(is_synthetic=True)
    helpers.print_stand_in_note(VGG(True), real_data)
    assert capsys.readouterr().out == ""
    helpers.print_stand_in_note(VGG(False), real_data)
    out = capsys.readouterr().out
    assert "VGG has RANDOM weights" in out and "SYNTHETIC" not in out
    helpers.print_stand_in_note(VGG(True), fake_data)
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "RANDOM" not in out
    helpers.print_stand_in_note(VGG(False), fake_data)
    out = capsys.readouterr().out
    assert out == helpers.stand_in_note(VGG(False), fake_data) + "\n" and out.startswith("OFFLINE STAND-IN")
    assert helpers.print_stand_in_note(VGG(False)) is None   # nothing for a notebook cell to echo


def test_save_figure_refuses_dot_names_and_returns_the_file_it_wrote(tmp_path, monkeypatch):
    monkeypatch.setattr(helpers.config, "FIGURES_DIR", str(tmp_path / "figures"))
    fig = plt.figure(figsize=(1, 1))
    for bad in ("..", ".", "..."):
        with pytest.raises(ValueError, match="name must be"):
            helpers.save_figure(fig, bad)
    path = helpers.save_figure(fig, "a.b")
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ["a.b.png"]
