import math

import numpy as np
import pytest
import torch
from conftest import assert_same_state, model_state
from torch import nn

from helpers import (
    angle_difference,
    axis_energy_ratio,
    cascading_randomization,
    class_sensitivity,
    deletion_curve,
    dominant_orientation,
    grad_cam,
    insertion_curve,
    localization_scores,
    mask_energy,
    occlusion_map,
    pointing_game,
    saliency_map,
)


def square_masks(n=4, size=16):
    """Masks with a 5x5 square at a different place in each image."""
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        masks[i, 2 + 2 * i:7 + 2 * i, 3 + i:8 + i] = True
    return masks


def test_a_map_equal_to_the_mask_scores_full_pointing_and_energy():
    masks = square_masks()
    maps = masks.float()
    assert pointing_game(maps, masks).tolist() == [1.0] * 4
    assert mask_energy(maps, masks).tolist() == [1.0] * 4


def test_a_uniform_map_scores_the_chance_level():
    masks = square_masks()
    area = masks.float().mean(dim=(1, 2))
    uniform = torch.full(masks.shape, 0.3)
    assert torch.allclose(pointing_game(uniform, masks), area)
    assert torch.allclose(mask_energy(uniform, masks), area)


def test_a_peak_off_the_object_misses_and_negative_values_carry_no_energy():
    masks = square_masks(1)
    maps = masks.float() * 0.5
    maps[0, 15, 15] = 1.0  # the peak is in a corner, off the object
    assert pointing_game(maps, masks).item() == 0.0
    assert mask_energy(maps, masks).item() == pytest.approx(25 * 0.5 / (25 * 0.5 + 1.0))
    maps[0, 0, 0] = -100.0  # negative evidence is not energy
    assert mask_energy(maps, masks).item() == pytest.approx(25 * 0.5 / (25 * 0.5 + 1.0))
    assert math.isnan(mask_energy(-maps.abs(), masks).item())  # no positive value: nothing to share


def test_rgb_attributions_are_reduced_like_saliency():
    masks = square_masks(2)
    rgb = torch.zeros(2, 3, 16, 16)
    rgb[:, 2] = -masks.float()  # strong negative gradient on the object in the blue channel
    assert pointing_game(rgb, masks).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="same shape"):
        mask_energy(torch.zeros(2, 8, 8), masks)


class RegionScore(nn.Module):
    """Class 1's logit is the sum of the pixels in a region (class 0's is 0): the evidence is known."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())

    def forward(self, x):
        s = (x.sum(1) * self.region).flatten(1).sum(1) / 10
        return torch.stack([torch.zeros_like(s), s], dim=1)


def test_deleting_in_the_order_of_a_perfect_map_drops_the_score_fastest():
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[4:10, 5:12] = True
    model = RegionScore(region)
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) + 0.5
    perfect = region.float().expand(3, -1, -1) + 0.01 * torch.rand(3, 16, 16)
    inverse = 1 - perfect
    random = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    auc = {name: deletion_curve(model, images, 1, m, steps=16).auc for name, m in
           [("perfect", perfect), ("random", random), ("inverse", inverse)]}
    assert (auc["perfect"] < auc["random"]).all() and (auc["random"] < auc["inverse"]).all()
    ins = {name: insertion_curve(model, images, 1, m, steps=16, baseline=0.0).auc for name, m in
           [("perfect", perfect), ("random", random), ("inverse", inverse)]}
    assert (ins["perfect"] > ins["random"]).all() and (ins["random"] > ins["inverse"]).all()


def test_curve_ends_are_the_image_and_the_baseline_and_batching_does_not_matter(tiny_cnn):
    images = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    maps = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(3))
    before = model_state(tiny_cnn)
    curve = deletion_curve(tiny_cnn, images, [0, 1, 2], maps, steps=6, batch_size=5)
    assert_same_state(before, model_state(tiny_cnn))
    with torch.no_grad():
        p_image = tiny_cnn(images).softmax(1)[torch.arange(3), [0, 1, 2]]
        p_fill = tiny_cnn(torch.zeros_like(images)).softmax(1)[:, [0, 1, 2]].diagonal()
    assert curve.fractions.tolist() == pytest.approx([k / 6 for k in range(7)], abs=1e-3)
    assert torch.allclose(curve.scores[:, 0], p_image, atol=1e-6)
    assert torch.allclose(curve.scores[:, -1], p_fill, atol=1e-6)
    assert torch.allclose(curve.auc, torch.trapezoid(curve.scores, curve.fractions))
    one_by_one = deletion_curve(tiny_cnn, images, [0, 1, 2], maps, steps=6, batch_size=1)
    assert torch.allclose(curve.scores, one_by_one.scores, atol=1e-6)
    start = insertion_curve(tiny_cnn, images, [0, 1, 2], maps, steps=6)
    assert torch.allclose(start.scores[:, -1], p_image, atol=1e-6)


def test_cascading_randomization_leaves_the_model_and_separates_a_model_blind_method(tiny_cnn):
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    before = model_state(tiny_cnn)
    result = cascading_randomization(tiny_cnn, images, [1, 3], saliency_map, seed=0)
    assert_same_state(before, model_state(tiny_cnn))
    assert result.layers == ["classifier.2", "features.5", "features.2", "features.0"]  # top first
    assert result.rank_correlation.shape == result.ssim.shape == (5, 2) and len(result.maps) == 5
    assert torch.equal(result.rank_correlation[0], torch.ones(2))
    assert (result.rank_correlation[-1] < 0.9).all() and (result.ssim[-1] < 0.9).all()
    # an "edge detector" that ignores the model passes every step unchanged: the test exposes it
    blind = cascading_randomization(tiny_cnn, images, [1, 3], lambda m, x, t: x.abs().sum(1), seed=0)
    assert torch.allclose(blind.rank_correlation, torch.ones(5, 2)) and torch.allclose(blind.ssim, torch.ones(5, 2))


class ChannelEvidence(nn.Module):
    """Logit k is the mean positive value of colour channel k: object k is drawn in channel k."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.features[0].bias.zero_()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.features(x)).flatten(1)


def two_objects(n=3):
    images = torch.zeros(n, 3, 16, 24)
    masks = torch.zeros(n, 2, 16, 24, dtype=torch.bool)
    masks[:, 0, 4:12, 2:10] = True
    masks[:, 1, 4:12, 14:22] = True
    images[:, 0][masks[:, 0]] = 1.0  # class 0's object on the left
    images[:, 1][masks[:, 1]] = 1.0  # class 1's object on the right
    return images, masks, torch.tensor([[0, 1]] * n)


def test_class_sensitivity_credits_class_specific_maps_and_not_class_blind_ones():
    images, masks, targets = two_objects()
    model = ChannelEvidence()

    def oracle(m, x, t):  # the object of the class
        return masks[torch.arange(len(t)), t].float()

    def blind(m, x, t):  # both objects, whatever the class
        return masks.any(1).float()

    hits = class_sensitivity(model, images, targets, masks, {
        "oracle": oracle, "blind": blind, "Grad-CAM": grad_cam,
        "occlusion": lambda m, x, t: occlusion_map(m, x, t, patch=4, stride=2)})
    assert hits["oracle"].tolist() == [True] * 3
    assert hits["blind"].tolist() == [False] * 3
    assert hits["Grad-CAM"].all() and hits["occlusion"].all()
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        class_sensitivity(model, images, targets, masks[:, 0], {"oracle": oracle})


def test_localization_scores_rank_an_oracle_above_the_random_baseline():
    images, masks, targets = two_objects(4)
    model = ChannelEvidence()
    table = localization_scores(model, images, 0, masks[:, 0],
                                {"oracle": lambda m, x, t: masks[:, 0].float() + 0.01 * torch.rand(4, 16, 24)})
    assert set(table) == {"oracle", "random map"}
    assert table["oracle"]["pointing"] == 1.0 and table["oracle"]["energy"] > 0.95
    assert table["random map"]["energy"] < 0.5
    assert table["oracle"]["deletion"] < table["random map"]["deletion"]
    assert table["oracle"]["insertion"] > table["random map"]["insertion"]
    values = localization_scores(model, images, 0, masks[:, 0], {"oracle": lambda m, x, t: masks[:, 0].float()},
                                 per_image=True)
    assert values["oracle"]["pointing"].tolist() == [1.0] * 4 and values["random map"]["deletion"].shape == (4,)


def bars(vertical: bool, size=32, period=6):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    coord = xx if vertical else yy
    return torch.sin(2 * math.pi * coord / period).expand(1, 3, -1, -1)


def test_orientation_measures_tell_vertical_from_horizontal_bars():
    assert axis_energy_ratio(bars(True)).item() > 100 and axis_energy_ratio(bars(False)).item() < 0.01
    assert angle_difference(dominant_orientation(bars(True)), torch.tensor([0.0])).item() < 1
    assert angle_difference(dominant_orientation(bars(False)), torch.tensor([90.0])).item() < 1
    kernel = torch.tensor([[-1.0, 0, 1]] * 3)  # a vertical-edge filter: changes along x
    assert angle_difference(dominant_orientation(kernel[None, None], size=16), torch.tensor([0.0])).item() < 1
    assert angle_difference(torch.tensor([10.0]), torch.tensor([170.0])).item() == pytest.approx(20)


def test_mask_energy_matches_quantus_relevance_mass_accuracy():
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(0)
    maps = rng.random((5, 1, 16, 16)).astype(np.float32)
    masks = np.zeros((5, 1, 16, 16), dtype=np.float32)
    for i in range(5):
        masks[i, 0, i:i + 6, 2 * i:2 * i + 5] = 1
    metric = quantus.RelevanceMassAccuracy(abs=False, normalise=False, disable_warnings=True)
    x = rng.random((5, 1, 16, 16)).astype(np.float32)
    reference = metric(model=None, x_batch=x, y_batch=np.zeros(5, dtype=int), a_batch=maps, s_batch=masks,
                       channel_first=True)
    ours = mask_energy(torch.from_numpy(maps[:, 0]), torch.from_numpy(masks[:, 0]).bool())
    assert ours.numpy() == pytest.approx(np.asarray(reference, dtype=np.float32), rel=1e-5)
    pointing = quantus.PointingGame(disable_warnings=True)(model=None, x_batch=x, y_batch=np.zeros(5, dtype=int),
                                                          a_batch=maps, s_batch=masks, channel_first=True)
    assert pointing_game(torch.from_numpy(maps[:, 0]), torch.from_numpy(masks[:, 0]).bool()).tolist() == \
        [float(h) for h in pointing]


def test_one_image_is_a_batch_of_one_everywhere(tiny_cnn):
    x = torch.randn(1, 3, 16, 24, generator=torch.Generator().manual_seed(5))
    images, masks, pair = two_objects(1)
    maps = torch.rand(1, 16, 24, generator=torch.Generator().manual_seed(6))
    for curve in (deletion_curve, insertion_curve):
        batch = curve(tiny_cnn, x, 2, maps, steps=4)
        assert torch.equal(curve(tiny_cnn, x[0], 2, maps, steps=4).scores, batch.scores)
        assert torch.equal(curve(tiny_cnn, x[0], 2, maps[0], steps=4).scores, batch.scores)  # one (H, W) map
    batch = cascading_randomization(tiny_cnn, x, 1, saliency_map, seed=0)
    single = cascading_randomization(tiny_cnn, x[0], 1, saliency_map, seed=0)
    assert single.rank_correlation.shape == (5, 1) and torch.equal(single.rank_correlation, batch.rank_correlation)
    model, methods = ChannelEvidence(), {"Grad-CAM": grad_cam}
    assert class_sensitivity(model, images[0], pair[0], masks[0], methods) == {"Grad-CAM": torch.tensor([True])}
    batch = localization_scores(model, images, 0, masks[:, 0], methods, steps=4, per_image=True)
    single = localization_scores(model, images[0], 0, masks[0, 0], methods, steps=4, per_image=True)
    for name in batch:
        for metric in batch[name]:
            assert torch.equal(single[name][metric], batch[name][metric]), (name, metric)


def test_grey_rgba_and_too_small_images_are_explained_at_the_boundary(tiny_cnn):
    maps = torch.rand(2, 8, 8)
    images, masks, pair = two_objects(2)
    method = {"saliency": saliency_map}
    for channels, fix in ((1, r"expand\(-1, 3, -1, -1\)"), (4, r"x\[:, :3\]")):
        x = torch.rand(2, channels, 8, 8)
        with pytest.raises(ValueError, match=fix):
            deletion_curve(tiny_cnn, x, 1, maps)
        with pytest.raises(ValueError, match=fix):
            insertion_curve(tiny_cnn, x, 1, maps)
        with pytest.raises(ValueError, match=fix):
            cascading_randomization(tiny_cnn, x, 1, lambda m, x, t: x.abs().sum(1))
        with pytest.raises(ValueError, match=fix):
            class_sensitivity(tiny_cnn, torch.rand(2, channels, 16, 24), pair, masks, method)
        with pytest.raises(ValueError, match=fix):
            localization_scores(tiny_cnn, torch.rand(2, channels, 16, 24), 0, masks[:, 0], method)
    tiny = torch.rand(2, 3, 1, 1)  # TinyCNN pools by 2: it needs 2x2 px
    for curve in (deletion_curve, insertion_curve):
        with pytest.raises(ValueError, match="too small .* at least 2x2 px"):
            curve(tiny_cnn, tiny, 1, torch.rand(2, 1, 1), baseline=0.0)
    with pytest.raises(ValueError, match="too small .* at least 2x2 px"):
        localization_scores(tiny_cnn, tiny, 1, torch.ones(2, 1, 1, dtype=torch.bool), {"ones": lambda m, x, t: x[:, 0]})
    with pytest.raises(ValueError, match="class index"):
        deletion_curve(tiny_cnn, torch.rand(2, 3, 8, 8), 0.5, maps)
    with pytest.raises(ValueError, match="out of range"):
        deletion_curve(tiny_cnn, torch.rand(2, 3, 8, 8), 7, maps)
