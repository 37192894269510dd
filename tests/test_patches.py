"""Technique 9 of the gallery: maximally activating patches and the exact receptive-field window."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import TwoBranches, assert_same_state, model_state
from PIL import Image
from torch import nn

from helpers import (
    Box,
    Geometry,
    TruncatedForward,
    activation_grid,
    crop_window,
    input_gradient,
    input_gradient_support,
    layer_geometry,
    load_images,
    max_activating_patches,
    plot_patches,
    receptive_field,
    top_activations,
)


class Upto(nn.Module):
    """The map of one named layer as a model's output (for the input-gradient check)."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        super().__init__()
        self.model, self.layer = model, layer

    def forward(self, x):
        with TruncatedForward(self.model, self.layer) as forward:
            return forward(x)[self.layer]


def positive(model: nn.Module) -> nn.Module:
    """All weights and biases in [0.1, 1]: no path cancels and no ReLU is off (a dense network)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(0.1, 1.0)
    return model.eval()


def stack(pool: type = nn.MaxPool2d) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 2, 5, stride=2, padding=2), nn.ReLU(inplace=True),
        pool(3, 2, padding=1),
        nn.Conv2d(2, 2, 3, padding=2, dilation=2), nn.BatchNorm2d(2), nn.Dropout(),
        nn.AvgPool2d(2),
        nn.Conv2d(2, 1, (3, 1), padding=(1, 0)),
    )


def test_geometry_of_a_sequential_stack_by_hand():
    # rows: conv 5/s2/p2 -> r 5, a -2, j 2; pool 3/s2/p1 -> 9, -4, 4; conv 3/d2/p2 -> 25, -12, 4;
    # BN, dropout keep it; avg-pool 2 -> 29, -12, 8; conv 3/p1 -> 45, -20, 8. Columns: the last kernel is 1 wide.
    geo = layer_geometry(nn.Sequential(stack()), "0.7")
    assert geo == Geometry(size=(45, 29), jump=(8, 8), start=(-20, -12))
    assert geo.size[0] == receptive_field([(5, 2), (3, 2), (3, 1, 2), (2, 2), (3, 1)])
    assert geo.box(2, 3) == Box(-4, 12, 41, 41)
    assert geo.box(2, 3, (40, 40)) == Box(0, 12, 40, 40)
    assert layer_geometry(stack(), "2") == Geometry(size=(9, 9), jump=(4, 4), start=(-4, -4))


@pytest.mark.parametrize("position", [(0, 0), (4, 3), (7, 7), (2, 6)])
def test_window_equals_the_input_gradient_support_of_a_dense_network(position):
    model = positive(stack(pool=nn.AvgPool2d))  # average pooling: dense, same geometry as the max pooling
    size = 64
    geo = layer_geometry(model, "7")
    box = geo.box(*position, (size, size))
    assert box == input_gradient_support(Upto(model, "7"), (1, size, size), position)
    grad = input_gradient(Upto(model, "7"), (1, size, size), position)
    outside = grad.clone()
    outside[box.top:box.bottom, box.left:box.right] = 0
    assert outside.abs().sum() == 0  # zero outside the crop ...
    inside = grad[box.top:box.bottom, box.left:box.right]
    assert inside[0].sum() > 0 and inside[-1].sum() > 0 and inside[:, 0].sum() > 0 and inside[:, -1].sum() > 0
    if position == (4, 3):  # ... and an interior window is not clipped at all
        assert box == geo.box(*position) and (box.height, box.width) == (45, 29)


def test_max_pooling_window_bounds_the_gradient_for_random_inputs():
    model = positive(stack())
    x = torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    geo = layer_geometry(model, "7")
    for position in [(0, 0), (3, 2), (5, 5)]:
        box = geo.box(*position, (48, 48))
        grad = input_gradient(Upto(model, "7"), x.shape, position, x=x)
        assert grad.sum() > 0
        grad[box.top:box.bottom, box.left:box.right] = 0
        assert grad.sum() == 0


class Residual(nn.Module):
    """relu(main(x) + shortcut(x)) whose shortcut sees MORE than the main path, then a 3x3 head."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.b = nn.Conv2d(2, 2, 1)
        self.shortcut = nn.Conv2d(1, 2, 5, stride=2, padding=2)
        self.head = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.b(torch.relu(self.a(x))) + self.shortcut(x))
        return self.head(y)


def test_residual_paths_take_the_union_window_and_match_the_gradient():
    model = positive(Residual())
    # main path: r 3, a -1, j 2; shortcut: r 5, a -2, j 2; union r 5, a -2; head 3/p1: r 9, a -4
    assert layer_geometry(model, "b") == Geometry((3, 3), (2, 2), (-1, -1))
    geo = layer_geometry(model, "head")
    assert geo == Geometry((9, 9), (2, 2), (-4, -4))
    for position in [(0, 0), (5, 4), (11, 11)]:
        assert geo.box(*position, (24, 24)) == input_gradient_support(Upto(model, "head"), (1, 24, 24), position)


def test_geometry_of_vgg16_and_resnet18_layers():
    with torch.device("meta"):  # no weights needed: the geometry comes from the modules alone
        vgg, resnet = torchvision.models.vgg16(), torchvision.models.resnet18()
    assert layer_geometry(vgg, "features.28") == Geometry((196, 196), (16, 16), (-90, -90))  # conv5_3
    assert layer_geometry(vgg, "features.30").size == (212, 212)  # pool5
    assert layer_geometry(resnet, "conv1") == Geometry((7, 7), (2, 2), (-3, -3))
    assert layer_geometry(resnet, "layer1").size == (43, 43)
    assert layer_geometry(resnet, "layer2.0.downsample.0") == Geometry((43, 43), (8, 8), (-21, -21))
    assert layer_geometry(resnet, "layer4") == Geometry((435, 435), (32, 32), (-217, -217))
    with pytest.raises(ValueError, match="no fixed window"):
        layer_geometry(vgg, "classifier.0")
    with pytest.raises(ValueError, match="close valid names"):
        layer_geometry(resnet, "layer5")


def brute_force(model, images, layer):
    with torch.no_grad():
        return model.features[: int(layer.split(".")[1]) + 1](images.clone())


def test_top_activations_equal_a_brute_force_search(tiny_cnn):
    images = torch.randn(7, 3, 14, 14, generator=torch.Generator().manual_seed(0))
    images[6] *= 2  # the strongest responses sit in the last, partial batch
    acts = brute_force(tiny_cnn, images, "features.3")
    values, index, position = top_activations(tiny_cnn, images, "features.3", [0, 5], k=10, batch_size=3)
    assert values.shape == index.shape == (2, 10) and position.shape == (2, 10, 2)
    for row, c in enumerate([0, 5]):
        assert torch.allclose(values[row], acts[:, c].flatten().topk(10).values, atol=1e-5)
        found = acts[index[row], c, position[row, :, 0], position[row, :, 1]]
        assert torch.allclose(found, values[row], atol=1e-5)
    best, img, _ = top_activations(tiny_cnn, images, "features.3", 5, k=4, one_per_image=True, batch_size=2)
    assert torch.allclose(best[0], acts[:, 5].amax(dim=(1, 2)).topk(4).values, atol=1e-5)
    assert len(set(img[0].tolist())) == 4


def test_patches_are_the_exact_windows_of_the_top_responses(tiny_cnn):
    images = torch.randn(5, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    result = max_activating_patches(tiny_cnn, images, "features.5", [2, 7], k=6, batch_size=4)
    # conv 3/p1, conv 3/p1, pool 2, conv 3/p1: a 10 px window starting at -4 + 2 * position
    assert result.geometry == Geometry((10, 10), (2, 2), (-4, -4))
    assert result.patches.shape == (2, 6, 3, 10, 10) and result.channels == [2, 7]
    padded = F.pad(images, (4, 4, 4, 4))  # zeros = the dataset mean in normalized space
    for c in range(2):
        for j in range(6):
            y, x = result.position[c, j].tolist()
            i = int(result.image_index[c, j])
            top, left = -4 + 2 * y, -4 + 2 * x
            assert result.boxes[c][j] == Box(top, left, top + 10, left + 10)
            assert result.clipped[c][j] == Box(max(top, 0), max(left, 0), min(top + 10, 12), min(left + 10, 12))
            expected = padded[i, :, top + 4:top + 14, left + 4:left + 14]
            assert torch.equal(result.patches[c, j], expected)
    assert (result.values[:, :-1] >= result.values[:, 1:]).all()


def test_crop_window_clips_at_the_border_and_fills_with_zero():
    image = torch.arange(36.0).reshape(3, 3, 4)
    crop = crop_window(image, Box(-1, -2, 2, 1))  # rows -1..1, cols -2..0
    assert crop.shape == (3, 3, 3)
    assert (crop[:, 0] == 0).all() and (crop[:, :, :2] == 0).all()
    assert torch.equal(crop[:, 1:, 2], image[:, :2, 0])
    assert torch.equal(crop_window(image, Box(0, 0, 3, 4)), image)
    assert (crop_window(image, Box(5, 5, 7, 7)) == 0).all()


def test_patches_from_a_folder_equal_those_from_the_loaded_tensors(tiny_cnn, tmp_path):
    rng = np.random.default_rng(0)
    for name in ["b.png", "a.jpg", "c.png"]:
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    from_folder = max_activating_patches(tiny_cnn, tmp_path, "features.3", 1, k=3, size=16, batch_size=2)
    tensors = load_images(tmp_path, 16)
    assert tensors.shape == (3, 3, 16, 16)
    from_tensors = max_activating_patches(tiny_cnn, list(tensors), "features.3", 1, k=3)
    assert torch.equal(from_folder.patches, from_tensors.patches)
    assert torch.equal(from_folder.image_index, from_tensors.image_index)
    files = ["a.jpg", "b.png", "c.png"]
    assert from_folder.names[0] == [files[i] for i in from_folder.image_index[0].tolist()]


def test_folder_and_argument_errors_name_the_fix(tiny_cnn, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        max_activating_patches(tiny_cnn, tmp_path / "nowhere", "features.3", 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty holds no images"):
        top_activations(tiny_cnn, tmp_path / "empty", "features.3", 0)
    images = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="close valid names"):
        max_activating_patches(tiny_cnn, images, "feature.3", 0)
    with pytest.raises(ValueError, match="valid indices are 0 to 15"):
        max_activating_patches(tiny_cnn, images, "features.5", 16)
    with pytest.raises(ValueError, match="lower k"):
        top_activations(tiny_cnn, images, "features.5", 0, k=100, one_per_image=True)


def test_patches_leave_the_model_as_found_also_when_they_raise(tiny_cnn):
    tiny_cnn.train()
    tiny_cnn.features[0].weight.grad = torch.full_like(tiny_cnn.features[0].weight, 3.0)
    tiny_cnn.features[2].weight.requires_grad_(False)
    before = model_state(tiny_cnn)
    images = torch.randn(3, 3, 10, 10)
    images_before = images.clone()
    max_activating_patches(tiny_cnn, images, "features.4", [0, 1], k=2)
    assert_same_state(before, model_state(tiny_cnn))
    with pytest.raises(ValueError, match="lower k"):
        max_activating_patches(tiny_cnn, images, "features.4", 0, k=1000)
    assert_same_state(before, model_state(tiny_cnn))
    assert torch.equal(images, images_before)


def test_patches_on_a_random_resnet18_match_its_activations():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    before = model_state(model)
    result = max_activating_patches(model, images, "layer2.0", [3], k=4, batch_size=2)
    assert_same_state(before, model_state(model))
    assert result.patches.shape == (1, 4, 3, 67, 67)
    acts = activation_grid(model, images, "layer2.0")[:, 3]
    assert torch.allclose(result.values[0], acts.flatten().topk(4).values, atol=1e-5)


def test_plot_patches_one_panel_per_channel(tiny_cnn):
    result = max_activating_patches(tiny_cnn, torch.randn(4, 3, 12, 12), "features.5", [1, 4, 9], k=4)
    fig = plot_patches(result, title="tiny")
    assert len(fig.axes) == 3 and "channel 4" in fig.axes[1].get_title()
    assert "10x10 px" in fig._suptitle.get_text()
    assert fig.axes[0].images[0].get_array().shape[:2] == (2 + 2 * 12, 2 + 2 * 12)  # 2x2 grid, 2 px padding


def test_top_activations_checks_the_channels_on_the_real_pass_when_no_probe_can_run():
    model = TwoBranches().eval()  # no geometry (torch.fx cannot trace it) and a 65 px kernel: a 64 px probe fails
    images = torch.randn(2, 3, 80, 80)
    values, _, _ = top_activations(model, images, "relu", [3], k=1)
    assert values.shape == (1, 1)
    with pytest.raises(ValueError, match=r"channel\(s\) \[4\] out of range for layer 'relu', which has 4 channels"):
        top_activations(model, images, "relu", [1, 4], k=1)
